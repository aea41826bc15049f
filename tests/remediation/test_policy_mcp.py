"""An MCP client's proposal always waits for a person: in auto mode, for a safe action,
for an action in ``allow_actions``, and in dry-run mode too; a person's approval then
runs it through the same gate, and the audit names the client."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_policy import Flaky, make_agent, make_store, settled

from watchkeeper.model.actions import ActionOutcome, ActionRequest


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
    tmp_path: Path, remediation: dict[str, object]
) -> None:
    agent = make_agent(make_store(tmp_path, remediation=remediation))
    poke = Flaky("poke", ok=True)  # a safe action: anyone else's proposal would run at once
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
    agent = make_agent(make_store(tmp_path, remediation={"mode": "auto"}))
    poke = Flaky("poke", ok=True)
    agent.register_action(poke)
    record = await agent.submit(proposal("poke"))
    reply = await agent.handle_command("approve", {"id": record.id, "by": "alice"})
    done = await settled(agent, reply["record"]["id"])
    assert done.outcome is ActionOutcome.SUCCEEDED and poke.runs == 1
    assert done.proposer == "user" and done.proposed_by == "alice"
    await agent.teardown()


async def test_the_gate_still_refuses_what_it_refuses(tmp_path: Path) -> None:
    agent = make_agent(make_store(tmp_path, remediation={"deny_actions": ["poke"]}))
    agent.register_action(Flaky("poke", ok=True))
    record = await agent.submit(proposal("poke"))
    assert record.outcome is ActionOutcome.REFUSED and agent.pending() == []
    unknown = await agent.submit(proposal("no_such_action"))
    assert unknown.outcome is ActionOutcome.REFUSED
    await agent.teardown()
