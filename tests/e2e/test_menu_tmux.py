"""The interactive menu in a real terminal: tmux runs ``watchkeeper cli``, the test types
keys and reads the screen the way a person would, Live Monitoring included."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

# CI installs tmux (.ci/run): there a missing tmux fails instead of skipping.
pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None and not os.environ.get("CI"),
    reason="needs tmux: apt-get install -y tmux (.ci/run does it)",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# tmux 3.3 does not report a dead pane's exit status, so a tiny parent prints it. Ctrl-C
# goes to the whole foreground group: the parent catches it (a handler, not SIG_IGN, so
# the menu still gets its KeyboardInterrupt) and keeps waiting.
REPORT_EXIT = (
    "import signal, subprocess, sys; signal.signal(signal.SIGINT, lambda *_: None); "
    "print('exit status', subprocess.call(sys.argv[1:]))"
)


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env.update(NO_COLOR="1", TERM="xterm-256color")
    return env


@dataclass
class Tmux:
    """One tmux server of our own (its socket and config in the test's temp dir), one
    session, one pane."""

    socket: Path
    conf: Path

    def run(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-f", str(self.conf), "-S", str(self.socket), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return done.stdout

    def start(self, argv: list[str], env: dict[str, str]) -> None:
        """Run ``argv`` in the pane; it prints its exit status when it ends."""
        pairs = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
        wrapped = [sys.executable, "-c", REPORT_EXIT, *argv]
        self.run("new-session", "-d", "-s", "wk", "-x", "160", "-y", "50", *pairs, "--", *wrapped)

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "wk", *keys)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "wk")

    def wait_for(self, check: Callable[[str], bool], what: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if check(screen):
                return screen
            time.sleep(0.1)
        history = self.run("capture-pane", "-p", "-t", "wk", "-S", "-300")
        raise AssertionError(f"timed out waiting for {what}; the pane shows:\n{history}")

    def wait_text(self, text: str, timeout: float = 20) -> str:
        return self.wait_for(lambda screen: text in screen, repr(text), timeout)

    def exit_status(self) -> int | None:
        """The program's exit status once it has ended (None while it runs)."""
        found = re.findall(r"^exit status (-?\d+)$", self.screen(), re.MULTILINE)
        return int(found[-1]) if found else None


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    conf = tmp_path / "tmux.conf"
    conf.write_text("set -g remain-on-exit on\nset -g status off\n")
    session = Tmux(tmp_path / "tmux.sock", conf)
    try:
        yield session
    finally:
        session.run("kill-server")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[str, str]]:
    port = free_port()
    data = tmp_path / "data"
    log = (tmp_path / "daemon.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "watchkeeper",
            "run",
            "--data-dir",
            str(data),
            "--port",
            str(port),
            "--interval",
            "0.5",
            "--set",
            "ollama.enabled=false",
        ],
        cwd=tmp_path,
        env=clean_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "daemon.log").read_text()
            try:
                if httpx.get(url + "/api/metrics", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the daemon's API did not come up"
            time.sleep(0.1)
        yield url, (data / "api_token").read_text().strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


MENU = "Choose 0-9:"


def frame_number(screen: str) -> int:
    found = re.findall(r"refreshed \d\d:\d\d:\d\d \(#(\d+)\)", screen)
    assert len(found) == 1, screen  # one header: the view redraws in place, never scrolls
    return int(found[0])


def test_the_menu_as_a_person_uses_it(tmux: Tmux, daemon: tuple[str, str]) -> None:
    url, token = daemon
    env = {**clean_env(), "WATCHKEEPER_URL": url, "WATCHKEEPER_TOKEN": token}
    tmux.start([sys.executable, "-m", "watchkeeper", "cli", "--every", "0.5"], env)
    screen = tmux.wait_text(MENU)
    for item in ("1  System Status", "2  Agent Details", "8  Send Commands", "0  Quit"):
        assert item in screen
    assert url in screen and "running" in screen

    tmux.keys("1", "Enter")
    screen = tmux.wait_text("Press Enter to return to the menu")
    assert "System Status" in screen and "sensor" in screen and "remediator" in screen
    tmux.keys("Enter")
    tmux.wait_text(MENU)

    # Send Commands: a harmless command goes straight through...
    tmux.keys("8", "Enter")
    tmux.wait_text("Target")
    tmux.keys("1", "Enter")  # all agents
    tmux.wait_text("Command for all")
    tmux.keys("1", "Enter")  # health_check
    screen = tmux.wait_text("health_check → all: ok")
    assert "analyzer" in screen and "state running" in screen
    tmux.keys("Enter")
    tmux.wait_text(MENU)
    # ... a disruptive one asks first, and "no" sends nothing.
    tmux.keys("8", "Enter")
    tmux.wait_text("Target")
    tmux.keys("sensor", "Enter")  # a choice by name works as well as by number
    tmux.wait_text("Command for sensor")
    tmux.keys("pause", "Enter")
    tmux.wait_text("Send pause to sensor? [y/N]")
    tmux.keys("n", "Enter")
    tmux.wait_text("Not sent.")
    assert httpx.get(url + "/api/agents/sensor").json()["health"]["state"] == "running"
    tmux.keys("Enter")
    tmux.wait_text(MENU)

    # A remediation action: offered from the catalog, confirmed, then its outcome shown.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tmux.keys("8", "Enter")
        tmux.wait_text("Target")
        tmux.keys("remediator", "Enter")
        tmux.wait_text("run_action")
        tmux.keys("run_action", "Enter")
        screen = tmux.wait_text("renice_process")
        assert "kill_process" in screen and "dangerous" in screen
        tmux.keys("renice_process", "Enter")
        tmux.wait_text("Target process (pid):")
        tmux.keys(str(child.pid), "Enter")
        tmux.wait_text("niceness (int")
        tmux.keys("5", "Enter")
        tmux.wait_text(f"Run renice_process on {child.pid} (risk: safe)? [y/N]")
        assert psutil.Process(child.pid).nice() == 0  # nothing happens before "y"
        tmux.keys("y", "Enter")
        screen = tmux.wait_text("Finished:")
        assert "Finished: succeeded" in screen, screen
        assert psutil.Process(child.pid).nice() == 5
        tmux.keys("Enter")
        tmux.wait_text(MENU)
    finally:
        child.kill()
        child.wait()

    # Live Monitoring refreshes in place, and q brings the menu back.
    tmux.keys("9", "Enter")
    screen = tmux.wait_text("Press q to return to the menu")
    for part in ("Live Monitoring", "Resources", "CPU", "Agents", "sensor"):
        assert part in screen
    first = frame_number(screen)
    screen = tmux.wait_for(lambda s: frame_number(s) >= first + 2, "two more refreshes")
    assert MENU not in screen
    tmux.keys("q")
    screen = tmux.wait_text(MENU)
    assert "Live Monitoring" not in screen.replace("9  Live Monitoring", "")

    # Ctrl-C inside Live Monitoring also returns to the menu, not to the shell.
    tmux.keys("9", "Enter")
    tmux.wait_text("Press q to return to the menu")
    tmux.keys("C-c")
    tmux.wait_text(MENU)
    assert tmux.exit_status() is None

    tmux.keys("0", "Enter")
    screen = tmux.wait_text("exit status")
    assert "Bye." in screen and "Traceback" not in screen
    assert tmux.exit_status() == 0


def test_without_a_daemon_the_menu_starts_one_in_process(tmux: Tmux, tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = tmp_path / "watchkeeper.toml"
    config.write_text(
        f"data_dir = {json.dumps(str(data))}\nstatus_interval = 0.3\n[agents]\n"
        f"check_interval = 0.5\n[ollama]\nenabled = false\n[web]\nport = {free_port()}\n"
    )
    env = {**clean_env(), "WATCHKEEPER_CONFIG": str(config)}
    tmux.start([sys.executable, "-m", "watchkeeper", "cli"], env)
    screen = tmux.wait_text(MENU, timeout=30)
    assert "In-process watchkeeper" in screen and "stops when you quit" in screen
    tmux.keys("2", "Enter")
    screen = tmux.wait_text("Inspect one agent")
    assert "sensor" in screen and "running" in screen
    tmux.keys("Enter")  # back without choosing
    tmux.wait_text(MENU)
    tmux.keys("0", "Enter")
    screen = tmux.wait_text("exit status", timeout=30)
    assert "Stopping the in-process watchkeeper" in screen and "Stopped." in screen
    assert tmux.exit_status() == 0
    assert json.loads((data / "system_status.json").read_text())["state"] == "stopped"
