"""The local outbox: events waiting for the NATS server, kept on disk in order.

Every event the NATS bus publishes is written here first and removed once JetStream has
acknowledged it, so a host cut off from the server (or a watchkeeper restart) loses
nothing: the rows drain in order, with their message ids, when the server is back, and
JetStream's de-duplication makes a resend of an already stored message count once::

    box = Outbox(data_dir / "outbox.sqlite3", max_bytes=64 * 1024 * 1024)
    box.put(message.id, subject, body)
    for row in box.peek(100):
        ...                       # publish, wait for the ack
    box.remove_through(row.seq)

The outbox is bounded by ``max_bytes`` (the bodies' size): when a new row does not fit,
the oldest telemetry rows go first, then the oldest events; :attr:`dropped` counts them
by kind. One SQLite file, written by one process.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EVENT", "TELEMETRY", "Outbox", "OutboxRow"]

EVENT = "event"
TELEMETRY = "telemetry"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    subject TEXT NOT NULL,
    kind TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS dropped (kind TEXT PRIMARY KEY, count INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    id: str
    subject: str
    kind: str
    body: bytes


class Outbox:
    """Messages waiting to be sent, oldest first; see the module docstring."""

    def __init__(self, path: Path, *, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        count, size = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM outbox"
        ).fetchone()
        self._count = int(count)
        self._bytes = int(size)
        self.dropped: dict[str, int] = {EVENT: 0, TELEMETRY: 0}
        for kind, value in self._db.execute("SELECT kind, count FROM dropped"):
            self.dropped[str(kind)] = int(value)

    def __len__(self) -> int:
        return self._count

    @property
    def size(self) -> int:
        """The size of the waiting bodies."""
        return self._bytes

    def put(self, message_id: str, subject: str, body: bytes, kind: str = EVENT) -> bool:
        """Queue one message; False (and counted as dropped) when it alone exceeds the
        bound. Older rows are dropped to make room: telemetry first, then events."""
        size = len(body)
        if size > self.max_bytes:
            self._count_drop(kind, 1)
            return False
        if self._bytes + size > self.max_bytes:
            self._make_room(size)
        self._db.execute(
            "INSERT INTO outbox (id, subject, kind, body) VALUES (?, ?, ?, ?)",
            (message_id, subject, kind, body),
        )
        self._count += 1
        self._bytes += size
        return True

    def _make_room(self, size: int) -> None:
        need = self._bytes + size - self.max_bytes
        for kind in (TELEMETRY, EVENT):
            if need <= 0:
                return
            rows = self._db.execute(
                "SELECT seq, LENGTH(body) FROM outbox WHERE kind = ? ORDER BY seq", (kind,)
            )
            last = None
            freed = gone = 0
            for seq, length in rows:
                last = seq
                freed += int(length)
                gone += 1
                if freed >= need:
                    break
            if last is None:
                continue
            self._db.execute("DELETE FROM outbox WHERE kind = ? AND seq <= ?", (kind, last))
            self._count -= gone
            self._bytes -= freed
            need -= freed
            self._count_drop(kind, gone)

    def _count_drop(self, kind: str, count: int) -> None:
        self.dropped[kind] = self.dropped.get(kind, 0) + count
        self._db.execute(
            "INSERT INTO dropped (kind, count) VALUES (?, ?) "
            "ON CONFLICT(kind) DO UPDATE SET count = count + excluded.count",
            (kind, count),
        )

    def peek(self, limit: int = 100) -> list[OutboxRow]:
        """The oldest ``limit`` rows, oldest first (they stay until removed)."""
        return [
            OutboxRow(int(seq), str(mid), str(subject), str(kind), bytes(body))
            for seq, mid, subject, kind, body in self._db.execute(
                "SELECT seq, id, subject, kind, body FROM outbox ORDER BY seq LIMIT ?", (limit,)
            )
        ]

    def remove_through(self, seq: int) -> None:
        """Forget every row up to and including ``seq`` (they were acknowledged)."""
        count, size = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM outbox WHERE seq <= ?", (seq,)
        ).fetchone()
        self._db.execute("DELETE FROM outbox WHERE seq <= ?", (seq,))
        self._count -= int(count)
        self._bytes -= int(size)

    def remove(self, seq: int) -> None:
        """Forget one row (a message the server will never take)."""
        row = self._db.execute("SELECT LENGTH(body) FROM outbox WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            return
        self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
        self._count -= 1
        self._bytes -= int(row[0])

    def close(self) -> None:
        self._db.close()
