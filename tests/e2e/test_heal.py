"""Self-healing end to end on a real ``watchkeeper run``.

A process-managed demo service (a real HTTP server) is killed with SIGKILL; the sensor
hears the exit, the analyzer raises ``service_down``, the remediator restarts it through
the policy, and the service answers its probe again. A service that exits at once is
retried with backoff, given up on, and reported.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp_path: Path, port: int, *, mode: str = "auto", broken: bool = True) -> Path:
    py = json.dumps(sys.executable)
    text = f"""
data_dir = {json.dumps(str(tmp_path / "data"))}
personality = "plain"
status_interval = 0.2

[agents]
check_interval = 1.0

[remediation]
mode = "{mode}"
healing_cooldown = 1
crash_loop_backoff_initial = 0.2
crash_loop_backoff_max = 1.0
crash_loop_max_failures = 3
crash_loop_window = 60
verify_timeout = 10

[ollama]
enabled = false

[[services]]
name = "demo"
argv = [{py}, "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
critical = true
min_uptime = 0.5
probe = {{ kind = "http", url = "http://127.0.0.1:{port}/", expect_status = 200 }}
"""
    if broken:
        text += f"""
[[services]]
name = "broken"
argv = [{py}, "-c", "import sys; sys.exit(3)"]
min_uptime = 1.0
"""
    path = tmp_path / "watchkeeper.toml"
    path.write_text(text)
    return path


def status(tmp_path: Path) -> dict[str, Any]:
    try:
        return json.loads((tmp_path / "data" / "system_status.json").read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return {}


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def service_pid(tmp_path: Path, name: str) -> int | None:
    for svc in status(tmp_path).get("details", {}).get("sensor", {}).get("services", []):
        if svc["name"] == name and svc["state"] == "running" and svc["pid"]:
            return int(svc["pid"])
    return None


def succeeded_restarts(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    """The verified restarts of ``name`` among the remediator's recent records."""
    return [
        r
        for r in status(tmp_path).get("details", {}).get("remediator", {}).get("recent", [])
        if r["action"] == "restart_service" and r["target"] == name and r["outcome"] == "succeeded"
    ]


@contextlib.contextmanager
def running(tmp_path: Path, config: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """A real ``watchkeeper run`` on ``config``, stopped with SIGTERM afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "watchkeeper", "run", "--config", str(config), *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    port = free_port()
    with running(tmp_path, write_config(tmp_path, port), "--no-web") as proc:
        yield proc, port, tmp_path


def test_sigkilled_service_is_restarted_and_healthy_again(
    daemon: tuple[subprocess.Popen[str], int, Path],
) -> None:
    proc, port, tmp_path = daemon
    wait_for(lambda: answers(port), 20, "the demo service to answer")
    old_pid = wait_for(lambda: service_pid(tmp_path, "demo"), 20, "the demo pid in the status")
    killed_at = time.monotonic()
    os.kill(old_pid, signal.SIGKILL)
    wait_for(lambda: not answers(port) or service_pid(tmp_path, "demo") != old_pid, 5, "the kill")
    wait_for(lambda: answers(port), 10, "the demo service to answer again")
    healed_in = time.monotonic() - killed_at
    new_pid = wait_for(
        lambda: (p := service_pid(tmp_path, "demo")) and p != old_pid and p, 10, "a new pid"
    )
    assert new_pid != old_pid
    assert healed_in < 10
    recent = wait_for(
        lambda: succeeded_restarts(tmp_path, "demo"), 15, "a verified restart in the audit"
    )
    assert recent[0]["proposer"] == "rule"
    assert proc.poll() is None


def test_a_service_killed_again_and_again_is_healed_each_time(
    daemon: tuple[subprocess.Popen[str], int, Path],
) -> None:
    """A 3 a.m. crash loop seen from outside: the same service dies three times within
    seconds of each restart. The analyzer makes it one flapping alert and proposes one
    restart; every later death must still be healed (the remediator carries the loop on
    through the gate), not left down until the loop has been quiet for minutes."""
    proc, port, tmp_path = daemon
    wait_for(lambda: answers(port), 20, "the demo service to answer")
    pids: list[int] = []
    for round_ in range(3):
        old_pid = wait_for(
            lambda: (p := service_pid(tmp_path, "demo")) and p not in pids and p,
            20,
            f"a new demo pid before kill {round_ + 1}",
        )
        pids.append(old_pid)
        os.kill(old_pid, signal.SIGKILL)
        wait_for(
            lambda pid=old_pid: not answers(port) or service_pid(tmp_path, "demo") != pid,
            5,
            "the kill",
        )
        wait_for(lambda: answers(port), 15, f"demo to answer again after kill {round_ + 1}")
        time.sleep(2)  # up for a moment, then killed again: inside every window
    restarts = wait_for(
        lambda: succeeded_restarts(tmp_path, "demo"), 15, "the restarts in the audit"
    )
    assert len(restarts) >= 3
    assert proc.poll() is None


def test_service_that_exits_at_once_is_given_up_and_reported(
    daemon: tuple[subprocess.Popen[str], int, Path],
) -> None:
    proc, _port, tmp_path = daemon
    given_up = wait_for(
        lambda: status(tmp_path).get("details", {}).get("remediator", {}).get("given_up"),
        40,
        "the give-up on the broken service",
    )
    assert given_up == ["broken"]
    recent = status(tmp_path)["details"]["remediator"]["recent"]
    restarts = [r for r in recent if r["target"] == "broken" and r["action"] == "restart_service"]
    assert len(restarts) >= 2  # retried before giving up
    # Attempts were spaced by a growing backoff, visible in the machine log.
    lines = (tmp_path / "data" / "agent_system.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    gave_up = [r for r in records if "gave up restarting broken" in r["message"]]
    assert gave_up and gave_up[0]["level"] == "ERROR"
    started = [
        r["ts"] for r in records if r["message"].startswith("running restart_service on broken")
    ]
    gaps = [b - a for a, b in itertools.pairwise(started)]
    assert gaps and all(g >= 0.15 for g in gaps)
    # After giving up it stays quiet: no more attempts.
    time.sleep(2)
    again = [
        json.loads(x) for x in (tmp_path / "data" / "agent_system.jsonl").read_text().splitlines()
    ]
    assert len(
        [r for r in again if r["message"].startswith("running restart_service on broken")]
    ) == len(started)
    assert proc.poll() is None


def test_simulate_service_crash_is_healed(daemon: tuple[subprocess.Popen[str], int, Path]) -> None:
    _proc, port, tmp_path = daemon
    wait_for(lambda: answers(port), 20, "the demo service to answer")
    old_pid = wait_for(lambda: service_pid(tmp_path, "demo"), 20, "the demo pid")
    crashed = subprocess.run(
        [
            sys.executable,
            "-m",
            "watchkeeper",
            "simulate",
            "service-crash",
            "demo",
            "--config",
            str(tmp_path / "watchkeeper.toml"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert crashed.returncode == 0, crashed.stderr
    assert f"pid {old_pid}" in crashed.stdout
    wait_for(lambda: (p := service_pid(tmp_path, "demo")) and p != old_pid, 15, "a new pid")
    wait_for(lambda: answers(port), 10, "the demo service to answer again")
    unknown = subprocess.run(
        [
            sys.executable,
            "-m",
            "watchkeeper",
            "simulate",
            "service-crash",
            "nope",
            "--config",
            str(tmp_path / "watchkeeper.toml"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unknown.returncode == 2
    assert "no service named 'nope' is configured (configured: demo, broken)" in unknown.stderr
