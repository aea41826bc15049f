"""Memory over time: does a daemon left running plateau?

A real ``watchkeeper run`` (web on, Ollama disabled) runs for ``--minutes`` at each sampling
interval while the host is busy in the ways that make structures grow: a churn of
short-lived processes (new pids every second, each seen by the process collector), and an
SSE client connected to ``/api/events`` for the whole run. Every ``--every`` seconds the
daemon's RSS, PSS and open file descriptors are read. Reported per interval: the series,
the slope of PSS and RSS (least squares, MB per minute) over the LAST HALF of the run (the
first half includes warming caches and the chart ring filling), and the end values.

``--fast`` plays many samples in a short time: the sensor ticks every 0.1 s, so 12 minutes
hold the 7,200 ticks of two hours at 1 s, which is what every structure bounded by a count
(the chart ring, the bus history, per-process state, the activity log) sees; structures
bounded by time are bounded by configuration whatever the rate.

``--trace`` runs the daemon under tracemalloc and writes, to bench/results/soak_trace.json,
the allocation sites that grew most between the end of the warm-up and the end of the run:
where the memory goes.

    python bench/bench_soak.py                       # short: 5 min at 1 s and at 5 s
    python bench/bench_soak.py --minutes 120 --intervals 1   # the long run
    python bench/bench_soak.py --fast --minutes 12   # two hours of ticks in 12 minutes
    python bench/bench_soak.py --trace --minutes 8 --intervals 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_result

HERE = Path(__file__).resolve().parent
MB = 1024 * 1024

# Run inside the daemon's interpreter when tracing: tracemalloc from the first import, a
# snapshot when asked (SIGUSR2), the comparison written at exit.
TRACER = r"""
import gc, json, os, signal, sys, tracemalloc
tracemalloc.start(8)
out = os.environ["SOAK_TRACE_OUT"]
first = []

def short(path):
    # A module's path from its package down: the same on every machine.
    for cut in ("site-packages/", "/src/", "/lib/python3."):
        if cut in path:
            tail = path.rsplit(cut, 1)[1]
            return tail.split("/", 1)[1] if cut == "/lib/python3." else tail
    return path.rsplit("/", 1)[-1]

def snap(*_):
    gc.collect()
    shot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    if not first:
        first.append(shot)
        return
    stats = shot.compare_to(first[0], "traceback")
    top = []
    for stat in stats[:40]:
        frames = [f"{short(f.filename)}:{f.lineno}" for f in stat.traceback][-4:]
        top.append({"size_diff_kb": round(stat.size_diff / 1024, 1),
                    "count_diff": stat.count_diff, "size_kb": round(stat.size / 1024, 1),
                    "where": frames})
    total = sum(s.size for s in shot.statistics("filename"))
    with open(out + ".tmp", "w") as fh:
        json.dump({"traced_mb_now": round(total / 2**20, 2), "grew": top}, fh, indent=1)
    os.replace(out + ".tmp", out)

signal.signal(signal.SIGUSR2, snap)
sys.argv = ["watchkeeper", *sys.argv[1:]]
from watchkeeper.cli.app import main
main()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Churn(threading.Thread):
    """Starts ``rate`` short-lived processes a second (each lives ``life`` seconds)."""

    def __init__(self, rate: float, life: float = 1.5) -> None:
        super().__init__(daemon=True)
        self.rate, self.life = rate, life
        self.stop = threading.Event()
        self.started_count = 0

    def run(self) -> None:
        children: list[subprocess.Popen[bytes]] = []
        while not self.stop.wait(1.0 / self.rate):
            children.append(subprocess.Popen(["sleep", str(self.life)]))
            self.started_count += 1
            children = [c for c in children if c.poll() is None]
        for child in children:
            child.kill()
            child.wait()


