"""``watchkeeper web``: ``run`` that insists on the web server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def watchkeeper(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    return subprocess.run(
        [sys.executable, "-m", "watchkeeper", "web", "--data-dir", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env=env,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--no-web"], "--no-web contradicts 'watchkeeper web'"),
        (["--set", "web.enabled=false"], "web.enabled is false"),
    ],
)
def test_web_refuses_to_run_without_the_web(tmp_path: Path, args: list[str], words: str) -> None:
    result = watchkeeper(tmp_path, *args)
    assert result.returncode == 2
    assert words in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_web_serves_the_dashboard(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env["WATCHKEEPER_OLLAMA__ENABLED"] = "false"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "watchkeeper",
            "web",
            "--data-dir",
            str(tmp_path / "data"),
            "--port",
            str(port),
            "--interval",
            "0.5",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "watchkeeper web did not serve"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err[-2000:]
