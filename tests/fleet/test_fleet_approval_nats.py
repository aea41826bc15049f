"""An approval sent from the central host over a real nats-server reaches the addressed
host's remediator only: three NatsBus hosts in one process (central, web-1, web-2), each
leaf with its own remediator in approve mode and an action waiting on a real process."""

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
from watchkeeper.model.alerts import Alert, Severity, SuggestedAction, fingerprint_of
from watchkeeper.model.events import AgentReply, Command
from watchkeeper.model.topics import ALERT_FIRING, command_for
from watchkeeper.testing.nats_server import NatsServer


async def until(check: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)


def _settings(server: NatsServer, host: str, data: Path) -> Settings:
    base = Settings.model_validate({}).model_dump(mode="json")
    overrides = {
        "data_dir": str(data),
        "ollama": {"enabled": False},
        "remediation": {"mode": "approve", "healing_cooldown": 0},
        "bus": {
            "backend": "nats",
            "servers": [server.url],
            "host_id": host,
            "connect_timeout": 0.5,
            "reconnect_wait": 0.1,
            "request_timeout": 3.0,
        },
    }
    return Settings.model_validate(deep_merge(base, overrides))


class Host:
    """One host: its NatsBus and (on a leaf) its running remediator."""

    def __init__(self, server: NatsServer, host: str, root: Path) -> None:
        self.settings = _settings(server, host, root / host)
        self.bus = NatsBus(self.settings.bus, host=host, data_dir=root / host)
        self.store = ConfigStore(self.settings, None, self.bus)
        self.remediator: RemediatorAgent | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self, *, remediator: bool) -> Host:
        await self.bus.start()
        assert await self.bus.wait_connected(10), self.bus.status()
        if remediator:
            ctx = AgentContext(bus=self.bus, settings=self.store, data_dir=self.settings.data_dir)
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
    made = {name: Host(nats_server, name, tmp_path) for name in ("central", "web-1", "web-2")}
    try:
        await made["central"].start(remediator=False)
        await made["web-1"].start(remediator=True)
        await made["web-2"].start(remediator=True)
        yield made
    finally:
        for host in made.values():
            await host.stop()


def _alert(proc: psutil.Process) -> Alert:
    now = time.time()
    subject = f"process:{proc.pid}"
    return Alert(
        id=f"cpu-{proc.pid}",
        fingerprint=fingerprint_of("cpu_hog", subject),
        rule="cpu_hog",
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


async def _waiting(host: Host, proc: psutil.Process) -> ActionRecord:
    await host.bus.publish(ALERT_FIRING, _alert(proc), sender="analyzer")
    await until(lambda: bool(host.agent.pending()), what=f"{host.bus.host}'s pending action")
    return host.agent.pending()[0]


async def _ask(central: Host, host: str, command: str, request_id: str) -> dict[str, Any]:
    """The fleet view's request; retried while the server settles a new interest."""
    for _ in range(5):
        try:
            reply = await central.bus.request(
                command_for("remediator"),
                Command(command=command, params={"id": request_id, "by": "alice"}),
                sender="web",
                timeout=3.0,
                host=host,
            )
        except RequestTimeout:
            continue
        assert reply.origin == host
        return reply.parse(AgentReply).result()
    raise AssertionError(f"{host} never answered")


async def test_an_approval_runs_on_the_addressed_host_only(
    hosts: dict[str, Host], sleepers: list[psutil.Process]
) -> None:
    central, web1, web2 = hosts["central"], hosts["web-1"], hosts["web-2"]
    one, two = sleepers
    waiting1 = await _waiting(web1, one)
    waiting2 = await _waiting(web2, two)
    audit2 = [(r.id, r.outcome) for r in web2.agent.audit(100)]

    # web-1's id sent to web-2: web-2 has no such action and changes nothing.
    crossed = await _ask(central, "web-2", "approve", waiting1.id)
    assert crossed["ok"] is False and "no pending action" in crossed["error"]
    assert [r.id for r in web1.agent.pending()] == [waiting1.id]
    assert [r.id for r in web2.agent.pending()] == [waiting2.id]

    done = await _ask(central, "web-1", "approve", waiting1.id)
    assert done["ok"] is True and done["by"] == "alice from host central"
    await until(lambda: one.nice() == 10, what="web-1's renice")
    await until(
        lambda: any(
            r.outcome is ActionOutcome.SUCCEEDED and r.proposed_by == "alice from host central"
            for r in web1.agent.audit(100)
        ),
        what="web-1's audit of the approved renice",
    )

    # web-2: still waiting, untouched, its audit as before.
    await asyncio.sleep(1.0)
    assert [r.id for r in web2.agent.pending()] == [waiting2.id]
    assert two.nice() == 0
    assert [(r.id, r.outcome) for r in web2.agent.audit(100)] == audit2

    rejected = await _ask(central, "web-2", "reject", waiting2.id)
    assert rejected["ok"] is True and rejected["by"] == "alice from host central"
    assert not web2.agent.pending()
    assert any(r.detail == "rejected by alice from host central" for r in web2.agent.audit(100))
    assert two.nice() == 0
