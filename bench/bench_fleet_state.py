"""The fleet view's cost per message: FleetAgent, FleetState and the fleet judge.

At 1,000 and 5,000 hosts, each sending a sample every 5 s and a heartbeat every 10 s, the
central host's fleet agent handles 300 and 1,500 messages a second. This benchmark feeds
a real FleetAgent on an in-memory bus with JSON envelopes as the NATS backend hands them
over (a real sample of this machine, real heartbeats and alerts) and times, per message:

- the whole path: ``bus.deliver`` and the agent's handler (what the agent adds to the bus);
- each engine on its own: ``observe_sample`` (raw JSON kept), ``observe_beat`` (parsed),
  and an alert parsed, kept and judged (a fleet incident opening and growing to every
  host);
- the reads: ``hosts(now)`` (the fleet list), ``host_view`` (one host, its sample parsed);
- the memory the state and judge hold (tracemalloc, in a pass of its own), beside the
  state's own estimate.

    python bench/bench_fleet_state.py        # writes bench/results/fleet_state.json
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, percentile, write_result
from watchkeeper.agents.base import AgentContext
from watchkeeper.agents.fleet import FleetAgent
from watchkeeper.bus import InMemoryBus, Message
from watchkeeper.config import Settings
from watchkeeper.fleet.judge import FleetJudge
from watchkeeper.fleet.state import FleetState
from watchkeeper.model.alerts import Alert, fingerprint_of
from watchkeeper.model.fleet import HostBeat
from watchkeeper.testing.fleet_sim import real_sample

SIZES = (1_000, 5_000)
ROUNDS = 3  # sample rounds per size (every host once a round)


def envelope(host: str, topic: str, payload: dict[str, Any], n: int) -> dict[str, Any]:
    return {
        "id": f"{host}-{n}",
        "topic": topic,
        "sender": "sim",
        "timestamp": time.time(),
        "host": host,
        "origin": host,
        "payload": payload,
    }


def beat_payload(host: str) -> dict[str, Any]:
    beat = HostBeat(
        host=host,
        name=host,
        agents=["sensor", "analyzer", "remediator"],
        sent_at=time.time(),
        interval=10,
        status="healthy",
        score=97.0,
    )
    return beat.model_dump(mode="json")


def alert_payload(host: str, n: int) -> dict[str, Any]:
    now = time.time()
    return Alert(
        id=f"{host}-a{n}",
        fingerprint=fingerprint_of("disk_usage", "/var/log"),
        rule="disk_usage",
        severity="critical",
        subject="/var/log",
        summary="/var/log 97% full",
        started_at=now,
        updated_at=now,
    ).model_dump(mode="json")


def stats_us(times: list[float]) -> dict[str, float]:
    micro = [t * 1e6 for t in times]
    return {
        "median_us": round(statistics.median(micro), 2),
        "p95_us": round(percentile(micro, 0.95), 2),
        "p99_us": round(percentile(micro, 0.99), 2),
        "count": len(micro),
    }


async def whole_path(hosts: list[str], sample: dict[str, Any]) -> dict[str, Any]:
    """deliver + the agent's handlers, for samples, beats and alerts of every host."""
    settings = Settings(data_dir=Path("."), fleet={"role": "central"})
    bus = InMemoryBus(host="central")
    ctx = AgentContext(bus=bus, settings=lambda: settings, data_dir=Path("."))
    agent = FleetAgent("fleet", ctx, interval=1.0, queue=50_000)
    task = asyncio.create_task(agent.run())
    while agent.state.value != "running":
        await asyncio.sleep(0.01)
    try:
        kinds: dict[str, list[float]] = {"sample": [], "beat": [], "alert": []}
        messages = {
            "sample": [envelope(h, "metrics.sample", sample, 0) for h in hosts],
            "beat": [envelope(h, "fleet.heartbeat", beat_payload(h), 1) for h in hosts],
            "alert": [envelope(h, "alert.firing", alert_payload(h, 0), 2) for h in hosts],
        }
        for kind, batch in messages.items():
            for rnd in range(ROUNDS if kind == "sample" else 1):
                built = [Message.from_dict({**e, "id": f"{e['id']}-{rnd}"}) for e in batch]
                target = agent.fleet_state.stats().messages + len(built)
                start = time.perf_counter()
                for message in built:
                    bus.deliver(message)
                while agent.fleet_state.stats().messages < target:  # the handlers drain it
                    await asyncio.sleep(0)
                elapsed = time.perf_counter() - start
                kinds[kind].append(elapsed / len(built))
        await agent.check_once()  # the judge's gathered update goes out
        incidents = agent.fleet_state.incidents()
        return {
            kind: {"per_message_us": round(statistics.median(v) * 1e6, 2)}
            for kind, v in kinds.items()
        } | {
            "fleet_incident_hosts": len(incidents[0].hosts) if incidents else 0,
            "bad_messages": agent.bad_messages,
        }
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def memory(hosts: list[str], sample: dict[str, Any], settings: Any) -> int:
    """Bytes a state holds for every host's sample, beat and one firing alert (traced in a
    pass of its own: tracing slows every allocation, so it stays out of the timings)."""
    text = json.dumps(sample)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    state = FleetState(settings)
    judge = FleetJudge(settings)
    now = time.time()
    for host in hosts:
        state.observe_sample(host, json.loads(text), now)
        state.observe_beat(HostBeat.model_validate(beat_payload(host)), now, host=host)
        alert = Alert.model_validate(alert_payload(host, 0))
        state.observe_alert(host, alert, "alert.firing", now)
        for _kind, incident in judge.observe(host, alert, "alert.firing", now):
            state.observe_fleet_incident(incident)
    for _kind, incident in judge.flush(now):
        state.observe_fleet_incident(incident)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held


