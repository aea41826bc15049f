"""The fake Ollama's shared state: models, scripted replies and the request log.

Handler threads and the test thread both touch it, so every mutation holds one lock. With
a real model (:mod:`watchkeeper.testing._real_model`) the model list is that model's card
(and any aliases), and what is loaded comes from the model itself.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from watchkeeper.testing._fake_protocol import (
    DEFAULT_KEEP_ALIVE_S,
    FakeModel,
    Reply,
    ReplyFn,
    now_rfc3339,
    parse_keep_alive,
)

if TYPE_CHECKING:
    from watchkeeper.testing._real_model import RealModel

__all__ = ["FakeState", "RecordedRequest"]

# Ollama shows a model kept loaded for ever with an expiry far in the future.
_FOREVER_S = 290 * 365 * 86400.0


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
        real_model: RealModel | None = None,
    ) -> None:
        self.real_model = real_model
        self.latency = latency
        self.version = version
        self.default_reply = default_reply
        self.reply_fn = reply_fn
        self.modified_at = now_rfc3339()
        self.stopping = threading.Event()
        self._log = log
        self._lock = threading.Lock()
        if real_model is None:
            self._models = [FakeModel.from_name(m) for m in models]
        else:
            # The real model under its own name, and under each other name as an alias.
            card = real_model.card
            aliases = [FakeModel.from_name(m).name for m in models]
            self._models = [card] + [
                dataclasses.replace(card, name=alias) for alias in aliases if alias != card.name
            ]
        self._last_used: str | None = None
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

    def mark_loaded(self, model: FakeModel, keep_alive: Any = None) -> None:
        """As Ollama after a request: loaded for ``keep_alive`` more (bad values: default)."""
        try:
            stay = parse_keep_alive(keep_alive)
        except ValueError:
            stay = DEFAULT_KEEP_ALIVE_S
        with self._lock:
            self._last_used = model.name
            if stay == 0:
                self._loaded.pop(model.name, None)
            else:
                self._loaded[model.name] = time.time() + (_FOREVER_S if stay is None else stay)

    def tag_entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [m.tag_entry(self.modified_at) for m in self._models]

    def ps_entries(self) -> list[dict[str, Any]]:
        now = time.time()
        with self._lock:
            if self.real_model is None:
                loaded = [
                    (m, self._loaded[m.name], 4096) for m in self._models if m.name in self._loaded
                ]
            else:
                state = self.real_model.loaded()
                used = next((m for m in self._models if m.name == self._last_used), None)
                model = used or self._models[0]
                loaded = []
                if state is not None:
                    num_ctx, expires = state
                    loaded = [(model, now + _FOREVER_S if expires is None else expires, num_ctx)]
        entries = []
        for model, expires, num_ctx in loaded:
            if expires < now:
                continue
            entry = model.tag_entry(self.modified_at)
            del entry["modified_at"]
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))
            entries.append(
                {**entry, "expires_at": stamp, "size_vram": 0, "context_length": num_ctx}
            )
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
