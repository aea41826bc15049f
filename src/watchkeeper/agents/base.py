"""``BaseAgent``: write ``_perform_check()``, the base class does the rest.

The base class runs the check at the agent's interval, times it, counts errors, keeps a
heartbeat for the supervisor, answers the standard commands (``health_check``, ``pause``,
``resume``, ``restart``) and runs message handlers registered with :meth:`BaseAgent.on`::

    class DiskWatcher(BaseAgent):
        async def _perform_check(self) -> None:
            await self.publish("disk.checked", DiskChecked(ok=True))

A check that raises is counted and logged; the agent turns ``degraded`` and carries on.
After ``max_consecutive_errors`` failures in a row the loop gives up and raises
``AgentCrashed``, and the supervisor restarts the agent with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from watchkeeper.bus import Bus, Message, Topic
from watchkeeper.model.events import AgentReply, Command
from watchkeeper.model.snapshot import AgentHealth, AgentState
from watchkeeper.model.topics import COMMAND_ALL, CONFIG_CHANGED, adopt, command_for

if TYPE_CHECKING:
    from watchkeeper.config import Settings
    from watchkeeper.services.base import ServiceManager
    from watchkeeper.storage import Storage

__all__ = [
    "AgentContext",
    "AgentCrashed",
    "BaseAgent",
    "CommandError",
    "RestartRequested",
]

Handler = Callable[[Message], Awaitable[None]]
ModelT = TypeVar("ModelT", bound=BaseModel)

#: How long "pause" waits for a check already under way before it answers: well inside
#: the bus's default request timeout (5 s), so the caller hears the answer.
PAUSE_SETTLE_S = 3.0


class AgentCrashed(RuntimeError):
    """The agent's loop gave up; the supervisor will restart it."""


class RestartRequested(Exception):
    """Raised inside the loop when someone asked for a restart."""


class CommandError(ValueError):
    """A command the agent does not know, or with bad parameters."""


@dataclass
class AgentContext:
    """What every agent is given: the bus, a way to read current settings, the clock, the
    service managers and the history store. The orchestrator builds one and shares it; a
    test builds its own: ``AgentContext(bus=bus, settings=store, data_dir=tmp_path)``.

    ``services`` is the orchestrator's service-manager registry (by manager name), filled
    when the system starts; ``storage`` the one history store, None when there is none.
    """

    bus: Bus
    settings: Callable[[], Settings]
    data_dir: Path
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    services: dict[str, ServiceManager] = field(default_factory=dict)
    storage: Storage | None = None


