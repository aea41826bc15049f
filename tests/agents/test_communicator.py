"""CommunicatorAgent on a real bus, with real storage in a temporary data dir and a real
loopback HTTP receiver for its webhook channel."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from watchkeeper.agents.base import AgentContext
from watchkeeper.agents.communicator import CommunicatorAgent
from watchkeeper.bus import InMemoryBus, Message
from watchkeeper.config import Settings
from watchkeeper.config.notifications import NotificationSettings
from watchkeeper.model.actions import ActionOutcome, ActionRecord
from watchkeeper.model.alerts import Alert, AlertState, Severity, fingerprint_of
from watchkeeper.model.events import AgentRestart
from watchkeeper.notify.health import HealthTracker, score_band
from watchkeeper.storage import Storage


class SettingsWithNotifications(Settings):
    """Settings as they will be once ``notifications`` is a section of its own."""

    notifications: NotificationSettings = NotificationSettings()


class Receiver:
    """A loopback HTTP server that records JSON bodies and answers 200."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def kinds(self) -> list[tuple[str, str]]:
        return [(b["kind"], b["key"]) for b in self.bodies]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    rec.thread.start()
    try:
        yield rec
    finally:
        rec.server.shutdown()
        rec.server.server_close()
        rec.thread.join(timeout=5)


async def until(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``condition`` (sync or async) until it is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def make_settings(
    tmp_path: Path, url: str | None, *, personality: str = "plain", **notify: Any
) -> SettingsWithNotifications:
    channels = [{"type": "webhook", "url": url}] if url else [{"type": "log"}]
    notifications = NotificationSettings.model_validate(
        {"group_wait": 0, "retries": {"attempts": 2, "backoff_initial": 0.01}, **notify}
        | {"channels": channels}
    )
    return SettingsWithNotifications(
        data_dir=tmp_path, personality=personality, notifications=notifications
    )


class Harness:
    def __init__(
        self, agent: CommunicatorAgent, bus: InMemoryBus, *, owned: Storage | None = None
    ) -> None:
        self.agent = agent
        self.bus = bus
        self.owned = owned  # the storage this harness made, closed by stop() as its owner
        self.health = bus.subscribe("health.changed", name="test:health")
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.agent.run())
        await until(lambda: self.agent.state.value in ("running", "degraded"))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.owned is not None:
            await self.owned.close()

    async def send(self, topic: str, payload: Any, sender: str = "test") -> Message:
        if not isinstance(payload, BaseModel):  # test data written as JSON
            payload = self.bus.topics.resolve(topic).model.model_validate(payload)
        return await self.bus.publish(topic, payload, sender=sender)

    def health_changes(self) -> list[dict[str, Any]]:
        out = []
        while (message := self.health.get_nowait()) is not None:
            out.append(message.payload)
        return out


Build = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def build(tmp_path: Path) -> AsyncIterator[Build]:
    made: list[Harness] = []

    async def make(
        settings: Settings, *, storage: Storage | None = None, data_dir: Path | None = None
    ) -> Harness:
        bus = InMemoryBus()
        data_dir = data_dir or tmp_path
        ctx = AgentContext(bus=bus, settings=lambda: settings, data_dir=data_dir)
        # Like the orchestrator: one storage, made and closed by its owner, injected.
        owned = None if storage is not None else Storage.in_data_dir(data_dir)
        agent = CommunicatorAgent("communicator", ctx, storage=storage or owned, interval=0.05)
        harness = Harness(agent, bus, owned=owned)
        made.append(harness)
        await harness.start()
        return harness

    yield make
    for harness in made:
        await harness.stop()


def alert(
    rule: str = "cpu_high",
    subject: str = "web01",
    severity: Severity = Severity.WARNING,
    *,
    resolved: bool = False,
) -> Alert:
    now = time.time()
    return Alert(
        id=f"{rule}-{subject}",
        fingerprint=fingerprint_of(rule, subject),
        rule=rule,
        severity=severity,
        subject=subject,
        summary=f"{rule} on {subject}: 97%",
        state=AlertState.RESOLVED if resolved else AlertState.FIRING,
        started_at=now - 60,
        updated_at=now,
        resolved_at=now if resolved else None,
    )