def engines(hosts: list[str], sample: dict[str, Any]) -> dict[str, Any]:
    settings = Settings(fleet={"role": "central"}).fleet
    held = memory(hosts, sample, settings)
    state = FleetState(settings)
    judge = FleetJudge(settings)
    now = time.time()
    sample_text = json.dumps(sample)
    samples: list[float] = []
    beats: list[float] = []
    alerts: list[float] = []
    for rnd in range(ROUNDS):
        for host in hosts:
            # A raw payload as the bus hands it over: each host's own parsed JSON.
            raw = json.loads(sample_text)
            t0 = time.perf_counter()
            state.observe_sample(host, raw, now + rnd)
            samples.append(time.perf_counter() - t0)
    for host in hosts:
        payload = beat_payload(host)
        t0 = time.perf_counter()
        state.observe_beat(HostBeat.model_validate(payload), now, host=host)
        beats.append(time.perf_counter() - t0)
    for host in hosts:
        payload = alert_payload(host, 0)
        t0 = time.perf_counter()
        alert = Alert.model_validate(payload)
        state.observe_alert(host, alert, "alert.firing", now)
        for _kind, incident in judge.observe(host, alert, "alert.firing", now):
            state.observe_fleet_incident(incident)
        alerts.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    flushed = judge.flush(now)
    flush_s = time.perf_counter() - t0
    reads = []
    for _ in range(20):
        t0 = time.perf_counter()
        rows = state.hosts(now + 1)
        reads.append(time.perf_counter() - t0)
    views = []
    for host in hosts[:200]:
        state.observe_sample(host, dict(sample), now + 1)  # raw again: the view parses it
        t0 = time.perf_counter()
        state.host_view(host, now + 1)
        views.append(time.perf_counter() - t0)
    return {
        "observe_sample": stats_us(samples),
        "observe_beat_parsed": stats_us(beats),
        "alert_parsed_kept_judged": stats_us(alerts),
        "judge_flush_ms": round(flush_s * 1000, 2),
        "fleet_incident_updates": len(flushed),
        "hosts_read_ms": {
            "median": round(statistics.median(reads) * 1000, 2),
            "p95": round(percentile(reads, 0.95) * 1000, 2),
            "rows": len(rows),
        },
        "host_view_ms": {
            "median": round(statistics.median(views) * 1000, 3),
            "p99": round(percentile(views, 0.99) * 1000, 3),
        },
        "memory_mb_traced": round(held / 2**20, 1),
        "memory_mb_estimate": round(state.stats().memory_estimate_bytes / 2**20, 1),
    }


def main() -> int:
    sample = real_sample().model_dump(mode="json")
    result: dict[str, Any] = {"machine": machine_info(), "rounds": ROUNDS, "sizes": {}}
    for size in SIZES:
        hosts = [f"host-{n:05d}" for n in range(size)]
        entry = {"engines": engines(hosts, sample), "agent": asyncio.run(whole_path(hosts, sample))}
        per_s = size / 5 + size / 10  # samples every 5 s, beats every 10 s
        sample_us = entry["agent"]["sample"]["per_message_us"]
        beat_us = entry["agent"]["beat"]["per_message_us"]
        entry["messages_per_s"] = per_s
        entry["cpu_share_of_one_core"] = round(
            (size / 5 * sample_us + size / 10 * beat_us) / 1e6, 4
        )
        result["sizes"][str(size)] = entry
        print(size, entry)
    path = write_result("fleet_state", result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
