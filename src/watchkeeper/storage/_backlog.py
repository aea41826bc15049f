"""Writes kept in memory while the disk refuses them, and written when it takes them again.

A full disk (or a file made read-only, or a lock held too long) passes; the samples,
alerts and audit entries that arrive meanwhile need not be lost. :class:`Backlog` runs
every write of the writer thread: a write that fails for such a passing reason is kept,
in order, and the kept writes go first, oldest first, before each later write. It is
bounded (``limit`` writes); when full, the oldest kept write is dropped and counted, so a
disk that stays full costs a fixed amount of memory, not a growing one::

    backlog = Backlog(limit=500)
    backlog.run(functools.partial(db.write_samples, batch))  # on the writer thread

A write that fails for any other reason (a bug, a constraint) is not kept: repeating it
would fail the same way and hold up everything behind it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from watchkeeper.storage.errors import StorageError

__all__ = ["Backlog", "FailureStreak", "passes"]

T = TypeVar("T")

# SQLite's primary result codes for trouble that goes away by itself: busy, locked,
# read-only, I/O error, full, cannot open.
_PASSING_CODES = frozenset({5, 6, 8, 10, 13, 14})


def passes(exc: BaseException) -> bool:
    """Whether the storage error ``exc`` is one that may go away (a full disk, say)."""
    cause = exc.__cause__ if isinstance(exc, StorageError) else exc
    if not isinstance(cause, sqlite3.OperationalError):
        return False
    code = getattr(cause, "sqlite_errorcode", None)
    return code is None or (code & 0xFF) in _PASSING_CODES


class Backlog:
    """Failed writes waiting for the disk, oldest first. Use from the writer thread only;
    the counters may be read from anywhere."""

    def __init__(self, limit: int = 500) -> None:
        if limit < 0:
            raise ValueError(f"backlog limit must not be negative, got {limit}")
        self.limit = limit
        self._kept: deque[tuple[Callable[[], Any], int]] = deque()
        self._lock = threading.Lock()
        self.dropped = 0
        self.recovered = 0
        self.recovered_samples = 0

    def __len__(self) -> int:
        return len(self._kept)

    def run(self, write: Callable[[], T], *, samples: int = 0) -> T:
        """Write what is kept, then ``write``; keep ``write`` when either fails for a
        passing reason, and raise the ``StorageError`` as before. ``samples`` says how
        many metric samples ``write`` stores, for the counters."""
        try:
            self._replay()
            return write()
        except StorageError as exc:
            if passes(exc):
                self._keep(write, samples)
            raise

    def _replay(self) -> None:
        while self._kept:
            write, samples = self._kept[0]
            try:
                write()
            except StorageError as exc:
                if passes(exc):
                    raise
                self.dropped += 1  # it will never go in: do not hold the others up
            else:
                self.recovered += 1
                self.recovered_samples += samples
            with self._lock:
                self._kept.popleft()

    def _keep(self, write: Callable[[], Any], samples: int) -> None:
        if self.limit == 0:
            self.dropped += 1
            return
        with self._lock:
            if len(self._kept) >= self.limit:
                self._kept.popleft()
                self.dropped += 1
            self._kept.append((write, samples))


class FailureStreak:
    """The run of failed writes going on now: what health shows ("writes failing since
    ... : reason") and the one log line per minute, plus one when writes work again."""

    def __init__(
        self, path: object, clock: Callable[[], float], log: logging.Logger, every: float = 60.0
    ) -> None:
        self._path = path
        self._clock = clock
        self._log = log
        self._every = every
        self.errors = 0
        self.length = 0
        self.since: float | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self._logged_at = -every

    def failed(self, op: str, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = str(exc)
        self.last_error_at = self._clock()
        if self.length == 0:
            self.since = self.last_error_at
        now = time.monotonic()
        if self.length == 0 or now - self._logged_at >= self._every:
            self._logged_at = now
            self._log.error(
                "storage: could not %s: %s. %d write(s) failed so far; history already "
                "stored is untouched, new writes are kept in memory (up to a limit) until "
                "they can be written, and watchkeeper keeps running",
                op,
                exc,
                self.errors,
            )
        self.length += 1

    def succeeded(self, backlog: Backlog) -> None:
        if self.length:
            self._log.warning(
                "storage: writes to %s work again after %d failure(s); %d kept write(s) "
                "written, %d dropped",
                self._path,
                self.length,
                backlog.recovered,
                backlog.dropped,
            )
            self.length = 0
            self.since = None
