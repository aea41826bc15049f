"""The process backend against real child processes."""

from __future__ import annotations

import asyncio
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

from watchkeeper.config.services import HttpProbe, ServiceSpec, TcpProbe
from watchkeeper.model.services import ServiceState
from watchkeeper.services import ServiceActionError, UnknownServiceError

PY = sys.executable
SLEEP = [PY, "-c", "import time; time.sleep(120)"]


def http_service(port: int, tmp_path: Path, **extra: object) -> ServiceSpec:
    return ServiceSpec.model_validate(
        {
            "name": "web",
            "argv": [PY, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
            "cwd": tmp_path,
            "probe": {"kind": "http", "url": f"http://127.0.0.1:{port}/", "timeout": 1.0},
            "min_uptime": 0,
            **extra,
        }
    )


def reaped(pid: int) -> bool:
    return not psutil.pid_exists(pid)


async def test_http_service_healthy_then_sigkill_reported_at_once(
    make_manager: Callable[..., Any], events: Any, free_port: int, tmp_path: Path
) -> None:
    manager = make_manager([http_service(free_port, tmp_path)])
    started = await manager.start("web")
    assert started.state is ServiceState.STARTING
    status = await manager.wait_ready("web", timeout=15)
    assert status.state is ServiceState.RUNNING
    assert status.healthy is True, status.probe_detail
    assert "status 200" in (status.probe_detail or "")
    assert events.kinds("web") == ["started", "healthy"]

    killed_at = time.perf_counter()
    os.kill(status.pid, signal.SIGKILL)
    exited = await events.wait_for("exited", "web", timeout=5)
    latency = events.arrival_of(exited) - killed_at
    # The manager has no tick: only an event-driven watcher can be this quick.
    assert latency < 0.2, f"exit noticed after {latency * 1000:.1f} ms"
    assert exited.pid == status.pid
    assert exited.exit_signal == signal.SIGKILL and exited.exit_code is None
    assert not exited.failed_start
    after = await manager.status("web")
    assert after.state is ServiceState.FAILED
    assert after.last_exit_signal == signal.SIGKILL
    assert after.pid is None and after.healthy is None
    assert "SIGKILL" in after.detail


async def test_probe_that_never_passes_reports_unhealthy(
    make_manager: Callable[..., Any], events: Any, free_port: int
) -> None:
    spec = ServiceSpec(
        name="deaf",
        argv=SLEEP,
        probe=TcpProbe(port=free_port, timeout=0.2),
        start_timeout=0.5,
        min_uptime=0,
    )
    manager = make_manager([spec])
    await manager.start("deaf")
    status = await manager.wait_ready("deaf", timeout=10)
    assert status.state is ServiceState.RUNNING
    assert status.healthy is False
    assert "not healthy" in status.detail
    assert events.kinds("deaf") == ["started", "unhealthy"]


async def test_probe_on_demand_emits_on_change(
    make_manager: Callable[..., Any], events: Any, free_port: int, tmp_path: Path
) -> None:
    manager = make_manager([http_service(free_port, tmp_path)])
    await manager.start("web")
    await manager.wait_ready("web", timeout=15)
    again = await manager.probe("web")
    assert again.healthy is True
    assert events.kinds("web") == ["started", "healthy"]  # no change, no new event


async def test_stop_is_reported_as_stopped_not_as_a_crash(
    make_manager: Callable[..., Any], events: Any
) -> None:
    manager = make_manager([ServiceSpec(name="idle", argv=SLEEP, min_uptime=0)])
    pid = (await manager.start("idle")).pid
    assert pid is not None
    status = await manager.stop("idle")
    assert status.state is ServiceState.STOPPED
    assert status.detail == "stopped by watchkeeper"
    assert events.kinds("idle") == ["started", "stopped"]
    stopped = events.events[-1]
    assert stopped.pid == pid and stopped.exit_signal == signal.SIGTERM
    assert reaped(pid)
    again = await manager.stop("idle")  # stopping a stopped service is a no-op
    assert again.state is ServiceState.STOPPED
    assert events.kinds("idle") == ["started", "stopped"]


async def test_stop_kills_a_service_that_ignores_sigterm(
    make_manager: Callable[..., Any],
    events: Any,
    tmp_path: Path,
    wait_until: Callable[..., Awaitable[None]],
) -> None:
    ready = tmp_path / "ready"
    script = (
        "import signal, time, pathlib, sys\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "pathlib.Path(sys.argv[1]).touch()\n"
        "time.sleep(120)\n"
    )
    spec = ServiceSpec(name="stubborn", argv=[PY, "-c", script, str(ready)], stop_timeout=0.3)
    manager = make_manager([spec])
    pid = (await manager.start("stubborn")).pid
    await wait_until(ready.exists)
    began = time.monotonic()
    status = await manager.stop("stubborn")
    assert time.monotonic() - began >= 0.3
    assert status.state is ServiceState.STOPPED
    assert status.last_exit_signal == signal.SIGKILL
    assert events.kinds("stubborn") == ["started", "stopped"]
    assert reaped(pid)


@pytest.mark.parametrize(
    ("code", "min_uptime", "state", "failed_start"),
    [
        (3, 5.0, ServiceState.FAILED, True),  # died sooner than min_uptime: failed start
        (3, 0.0, ServiceState.FAILED, False),  # crashed after min_uptime
        (0, 0.0, ServiceState.STOPPED, False),  # ended by itself, cleanly
    ],
)
async def test_exit_status_and_min_uptime(
    make_manager: Callable[..., Any],
    events: Any,
    code: int | None,
    min_uptime: float,
    state: ServiceState,
    failed_start: bool,
) -> None:
    argv = [PY, "-c", f"import sys; sys.exit({code})"]
    manager = make_manager([ServiceSpec(name="brief", argv=argv, min_uptime=min_uptime)])
    await manager.start("brief")
    exited = await events.wait_for("exited", "brief")
    assert exited.exit_code == code and exited.exit_signal is None
    assert exited.failed_start is failed_start
    assert exited.uptime is not None and exited.uptime >= 0
    status = await manager.status("brief")
    assert status.state is state
    assert status.last_exit_code == code
    assert ("failed start" in status.detail) is failed_start


async def test_restart_gives_a_new_process_and_counts_it(
    make_manager: Callable[..., Any], events: Any
) -> None:
    manager = make_manager([ServiceSpec(name="idle", argv=SLEEP, min_uptime=0)])
    first = await manager.start("idle")
    second = await manager.restart("idle")
    assert second.pid is not None and second.pid != first.pid
    assert second.restarts == 1
    assert events.kinds("idle") == ["started", "stopped", "started"]
    assert reaped(first.pid)


async def test_start_of_running_service_is_a_no_op(
    make_manager: Callable[..., Any], events: Any
) -> None:
    manager = make_manager([ServiceSpec(name="idle", argv=SLEEP, min_uptime=0)])
    first = await manager.start("idle")
    again = await manager.start("idle")
    assert again.pid == first.pid and again.restarts == 0
    assert events.kinds("idle") == ["started"]


async def test_service_runs_in_its_own_session_and_logs_to_its_file(
    make_manager: Callable[..., Any], events: Any, tmp_path: Path
) -> None:
    script = "import os; print('hello from svc', os.environ['WK_GREETING'], flush=True)"
    spec = ServiceSpec(
        name="talker", argv=[PY, "-c", script], env={"WK_GREETING": "hi"}, min_uptime=0
    )
    manager = make_manager([spec])
    pid = (await manager.start("talker")).pid
    await events.wait_for("exited", "talker")
    log = manager.log_path("talker")
    assert log == tmp_path / "logs" / "talker.log"
    assert "hello from svc hi" in log.read_text()
    assert log.stat().st_mode & 0o777 == 0o600

    session = make_manager([ServiceSpec(name="idle", argv=SLEEP)])
    pid = (await session.start("idle")).pid
    assert os.getsid(pid) == pid != os.getsid(0)


async def test_errors_are_typed_and_worded(
    make_manager: Callable[..., Any], tmp_path: Path
) -> None:
    manager = make_manager(
        [
            ServiceSpec(name="ghost", argv=[str(tmp_path / "no-such-program")]),
            ServiceSpec(name="watched", pidfile=tmp_path / "watched.pid"),
            ServiceSpec(name="lost", argv=SLEEP, cwd=tmp_path / "missing-dir"),
        ]
    )
    with pytest.raises(UnknownServiceError):
        await manager.status("nope")
    with pytest.raises(ServiceActionError, match="not found"):
        await manager.start("ghost")
    with pytest.raises(ServiceActionError, match="only watches it through its pidfile"):
        await manager.start("watched")
    with pytest.raises(ServiceActionError, match="no directory"):
        await manager.start("lost")
    statuses = {s.name: s for s in await manager.list()}
    assert statuses["ghost"].state is ServiceState.STOPPED
    assert "does not exist" in statuses["watched"].detail


async def test_failing_event_handlers_do_not_stop_the_watcher(
    make_manager: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []
    exited = asyncio.Event()

    async def flaky(event: Any) -> None:
        seen.append(event.kind)
        if event.kind == "exited":
            exited.set()
        if event.kind == "started":
            raise RuntimeError("subscriber bug")

    manager = make_manager([ServiceSpec(name="idle", argv=SLEEP, min_uptime=0)], on_event=flaky)
    pid = (await manager.start("idle")).pid
    os.kill(pid, signal.SIGKILL)
    async with asyncio.timeout(5):
        await exited.wait()
    assert seen == ["started", "exited"]
    assert (await manager.status("idle")).state is ServiceState.FAILED
    assert "subscriber bug" in caplog.text


async def test_aclose_stops_children_and_refuses_new_work(
    make_manager: Callable[..., Any], events: Any
) -> None:
    manager = make_manager([ServiceSpec(name="idle", argv=SLEEP, min_uptime=0)])
    pid = (await manager.start("idle")).pid
    await manager.aclose()
    assert reaped(pid)
    assert events.kinds("idle") == ["started", "stopped"]
    with pytest.raises(ServiceActionError, match="closed"):
        await manager.start("idle")
    await manager.aclose()  # idempotent


async def test_start_all_starts_and_adopts(
    make_manager: Callable[..., Any],
    spawn: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
    free_port: int,
) -> None:
    outsider = spawn(SLEEP)
    pidfile = tmp_path / "outsider.pid"
    pidfile.write_text(f"{outsider.pid}\n")
    specs = [
        ServiceSpec(name="idle", argv=SLEEP, min_uptime=0),
        ServiceSpec(name="outsider", pidfile=pidfile),
        ServiceSpec(name="ghost", argv=[str(tmp_path / "missing")]),
        http_service(free_port, tmp_path, probe=HttpProbe(url=f"http://127.0.0.1:{free_port}/")),
    ]
    manager = make_manager(specs)
    statuses = {s.name: s for s in await manager.start_all()}
    assert statuses["idle"].is_up and statuses["idle"].pid is not None
    assert statuses["outsider"].state is ServiceState.RUNNING
    assert statuses["outsider"].pid == outsider.pid
    assert statuses["ghost"].state is ServiceState.FAILED
    assert "not found" in statuses["ghost"].detail
    assert statuses["web"].pid is not None
