"""The central analyzer's cost per host-sample when it analyses many hosts.

A real ``AnalyzerAgent`` with ``[fleet] role = "central"`` runs under the supervisor on
the in-memory bus; 100 and 1,000 hosts (no analyzer of their own, as their heartbeats say)
send one sample each per round for a number of rounds, handed to the bus the way the NATS
backend hands over what it receives (``bus.deliver``). The samples are one real sample of
this machine, varied per host and round (CPU, load, memory); one host in ten runs hot
(CPU 97 %) for a stretch, so alerts, incidents and analyses are published about it too.

Per round the wall time from handing over the first sample to the last one analysed is
divided by the hosts: milliseconds per host-sample, median, p95 and p99, and the CPU time
per host-sample over the whole run. Memory: the process's RSS growth over the run.

    python bench/bench_fleet_analyzer.py      # writes bench/results/fleet_analyzer.json
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import psutil

from _common import machine_info, percentile, write_result
from watchkeeper import __version__
from watchkeeper.agents.analyzer import AnalyzerAgent
from watchkeeper.agents.base import AgentContext
from watchkeeper.bus import InMemoryBus, Message
from watchkeeper.config import Settings, deep_merge
from watchkeeper.live_config import ConfigStore
from watchkeeper.model.fleet import HostBeat
from watchkeeper.model.metrics import MetricsSample
from watchkeeper.supervisor import Supervisor
from watchkeeper.testing.fleet_sim import real_sample

#: Fleet sizes measured, and the rounds (one sample of every host) at each.
SIZES = {100: 120, 1000: 30}
WARMUP = 5


def varied(base: MetricsSample, host: str, n: int, rnd: random.Random, hot: bool) -> MetricsSample:
    cpu, memory = base.cpu, base.memory
    update: dict[str, Any] = {"host": host, "timestamp": base.timestamp + 5.0 * n}
    if cpu is not None:
        percent = 97.0 if hot else max(0.0, min(100.0, 20 + rnd.gauss(0, 8)))
        update["cpu"] = cpu.model_copy(
            update={"percent": percent, "load_1m": max(0.0, rnd.gauss(0.8, 0.2))}
        )
    if memory is not None and memory.percent is not None:
        update["memory"] = memory.model_copy(
            update={"percent": max(0.0, min(99.0, memory.percent + rnd.gauss(0, 2)))}
        )
    return base.model_copy(update=update)


async def run(base: MetricsSample, hosts_n: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        defaults = Settings.model_validate({}).model_dump(mode="json")
        settings = Settings.model_validate(
            deep_merge(
                defaults,
                {
                    "data_dir": tmp,
                    "ollama": {"enabled": False},
                    "bus": {"host_id": "central"},
                    "fleet": {"role": "central"},
                },
            )
        )
        bus = InMemoryBus(host="central")
        store = ConfigStore(settings, None, bus)
        agent = AnalyzerAgent("analyzer", AgentContext(bus=bus, settings=store, data_dir=Path(tmp)))
        published = bus.subscribe("#", name="bench", maxsize=100_000, scope="fleet")
        stop = asyncio.Event()
        task = asyncio.create_task(Supervisor(bus).run([agent], stop))
        while agent.state.value != "running":
            await asyncio.sleep(0.01)
        hosts = [f"sim-{i:04d}" for i in range(hosts_n)]
        for host in hosts:
            beat = HostBeat(
                host=host,
                agents=["sensor", "remediator"],
                sent_at=time.time(),
                interval=10.0,
                version=__version__,
            )
            bus.deliver(
                Message(
                    topic="fleet.heartbeat",
                    sender="orchestrator",
                    value=beat,
                    host=host,
                    origin=host,
                )
            )
        await asyncio.sleep(0.1)
        rnd = random.Random(16)
        per_sample_ms: list[float] = []
        rss_before = psutil.Process().memory_info().rss
        cpu_before = time.process_time()
        done = 0
        for n in range(rounds):
            samples = [
                varied(base, h, n, rnd, hot=(i % 10 == 0 and rounds // 6 <= n < rounds // 2))
                for i, h in enumerate(hosts)
            ]
            messages = [
                Message(
                    topic="metrics.sample", sender="sensor", value=s, host=s.host, origin=s.host
                )
                for s in samples
            ]
            started = time.perf_counter()
            for message in messages:
                bus.deliver(message)
            done += hosts_n
            assert agent.hosts is not None
            while sum(s.samples for s in agent.hosts.hosts.values()) < done:
                await asyncio.sleep(0)
            if n >= WARMUP:
                per_sample_ms.append((time.perf_counter() - started) * 1000 / hosts_n)
            while published.get_nowait() is not None:
                pass
        cpu_s = time.process_time() - cpu_before
        rss_after = psutil.Process().memory_info().rss
        status = agent.status()["fleet"]
        stats = bus.stats()
        stop.set()
        await asyncio.wait_for(task, 30)
    return {
        "hosts": hosts_n,
        "rounds": rounds,
        "warmup_rounds": WARMUP,
        "host_samples_timed": len(per_sample_ms) * hosts_n,
        "ms_per_host_sample": {
            "median": round(statistics.median(per_sample_ms), 4),
            "p95": round(percentile(per_sample_ms, 0.95), 4),
            "p99": round(percentile(per_sample_ms, 0.99), 4),
            "max": round(max(per_sample_ms), 4),
        },
        "cpu_ms_per_host_sample": round(cpu_s * 1000 / (rounds * hosts_n), 4),
        "host_samples_per_core_second": round(rounds * hosts_n / cpu_s) if cpu_s else None,
        "rss_growth_mb": round((rss_after - rss_before) / 2**20, 1),
        "hosts_analysed": status["hosts"],
        "alert_topics_published": {
            k: v for k, v in stats.topics.items() if k.startswith(("alert.", "incident."))
        },
        "processes_in_sample": len(base.processes.top_cpu) if base.processes else 0,
    }


def main() -> None:
    base = real_sample()
    runs = {str(n): asyncio.run(run(base, n, rounds)) for n, rounds in SIZES.items()}
    path = write_result("fleet_analyzer", {"machine": machine_info(), "central_analyzer": runs})
    for r in runs.values():
        ms = r["ms_per_host_sample"]
        print(
            f"{r['hosts']} hosts: {ms['median']} ms a host-sample (p95 {ms['p95']}, "
            f"p99 {ms['p99']}), {r['cpu_ms_per_host_sample']} ms CPU; "
            f"RSS +{r['rss_growth_mb']} MB"
        )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
