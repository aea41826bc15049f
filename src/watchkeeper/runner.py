"""``watchkeeper run``: start the whole system in this process and stop it on a signal.

SIGINT and SIGTERM set one stop event; the orchestrator stops the agents, writes the final
status file and returns, and the process exits 0 within a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from pathlib import Path

from watchkeeper.config import Settings
from watchkeeper.live_config import ConfigStore
from watchkeeper.logs import setup_logging

__all__ = ["run_system"]

log = logging.getLogger("watchkeeper.runner")


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows event loops
            signal.signal(signum, lambda *_: loop.call_soon_threadsafe(stop.set))


async def _serve(store: ConfigStore, *, sock: socket.socket | None) -> None:
    from watchkeeper.orchestrator import Orchestrator

    orchestrator = Orchestrator(store)
    stop = asyncio.Event()
    _install_signal_handlers(stop)
    async with asyncio.TaskGroup() as group:
        group.create_task(orchestrator.run(stop), name="orchestrator")
        if sock is not None:
            from watchkeeper.web.server import serve_web

            group.create_task(serve_web(orchestrator, stop, sock), name="web")


def run_system(settings: Settings, config_path: Path | None, *, web: bool = True) -> int:
    """Run until a signal arrives; returns the process exit code.

    Raises ``PortInUse`` before anything starts when the web port cannot be bound.
    """
    sock = None
    if web:
        from watchkeeper.web.server import bind_socket

        sock = bind_socket(settings.web.host, settings.web.port)
    setup_logging(settings.data_dir, settings.log_level)
    store = ConfigStore(settings, config_path)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(store, sock=sock))
    finally:
        if sock is not None:
            sock.close()
    return 0
