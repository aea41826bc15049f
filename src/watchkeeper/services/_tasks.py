"""A small owner for background tasks: every task has someone who cancels and awaits it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["OwnedTasks"]

_log = logging.getLogger(__name__)


class OwnedTasks:
    """Tasks a long-lived object starts and must end in its ``aclose``.

    Unlike a bare ``create_task``, nothing started here is orphaned: ``cancel_all``
    cancels every live task and waits for them, and a task's crash is logged, never lost.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        task = asyncio.create_task(self._guarded(coro, what), name=what)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._tasks)

    @staticmethod
    async def _guarded(coro: Coroutine[Any, Any, None], what: str) -> None:
        try:
            await coro
        except Exception:
            _log.exception("%s failed", what)
