"""Keeps agents alive: restarts one whose loop raises or hangs, with exponential backoff.

One ``Supervisor`` owns every agent task. A failing agent is restarted on its own; the
others never notice. Each restart is counted on the agent, logged and published on
``agent.restarted``::

    supervisor = Supervisor(bus, backoff_initial=1, backoff_max=60)
    await supervisor.run(agents, stop_event)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable

from watchkeeper.agents.base import AgentCrashed, BaseAgent, RestartRequested
from watchkeeper.bus import Bus
from watchkeeper.model.events import AgentRestart
from watchkeeper.model.snapshot import AgentState
from watchkeeper.model.topics import AGENT_RESTARTED
from watchkeeper.personality import say

__all__ = ["Supervisor"]

log = logging.getLogger("watchkeeper.supervisor")


class Supervisor:
    """Runs agents and restarts the ones that fail.

    ``hang_intervals`` × the agent's interval (at least ``min_hang_timeout`` seconds) without
    a heartbeat counts as a hang: the task is cancelled and started again. An agent that ran
    for ``stable_after`` seconds has its backoff reset.
    """

    def __init__(
        self,
        bus: Bus,
        *,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        hang_intervals: float = 3.0,
        min_hang_timeout: float = 10.0,
        stable_after: float = 60.0,
        personality: Callable[[], str] = lambda: "plain",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.hang_intervals = hang_intervals
        self.min_hang_timeout = min_hang_timeout
        self.stable_after = stable_after
        self._personality = personality
        self._monotonic = monotonic
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._stop: asyncio.Event | None = None

    def hang_timeout(self, agent: BaseAgent) -> float:
        return max(self.min_hang_timeout, self.hang_intervals * agent.interval)

    async def run(self, agents: Iterable[BaseAgent], stop: asyncio.Event) -> None:
        """Supervise ``agents`` until ``stop`` is set, then stop them all."""
        self._stop = stop
        async with asyncio.TaskGroup() as group:
            self._group = group
            for agent in agents:
                self.add(agent)
            await stop.wait()
            for task in self._tasks.values():
                task.cancel()
        self._group = None

    def add(self, agent: BaseAgent) -> None:
        """Start supervising ``agent`` (also after ``run`` has begun, e.g. from a plugin)."""
        if self._group is None:
            raise RuntimeError("the supervisor is not running")
        if agent.name in self._tasks:
            raise ValueError(f"agent {agent.name!r} is already supervised")
        self._tasks[agent.name] = self._group.create_task(
            self._supervise(agent), name=f"supervise:{agent.name}"
        )

    async def remove(self, name: str) -> None:
        """Stop the agent ``name`` and stop supervising it (a fallback analyzer standing
        down); nothing happens for a name not supervised."""
        task = self._tasks.pop(name, None)
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(BaseException):
            await task

    async def _supervise(self, agent: BaseAgent) -> None:
        failures = 0
        while True:
            started = self._monotonic()
            reason = await self._run_once(agent)
            if reason is None:  # stopped on purpose
                return
            if self._monotonic() - started >= self.stable_after:
                failures = 0
            requested = reason == "restart requested"
            if not requested:
                failures += 1
            backoff = (
                0.0
                if requested
                else min(self.backoff_max, self.backoff_initial * 2 ** max(0, failures - 1))
            )
            agent.restarts += 1
            agent.last_restart_reason = reason
            log.warning(
                "%s",
                say(
                    "agent_restart",
                    self._personality(),
                    agent=agent.name,
                    reason=reason,
                    backoff=backoff,
                ),
            )
            with contextlib.suppress(Exception):
                await self.bus.publish(
                    AGENT_RESTARTED,
                    AgentRestart(
                        agent=agent.name,
                        reason=reason,
                        restarts=agent.restarts,
                        backoff_s=backoff,
                    ),
                    sender="supervisor",
                )
            if backoff:
                await asyncio.sleep(backoff)

    async def _run_once(self, agent: BaseAgent) -> str | None:
        """Run the agent until it ends; the reason to restart it, or None to stop."""
        task = asyncio.create_task(agent.run(), name=f"agent:{agent.name}")
        hang_timeout = self.hang_timeout(agent)
        try:
            while True:
                poll = min(max(hang_timeout / 4, 0.05), 2.0)
                done, _ = await asyncio.wait({task}, timeout=poll)
                if done:
                    break
                silent = agent.hung_for(self._monotonic(), hang_timeout)
                if silent is not None:
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
                    agent.state = AgentState.FAILED
                    return f"hung: no progress for {silent:.1f}s"
        except asyncio.CancelledError:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise
        try:
            task.result()
        except RestartRequested:
            return "restart requested"
        except AgentCrashed as exc:
            return f"crashed: {exc}"
        except asyncio.CancelledError:
            return None if self._stop is not None and self._stop.is_set() else "cancelled"
        except Exception as exc:
            agent.state = AgentState.FAILED
            agent.last_error = f"{type(exc).__name__}: {exc}"[:500]
            log.error("agent %s raised", agent.name, exc_info=exc)
            return f"crashed: {agent.last_error}"
        if self._stop is not None and self._stop.is_set():
            return None
        return "exited"
