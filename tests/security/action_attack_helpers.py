"""What the process-target, action-parameter and executor attacks share: a real
``watchkeeper run`` with its API token, an authenticated client, and victim processes.

Victims are real child processes of the test: one that starts a thread (so it has a tid
that is not its pid), one that ignores SIGTERM, and one whose kernel name is changed to a
protected name with ``prctl(PR_SET_NAME)``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
from daemon_harness import free_port

T = TypeVar("T")

# A child that names itself (prctl PR_SET_NAME = 15), starts a worker thread that names
# itself "worker" (as many daemons name their threads), says "ready" and sleeps; with
# "ignore" it also ignores SIGTERM, like a stuck worker.
_CHILD = r"""
import ctypes, signal, sys, threading, time
prctl = ctypes.CDLL(None, use_errno=True).prctl
name, mode = sys.argv[1], sys.argv[2]
if name != "-":
    prctl(15, name.encode(), 0, 0, 0)
if mode == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
named = threading.Event()
def work():
    prctl(15, b"worker", 0, 0, 0)
    named.set()
    time.sleep(600)
threading.Thread(target=work, daemon=True).start()
named.wait(10)
print("ready", flush=True)
time.sleep(600)
"""


def wait_for(predicate: Callable[[], T], timeout: float, what: str) -> T:
    """The first truthy answer of ``predicate`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def victim(name: str = "-", *, ignore_term: bool = False) -> Iterator[subprocess.Popen[str]]:
    """A sleeping child with a second thread; killed and reaped afterwards."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, name, "ignore" if ignore_term else "plain"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def thread_ids(pid: int) -> list[int]:
    """The ids of ``pid``'s threads other than its leader, from /proc."""
    return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)


def kernel_thread() -> psutil.Process:
    """A long-lived kernel thread: a child of kthreadd (pid 2), kswapd0 when there is one
    (kworkers come and go)."""
    assert psutil.Process(2).name() == "kthreadd", "pid 2 is not kthreadd here"
    children = psutil.Process(2).children()
    for proc in children:
        if proc.name().startswith(("kswapd", "khugepaged", "kcompactd")):
            return proc
    for proc in children:
        if not proc.name().startswith("kworker"):
            return proc
    raise AssertionError("no kernel thread found under kthreadd")


@dataclass
class Daemon:
    """A running ``watchkeeper run`` and how to talk to it."""

    proc: subprocess.Popen[str]
    port: int
    data: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self) -> str:
        return (self.data / "api_token").read_text().strip()

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10)

    def run_action(
        self, action: str, target: str | None, params: dict[str, Any], timeout: float = 30
    ) -> httpx.Response:
        body: dict[str, Any] = {"action": action, "params": params}
        if target is not None:
            body["target"] = target
        return httpx.post(
            self.url + "/api/command",
            json={"command": "run_action", "target": "remediator", "params": body},
            headers={"Authorization": f"Bearer {self.token()}"},
            timeout=timeout,
        )


def write_config(tmp_path: Path, extra: str = "") -> Path:
    text = f"""
data_dir = {json.dumps(str(tmp_path / "data"))}
personality = "plain"
status_interval = 0.5

[agents]
check_interval = 0.5

[remediation]
healing_cooldown = 0
max_concurrent_actions = 8

[ollama]
enabled = false
{extra}
"""
    path = tmp_path / "watchkeeper.toml"
    path.write_text(text)
    return path


@contextlib.contextmanager
def running_daemon(tmp_path: Path, extra: str = "") -> Iterator[Daemon]:
    """A real ``watchkeeper run`` with the web API on a free loopback port."""
    port = free_port()
    config = write_config(tmp_path, extra)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "watchkeeper", "run", "--config", str(config), "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    daemon = Daemon(proc, port, tmp_path / "data")
    try:
        wait_for(lambda: _answers(daemon) and (daemon.data / "api_token").exists(), 30, "the API")
        yield daemon
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def _answers(daemon: Daemon) -> bool:
    try:
        return daemon.get("/api/health").status_code in (200, 503)
    except httpx.HTTPError:
        return False
