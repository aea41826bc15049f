"""A real ``watchkeeper run`` with the shipped sample plugins configured (and one that does
not exist): their status in the status file, their agent beating, their metric in the
API, their action listed with its origin and gated by the policy (dry-run mode here, so
this machine's journal is left alone), and a clean stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from plugin_helpers import SAMPLES

TOKEN = "plugin-test-token-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "watchkeeper.toml"
    path.write_text(
        f"""
data_dir = {json.dumps(str(tmp_path / "data"))}
personality = "plain"
status_interval = 0.3

[agents]
check_interval = 0.5

[remediation]
mode = "dry_run"

[ollama]
enabled = false

[web]
token = "{TOKEN}"

[plugins]
directory = {json.dumps(str(SAMPLES))}
plugins_to_load = [
    "sample_remediation_plugin", "open_files_plugin", "heartbeat_plugin", "no_such_plugin",
]

[plugins.plugin_configs.heartbeat_plugin]
interval = 0.3
"""
    )
    return path


def read_status(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return {}


def test_watchkeeper_run_loads_the_sample_plugins(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env["NO_COLOR"] = "1"
    config = write_config(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "watchkeeper", "run", "--config", str(config), "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    status_path = tmp_path / "data" / "system_status.json"
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            status = read_status(status_path)
            heartbeat = status.get("agents", {}).get("heartbeat", {})
            if status.get("state") == "running" and heartbeat.get("checks", 0) >= 2:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"no running status with heartbeats in time: {status}")

        plugins = status["plugins"]
        for name in ("sample_remediation_plugin", "open_files_plugin", "heartbeat_plugin"):
            assert plugins[name]["state"] == "loaded", plugins[name]
        assert plugins["no_such_plugin"]["state"] == "failed"
        assert "no plugin named 'no_such_plugin'" in plugins["no_such_plugin"]["reason"]
        assert plugins["heartbeat_plugin"]["agents"] == ["heartbeat"]
        assert status["details"]["heartbeat"]["beats"] >= 2
        assert status["status"] in ("healthy", "degraded")

        with httpx.Client(base_url=base, timeout=10) as client:
            actions = client.get("/api/remediation").json()["actions"]
            offered = {a["name"]: a for a in actions}
            assert offered["clear_event_logs"]["source"] == "sample_remediation_plugin"
            reply = client.post(
                "/api/command",
                headers={"Authorization": f"Bearer {TOKEN}"},
                json={
                    "target": "remediator",
                    "command": "run_action",
                    "params": {"action": "clear_event_logs", "reason": "e2e"},
                },
            )
            assert reply.status_code == 200, reply.text
            record = reply.json()["replies"]["remediator"]["record"]
            assert record["outcome"] == "dry_run"
            assert record["detail"] == "would clear event logs"
            if Path("/proc/sys/fs/file-nr").exists():
                flat = client.get("/api/metrics", params={"flat": "true"}).json()["metrics"]
                assert flat["files.open"] > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _out, err = proc.communicate()
            raise AssertionError(f"did not stop within 10 s: {err[-2000:]}") from None
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    final = read_status(status_path)
    assert final["state"] == "stopped"
    assert final["plugins"]["heartbeat_plugin"]["state"] == "loaded"
    assert final["agents"]["heartbeat"]["state"] == "stopped"
