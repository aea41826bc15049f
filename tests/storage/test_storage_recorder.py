"""The queries and writes are declared once (on ``SyncStorage``) and the recorder keeps
history in a storage it is given, without a bus: it opens it when asked, retries a
storage that cannot be opened at most once per period, and never closes it."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from storage_helpers import T0, Clock, make_alert, make_record

from watchkeeper.storage import RetentionPolicy, Storage, StorageError, SyncStorage
from watchkeeper.storage.facade import Query, Write
from watchkeeper.storage.recorder import Recorder


def test_each_async_method_is_the_core_method_run_on_a_thread() -> None:
    declared = {
        name: value for name, value in vars(Storage).items() if isinstance(value, Query | Write)
    }
    assert {"alerts", "audit", "metric_range", "record_alert", "log_activity"} <= set(declared)
    for name, descriptor in declared.items():
        core = getattr(SyncStorage, name)
        assert descriptor.method is core
        assert descriptor.__doc__ == core.__doc__
        assert inspect.iscoroutinefunction(getattr(Storage(Path("unused.db")), name))


async def test_the_async_methods_take_the_core_parameters(tmp_path: Path, clock: Clock) -> None:
    storage = Storage.in_data_dir(tmp_path, clock=clock)
    await storage.open()
    try:
        assert await storage.record_alert(make_alert(), "firing", at=T0)
        assert [a.id for a in await storage.alerts(start=T0 - 60, limit=5)] == [make_alert().id]
        with pytest.raises(TypeError):
            await storage.alerts(newest=True)  # type: ignore[call-arg]
    finally:
        await storage.close()


async def test_the_recorder_writes_into_the_storage_it_was_given(
    tmp_path: Path, clock: Clock
) -> None:
    storage = Storage.in_data_dir(tmp_path, clock=clock)
    recorder = Recorder(storage, monotonic=lambda: 0.0)
    await recorder.alert(make_alert(), "firing", T0)  # closed: a no-op, nothing raised
    assert await recorder.last_notified("fp") is None
    await recorder.ensure_open()
    try:
        alert = make_alert()
        await recorder.alert(alert, "firing", T0)
        await recorder.action(make_record("r1"))
        await recorder.notified(alert.fingerprint, T0 + 5)
        assert await recorder.last_notified(alert.fingerprint) == T0 + 5
        assert [a.id for a in await storage.alerts()] == [alert.id]
        assert [r.id for r in await storage.audit()] == ["r1"]
        await recorder.upkeep(RetentionPolicy)
        assert storage.stats().last_maintenance is not None
        assert recorder.open_error is None
    finally:
        await storage.close()


async def test_a_storage_that_cannot_open_is_retried_once_per_period(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data directory should be")
    now = [0.0]
    failures: list[StorageError] = []
    storage = Storage.in_data_dir(blocker)
    recorder = Recorder(
        storage, monotonic=lambda: now[0], retry_every=60, on_open_failed=failures.append
    )
    await recorder.ensure_open()
    assert len(failures) == 1 and recorder.open_error and "cannot open" in recorder.open_error
    await recorder.upkeep(RetentionPolicy)
    now[0] = 59.0
    await recorder.upkeep(RetentionPolicy)
    assert len(failures) == 1
    now[0] = 60.0
    await recorder.upkeep(RetentionPolicy)
    assert len(failures) == 2 and not storage.is_open
    # A second recorder of a storage whose owner already failed to open it waits a period.
    later = Recorder(storage, monotonic=lambda: now[0], on_open_failed=failures.append)
    await later.ensure_open()
    await later.upkeep(RetentionPolicy)
    assert len(failures) == 2