class BaseAgent:
    """Subclass and implement ``_perform_check``; optionally ``setup``/``teardown``."""

    kind = "agent"
    #: Failures in a row before the loop raises and the supervisor restarts the agent.
    max_consecutive_errors = 5

    def __init__(self, name: str, ctx: AgentContext, *, interval: float | None = None) -> None:
        self.name = name
        self.ctx = ctx
        self.logger = logging.getLogger(f"watchkeeper.agent.{name}")
        self._fixed_interval = interval
        self._handlers: list[tuple[str, Handler, int, str]] = []
        self._wake = asyncio.Event()
        # A health_check command and the loop must not run two checks at once.
        self._check_lock = asyncio.Lock()
        self._paused = False
        self._restart_requested = False
        self.state = AgentState.STOPPED
        self.started_at: float | None = None
        self.last_check: float | None = None
        self.last_duration_ms: float | None = None
        self.checks = 0
        self.errors = 0
        self.bad_remote_messages = 0  # another host's payload that did not parse
        self.consecutive_errors = 0
        self.last_error: str | None = None
        self.restarts = 0
        self.last_restart_reason: str | None = None
        self.heartbeat = ctx.monotonic()
        self.check_started: float | None = None

    # -- what subclasses write --------------------------------------------------------
    async def _perform_check(self) -> None:
        """One unit of the agent's work, run every ``interval`` seconds."""

    async def setup(self) -> None:
        """Called each time the agent (re)starts, before the first check."""

    async def teardown(self) -> None:
        """Called when the agent stops or is restarted; keep it short."""

    async def handle_command(self, command: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Agent-specific commands; raise ``CommandError`` for unknown ones."""
        raise CommandError(f"agent {self.name!r} has no command {command!r}")

    #: Agent-specific command names, for listings and validation.
    extra_commands: tuple[str, ...] = ()

    # -- helpers for subclasses ----------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return self.ctx.settings()

    @property
    def interval(self) -> float:
        if self._fixed_interval is not None:
            return self._fixed_interval
        return self.settings.agents.interval_for(self.name)

    def on(
        self, pattern: str, handler: Handler, *, maxsize: int = 1000, scope: str = "local"
    ) -> None:
        """Run ``handler`` for every message matching ``pattern`` while the agent runs.

        ``scope`` is ``"local"`` (messages about this host), ``"fleet"`` (about any host:
        a central analyzer's samples) or one host id. Register in ``__init__`` or
        ``setup``. Handler errors are counted like check errors.
        """
        self._handlers.append((pattern, handler, maxsize, scope))

    async def publish(
        self, topic: Topic[ModelT] | str, value: ModelT, *, host: str | None = None
    ) -> Message:
        """Publish ``value`` on ``topic`` as this agent: ``await self.publish(TOPIC, model)``.

        ``host`` names the host the message is about when it is not this one. A plugin
        agent may name a topic of its own (``"heartbeat.beat"``): its first publish
        declares it with the value's model (see :func:`topics.adopt`).
        """
        bus = self.ctx.bus
        if isinstance(topic, str):
            topic = adopt(bus.topics, topic, value)
        return await bus.publish(topic, value, sender=self.name, host=host)

    def wake(self) -> None:
        """Run the next check now instead of waiting for the interval."""
        self._wake.set()

    # -- health -------------------------------------------------------------------------
    def health(self) -> AgentHealth:
        now = self.ctx.clock()
        return AgentHealth(
            name=self.name,
            kind=self.kind,
            state=self.state,
            interval=self.interval,
            started_at=self.started_at,
            uptime_s=round(now - self.started_at, 3) if self.started_at else 0.0,
            last_check=self.last_check,
            last_duration_ms=self.last_duration_ms,
            checks=self.checks,
            errors=self.errors,
            consecutive_errors=self.consecutive_errors,
            last_error=self.last_error,
            restarts=self.restarts,
            last_restart_reason=self.last_restart_reason,
            bad_remote_messages=self.bad_remote_messages,
        )

    def hung_for(self, now: float, hang_timeout: float) -> float | None:
        """Seconds past ``hang_timeout`` without progress, or None when alive."""
        if self.state in (AgentState.STOPPED, AgentState.FAILED):
            return None
        silent = now - self.heartbeat
        limit = hang_timeout + (0 if self.check_started is not None else self.interval)
        return silent if silent > limit else None

    # -- the loop -----------------------------------------------------------------------
    async def run(self) -> None:
        """The agent's whole life between a start and a stop; run by the supervisor."""
        self.state = AgentState.STARTING
        self._restart_requested = False
        self.consecutive_errors = 0
        self.started_at = self.ctx.clock()
        self.heartbeat = self.ctx.monotonic()
        self.check_started = None
        bus = self.ctx.bus
        subs = [
            bus.subscribe(command_for(self.name).name, name=f"{self.name}:commands", maxsize=100),
            bus.subscribe(COMMAND_ALL.name, name=f"{self.name}:commands-all", maxsize=100),
            bus.subscribe(CONFIG_CHANGED.name, name=f"{self.name}:config", maxsize=10),
        ]
        handler_subs = [
            (
                bus.subscribe(pattern, name=f"{self.name}:{pattern}", maxsize=size, scope=scope),
                handler,
            )
            for pattern, handler, size, scope in self._handlers
        ]
        try:
            await self.setup()
            self.state = AgentState.PAUSED if self._paused else AgentState.RUNNING
            async with asyncio.TaskGroup() as tasks:
                for sub in subs[:2]:
                    tasks.create_task(self._serve_commands(sub))
                tasks.create_task(self._watch_config(subs[2]))
                for sub, handler in handler_subs:
                    tasks.create_task(self._serve_handler(sub, handler))
                await self._loop()
                raise _LoopEnded
        except* _LoopEnded:
            pass
        except* (RestartRequested, AgentCrashed) as group:
            # Hand the supervisor the plain exception, not a group of one.
            raise group.exceptions[0] from None
        finally:
            for sub in subs:
                sub.close()
            for sub, _ in handler_subs:
                sub.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self.teardown()), 5.0)
            if self.state is not AgentState.FAILED:
                self.state = AgentState.STOPPED

    async def _loop(self) -> None:
        while True:
            self.heartbeat = self.ctx.monotonic()
            if self._restart_requested:
                raise RestartRequested
            if not self._paused:
                await self.check_once()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    async def check_once(self) -> None:
        """Run ``_perform_check`` once with timing and error accounting."""
        async with self._check_lock:
            await self._check_locked()

    async def _check_locked(self) -> None:
        started = self.ctx.monotonic()
        self.check_started = started
        self.heartbeat = started
        try:
            await self._perform_check()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._record_error(exc)
        else:
            self.consecutive_errors = 0
            if self.state is AgentState.DEGRADED:
                self.state = AgentState.RUNNING
        finally:
            done = self.ctx.monotonic()
            self.check_started = None
            self.heartbeat = done
            self.checks += 1
            self.last_check = self.ctx.clock()
            self.last_duration_ms = round((done - started) * 1000, 3)
        if self.consecutive_errors >= self.max_consecutive_errors:
            self.state = AgentState.FAILED
            raise AgentCrashed(
                f"{self.consecutive_errors} checks failed in a row; last: {self.last_error}"
            )

    def _record_error(self, exc: BaseException) -> None:
        self.errors += 1
        self.consecutive_errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:500]
        if self.state is AgentState.RUNNING:
            self.state = AgentState.DEGRADED
        self.logger.warning("check failed: %s", self.last_error, exc_info=exc)

    async def _serve_handler(self, sub: Any, handler: Handler) -> None:
        async for message in sub:
            self.heartbeat = self.ctx.monotonic()
            try:
                await handler(message)
            except asyncio.CancelledError:
                raise
            except ValidationError as exc:
                if message.origin and message.origin != self.ctx.bus.host:
                    self._bad_remote(message, exc)  # their word, not our fault
                else:
                    self._record_error(exc)
            except Exception as exc:
                self._record_error(exc)

    def _bad_remote(self, message: Message, exc: ValidationError) -> None:
        """Another host's message whose payload does not parse (a networked bus checks the
        envelope on arrival and a payload only when it is read): dropped and counted. It
        says nothing about this agent's health, so the agent is not degraded by it, and a
        host that floods them gets a warning for the first ten and one per thousand."""
        self.bad_remote_messages += 1
        if self.bad_remote_messages <= 10 or self.bad_remote_messages % 1000 == 0:
            errors = exc.errors()
            first: dict[str, Any] = dict(errors[0]) if errors else {}
            where = ".".join(str(part) for part in first.get("loc", ())) or "payload"
            self.logger.warning(
                "ignored %s from host %r that does not parse (%d so far): %s: %s",
                message.topic,
                message.origin[:64],
                self.bad_remote_messages,
                where[:100],
                str(first.get("msg", ""))[:200],
            )

    async def _watch_config(self, sub: Any) -> None:
        async for _message in sub:
            # An interval may have changed: start the next wait afresh.
            self._wake.set()

    async def _serve_commands(self, sub: Any) -> None:
        async for message in sub:
            reply = await self.execute_command(message)
            await self.ctx.bus.reply(message, AgentReply.model_validate(reply), sender=self.name)
            if self._restart_requested:
                self._wake.set()

    async def execute_command(self, message: Message) -> dict[str, Any]:
        try:
            asked = message.parse(Command)
        except ValidationError as exc:
            error = f"not a command: {exc.errors()[0]['msg']}"
            return {"ok": False, "agent": self.name, "command": "", "error": error}
        command = asked.command
        try:
            result = await self._dispatch(command, asked.params)
        except CommandError as exc:
            return {"ok": False, "agent": self.name, "command": command, "error": str(exc)}
        except Exception as exc:  # a command must never take the agent down
            self.logger.exception("command %s failed", command)
            return {"ok": False, "agent": self.name, "command": command, "error": str(exc)}
        return {"ok": True, "agent": self.name, "command": command, **result}

    async def _dispatch(self, command: str, params: Mapping[str, Any]) -> dict[str, Any]:
        if command == "health_check":
            if not self._paused:
                await self.check_once()
            return {"health": self.health().model_dump(mode="json")}
        if command == "pause":
            self._paused = True
            self.state = AgentState.PAUSED
            # A check already under way finishes before the answer, so nothing the agent
            # does shows up after "paused"; a hung check does not hold the answer long.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PAUSE_SETTLE_S):
                    async with self._check_lock:
                        pass
            return {"state": self.state.value}
        if command == "resume":
            self._paused = False
            self.state = AgentState.RUNNING
            self._wake.set()
            return {"state": self.state.value}
        if command == "restart":
            self._restart_requested = True
            return {"state": "restarting"}
        return await self.handle_command(command, params)

    def commands(self) -> list[str]:
        return ["health_check", "pause", "resume", "restart", *self.extra_commands]


class _LoopEnded(Exception):
    """Internal: the check loop returned, so the handler tasks can be cancelled."""
