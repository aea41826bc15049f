"""``SyncStorage``: the synchronous core, one SQLite connection used from one thread.

The daemon uses it through the async :class:`~watchkeeper.storage.Storage` facade, which
runs it in a dedicated thread; scripts and the CLI may use it directly::

    with SyncStorage(data_dir / "watchkeeper.db") as db:
        db.write_sample(time.time(), sample.flat())
        points = db.metric_range("cpu.percent", time.time() - 3600, time.time(), 60)

Durability: WAL mode with ``synchronous=NORMAL``. A committed transaction survives the
process being killed (``kill -9``); an operating-system crash or power cut may lose the
last transactions committed before it (never corrupting the file), because the WAL is
synced at checkpoints rather than at every commit.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from watchkeeper.storage._db import describe_error, guarded
from watchkeeper.storage._events import EventsMixin
from watchkeeper.storage._incidents import IncidentsMixin
from watchkeeper.storage._metrics import MetricsMixin
from watchkeeper.storage._records import RecordsMixin
from watchkeeper.storage.errors import StorageError
from watchkeeper.storage.migrations import LATEST_VERSION, migrate, schema_version
from watchkeeper.storage.models import MaintenanceReport, RetentionPolicy

__all__ = ["DB_FILENAME", "SyncStorage"]

DB_FILENAME = "watchkeeper.db"
#: Roll-up leaves the most recent seconds alone: samples for them may still be arriving.
ROLLUP_LAG = 10.0


class SyncStorage(MetricsMixin, RecordsMixin, IncidentsMixin, EventsMixin):
    """History in one SQLite file. Not thread-safe: use it from the thread that opened it.

    ``readonly`` opens an existing database for queries only (the CLI reading a running
    daemon's history); ``max_size_mb`` caps the file, after which writes fail as on a
    full disk until retention frees space.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        retention: RetentionPolicy | None = None,
        readonly: bool = False,
        max_size_mb: float | None = None,
    ) -> None:
        self.path = Path(path)
        self.retention = retention or RetentionPolicy()
        self.readonly = readonly
        self.max_size_mb = max_size_mb
        self._clock = clock
        self._conn: sqlite3.Connection | None = None
        self._ids: dict[str, int] = {}

    # -- life ---------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._conn is not None

    def open(self) -> SyncStorage:
        """Connect and bring the schema up to date; a no-op when already open."""
        if self._conn is not None:
            return self
        if self.readonly and not self.path.exists():
            raise StorageError(f"no history at {self.path} yet")
        try:
            if not self.readonly:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=5.0, check_same_thread=True
            )
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open {self.path}: {describe_error(exc)}") from exc
        try:
            self._configure(conn)
            if self.readonly:
                version = schema_version(conn)
                if version != LATEST_VERSION:
                    raise StorageError(
                        f"{self.path} is at schema version {version}, this watchkeeper reads "
                        f"{LATEST_VERSION}; start the daemon once to migrate it"
                    )
            else:
                migrate(conn)
        except StorageError:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            raise StorageError(f"cannot open {self.path}: {describe_error(exc)}") from exc
        self._conn = conn
        return self

    def _configure(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA busy_timeout = 5000")
        if self.readonly:
            conn.execute("PRAGMA query_only = ON")
        else:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StorageError(f"{self.path}: the filesystem does not support WAL mode")
            conn.execute("PRAGMA synchronous = NORMAL")
            # After a checkpoint, shrink a WAL that a burst let grow.
            conn.execute("PRAGMA journal_size_limit = 16777216")
            if self.max_size_mb is not None:
                page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
                pages = max(1, math.floor(self.max_size_mb * 1024 * 1024 / page_size))
                conn.execute(f"PRAGMA max_page_count = {pages}")

    def close(self) -> None:
        """Close the connection (an idle WAL is checkpointed by SQLite on close)."""
        conn, self._conn = self._conn, None
        self._ids.clear()
        if conn is not None:
            try:
                if not self.readonly:
                    conn.execute("PRAGMA optimize")
            except sqlite3.Error:
                pass
            finally:
                conn.close()

    def __enter__(self) -> SyncStorage:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- facts --------------------------------------------------------------------------
    @guarded
    def schema_version(self) -> int:
        return schema_version(self._db())

    def size_bytes(self) -> int:
        """The database file plus its WAL, in bytes (0 when absent)."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += Path(f"{self.path}{suffix}").stat().st_size
        return total

    @guarded
    def integrity_check(self) -> str:
        """SQLite's verdict on the file: ``"ok"`` or the first problems it found."""
        rows = self._db().execute("PRAGMA integrity_check").fetchall()
        return "; ".join(str(row[0]) for row in rows)

    # -- maintenance --------------------------------------------------------------------
    @guarded
    def maintain(self, policy: RetentionPolicy | None = None) -> MaintenanceReport:
        """Roll complete minutes up into aggregates, then delete what retention says is due.

        Cheap when run every minute (a couple of minutes of raw rows to fold, as many to
        delete); after a long pause it catches up in bounded steps over several calls.
        """
        started = time.perf_counter()
        now = self._clock()
        policy = policy or self.retention
        with self._tx() as conn:
            rolled, watermark = self._rollup(conn, now, ROLLUP_LAG)
        with self._tx() as conn:
            deleted = self._metric_retention(conn, now, policy)
            deleted.update(self._event_retention(conn, now, policy))
        return MaintenanceReport(
            ts=now,
            rolled_up_rows=rolled,
            rollup_until=watermark,
            deleted=deleted,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
