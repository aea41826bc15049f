"""A fleet of synthetic hosts on a real NATS server: load for the fleet view and its benchmark.

Every simulated host speaks as a real watchkeeper host would, on its own subjects
(``wk.<host>.<topic>``) and in the project's envelope (:meth:`Message.to_dict`):

- ``metrics.sample`` every ``interval`` (5 s): one real :class:`MetricsSample` of this
  machine, taken once, with its numbers varied per host and per tick (CPU, load, memory,
  disk, network, the top 10 processes' CPU);
- ``fleet.heartbeat`` (:class:`HostBeat`) every ``heartbeat_interval`` (10 s);
- now and then an alert (``alert.firing``, later ``alert.resolved``, a real :class:`Alert`)
  and, for some of them, a remediation (``remediation.started`` and
  ``remediation.succeeded``, a real :class:`ActionRecord`) between the two.

Telemetry goes out as plain NATS publishes without a message id header; events go
through JetStream with the ``Nats-Msg-Id`` header (the message id), as the NATS bus sends
them. Hosts are spread
evenly over the interval (no thundering herd), and the templates are serialised once:
a tick only patches numbers into them, so one process keeps 5,000 hosts at 5 s::

    python -m watchkeeper.testing.fleet_sim --url nats://127.0.0.1:4222 --hosts 1000 \\
        --interval 5 --duration 60

prints one summary line (messages, rates, the simulator's own CPU). ``--events-log FILE``
writes one JSON line per alert sent (host, alert id, topic, sent time) for a benchmark
that times how soon the fleet view shows it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import re
import resource
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from watchkeeper import __version__
from watchkeeper.bus.subjects import EVENTS_STREAM, subject
from watchkeeper.model.actions import ActionOutcome, ActionRecord
from watchkeeper.model.alerts import (
    SEVERITY_RANK,
    Alert,
    AlertState,
    Severity,
    SuggestedAction,
    fingerprint_of,
)
from watchkeeper.model.fleet import HostBeat
from watchkeeper.model.message import Message
from watchkeeper.model.metrics import MetricsSample
from watchkeeper.model.topics import (
    ALERT_FIRING,
    ALERT_RESOLVED,
    FLEET_HEARTBEAT,
    METRICS_SAMPLE,
    REMEDIATION_OUTCOMES,
)

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

__all__ = ["FleetSim", "Outgoing", "SimConfig", "SimStats", "Template", "main", "real_sample"]

AGENTS = ["sensor", "analyzer", "remediator", "communicator"]
ROLES = ("web", "db", "cache", "worker", "batch", "edge")
ZONES = ("a", "b", "c")
#: (rule, subject, severity, summary, remedy): the trouble a simulated host has now and then.
TROUBLES: tuple[tuple[str, str, Severity, str, str | None], ...] = (
    ("disk_full", "/var/log", Severity.WARNING, "/var/log is {value:.0f}% full", None),
    ("memory_high", "memory", Severity.WARNING, "memory at {value:.0f}%", None),
    ("cpu_high", "cpu", Severity.WARNING, "CPU at {value:.0f}% for 2 minutes", None),
    ("load_high", "load", Severity.WARNING, "load {value:.1f} per core", None),
    ("service_down", "nginx", Severity.CRITICAL, "nginx is down", "restart_service"),
    ("service_unhealthy", "api", Severity.WARNING, "api fails its probe", "restart_service"),
    ("swap_high", "swap", Severity.INFO, "swap at {value:.0f}%", None),
)
_SLOT = re.compile(r'"@@(\d+)@@"')


class Template:
    """A JSON document serialised once, with numbered slots patched in per message.

    Build it from data holding the strings ``"@@0@@"``, ``"@@1@@"``, ... where values go;
    :meth:`fill` puts each value's JSON text in its slot (a number's digits, a string's
    quoted JSON)::

        t = Template({"id": "@@0@@", "cpu": "@@1@@"})
        t.fill('"abc"', "12.5")   # b'{"id":"abc","cpu":12.5}'
    """

    __slots__ = ("_format", "_keys", "slots")

    def __init__(self, data: Any) -> None:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        pieces = _SLOT.split(text.replace("%", "%%"))
        order = [int(index) for index in pieces[1::2]]
        self.slots = max(order) + 1 if order else 0
        self._keys = [str(n) for n in range(self.slots)]
        # Slots in document order map back to their numbers through the format's keys.
        self._format = "".join(
            piece if n % 2 == 0 else f"%({piece})s" for n, piece in enumerate(pieces)
        )

    def fill(self, *values: str) -> bytes:
        """The document with ``values[n]`` in slot ``n``."""
        return (self._format % dict(zip(self._keys, values, strict=True))).encode()


def _slot(n: int) -> str:
    return f"@@{n}@@"


def _num(value: float) -> str:
    return f"{value:.2f}"


def _text(value: str) -> str:
    return json.dumps(value)


def real_sample(top: int = 10) -> MetricsSample:
    """One real sample of this machine, with ``top`` processes in each top list.

    Two rounds a moment apart (CPU % needs two readings); a top-CPU list shorter than
    ``top`` (an idle machine) is filled from the memory list at a small CPU figure.
    """
    from watchkeeper.collectors.sampler import Sampler, build_default_registry

    sampler = Sampler(build_default_registry(top_n=top, gpu=False))
    sampler.sample()
    time.sleep(0.3)
    sample = sampler.sample()
    processes = sample.processes
    if processes is None:
        return sample
    cpu = list(processes.top_cpu)
    seen = {proc.pid for proc in cpu}
    for proc in processes.top_memory:
        if len(cpu) >= top:
            break
        if proc.pid not in seen:
            cpu.append(proc.model_copy(update={"cpu_percent": 0.1}))
            seen.add(proc.pid)
    return sample.model_copy(
        update={"processes": processes.model_copy(update={"top_cpu": tuple(cpu)})}
    )


@dataclass(frozen=True)
class SimConfig:
    """What to simulate: how many hosts, how often, how much trouble."""

    hosts: int = 100
    interval: float = 5.0
    heartbeat_interval: float = 10.0
    duration: float = 60.0
    prefix: str = "wk"
    host_prefix: str = "sim"
    #: Alerts a minute across the whole fleet (default: one a host an hour).
    alerts_per_min: float | None = None
    #: Share of alerts with a remediation before they resolve.
    remediation_share: float = 0.5
    seed: int = 16

    def host_id(self, index: int) -> str:
        """The id of simulated host ``index``: ``sim-00042``."""
        return f"{self.host_prefix}-{index:05d}"

    @property
    def alert_chance(self) -> float:
        """The chance that a host raises an alert on one of its ticks."""
        per_min = self.hosts / 60.0 if self.alerts_per_min is None else self.alerts_per_min
        ticks_per_min = self.hosts * 60.0 / self.interval
        return min(1.0, per_min / ticks_per_min) if ticks_per_min else 0.0


@dataclass
class SimStats:
    """What one run sent, and what it cost."""

    hosts: int = 0
    samples: int = 0
    beats: int = 0
    events: int = 0
    alerts: int = 0
    remediations: int = 0
    acked: int = 0
    duplicates: int = 0
    errors: int = 0
    last_error: str = ""
    bytes: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    max_lag_s: float = 0.0
    late_ticks: int = 0
    #: Host ticks not sent because the run fell a whole interval behind.
    skipped: int = 0
    rss_mb: float = 0.0

    @property
    def messages(self) -> int:
        return self.samples + self.beats + self.events

    def as_dict(self) -> dict[str, Any]:
        wall = self.wall_s or 1.0
        return {
            "hosts": self.hosts,
            "samples": self.samples,
            "beats": self.beats,
            "events": self.events,
            "alerts": self.alerts,
            "remediations": self.remediations,
            "acked": self.acked,
            "duplicates": self.duplicates,
            "errors": self.errors,
            "last_error": self.last_error,
            "bytes": self.bytes,
            "wall_s": round(self.wall_s, 2),
            "messages_per_s": round(self.messages / wall, 1),
            "mb_per_s": round(self.bytes / wall / 2**20, 2),
            "cpu_percent_of_one_core": round(100 * self.cpu_s / wall, 1),
            "max_lag_ms": round(self.max_lag_s * 1000, 1),
            "late_ticks": self.late_ticks,
            "skipped_host_ticks": self.skipped,
            "rss_mb": round(self.rss_mb, 1),
        }

    def summary(self) -> str:
        d = self.as_dict()
        return (
            f"fleet_sim: {d['hosts']} hosts for {d['wall_s']} s: {d['samples']} samples, "
            f"{d['beats']} heartbeats, {d['alerts']} alerts, {d['remediations']} remediations "
            f"({self.messages} messages, {d['messages_per_s']}/s, {d['mb_per_s']} MB/s); "
            f"{d['acked']} events acked, {d['errors']} errors; cpu {d['cpu_percent_of_one_core']}"
            f"% of one core, rss {d['rss_mb']} MB, max tick lag {d['max_lag_ms']} ms"
            + (f", {self.skipped} host ticks skipped (behind)" if self.skipped else "")
            + (f"; last error: {self.last_error}" if self.last_error else "")
        )


@dataclass
class _Host:
    """One simulated host's profile and its state between ticks."""

    index: int
    id: str
    cores: int
    memory_total: int
    disk_total: int
    cpu_base: float
    memory_base: float
    disk_base: float
    labels: dict[str, str]
    started_at: float
    cpu: float = 0.0
    memory: float = 0.0
    disk: float = 0.0
    rx: float = 0.0
    tick: int = 0
    last_sample_at: float | None = None
    #: Open alerts: alert, the tick it resolves on, the remediation's start tick or None.
    open: list[tuple[Alert, int, int | None]] = field(default_factory=list)


