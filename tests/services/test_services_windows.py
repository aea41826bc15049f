"""The Windows backend against a fake Service Control Manager (no Windows here)."""

from __future__ import annotations

import sys
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from watchkeeper.config.services import ServiceSpec
from watchkeeper.model.services import ServiceState
from watchkeeper.services import (
    ScmError,
    ServiceActionError,
    ServicePermissionError,
    UnknownServiceError,
    WindowsServiceInfo,
    WindowsServiceManager,
    validate_windows_service_name,
)
from watchkeeper.services.scm import ERROR_ACCESS_DENIED, ERROR_SERVICE_DOES_NOT_EXIST


class FakeScm:
    """Services move through the pending states the real SCM reports, one query per step."""

    def __init__(self) -> None:
        self.services: dict[str, dict[str, Any]] = {}
        self.denied = False
        self.stuck = False
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()  # the manager calls from worker threads
        self._next_pid = 900

    def add(
        self, name: str, status: str = "stopped", pid: int | None = None, exit_code: int = 0
    ) -> None:
        self.services[name] = {"status": status, "pid": pid, "exit_code": exit_code}

    def query(self, service: str) -> WindowsServiceInfo:
        with self._lock:
            self.calls.append(("query", service))
            svc = self._get(service)
            info = WindowsServiceInfo(
                name=service, status=svc["status"], pid=svc["pid"], exit_code=svc["exit_code"]
            )
            if not self.stuck:  # advance a pending state for the next query
                if svc["status"] == "start_pending":
                    self._next_pid += 1
                    svc.update(status="running", pid=self._next_pid)
                elif svc["status"] == "stop_pending":
                    svc.update(status="stopped", pid=None, exit_code=0)
            return info

    def start(self, service: str) -> None:
        with self._lock:
            self.calls.append(("start", service))
            svc = self._get(service)
            if self.denied:
                raise ScmError(ERROR_ACCESS_DENIED, "Access is denied.")
            if svc["status"] == "running":
                raise ScmError(1056, "An instance of the service is already running.")
            svc["status"] = "start_pending"

    def stop(self, service: str) -> None:
        with self._lock:
            self.calls.append(("stop", service))
            svc = self._get(service)
            if self.denied:
                raise ScmError(ERROR_ACCESS_DENIED, "Access is denied.")
            if svc["status"] != "running":
                raise ScmError(1062, "The service has not been started.")
            svc["status"] = "stop_pending"

    def _get(self, service: str) -> dict[str, Any]:
        if service not in self.services:
            raise ScmError(ERROR_SERVICE_DOES_NOT_EXIST, "The specified service does not exist.")
        return self.services[service]


@pytest.fixture
def scm() -> FakeScm:
    return FakeScm()


@pytest.fixture
async def make_windows(
    scm: FakeScm, events: Any
) -> AsyncIterator[Callable[..., WindowsServiceManager]]:
    managers: list[WindowsServiceManager] = []

    def _make(specs: list[ServiceSpec], **kwargs: Any) -> WindowsServiceManager:
        kwargs.setdefault("scm", scm)
        manager = WindowsServiceManager(specs, events, **kwargs)
        managers.append(manager)
        return manager

    yield _make
    for manager in managers:
        await manager.aclose()


def win_spec(name: str = "spooler", **extra: Any) -> ServiceSpec:
    return ServiceSpec(name=name, manager="windows", **extra)


async def test_status_mapping(
    scm: FakeScm, make_windows: Callable[..., WindowsServiceManager]
) -> None:
    scm.add("Spooler", "running", pid=42)
    scm.add("W32Time", "stopped", exit_code=0)
    scm.add("BadSvc", "stopped", exit_code=1067)
    scm.add("Slow", "start_pending", pid=7)
    scm.stuck = True
    manager = make_windows(
        [
            win_spec("spooler", unit="Spooler", critical=True),
            win_spec("time", unit="W32Time"),
            win_spec("bad", unit="BadSvc"),
            win_spec("slow", unit="Slow"),
            win_spec("absent", unit="NoSuchSvc"),
        ]
    )
    statuses = {s.name: s for s in await manager.list()}
    assert statuses["spooler"].state is ServiceState.RUNNING
    assert statuses["spooler"].pid == 42 and statuses["spooler"].critical
    assert statuses["time"].state is ServiceState.STOPPED
    assert statuses["bad"].state is ServiceState.FAILED
    assert statuses["bad"].last_exit_code == 1067
    assert statuses["slow"].state is ServiceState.STARTING
    assert statuses["absent"].state is ServiceState.UNKNOWN
    assert "not installed" in statuses["absent"].detail


