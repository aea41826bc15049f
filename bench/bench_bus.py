"""Bus throughput and publish→deliver latency.

Throughput: messages per second published to N subscribers and drained by their consumer
tasks (1 and 8 subscribers). Latency: time from ``publish`` to the consumer having the
message in hand, p50 and p99, with a realistic small payload: a model of the bench's
own topic, as every publish carries its topic's model.

    python bench/bench_bus.py            # writes bench/results/bus.json
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pydantic import BaseModel

from _common import machine_info, percentile, write_result
from watchkeeper.bus import InMemoryBus, Topic, TopicRegistry


class Percent(BaseModel):
    percent: float


class Reading(BaseModel):
    cpu: Percent
    memory: Percent
    host: str


PAYLOAD = Reading(cpu=Percent(percent=12.5), memory=Percent(percent=41.0), host="bench")
TOPICS = TopicRegistry([Topic("metrics.sample", Reading), Topic("probe", Reading)])


async def throughput(subscribers: int, messages: int) -> float:
    bus = InMemoryBus(topics=TOPICS.copy())
    subs = [bus.subscribe("metrics.*", name=f"s{i}", maxsize=messages) for i in range(subscribers)]
    done = asyncio.Event()
    remaining = [subscribers]

    async def drain(index: int) -> None:
        sub = subs[index]
        for _ in range(messages):
            await sub.get()
        remaining[0] -= 1
        if not remaining[0]:
            done.set()

    tasks = [asyncio.create_task(drain(i)) for i in range(subscribers)]
    await asyncio.sleep(0)
    start = time.perf_counter()
    for i in range(messages):
        await bus.publish("metrics.sample", PAYLOAD, sender="bench")
        if i % 256 == 0:
            await asyncio.sleep(0)  # let consumers run, as a real publisher would
    await done.wait()
    elapsed = time.perf_counter() - start
    await asyncio.gather(*tasks)
    assert bus.stats().dropped == 0
    return messages / elapsed


async def latency(samples: int, subscribers: int = 1) -> list[float]:
    bus = InMemoryBus(topics=TOPICS.copy())
    subs = [bus.subscribe("probe", name=f"l{i}") for i in range(subscribers)]
    out: list[float] = []
    for _ in range(samples):
        start = time.perf_counter()
        await bus.publish("probe", PAYLOAD, sender="bench")
        await asyncio.gather(*(sub.get() for sub in subs))
        out.append((time.perf_counter() - start) * 1e6)
        await asyncio.sleep(0)
    return out


async def main() -> dict[str, object]:
    runs = 5
    result: dict[str, object] = {"benchmark": "bus", "machine": machine_info()}
    for subs in (1, 8):
        rates = [await throughput(subs, 20_000) for _ in range(runs)]
        result[f"throughput_{subs}_subscribers"] = {
            "messages_per_s_median": round(statistics.median(rates)),
            "deliveries_per_s_median": round(statistics.median(rates) * subs),
            "runs": [round(r) for r in rates],
        }
    for subs in (1, 8):
        lat = await latency(20_000, subs)
        result[f"latency_{subs}_subscribers_us"] = {
            "p50": round(percentile(lat, 0.50), 1),
            "p99": round(percentile(lat, 0.99), 1),
            "samples": len(lat),
        }
    return result


if __name__ == "__main__":
    data = asyncio.run(main())
    path = write_result("bus", data)
    print(json.dumps(data, indent=2))
    print(f"written to {path}")
