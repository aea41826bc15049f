"""A remote approval on the host it changes: the host's own remediator and gate decide, and
its audit says who approved it and from which host. The command arrives the way a network
backend hands it over (``bus.deliver`` of a message whose origin is the central host); a
command addressed to another host never runs here."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from watchkeeper.agents.base import AgentContext
from watchkeeper.agents.remediator import RemediatorAgent
from watchkeeper.bus import InMemoryBus, RequestTimeout
from watchkeeper.config import Settings, deep_merge
from watchkeeper.live_config import ConfigStore
from watchkeeper.model.actions import ActionOutcome, ActionRecord
from watchkeeper.model.alerts import Alert, Severity, SuggestedAction, fingerprint_of
from watchkeeper.model.events import Command
from watchkeeper.model.message import Message
from watchkeeper.model.topics import ALERT_FIRING, command_for


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


@pytest.fixture
def sleeper() -> Iterator[psutil.Process]:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield psutil.Process(proc.pid)
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
async def web2(tmp_path: Path) -> AsyncIterator[RemediatorAgent]:
    """Host web-2's remediator, in approve mode, on web-2's bus."""
    overrides = {
        "data_dir": str(tmp_path / "data"),
        "ollama": {"enabled": False},
        "bus": {"host_id": "web-2"},
        "remediation": {"mode": "approve", "healing_cooldown": 0},
    }
    base = Settings.model_validate({}).model_dump(mode="json")
    bus = InMemoryBus(host="web-2")
    store = ConfigStore(Settings.model_validate(deep_merge(base, overrides)), None, bus)
    agent = RemediatorAgent("remediator", AgentContext(bus=bus, settings=store, data_dir=tmp_path))
    task = asyncio.get_running_loop().create_task(agent.run())
    await until(lambda: str(agent.state) == "running")
    try:
        yield agent
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _alert(proc: psutil.Process, rule: str) -> Alert:
    now = time.time()
    subject = f"process:{proc.pid}"
    return Alert(
        id=f"a-{rule}",
        fingerprint=fingerprint_of(rule, subject),
        rule=rule,
        severity=Severity.WARNING,
        subject=subject,
        summary="busy",
        started_at=now,
        updated_at=now,
        suggested_actions=[
            SuggestedAction(
                action="renice_process",
                target=str(proc.pid),
                target_kind="process",
                params={"create_time": proc.create_time(), "name": proc.name()},
            )
        ],
    )


async def _pending_for(agent: RemediatorAgent, proc: psutil.Process, rule: str) -> ActionRecord:
    await agent.ctx.bus.publish(ALERT_FIRING, _alert(proc, rule), sender="analyzer")
    await until(lambda: any(r.target == str(proc.pid) for r in agent.pending()))
    return next(r for r in agent.pending() if r.target == str(proc.pid))


def _from_central(command: str, params: dict[str, Any], *, host: str = "web-2") -> Message:
    """A command published on the central host about ``host``, as it arrives over the
    network."""
    return Message(
        topic=command_for("remediator").name,
        sender="web",
        value=Command(command=command, params=params),
        correlation_id="c1",
        reply_to="_reply.c1",
        host=host,
        origin="central-1",
    )


def _bus(agent: RemediatorAgent) -> InMemoryBus:
    bus = agent.ctx.bus
    assert isinstance(bus, InMemoryBus)
    return bus


def _audit_for(agent: RemediatorAgent, proc: psutil.Process) -> list[ActionRecord]:
    return [r for r in agent.audit(100) if r.target == str(proc.pid)]


async def test_a_remote_approval_is_recorded_with_who_and_from_which_host(
    web2: RemediatorAgent, sleeper: psutil.Process
) -> None:
    record = await _pending_for(web2, sleeper, "cpu_hog")
    _bus(web2).deliver(_from_central("approve", {"id": record.id, "by": "alice"}))
    await until(lambda: sleeper.nice() == 10)
    await until(
        lambda: any(r.outcome is ActionOutcome.SUCCEEDED for r in _audit_for(web2, sleeper))
    )
    done = [r for r in _audit_for(web2, sleeper) if r.outcome is ActionOutcome.SUCCEEDED]
    assert done[0].proposer == "user"
    assert done[0].proposed_by == "alice from host central-1"
    assert done[0].reason.startswith("approved by alice from host central-1: ")


async def test_a_remote_rejection_names_the_person_and_host_and_cleans_the_name(
    web2: RemediatorAgent, sleeper: psutil.Process
) -> None:
    record = await _pending_for(web2, sleeper, "cpu_hog")
    _bus(web2).deliver(_from_central("reject", {"id": record.id, "by": "bob\u202e\x1b[2J"}))
    await until(lambda: not web2.pending())
    rejected = [r for r in _audit_for(web2, sleeper) if r.outcome is ActionOutcome.REJECTED]
    assert rejected[0].detail == "rejected by bob[2J from host central-1"
    assert sleeper.nice() == 0


async def test_a_command_about_another_host_never_runs_here(
    web2: RemediatorAgent, sleeper: psutil.Process
) -> None:
    record = await _pending_for(web2, sleeper, "cpu_hog")
    # Addressed to web-3 (a wrong subject, a replayed message): web-2 does nothing.
    _bus(web2).deliver(_from_central("approve", {"id": record.id, "by": "eve"}, host="web-3"))
    with pytest.raises(RequestTimeout):
        await web2.ctx.bus.request(
            command_for("remediator"),
            Command(command="approve", params={"id": record.id, "by": "eve"}),
            sender="web",
            timeout=0.5,
            host="web-3",
        )
    assert [r.id for r in web2.pending()] == [record.id]
    assert sleeper.nice() == 0
    assert all(r.proposer != "user" for r in _audit_for(web2, sleeper))


async def test_a_local_approval_is_recorded_as_before(
    web2: RemediatorAgent, sleeper: psutil.Process
) -> None:
    record = await _pending_for(web2, sleeper, "cpu_hog")
    reply = await web2.ctx.bus.request(
        command_for("remediator"),
        Command(command="approve", params={"id": record.id, "by": "api"}),
        sender="web",
        timeout=5,
    )
    assert reply.payload["ok"] is True and reply.payload["by"] == "api"
    await until(lambda: sleeper.nice() == 10)


async def test_a_remote_request_to_act_is_audited_with_its_host(
    web2: RemediatorAgent, sleeper: psutil.Process
) -> None:
    """A person's run_action from the central passes web-2's gate like a local one (a
    person's request runs in approve mode) and the audit names the host it came from."""
    params = {
        "action": "renice_process",
        "target": str(sleeper.pid),
        "params": {"create_time": sleeper.create_time(), "name": sleeper.name()},
        "by": "alice",
    }
    _bus(web2).deliver(_from_central("run_action", params))
    await until(lambda: sleeper.nice() == 10)
    await until(
        lambda: any(r.outcome is ActionOutcome.SUCCEEDED for r in _audit_for(web2, sleeper))
    )
    done = [r for r in _audit_for(web2, sleeper) if r.outcome is ActionOutcome.SUCCEEDED]
    assert done[0].proposer == "user" and done[0].proposed_by == "alice from host central-1"
