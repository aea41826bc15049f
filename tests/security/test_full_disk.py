"""A running watchkeeper whose data dir fills up: health must say so, the console must
stay readable, and when space returns everything resumes, with the samples taken
meanwhile written after all."""

from __future__ import annotations

import time
from pathlib import Path

from state_daemon import Daemon, Tmpfs, problem_lines, wait_until


def storage_check(daemon: Daemon) -> dict[str, object]:
    check: dict[str, object] = daemon.health()["checks"]["storage"]
    return check


def test_a_full_data_dir_is_reported_quietly_and_recovers_without_losing_samples(
    tmp_path: Path,
) -> None:
    disk = tmp_path / "disk"
    with Tmpfs(disk, size="24m") as tmpfs, Daemon(tmp_path, disk / "data") as daemon:
        wait_until("a first sample is stored", lambda: daemon.get("/api/metrics/names").json())
        assert daemon.health()["status"] == "ok"
        before = daemon.stderr().count("\n")

        tmpfs.fill()
        full_from = time.time()
        wait_until("health reports the failing writes", lambda: not storage_check(daemon)["ok"])
        time.sleep(6)  # a dozen sampling ticks on a full disk
        health = daemon.get("/api/health")
        body = health.json()
        assert health.status_code == 200  # still watching and healing: degraded, not down
        assert body["status"] == "degraded"
        detail = str(body["checks"]["storage"]["detail"])
        assert "writes failing" in detail and "disk is full" in detail, detail
        assert any(r.startswith("storage: writes failing") for r in body["reasons"]), body
        full_until = time.time()

        during = daemon.stderr().splitlines()[before:]
        assert problem_lines("\n".join(during)) == [], during[:20]
        assert len(during) <= 8, "\n".join(during)  # a few lines, not one per write

        tmpfs.free()
        wait_until("health is ok again", lambda: daemon.health()["status"] == "ok")
        wait_until(
            "the log file is written again",
            lambda: "works again" in (disk / "data" / "agent_system.log").read_text(),
        )
        reply = daemon.get(
            "/api/metrics/history",
            params={"metric": "cpu.percent", "range": "120s", "step": "1s"},
        ).json()
        kept = [
            p["ts"]
            for p in reply["points"]
            if p["count"] and full_from + 1 <= p["ts"] <= full_until - 1
        ]
        # Sampling every 0.5 s: the seconds the disk was full are in the history after all.
        assert len(kept) >= (full_until - full_from) * 0.6, (kept, full_from, full_until)
        stats = daemon.get("/api/system").json()
        assert problem_lines(daemon.stderr()) == []
    assert stats["state"] == "running"
