"""The "CLI-only" way to run: the whole system inside the ``watchkeeper cli`` process.

When no watchkeeper answers, the menu starts one of its own rather than showing nothing.
It is the same system ``watchkeeper run`` starts (orchestrator, agents, web API), run in a
background thread's event loop, with the API on a free loopback port and a fresh token
that only this process knows. The menu then talks to it over HTTP exactly as it talks to
a daemon, so there is one code path to trust::

    with LocalSystem(settings, config_path) as endpoint:
        with ApiClient(endpoint) as api:
            ...                                   # the system stops when the block ends

Logs go to the data dir's files only, never over the menu.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import httpx
from pydantic import SecretStr

from watchkeeper.cli.client import ApiError, Endpoint

if TYPE_CHECKING:
    import socket

    from watchkeeper.config import Settings

__all__ = ["LocalSystem", "running_without_web"]


def running_without_web(settings: Settings, now: float) -> int | None:
    """The pid of a live watchkeeper on this data dir (its status file is fresh and the
    process exists), or None. Two systems on one data dir would fight over its services
    and files, so the CLI does not start a second one."""
    from watchkeeper.status import read_status

    snapshot = read_status(Path(settings.data_dir))
    if snapshot is None or snapshot.state != "running":
        return None
    updated, pid = snapshot.updated_at, snapshot.pid
    if pid <= 0 or now - updated > 3 * settings.status_interval + 10:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # exists, owned by someone else
    return pid


class LocalSystem:
    """The system in a background thread; ``start()`` returns the endpoint to talk to."""

    def __init__(
        self, settings: Settings, config_path: Path | None, *, ready_timeout: float = 30.0
    ) -> None:
        self._token = secrets.token_urlsafe(32)
        token = SecretStr(self._token)
        web = settings.web.model_copy(update={"host": "127.0.0.1", "token": token})
        self.settings = settings.model_copy(update={"web": web})
        self.config_path = config_path
        self.ready_timeout = ready_timeout
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._loop_ready = threading.Event()
        self._error: BaseException | None = None

    def __enter__(self) -> Endpoint:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Endpoint:
        """Start everything and wait until the API answers; :class:`ApiError` if not."""
        from watchkeeper.logs import setup_logging
        from watchkeeper.web.server import PortInUse, bind_socket

        try:
            self._sock = bind_socket("127.0.0.1", 0)
        except PortInUse as exc:
            raise ApiError(f"cannot start watchkeeper in this process: {exc}", 3) from None
        port = self._sock.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        setup_logging(Path(self.settings.data_dir), self.settings.log_level, console=False)
        self._thread = threading.Thread(
            target=self._thread_main, name="watchkeeper-in-process", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self.ready_timeout
        with httpx.Client(base_url=url, timeout=2.0, trust_env=False) as probe:
            while time.monotonic() < deadline:
                if self._error is not None or not self._thread.is_alive():
                    self.stop()
                    why = f": {self._error}" if self._error else ""
                    raise ApiError(f"watchkeeper could not start in this process{why}", 3)
                try:
                    if probe.get("/api/health", params={"probe": "live"}).status_code == 200:
                        return Endpoint(url, self._token, "this process", None, True)
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        self.stop()
        raise ApiError(
            f"watchkeeper started in this process but its API did not answer within "
            f"{self.ready_timeout:g}s; see the log in {self.settings.data_dir}",
            3,
        )

    def stop(self, timeout: float = 20.0) -> None:
        """Ask the system to stop, and wait for the thread (idempotent)."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._loop_ready.wait(timeout=5)
            loop, stop = self._loop, self._stop
            if loop is not None and stop is not None and not loop.is_closed():
                # RuntimeError: the loop closed in between, so nothing is left to stop.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(stop.set)
            thread.join(timeout)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start(); a thread must not die silently
            self._error = exc
        finally:
            self._loop_ready.set()

    async def _main(self) -> None:
        from watchkeeper.live_config import ConfigStore
        from watchkeeper.orchestrator import Orchestrator
        from watchkeeper.web.server import serve_web

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._loop_ready.set()
        orchestrator = Orchestrator(ConfigStore(self.settings, self.config_path))
        async with asyncio.TaskGroup() as group:
            group.create_task(orchestrator.run(self._stop), name="orchestrator")
            group.create_task(serve_web(orchestrator, self._stop, self._sock), name="web")
