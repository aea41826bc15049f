"""Time to heal: SIGKILL a process-managed service → it answers its probe again.

For the ``process`` backend at 1 s and 5 s sampling intervals, a real ``watchkeeper run``
watches the demo service; the benchmark kills it ``KILLS`` times and times each heal by
connecting to its port until it answers. The demo service's own start time (launch →
answering, without watchkeeper) is reported beside it, because no heal can beat it.

    python bench/bench_heal.py            # writes bench/results/heal.json
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import watchkeeper.testing.demo_service as demo
from _common import machine_info, percentile, write_result

KILLS = 20
DEMO = demo.__file__


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return conn.recv(16).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def wait(predicate, timeout: float) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if predicate():
            return time.perf_counter() - start
        time.sleep(0.002)
    raise TimeoutError("condition not met")


def service_start_times(runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        port = free_port()
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", DEMO, "--port", str(port)], stderr=subprocess.DEVNULL
        )
        try:
            wait(lambda port=port: answers(port), 10)
            out.append(time.perf_counter() - start)
        finally:
            proc.kill()
            proc.wait()
    return out


def heal_times(interval: float) -> dict[str, object]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        pidfile = Path(tmp) / "demo.pid"
        config = Path(tmp) / "watchkeeper.toml"
        config.write_text(
            f"""
data_dir = {json.dumps(tmp + "/data")}
personality = "plain"
log_level = "WARNING"
[agents]
check_interval = {interval}
[ollama]
enabled = false
[remediation]
healing_cooldown = 0
[[services]]
name = "demo"
argv = [{json.dumps(sys.executable)}, "-I", "-S", {json.dumps(DEMO)}, "--port", "{port}"]
pidfile = {json.dumps(str(pidfile))}
critical = true
min_uptime = 0.3
probe = {{ kind = "tcp", port = {port}, timeout = 0.5 }}
"""
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
        daemon = subprocess.Popen(
            [sys.executable, "-m", "watchkeeper", "run", "--no-web", "--config", str(config)],
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        times: list[float] = []
        try:
            wait(lambda: answers(port) and pidfile.exists(), 30)
            for _ in range(KILLS):
                time.sleep(1.0)  # past min_uptime, like a real crash of a settled service
                pid = int(pidfile.read_text().split()[0])
                start = time.perf_counter()
                os.kill(pid, signal.SIGKILL)
                wait(lambda pid=pid: not os.path.exists(f"/proc/{pid}") or _zombie(pid), 5)
                wait(lambda: answers(port), 15)
                times.append(time.perf_counter() - start)
                wait(
                    lambda pid=pid: pidfile.exists() and int(pidfile.read_text().split()[0]) != pid,
                    15,
                )
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=20)
    return {
        "interval_s": interval,
        "kills": len(times),
        "heal_p50_s": round(statistics.median(times), 4),
        "heal_p95_s": round(percentile(times, 0.95), 4),
        "heal_max_s": round(max(times), 4),
    }


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except OSError:
        return True


def main() -> dict[str, object]:
    starts = service_start_times(20)
    result: dict[str, object] = {
        "benchmark": "heal",
        "machine": machine_info(),
        "service_start_p50_s": round(statistics.median(starts), 4),
        "service_start_p95_s": round(percentile(starts, 0.95), 4),
        "targets": {"p50_s": 0.2, "p95_s": 0.5},
        "process_backend": [heal_times(1.0), heal_times(5.0)],
        "note": (
            "polled backends (systemd, windows) cannot be measured here: "
            "no systemd as PID 1, no Windows"
        ),
    }
    return result


if __name__ == "__main__":
    data = main()
    path = write_result("heal", data)
    print(json.dumps(data, indent=2))
    print(f"written to {path}")
