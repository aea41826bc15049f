"""The fleet simulator sends what real hosts send: every message parses into its topic's
model, sits on its host's subject, and a run against a real nats-server reaches a
subscriber in the numbers the simulator says it sent, spread over the interval."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import nats
import pytest

from watchkeeper.bus import FLEET
from watchkeeper.bus.subjects import is_telemetry, parse_subject
from watchkeeper.collectors.sampler import build_default_registry
from watchkeeper.config.fleet import BusSettings, check_host_id
from watchkeeper.model.actions import ActionRecord
from watchkeeper.model.alerts import Alert
from watchkeeper.model.fleet import HostBeat
from watchkeeper.model.message import Message
from watchkeeper.model.metrics import MetricCatalog, MetricsSample
from watchkeeper.model.topics import BUILTIN
from watchkeeper.testing.fleet_sim import (
    FleetSim,
    Outgoing,
    SimConfig,
    SimStats,
    Template,
    main,
)
from watchkeeper.testing.nats_server import NatsServer


@pytest.fixture(scope="module")
def base() -> MetricsSample:
    from watchkeeper.testing.fleet_sim import real_sample

    return real_sample()


def _traffic(sim: FleetSim, rounds: int, start: float = 1.8e9) -> list[Outgoing]:
    out: list[Outgoing] = []
    for n in range(rounds):
        now = start + n * sim.config.interval
        for host in sim.hosts:
            out.extend(sim.tick(host, now))
    return out


def test_template_fills_slots_by_number_and_keeps_percent_signs() -> None:
    template = Template({"b": "@@1@@", "a": "@@0@@", "text": "100% sure"})
    assert json.loads(template.fill('"x"', "12.5")) == {"b": 12.5, "a": "x", "text": "100% sure"}


def test_every_message_parses_into_its_topics_model_on_its_hosts_subject(
    base: MetricsSample,
) -> None:
    sim = FleetSim(SimConfig(hosts=40, alerts_per_min=400, seed=3), base=base)
    traffic = _traffic(sim, 40)
    topics: Counter[str] = Counter()
    fired: dict[str, Alert] = {}
    resolved: set[str] = set()
    fixes: list[ActionRecord] = []
    catalog = MetricCatalog(build_default_registry().metric_specs())
    for subj, body, msg_id, event in traffic:
        message = Message.from_dict(json.loads(body))
        value = message.value  # parsed by the topic's own model; raises when it does not fit
        assert isinstance(value, BUILTIN.resolve(message.topic).model)
        assert parse_subject("wk", subj) == (message.host, message.topic)
        assert message.origin == message.host and check_host_id(message.host)
        # Telemetry is a plain publish, events go to JetStream; both carry the id.
        assert event != is_telemetry(message.topic)
        assert msg_id == message.id
        topics[message.topic] += 1
        if isinstance(value, MetricsSample):
            assert value.host == message.host
            assert value.processes is not None and len(value.processes.top_cpu) == 10
            assert catalog.undeclared(value.flat()) == []
        elif isinstance(value, HostBeat):
            assert value.host == message.host and value.sample_interval == 5.0
        elif isinstance(value, Alert) and message.topic == "alert.firing":
            fired[value.id] = value
        elif isinstance(value, Alert):
            assert value.id in fired and value.resolved_at is not None
            resolved.add(value.id)
        elif isinstance(value, ActionRecord):
            fixes.append(value)
    assert topics["metrics.sample"] == 40 * 40
    assert topics["fleet.heartbeat"] == 40 * 20  # every 10 s at a 5 s interval
    assert set(topics) >= {
        "alert.firing",
        "alert.resolved",
        "remediation.started",
        "remediation.succeeded",
    }
    assert resolved and resolved <= set(fired)
    assert fixes and all(fix.alert_id in fired for fix in fixes)
    assert len({m[1] for m in traffic}) == len(traffic)  # message ids differ: no two alike


def test_hosts_differ_from_each_other_and_from_tick_to_tick(base: MetricsSample) -> None:
    sim = FleetSim(SimConfig(hosts=20), base=base)
    samples: dict[str, list[MetricsSample]] = defaultdict(list)
    for _subject, body, _id, _event in _traffic(sim, 5):
        message = Message.from_dict(json.loads(body))
        if message.topic == "metrics.sample":
            samples[message.host].append(message.parse(MetricsSample))
    assert len(samples) == 20
    first_cpu = {host: runs[0].cpu.percent for host, runs in samples.items() if runs[0].cpu}
    assert len(set(first_cpu.values())) == 20
    for runs in samples.values():
        assert len({run.cpu.percent for run in runs if run.cpu}) > 1
        memory = runs[0].memory
        assert memory is not None and memory.used_bytes + memory.available_bytes == (
            memory.total_bytes
        )
        cpu = runs[0].cpu
        assert cpu is not None and len(cpu.per_core_percent or ()) == cpu.count


def test_bad_arguments_get_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--hosts", "0"]) == 2
    assert main(["--host-prefix", "Bad.Prefix"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("fleet_sim: ") for line in err)


def test_no_server_is_one_line_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with __import__("socket").socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = main(["--url", f"nats://127.0.0.1:{port}", "--hosts", "2", "--duration", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "fleet_sim: " in err and "Traceback" not in err


async def test_hosts_are_spread_over_the_interval_not_sent_at_once(
    nats_server: NatsServer, base: MetricsSample
) -> None:
    nc = await nats.connect(nats_server.url)
    arrivals: list[float] = []
    loop = asyncio.get_running_loop()

    async def seen(msg: Any) -> None:
        arrivals.append(loop.time())

    await nc.subscribe("wk.*.metrics.sample", cb=seen)
    await nc.flush()
    sim = FleetSim(SimConfig(hosts=100, interval=2.0, duration=2.0), base=base)
    stats = SimStats()
    sender = await nats.connect(nats_server.url)
    await sim.send(sender, stats)
    await sender.close()
    await nc.flush()
    await asyncio.sleep(0.2)
    await nc.close()
    assert stats.samples == 100 and len(arrivals) == 100
    start = min(arrivals)
    # Ten 0.2 s buckets over the 2 s interval: each holds about a tenth, none the herd.
    buckets = Counter(min(9, int((t - start) / 0.2)) for t in arrivals)
    assert max(buckets.values()) <= 20, buckets
    assert len(buckets) == 10, buckets


async def test_fifty_hosts_reach_a_fleet_subscriber_on_a_real_server_exactly(
    nats_server: NatsServer, base: MetricsSample, tmp_path: Path
) -> None:
    from watchkeeper.bus.nats import NatsBus

    settings = BusSettings(backend="nats", servers=[nats_server.url], host_id="central")
    bus = NatsBus(settings, host="central", data_dir=tmp_path / "bus")
    samples = bus.subscribe("metrics.sample", name="sim-samples", maxsize=10_000, scope=FLEET)
    beats = bus.subscribe("fleet.heartbeat", name="sim-beats", maxsize=10_000, scope=FLEET)
    events = bus.subscribe("alert.#", name="sim-alerts", maxsize=10_000, scope=FLEET)
    fixes = bus.subscribe("remediation.#", name="sim-fixes", maxsize=10_000, scope=FLEET)
    await bus.start()
    try:
        assert await bus.wait_connected(timeout=15), bus.status()
        sim = FleetSim(
            SimConfig(
                hosts=50, interval=1.0, heartbeat_interval=2.0, duration=6.0, alerts_per_min=300
            ),
            base=base,
        )
        sent: Counter[tuple[str, str]] = Counter()  # (host, topic) of every alert sent
        alert_ids: set[str] = set()

        def note(host: str, alert: Alert, topic: str, sent_at: float) -> None:
            sent[(host, topic)] += 1
            alert_ids.add(alert.id)

        sim.on_alert = note
        stats = await sim.run(nats_server.url)
        assert stats.errors == 0 and stats.acked == stats.events, stats.last_error
        assert stats.samples == 50 * 6 and stats.beats == 50 * 3 and stats.alerts > 0

        async def drain(sub: Any, want: int) -> list[Message]:
            got: list[Message] = []
            deadline = asyncio.get_running_loop().time() + 20
            while len(got) < want and asyncio.get_running_loop().time() < deadline:
                try:
                    got.append(await asyncio.wait_for(sub.get(), 1.0))
                except TimeoutError:
                    continue
            with contextlib.suppress(TimeoutError):  # and nothing more than was sent
                got.append(await asyncio.wait_for(sub.get(), 0.5))
            return got

        got_samples = await drain(samples, stats.samples)
        got_beats = await drain(beats, stats.beats)
        got_alerts = await drain(events, sum(sent.values()))
        got_fixes = await drain(fixes, stats.events - sum(sent.values()))
    finally:
        await bus.stop()
    per_host = Counter(m.host for m in got_samples)
    assert len(got_samples) == 300 and set(per_host.values()) == {6} and len(per_host) == 50
    assert len(got_beats) == 150 and len({m.host for m in got_beats}) == 50
    assert all(m.parse(HostBeat).host == m.host for m in got_beats)
    assert Counter((m.host, m.topic) for m in got_alerts) == sent
    assert {m.parse(Alert).id for m in got_alerts} == alert_ids
    assert len(got_fixes) == stats.events - sum(sent.values())
    assert all(m.parse(ActionRecord).alert_id in alert_ids for m in got_fixes)
    assert len({m.id for m in got_alerts + got_fixes}) == stats.events  # none twice
    assert bus.status()["dropped"]["malformed"] == 0  # type: ignore[index]


async def test_a_run_that_cannot_keep_up_skips_ticks_and_ends_on_time(
    nats_server: NatsServer, base: MetricsSample
) -> None:
    # 5,000 hosts every 0.1 s is 75,000 messages a second: more than one Python process
    # sends. A real host never sends the samples it did not take, so neither does this.
    config = SimConfig(hosts=5000, interval=0.1, heartbeat_interval=0.2, duration=3.0)
    sim = FleetSim(config, base=base)
    stats = await sim.run(nats_server.url)
    assert stats.wall_s < config.duration + 3, stats.summary()
    assert stats.skipped > 0 and stats.late_ticks > 0
    assert stats.samples + stats.skipped <= 5000 * 30
    assert "host ticks skipped" in stats.summary()
