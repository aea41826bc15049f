"""The connection-holding base the storage parts share: transactions, errors, meta keys."""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from watchkeeper.storage.errors import StorageError
from watchkeeper.storage.models import RetentionPolicy

__all__ = ["DbBase", "describe_error", "guarded", "to_json"]

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound="DbBase")

# SQLite's messages are terse; a person reading the log wants the likely cause as well.
_HINTS = {
    "database or disk is full": "the disk is full or storage.max_size_mb is reached",
    "attempt to write a readonly database": "the file or its directory is read-only",
    "unable to open database file": "the directory is missing or not writable",
    "database is locked": "another process holds the write lock",
    "disk I/O error": "the disk reported an I/O error",
}


def to_json(data: Any) -> str:
    """Compact JSON for a TEXT column; anything unusual is stored as its string."""
    return json.dumps(data, separators=(",", ":"), default=str, ensure_ascii=False)


def describe_error(exc: BaseException) -> str:
    """``exc`` as one line, with the likely cause when SQLite's message is a known one."""
    text = str(exc) or type(exc).__name__
    for needle, hint in _HINTS.items():
        if needle in text:
            return f"{text} ({hint})"
    return text


class DbBase:
    """Holds the connection. Subclasses use ``_db()`` and ``_tx()``; nothing else opens it."""

    path: Path
    retention: RetentionPolicy
    _clock: Callable[[], float]
    _conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError(f"storage at {self.path} is not open")
        return self._conn

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed when the block ends, rolled back if it raises
        (including when the COMMIT itself fails, e.g. on a full disk)."""
        conn = self._db()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    def _meta_get(self, conn: sqlite3.Connection, key: str) -> str | None:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _meta_set(self, conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


def guarded(fn: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Turn SQLite's errors into ``StorageError`` naming the operation and the file."""

    @functools.wraps(fn)
    def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise StorageError(
                f"{fn.__name__} on {self.path} failed: {describe_error(exc)}"
            ) from exc

    return wrapper
