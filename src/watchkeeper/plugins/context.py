"""``system_context``: what a plugin's ``register`` receives.

It is the dict the product brief describes (``system_context['orchestrator']``,
``['config']``, ``['message_bus']``), so plugins written to the brief work unchanged, and
it offers one typed door per extension point::

    def register(self, system_context):
        system_context.actions.register(MyAction())          # remediation action
        system_context.actions.add(self.flush_dns, risk="safe")  # a function as an action
        system_context.collectors.register(MyCollector())    # metrics (declared MetricSpec)
        system_context.rules.add("my_rule", my_rule)          # analysis rule -> Check values
        system_context.add_agent(MyAgent("my_agent", system_context.agent_context))
        system_context.subscribe("alert.firing", self.on_alert)  # bus hook

Everything that goes through a door is remembered against the plugin, so a plugin that
fails later can be taken out cleanly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from watchkeeper.bus import Message, Subscription
from watchkeeper.collectors.base import Collector
from watchkeeper.model.actions import ActionInfo, ActionRequest, Risk
from watchkeeper.plugins.adapter import action_from_callable
from watchkeeper.plugins.base import PluginError
from watchkeeper.remediation.actions import Action

if TYPE_CHECKING:
    from watchkeeper.agents.analyzer import AnalyzerAgent
    from watchkeeper.agents.base import AgentContext, BaseAgent
    from watchkeeper.agents.remediator import RemediatorAgent
    from watchkeeper.agents.sensor import SensorAgent
    from watchkeeper.analysis.engine import RuleFn
    from watchkeeper.bus import InMemoryBus
    from watchkeeper.config import Settings
    from watchkeeper.model.actions import ActionRecord
    from watchkeeper.orchestrator import Orchestrator

__all__ = [
    "Footprint",
    "Handler",
    "PluginActions",
    "PluginCollectors",
    "PluginContext",
    "PluginRules",
]

#: A bus hook: called with every matching message; may be a coroutine function.
Handler = Callable[[Message], Awaitable[None] | None]


@dataclass
class Footprint:
    """What one plugin added, so it can be taken back."""

    actions: list[str] = field(default_factory=list)
    collectors: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)
    subscriptions: list[tuple[Subscription, Handler]] = field(default_factory=list)

    def note(self, kind: str, name: str) -> None:
        names: list[str] = getattr(self, kind)
        if name not in names:
            names.append(name)


class PluginActions:
    """Remediation actions, in the remediator's registry (policy, audit, UI, LLM prompt)."""

    def __init__(self, remediator: RemediatorAgent, plugin: str, footprint: Footprint) -> None:
        self._remediator = remediator
        self._plugin = plugin
        self._footprint = footprint

    def register(self, action: Action) -> ActionInfo:
        """Register an object with ``info``, ``validate``, ``execute`` and ``verify``
        (see :mod:`watchkeeper.remediation.actions`); a taken name is an error."""
        if not isinstance(action, Action):
            raise TypeError(
                f"{action!r} is not an action: it needs info, validate, execute and verify"
            )
        if action.info.source == "builtin":
            # The UI and the audit show where an action came from; "builtin" would mislead.
            with contextlib.suppress(AttributeError):
                action.info = action.info.model_copy(update={"source": self._plugin})
        self._remediator.register_action(action)
        self._footprint.note("actions", action.info.name)
        return action.info

    def add(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        risk: Risk = "moderate",
        timeout: float = 30.0,
    ) -> ActionInfo:
        """Register a function as an action named ``name`` (default: the function's name);
        its docstring's first line describes it and its signature declares its parameters."""
        action = action_from_callable(
            name or str(getattr(fn, "__name__", "")),
            fn,
            description=description,
            risk=risk,
            timeout=timeout,
            source=self._plugin,
        )
        return self.register(action)

    def names(self) -> list[str]:
        """Every registered action's name (the built-in ones too)."""
        return self._remediator.registry.names()

    def __contains__(self, name: object) -> bool:
        return name in self._remediator.registry


class PluginCollectors:
    """Metric collectors, in the sensor's registry; values must be declared ``MetricSpec``s."""

    def __init__(self, sensor: SensorAgent, footprint: Footprint) -> None:
        self._sensor = sensor
        self._footprint = footprint

    def register(self, collector: Collector) -> None:
        """Add a collector (``name``, ``metrics``, ``collect() -> {"name": value}``)."""
        if not isinstance(collector, Collector):
            raise TypeError(f"{collector!r} is not a collector: it needs name, metrics, collect")
        if not collector.metrics:
            raise ValueError(f"collector {collector.name!r} declares no metrics")
        self._sensor.registry.register(collector)
        self._footprint.note("collectors", collector.name)

    def names(self) -> tuple[str, ...]:
        return self._sensor.registry.names()