def record(outcome: ActionOutcome, record_id: str = "r1") -> ActionRecord:
    return ActionRecord(
        id=record_id,
        action="restart_service",
        target="web",
        target_kind="service",
        proposer="rule",
        reason="service web exited",
        outcome=outcome,
        detail="exit code 1 again" if outcome is ActionOutcome.FAILED else "",
        created_at=time.time(),
    )


NOW = time.time()
SAMPLE = {
    "timestamp": NOW,
    "host": "web01",
    "memory": {
        "total_bytes": 8_000_000_000,
        "available_bytes": 4_000_000_000,
        "used_bytes": 4_000_000_000,
        "percent": 50.0,
        "swap_total_bytes": 0,
        "swap_used_bytes": 0,
        "swap_percent": 0.0,
    },
    "extra": {"plugin.queue_depth": 3.0},
}


async def test_everything_is_stored_logged_and_told(
    build: Build, receiver: Receiver, tmp_path: Path
) -> None:
    h = await build(make_settings(tmp_path, receiver.url))
    storage = h.agent.storage
    assert storage.path == tmp_path / "watchkeeper.db"
    await h.send("system.started", {"version": "9.9"}, sender="orchestrator")
    await h.send("metrics.sample", SAMPLE, sender="sensor")
    cpu = alert(severity=Severity.CRITICAL)
    await h.send("alert.firing", cpu, sender="analyzer")
    await h.send("remediation.failed", record(ActionOutcome.FAILED), sender="remediator")
    await h.send(
        "agent.restarted", AgentRestart(agent="sensor", reason="hung", restarts=1, backoff_s=1)
    )
    await h.send(
        "analysis.result",
        {
            "at": NOW,
            "trigger": "alert",
            "source": "mistral",
            "latency_s": 1.5,
            "prompt_chars": 2048,
            "verdict": "act",
            "summary": "web leaks memory",
        },
        sender="analyzer",
    )
    await h.send(
        "config.changed",
        {
            "actor": "api",
            "changes": {"thresholds.cpu_warning": 80},
            "previous": {},
            "persisted": False,
            "path": None,
        },
    )
    await h.send(
        "alert.resolved", alert(severity=Severity.CRITICAL, resolved=True), sender="analyzer"
    )

    await until(lambda: len(receiver.bodies) >= 3)
    activity = await until(lambda: _activity_when(storage, 8))
    texts = [entry.message for entry in reversed(activity)]
    assert texts[0] == "watchkeeper 9.9 started"
    assert "alert firing: critical cpu_high on web01: cpu_high on web01: 97%" in texts
    assert "action restart_service on web failed: exit code 1 again" in texts
    assert "agent sensor restarted (hung); 1 restart(s) so far" in texts
    assert "analysis by mistral in 1.5s: act — web leaks memory" in texts
    assert "configuration changed by api: thresholds.cpu_warning" in texts
    assert any(t.startswith("alert resolved: cpu_high on web01 after 1m") for t in texts)
    assert [e.agent for e in await storage.search_activity(text="restart_service")] == [
        "remediator"
    ]

    points = await storage.metric_range("memory.percent", NOW - 10, NOW + 10, 1)
    assert [p.avg for p in points] == [50.0]
    assert "plugin.queue_depth" in await storage.metric_names("plugin.")
    (stored,) = await storage.alerts()
    assert stored.state is AlertState.RESOLVED
    steps = await storage.alert_transitions(alert_id=cpu.id)
    assert [s.kind for s in steps] == ["firing", "resolved"]
    assert (await storage.audit(target="web"))[0].outcome is ActionOutcome.FAILED
    assert [e.kind for e in await storage.agent_events()] == ["restarted", "started"]
    (analysis,) = await storage.analyses()
    assert (analysis.model, analysis.prompt_chars) == ("mistral", 2048)

    await until(lambda: len(receiver.bodies) >= 3)
    assert ("firing", cpu.fingerprint) in receiver.kinds()
    assert ("resolved", cpu.fingerprint) in receiver.kinds()
    assert ("event", "remediation:restart_service:web:failed") in receiver.kinds()

    # Handlers run side by side, so the restart may count before or after the alert.
    changes = h.health_changes()
    assert [c["status"] for c in changes] == ["critical", "degraded"]
    assert changes[0]["reasons"][0] == "1 critical alert(s): cpu_high on web01"
    assert changes[0]["score"] in (75, 70) and changes[0]["band"] in ("fair",)
    assert (changes[1]["score"], changes[1]["band"]) == (95, "good")
    assert changes[1]["previous"]["status"] == "critical"
    history = await storage.health_history()
    assert [r.status for r in history] == ["critical", "degraded"]
    assert h.agent.latest_health.reasons == ["agent sensor unsteady (1 recent restart(s))"]
    assert [r.status for r in h.agent.health_timeline] == ["healthy", "critical", "degraded"]


