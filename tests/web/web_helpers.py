"""A real watchkeeper on loopback for the web tests (the fixtures are in conftest.py).

``LiveServer`` runs a real ``Orchestrator`` (sensor, analyzer, remediator, communicator
with its SQLite storage) and the real uvicorn server from ``serve_web`` on a free port,
in a thread with its own event loop. Tests talk to it over real sockets with plain
``httpx``, and reach the bus through :meth:`LiveServer.call` when they need to make
something happen (an alert, say) the way an agent would.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import httpx

from watchkeeper.agents.base import AgentContext, BaseAgent
from watchkeeper.config import build_settings
from watchkeeper.live_config import ConfigStore
from watchkeeper.orchestrator import Orchestrator
from watchkeeper.web.live import LiveHub
from watchkeeper.web.server import bind_socket, serve_web

T = TypeVar("T")


class LiveServer:
    """See the module docstring. Use as a context manager."""

    def __init__(
        self,
        root: Path,
        *,
        flags: dict[str, Any] | None = None,
        host: str = "127.0.0.1",
        hub_options: dict[str, Any] | None = None,
        factories: dict[str, Callable[[str, AgentContext], BaseAgent]] | None = None,
    ) -> None:
        self.root = root
        base: dict[str, Any] = {
            "data_dir": str(root / "data"),
            "agents": {"check_interval": 0.2},
            "ollama": {"enabled": False},
            "status_interval": 1.0,
            "remediation": {"mode": "approve", "healing_cooldown": 0},
        }
        for key, value in (flags or {}).items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        self.settings = build_settings({}, file_label="test", flags=base)
        self.host = host
        self.hub_options = {"heartbeat": 0.5, "status_every": 0.5, **(hub_options or {})}
        self.factories = factories  # None: the built-in team, as `watchkeeper run` has it
        self.config_path = root / "watchkeeper.toml"
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_event: asyncio.Event | None = None
        self.orchestrator: Orchestrator | None = None
        self.hub: LiveHub | None = None
        self.port = 0

    # -- life -----------------------------------------------------------------------------
    def __enter__(self) -> LiveServer:
        self._thread = threading.Thread(target=self._main, name="live-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(20) or self._error is not None:
            raise RuntimeError(f"server did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.loop is not None and self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        if self._thread is not None:
            self._thread.join(20)
            assert not self._thread.is_alive(), "the server did not stop"
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the test thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        store = ConfigStore(self.settings, self.config_path)
        self.orchestrator = Orchestrator(store, factories=self.factories)
        self.hub = LiveHub(self.orchestrator, **self.hub_options)
        sock = bind_socket(self.host, 0)
        self.port = sock.getsockname()[1]
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.orchestrator.run(self.stop_event))
                group.create_task(serve_web(self.orchestrator, self.stop_event, sock, hub=self.hub))
                self.loop.call_later(0.05, self._ready.set)
        finally:
            sock.close()

    # -- helpers --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        configured = self.settings.web.token
        if configured:
            return configured.get_secret_value()
        return (Path(self.settings.data_dir) / "api_token").read_text().strip()

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def call(self, make: Callable[[], Awaitable[T]], timeout: float = 10) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        assert self.loop is not None

        async def runner() -> T:
            return await make()

        future: Future[T] = asyncio.run_coroutine_threadsafe(runner(), self.loop)
        return future.result(timeout)

    def on_loop(self, fn: Callable[[], T], timeout: float = 10) -> T:
        """Run a plain function on the server's loop (to read agents' state safely)."""

        async def run() -> T:
            return fn()

        return self.call(run, timeout)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10, what: str = "") -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what or predicate}")

    def client(self, **options: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **options)


def wait_for_samples(server: LiveServer, count: int = 2) -> None:
    def enough() -> bool:
        assert server.orchestrator is not None
        sensor = server.orchestrator.agents["sensor"]
        return sensor.checks >= count and getattr(sensor, "latest", None) is not None

    server.wait_for(lambda: server.on_loop(enough), what="samples")
