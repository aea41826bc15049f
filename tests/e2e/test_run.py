"""A real ``watchkeeper run`` process: start, serve, stop on a signal, leave a valid status."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env["NO_COLOR"] = "1"
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "watchkeeper",
            "run",
            "--data-dir",
            str(tmp_path / "data"),
            "--interval",
            "0.5",
            "--set",
            "status_interval=0.3",
            *args,
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_status(path: Path, proc: subprocess.Popen[str], timeout: float = 30) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"watchkeeper exited early: {proc.communicate()}")
        try:
            data = json.loads(path.read_text())
            if data["state"] == "running" and data["agents"]["sensor"]["checks"] >= 2:
                return data  # type: ignore[no-any-return]
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise AssertionError("no running status file in time")


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[float, str, str]:
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"did not stop within 10 s: {err[-2000:]}") from None
    return time.monotonic() - sent, out, err


def test_run_stops_on_sigterm_within_5s_with_a_valid_status_file(tmp_path: Path) -> None:
    proc = start(tmp_path, "--no-web")
    status_path = tmp_path / "data" / "system_status.json"
    try:
        running = wait_for_status(status_path, proc)
    finally:
        took, _out, err = stop(proc)
    assert proc.returncode == 0, err
    assert took < 5.0
    assert "Traceback" not in err
    assert running["status"] in ("healthy", "degraded")
    final = json.loads(status_path.read_text())
    assert final["state"] == "stopped"
    assert final["pid"] == proc.pid
    assert final["agents"]["sensor"]["checks"] >= running["agents"]["sensor"]["checks"]
    assert final["agents"]["sensor"]["state"] == "stopped"
    # No temporary files left behind by the atomic writes.
    assert [p.name for p in status_path.parent.glob(".system_status*")] == []
    log = (tmp_path / "data" / "agent_system.log").read_text()
    assert "watchkeeper" in log
    first = (tmp_path / "data" / "agent_system.jsonl").read_text().splitlines()[0]
    assert json.loads(first)["level"] in ("INFO", "WARNING")


def test_run_stops_on_sigint_too_and_serves_the_api(tmp_path: Path) -> None:
    port = free_port()
    proc = start(tmp_path, "--port", str(port))
    try:
        wait_for_status(tmp_path / "data" / "system_status.json", proc)
        health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5)
        assert health.status_code == 200
        assert health.json()["ready"] is True
        agents = httpx.get(f"http://127.0.0.1:{port}/api/agents", timeout=5).json()
        assert agents["sensor"]["state"] == "running"
    finally:
        took, _out, err = stop(proc, signal.SIGINT)
    assert proc.returncode == 0, err
    assert took < 5.0
    # The generated API token is shown once on the terminal and never written to a log.
    token_file = tmp_path / "data" / "api_token"
    token = token_file.read_text().strip()
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    assert f"API token (shown once): {token}" in err
    for log_file in ("agent_system.log", "agent_system.jsonl"):
        assert token not in (tmp_path / "data" / log_file).read_text()


def test_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        proc = start(tmp_path, "--port", str(port))
        try:
            _out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 2
    assert err.strip() == (
        f"watchkeeper: port {port} on 127.0.0.1 is already in use; choose another with "
        "--port, web.port in the config file or WATCHKEEPER_WEB__PORT"
    )


@pytest.mark.parametrize("argv", [["version"], ["--help"]])
def test_entry_points(argv: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "watchkeeper", *argv], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    assert "watchkeeper" in proc.stdout
