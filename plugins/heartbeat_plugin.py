"""Sample agent plugin: a heartbeat that also measures how late the daemon is.

It adds a small agent, started and supervised by the orchestrator like the built-in ones.
Every ``interval`` seconds it publishes a message type of its own, ``heartbeat.beat``
(host uptime, daemon uptime, and the *lag*: how much later than planned the beat came, a
cheap, honest measure of a starved event loop or a suspended VM). A beat later than
``late_after_ms`` also goes out as ``heartbeat.late``. It subscribes to
``agent.restarted`` on the bus and reports how many agent restarts it has heard, so a
dashboard or a remote watcher listening for beats learns of trouble at once::

    [plugins]
    plugins_to_load = ["heartbeat_plugin"]

    [plugins.plugin_configs.heartbeat_plugin]
    interval = 30
    late_after_ms = 500
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import psutil
from plugins.base_plugin import BasePlugin, PluginContext
from pydantic import BaseModel, ConfigDict, Field

from watchkeeper.agents.base import AgentContext, BaseAgent
from watchkeeper.bus import Message

__all__ = ["Heartbeat", "HeartbeatAgent", "HeartbeatConfig", "HeartbeatPlugin"]


class HeartbeatConfig(BaseModel):
    """``plugin_configs.heartbeat_plugin``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval: float = Field(30.0, gt=0, le=3600, description="seconds between beats")
    late_after_ms: float = Field(500.0, gt=0, description="a beat this late is reported")
    agent_name: str = Field("heartbeat", pattern=r"^[a-z][a-z0-9_]{0,31}$")


class Heartbeat(BaseModel):
    """The payload of ``heartbeat.beat`` and ``heartbeat.late``."""

    seq: int
    host_uptime_s: float
    daemon_uptime_s: float
    lag_ms: float
    agent_restarts_heard: int


class HeartbeatAgent(BaseAgent):
    """Publishes ``heartbeat.beat`` every interval; see the module docstring."""

    kind = "heartbeat"

    def __init__(
        self,
        name: str,
        ctx: AgentContext,
        *,
        interval: float,
        late_after_ms: float,
        boot_time: Callable[[], float] = psutil.boot_time,
        process_start: float | None = None,
    ) -> None:
        super().__init__(name, ctx, interval=interval)
        self.late_after_ms = late_after_ms
        self._boot_time = boot_time
        self._process_start = (
            process_start
            if process_start is not None
            else psutil.Process(os.getpid()).create_time()
        )
        self.seq = 0
        self.restarts_heard = 0
        self.last_lag_ms: float | None = None
        self.max_lag_ms = 0.0
        self._last_done: float | None = None

    def heard_restart(self) -> None:
        self.restarts_heard += 1

    async def _perform_check(self) -> None:
        started = self.ctx.monotonic()
        # The loop waits ``interval`` after each beat: anything beyond that is lateness.
        lag = 0.0
        if self._last_done is not None:
            lag = max(0.0, started - self._last_done - self.interval) * 1000.0
        now = self.ctx.clock()
        self.seq += 1
        beat = Heartbeat(
            seq=self.seq,
            host_uptime_s=round(now - self._boot_time(), 3),
            daemon_uptime_s=round(now - self._process_start, 3),
            lag_ms=round(lag, 3),
            agent_restarts_heard=self.restarts_heard,
        )
        self.last_lag_ms = beat.lag_ms
        self.max_lag_ms = max(self.max_lag_ms, beat.lag_ms)
        await self.publish("heartbeat.beat", beat)
        if beat.lag_ms > self.late_after_ms:
            self.logger.warning("heartbeat %d came %.0f ms late", beat.seq, beat.lag_ms)
            await self.publish("heartbeat.late", beat)
        self._last_done = self.ctx.monotonic()

    def status(self) -> dict[str, Any]:
        """Shown under ``details`` in the status file and the API."""
        return {
            "beats": self.seq,
            "last_lag_ms": self.last_lag_ms,
            "max_lag_ms": self.max_lag_ms,
            "agent_restarts_heard": self.restarts_heard,
        }


class HeartbeatPlugin(BasePlugin[HeartbeatConfig]):
    config_model = HeartbeatConfig

    def register(self, system_context: PluginContext) -> None:
        self.agent = HeartbeatAgent(
            self.config.agent_name,
            system_context.agent_context,
            interval=self.config.interval,
            late_after_ms=self.config.late_after_ms,
        )
        system_context.add_agent(self.agent)
        system_context.subscribe("agent.restarted", self.on_restart)

    async def on_restart(self, message: Message) -> None:
        self.agent.heard_restart()
