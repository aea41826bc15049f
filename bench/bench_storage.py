"""Storage: the cost of one sample, growth per day at a 5 s interval, and a 24 h query.

One simulated day is written exactly as the daemon writes it (one transaction per sample,
timestamps 5 s apart) from a real ``MetricsSample.flat()`` of this host with jittered
values, then rolled up into one-minute aggregates. Sizes come from SQLite's own page
accounting (``dbstat``), so raw values and aggregates are counted separately::

    python bench/bench_storage.py            # writes bench/results/storage.json
    python bench/bench_storage.py --hours 3  # a quicker, extrapolated run
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, percentile, write_result
from watchkeeper.storage import Storage, SyncStorage

INTERVAL = 5.0
START = 1_700_000_040.0  # minute-aligned


def real_flat() -> tuple[dict[str, float], str]:
    """A flat sample of this host (two readings, so rates are present)."""
    try:
        from watchkeeper.collectors import Sampler, build_default_registry

        sampler = Sampler(build_default_registry(top_n=10))
        sampler.sample()
        time.sleep(0.5)
        flat = sampler.sample().flat()
        if len(flat) >= 40:
            return flat, "real"
    except Exception as exc:  # collectors still being finished: fall back
        print(f"collectors unavailable ({exc}); using a synthetic sample", file=sys.stderr)
    return {f"synthetic.metric_{i}": float(i) for i in range(120)}, "synthetic"


class Jitter:
    """Values that move like a host's: percentages wander, counters stay whole."""

    def __init__(self, base: dict[str, float], seed: int = 1) -> None:
        self.base = base
        self.rng = random.Random(seed)

    def next(self) -> dict[str, float]:
        out = {}
        for name, value in self.base.items():
            if value == int(value) and abs(value) > 1000:  # totals, byte counts, boot time
                out[name] = (
                    value if self.rng.random() < 0.9 else value + self.rng.randint(-4096, 4096)
                )
            elif value == int(value):  # small counts (tcp states, processes)
                out[name] = float(max(0, int(value) + self.rng.randint(-1, 1)))
            else:
                out[name] = max(0.0, value * self.rng.uniform(0.8, 1.2))
        return out


def table_bytes(path: Path) -> dict[str, int]:
    """Bytes per table and index, from SQLite's page accounting."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
        return {str(name): int(size) for name, size in rows}
    finally:
        conn.close()


def write_day(path: Path, flat: dict[str, float], hours: float) -> dict[str, Any]:
    clock = [START]
    samples = int(hours * 3600 / INTERVAL)
    jitter = Jitter(flat)
    timings: list[float] = []
    with SyncStorage(path, clock=lambda: clock[0]) as db:
        for i in range(samples):
            values = jitter.next()
            ts = START + i * INTERVAL
            started = time.perf_counter()
            db.write_sample(ts, values)
            timings.append((time.perf_counter() - started) * 1000)
        raw_sizes = table_bytes(path)
        clock[0] = START + samples * INTERVAL + 30
        for _ in range(int(hours // 6) + 2):  # roll-up catches up in 6-hour steps
            db.maintain()
    sizes = table_bytes(path)
    return {"samples": samples, "timings": timings, "raw_sizes": raw_sizes, "sizes": sizes}


def time_queries(path: Path, names: list[str], hours: float) -> dict[str, list[float]]:
    end = START + hours * 3600
    out: dict[str, list[float]] = {"agg_60s": [], "raw_5s_1h": []}
    now = end + 60
    with SyncStorage(path, clock=lambda: now, readonly=True) as db:
        for round_no in range(3):
            for name in names:
                started = time.perf_counter()
                points = db.metric_range(name, end - 86400, end, 60)
                out["agg_60s"].append((time.perf_counter() - started) * 1000)
                if round_no == 0 and not points:
                    raise RuntimeError(f"no points for {name}")
                started = time.perf_counter()
                db.metric_range(name, end - 3600, end, 5)
                out["raw_5s_1h"].append((time.perf_counter() - started) * 1000)
    return out


async def async_write_cost(path: Path, flat: dict[str, float], count: int) -> list[float]:
    storage = Storage(path)
    await storage.open()
    jitter = Jitter(flat, seed=2)
    timings = []
    try:
        for i in range(count):
            values = jitter.next()
            started = time.perf_counter()
            await storage.write_sample(START + i * INTERVAL, values)
            timings.append((time.perf_counter() - started) * 1000)
    finally:
        await storage.close()
    return timings


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(values), 4),
        "p95_ms": round(percentile(values, 0.95), 4),
        "n": len(values),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours to write")
    args = parser.parse_args()
    flat, kind = real_flat()
    print(f"{len(flat)} metrics per sample ({kind}); writing {args.hours:g} h at 5 s")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "watchkeeper.db"
        day = write_day(path, flat, args.hours)
        raw_bytes = day["raw_sizes"].get("sample", 0)
        names_bytes = day["raw_sizes"].get("metric", 0) + day["raw_sizes"].get(
            "sqlite_autoindex_metric_1", 0
        )
        agg_bytes = day["sizes"].get("sample_1m", 0)
        scale = 24.0 / args.hours
        raw_mb_day = raw_bytes * scale / 1e6
        agg_mb_day = agg_bytes * scale / 1e6
        names = sorted(flat)[:: max(1, len(flat) // 20)]
        queries = time_queries(path, names, args.hours)
        file_mb = path.stat().st_size / 1e6
        async_timings = asyncio.run(async_write_cost(Path(tmp) / "async.db", flat, 500))

    result = {
        "machine": machine_info(),
        "sample": {"metrics": len(flat), "source": kind, "interval_s": INTERVAL},
        "simulated_hours": args.hours,
        "write_one_sample_sync": summary(day["timings"]),
        "write_one_sample_async": summary(async_timings),
        "raw_mb_per_day": round(raw_mb_day, 2),
        "raw_bytes_per_value": round(raw_bytes / (day["samples"] * len(flat)), 2),
        "aggregate_mb_per_day": round(agg_mb_day, 2),
        "aggregate_bytes_per_row": round(agg_bytes / (len(flat) * args.hours * 60), 2),
        "metric_names_kb": round(names_bytes / 1e3, 1),
        "steady_state_mb": {
            "raw_24h": round(raw_mb_day, 1),
            "aggregates_30d": round(agg_mb_day * 30, 1),
            "total": round(raw_mb_day + agg_mb_day * 30, 1),
        },
        "db_file_mb_after_run": round(file_mb, 2),
        "query_24h_at_60s": summary(queries["agg_60s"]),
        "query_1h_at_5s_raw": summary(queries["raw_5s_1h"]),
    }
    out = write_result("storage", result)
    print(
        f"one sample: median {result['write_one_sample_sync']['median_ms']} ms, "
        f"p95 {result['write_one_sample_sync']['p95_ms']} ms (async "
        f"{result['write_one_sample_async']['median_ms']} / "
        f"{result['write_one_sample_async']['p95_ms']} ms)"
    )
    print(
        f"growth: raw {raw_mb_day:.1f} MB/day, aggregates {agg_mb_day:.2f} MB/day; steady "
        f"state {result['steady_state_mb']['total']} MB"
    )
    print(f"24 h at 60 s: median {result['query_24h_at_60s']['median_ms']} ms -> {out}")


if __name__ == "__main__":
    main()
