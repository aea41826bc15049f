"""The policy gate in action: cooldown, concurrency, approve, dry run, escalation,
privileges, with a real process-managed service where a service is involved."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from watchkeeper.agents.base import AgentContext
from watchkeeper.agents.remediator import RemediatorAgent
from watchkeeper.bus import InMemoryBus, Message
from watchkeeper.config import Settings, deep_merge
from watchkeeper.live_config import ConfigStore
from watchkeeper.model.actions import ActionInfo, ActionOutcome, ActionRequest, ActionResult
from watchkeeper.model.alerts import Alert, Severity, SuggestedAction
from watchkeeper.remediation.actions import NeedsPrivilege
from watchkeeper.services import ProcessServiceManager, build_managers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SlowAction:
    """Counts how many run at once."""

    def __init__(self) -> None:
        self.info = ActionInfo(
            name="slow_thing", description="Takes a while.", target_kind="none", risk="safe"
        )
        self.now = 0
        self.peak = 0

    async def validate(self, request: ActionRequest, ctx: Any) -> str | None:
        return None

    async def execute(self, request: ActionRequest, ctx: Any) -> ActionResult:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(0.2)
        finally:
            self.now -= 1
        return ActionResult(ok=True, detail="done")

    async def verify(self, request: ActionRequest, ctx: Any, result: ActionResult) -> bool | None:
        return True


class Flaky:
    def __init__(self, name: str, *, ok: bool, privilege: bool = False) -> None:
        self.info = ActionInfo(
            name=name, description="Test action.", target_kind="none", risk="safe"
        )
        self.ok, self.privilege, self.runs = ok, privilege, 0

    async def validate(self, request: ActionRequest, ctx: Any) -> str | None:
        return None

    async def execute(self, request: ActionRequest, ctx: Any) -> ActionResult:
        self.runs += 1
        if self.privilege:
            raise NeedsPrivilege("this needs root")
        return ActionResult(ok=self.ok, detail="worked" if self.ok else "did not work")

    async def verify(self, request: ActionRequest, ctx: Any, result: ActionResult) -> bool | None:
        return self.ok


def make_store(tmp_path: Path, **overrides: Any) -> ConfigStore:
    base = Settings.model_validate({}).model_dump(mode="json")
    settings = Settings.model_validate(deep_merge(base, {"data_dir": str(tmp_path), **overrides}))
    return ConfigStore(settings, None, InMemoryBus())


def make_agent(store: ConfigStore, services: dict[str, Any] | None = None) -> RemediatorAgent:
    assert store._bus is not None
    ctx = AgentContext(
        bus=store._bus, settings=store, data_dir=store.current.data_dir, services=services or {}
    )
    return RemediatorAgent("remediator", ctx)


async def settled(agent: RemediatorAgent, record_id: str, timeout: float = 10) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        done = [
            r
            for r in agent.audit(limit=1000)
            if r.id == record_id and r.outcome is not ActionOutcome.PENDING
        ]
        if done:
            return done[-1]
        await asyncio.sleep(0.02)
    raise AssertionError("action did not finish")


def user(action: str, target: str | None = None, proposer: str = "rule") -> ActionRequest:
    return ActionRequest(action=action, target=target, proposer=proposer)  # type: ignore[arg-type]


async def test_concurrency_limit_holds(tmp_path: Path) -> None:
    agent = make_agent(
        make_store(tmp_path, remediation={"max_concurrent_actions": 2, "healing_cooldown": 0})
    )
    slow = SlowAction()
    agent.register_action(slow)
    records = [await agent.submit(user("slow_thing", f"t{i}")) for i in range(6)]
    assert all(r.outcome is ActionOutcome.RUNNING for r in records)
    for record in records:
        assert (await settled(agent, record.id)).outcome is ActionOutcome.SUCCEEDED
    assert slow.peak == 2
    await agent.teardown()


async def test_cooldown_per_action_and_target(tmp_path: Path) -> None:
    agent = make_agent(make_store(tmp_path, remediation={"healing_cooldown": 60}))
    agent.register_action(Flaky("poke", ok=True))
    first = await agent.submit(user("poke", "a"))
    await settled(agent, first.id)
    again = await agent.submit(user("poke", "a"))
    assert again.outcome is ActionOutcome.REFUSED and "cooling down" in again.detail
    other = await agent.submit(user("poke", "b"))  # another target is not affected
    assert other.outcome is ActionOutcome.RUNNING
    await settled(agent, other.id)
    await agent.teardown()


async def test_privilege_failure_is_plain_and_not_retried(tmp_path: Path) -> None:
    agent = make_agent(make_store(tmp_path, remediation={"healing_cooldown": 0}))
    action = Flaky("needs_root", ok=True, privilege=True)
    agent.register_action(action)
    first = await settled(agent, (await agent.submit(user("needs_root", "x"))).id)
    assert first.outcome is ActionOutcome.FAILED
    assert first.detail == "needs privileges the daemon lacks: this needs root"
    second = await agent.submit(user("needs_root", "x"))
    assert second.outcome is ActionOutcome.REFUSED and "not retried" in second.detail
    assert action.runs == 1
    await agent.teardown()


async def test_failure_escalates_to_the_next_candidate_then_a_person(tmp_path: Path) -> None:
    agent = make_agent(make_store(tmp_path, remediation={"healing_cooldown": 0}))
    weak, strong = Flaky("weak_fix", ok=False), Flaky("strong_fix", ok=False)
    agent.register_action(weak)
    agent.register_action(strong)
    escalated = agent.ctx.bus.subscribe("remediation.escalated", name="t")
    alert = Alert(
        id="a1",
        fingerprint="f1",
        rule="test",
        severity=Severity.CRITICAL,
        subject="x",
        summary="x broke",
        suggested_actions=[
            SuggestedAction(action="strong_fix", confidence=0.5),
            SuggestedAction(action="weak_fix", confidence=0.9),
        ],
        started_at=0,
        updated_at=0,
    )
    await agent._on_alert(
        Message(topic="alert.firing", sender="analyzer", payload=alert.model_dump(mode="json"))
    )
    message = await escalated.get(timeout=5)
    assert weak.runs == 1 and strong.runs == 1
    assert message.payload["action"] == "strong_fix"
    await agent.teardown()


async def test_better_success_record_goes_first(tmp_path: Path) -> None:
    agent = make_agent(make_store(tmp_path, remediation={"healing_cooldown": 0}))
    good, bad = Flaky("good_fix", ok=True), Flaky("bad_fix", ok=False)
    agent.register_action(good)
    agent.register_action(bad)
    for name in ("good_fix", "bad_fix"):
        await settled(agent, (await agent.submit(user(name, "warmup"))).id)
    alert = Alert(
        id="a2",
        fingerprint="f2",
        rule="test",
        severity=Severity.WARNING,
        subject="y",
        summary="y",
        suggested_actions=[
            SuggestedAction(action="bad_fix", confidence=0.9),
            SuggestedAction(action="good_fix", confidence=0.5),
        ],
        started_at=0,
        updated_at=0,
    )
    await agent._on_alert(
        Message(topic="alert.firing", sender="analyzer", payload=alert.model_dump(mode="json"))
    )
    await asyncio.sleep(0.2)
    assert good.runs == 2 and bad.runs == 1
    await agent.teardown()


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[tuple[dict[str, Any], int, Any]]:
    port = free_port()
    store = make_store(
        tmp_path,
        services=[
            {
                "name": "demo",
                "argv": [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                "probe": {"kind": "http", "url": f"http://127.0.0.1:{port}/"},
                "min_uptime": 0.3,
            }
        ],
    )
    managers = build_managers(store.current.services, None, log_dir=tmp_path / "logs")
    process = cast(ProcessServiceManager, managers["process"])
    await process.start_all()
    await process.wait_ready("demo", timeout=10)
    try:
        yield managers, port, store
    finally:
        await managers["process"].aclose()


async def test_dry_run_changes_nothing(
    demo: tuple[dict[str, Any], int, Any], tmp_path: Path
) -> None:
    managers, _port, store = demo
    await store.update({"remediation.mode": "dry_run"})
    agent = make_agent(store, managers)
    before = (await managers["process"].status("demo")).pid
    record = await agent.submit(user("restart_service", "demo"))
    assert record.outcome is ActionOutcome.DRY_RUN
    assert record.detail == "would restart service demo"
    await asyncio.sleep(0.3)
    assert (await managers["process"].status("demo")).pid == before
    await agent.teardown()


async def test_approve_mode_waits_for_a_person(demo: tuple[dict[str, Any], int, Any]) -> None:
    managers, port, store = demo
    await store.update({"remediation.mode": "approve"})
    agent = make_agent(store, managers)
    before = (await managers["process"].status("demo")).pid
    record = await agent.submit(user("restart_service", "demo"))
    assert record.outcome is ActionOutcome.PENDING
    assert [p.id for p in agent.pending()] == [record.id]
    await asyncio.sleep(0.3)
    assert (await managers["process"].status("demo")).pid == before  # nothing happened yet
    reply = await agent.handle_command("approve", {"id": record.id, "by": "tester"})
    done = await settled(agent, reply["record"]["id"])
    assert done.outcome is ActionOutcome.SUCCEEDED and done.verified is True
    assert (await managers["process"].status("demo")).pid != before
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200
    assert agent.pending() == []
    await agent.teardown()


async def test_reject_and_unknown_ids(demo: tuple[dict[str, Any], int, Any]) -> None:
    managers, _port, store = demo
    await store.update({"remediation.mode": "approve"})
    agent = make_agent(store, managers)
    record = await agent.submit(user("restart_service", "demo"))
    await agent.handle_command("reject", {"id": record.id})
    assert agent.audit()[-1].outcome is ActionOutcome.REJECTED
    from watchkeeper.agents.base import CommandError

    with pytest.raises(CommandError, match="no pending action"):
        await agent.handle_command("approve", {"id": record.id})
    await agent.teardown()