async def test_start_waits_until_running_and_stop_until_stopped(
    scm: FakeScm, make_windows: Callable[..., WindowsServiceManager], events: Any
) -> None:
    scm.add("Spooler", "stopped")
    manager = make_windows([win_spec(unit="Spooler")])
    started = await manager.start("spooler")
    assert started.state is ServiceState.RUNNING and started.pid == 901
    assert events.kinds() == ["started"]
    stopped = await manager.stop("spooler")
    assert stopped.state is ServiceState.STOPPED
    assert events.kinds() == ["started", "stopped"]
    assert ("start", "Spooler") in scm.calls and ("stop", "Spooler") in scm.calls
    again = await manager.stop("spooler")  # "not started" is not an error when stopping
    assert again.state is ServiceState.STOPPED


async def test_restart(
    scm: FakeScm, make_windows: Callable[..., WindowsServiceManager], events: Any
) -> None:
    scm.add("Spooler", "running", pid=42)
    manager = make_windows([win_spec(unit="Spooler")])
    status = await manager.restart("spooler")
    assert status.state is ServiceState.RUNNING and status.pid == 901
    assert [(e.kind, e.pid) for e in events.events] == [("stopped", 42), ("started", 901)]


async def test_access_denied_needs_administrator(
    scm: FakeScm, make_windows: Callable[..., WindowsServiceManager]
) -> None:
    scm.add("Spooler", "running", pid=42)
    scm.denied = True
    manager = make_windows([win_spec(unit="Spooler")])
    with pytest.raises(ServicePermissionError, match="needs administrator") as caught:
        await manager.stop("spooler")
    assert "stopping Windows service Spooler" in str(caught.value)


async def test_unknown_service(make_windows: Callable[..., WindowsServiceManager]) -> None:
    manager = make_windows([win_spec(unit="NoSuchSvc")])
    with pytest.raises(UnknownServiceError, match="not installed"):
        await manager.start("spooler")
    with pytest.raises(UnknownServiceError):
        await manager.status("other")


async def test_start_that_never_finishes_times_out(
    scm: FakeScm, make_windows: Callable[..., WindowsServiceManager]
) -> None:
    scm.add("Slow", "stopped")
    scm.stuck = True
    manager = make_windows([win_spec(unit="Slow", start_timeout=0.3)])
    with pytest.raises(ServiceActionError, match="still start_pending"):
        await manager.start("spooler")


async def test_polling_reports_a_crash_as_exited(
    scm: FakeScm, make_windows: Callable[..., WindowsServiceManager], events: Any
) -> None:
    scm.add("Spooler", "running", pid=42)
    manager = make_windows([win_spec(unit="Spooler")], poll_interval=0.05)
    await manager.list()
    await manager.start_watching()
    scm.add("Spooler", "stopped", exit_code=1067)
    exited = await events.wait_for("exited", "spooler", timeout=5)
    assert exited.pid == 42 and exited.exit_code == 1067
    assert (await manager.status("spooler")).state is ServiceState.FAILED


@pytest.mark.parametrize("bad", ["a/b", "a\\b", "-x", " lead", "trail ", "sp;ool", "ѕpooler", ""])
def test_windows_service_names_are_validated(bad: str, scm: FakeScm) -> None:
    with pytest.raises(ValueError):
        validate_windows_service_name(bad)


def test_valid_windows_service_names() -> None:
    for good in ("Spooler", "W32Time", "MSSQL$SQLEXPRESS", "Some Service", "wuauserv"):
        assert validate_windows_service_name(good) == good


@pytest.mark.skipif(sys.platform == "win32", reason="checks the behaviour away from Windows")
async def test_real_scm_api_says_it_needs_windows(
    make_windows: Callable[..., WindowsServiceManager],
) -> None:
    from watchkeeper.services._scm_ctypes import Win32ScmApi

    manager = make_windows([win_spec(unit="Spooler")], scm=Win32ScmApi())
    status = await manager.status("spooler")
    assert status.state is ServiceState.UNKNOWN
    assert "needs Windows" in status.detail
    with pytest.raises(ServiceActionError, match="needs Windows"):
        await manager.start("spooler")
