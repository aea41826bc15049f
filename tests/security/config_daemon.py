"""A real ``watchkeeper run`` with any configuration, and a loopback HTTP receiver.

``ConfigDaemon`` writes the given settings as a TOML file, starts the real CLI in its own
process on a free loopback port (output in a file), and waits until ``/api/health``
answers. ``Receiver`` is a real HTTP server on loopback that records every request it
gets (path with query, headers, body), so a test can prove what a notification channel
actually sent. ``run_cli`` runs one CLI command to completion, as an operator would.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import tomli_w
from daemon_harness import free_port, stop_process


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any WATCHKEEPER_ variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``watchkeeper ARGS`` in a fresh process; a run that does not end is killed."""
    return subprocess.run(
        [sys.executable, "-m", "watchkeeper", *args],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A loopback HTTP server answering 200 to every POST and recording it."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append(Request(self.path, dict(self.headers), body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def to(self, prefix: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith(prefix)]

    def wait_for(self, prefix: str, count: int = 1, timeout: float = 20) -> list[Request]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.to(prefix)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        with self._lock:
            seen = [r.path for r in self.requests]
        raise AssertionError(f"no request to {prefix} within {timeout}s; got {seen}")


class ConfigDaemon:
    """See the module docstring. Use as a context manager."""

    def __init__(self, root: Path, settings: dict[str, Any]) -> None:
        self.root = root
        self.port = free_port()
        self.data_dir = root / "data"
        base: dict[str, Any] = {
            "data_dir": str(self.data_dir),
            "personality": "plain",
            "status_interval": 0.5,
            "agents": {"check_interval": 1.0},
            "ollama": {"enabled": False},
            "remediation": {"mode": "dry_run"},
        }
        for key, value in settings.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        base.setdefault("web", {})["port"] = self.port
        self.settings = base
        self.config = root / "watchkeeper.toml"
        self.config.write_text(tomli_w.dumps(base), encoding="utf-8")
        self.log_path = root / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self) -> str:
        configured = self.settings.get("web", {}).get("token")
        if configured:
            return str(configured)
        return (self.data_dir / "api_token").read_text(encoding="utf-8").strip()

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def command(self, command: str, target: str, **params: Any) -> httpx.Response:
        body = {"command": command, "target": target, "params": params}
        return httpx.post(self.url + "/api/command", json=body, headers=self.auth(), timeout=30)

    def patch(self, changes: dict[str, Any], *, persist: bool = False) -> httpx.Response:
        body = json.dumps({"changes": changes, "persist": persist})
        headers = {**self.auth(), "Content-Type": "application/json"}
        return httpx.patch(self.url + "/api/config", content=body, headers=headers, timeout=30)

    def __enter__(self) -> ConfigDaemon:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "watchkeeper", "run", "--config", str(self.config)],
                cwd=self.root,
                env=clean_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_up()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_up(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"watchkeeper exited: {self.output()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError, OSError):
                reply = httpx.get(self.url + "/api/health", timeout=1)
                if reply.status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"watchkeeper's API did not come up: {self.output()[-3000:]}")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=15)
