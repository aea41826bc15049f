"""uvicorn's server, tuned for living inside a monitoring daemon (imported only when the
web server starts)."""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn

__all__ = ["CalmServer"]


class CalmServer(uvicorn.Server):
    """uvicorn's server with a calmer heartbeat.

    Its loop wakes ten times a second to refresh the Date header and look at the exit
    flag. Once a second, and at once when ``stop`` is set, is plenty; it halves what the
    web server adds to an idle daemon's CPU.
    """

    def __init__(self, config: uvicorn.Config, stop: asyncio.Event) -> None:
        super().__init__(config)
        self._stop = stop

    async def main_loop(self) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 10) % 864000  # a multiple of 10: refresh the Date header
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._stop.wait()
            should_exit = await self.on_tick(counter)
