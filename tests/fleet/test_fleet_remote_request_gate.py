"""A request to act sent through the fleet is a request, never a command that bypasses the
gate: over a real nats-server the central host asks web-1 and web-2 to renice a real
process. web-1's gate lets a person's request run; web-2's configuration denies the action
and its gate refuses it. Both audits say it came through the fleet, from which host and
who, with the asker's text cleaned."""

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
from watchkeeper.bus.memory import RequestTimeout
from watchkeeper.bus.nats import NatsBus
from watchkeeper.config import Settings, deep_merge
from watchkeeper.live_config import ConfigStore
from watchkeeper.model.actions import ActionOutcome, ActionRecord
from watchkeeper.model.events import AgentReply, Command
from watchkeeper.model.topics import command_for
from watchkeeper.testing.nats_server import NatsServer


async def until(check: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)


class Host:
    """One in-process host on the server: its NatsBus and, on a leaf, its remediator."""

    def __init__(self, server: NatsServer, host: str, root: Path, **remediation: Any) -> None:
        base = Settings.model_validate({}).model_dump(mode="json")
        overrides = {
            "data_dir": str(root / host),
            "ollama": {"enabled": False},
            "remediation": {"mode": "approve", "healing_cooldown": 0, **remediation},
            "bus": {
                "backend": "nats",
                "servers": [server.url],
                "host_id": host,
                "connect_timeout": 0.5,
                "reconnect_wait": 0.1,
                "request_timeout": 3.0,
            },
        }
        self.settings = Settings.model_validate(deep_merge(base, overrides))
        self.bus = NatsBus(self.settings.bus, host=host, data_dir=root / host)
        self.remediator: RemediatorAgent | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self, *, remediator: bool) -> Host:
        await self.bus.start()
        assert await self.bus.wait_connected(10), self.bus.status()
        if remediator:
            store = ConfigStore(self.settings, None, self.bus)
            ctx = AgentContext(bus=self.bus, settings=store, data_dir=self.settings.data_dir)
            self.remediator = RemediatorAgent("remediator", ctx)
            self.task = asyncio.get_running_loop().create_task(self.remediator.run())
            await until(lambda: str(self.agent.state) == "running", what="the remediator")
        return self

    @property
    def agent(self) -> RemediatorAgent:
        assert self.remediator is not None
        return self.remediator

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.bus.stop()


@pytest.fixture
def sleepers() -> Iterator[list[psutil.Process]]:
    procs = [subprocess.Popen(["sleep", "120"]) for _ in range(2)]
    try:
        yield [psutil.Process(p.pid) for p in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


@pytest.fixture
async def hosts(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[dict[str, Host]]:
    made = {
        "central": Host(nats_server, "central", tmp_path),
        "web-1": Host(nats_server, "web-1", tmp_path),
        "web-2": Host(nats_server, "web-2", tmp_path, deny_actions=["renice_process"]),
    }
    try:
        await made["central"].start(remediator=False)
        await made["web-1"].start(remediator=True)
        await made["web-2"].start(remediator=True)
        yield made
    finally:
        for host in made.values():
            await host.stop()


async def _run_action(central: Host, host: str, proc: psutil.Process) -> dict[str, Any]:
    """A person's request on the central host to renice ``proc`` on ``host``."""
    params = {
        "action": "renice_process",
        "target": str(proc.pid),
        "params": {"create_time": proc.create_time(), "name": proc.name()},
        "by": "alice",
        "reason": "too busy\x1b[2J\u202e",
    }
    for _ in range(5):  # retried while the server settles a new interest
        try:
            reply = await central.bus.request(
                command_for("remediator"),
                Command(command="run_action", params=params),
                sender="web",
                timeout=3.0,
                host=host,
            )
        except RequestTimeout:
            continue
        return reply.parse(AgentReply).result()
    raise AssertionError(f"{host} never answered")


def _records(host: Host, proc: psutil.Process) -> list[ActionRecord]:
    return [r for r in host.agent.audit(100) if r.target == str(proc.pid)]


async def test_a_fleet_request_passes_the_hosts_gate_and_is_audited_as_the_fleets(
    hosts: dict[str, Host], sleepers: list[psutil.Process]
) -> None:
    central, web1, web2 = hosts["central"], hosts["web-1"], hosts["web-2"]
    one, two = sleepers
    expected_reason = "asked through the fleet from host central: too busy [2J"

    ran = await _run_action(central, "web-1", one)
    assert ran["ok"] is True, ran
    await until(lambda: one.nice() == 10, what="web-1's renice")
    await until(
        lambda: any(r.outcome is ActionOutcome.SUCCEEDED for r in _records(web1, one)),
        what="web-1's audit of the renice",
    )
    done = next(r for r in _records(web1, one) if r.outcome is ActionOutcome.SUCCEEDED)
    assert done.proposer == "user"
    assert done.proposed_by == "alice from host central"
    assert done.reason == expected_reason

    # web-2's own configuration denies the action: its gate refuses the fleet's request.
    refused = await _run_action(central, "web-2", two)
    record = refused["record"]
    assert record["outcome"] == "refused", refused
    assert "denied by configuration" in record["detail"]
    await asyncio.sleep(0.5)
    assert two.nice() == 0
    audited = _records(web2, two)
    assert [r.outcome for r in audited] == [ActionOutcome.REFUSED]
    assert audited[0].proposed_by == "alice from host central"
    assert audited[0].reason == expected_reason