async def _activity_when(storage: Storage, count: int) -> list[Any]:
    entries = await storage.search_activity(limit=1000)
    return entries if len(entries) >= count else []


def test_the_health_formula() -> None:
    tracker = HealthTracker(restart_window=600, crash_loop=3)
    assert tracker.evaluate(0).model_dump() == {
        "ts": 0,
        "status": "healthy",
        "score": 100,
        "reasons": [],
    }
    for i in range(3):
        tracker.alert(alert(f"crit{i}", severity=Severity.CRITICAL))
    tracker.alert(alert("warn", severity=Severity.WARNING))
    tracker.alert(alert("note", severity=Severity.INFO))
    record = tracker.evaluate(0)
    assert record.score == 100 - 60 - 10 - 2  # critical alerts are capped at 60
    assert record.status == "critical"
    assert (
        record.reasons[0] == "3 critical alert(s): crit0 on web01, crit1 on web01, crit2 on web01"
    )
    for i in range(3):
        tracker.alert(alert(f"crit{i}", severity=Severity.CRITICAL, resolved=True))
    tracker.alert(alert("note", severity=Severity.INFO, resolved=True))
    for t in (0, 100, 200):
        tracker.agent_restarted("analyzer", t)
    tracker.agent_state("remediator", "degraded")
    record = tracker.evaluate(200)
    assert record.score == 100 - 10 - 15 - 5
    assert record.status == "degraded"
    assert record.reasons[1:] == [
        "agent analyzer failing (3 restarts in window)",
        "agent remediator unsteady (0 recent restart(s))",
    ]
    assert tracker.services(
        [
            {"name": "db", "critical": True, "state": "failed"},
            {"name": "cache", "critical": False, "state": "failed"},
        ]
    )
    record = tracker.evaluate(900)  # the restarts have aged out of the window
    assert (record.status, record.score) == ("critical", 100 - 10 - 5 - 30)
    assert record.reasons[0] == "critical service db is down"
    assert [score_band(s) for s in (100, 90, 89, 70, 69, 40, 39, 0)] == [
        "good",
        "good",
        "fair",
        "fair",
        "poor",
        "poor",
        "bad",
        "bad",
    ]


async def test_witty_and_plain_lines_carry_the_same_facts(build: Build, tmp_path: Path) -> None:
    lines = {}
    for personality in ("plain", "witty"):
        data = tmp_path / personality
        h = await build(make_settings(data, None, personality=personality), data_dir=data)
        await h.send("alert.firing", alert("disk_full", "/var"), sender="analyzer")
        entries = await until(functools.partial(_activity_when, h.agent.storage, 1))
        lines[personality] = entries[-1].message
    assert lines["plain"] == "alert firing: warning disk_full on /var: disk_full on /var: 97%"
    witty = lines["witty"]
    assert witty != lines["plain"] and not witty.isascii()
    for fact in ("warning", "disk_full", "/var", "97%"):
        assert fact in witty


