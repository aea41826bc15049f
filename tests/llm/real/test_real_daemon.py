"""A real ``watchkeeper run`` with DEFAULT Ollama settings against a real CPU model.

Only the server's URL and the model's name are configured; every other Ollama setting
(timeouts, retries, context, cooldowns) is the default a user gets. A critical demo
service is killed: the rules must bring it back at once, and the model, slow as a CPU
model is, must still contribute an analysis of its own (no timeout, no fallback). A
second service is killed while the model is still thinking (the server process busy on
the CPU) and must heal as fast. (A second service, not the first again: two deaths of one
service within minutes are a crash loop to the analyzer, which is another matter.)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import watchkeeper.testing.demo_service as demo
from watchkeeper.testing.real_server import RealModelServer

pytestmark = [pytest.mark.realmodel, pytest.mark.slow]

HEAL_LIMIT_S = 15.0  # loose: the benchmark measures heal times, the test says "healed"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return conn.recv(16).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _cpu_busy(pid: int) -> bool:
    import psutil

    # Idle, the server uses nothing; answering, its thread takes what the machine spares.
    return bool(psutil.Process(pid).cpu_percent(interval=1.0) > 15)


def _kill_and_time_heal(pidfile: Path, port: int) -> float:
    old = _pid(pidfile)
    assert old is not None
    started = time.monotonic()
    os.kill(old, signal.SIGKILL)
    _wait(lambda: _pid(pidfile) not in (None, old) and _answers(port), HEAL_LIMIT_S, "a heal")
    return time.monotonic() - started


@pytest.fixture
def own_server(model_path: Path, tmp_path: Path) -> Iterator[RealModelServer]:
    """A server of this test's own: its counters are the daemon's calls only."""
    directory = tmp_path / "server"
    directory.mkdir()
    with RealModelServer(model_path, directory=directory) as server:
        yield server


@pytest.fixture
def daemon(
    own_server: RealModelServer, tmp_path: Path
) -> Iterator[tuple[str, list[tuple[Path, int]]]]:
    real_server = own_server
    web_port = _free_port()
    services = [(tmp_path / f"demo{n}.pid", _free_port()) for n in (1, 2)]
    py = json.dumps(sys.executable)
    blocks = "".join(
        f"""
[[services]]
name = "demo{n}"
argv = [{py}, "-I", "-S", {json.dumps(demo.__file__)}, "--port", "{port}"]
pidfile = {json.dumps(str(pidfile))}
critical = true
min_uptime = 0.3
probe = {{ kind = "tcp", port = {port}, timeout = 0.5 }}
"""
        for n, (pidfile, port) in enumerate(services, start=1)
    )
    config = tmp_path / "watchkeeper.toml"
    config.write_text(
        f"""
data_dir = {json.dumps(str(tmp_path / "data"))}
personality = "plain"

[agents]
check_interval = 1.0

[web]
port = {web_port}

[remediation]
healing_cooldown = 0

[ollama]
url = "{real_server.url}"
model = "{real_server.model}"
{blocks}"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHKEEPER_", "OLLAMA_"))}
    log = (tmp_path / "daemon.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "watchkeeper", "run", "--config", str(config)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{web_port}"
    try:
        for _pidfile, port in services:

            def up(port: int = port) -> bool:
                return proc.poll() is not None or _answers(port)

            _wait(up, 60, "the services")
        assert proc.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
        _wait(lambda: _api(url, "/api/analysis") is not None, 60, "the dashboard")
        yield url, services
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _api(url: str, path: str) -> Any:
    try:
        response = httpx.get(url + path, timeout=5)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def _llm_analysis(url: str) -> dict[str, Any] | None:
    answer = _api(url, "/api/analysis")
    latest = (answer or {}).get("latest_llm")
    return latest if isinstance(latest, dict) else None


def test_default_settings_real_model_contributes_while_rules_heal(
    daemon: tuple[str, list[tuple[Path, int]]], own_server: RealModelServer
) -> None:
    url, [(first_pid, first_port), (second_pid, second_port)] = daemon
    real_server = own_server
    first_heal = _kill_and_time_heal(first_pid, first_port)
    # The service-down alert asked the model; while it thinks, kill the other service.
    server_pid = _server_pid(real_server)
    _wait(lambda: _cpu_busy(server_pid), 120, "the model to be busy answering")
    busy_heal = _kill_and_time_heal(second_pid, second_port)
    analysis = _wait(
        lambda: _llm_analysis(url), 600, "an analysis written by the model (not a fallback)"
    )
    assert analysis["source"] == real_server.model
    assert analysis["fallback_reason"] is None, analysis
    assert analysis["alert_ids"], json.dumps(analysis)  # about the alerts that fired
    # Never below the rules' verdict (which may be healthy again: the rules healed first).
    rank = {"healthy": 0, "degraded": 1, "critical": 2}
    assert rank[analysis["verdict"]] >= rank[analysis["rules_verdict"]], json.dumps(analysis)
    assert first_heal < HEAL_LIMIT_S and busy_heal < HEAL_LIMIT_S
    # Every call the daemon made finished on its own: no reply was cut at the limit.
    runs = real_server.stats()
    assert runs and all(run["done_reason"] == "stop" for run in runs), runs


def _server_pid(server: RealModelServer) -> int:
    pid = server.pid
    assert pid is not None
    return pid
