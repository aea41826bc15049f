"""A real ``watchkeeper run`` for the web attack tests, and the attacker's raw sockets.

``WebDaemon`` writes a config file (with whatever ``[web]`` settings the test needs),
starts the real CLI in its own process on a free loopback port with its output in a
file, waits until ``/api/health`` answers and reads the API token the daemon created.
``rss_kb`` reads the daemon's resident memory from ``/proc``; ``closed_by_peer`` tells
whether the server has closed a socket the test holds open.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from daemon_harness import free_port, stop_process


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return repr(value)


class WebDaemon:
    """See the module docstring. Use as a context manager."""

    def __init__(self, root: Path, **web: Any) -> None:
        self.root = root
        self.port = free_port()
        self.data_dir = root / "data"
        lines = [
            f"data_dir = {_toml(str(self.data_dir))}",
            'personality = "plain"',
            "[agents]",
            "check_interval = 1.0",
            "[ollama]",
            "enabled = false",
            "[remediation]",
            'mode = "dry_run"',
            "[web]",
            f"port = {self.port}",
            *(f"{key} = {_toml(value)}" for key, value in web.items()),
        ]
        self.config = root / "watchkeeper.toml"
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.log_path = root / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def __enter__(self) -> WebDaemon:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
        env["NO_COLOR"] = "1"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "watchkeeper", "run", "--config", str(self.config)],
                cwd=self.root,
                env=env,
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
        deadline = time.monotonic() + 30
        token_file = self.data_dir / "api_token"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"watchkeeper exited: {self.log()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError, OSError):
                reply = httpx.get(self.url + "/api/health", timeout=1)
                if reply.status_code == 200 and token_file.exists():
                    self.token = token_file.read_text(encoding="utf-8").strip()
                    if self.token:
                        return
            time.sleep(0.1)
        raise AssertionError(f"watchkeeper's API did not come up: {self.log()[-3000:]}")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None and not stop_process(self.proc, timeout=15):
            raise AssertionError("watchkeeper did not stop on SIGTERM")

    def rss_kb(self) -> int:
        """The daemon's resident memory (VmRSS), in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS in /proc/<pid>/status")

    def connect(self) -> socket.socket:
        """A raw TCP connection to the daemon, as an attacker would open it."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        return sock


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (EOF or reset); never blocks (and works
    for descriptors above ``select``'s limit: the tests hold hundreds)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True


def read_response(sock: socket.socket, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response from a raw socket: status, headers (lower-case names), body."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response head: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body[:length]
