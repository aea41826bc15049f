"""The interactive menu driven through its input, against a real daemon and in-process.

(Live Monitoring, which needs a terminal for its keys, is driven in tmux by
tests/e2e/test_menu_tmux.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import Daemon, free_port, invoke


def test_every_screen_of_the_menu_against_a_daemon(daemon: Daemon) -> None:
    keys = [
        "1",
        "",  # System Status, back
        "2",
        "1",
        "",  # Agent Details, inspect the first agent, back
        "3",
        "",  # System Metrics
        "4",
        "",  # Analysis Results
        "5",
        "",  # Remediation Status
        "6",
        "",  # Message Bus
        "7",
        "thresholds.cpu_warning=82",
        "y",
        "",  # Configuration: change a live setting, then back
        "8",
        "1",
        "1",
        "",  # Send Commands: all, health_check, back
        "8",
        "sensor",
        "pause",
        "n",
        "",  # Send Commands: sensor, pause, refuse the confirmation
        "x",  # not on the menu
        "0",
    ]
    result = invoke(daemon, "cli", input="\n".join(keys) + "\n")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for seen in (
        "1  System Status",
        "9  Live Monitoring",
        "System Status",
        "Agent sensor",
        "Filesystems",
        "LLM: disabled",
        "Mode: approve",
        "Subscribers",
        "thresholds (live)",
        "changed thresholds.cpu_warning",
        "health_check → all: ok",
        "Send pause to sensor? [y/N]",
        "Not sent.",
        "'x' is not on the menu",
        "Bye.",
    ):
        assert seen in out, seen
    assert daemon.api("GET", "/api/config")["settings"]["thresholds"]["cpu_warning"] == 82
    # "n" means nothing was sent: the sensor was never paused.
    assert daemon.api("GET", "/api/agents/sensor")["health"]["state"] == "running"


def test_end_of_input_at_the_menu_quits_cleanly(daemon: Daemon) -> None:
    result = invoke(daemon, "cli", input="")
    assert result.exit_code == 0
    assert "Bye." in result.stdout


def test_without_a_daemon_the_menu_runs_watchkeeper_in_process(tmp_path: Path) -> None:
    config = tmp_path / "watchkeeper.toml"
    data = tmp_path / "data"
    port = free_port()  # nothing listens there
    config.write_text(
        f"data_dir = {json.dumps(str(data))}\nstatus_interval = 0.3\n"
        f"[agents]\ncheck_interval = 0.5\n[ollama]\nenabled = false\n[web]\nport = {port}\n"
    )
    result = invoke(None, "cli", env={"WATCHKEEPER_CONFIG": str(config)}, input="1\n\n0\n")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert (
        f"Starting watchkeeper in this process (nothing answered at http://127.0.0.1:{port})"
        in (out)
    )
    assert "In-process watchkeeper" in out and "stops when you quit" in out
    assert "System Status" in out and "sensor" in out
    assert out.rstrip().endswith("Stopped.")
    status = json.loads((data / "system_status.json").read_text())
    assert status["state"] == "stopped"  # it really ran here, and it really stopped
    assert not (data / "api_token").exists()  # its token lived only in this process
