"""An MCP client's proposal always waits for a person: in auto mode, for a safe action,
for an action in ``allow_actions``, and in dry-run mode too; a person's approval then
runs it through the same gate, and the audit names the client."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from watchkeeper.agents.base import AgentContext
from watchkeeper.agents.remediator import RemediatorAgent
from watchkeeper.bus import InMemoryBus
from watchkeeper.config import Settings, deep_merge
from watchkeeper.live_config import ConfigStore
from watchkeeper.model.actions import (
    ActionInfo,
    ActionOutcome,
    ActionRecord,
    ActionRequest,
    ActionResult,
)


class Poke:
    """A safe action that counts its runs."""

    def __init__(self) -> None:
        self.info = ActionInfo(name="poke", description="Test.", target_kind="none", risk="safe")
        self.runs = 0

    async def validate(self, request: ActionRequest, ctx: Any) -> str | None:
        return None

    async def execute(self, request: ActionRequest, ctx: Any) -> ActionResult:
        self.runs += 1
        return ActionResult(ok=True, detail="poked")

    async def verify(self, request: ActionRequest, ctx: Any, result: ActionResult) -> bool | None:
        return True


def make_agent(tmp_path: Path, remediation: dict[str, Any]) -> RemediatorAgent:
    base = Settings.model_validate({}).model_dump(mode="json")
    merged = deep_merge(base, {"data_dir": str(tmp_path), "remediation": remediation})
    bus = InMemoryBus()
    store = ConfigStore(Settings.model_validate(merged), None, bus)
    ctx = AgentContext(bus=bus, settings=store, data_dir=tmp_path, services={})
    return RemediatorAgent("remediator", ctx)


async def settled(agent: RemediatorAgent, record_id: str) -> ActionRecord:
    for _ in range(500):
        done = [r for r in agent.audit(limit=1000) if r.id == record_id]
        if done and done[-1].outcome is not ActionOutcome.PENDING:
            return done[-1]
        await asyncio.sleep(0.02)
    raise AssertionError("the action did not finish")


def proposal(action: str, target: str | None = None) -> ActionRequest:
    return ActionRequest(action=action, target=target, proposer="mcp", proposed_by="mcp:tester")


@pytest.mark.parametrize(
    "remediation",
    [
        {"mode": "auto", "healing_cooldown": 0},
        {"mode": "auto", "allow_actions": ["poke"], "healing_cooldown": 0},
        {"mode": "dry_run"},
        {"mode": "approve"},
    ],
    ids=["auto", "allowed", "dry_run", "approve"],
)
async def test_an_mcp_proposal_never_runs_by_itself(
    tmp_path: Path, remediation: dict[str, Any]
) -> None:
    agent = make_agent(tmp_path, remediation)
    poke = Poke()  # a safe action: anyone else's proposal would run at once
    agent.register_action(poke)
    record = await agent.submit(proposal("poke", "a"))
    assert record.outcome is ActionOutcome.PENDING
    assert "MCP client" in record.detail
    assert [p.id for p in agent.pending()] == [record.id]
    assert agent.pending()[0].proposer == "mcp"
    assert agent.pending()[0].proposed_by == "mcp:tester"
    assert poke.runs == 0
    await agent.teardown()


async def test_a_person_approves_it_and_it_runs(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, {"mode": "auto"})
    poke = Poke()
    agent.register_action(poke)
    record = await agent.submit(proposal("poke"))
    reply = await agent.handle_command("approve", {"id": record.id, "by": "alice"})
    done = await settled(agent, reply["record"]["id"])
    assert done.outcome is ActionOutcome.SUCCEEDED and poke.runs == 1
    assert done.proposer == "user" and done.proposed_by == "alice"
    await agent.teardown()


async def test_the_gate_still_refuses_what_it_refuses(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, {"deny_actions": ["poke"]})
    agent.register_action(Poke())
    record = await agent.submit(proposal("poke"))
    assert record.outcome is ActionOutcome.REFUSED and agent.pending() == []
    unknown = await agent.submit(proposal("no_such_action"))
    assert unknown.outcome is ActionOutcome.REFUSED
    await agent.teardown()


async def test_run_action_said_to_come_from_an_mcp_client_waits(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, {"mode": "auto"})
    poke = Poke()
    agent.register_action(poke)
    params = {"action": "poke", "proposer": "mcp", "by": "mcp:tester", "reason": "why not"}
    reply = await agent.handle_command("run_action", params)
    assert reply["record"]["outcome"] == "pending" and reply["record"]["proposer"] == "mcp"
    assert agent.pending()[0].proposed_by == "mcp:tester" and poke.runs == 0
    # Any other proposer word is a person's command, as before.
    other = await agent.handle_command("run_action", {"action": "poke", "proposer": "rule"})
    assert other["record"]["outcome"] == "running" and other["record"]["proposer"] == "user"
    await agent.teardown()
