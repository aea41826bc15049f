"""The Alertmanager receiver's cost, against a real ``watchkeeper run``.

1. ``POST /api/alertmanager`` latency, p50/p95 over ``ROUNDS`` rounds, for a group of
   1, 100 and 500 alerts (Alertmanager's webhook format, version 4): a new group firing,
   the same group re-sent unchanged, and the group resolved. The answer comes once the
   analyzer has applied the group, so this is also the time until ``/api/alerts`` shows it.
2. The engine alone (no HTTP, no bus): microseconds per alert to map and apply a group of
   500, fired and then re-sent.

    python bench/bench_alertmanager.py            # writes bench/results/alertmanager.json
    BENCH_AM_ROUNDS=5 python bench/bench_alertmanager.py   # quicker
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, percentile, write_result

ROUNDS = int(os.environ.get("BENCH_AM_ROUNDS", "20"))
SIZES = (1, 100, 500)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def group(round_: int, size: int, status: str) -> dict[str, Any]:
    """A webhook body: ``size`` alerts, each with the labels a node exporter rule has."""
    alerts = [
        {
            "status": status,
            "labels": {
                "alertname": "HighLoad",
                "instance": f"node{n}:9100",
                "job": "node",
                "severity": "warning",
                "round": str(round_),
            },
            "annotations": {"summary": f"load is high on node{n}"},
            "startsAt": "2026-12-02T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": f"{round_:08x}{n:08x}",
        }
        for n in range(size)
    ]
    return {
        "version": "4",
        "status": status,
        "receiver": "watchkeeper",
        "groupKey": f"{{}}:{{round={round_}}}",
        "truncatedAlerts": 0,
        "groupLabels": {"round": str(round_)},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    }


@contextlib.contextmanager
def daemon() -> Iterator[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = Path(tmp) / "watchkeeper.toml"
        config.write_text(
            f"data_dir = {json.dumps(str(Path(tmp) / 'data'))}\n"
            'personality = "plain"\n[ollama]\nenabled = false\n'
            f'[remediation]\nmode = "approve"\n[web]\nport = {port}\n'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "watchkeeper", "run", "--config", str(config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/api/metrics", timeout=2).status_code == 200:
                        break
                time.sleep(0.2)
            token = (Path(tmp) / "data" / "api_token").read_text().strip()
            yield url, token
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def over_http() -> dict[str, Any]:
    out: dict[str, Any] = {}
    with daemon() as (url, token), httpx.Client(timeout=30) as client:
        headers = {"Authorization": f"Bearer {token}"}
        for size in SIZES:
            times: dict[str, list[float]] = {"fire": [], "resend": [], "resolve": []}
            for round_ in range(ROUNDS):
                for step, status in (
                    ("fire", "firing"),
                    ("resend", "firing"),
                    ("resolve", "resolved"),
                ):
                    body = json.dumps(group(round_ + size * 1000, size, status)).encode()
                    started = time.perf_counter()
                    reply = client.post(f"{url}/api/alertmanager", content=body, headers=headers)
                    times[step].append((time.perf_counter() - started) * 1000)
                    reply.raise_for_status()
            out[str(size)] = {
                step: {
                    "p50_ms": round(percentile(values, 0.5), 2),
                    "p95_ms": round(percentile(values, 0.95), 2),
                }
                for step, values in times.items()
            }
            out[str(size)]["body_bytes"] = len(json.dumps(group(0, size, "firing")))
    return out


def in_process() -> dict[str, float]:
    from watchkeeper.analysis.engine import AnalysisEngine
    from watchkeeper.analysis.external import AlertmanagerPayload, local_names
    from watchkeeper.config import Settings

    settings = Settings.model_validate({})
    engine = AnalysisEngine(lambda: settings)
    here = local_names("bench", "bench")
    size = SIZES[-1]
    payload = AlertmanagerPayload.model_validate(group(0, size, "firing"))
    started = time.perf_counter()
    engine.observe_external(payload, 1.0, here=here)
    fired = (time.perf_counter() - started) / size * 1e6
    started = time.perf_counter()
    engine.observe_external(payload, 2.0, here=here)
    resent = (time.perf_counter() - started) / size * 1e6
    return {"fire_us_per_alert": round(fired, 1), "resend_us_per_alert": round(resent, 1)}


def main() -> int:
    result = {
        "machine": machine_info(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "rounds": ROUNDS,
        "http": over_http(),
        "engine_500": in_process(),
    }
    path = write_result("alertmanager", result)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
