"""A real ``nats-server`` with JetStream as its own process: for tests and benchmarks.

Starts ``nats-server -js`` on a free loopback port with its own store directory, waits
until it accepts clients and JetStream answers, and stops it with SIGTERM (SIGKILL after
a grace period). ``kill()`` is a crash (SIGKILL); ``restart()`` brings it back on the same
port and store, so what JetStream committed is still there::

    require_nats()
    with NatsServer(directory=tmp_path) as server:
        settings = BusSettings(backend="nats", servers=[server.url], host_id="web-1")
        ...
        server.kill()
        server.restart()

``config_text`` runs the server from a configuration file instead (users, permissions,
TLS); ``{port}`` and ``{store}`` in it are replaced by the port and the store directory.
``monitor_port=0`` picks a free port for the HTTP monitor (``/varz``, ``/jsz``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["NatsServer", "find_nats_server", "require_nats"]

_REQUIRE_ENV = "WATCHKEEPER_REQUIRE_NATS"
_PLACES = (Path("/usr/sbin/nats-server"), Path("/usr/bin/nats-server"))


def find_nats_server() -> str | None:
    """The ``nats-server`` program: on PATH, else in /usr/sbin or /usr/bin; None if absent."""
    found = shutil.which("nats-server")
    if found:
        return found
    for place in _PLACES:
        if place.is_file() and os.access(place, os.X_OK):
            return str(place)
    return None


def require_nats() -> str:
    """The ``nats-server`` program, or skip the test (fail it when CI sets
    ``WATCHKEEPER_REQUIRE_NATS=1``) with one clear reason."""
    import pytest

    found = find_nats_server()
    if found is None:
        reason = "nats-server is not installed (Debian: apt-get install nats-server)"
        if os.environ.get(_REQUIRE_ENV) == "1":
            pytest.fail(f"{reason}; {_REQUIRE_ENV}=1 requires it")
        pytest.skip(reason)
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _read_line(sock: socket.socket, buffer: bytearray) -> bytes:
    while b"\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError("connection closed")
        buffer.extend(chunk)
    line, _, rest = bytes(buffer).partition(b"\r\n")
    buffer[:] = rest
    return line


def _jetstream_ready(port: int) -> bool:
    """True when the server greets a client and JetStream answers an account-info request
    (when the server needs a login or TLS, its greeting saying JetStream is on is enough)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            buffer = bytearray()
            line = _read_line(sock, buffer)
            if not line.startswith(b"INFO "):
                return False
            info = json.loads(line[5:])
            if not info.get("jetstream"):
                return False
            if info.get("auth_required") or info.get("tls_required"):
                return True
            sock.sendall(
                b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true}'
                b"\r\nSUB _READY.x 1\r\nPUB $JS.API.INFO _READY.x 0\r\n\r\n"
            )
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                line = _read_line(sock, buffer)
                if line.startswith(b"PING"):
                    sock.sendall(b"PONG\r\n")
                elif line.startswith(b"-ERR"):
                    return False
                elif line.startswith((b"MSG ", b"HMSG ")):
                    size = int(line.split()[-1])
                    while len(buffer) < size + 2:
                        chunk = sock.recv(65536)
                        if not chunk:
                            return False
                        buffer.extend(chunk)
                    body = bytes(buffer[:size])
                    if line.startswith(b"HMSG "):
                        return False  # a status (no responders): not ready yet
                    return b'"type":"io.nats.jetstream.api.v1.account_info_response"' in body and (
                        b'"error"' not in body
                    )
            return False
    except (OSError, ValueError):
        return False


class NatsServer:
    """One ``nats-server`` process with JetStream; see the module docstring.

    ``directory`` (a temporary one by default) holds the store (``store/``), the server's
    log (``server.log``) and, with ``config_text``, ``server.conf``. ``port=0`` picks a
    free loopback port once; ``restart()`` keeps it.
    """

    def __init__(
        self,
        *,
        directory: Path | None = None,
        port: int = 0,
        config_text: str | None = None,
        monitor_port: int | None = None,
        start_timeout: float = 15.0,
        extra_args: list[str] | None = None,
    ) -> None:
        self._own_dir: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._own_dir = tempfile.TemporaryDirectory(prefix="nats-server-")
            directory = Path(self._own_dir.name)
        self.directory = directory
        self.store_dir = directory / "store"
        self.log_path = directory / "server.log"
        self.config_path = directory / "server.conf"
        self.config_text = config_text
        self.port = port
        self.monitor_port = monitor_port
        self._start_timeout = start_timeout
        self._extra = list(extra_args or [])
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str | None:
        """``http://127.0.0.1:<monitor_port>`` when the monitor is on."""
        return f"http://127.0.0.1:{self.monitor_port}" if self.monitor_port else None

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def _command(self, program: str) -> list[str]:
        if self.config_text is not None:
            text = self.config_text.replace("{port}", str(self.port)).replace(
                "{store}", str(self.store_dir)
            )
            self.config_path.write_text(text, encoding="utf-8")
            command = [program, "-c", str(self.config_path)]
        else:
            command = [program, "-js", "-sd", str(self.store_dir), "-p", str(self.port)]
            command += ["-a", "127.0.0.1"]
        if self.monitor_port is not None:
            command += ["-m", str(self.monitor_port)]
        return command + self._extra

    def start(self) -> NatsServer:
        """Start the server and wait until JetStream answers; raises ``RuntimeError``
        (with the end of the server's log) when it does not come up in time."""
        if self.running:
            return self
        program = find_nats_server()
        if program is None:
            raise RuntimeError("nats-server is not installed")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = _free_port()
        if self.monitor_port == 0:
            self.monitor_port = _free_port()
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self._command(program),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if _jetstream_ready(self.port):
                return self
            time.sleep(0.05)
        self._terminate(grace=1.0)
        raise RuntimeError(f"nats-server did not come up on port {self.port}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _terminate(self, grace: float) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self._proc = None

    def stop(self, grace: float = 5.0) -> None:
        """Stop the server cleanly (SIGTERM; SIGKILL after ``grace`` seconds)."""
        self._terminate(grace)

    def kill(self) -> None:
        """Crash the server (SIGKILL): what JetStream had not written is its own to lose."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        self._proc = None

    def restart(self) -> NatsServer:
        """Start again on the same port and store directory (after ``stop`` or ``kill``)."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and remove a temporary directory made for it."""
        self.stop()
        if self._own_dir is not None:
            self._own_dir.cleanup()
            self._own_dir = None

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
