"""The fake Ollama's shared state: models, scripted replies and the request log.

Handler threads and the test thread both touch it, so every mutation holds one lock.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from watchkeeper.testing._fake_protocol import FakeModel, Reply, ReplyFn, now_rfc3339

__all__ = ["FakeState", "RecordedRequest"]

_DEFAULT_KEEP_ALIVE_S = 300.0  # Ollama keeps a model loaded 5 minutes by default


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it; ``body`` is the parsed JSON object, if any."""

    method: str
    path: str
    body: dict[str, Any] | None
    raw: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class FakeState:
    """Everything the handlers read and the test scripts; thread-safe."""

    def __init__(
        self,
        models: Iterable[str],
        *,
        latency: float,
        default_reply: Reply | None,
        reply_fn: ReplyFn | None,
        version: str,
        log: TextIO | None,
    ) -> None:
        self.latency = latency
        self.version = version
        self.default_reply = default_reply
        self.reply_fn = reply_fn
        self.modified_at = now_rfc3339()
        self.stopping = threading.Event()
        self._log = log
        self._lock = threading.Lock()
        self._models = [FakeModel.from_name(m) for m in models]
        self._queue: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._loaded: dict[str, float] = {}
        self._connections: set[socket.socket] = set()

    # -- scripting and inspection (test side) -------------------------------------

    def enqueue(self, replies: Iterable[Reply]) -> None:
        with self._lock:
            self._queue.extend(replies)

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def add_model(self, name: str) -> None:
        with self._lock:
            if not any(m.matches(name) for m in self._models):
                self._models.append(FakeModel.from_name(name))

    def remove_model(self, name: str) -> None:
        with self._lock:
            self._models = [m for m in self._models if not m.matches(name)]

    def model_names(self) -> list[str]:
        with self._lock:
            return [m.name for m in self._models]

    def open_connections(self) -> list[socket.socket]:
        with self._lock:
            return list(self._connections)

    # -- server side --------------------------------------------------------------

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def track(self, conn: socket.socket, *, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def log_line(self, line: str) -> None:
        if self._log is not None:
            print(line, file=self._log, flush=True)

    def find_model(self, name: str) -> FakeModel | None:
        with self._lock:
            return next((m for m in self._models if m.matches(name)), None)

    def mark_loaded(self, model: FakeModel) -> None:
        with self._lock:
            self._loaded[model.name] = time.time() + _DEFAULT_KEEP_ALIVE_S

    def tag_entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [m.tag_entry(self.modified_at) for m in self._models]

    def ps_entries(self) -> list[dict[str, Any]]:
        now = time.time()
        with self._lock:
            loaded = [(m, self._loaded[m.name]) for m in self._models if m.name in self._loaded]
        entries = []
        for model, expires in loaded:
            if expires < now:
                continue
            entry = model.tag_entry(self.modified_at)
            del entry["modified_at"]
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))
            entries.append({**entry, "expires_at": stamp, "size_vram": 0, "context_length": 4096})
        return entries

    def next_reply(self, body: dict[str, Any]) -> Reply:
        """Scripted queue first, then the reply function, then the default."""
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        reply_fn = self.reply_fn
        if reply_fn is not None:
            answer = reply_fn(body)
            if answer is not None:
                return Reply.coerce(answer)
        return self.default_reply or Reply()
