"""The central host's console log under a fleet: one line per change that matters (hosts
lost, hosts back), not a line per host event. A real nats-server, a real central
``watchkeeper run`` and the fleet simulator's hosts (samples, heartbeats, alerts and
remediations, every second); the assertions read the central's console output."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from watchkeeper.testing.fleet_hosts import free_port, wait_for
from watchkeeper.testing.nats_server import NatsServer, require_nats

pytestmark = pytest.mark.slow

HOSTS = 12
LOST_AFTER = 5.0
#: Lines that may say it when every host is lost (or back) within a second or two.
MOST_LINES = 4
_LINE = re.compile(r"(?:host (sim-\d+)|(\d+) hosts: (.*?)) (lost|back)\b")


class Central:
    """A central ``watchkeeper run`` whose console goes to a file."""

    def __init__(self, directory: Path, server: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = directory / "console.log"
        config = directory / "watchkeeper.toml"
        config.write_text(
            f"""
data_dir = "{directory / "data"}"
personality = "plain"

[ollama]
enabled = false

[web]
port = {self.port}
token = "token-central-0123456789abcdef"

[bus]
backend = "nats"
servers = ["{server}"]
host_id = "central"
connect_timeout = 1.0
reconnect_wait = 0.5

[fleet]
role = "central"
heartbeat_interval = 1.0
stale_after = 2.0
lost_after = {LOST_AFTER}
incident_min_hosts = 3
""",
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
        env["COLUMNS"] = "400"  # one log record a line, as a wide terminal shows it
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "watchkeeper", "run", "--config", str(config)],
                cwd=directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def ready(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/api/health", timeout=1).is_success
        except httpx.HTTPError:
            return False

    def hosts_up(self) -> int:
        reply = httpx.get(f"http://127.0.0.1:{self.port}/api/fleet/hosts", timeout=2).json()
        return int(reply["counts"]["up"])

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def central(tmp_path: Path) -> Iterator[tuple[Central, NatsServer]]:
    require_nats()
    with NatsServer(directory=tmp_path / "nats") as server:
        one = Central(tmp_path / "central", server.url)
        try:
            wait_for(one.ready, 30, "the central host's web")
            yield one, server
        finally:
            one.stop()


def simulate(server: NatsServer, seconds: float) -> None:
    """The simulator's hosts, every one sending a sample and a beat a second, and alerts."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "watchkeeper.testing.fleet_sim",
            "--url",
            server.url,
            "--hosts",
            str(HOSTS),
            "--interval",
            "1",
            "--heartbeat",
            "1",
            "--duration",
            str(seconds),
            "--alerts-per-min",
            "240",
        ],
        check=True,
        capture_output=True,
        timeout=seconds + 30,
    )


def changes(text: str, word: str) -> tuple[int, int]:
    """How many "lost" (or "back") lines, and how many hosts they name or count."""
    lines = counted = 0
    for match in _LINE.finditer(text):
        if match.group(4) == word:
            lines += 1
            counted += 1 if match.group(1) else int(match.group(2))
    return lines, counted


def test_the_central_log_has_a_line_per_change_that_matters_not_per_host_event(
    central: tuple[Central, NatsServer],
) -> None:
    host, server = central
    simulate(server, 8)
    # Every simulated host goes silent at once: lost, in a few lines (the check runs every
    # second and the hosts are spread over it), each host named once.
    wait_for(lambda: changes(host.text(), "lost")[1] >= HOSTS, LOST_AFTER + 15, "hosts lost")
    lost_lines, lost = changes(host.text(), "lost")
    assert lost == HOSTS and lost_lines <= MOST_LINES, host.text()

    simulate(server, 3)
    wait_for(lambda: changes(host.text(), "back")[1] >= HOSTS, 15, "hosts back")
    back_lines, back = changes(host.text(), "back")
    assert back == HOSTS and back_lines <= MOST_LINES, host.text()

    # Nothing else names a simulated host: their alerts and actions are per-host chatter
    # (logged at debug; the fleet view has them).
    chatter = [
        line
        for line in host.text().splitlines()
        if "sim-" in line and not re.search(r"\b(lost|back)\b", line)
    ]
    assert chatter == [], "\n".join(chatter[:20])
