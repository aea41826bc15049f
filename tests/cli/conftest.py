"""One real ``watchkeeper run`` for the CLI tests, and a way to call the CLI in-process.

The daemon runs in approve mode with two managed services that exit at once, so there
are real alerts and real actions awaiting approval to list, approve and reject; Ollama
is off. Every CLI call goes through Typer's runner with a clean environment whose
``WATCHKEEPER_CONFIG`` points at the daemon's config, so the default URL and the token
(from the data dir) are found the way a person's shell would find them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cli_helpers import Daemon, free_port, write_config


@pytest.fixture(scope="package")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("daemon")
    port = free_port()
    config = write_config(tmp, port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env["NO_COLOR"] = "1"
    log = (tmp / "daemon.log").open("w")  # a file, not a pipe: a full pipe would block it
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "watchkeeper",
            "run",
            "--config",
            str(config),
            "--interval",
            "0.5",
            "--set",
            "ollama.enabled=false",
        ],
        cwd=tmp,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    token_file = tmp / "data" / "api_token"
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"watchkeeper exited: {(tmp / 'daemon.log').read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError("watchkeeper's API did not come up")
            try:
                if httpx.get(url + "/api/metrics", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield Daemon(url, token_file.read_text().strip(), tmp / "data", config, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="package")
def pending_two(daemon: Daemon) -> list[dict[str, Any]]:
    """Both failing services' restarts, awaiting approval."""

    def both() -> list[dict[str, Any]] | None:
        pending = daemon.api("GET", "/api/remediation")["pending"]
        targets = {p["target"] for p in pending}
        return pending if {"flaky-a", "flaky-b"} <= targets else None

    return daemon.wait_for(both, "two actions awaiting approval")  # type: ignore[no-any-return]
