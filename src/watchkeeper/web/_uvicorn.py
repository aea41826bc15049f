"""uvicorn's server and HTTP protocol, tuned for living inside a monitoring daemon
(imported only when the web server starts).

Two things uvicorn does not do on its own:

- A connection that never completes its request (idle after connecting, a head sent a
  byte at a time, a body that stalls) is kept forever; uvicorn's keep-alive timer stops
  at the first byte. :class:`GuardedProtocol` gives every request ``request_timeout``
  seconds, from the moment the connection is ready for it, to arrive whole; then the
  connection is closed. One timer per waiting connection, nothing that wakes otherwise.
- Its ``limit_concurrency`` answers 503 to everyone once enough sockets are open, so
  whoever holds sockets shuts out the operator. :class:`ConnectionGuard` caps the open
  connections instead by closing the *oldest waiting* one (connected or kept alive, but
  no complete request yet) to make room for a new one. A client that sends its request
  at once is never the oldest waiting, so it is served however many sockets others
  hold; only when every connection is busy with a request is a new one turned away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["CalmServer", "ConnectionGuard", "GuardedProtocol"]

log = logging.getLogger("watchkeeper.web")

#: h11 states of the client's side in which its request is not yet whole.
_INCOMPLETE = (h11.IDLE, h11.SEND_BODY)
_WARN_EVERY = 60.0


class CalmServer(uvicorn.Server):
    """uvicorn's server with a calmer heartbeat.

    Its loop wakes ten times a second to refresh the Date header and look at the exit
    flag. Once a second, and at once when ``stop`` is set, is plenty; it halves what the
    web server adds to an idle daemon's CPU.
    """

    def __init__(self, config: uvicorn.Config, stop: asyncio.Event) -> None:
        super().__init__(config)
        self._stop = stop

    async def main_loop(self) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 10) % 864000  # a multiple of 10: refresh the Date header
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._stop.wait()
            should_exit = await self.on_tick(counter)


class ConnectionGuard:
    """The open connections of one server, and which of them are waiting for a request
    (oldest first). See the module docstring."""

    def __init__(self, *, max_connections: int, request_timeout: float) -> None:
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self.open: set[GuardedProtocol] = set()
        self._waiting: dict[GuardedProtocol, None] = {}  # insertion order: oldest first
        self.shed = 0
        self.timed_out = 0
        self._warned = -_WARN_EVERY

    def admit(self, conn: GuardedProtocol) -> None:
        """Count a new connection, closing the oldest waiting ones above the cap."""
        self.open.add(conn)
        self.waiting(conn)
        while len(self.open) > self.max_connections and self._waiting:
            victim = next(iter(self._waiting))  # ``conn`` itself when all others are busy
            self.shed += 1
            self._warn(
                "more than %d connections open (web.max_connections): closing the oldest "
                "ones that have sent no complete request",
                self.max_connections,
            )
            self.drop(victim)

    def waiting(self, conn: GuardedProtocol) -> None:
        """``conn`` is ready for a request: it goes to the back of the line."""
        self._waiting.pop(conn, None)
        self._waiting[conn] = None

    def busy(self, conn: GuardedProtocol) -> None:
        self._waiting.pop(conn, None)

    def drop(self, conn: GuardedProtocol) -> None:
        """Forget ``conn`` and close it (closing twice is harmless)."""
        self.forget(conn)
        conn.close_now()

    def forget(self, conn: GuardedProtocol) -> None:
        self.open.discard(conn)
        self._waiting.pop(conn, None)

    def expired(self, conn: GuardedProtocol) -> None:
        self.timed_out += 1
        self._warn(
            "closing connections that sent no complete request in %gs (web.request_timeout)",
            self.request_timeout,
        )
        self.drop(conn)

    def _warn(self, message: str, limit: float) -> None:
        """One line a minute at most: under attack this is called per connection."""
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY:
            self._warned = now
            log.warning("web: " + message, limit)


class GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol under a :class:`ConnectionGuard` (see the module docstring).

    Use :meth:`bound` for the class to hand to ``uvicorn.Config(http=...)``.
    """

    guard: ConnectionGuard

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    @classmethod
    def bound(cls, guard: ConnectionGuard) -> type[GuardedProtocol]:
        """A subclass whose connections all answer to ``guard``."""
        return type("GuardedProtocol", (cls,), {"guard": guard})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()
        self.guard.admit(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.guard.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start the next (pipelined) request
        if not self.transport.is_closing():
            self._follow()

    def _follow(self) -> None:
        """Busy once the request is whole; waiting (with a fresh deadline) when the
        connection is ready for the next one."""
        if self.conn.their_state in _INCOMPLETE:
            if self._deadline is None:
                self._arm()
                self.guard.waiting(self)
        else:
            self._disarm()
            self.guard.busy(self)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.guard.request_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.conn.their_state in _INCOMPLETE and not self.transport.is_closing():
            self.guard.expired(self)

    def close_now(self) -> None:
        self._disarm()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