class SseClient(threading.Thread):
    """Reads ``/api/events`` for the whole run, reconnecting if the stream ends."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.bytes = 0
        self.connects = 0

    def run(self) -> None:
        while True:
            try:
                with urllib.request.urlopen(self.url, timeout=30) as stream:
                    self.connects += 1
                    while chunk := stream.read1(65536):
                        self.bytes += len(chunk)
            except OSError:
                time.sleep(0.5)


def slope_mb_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, bytes) points, in MB per minute."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    if var == 0:
        return None
    cov = sum((t - mx) * (v - my) for t, v in points)
    return round(cov / var * 60 / MB, 4)


def wait_up(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2):
            return
        time.sleep(0.3)
    raise SystemExit(f"the daemon did not answer {url} within {timeout:.0f} s")


def soak(
    interval: float, minutes: float, every: float, churn: float, trace: bool
) -> dict[str, Any]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
        env["WATCHKEEPER_OLLAMA__ENABLED"] = "false"
        args = ["run", "--interval", str(interval), "--data-dir", f"{tmp}/data", "--port",
                str(port), "--log-level", "WARNING"]  # fmt: skip
        if trace:
            env["SOAK_TRACE_OUT"] = f"{tmp}/trace.json"
            argv = [sys.executable, "-c", TRACER, *args]
        else:
            argv = [sys.executable, "-m", "watchkeeper", *args]
        proc = subprocess.Popen(
            argv, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        base = f"http://127.0.0.1:{port}"
        series: list[dict[str, float]] = []
        mover = Churn(churn) if churn > 0 else None
        try:
            wait_up(f"{base}/api/health")
            daemon = psutil.Process(proc.pid)
            sse = SseClient(f"{base}/api/events")
            sse.start()
            if mover:
                mover.start()
            start = time.monotonic()
            end = start + minutes * 60
            traced_first = False
            while (now := time.monotonic()) < end:
                info = daemon.memory_full_info()
                series.append({
                    "t_s": round(now - start, 1),
                    "rss_mb": round(info.rss / MB, 2),
                    "pss_mb": round(getattr(info, "pss", info.rss) / MB, 2),
                    "fds": daemon.num_fds(),
                })  # fmt: skip
                if trace and not traced_first and now - start >= minutes * 30:
                    daemon.send_signal(signal.SIGUSR2)  # the baseline: half-way through
                    traced_first = True
                time.sleep(every)
            breakdown = None
            if trace:
                daemon.send_signal(signal.SIGUSR2)
                written = Path(env["SOAK_TRACE_OUT"])
                deadline = time.monotonic() + 300  # a snapshot of a traced heap is slow
                while breakdown is None and time.monotonic() < deadline:
                    time.sleep(2)
                    with contextlib.suppress(OSError, ValueError):
                        breakdown = json.loads(written.read_text())
        finally:
            if mover:
                mover.stop.set()
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    half = [s for s in series if s["t_s"] >= series[-1]["t_s"] / 2]
    return {
        "interval_s": interval,
        "minutes": minutes,
        "churn_per_s": churn,
        "processes_started": mover.started_count if mover else 0,
        "sse_bytes": sse.bytes,
        "sse_connects": sse.connects,
        "pss_slope_last_half_mb_per_min": slope_mb_per_min(
            [(s["t_s"], s["pss_mb"] * MB) for s in half]
        ),
        "rss_slope_last_half_mb_per_min": slope_mb_per_min(
            [(s["t_s"], s["rss_mb"] * MB) for s in half]
        ),
        "pss_end_mb": series[-1]["pss_mb"],
        "rss_end_mb": series[-1]["rss_mb"],
        "fds_start": series[0]["fds"],
        "fds_end": series[-1]["fds"],
        "series": series,
        "trace": breakdown,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", default="1,5", help="sampling intervals, comma-separated")
    parser.add_argument("--minutes", type=float, default=5.0, help="per interval")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between readings")
    parser.add_argument("--churn", type=float, default=2.0, help="short-lived processes a second")
    parser.add_argument("--fast", action="store_true", help="tick every 0.1 s (see above)")
    parser.add_argument("--trace", action="store_true", help="tracemalloc breakdown")
    args = parser.parse_args(argv)
    intervals = [0.1] if args.fast else [float(v) for v in args.intervals.split(",")]
    runs = [soak(i, args.minutes, args.every, args.churn, args.trace) for i in intervals]
    name = "soak_trace" if args.trace else ("soak_fast" if args.fast else "soak")
    data = {"benchmark": name, "machine": machine_info(), "runs": runs}
    print(json.dumps({k: v for k, v in data.items() if k != "runs"}, indent=1))
    for run in runs:
        print(json.dumps({k: v for k, v in run.items() if k not in ("series", "trace")}))
    print(f"written to {write_result(name, data)}")
    return data


if __name__ == "__main__":
    main()
