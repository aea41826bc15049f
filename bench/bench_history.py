"""History ranges: ``/api/metrics/history`` over a month of this host's metrics, over HTTP.

A database is generated as a daemon sampling every 5 s for 30 days and the retention
policy would leave it: every metric of a real ``MetricsSample.flat()`` of this host,
one-minute aggregates for the older 29 days, raw values for the last day (written through
the real write path), then the real roll-up and retention (which fill the hourly
aggregates). A real ``watchkeeper run`` is started on it (sampling on, at 5 s) and each
dashboard range is asked for over loopback at the dashboard's resolution (the step the
API picks: a few hundred buckets), one metric at a time (``/api/metrics/history``) and
as the dashboard's charts ask (``/api/metrics/history/chart``, every series). Target:
30 days answer within 100 ms median. In-process figures show what the hourly
aggregates save against the minute rows::

    python bench/bench_history.py              # writes bench/results/history.json
    BENCH_HISTORY_REQUESTS=10 python bench/bench_history.py    # quicker
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, percentile, write_result
from watchkeeper.storage import DB_FILENAME, SyncStorage
from watchkeeper.testing.history_seed import DAY, seed_history, wave

REQUESTS = int(os.environ.get("BENCH_HISTORY_REQUESTS", "40"))
RANGES = ("15m", "1h", "24h", "7d", "30d")
METRICS = ("cpu.percent", "memory.percent", "load.1m")
TARGET_MS = 100.0
INTERVAL = 5.0


def host_flat() -> dict[str, float]:
    """Every metric the sensor writes on this host (two readings, so rates are there)."""
    from watchkeeper.collectors import Sampler, build_default_registry

    sampler = Sampler(build_default_registry(top_n=10))
    sampler.sample()
    time.sleep(0.5)
    return sampler.sample().flat()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(values), 2),
        "p95_ms": round(percentile(values, 0.95), 2),
        "n": len(values),
    }


def generate(path: Path, flat: dict[str, float], now: float) -> dict[str, Any]:
    """A month of every metric of ``flat``, each moving on a daily wave around its value."""
    values = {
        name: wave(abs(v), abs(v) * 0.2, phase=zlib.crc32(name.encode()) % 628 / 100)
        for name, v in flat.items()
    }
    started = time.perf_counter()
    report = seed_history(path, now=now, values=values, interval=INTERVAL)
    seconds = time.perf_counter() - started
    conn_rows = {}
    conn = sqlite3.connect(path)
    try:
        for table in ("sample", "sample_1m", "sample_1h"):
            conn_rows[table] = int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()
    return {
        "metrics": len(values),
        "rows": conn_rows,
        "generate_s": round(seconds, 1),
        "maintenance_passes": report.passes,
        "db_mb": round(path.stat().st_size / 1e6, 1),
    }


@contextlib.contextmanager
def daemon(data: Path) -> Iterator[str]:
    """A real ``watchkeeper run`` on ``data`` with the web on a free port: its URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env["WATCHKEEPER_OLLAMA__ENABLED"] = "false"
    args = [sys.executable, "-m", "watchkeeper", "run", "--port", str(port)]
    args += ["--data-dir", str(data), "--log-level", "WARNING", "--interval", str(INTERVAL)]
    proc = subprocess.Popen(
        args, cwd=data, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/api/metrics/names", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise RuntimeError("the daemon did not answer within 60 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def time_requests(client: httpx.Client, path: str, params: dict[str, str]) -> dict[str, Any]:
    timings = []
    body: dict[str, Any] = {}
    for _ in range(REQUESTS):
        started = time.perf_counter()
        reply = client.get(path, params=params)
        timings.append((time.perf_counter() - started) * 1000)
        if reply.status_code != 200:
            raise RuntimeError(f"{path} {params}: {reply.status_code} {reply.text[:200]}")
        body = reply.json()
    buckets = len(body["points"]) if "points" in body else len(body["ts"])
    return {**summary(timings), "step_s": body["step"], "buckets": buckets}


def in_process(path: Path, now: float) -> dict[str, Any]:
    """30 days of cpu.percent read directly: 2 h buckets (hourly rows) next to 2 h 1 min
    buckets (not whole hours, so the minute rows), to show what the hourly tier saves."""
    out: dict[str, list[float]] = {"hourly_rows_2h": [], "minute_rows_2h1m": []}
    with SyncStorage(path, clock=lambda: now, readonly=True) as db:
        for _ in range(REQUESTS):
            for key, step in (("hourly_rows_2h", 7200), ("minute_rows_2h1m", 7260)):
                started = time.perf_counter()
                db.metric_range("cpu.percent", now - 30 * DAY, now, step)
                out[key].append((time.perf_counter() - started) * 1000)
    return {key: summary(values) for key, values in out.items()}


def main() -> None:
    flat = host_flat()
    print(f"{len(flat)} metrics per sample; generating 30 days at 5 s")
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="wk-bench-history-"))
    try:
        data = tmp / "data"
        data.mkdir()
        now = time.time()
        db = generate(data / DB_FILENAME, flat, now)
        print(f"database: {db}")
        single: dict[str, dict[str, Any]] = {}
        chart: dict[str, Any] = {}
        with daemon(data) as url, httpx.Client(base_url=url, timeout=30) as client:
            for range_ in RANGES:
                for metric in METRICS:
                    params = {"metric": metric, "range": range_}
                    got = time_requests(client, "/api/metrics/history", params)
                    single.setdefault(range_, {})[metric] = got
                chart[range_] = time_requests(
                    client, "/api/metrics/history/chart", {"range": range_}
                )
                cpu = single[range_]["cpu.percent"]
                print(
                    f"{range_:>4}: history median {cpu['median_ms']} ms p95 {cpu['p95_ms']} ms "
                    f"({cpu['buckets']} x {cpu['step_s']:g} s); chart median "
                    f"{chart[range_]['median_ms']} ms p95 {chart[range_]['p95_ms']} ms"
                )
        direct = in_process(data / DB_FILENAME, time.time())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    month = single["30d"]["cpu.percent"]
    result = {
        "machine": machine_info(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "database": db,
        "requests_per_case": REQUESTS,
        "history": single,
        "chart": chart,
        "in_process_30d": direct,
        "target": {
            "history_30d_median_ms": TARGET_MS,
            "met": month["median_ms"] <= TARGET_MS and chart["30d"]["median_ms"] <= TARGET_MS,
        },
    }
    out = write_result("history", result)
    print(f"in process, 30 d: {direct}")
    print(f"target {TARGET_MS} ms median at 30 d met: {result['target']['met']} -> {out}")


if __name__ == "__main__":
    main()
