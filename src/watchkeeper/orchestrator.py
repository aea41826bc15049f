"""The orchestrator builds the team from configuration, runs it, and stops it cleanly.

::

    orchestrator = Orchestrator(store)
    await orchestrator.run(stop_event)     # returns once stop_event is set and all is flushed

It owns the bus, the supervisor, the periodic status file and the registries
(``orchestrator.registries``: actions, collectors, rules, service managers), which it
builds and injects into the agents that use them, the web and the plugin hosts::

    orchestrator.registries.actions.infos()    # every declared action, plugins' too

``orchestrator.agents`` maps agent names to agents; plugins do not look there, they get
the registries through their host (``watchkeeper.plugins.PluginHost``).

On a NATS bus (``[bus] backend = "nats"``) it publishes this host's ``fleet.heartbeat``
every ``[fleet] heartbeat_interval`` (at start, and a last one saying "stopped"), and a
host placed without an analyzer (``watchkeeper run --agents sensor,remediator``) starts a
rules-only fallback analyzer after ``[fleet] fallback_analyzer_after`` seconds cut off
from the server, and stops it once the connection is back. ``snapshot().placement`` says
which agents are placed here and whether the fallback runs. On the in-memory bus none of
this runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from watchkeeper import __version__
from watchkeeper.agents._placement import FallbackSwitch, LinkWatch, host_beat
from watchkeeper.agents.base import AgentContext, BaseAgent
from watchkeeper.bus import InMemoryBus, make_bus
from watchkeeper.config import Settings
from watchkeeper.live_config import ConfigStore
from watchkeeper.logs import RepeatedProblem
from watchkeeper.model.events import SystemStarted, SystemStopped
from watchkeeper.model.snapshot import AgentState, BusCounters, SystemSnapshot
from watchkeeper.model.topics import (
    FLEET_HEARTBEAT,
    SERVICE_TOPICS,
    SYSTEM_STARTED,
    SYSTEM_STOPPED,
)
from watchkeeper.personality import say
from watchkeeper.status import STATUS_FILE, write_json_atomic
from watchkeeper.supervisor import Supervisor

if TYPE_CHECKING:
    from watchkeeper.model.actions import ActionRecord, ActionRequest
    from watchkeeper.model.fleet import HostBeat
    from watchkeeper.plugins import Registries, RegistryKind

__all__ = ["AgentFactory", "Orchestrator", "build_registries", "default_agent_factories"]

log = logging.getLogger("watchkeeper.orchestrator")

AgentFactory = Callable[[str, AgentContext], BaseAgent]


# The built-in agent that uses each registry: with it switched off, plugins are told so.
_REGISTRY_USERS: dict[RegistryKind, str] = {
    "actions": "remediator",
    "collectors": "sensor",
    "rules": "analyzer",
}


def build_registries(settings: Settings, services: dict[str, Any] | None = None) -> Registries:
    """The registries, holding the built-in actions and collectors and no extra rules.

    Use it to wire agents by hand (a test, a tool) the way the daemon does::

        registries = build_registries(store.current)
        sensor = SensorAgent("sensor", ctx, collectors=registries.collectors)
    """
    from watchkeeper.analysis.rules import RuleRegistry
    from watchkeeper.collectors import build_default_registry
    from watchkeeper.plugins import Registries
    from watchkeeper.remediation.builtin import builtin_registry

    return Registries(
        actions=builtin_registry(),
        collectors=build_default_registry(top_n=settings.top_processes),
        rules=RuleRegistry(),
        services={} if services is None else services,
    )


def default_agent_factories(
    registries: Registries, settings: Settings | None = None
) -> dict[str, AgentFactory]:
    """The built-in agents, in start order, each given the registries it uses: the
    analyzer reads the actions (to offer the LLM every one, plugins' too) and the rules,
    the remediator runs the actions, the sensor samples the collectors. With ``settings``
    of ``[fleet] role = "central"`` the fleet agent keeps the fleet view. Imports happen
    here, not at module import."""
    from watchkeeper.agents.analyzer import AnalyzerAgent
    from watchkeeper.agents.communicator import CommunicatorAgent
    from watchkeeper.agents.remediator import RemediatorAgent
    from watchkeeper.agents.sensor import SensorAgent

    def sensor(name: str, ctx: AgentContext) -> BaseAgent:
        return SensorAgent(name, ctx, collectors=registries.collectors)

    def analyzer(name: str, ctx: AgentContext) -> BaseAgent:
        return AnalyzerAgent(name, ctx, rules=registries.rules, actions=registries.actions)

    def remediator(name: str, ctx: AgentContext) -> BaseAgent:
        return RemediatorAgent(name, ctx, actions=registries.actions)

    factories: dict[str, AgentFactory] = {
        "sensor": sensor,
        "analyzer": analyzer,
        "remediator": remediator,
        "communicator": CommunicatorAgent,
    }
    if settings is not None and settings.fleet.role == "central":
        from watchkeeper.agents.fleet import FleetAgent

        factories["fleet"] = FleetAgent
    return factories


class Orchestrator:
    """Builds, starts, supervises and stops the agents."""

    def __init__(
        self,
        store: ConfigStore,
        *,
        bus: InMemoryBus | None = None,
        factories: dict[str, AgentFactory] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.bus = bus or make_bus(store.current)
        if store._bus is None:
            store._bus = self.bus
        self.clock = clock
        self.started_at: float | None = None
        self.state = "created"
        self._status_trouble = RepeatedProblem(log)
        self._managers_built = False
        self.extras: dict[str, Callable[[], Any]] = {
            "storage": lambda: self.storage.stats().model_dump(mode="json"),
            "bus_backend": self.bus.status,
        }
        settings = store.current
        self.registries = build_registries(settings)
        self.services = self.registries.services
        from watchkeeper.storage import Storage

        # One history store for everyone; opened in run(), never at construction.
        self.storage = Storage.in_data_dir(
            settings.data_dir, clock=clock, max_size_mb=settings.storage.max_size_mb
        )
        self.ctx = AgentContext(
            bus=self.bus,
            settings=store,
            data_dir=settings.data_dir,
            clock=clock,
            services=self.services,
            storage=self.storage,
        )
        self.supervisor = Supervisor(
            self.bus,
            backoff_initial=settings.agents.restart_backoff_initial,
            backoff_max=settings.agents.restart_backoff_max,
            hang_intervals=settings.agents.hang_intervals,
            min_hang_timeout=settings.agents.min_hang_timeout,
            personality=lambda: self.store.current.personality,
        )
        self.agents: dict[str, BaseAgent] = {}
        chosen = (
            default_agent_factories(self.registries, settings) if factories is None else factories
        )
        for name, factory in chosen.items():
            if settings.agents.for_agent(name).enabled:
                self.add_agent(factory(name, self.ctx))
        # -- plugins (watchkeeper.plugins): registered now, once the built-in agents exist
        # and before any agent starts; started, served and stopped by run().
        from watchkeeper.plugins import PluginManager

        self.plugins = PluginManager(self)
        self.extras["plugins"] = self.plugins.status
        self.plugins.load()
        # -- placement: which agents run here; on NATS, the heartbeat and the fallback.
        self.placed = list(self.agents)
        self.fleet_mode = settings.bus.backend == "nats"
        self._beat_trouble = RepeatedProblem(log)
        self.fallback: FallbackSwitch | None = None
        self.fallback_since: float | None = None
        self.fallback_runs = 0
        after = settings.fleet.fallback_analyzer_after
        if self.fleet_mode and "analyzer" not in self.agents and after > 0:
            self.fallback = FallbackSwitch(after, settle=min(2.0, after))
        self.extras["placement"] = self.placement

    @property
    def settings(self) -> Settings:
        return self.store.current

    def unused_registries(self) -> frozenset[RegistryKind]:
        """The registries whose built-in agent is switched off, so nothing reads them."""
        return frozenset(k for k, agent in _REGISTRY_USERS.items() if agent not in self.agents)

    async def submit_action(self, request: ActionRequest) -> ActionRecord:
        """Hand ``request`` to the remediator, whose policy decides (a plugin's proposal)."""
        from watchkeeper.agents.remediator import RemediatorAgent

        remediator = self.agents.get("remediator")
        if not isinstance(remediator, RemediatorAgent):
            raise LookupError("there is no remediator agent to run actions")
        return await remediator.submit(request)

    def add_agent(self, agent: BaseAgent) -> None:
        """Add an agent; started at once when the system is already running."""
        if agent.name in self.agents:
            raise ValueError(f"an agent named {agent.name!r} already exists")
        self.agents[agent.name] = agent
        if self.state == "running":
            self.supervisor.add(agent)

    # -- the snapshot ---------------------------------------------------------------------
    def snapshot(self) -> SystemSnapshot:
        """Everything the status file, the API and the CLI show about the system."""
        now = self.clock()
        states = [agent.state for agent in self.agents.values()]
        if self.state != "running":
            overall = self.state
        elif any(state in (AgentState.FAILED, AgentState.DEGRADED) for state in states):
            overall = "degraded"
        else:
            overall = "healthy"
        bus = self.bus.stats()
        extras: dict[str, Any] = {}
        for key, extra in self.extras.items():
            try:
                extras[key] = extra()
            except Exception as exc:  # a broken extra must not break the status file
                extras[key] = {"error": str(exc)}
        return SystemSnapshot(
            version=__version__,
            pid=os.getpid(),
            state=self.state,
            status=overall,
            started_at=self.started_at,
            updated_at=now,
            uptime_s=round(now - self.started_at, 3) if self.started_at else 0.0,
            agents={name: agent.health() for name, agent in self.agents.items()},
            bus=BusCounters(
                published=bus.published,
                delivered=bus.delivered,
                dropped=bus.dropped,
                subscribers=len(bus.subscribers),
            ),
            config_file=str(self.store.path) if self.store.path else None,
            details=self._agent_details(),
            **extras,
        )

    def placement(self) -> dict[str, Any]:
        """Which agents are placed on this host, its role, and the fallback analyzer's
        state (``off``, ``standby`` or ``running``; ``never`` without NATS or when this
        host runs its own analyzer)."""
        state = "never"
        if self.fallback is not None:
            state = "running" if self.fallback.active else "standby"
        return {
            "host": self.bus.host,
            "agents": list(self.placed),
            "role": self.settings.fleet.role if self.fleet_mode else "standalone",
            "fallback_analyzer": state,
            "fallback_since": self.fallback_since,
            "fallback_runs": self.fallback_runs,
        }

    def _agent_details(self) -> dict[str, Any]:
        details: dict[str, Any] = {}
        for name, agent in self.agents.items():
            status = getattr(agent, "status", None)
            if callable(status):
                try:
                    details[name] = status()
                except Exception as exc:  # a broken status must not break the snapshot
                    details[name] = {"error": str(exc)}
        return details

    def write_status(self) -> None:
        path = self.settings.data_dir / STATUS_FILE
        try:
            snapshot = self.snapshot().model_dump(mode="json", exclude_unset=True, fallback=str)
            write_json_atomic(path, snapshot)
        except OSError as exc:
            self._status_trouble.failed("cannot write %s: %s", path, exc.strerror or exc)
        else:
            self._status_trouble.over("writing %s works again", path)

    async def _status_loop(self) -> None:
        while True:
            await asyncio.to_thread(self.write_status)
            await asyncio.sleep(self.settings.status_interval)

    async def _open_storage(self) -> None:
        from watchkeeper.storage import StorageError

        try:
            await self.storage.open()
        except StorageError as exc:
            # Everything else runs; the communicator keeps trying to open it.
            log.error("history storage unavailable: %s", exc)

    # -- services ---------------------------------------------------------------------------
    async def _service_event(self, event: Any) -> None:
        await self.bus.publish(SERVICE_TOPICS[event.kind], event, sender="sensor")

    def build_service_managers(self) -> None:
        """Create the service managers from ``[[services]]`` (no I/O yet)."""
        if self._managers_built or not self.settings.services:
            return
        from watchkeeper.services import build_managers

        self.services.update(
            build_managers(
                self.settings.services,
                self._service_event,
                log_dir=self.settings.data_dir / "services",
            )
        )
        self._managers_built = True

    async def _start_services(self) -> None:
        self.build_service_managers()
        for name, manager in self.services.items():
            try:
                start_all = getattr(manager, "start_all", None)
                if start_all is not None:
                    await start_all()  # programs watchkeeper runs itself start with it
                else:
                    await manager.start_watching()
            except Exception as exc:
                log.error("service manager %s could not start: %s", name, exc)

    async def _stop_services(self) -> None:
        for name, manager in self.services.items():
            try:
                await asyncio.wait_for(manager.aclose(), 30)
            except Exception as exc:
                log.error("service manager %s did not stop cleanly: %s", name, exc)

    # -- the fleet: heartbeat and fallback analyzer ------------------------------------------
    def heartbeat(self, *, stopped: bool = False) -> HostBeat:
        """This host's ``HostBeat`` now."""
        return host_beat(
            self.agents,
            self.settings,
            host=self.bus.host,
            bus_status=self.bus.status(),
            started_at=self.started_at,
            now=self.clock(),
            stopped=stopped,
            fallback=self.fallback is not None and self.fallback.active,
        )

    async def _publish_beat(self, *, stopped: bool = False) -> None:
        try:
            await self.bus.publish(
                FLEET_HEARTBEAT, self.heartbeat(stopped=stopped), sender="orchestrator"
            )
        except Exception as exc:
            self._beat_trouble.failed("cannot publish the heartbeat: %s", exc)
        else:
            self._beat_trouble.over("the heartbeat goes out again")

    async def _heartbeat_loop(self) -> None:
        while True:
            await self._publish_beat()
            await asyncio.sleep(self.settings.fleet.heartbeat_interval)

    def _link_up(self, link: LinkWatch) -> bool:
        try:
            return link.up(self.bus.status())
        except Exception as exc:
            link.why = f"the bus status is unreadable ({exc})"
            return False

    async def _fallback_loop(self, switch: FallbackSwitch) -> None:
        poll = min(1.0, max(0.05, switch.after / 4))
        link = LinkWatch(max(1.0, min(5.0, switch.after / 2)))
        why = ""
        while True:
            up = self._link_up(link)
            if not up:
                why = link.why
            change = switch.update(up)
            try:
                if change == "start":
                    await self._start_fallback(switch.cut_for() or switch.after, why)
                elif change == "stop":
                    await self._stop_fallback()
            except Exception as exc:  # the rest of the host must keep running
                log.error("the fallback analyzer could not %s: %s", change, exc)
            await asyncio.sleep(poll)

    async def _start_fallback(self, cut_for: float, why: str = "") -> None:
        from watchkeeper.agents.analyzer import AnalyzerAgent

        agent = AnalyzerAgent(
            "analyzer",
            self.ctx,
            rules=self.registries.rules,
            actions=self.registries.actions,
            llm=False,
        )
        self.add_agent(agent)
        self.fallback_since = self.clock()
        self.fallback_runs += 1
        log.warning(
            "%s for %.0fs: fallback analyzer started "
            "(rules only, this host's own policy) until the connection is back",
            why or "no connection to the bus server",
            cut_for,
        )

    async def _stop_fallback(self) -> None:
        agent = self.agents.get("analyzer")
        if agent is None:
            return
        await self.supervisor.remove("analyzer")
        del self.agents["analyzer"]
        resolved = 0
        stand_down = getattr(agent, "stand_down", None)
        if stand_down is not None:
            resolved = await stand_down("the connection to the bus server is back")
        ran = self.clock() - (self.fallback_since or self.clock())
        self.fallback_since = None
        log.warning(
            "connection to the bus server is back: fallback analyzer stopped after %.0fs "
            "(%d open alert(s) resolved here; the central analyzer takes over)",
            ran,
            resolved,
        )

    async def _start_bus(self) -> None:
        # A networked bus that cannot reach its server still starts: this host keeps
        # working alone and catches up when the server returns.
        try:
            await self.bus.start()
        except Exception as exc:
            log.error("the bus could not start: %s", exc)

    # -- life -----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then stop the agents and write the final status."""
        self.started_at = self.clock()
        await self.plugins.start()  # plugins: before the agents run, so a failed one's go too
        self.state = "running"
        log.info(
            "%s",
            say(
                "system_start",
                self.settings.personality,
                version=__version__,
                agents=len(self.agents),
                data_dir=self.settings.data_dir,
            ),
        )
        await self._start_bus()
        started = SystemStarted(version=__version__)
        await self.bus.publish(SYSTEM_STARTED, started, sender="orchestrator")
        try:
            await self._open_storage()
            await self._start_services()
            async with asyncio.TaskGroup() as group:
                status = group.create_task(self._status_loop(), name="status-writer")
                loops = [status]
                group.create_task(self.supervisor.run(list(self.agents.values()), stop))
                group.create_task(self.plugins.serve(stop), name="plugin-subscriptions")
                if self.fleet_mode:
                    loops.append(group.create_task(self._heartbeat_loop(), name="heartbeat"))
                if self.fallback is not None:
                    fallback = self._fallback_loop(self.fallback)
                    loops.append(group.create_task(fallback, name="fallback-analyzer"))
                await stop.wait()
                self.state = "stopping"
                for loop in loops:
                    loop.cancel()
        finally:
            await self.plugins.stop()  # plugins: each within its stop_timeout
            await self._stop_services()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.storage.close(), 30)
            self.state = "stopped"
            with contextlib.suppress(Exception):
                await self.bus.publish(SYSTEM_STOPPED, SystemStopped(), sender="orchestrator")
            if self.fleet_mode:
                await self._publish_beat(stopped=True)
            try:
                await asyncio.wait_for(self.bus.stop(), 15)
            except Exception as exc:
                log.error("the bus did not stop cleanly: %s", exc)
            self.write_status()
            uptime = self.clock() - (self.started_at or self.clock())
            log.info("%s", say("system_stop", self.settings.personality, uptime=uptime))
