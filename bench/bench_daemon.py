"""The idle daemon's cost: CPU % of one core and RSS of ``watchkeeper run --no-web``.

For sampling intervals of 5 s and 1 s, start a real daemon (sensor, analyzer, remediator,
communicator, storage; Ollama disabled so no network is involved), let it settle, then
measure its CPU time over ``WINDOW`` seconds of wall time and its RSS and PSS at the end
(PSS shares the libraries' pages among the processes that map them: the fairer size).
Targets on a 2-core machine: under 0.3 % of one core at 5 s, under 1 % at 1 s.

    python bench/bench_daemon.py          # writes bench/results/daemon.json
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_result

WINDOW = float(os.environ.get("BENCH_DAEMON_WINDOW", "60"))
SETTLE = 10.0


def measure(interval: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
        env["WATCHKEEPER_OLLAMA__ENABLED"] = "false"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "watchkeeper",
                "run",
                "--no-web",
                "--interval",
                str(interval),
                "--data-dir",
                f"{tmp}/data",
                "--log-level",
                "WARNING",
            ],
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            daemon = psutil.Process(proc.pid)
            time.sleep(SETTLE)
            before = daemon.cpu_times()
            start = time.monotonic()
            time.sleep(WINDOW)
            after = daemon.cpu_times()
            wall = time.monotonic() - start
            memory = daemon.memory_full_info()
            threads = daemon.num_threads()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    cpu = (after.user - before.user) + (after.system - before.system)
    return {
        "interval_s": interval,
        "window_s": round(wall, 1),
        "cpu_percent_of_one_core": round(100 * cpu / wall, 3),
        "rss_mb": round(memory.rss / 2**20, 1),
        "pss_mb": round(memory.pss / 2**20, 1),
        "threads": threads,
    }


def main() -> dict[str, object]:
    return {
        "benchmark": "daemon",
        "machine": machine_info(),
        "targets": {"cpu_percent_at_5s": 0.3, "cpu_percent_at_1s": 1.0},
        "runs": [measure(5.0), measure(1.0)],
    }


if __name__ == "__main__":
    result = main()
    path = write_result("daemon", result)
    print(json.dumps(result, indent=2))
    print(f"written to {path}")
