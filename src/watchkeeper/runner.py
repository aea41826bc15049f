"""``watchkeeper run``: start the whole system in this process and stop it on a signal.

SIGINT and SIGTERM set one stop event; the orchestrator stops the agents, writes the final
status file and returns, and the process exits 0 within a few seconds. A front end (the
web server) is handed in by the caller, which sits above this layer and binds its socket
first, so a port in use fails before anything starts::

    run_system(settings, path, front_end=functools.partial(serve_web, sock=sock))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watchkeeper.config import Settings
from watchkeeper.live_config import ConfigStore
from watchkeeper.logs import setup_logging

if TYPE_CHECKING:
    from watchkeeper.orchestrator import Orchestrator

__all__ = ["FrontEnd", "run_system"]

FrontEnd = Callable[["Orchestrator", asyncio.Event], Coroutine[Any, Any, None]]
"""Served beside the orchestrator until the stop event is set (and sets it if it ends)."""

log = logging.getLogger("watchkeeper.runner")


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows event loops
            signal.signal(signum, lambda *_: loop.call_soon_threadsafe(stop.set))


async def _serve(store: ConfigStore, front_end: FrontEnd | None) -> None:
    from watchkeeper.orchestrator import Orchestrator

    orchestrator = Orchestrator(store)
    stop = asyncio.Event()
    _install_signal_handlers(stop)
    async with asyncio.TaskGroup() as group:
        group.create_task(orchestrator.run(stop), name="orchestrator")
        if front_end is not None:
            group.create_task(front_end(orchestrator, stop), name="front-end")


def run_system(
    settings: Settings, config_path: Path | None, *, front_end: FrontEnd | None = None
) -> int:
    """Run until a signal arrives, with ``front_end`` (if any) beside the orchestrator;
    returns the process exit code."""
    setup_logging(settings.data_dir, settings.log_level)
    store = ConfigStore(settings, config_path)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(store, front_end))
    return 0
