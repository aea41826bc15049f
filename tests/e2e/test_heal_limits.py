"""Cooldown and concurrency limits on a real ``watchkeeper run``.

Three managed services are killed at once with ``max_concurrent_actions = 1``: all three
are healed, one after another, never two restarts at the same time. A person's second
``renice_process`` on the same process within ``healing_cooldown`` is refused.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psutil
from test_heal import answers, free_port, running, service_pid, wait_for

import watchkeeper.testing.demo_service as demo


def write_config(tmp_path: Path, ports: list[int]) -> Path:
    py, script = json.dumps(sys.executable), json.dumps(demo.__file__)
    text = f"""
data_dir = {json.dumps(str(tmp_path / "data"))}
personality = "plain"
status_interval = 0.2

[agents]
check_interval = 1.0

[remediation]
max_concurrent_actions = 1
healing_cooldown = 60

[ollama]
enabled = false
"""
    for index, port in enumerate(ports):
        text += f"""
[[services]]
name = "svc{index}"
argv = [{py}, "-I", "-S", {script}, "--port", "{port}"]
min_uptime = 0.3
probe = {{ kind = "tcp", port = {port} }}
"""
    path = tmp_path / "watchkeeper.toml"
    path.write_text(text)
    return path


def remediation(api: int) -> dict[str, Any]:
    return httpx.get(f"http://127.0.0.1:{api}/api/remediation?limit=200", timeout=5).json()  # type: ignore[no-any-return]


def test_concurrency_limit_and_cooldown_hold(tmp_path: Path) -> None:
    ports, api = [free_port() for _ in range(3)], free_port()
    config = write_config(tmp_path, ports)
    with running(tmp_path, config, "--port", str(api)):
        for index, port in enumerate(ports):
            wait_for(lambda port=port: answers(port), 20, f"service {index}")
        pids = [
            wait_for(lambda i=i: service_pid(tmp_path, f"svc{i}"), 20, f"pid of svc{i}")
            for i in range(3)
        ]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        for index, port in enumerate(ports):
            wait_for(lambda port=port: answers(port), 20, f"service {index} healed")
        restarts = wait_for(
            lambda: (
                len(
                    done := [
                        r
                        for r in remediation(api)["audit"]
                        if r["action"] == "restart_service" and r["outcome"] == "succeeded"
                    ]
                )
                == 3
                and done
            ),
            20,
            "three verified restarts",
        )
        spans = sorted((r["started_at"], r["finished_at"]) for r in restarts)
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end - 0.01, f"two restarts overlapped: {spans}"

        # Cooldown: the same action on the same target twice within healing_cooldown.
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            token = (tmp_path / "data" / "api_token").read_text().strip()
            body = {
                "command": "run_action",
                "target": "remediator",
                "params": {
                    "action": "renice_process",
                    "target": str(sleeper.pid),
                    "params": {"create_time": psutil.Process(sleeper.pid).create_time()},
                },
            }
            headers = {"Authorization": f"Bearer {token}"}
            url = f"http://127.0.0.1:{api}/api/command"
            first = httpx.post(url, json=body, headers=headers, timeout=10)
            assert first.status_code == 200, first.text
            wait_for(lambda: psutil.Process(sleeper.pid).nice() >= 10, 10, "the renice")
            second = httpx.post(url, json=body, headers=headers, timeout=10).json()
            assert "cooling down" in json.dumps(second)
            refused = [
                r
                for r in remediation(api)["audit"]
                if r["action"] == "renice_process" and r["outcome"] == "refused"
            ]
            assert refused and "cooling down" in refused[0]["detail"]
        finally:
            sleeper.kill()
            sleeper.wait()
