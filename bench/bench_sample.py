"""How long one full metrics sample takes, on this machine and with 1,000 more processes.

The SensorAgent samples every second, so ``Sampler.sample()`` must stay far below that
even on a crowded host. This script times it (after a warm-up sample) with the machine's
own processes, then again with extra idle processes it starts itself, and writes the
numbers to ``bench/results/sample.json``::

    python bench/bench_sample.py                 # 200 samples per phase, 1,000 extra
    python bench/bench_sample.py --samples 50 --extra 1000 --extra 2000

The extra processes are plain ``sleep`` commands started from argv lists; they are
stopped on every way out (normal end, error, Ctrl-C, SIGTERM), and each sleeps a bounded
time so that even a killed benchmark leaves nothing behind for long.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from watchkeeper.collectors import Sampler, build_default_registry

RESULTS = Path(__file__).resolve().parent / "results" / "sample.json"
SLEEP_SECONDS = 900  # upper bound on how long an orphaned helper could linger


@contextmanager
def idle_processes(count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start ``count`` idle processes and always stop them again."""
    sleep = shutil.which("sleep")
    if sleep is None:
        raise SystemExit("no 'sleep' command found to create idle processes")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count):
            procs.append(
                subprocess.Popen(
                    [sleep, str(SLEEP_SECONDS)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for proc in procs:
            proc.wait()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def run_phase(name: str, samples: int, pause: float, top_n: int) -> dict[str, Any]:
    sampler = Sampler(build_default_registry(top_n=top_n), top_n=top_n)
    sampler.sample()  # warm-up: first-call constants, caches, rate baselines
    time.sleep(pause)
    durations: list[float] = []
    per_collector: dict[str, list[float]] = {}
    process_counts: list[int] = []
    errors: set[str] = set()
    for _ in range(samples):
        started = time.perf_counter()
        sample = sampler.sample()
        durations.append((time.perf_counter() - started) * 1000.0)
        for collector, ms in sampler.last_timings.items():
            per_collector.setdefault(collector, []).append(ms)
        if sample.processes is not None:
            process_counts.append(sample.processes.total)
        errors.update(sample.errors)
        time.sleep(pause)
    result = {
        "phase": name,
        "samples": samples,
        "processes_median": int(statistics.median(process_counts)) if process_counts else None,
        "median_ms": round(statistics.median(durations), 3),
        "p95_ms": round(percentile(durations, 0.95), 3),
        "mean_ms": round(statistics.fmean(durations), 3),
        "min_ms": round(min(durations), 3),
        "max_ms": round(max(durations), 3),
        "collector_median_ms": {
            key: round(statistics.median(values), 3) for key, values in per_collector.items()
        },
        "failed_families": sorted(errors),
    }
    print(
        f"{name:>12}: {result['processes_median']} processes, median {result['median_ms']} ms, "
        f"p95 {result['p95_ms']} ms  ({result['collector_median_ms']})",
        flush=True,
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200, help="timed samples per phase")
    parser.add_argument(
        "--extra",
        type=int,
        action="append",
        help="idle processes to add for a phase; repeat for several phases (default 1000)",
    )
    parser.add_argument("--pause", type=float, default=0.02, help="seconds between samples")
    parser.add_argument("--top-n", type=int, default=10)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    # SIGTERM takes the same clean-up path as Ctrl-C.
    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)

    phases = [run_phase("baseline", args.samples, args.pause, args.top_n)]
    for extra in args.extra or [1000]:
        with idle_processes(extra):
            time.sleep(0.5)  # let the last ones finish exec'ing into sleep
            phases.append(run_phase(f"+{extra} idle", args.samples, args.pause, args.top_n))

    report = {
        "benchmark": "Sampler.sample() with the default registry",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
        },
        "settings": {"samples": args.samples, "pause_s": args.pause, "top_n": args.top_n},
        "phases": phases,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