async def test_a_broken_data_dir_never_stops_the_agent(
    build: Build, receiver: Receiver, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data directory should be")
    h = await build(make_settings(tmp_path, receiver.url), data_dir=blocker)
    assert h.agent.storage_error is not None and "cannot open" in h.agent.storage_error
    await h.send("alert.firing", alert(severity=Severity.CRITICAL), sender="analyzer")
    await h.send("metrics.sample", SAMPLE, sender="sensor")
    await until(lambda: receiver.kinds())  # people are still told
    await asyncio.sleep(0.2)  # several checks, each retrying nothing before its minute
    assert h.agent.state.value == "running" and h.agent.consecutive_errors == 0
    assert h.agent.latest_health.status == "critical"
    stats = await h.agent.execute_command(
        Message(topic="c", sender="t", payload={"command": "stats"})
    )
    assert stats["ok"] and stats["storage"]["open"] is False


async def test_a_full_disk_fails_writes_but_nothing_else(
    build: Build, receiver: Receiver, tmp_path: Path
) -> None:
    path = tmp_path / "watchkeeper.db"
    seed = Storage(path)
    await seed.open()
    await seed.write_sample(NOW, {"before.full": 1.0})
    await seed.close()
    tiny = Storage(path, max_size_mb=path.stat().st_size / 2**20)  # full at its current size
    h = await build(make_settings(tmp_path, receiver.url), storage=tiny)
    for i in range(30):
        await h.send(
            "metrics.sample",
            {
                **SAMPLE,
                "timestamp": 1_700_000_100 + i,
                "extra": {f"new.{i}.{k}": 1.0 for k in range(40)},
            },
        )
    await h.send("alert.firing", alert(), sender="analyzer")
    await until(lambda: tiny.stats().write_errors > 0)
    await until(lambda: receiver.kinds())
    assert h.agent.state.value == "running"
    points = await tiny.metric_range("before.full", NOW - 10, NOW + 10, 1)
    assert [p.avg for p in points] == [1.0]
    await h.stop()
    await tiny.close()  # the agent does not close a storage it was given


async def test_a_restart_does_not_notify_people_twice(
    build: Build, receiver: Receiver, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, receiver.url)
    first = await build(settings)
    cpu = alert()
    await first.send("alert.firing", cpu, sender="analyzer")
    await until(lambda: receiver.kinds() == [("firing", cpu.fingerprint)])
    await until(lambda: _notified(first.agent.storage, cpu.fingerprint))
    await first.stop()
    assert not first.agent.storage.is_open  # it closed the storage it made

    second = await build(settings)
    await second.send("alert.firing", cpu, sender="analyzer")
    other = alert("mem_high")
    await second.send("alert.firing", other, sender="analyzer")
    await until(lambda: len(receiver.bodies) >= 2)
    await asyncio.sleep(0.1)
    assert receiver.kinds() == [("firing", cpu.fingerprint), ("firing", other.fingerprint)]


async def _notified(storage: Storage, fingerprint: str) -> bool:
    return await storage.last_notified(fingerprint) is not None


async def test_a_dead_webhook_never_holds_up_the_agent(build: Build, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    settings = make_settings(
        tmp_path, dead, retries={"attempts": 3, "backoff_initial": 1.0, "backoff_max": 1.0}
    )
    h = await build(settings)
    await h.send("alert.firing", alert(severity=Severity.CRITICAL), sender="analyzer")
    for i in range(5):
        await h.send("metrics.sample", {**SAMPLE, "timestamp": NOW + 5 * i})
    storage = h.agent.storage
    await until(lambda: storage.stats().samples_written == 5)
    notifier = h.agent.notifier.stats()
    (channel,) = notifier.channels
    assert channel.failed == 0 and (channel.sending or channel.queued)  # still retrying
    assert h.agent.latest_health.status == "critical"


async def test_maintenance_runs_from_the_check(build: Build, tmp_path: Path) -> None:
    h = await build(make_settings(tmp_path, None))
    report = await until(lambda: h.agent.storage.stats().last_maintenance)
    assert report.deleted["sample"] == 0
    reply = await h.agent.execute_command(
        Message(
            topic="c",
            sender="t",
            payload={"command": "notify_test", "params": {"severity": "critical"}},
        )
    )
    assert reply["ok"] and reply["queued"] and reply["channels"] == ["log"]
    bad = await h.agent.execute_command(
        Message(
            topic="c",
            sender="t",
            payload={"command": "notify_test", "params": {"severity": "loud"}},
        )
    )
    assert not bad["ok"] and "severity must be" in bad["error"]
