"""A writer killed with SIGKILL in the middle of its work loses nothing it committed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from storage_helpers import T0

from watchkeeper.storage import SyncStorage

HERE = Path(__file__).resolve().parent


def test_kill_9_mid_write_loses_nothing_committed(tmp_path: Path) -> None:
    path = tmp_path / "watchkeeper.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "crash_writer.py"), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    committed: list[int] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 20
        while len(committed) < 40 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            committed.append(int(line))
        assert len(committed) >= 40, proc.stderr.read() if proc.stderr else ""
        # Let it get well into the next rounds, so the kill lands inside a transaction.
        time.sleep(0.013)
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=10)
        committed += [int(line) for line in rest.split()]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    with SyncStorage(path) as db:
        assert db.integrity_check() == "ok"
        last = committed[-1]
        for round_no in committed:
            ts = T0 + round_no * 5
            points = db.metric_range("metric.42", ts, ts + 1, 1)
            assert [p.avg for p in points] == [round_no * 1000 + 42.0], round_no
        firing = {a.subject for a in db.alerts(state="firing", limit=100_000)}
        assert {f"s{n}" for n in committed} <= firing
        audited = {r.id for r in db.audit(limit=100_000)}
        assert {f"r{n}" for n in committed} <= audited
        baselines = db.load_baselines()
        for key in range(7):
            rounds = [n for n in committed if n % 7 == key]
            if rounds:
                # The last committed round for this key, or a later one that also made it.
                assert baselines[f"b{key}"]["round"] >= rounds[-1]
        # Nothing half-written: a sample is all 100 values or none of them.
        for round_no in (last + 1, last + 2):
            ts = T0 + round_no * 5
            present = [db.metric_range(f"metric.{k}", ts, ts + 1, 1) != [] for k in (0, 50, 99)]
            assert all(present) or not any(present)
