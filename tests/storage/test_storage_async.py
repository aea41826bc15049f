"""The async facade: writes and reads through its threads; failures are counted and
logged, never raised into the caller, and never touch what is already stored."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from storage_helpers import T0, Clock, make_alert, make_record

from watchkeeper.storage import ActivityEntry, Storage, StorageError


async def test_writes_and_queries_go_through_the_storage_threads(
    tmp_path: Path, clock: Clock
) -> None:
    storage = Storage.in_data_dir(tmp_path / "data", clock=clock)
    assert not storage.is_open and not (tmp_path / "data").exists()  # no I/O until open
    await storage.open()
    await storage.open()  # idempotent
    try:
        names = {t.name for t in threading.enumerate()}
        assert any(n.startswith("watchkeeper-db-writer") for n in names)
        # Many samples at once: all stored, whichever transaction they shared.
        results = await asyncio.gather(
            *(storage.write_sample(T0 + i * 5, {"cpu.percent": float(i)}) for i in range(24))
        )
        assert all(results)
        alert = make_alert()
        assert await storage.record_alert(alert, "firing")
        assert await storage.record_action(make_record("r1"))
        assert await storage.log_activity(
            ActivityEntry(ts=T0, agent="analyzer", kind="alert.firing", message="cpu_high")
        )
        assert await storage.save_baseline("cpu", {"mean": 3})
        clock.now = T0 + 200
        report = await storage.maintain()
        assert report is not None and report.rolled_up_rows > 0
        points = await storage.metric_range("cpu.percent", T0, T0 + 120, 60)
        assert [p.count for p in points] == [12, 12]
        assert await storage.metric_names("cpu") == ["cpu.percent"]
        assert [a.id for a in await storage.alerts()] == [alert.id]
        assert [r.id for r in await storage.audit(target="web")] == ["r1"]
        assert (await storage.success_rates()).by_action[0].rate == 1.0
        assert len(await storage.search_activity(text="cpu")) == 1
        assert await storage.load_baselines() == {"cpu": {"mean": 3}}
        assert await storage.integrity_check() == "ok"
        stats = storage.stats()
        assert stats.open and stats.schema_version == 5
        assert stats.samples_written == 24 and stats.write_errors == 0
        assert stats.size_bytes > 0 and stats.last_maintenance == report
    finally:
        await storage.close()
    assert not storage.is_open
    with pytest.raises(StorageError, match="not open"):
        await storage.metric_names()


async def test_a_full_database_fails_writes_with_one_clear_message(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "watchkeeper.db"
    first = Storage(path, clock=clock)
    await first.open()
    for i in range(10):
        await first.write_sample(T0 + i * 5, {"cpu.percent": float(i)})
    await first.save_baseline("keep", {"me": True})
    await first.close()
    size_mb = path.stat().st_size / 2**20

    # The same file, capped at its current size: SQLite answers exactly as on a full disk.
    full = Storage(path, clock=clock, max_size_mb=size_mb)
    await full.open()
    try:
        caplog.set_level(logging.ERROR, logger="watchkeeper.storage")
        outcomes = []
        for i in range(200):
            many = {f"new.metric.{i}.{k}": float(k) for k in range(50)}
            outcomes.append(await full.write_sample(T0 + 100 + i, many))
            if outcomes[-1] is False and len(outcomes) > 3:
                break
        assert False in outcomes, "the cap was never reached"
        assert await full.save_baseline("more", {"x": "y" * 100_000}) is False
        stats = full.stats()
        assert stats.write_errors >= 2
        assert stats.last_error is not None and "database or disk is full" in stats.last_error
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, errors  # once per run of failures, not per write
        assert "disk is full or storage.max_size_mb is reached" in errors[0]
        assert str(path) in errors[0] and "keeps running" in errors[0]
        # What was stored before is all still there, and the file is sound.
        points = await full.metric_range("cpu.percent", T0, T0 + 50, 5)
        assert [p.avg for p in points] == [float(i) for i in range(10)]
        assert (await full.load_baselines())["keep"] == {"me": True}
        assert await full.integrity_check() == "ok"
    finally:
        await full.close()


async def test_an_unusable_path_fails_open_clearly_and_writes_are_dropped(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data directory should be")
    storage = Storage.in_data_dir(blocker / "inner")
    with pytest.raises(StorageError, match=r"cannot open .*inner"):
        await storage.open()
    assert not storage.is_open
    assert await storage.write_sample(T0, {"cpu.percent": 1.0}) is False
    assert await storage.record_action(make_record("r1")) is False
    assert storage.stats().dropped_writes == 2


def _without_permission_bypass() -> list[str]:
    """The command prefix that makes this process obey file permissions."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("root bypasses file permissions and setpriv is not there to drop that")
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner"]
    if subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode != 0:
        pytest.skip("root bypasses file permissions and cannot drop the capability here")
    return prefix


def test_a_read_only_database_fails_writes_and_keeps_its_data(tmp_path: Path) -> None:
    script = Path(__file__).with_name("readonly_scenario.py")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [*_without_permission_bypass(), sys.executable, str(script), str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    result = json.loads(done.stdout)
    assert result["opened"], result  # SQLite opens a read-only file for reading
    assert result["wrote"] is False
    assert "readonly database (the file or its directory is read-only)" in result["last_error"]
    assert result["values"] == [5.0]  # what was there is still there
    assert "keeps running" in done.stderr  # the one clear log line
