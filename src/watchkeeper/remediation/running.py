"""Where actions run: their own bounded thread pool, a limit on how many at once, and
tasks that have an owner who cancels and awaits them.

The pipeline holds one; nothing else starts action tasks::

    runner = ActionRunner(actx, limit=lambda: settings().remediation.max_concurrent_actions)
    runner.spawn(execute(request))          # a task of its own, cancelled by close()
    async with runner.slot(): ...           # at most ``limit()`` actions at once
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from watchkeeper.remediation.actions import ActionContext

__all__ = ["ActionRunner"]

_POOL_THREADS = 4  # blocking work of actions and their checks; they wait in turn beyond


class ActionRunner:
    """The actions' pool (installed as ``actx.executor``), their tasks and their slots."""

    def __init__(self, actx: ActionContext, *, limit: Callable[[], int]) -> None:
        self._actx = actx
        self._limit = limit
        self._pool: ThreadPoolExecutor | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._slots: asyncio.Semaphore | None = None
        self._slots_size = 0

    def start(self) -> None:
        """Make the pool; idempotent, and again after ``close`` (an agent restart)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(_POOL_THREADS, thread_name_prefix="watchkeeper-action")
            self._actx.executor = self._pool

    async def close(self) -> None:
        """Cancel and await every task started here, then shut the pool."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()
        pool, self._pool = self._pool, None
        self._actx.executor = None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task owned here."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def slot(self) -> asyncio.Semaphore:
        """The semaphore that keeps at most ``limit()`` actions running (resized live)."""
        size = self._limit()
        if self._slots is None or size != self._slots_size:
            self._slots = asyncio.Semaphore(size)
            self._slots_size = size
        return self._slots
