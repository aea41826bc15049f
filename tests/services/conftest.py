"""Fixtures for the service-manager tests: real processes, real loopback sockets.

Every process a test starts is killed and reaped in a finalizer, and an autouse check
fails the test if any child process is still around afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from watchkeeper.config.services import ServiceSpec
from watchkeeper.model.services import ServiceEvent
from watchkeeper.services import ProcessServiceManager


class EventLog:
    """An ``on_event`` sink that remembers each event and when it arrived."""

    def __init__(self) -> None:
        self.events: list[ServiceEvent] = []
        self.arrivals: list[float] = []
        self._changed = asyncio.Event()

    def __call__(self, event: ServiceEvent) -> None:
        self.events.append(event)
        self.arrivals.append(time.perf_counter())
        self._changed.set()

    def kinds(self, name: str | None = None) -> list[str]:
        return [e.kind for e in self.events if name is None or e.name == name]

    def arrival_of(self, event: ServiceEvent) -> float:
        return self.arrivals[self.events.index(event)]

    async def wait_for(
        self, kind: str, name: str | None = None, *, timeout: float = 10.0, after: int = 0
    ) -> ServiceEvent:
        """The first event of ``kind`` (for ``name``) at index >= ``after``."""
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events[after:]:
                    if event.kind == kind and (name is None or event.name == name):
                        return event
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
def events() -> EventLog:
    return EventLog()


@pytest.fixture
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(autouse=True)
def _no_processes_left_behind() -> Iterator[None]:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    leftovers = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    # A child that was just ending when the test returned (a probe's command exiting) is
    # not left behind; one still running a second later is.
    _, alive = psutil.wait_procs(leftovers, timeout=1.0)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
            proc.wait(timeout=5)
    assert not alive, f"test left processes behind: {alive}"


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start a process the *test* owns (as if started by someone else than watchkeeper).

    It is deliberately not reaped until teardown, so once it dies it is a zombie.
    """
    started: list[subprocess.Popen[bytes]] = []

    def _spawn(argv: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        started.append(proc)
        return proc

    yield _spawn
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=5)


@pytest.fixture
async def make_manager(
    events: EventLog, tmp_path: Path
) -> AsyncIterator[Callable[..., ProcessServiceManager]]:
    """Build process managers wired to ``events``; all are closed at teardown."""
    managers: list[ProcessServiceManager] = []

    def _make(
        specs: list[ServiceSpec], on_event: Any = None, **kwargs: Any
    ) -> ProcessServiceManager:
        kwargs.setdefault("log_dir", tmp_path / "logs")
        manager = ProcessServiceManager(specs, on_event or events, **kwargs)
        managers.append(manager)
        return manager

    yield _make
    for manager in managers:
        await manager.aclose()


@pytest.fixture
def wait_until() -> Callable[..., Awaitable[None]]:
    """An awaitable poll of a condition, for tests (the code under test never polls)."""

    async def _wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)

    return _wait_until
