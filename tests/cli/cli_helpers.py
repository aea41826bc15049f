"""Helpers for the CLI tests: a real daemon's handle and an in-process CLI runner."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner, Result

from watchkeeper.cli.app import app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Daemon:
    url: str
    token: str
    data_dir: Path
    config: Path
    proc: subprocess.Popen[str]

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"authorization": f"Bearer {self.token}"}
        response = httpx.request(method, self.url + path, headers=headers, timeout=10, **kwargs)
        return response.json()

    def wait_for(self, predicate: Any, what: str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"watchkeeper exited with {self.proc.returncode}")
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")


def write_config(tmp: Path, port: int) -> Path:
    py = json.dumps(sys.executable)
    failing = "import sys, time; time.sleep(0.3); sys.exit(3)"
    text = f"""
data_dir = {json.dumps(str(tmp / "data"))}
personality = "plain"
status_interval = 0.3

[agents]
check_interval = 0.5

[remediation]
mode = "approve"

[web]
port = {port}

[[services]]
name = "flaky-a"
argv = [{py}, "-c", {json.dumps(failing)}]
min_uptime = 0.2

[[services]]
name = "flaky-b"
argv = [{py}, "-c", {json.dumps(failing)}]
min_uptime = 0.2
"""
    path = tmp / "watchkeeper.toml"
    path.write_text(text)
    return path


def invoke(
    daemon: Daemon | None, *args: str, env: dict[str, str] | None = None, input: str = ""
) -> Result:
    """Run ``watchkeeper ARGS`` in-process; the environment holds only what we give it."""
    clean = {k: None for k in os.environ if k.startswith("WATCHKEEPER_")}
    base: dict[str, str | None] = {**clean, "COLUMNS": "120", "NO_COLOR": "1"}
    if daemon is not None:
        base["WATCHKEEPER_CONFIG"] = str(daemon.config)
    base.update(env or {})
    return CliRunner().invoke(app, list(args), env=base, input=input, catch_exceptions=False)


def one_error_line(result: Result) -> str:
    """The single stderr line of a failed command (and proof there is no traceback)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("watchkeeper: "), lines
    assert "Traceback" not in result.output
    return lines[0]
