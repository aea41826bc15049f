"""Processes the process backend did not start: found through a pidfile, told apart by
creation time, and watched through a pidfd (or, without one, by polling psutil)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from watchkeeper.config.services import ServiceSpec
from watchkeeper.model.services import ServiceState
from watchkeeper.services import ProcessServiceManager

PY = sys.executable
SLEEP = [PY, "-c", "import time; time.sleep(120)"]


def watched(pidfile: Path, **extra: Any) -> ServiceSpec:
    return ServiceSpec(name="outsider", pidfile=pidfile, **extra)


async def test_reused_pid_is_not_mistaken_for_the_service(
    make_manager: Callable[..., ProcessServiceManager],
    spawn: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    stranger = spawn(SLEEP)  # a live process that is *not* the service
    pidfile = tmp_path / "svc.pid"
    pidfile.write_text(f"{stranger.pid}\n")
    # The pidfile was written an hour ago, so whoever holds the pid now started later
    # than the file: the pid was reused.
    an_hour_ago = time.time() - 3600
    os.utime(pidfile, (an_hour_ago, an_hour_ago))
    manager = make_manager([watched(pidfile)])
    await manager.start_watching()
    status = await manager.status("outsider")
    assert status.state is ServiceState.STOPPED
    assert status.pid is None
    assert "reused" in status.detail

    # Control: the same process behind a pidfile written after it started is adopted.
    pidfile.write_text(f"{stranger.pid}\n")
    adopted = await manager.status("outsider")
    assert adopted.state is ServiceState.RUNNING
    assert adopted.pid == stranger.pid
    assert adopted.started_at is not None


def is_zombie(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


async def test_zombie_counts_as_dead(
    make_manager: Callable[..., ProcessServiceManager],
    spawn: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
    wait_until: Callable[..., Awaitable[None]],
) -> None:
    corpse = spawn([PY, "-c", "pass"])  # exits at once; nobody reaps it yet
    await wait_until(lambda: is_zombie(corpse.pid))
    pidfile = tmp_path / "svc.pid"
    pidfile.write_text(f"{corpse.pid}\n")
    manager = make_manager([watched(pidfile)])
    await manager.start_watching()
    status = await manager.status("outsider")
    assert status.state is ServiceState.STOPPED and status.pid is None
    assert "not running" in status.detail

    # Control: a live process behind the same pidfile is adopted.
    live = spawn(SLEEP)
    pidfile.write_text(f"{live.pid}\n")
    assert (await manager.status("outsider")).pid == live.pid


@pytest.mark.parametrize("use_pidfd", [True, False], ids=["pidfd", "polling"])
async def test_adopted_exit_is_seen(
    make_manager: Callable[..., ProcessServiceManager],
    events: Any,
    spawn: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
    use_pidfd: bool,
) -> None:
    outsider = spawn(SLEEP)
    pidfile = tmp_path / "svc.pid"
    pidfile.write_text(f"{outsider.pid}\n")
    # With pidfd the poll interval is an hour: only the kernel's wake-up can tell us.
    interval = 3600.0 if use_pidfd else 0.05
    manager = make_manager([watched(pidfile)], use_pidfd=use_pidfd, poll_interval=interval)
    await manager.start_watching()
    assert (await manager.status("outsider")).state is ServiceState.RUNNING

    killed_at = time.perf_counter()
    outsider.send_signal(signal.SIGKILL)  # the test never reaps it: it stays a zombie
    exited = await events.wait_for("exited", "outsider", timeout=5)
    if use_pidfd:
        latency = events.arrival_of(exited) - killed_at
        assert latency < 0.2, f"exit noticed after {latency * 1000:.1f} ms"
    assert exited.pid == outsider.pid
    assert exited.exit_code is None and exited.exit_signal is None  # not our child
    status = await manager.status("outsider")
    assert status.state is ServiceState.FAILED
    assert "unknown" in status.detail


async def test_stop_of_adopted_process_is_stopped(
    make_manager: Callable[..., ProcessServiceManager],
    events: Any,
    spawn: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    outsider = spawn(SLEEP)
    pidfile = tmp_path / "svc.pid"
    pidfile.write_text(f"{outsider.pid}\n")
    manager = make_manager([watched(pidfile, stop_timeout=5)])
    status = await manager.stop("outsider")
    assert status.state is ServiceState.STOPPED
    assert outsider.wait(timeout=5) == -signal.SIGTERM
    assert events.kinds("outsider") == ["stopped"]


async def test_pidfile_lets_a_second_manager_adopt_a_running_child(
    make_manager: Callable[..., ProcessServiceManager], events: Any, tmp_path: Path
) -> None:
    pidfile = tmp_path / "svc.pid"
    spec = ServiceSpec(name="idle", argv=SLEEP, pidfile=pidfile, min_uptime=0)
    first = make_manager([spec])
    pid = (await first.start("idle")).pid
    assert pidfile.read_text().strip() == str(pid)

    # A later watchkeeper (a second manager) finds the same process, not a new one.
    second = make_manager([spec])
    adopted = await second.start("idle")
    assert adopted.pid == pid and adopted.state is ServiceState.RUNNING
    assert events.kinds("idle") == ["started"]  # the second start launched nothing

    await first.stop("idle")
    assert not pidfile.exists()  # the writer removes its pidfile when its child ends
    # The second manager did not ask for that stop: to it, this is an exit.
    exited = await events.wait_for("exited", "idle", timeout=5)
    assert exited.pid == pid


@pytest.mark.parametrize(
    "content", ["", "abc\n", "-5\n", "1\n", "12 34\n", "9" * 80, "٣٤\n"], ids=repr
)
async def test_malformed_or_dangerous_pidfiles_are_refused(
    make_manager: Callable[..., ProcessServiceManager], tmp_path: Path, content: str
) -> None:
    pidfile = tmp_path / "svc.pid"
    pidfile.write_text(content, encoding="utf-8")
    manager = make_manager([watched(pidfile)])
    status = await manager.status("outsider")
    assert status.state is ServiceState.STOPPED and status.pid is None
    assert "pidfile" in status.detail


async def test_own_pid_is_refused(
    make_manager: Callable[..., ProcessServiceManager], tmp_path: Path
) -> None:
    pidfile = tmp_path / "svc.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    manager = make_manager([watched(pidfile)])
    status = await manager.status("outsider")
    assert status.pid is None
    assert "refuses" in status.detail