#: A message ready to send: subject, body, message id, and True for an event (JetStream,
#: acked) or False for telemetry (a plain publish).
Outgoing = tuple[str, bytes, str, bool]
#: The headers the NATS bus puts on every message: its id (JetStream's de-duplication) and
#: the publishing process (so a process skips its own messages).
MSG_ID_HEADER = "Nats-Msg-Id"
INSTANCE_HEADER = "Wk-Instance"


class FleetSim:
    """Builds every host's traffic; :meth:`run` sends it to a NATS server.

    The traffic builders (:meth:`sample`, :meth:`beat`, :meth:`tick`) need no server, so a
    test can parse every message the simulator would send.
    """

    def __init__(
        self,
        config: SimConfig,
        *,
        base: MetricsSample | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.clock = clock
        self.rng = random.Random(config.seed)
        self.base = base if base is not None else real_sample()
        self.hosts = [self._profile(n) for n in range(config.hosts)]
        self._sample_t, self._sample_fill = self._sample_template(self.base)
        self._beat_t = self._beat_template()
        #: Called with (host, alert, topic, sent_at) for every alert message built.
        self.on_alert: Callable[[str, Alert, str, float], None] | None = None
        self.instance = f"fleet-sim-{uuid.uuid4().hex[:12]}"

    # -- profiles and templates ----------------------------------------------------------

    def _profile(self, n: int) -> _Host:
        rng = self.rng
        host = _Host(
            index=n,
            id=self.config.host_id(n),
            cores=rng.choice((2, 4, 4, 8, 8, 16, 32)),
            memory_total=rng.choice((4, 8, 16, 16, 32, 64, 128)) * 2**30,
            disk_total=rng.choice((40, 80, 200, 500, 1000)) * 10**9,
            cpu_base=rng.uniform(2, 55),
            memory_base=rng.uniform(20, 80),
            disk_base=rng.uniform(10, 85),
            labels={"role": ROLES[n % len(ROLES)], "zone": ZONES[n % len(ZONES)]},
            started_at=self.clock() - rng.uniform(3600, 90 * 86400),
        )
        host.cpu, host.memory, host.disk = host.cpu_base, host.memory_base, host.disk_base
        host.rx = rng.uniform(1e4, 5e6)
        return host

    def _sample_template(self, base: MetricsSample) -> tuple[Template, Callable[..., bytes]]:
        """The sample envelope with slots for what varies, and the function that fills it."""
        payload = base.model_dump(mode="json")
        slots = iter(range(1000))

        def put(node: dict[str, Any], key: str) -> int:
            n = next(slots)
            node[key] = _slot(n)
            return n

        envelope: dict[str, Any] = {
            "id": _slot(next(slots)),
            "topic": METRICS_SAMPLE.name,
            "sender": "sensor",
            "timestamp": _slot(next(slots)),
            "correlation_id": None,
            "reply_to": None,
            "host": _slot(next(slots)),
            "origin": _slot(next(slots)),
            "payload": payload,
        }
        put(payload, "timestamp")  # 4
        put(payload, "host")  # 5
        payload["interval"] = self.config.interval
        cpu = payload.get("cpu") or {}
        fields: list[tuple[str, dict[str, Any], str]] = []
        if cpu:
            for key in ("count", "percent", "user_percent", "system_percent", "per_core_percent"):
                fields.append(("cpu." + key, cpu, key))
            for key in ("load_1m", "load_5m", "load_15m"):
                fields.append(("cpu." + key, cpu, key))
        memory = payload.get("memory") or {}
        if memory:
            for key in ("total_bytes", "available_bytes", "used_bytes", "percent"):
                fields.append(("memory." + key, memory, key))
        filesystems = (payload.get("disks") or {}).get("filesystems") or []
        if filesystems:
            fs = filesystems[0]
            for key in ("total_bytes", "used_bytes", "free_bytes", "percent"):
                fields.append(("fs." + key, fs, key))
        interfaces = (payload.get("network") or {}).get("interfaces") or []
        if interfaces:
            for key in ("rx_bytes_per_s", "tx_bytes_per_s"):
                fields.append(("net." + key, interfaces[0], key))
        system = payload.get("system") or {}
        if system:
            fields.append(("system.boot_time", system, "boot_time"))
            fields.append(("system.uptime_seconds", system, "uptime_seconds"))
        top = (payload.get("processes") or {}).get("top_cpu") or []
        for n, proc in enumerate(top):
            fields.append((f"top.{n}", proc, "cpu_percent"))
        names = [name for name, _, _ in fields]
        for _, node, key in fields:
            put(node, key)
        template = Template(envelope)
        top_count = len(top)

        def fill(host: _Host, now: float, message_id: str) -> bytes:
            rng = self.rng
            mem_used = int(host.memory_total * host.memory / 100)
            disk_used = int(host.disk_total * host.disk / 100)
            uptime = now - host.started_at
            load = host.cpu / 100 * host.cores * rng.uniform(0.8, 1.3)
            values: dict[str, str] = {
                "cpu.count": str(host.cores),
                "cpu.percent": _num(host.cpu),
                "cpu.user_percent": _num(host.cpu * 0.7),
                "cpu.system_percent": _num(host.cpu * 0.25),
                "cpu.per_core_percent": "["
                + ",".join(
                    _num(min(100.0, host.cpu * rng.uniform(0.5, 1.5))) for _ in range(host.cores)
                )
                + "]",
                "cpu.load_1m": _num(load),
                "cpu.load_5m": _num(load * 0.9),
                "cpu.load_15m": _num(load * 0.8),
                "memory.total_bytes": str(host.memory_total),
                "memory.available_bytes": str(host.memory_total - mem_used),
                "memory.used_bytes": str(mem_used),
                "memory.percent": _num(host.memory),
                "fs.total_bytes": str(host.disk_total),
                "fs.used_bytes": str(disk_used),
                "fs.free_bytes": str(host.disk_total - disk_used),
                "fs.percent": _num(host.disk),
                "net.rx_bytes_per_s": _num(host.rx),
                "net.tx_bytes_per_s": _num(host.rx * 0.4),
                "system.boot_time": _num(host.started_at),
                "system.uptime_seconds": _num(uptime),
            }
            share = host.cpu * host.cores
            for n in range(top_count):
                share *= 0.5
                values[f"top.{n}"] = _num(share * rng.uniform(0.6, 1.0) + 0.05)
            host_text = _text(host.id)
            return template.fill(
                _text(message_id),
                repr(now),
                host_text,
                host_text,
                repr(now),
                host_text,
                *(values[name] for name in names),
            )

        return template, fill

    def _beat_template(self) -> Template:
        beat = HostBeat(
            host="h",
            name="h",
            version=__version__,
            agents=AGENTS,
            labels={"role": "web"},
            started_at=0.0,
            sent_at=0.0,
            interval=self.config.heartbeat_interval,
            sample_interval=self.config.interval,
        ).model_dump(mode="json")
        for n, key in enumerate(
            ("host", "name", "labels", "started_at", "sent_at", "status", "score", "firing"),
            start=4,
        ):
            beat[key] = _slot(n)
        beat["last_sample_at"] = _slot(12)
        return Template(
            {
                "id": _slot(0),
                "topic": FLEET_HEARTBEAT.name,
                "sender": "fleet",
                "timestamp": _slot(1),
                "correlation_id": None,
                "reply_to": None,
                "host": _slot(2),
                "origin": _slot(3),
                "payload": beat,
            }
        )

    # -- traffic -------------------------------------------------------------------------

    def _drift(self, host: _Host) -> None:
        rng = self.rng
        host.cpu = min(100.0, max(0.5, host.cpu + rng.gauss(0, 3) + (host.cpu_base - host.cpu) / 8))
        host.memory = min(99.0, max(5.0, host.memory + rng.gauss(0, 0.5)))
        host.disk = min(99.5, max(1.0, host.disk + rng.gauss(0.01, 0.05)))
        host.rx = max(100.0, host.rx * math.exp(rng.gauss(0, 0.1)))

    def sample(self, host: _Host, now: float) -> Outgoing:
        """This tick's ``metrics.sample`` of ``host``."""
        host.last_sample_at = now
        message_id = uuid.uuid4().hex
        body = self._sample_fill(host, now, message_id)
        return subject(self.config.prefix, host.id, METRICS_SAMPLE.name), body, message_id, False

    def beat(self, host: _Host, now: float) -> Outgoing:
        """This tick's ``fleet.heartbeat`` of ``host``."""
        firing = len(host.open)
        worst = max((SEVERITY_RANK[a.severity] for a, _, _ in host.open), default=0)
        status = ("healthy", "degraded", "critical")[worst if firing else 0]
        score = 100.0 - 15.0 * firing - (20.0 if worst == 2 else 0.0)
        host_text = _text(host.id)
        message_id = uuid.uuid4().hex
        body = self._beat_t.fill(
            _text(message_id),
            repr(now),
            host_text,
            host_text,
            host_text,
            host_text,
            json.dumps(host.labels, separators=(",", ":")),
            _num(host.started_at),
            repr(now),
            _text(status),
            _num(max(0.0, score)),
            str(firing),
            repr(host.last_sample_at) if host.last_sample_at is not None else "null",
        )
        return subject(self.config.prefix, host.id, FLEET_HEARTBEAT.name), body, message_id, False

    def _event(self, host: _Host, topic: str, value: Any, sender: str, now: float) -> Outgoing:
        message = Message(topic=topic, sender=sender, value=value, host=host.id, timestamp=now)
        body = json.dumps(message.to_dict(), separators=(",", ":")).encode()
        return subject(self.config.prefix, host.id, topic), body, message.id, True

    def _alert(self, host: _Host, now: float) -> Alert:
        rule, subj, severity, summary, remedy = self.rng.choice(TROUBLES)
        value = {"disk_full": host.disk, "memory_high": host.memory}.get(rule, host.cpu)
        if rule == "load_high":
            value = host.cpu / 100 * 1.5
        actions = (
            [SuggestedAction(action=remedy, target=subj, target_kind="service", reason=summary)]
            if remedy
            else []
        )
        return Alert(
            id=uuid.uuid4().hex[:12],
            fingerprint=fingerprint_of(rule, subj),
            rule=rule,
            severity=severity,
            subject=subj,
            summary=summary.format(value=max(value, 90.0 if "full" in rule else value)),
            evidence={"value": round(value, 2)},
            suggested_actions=actions,
            started_at=now,
            updated_at=now,
            labels=dict(host.labels),
        )

    def tick(self, host: _Host, now: float) -> Iterator[Outgoing]:
        """Everything ``host`` sends on one of its ticks: its sample, every other tick a
        heartbeat, and the alerts and remediations that fall due."""
        self._drift(host)
        yield self.sample(host, now)
        every = max(1, round(self.config.heartbeat_interval / self.config.interval))
        if host.tick % every == 0:
            yield self.beat(host, now)
        still: list[tuple[Alert, int, int | None]] = []
        for alert, ends, fix in host.open:
            if fix is not None and host.tick == fix:
                yield self._remedy(host, alert, now, running=True)
            if fix is not None and host.tick == fix + 1:
                yield self._remedy(host, alert, now, running=False)
            if host.tick >= ends:
                done = alert.model_copy(
                    update={"state": AlertState.RESOLVED, "resolved_at": now, "updated_at": now}
                )
                yield self._sent_alert(host, done, ALERT_RESOLVED.name, now)
            else:
                still.append((alert, ends, fix))
        host.open = still
        if len(host.open) < 3 and self.rng.random() < self.config.alert_chance:
            alert = self._alert(host, now)
            fix = host.tick + 1 if self.rng.random() < self.config.remediation_share else None
            ends = host.tick + (3 if fix is not None else self.rng.randint(2, 8))
            host.open.append((alert, ends, fix))
            yield self._sent_alert(host, alert, ALERT_FIRING.name, now)
        host.tick += 1

    def _sent_alert(self, host: _Host, alert: Alert, topic: str, now: float) -> Outgoing:
        if self.on_alert is not None:
            self.on_alert(host.id, alert, topic, now)
        return self._event(host, topic, alert, "analyzer", now)

    def _remedy(self, host: _Host, alert: Alert, now: float, *, running: bool) -> Outgoing:
        outcome = ActionOutcome.RUNNING if running else ActionOutcome.SUCCEEDED
        action = alert.suggested_actions[0] if alert.suggested_actions else None
        record = ActionRecord(
            id=f"{alert.id}-fix",
            action=action.action if action else "clean_temp",
            target=alert.subject,
            target_kind=action.target_kind if action else "path",
            proposer="rule",
            proposed_by=alert.rule,
            reason=alert.summary,
            alert_id=alert.id,
            fingerprint=alert.fingerprint,
            outcome=outcome,
            detail="" if running else "verified",
            created_at=now,
            started_at=now,
            finished_at=None if running else now,
            duration_s=None if running else round(self.rng.uniform(0.2, 3.0), 2),
            verified=None if running else True,
        )
        topic = REMEDIATION_OUTCOMES[outcome.value].name
        return self._event(host, topic, record, "remediator", now)

    # -- sending -------------------------------------------------------------------------

    async def run(
        self, url: str, *, stats: SimStats | None = None, connect_timeout: float = 5.0
    ) -> SimStats:
        """Connect to ``url`` and send every host's traffic for ``config.duration`` s."""
        import nats

        stats = stats if stats is not None else SimStats()
        nc = await asyncio.wait_for(
            nats.connect(
                url,
                name="watchkeeper-fleet-sim",
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                connect_timeout=2,
            ),
            timeout=connect_timeout,
        )
        try:
            await self.send(nc, stats)
        finally:
            await nc.drain()
        return stats

    async def send(self, nc: Client, stats: SimStats) -> None:
        """Send on an open connection; hosts spread evenly over the interval."""
        js = nc.jetstream()
        config = self.config
        stats.hosts = len(self.hosts)
        pending: set[asyncio.Task[None]] = set()
        acks = asyncio.Semaphore(256)
        slots = max(1, min(len(self.hosts), int(config.interval / 0.02)))
        slot_len = config.interval / slots
        wheel: list[list[_Host]] = [[] for _ in range(slots)]
        for host in self.hosts:
            wheel[host.index * slots // max(1, len(self.hosts))].append(host)
        cpu0, t0 = time.process_time(), time.monotonic()
        n = 0
        end = t0 + config.duration
        while True:
            due = t0 + n * slot_len
            if due >= end or time.monotonic() >= end:
                break
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            lag = time.monotonic() - due
            stats.max_lag_s = max(stats.max_lag_s, lag)
            stats.late_ticks += lag > slot_len
            if lag > config.interval:
                # A whole round behind (the server slowed us down): a real host does not
                # send the samples it never took, so skip to the present.
                behind = int(lag / slot_len)
                stats.skipped += sum(len(wheel[(n + k) % slots]) for k in range(behind))
                n += behind
                continue
            now = self.clock()
            for host in wheel[n % slots]:
                for subj, body, msg_id, event in self.tick(host, now):
                    stats.bytes += len(body)
                    if not event:
                        if subj.endswith(FLEET_HEARTBEAT.name):
                            stats.beats += 1
                        else:
                            stats.samples += 1
                        await nc.publish(subj, body, headers=self._telemetry_headers)
                        continue
                    stats.events += 1
                    if ".alert." in subj:
                        stats.alerts += subj.endswith(ALERT_FIRING.name)
                    elif subj.endswith(REMEDIATION_OUTCOMES["succeeded"].name):
                        stats.remediations += 1
                    await acks.acquire()
                    task = asyncio.create_task(self._publish_event(js, subj, body, msg_id, stats))
                    task.add_done_callback(lambda _t: acks.release())
                    pending.add(task)
                    task.add_done_callback(pending.discard)
            n += 1
        if pending:
            await asyncio.wait(pending, timeout=10)
        await nc.flush(timeout=10)
        stats.wall_s = time.monotonic() - t0
        stats.cpu_s = time.process_time() - cpu0
        stats.rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def _headers(self, message_id: str) -> dict[str, str]:
        return {MSG_ID_HEADER: message_id, INSTANCE_HEADER: self.instance}

    @property
    def _telemetry_headers(self) -> dict[str, str]:
        return {INSTANCE_HEADER: self.instance}

    async def _publish_event(
        self, js: JetStreamContext, subj: str, body: bytes, msg_id: str, stats: SimStats
    ) -> None:
        try:
            ack = await js.publish(subj, body, timeout=5.0, headers=self._headers(msg_id))
        except Exception as exc:  # a missing stream, a timeout: counted, the run goes on
            stats.errors += 1
            stats.last_error = f"{type(exc).__name__}: {exc}"[:200] + (
                f" (is the {EVENTS_STREAM} stream there?)" if "stream" in str(exc).lower() else ""
            )
            return
        stats.acked += 1
        stats.duplicates += bool(ack.duplicate)


def _alert_logger(out: IO[str]) -> Callable[[str, Alert, str, float], None]:
    def log(host: str, alert: Alert, topic: str, sent_at: float) -> None:
        line = {"host": host, "alert_id": alert.id, "topic": topic, "sent_at": sent_at}
        out.write(json.dumps(line) + "\n")
        out.flush()

    return log


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m watchkeeper.testing.fleet_sim",
        description="Synthetic watchkeeper hosts publishing realistic traffic to NATS.",
    )
    parser.add_argument("--url", default="nats://127.0.0.1:4222", help="NATS server URL")
    parser.add_argument("--hosts", type=int, default=100, help="how many hosts (1-100000)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--heartbeat", type=float, default=10.0, help="seconds between beats")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds to run")
    parser.add_argument("--prefix", default="wk", help="subject prefix ([bus] subject_prefix)")
    parser.add_argument("--host-prefix", default="sim", help="host ids: <prefix>-00042")
    parser.add_argument(
        "--alerts-per-min", type=float, default=None, help="alerts a minute, whole fleet"
    )
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--events-log", type=Path, help="write one JSON line per alert sent")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line: run, print one summary line; 2 on bad arguments or no server."""
    args = _parser().parse_args(argv)
    if not 1 <= args.hosts <= 100_000:
        print("fleet_sim: --hosts must be between 1 and 100000", file=sys.stderr)
        return 2
    if not 0.1 <= args.interval <= 3600 or args.duration <= 0 or args.heartbeat < args.interval:
        print(
            "fleet_sim: --interval must be 0.1-3600 s, --duration above 0 and --heartbeat at "
            "least the interval",
            file=sys.stderr,
        )
        return 2
    if not re.match(r"^[a-z0-9][a-z0-9_-]{0,50}$", args.host_prefix):
        print(
            "fleet_sim: --host-prefix must be lower-case letters, digits, - or _", file=sys.stderr
        )
        return 2
    config = SimConfig(
        hosts=args.hosts,
        interval=args.interval,
        heartbeat_interval=args.heartbeat,
        duration=args.duration,
        prefix=args.prefix,
        host_prefix=args.host_prefix,
        alerts_per_min=args.alerts_per_min,
        seed=args.seed,
    )
    sim = FleetSim(config)
    log = args.events_log.open("a", encoding="utf-8") if args.events_log else None
    if log is not None:
        sim.on_alert = _alert_logger(log)
    try:
        stats = asyncio.run(asyncio.wait_for(sim.run(args.url), config.duration + 30))
    except (OSError, TimeoutError) as exc:
        print(f"fleet_sim: cannot reach or talk to {args.url}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # nats-py's connect errors are not OSErrors
        if type(exc).__module__.startswith("nats"):
            print(
                f"fleet_sim: NATS error at {args.url}: {type(exc).__name__}: {exc}", file=sys.stderr
            )
            return 2
        raise
    finally:
        if log is not None:
            log.close()
    print(json.dumps(stats.as_dict()) if args.json else stats.summary(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
