"""The real-model fake Ollama as its own process: for tests and benchmarks.

Starts ``python -m watchkeeper.testing.fake_ollama --real-model`` on a free loopback
port, waits until it answers ``GET /``, and stops it with SIGTERM (SIGKILL after a grace
period). Clients talk to it over HTTP, exactly as to Ollama; the server appends one JSON
line per answer (its counters, ``done_reason`` and text) to a stats file, read with
:meth:`RealModelServer.stats`::

    with RealModelServer(directory=tmp_path) as server:
        OllamaAdvisor(server.url, server.model) ...
        assert all(run["done_reason"] == "stop" for run in server.stats())
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from watchkeeper.testing._real_model import DEFAULT_NAME

__all__ = ["RealModelServer"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RealModelServer:
    """One real-model server process; see the module docstring.

    ``model_path`` defaults to the realmodel extra's Gemma 3 270M file; ``directory``
    (a temporary one by default) holds ``stats.jsonl`` and the server's ``server.log``.
    ``extra_args`` go to the server's command line (e.g. ``["--threads", "1"]``).
    """

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        directory: Path | None = None,
        extra_args: list[str] | None = None,
        start_timeout: float = 120.0,
    ) -> None:
        self._model_path = model_path
        self._own_dir: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._own_dir = tempfile.TemporaryDirectory(prefix="real-model-")
            directory = Path(self._own_dir.name)
        self.directory = directory
        self.stats_path = directory / "stats.jsonl"
        self.log_path = directory / "server.log"
        self._extra = list(extra_args or [])
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.model = DEFAULT_NAME

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs (to watch its CPU use)."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> RealModelServer:
        """Start the process and wait until it answers; raises ``RuntimeError`` if not."""
        self.port = _free_port()
        command = [sys.executable, "-m", "watchkeeper.testing.fake_ollama", "--real-model"]
        if self._model_path is not None:
            command.append(str(self._model_path))
        command += ["--port", str(self.port), "--stats-file", str(self.stats_path), *self._extra]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "WATCHKEEPER_"))}
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, env=env)
        deadline = time.monotonic() + self._start_timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the real-model server exited: {self.log()[-2000:]}")
            try:
                if httpx.get(self.url + "/", timeout=1).text == "Ollama is running":
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the real-model server did not answer: {self.log()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        self.stop()
        if self._own_dir is not None:
            self._own_dir.cleanup()
            self._own_dir = None

    def __enter__(self) -> RealModelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def stats(self) -> list[dict[str, Any]]:
        """One dict per answer so far: ``done_reason``, counters, ``content``, ``at``."""
        try:
            text = self.stats_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
