"""``Storage``: the async face of the history, for code running on the event loop.

All SQLite work happens in two dedicated threads, each with its own connection: one
writer (every write and the maintenance pass, in order) and one reader (queries, which in
WAL mode never wait for the writer). The loop only ever awaits futures::

    storage = Storage.in_data_dir(settings.data_dir)
    await storage.open()
    await storage.write_sample(sample.timestamp, sample.flat())
    points = await storage.metric_range("cpu.percent", now - 86400, now, 60)
    await storage.close()

Writes never raise: a failure (full disk, read-only file) is logged once per minute at
most, counted in :meth:`Storage.stats`, and reported as ``False``; what is already stored
is untouched and the caller carries on. A write refused for a reason that passes (a full
disk) is kept in memory, bounded, and written first once writes work again (see
:mod:`watchkeeper.storage._backlog`). Queries raise :class:`StorageError`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from watchkeeper.storage._backlog import Backlog, FailureStreak
from watchkeeper.storage.core import DB_FILENAME, SyncStorage
from watchkeeper.storage.errors import StorageError
from watchkeeper.storage.models import (
    MaintenanceReport,
    RetentionPolicy,
    StorageStats,
)

__all__ = ["Storage"]

log = logging.getLogger("watchkeeper.storage")

P = ParamSpec("P")
T = TypeVar("T")
_Batch = list[tuple[float, dict[str, float], "Future[int]"]]


class Query(Generic[P, T]):
    """A query declared once, on :class:`SyncStorage`, awaited on :class:`Storage`.

    Use it in the class body of ``Storage`` for every read: the async method has the core
    method's parameters and docstring, and runs it on the reader thread::

        alerts = Query(SyncStorage.alerts)      # await storage.alerts(limit=10)
    """

    def __init__(self, method: Callable[Concatenate[SyncStorage, P], T]) -> None:
        self.method = method
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, storage: None, owner: type[Storage]) -> Query[P, T]: ...
    @overload
    def __get__(self, storage: Storage, owner: type[Storage]) -> Callable[P, Awaitable[T]]: ...
    def __get__(
        self, storage: Storage | None, owner: type[Storage]
    ) -> Query[P, T] | Callable[P, Awaitable[T]]:
        if storage is None:
            return self
        method, db = self.method, storage._rdb

        async def query(*args: P.args, **kwargs: P.kwargs) -> T:
            return await storage._read(lambda: method(db, *args, **kwargs))

        return query


class Write(Generic[P, T]):
    """A write declared once, on :class:`SyncStorage`, awaited on :class:`Storage`.

    The async method takes the core method's parameters, runs it on the writer thread in
    order with the other writes, and returns True, or False when it failed (logged,
    counted, and kept for later when the reason passes; ``op`` names it in the log)::

        record_health = Write(SyncStorage.record_health, "store a health change")
    """

    def __init__(self, method: Callable[Concatenate[SyncStorage, P], T], op: str) -> None:
        self.method = method
        self.op = op
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, storage: None, owner: type[Storage]) -> Write[P, T]: ...
    @overload
    def __get__(self, storage: Storage, owner: type[Storage]) -> Callable[P, Awaitable[bool]]: ...
    def __get__(
        self, storage: Storage | None, owner: type[Storage]
    ) -> Write[P, T] | Callable[P, Awaitable[bool]]:
        if storage is None:
            return self
        method, db, op = self.method, storage._wdb, self.op

        async def write(*args: P.args, **kwargs: P.kwargs) -> bool:
            return await storage._write(op, lambda: method(db, *args, **kwargs))

        return write


class Storage:
    """The history, for async callers. Construct freely (no I/O), then ``await open()``.

    ``max_pending`` bounds the writes waiting for the writer thread; beyond it new writes
    are dropped and counted rather than piling up in memory behind a stuck disk;
    ``max_backlog`` bounds the failed writes kept in memory for when the disk takes them.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        retention: RetentionPolicy | None = None,
        max_size_mb: float | None = None,
        max_pending: int = 1000,
        max_backlog: int = 500,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        policy = retention or RetentionPolicy()
        self._wdb = SyncStorage(self.path, clock=clock, retention=policy, max_size_mb=max_size_mb)
        self._rdb = SyncStorage(self.path, clock=clock, retention=policy, readonly=True)
        self.max_pending = max_pending
        self._writer: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._lock = asyncio.Lock()
        self._batch: _Batch = []
        self._batch_lock = threading.Lock()
        self._flush_scheduled = False
        self._schema: int | None = None
        self._pending = 0
        self._writes = 0
        self._dropped = 0
        self._samples = 0
        self._backlog = Backlog(max_backlog)
        self._streak = FailureStreak(self.path, clock, log)
        self._last_maintenance: MaintenanceReport | None = None
        #: Why the last ``open()`` failed, in words; None once it worked (or never tried).
        self.open_error: str | None = None

    @classmethod
    def in_data_dir(cls, data_dir: str | Path, **options: Any) -> Storage:
        """The daemon's database: ``<data_dir>/watchkeeper.db``."""
        return cls(Path(data_dir) / DB_FILENAME, **options)

    @property
    def retention(self) -> RetentionPolicy:
        return self._wdb.retention

    @retention.setter
    def retention(self, policy: RetentionPolicy) -> None:
        self._wdb.retention = policy
        self._rdb.retention = policy

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    # -- life ---------------------------------------------------------------------------
    async def open(self) -> None:
        """Create or migrate the database and start the threads; raises ``StorageError``
        (with the reason in words) when the file cannot be used. Idempotent."""
        async with self._lock:
            if self._writer is not None:
                return
            writer = ThreadPoolExecutor(1, thread_name_prefix="watchkeeper-db-writer")
            reader = ThreadPoolExecutor(1, thread_name_prefix="watchkeeper-db-reader")
            try:
                await self._call(writer, self._wdb.open)
                await self._call(reader, self._rdb.open)
                self._schema = await self._call(reader, self._rdb.schema_version)
            except BaseException as exc:
                self.open_error = str(exc) if isinstance(exc, StorageError) else None
                for executor, db in ((writer, self._wdb), (reader, self._rdb)):
                    executor.submit(db.close)
                    executor.shutdown(wait=False)
                raise
            self.open_error = None
            self._writer, self._reader = writer, reader

    async def close(self) -> None:
        """Finish queued writes, close both connections and stop the threads."""
        async with self._lock:
            writer, reader = self._writer, self._reader
            self._writer = self._reader = None
            for executor, db in ((writer, self._wdb), (reader, self._rdb)):
                if executor is None:
                    continue
                try:
                    await self._call(executor, db.close)
                finally:
                    executor.shutdown(wait=False)

    @staticmethod
    async def _call(
        executor: ThreadPoolExecutor, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        return await asyncio.wrap_future(executor.submit(fn, *args, **kwargs))

    # -- writing ------------------------------------------------------------------------
    def _admit(self) -> bool:
        if self._writer is None:
            self._dropped += 1
            return False
        if self._pending >= self.max_pending:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 1000 == 0:
                log.error(
                    "storage: %d writes are waiting on %s; dropping new ones (%d so far)",
                    self._pending,
                    self.path,
                    self._dropped,
                )
            return False
        return True

    async def _write(self, op: str, fn: Callable[[], object]) -> bool:
        if not self._admit():
            return False
        assert self._writer is not None
        self._pending += 1
        try:
            await self._call(self._writer, self._backlog.run, fn)
        except StorageError as exc:
            self._failed(op, exc)
            return False
        finally:
            self._pending -= 1
        self._succeeded()
        return True

    def _failed(self, op: str, exc: BaseException) -> None:
        self._streak.failed(op, exc)

    def _succeeded(self) -> None:
        self._writes += 1
        self._streak.succeeded(self._backlog)

    @property
    def failing_since(self) -> float | None:
        """When the run of failed writes going on now began (clock time), or None while
        writes work: what health reports as "writes failing"."""
        return self._streak.since

    async def write_sample(self, timestamp: float, values: Mapping[str, float]) -> bool:
        """Store one sample's flat metrics. Samples that arrive while the writer is busy
        are written together in one transaction."""
        # Convert here, so a bad value fails its own caller, not the whole batch.
        clean = {str(name): float(value) for name, value in values.items()}
        if not self._admit():
            return False
        assert self._writer is not None
        done: Future[int] = Future()
        with self._batch_lock:
            self._batch.append((float(timestamp), clean, done))
            schedule, self._flush_scheduled = not self._flush_scheduled, True
        if schedule:
            self._writer.submit(self._flush_batch)
        self._pending += 1
        try:
            await asyncio.wrap_future(done)
        except StorageError as exc:
            self._failed("store a metrics sample", exc)
            return False
        finally:
            self._pending -= 1
        self._samples += 1
        self._succeeded()
        return True

    def _flush_batch(self) -> None:
        """Runs on the writer thread: everything queued so far, one transaction."""
        with self._batch_lock:
            batch, self._batch = self._batch, []
            self._flush_scheduled = False
        write = functools.partial(self._wdb.write_samples, [(ts, v) for ts, v, _ in batch])
        try:
            written = self._backlog.run(write, samples=len(batch))
        except BaseException as exc:
            for _, _, done in batch:
                done.set_exception(exc)
            return
        for _, _, done in batch:
            done.set_result(written)

    # Each write and query is declared once, on SyncStorage; these run it on a thread.
    record_alert = Write(SyncStorage.record_alert, "store an alert")
    mark_notified = Write(SyncStorage.mark_notified, "mark an alert notified")
    record_incident = Write(SyncStorage.record_incident, "store an incident")
    mark_incident_notified = Write(SyncStorage.mark_incident_notified, "mark an incident notified")
    record_action = Write(SyncStorage.record_action, "store an action record")
    record_agent_event = Write(SyncStorage.record_agent_event, "store an agent event")
    record_analysis = Write(SyncStorage.record_analysis, "store an analysis")
    log_activity = Write(SyncStorage.log_activity, "log activity")
    record_health = Write(SyncStorage.record_health, "store a health change")
    save_baseline = Write(SyncStorage.save_baseline, "save a baseline")
    claim_rows = Write(SyncStorage.claim_rows, "file older rows under this host")
    mark_fleet_notified = Write(SyncStorage.mark_fleet_notified, "mark a fleet incident notified")

    last_notified = Query(SyncStorage.last_notified)
    metric_range = Query(SyncStorage.metric_range)
    metric_ranges = Query(SyncStorage.metric_ranges)
    metric_names = Query(SyncStorage.metric_names)
    alerts = Query(SyncStorage.alerts)
    alert_transitions = Query(SyncStorage.alert_transitions)
    incidents = Query(SyncStorage.incidents)
    incident = Query(SyncStorage.incident)
    incident_alerts = Query(SyncStorage.incident_alerts)
    incident_last_notified = Query(SyncStorage.incident_last_notified)
    audit = Query(SyncStorage.audit)
    success_rates = Query(SyncStorage.success_rates)
    search_activity = Query(SyncStorage.search_activity)
    agent_events = Query(SyncStorage.agent_events)
    analyses = Query(SyncStorage.analyses)
    health_history = Query(SyncStorage.health_history)
    load_baselines = Query(SyncStorage.load_baselines)
    integrity_check = Query(SyncStorage.integrity_check)
    hosts_recorded = Query(SyncStorage.hosts_recorded)
    firing_by_host = Query(SyncStorage.firing_by_host)
    fleet_last_notified = Query(SyncStorage.fleet_last_notified)

    async def maintain(self, policy: RetentionPolicy | None = None) -> MaintenanceReport | None:
        """Roll-up and retention on the writer thread; None when it failed (counted)."""
        if policy is not None:
            self.retention = policy
        if not self._admit():
            return None
        assert self._writer is not None
        self._pending += 1
        try:
            report = await self._call(self._writer, self._wdb.maintain)
        except StorageError as exc:
            self._failed("run maintenance", exc)
            return None
        finally:
            self._pending -= 1
        self._succeeded()
        self._last_maintenance = report
        return report

    async def _read(self, fn: Callable[[], T]) -> T:
        if self._reader is None:
            raise StorageError(f"storage at {self.path} is not open")
        return await self._call(self._reader, fn)

    def stats(self) -> StorageStats:
        """Counters since construction; cheap (two ``stat`` calls), safe on the loop."""
        return StorageStats(
            path=str(self.path),
            open=self.is_open,
            schema_version=self._schema,
            size_bytes=self._wdb.size_bytes(),
            writes=self._writes + self._backlog.recovered,
            write_errors=self._streak.errors,
            dropped_writes=self._dropped + self._backlog.dropped,
            samples_written=self._samples + self._backlog.recovered_samples,
            pending_writes=self._pending,
            kept_writes=len(self._backlog),
            failing_since=self._streak.since,
            last_error=self._streak.last_error,
            last_error_at=self._streak.last_error_at,
            last_maintenance=self._last_maintenance,
        )
