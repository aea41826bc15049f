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
from watchkeeper.agents.base import AgentContext, BaseAgent
from watchkeeper.bus import InMemoryBus, make_bus
from watchkeeper.config import Settings
from watchkeeper.live_config import ConfigStore
from watchkeeper.logs import RepeatedProblem
from watchkeeper.model.events import SystemStarted, SystemStopped
from watchkeeper.model.snapshot import AgentState, BusCounters, SystemSnapshot
from watchkeeper.model.topics import SERVICE_TOPICS, SYSTEM_STARTED, SYSTEM_STOPPED
from watchkeeper.personality import say
from watchkeeper.status import STATUS_FILE, write_json_atomic
from watchkeeper.supervisor import Supervisor

if TYPE_CHECKING:
    from watchkeeper.model.actions import ActionRecord, ActionRequest
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
                group.create_task(self.supervisor.run(list(self.agents.values()), stop))
                group.create_task(self.plugins.serve(stop), name="plugin-subscriptions")
                await stop.wait()
                self.state = "stopping"
                status.cancel()
        finally:
            await self.plugins.stop()  # plugins: each within its stop_timeout
            await self._stop_services()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.storage.close(), 30)
            self.state = "stopped"
            with contextlib.suppress(Exception):
                await self.bus.publish(SYSTEM_STOPPED, SystemStopped(), sender="orchestrator")
            try:
                await asyncio.wait_for(self.bus.stop(), 15)
            except Exception as exc:
                log.error("the bus did not stop cleanly: %s", exc)
            self.write_status()
            uptime = self.clock() - (self.started_at or self.clock())
            log.info("%s", say("system_stop", self.settings.personality, uptime=uptime))