class PluginRules:
    """Analysis rules, in the analyzer's engine: ``rule(sample, settings, level_of, now)``
    yields ``Check`` values, which get the built-in rules' hysteresis, dedup and escalation."""

    def __init__(self, analyzer: AnalyzerAgent, footprint: Footprint) -> None:
        self._analyzer = analyzer
        self._footprint = footprint

    def add(self, name: str, rule: RuleFn) -> None:
        self._analyzer.engine.add_rule(name, rule)
        self._footprint.note("rules", name)

    def errors(self) -> dict[str, str]:
        """The last error of each rule that raised (a broken rule never stops analysis)."""
        return dict(self._analyzer.engine.rule_errors)


class PluginContext(dict[str, Any]):
    """The brief's ``system_context`` dict plus typed accessors (see the module docstring).

    Keys: ``orchestrator``, ``config`` (the settings when the plugin registered),
    ``message_bus`` and ``plugin_name``.
    """

    def __init__(
        self,
        orchestrator: Orchestrator,
        *,
        plugin: str,
        footprint: Footprint,
        serve: Callable[[Subscription, Handler], None],
    ) -> None:
        super().__init__(
            orchestrator=orchestrator,
            config=orchestrator.settings,
            message_bus=orchestrator.bus,
            plugin_name=plugin,
        )
        self._orchestrator = orchestrator
        self._plugin = plugin
        self._footprint = footprint
        self._serve = serve

    # -- what is there -------------------------------------------------------------------
    @property
    def orchestrator(self) -> Orchestrator:
        return self._orchestrator

    @property
    def plugin_name(self) -> str:
        return self._plugin

    @property
    def settings(self) -> Settings:
        """The settings in force now (they may change while the system runs)."""
        return self._orchestrator.settings

    @property
    def bus(self) -> InMemoryBus:
        return self._orchestrator.bus

    @property
    def agent_context(self) -> AgentContext:
        """What a plugin's own agent is built with: ``MyAgent("name", ctx.agent_context)``."""
        return self._orchestrator.ctx

    @property
    def remediator(self) -> RemediatorAgent | None:
        from watchkeeper.agents.remediator import RemediatorAgent

        agent = self._orchestrator.agents.get("remediator")
        return agent if isinstance(agent, RemediatorAgent) else None

    @property
    def sensor(self) -> SensorAgent | None:
        from watchkeeper.agents.sensor import SensorAgent

        agent = self._orchestrator.agents.get("sensor")
        return agent if isinstance(agent, SensorAgent) else None

    @property
    def analyzer(self) -> AnalyzerAgent | None:
        from watchkeeper.agents.analyzer import AnalyzerAgent

        agent = self._orchestrator.agents.get("analyzer")
        return agent if isinstance(agent, AnalyzerAgent) else None

    # -- the doors -----------------------------------------------------------------------
    @property
    def actions(self) -> PluginActions:
        remediator = self.remediator
        if remediator is None:
            raise PluginError(_missing("remediator", "remediation actions"))
        return PluginActions(remediator, self._plugin, self._footprint)

    @property
    def collectors(self) -> PluginCollectors:
        sensor = self.sensor
        if sensor is None:
            raise PluginError(_missing("sensor", "metric collectors"))
        return PluginCollectors(sensor, self._footprint)

    @property
    def rules(self) -> PluginRules:
        analyzer = self.analyzer
        if analyzer is None:
            raise PluginError(_missing("analyzer", "analysis rules"))
        return PluginRules(analyzer, self._footprint)

    def add_agent(self, agent: BaseAgent) -> None:
        """Add an agent; the orchestrator starts and supervises it with the others."""
        self._orchestrator.add_agent(agent)
        self._footprint.note("agents", agent.name)

    def subscribe(self, pattern: str, handler: Handler, *, maxsize: int = 100) -> Subscription:
        """Call ``handler(message)`` for every message on topics matching ``pattern``
        (``alert.*``, ``remediation.#``) while the system runs. A handler that raises
        disables the plugin."""
        sub = self.bus.subscribe(pattern, name=f"plugin:{self._plugin}:{pattern}", maxsize=maxsize)
        self._footprint.subscriptions.append((sub, handler))
        self._serve(sub, handler)
        return sub

    async def publish(
        self, topic: str, payload: BaseModel | Mapping[str, Any] | None = None
    ) -> Message:
        """Broadcast on the bus as ``plugin:<name>``; a new message type is just a new
        topic (prefer ``<plugin>.<event>``) with a pydantic payload."""
        return await self.bus.publish(topic, payload, sender=f"plugin:{self._plugin}")

    async def propose(
        self,
        action: str,
        target: str | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        reason: str = "",
    ) -> ActionRecord:
        """Ask the remediator to run ``action``: it passes the same policy as any proposal
        and is audited with this plugin as its proposer."""
        remediator = self.remediator
        if remediator is None:
            raise PluginError(_missing("remediator", "remediation actions"))
        registered = remediator.registry.get(action)
        request = ActionRequest(
            action=action,
            target=target,
            target_kind=registered.info.target_kind if registered else "none",
            params=dict(params or {}),
            proposer="plugin",
            proposed_by=self._plugin,
            reason=reason or f"proposed by plugin {self._plugin}",
        )
        return await remediator.submit(request)


def _missing(agent: str, what: str) -> str:
    return (
        f"there is no {agent} agent (agents.{agent}.enabled is false?), so {what} cannot be "
        "registered"
    )
