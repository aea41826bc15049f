"""``PluginHost``: everything a plugin may reach, and nothing more.

The orchestrator builds the registries (:class:`Registries`) and gives them to the agents
that use them and, through one host per plugin, to the plugins. A plugin registers through
the host's doors, so everything it adds is remembered against it and can be taken back
when it fails::

    def register(self, system_context):
        system_context.actions.register(MyAction())              # remediation action
        system_context.actions.add(self.flush_dns, risk="safe")  # a function as an action
        system_context.collectors.register(MyCollector())        # metrics (declared MetricSpec)
        system_context.rules.add("my_rule", my_rule)              # analysis rule -> Check values
        system_context.add_agent(MyAgent("my_agent", system_context.agent_context))
        system_context.subscribe("alert.firing", self.on_alert)  # bus hook

A door whose registry no agent uses (the remediator switched off, say) raises
``PluginError`` with the reason. The product brief's dict style
(``system_context['orchestrator']``) is :mod:`watchkeeper.plugins.compat`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel

from watchkeeper.bus import Message, Subscription
from watchkeeper.collectors.base import Collector
from watchkeeper.model.actions import ActionInfo, ActionRequest, Risk
from watchkeeper.model.topics import adopt
from watchkeeper.plugins.adapter import action_from_callable
from watchkeeper.plugins.errors import PluginError
from watchkeeper.remediation.actions import Action

if TYPE_CHECKING:
    from watchkeeper.agents.base import AgentContext, BaseAgent
    from watchkeeper.analysis.rules import RuleFn, RuleRegistry
    from watchkeeper.bus import InMemoryBus
    from watchkeeper.collectors.base import CollectorRegistry
    from watchkeeper.config import Settings
    from watchkeeper.live_config import ConfigStore
    from watchkeeper.model.actions import ActionRecord
    from watchkeeper.remediation.actions import ActionRegistry
    from watchkeeper.services.base import ServiceManager

__all__ = [
    "Footprint",
    "Handler",
    "HostWiring",
    "PluginActions",
    "PluginCollectors",
    "PluginHost",
    "PluginRules",
    "Registries",
    "RegistryKind",
]

#: A bus hook: called with every matching message; may be a coroutine function.
Handler = Callable[[Message], Awaitable[None] | None]


RegistryKind = Literal["actions", "collectors", "rules"]


@dataclass(frozen=True)
class Registries:
    """The registries the orchestrator owns and injects into the agents, the web and the
    plugin hosts: ``RemediatorAgent(..., actions=registries.actions)``."""

    actions: ActionRegistry
    collectors: CollectorRegistry
    rules: RuleRegistry
    #: The service managers by name (filled when the system starts).
    services: dict[str, ServiceManager]


class HostWiring(Protocol):
    """What the plugin layer needs of the wiring; the orchestrator is one."""

    @property
    def bus(self) -> InMemoryBus: ...

    @property
    def store(self) -> ConfigStore: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def ctx(self) -> AgentContext: ...

    @property
    def state(self) -> str: ...

    @property
    def agents(self) -> dict[str, BaseAgent]: ...

    @property
    def registries(self) -> Registries: ...

    def unused_registries(self) -> frozenset[RegistryKind]:
        """Registries whose agent is switched off: registering there would do nothing."""
        ...

    def add_agent(self, agent: BaseAgent) -> None: ...

    async def submit_action(self, request: ActionRequest) -> ActionRecord: ...


@dataclass
class Footprint:
    """What one plugin added, so it can be taken back."""

    actions: list[str] = field(default_factory=list)
    collectors: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)
    subscriptions: list[tuple[Subscription, Handler]] = field(default_factory=list)
    #: Further things to undo (the brief's style leaves attributes on the remediator).
    undo: list[Callable[[], None]] = field(default_factory=list)

    def note(self, kind: str, name: str) -> None:
        names: list[str] = getattr(self, kind)
        if name not in names:
            names.append(name)


# Which built-in agent uses each registry, and what it holds, for the refusal's message.
_USERS: dict[RegistryKind, tuple[str, str]] = {
    "actions": ("remediator", "remediation actions"),
    "collectors": ("sensor", "metric collectors"),
    "rules": ("analyzer", "analysis rules"),
}


class PluginActions:
    """Remediation actions, in the action registry (policy, audit, UI, LLM prompt)."""

    def __init__(self, registry: ActionRegistry, plugin: str, footprint: Footprint) -> None:
        self._registry = registry
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
        self._registry.register(action)
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
        return self._registry.names()

    def __contains__(self, name: object) -> bool:
        return name in self._registry


class PluginCollectors:
    """Metric collectors, in the collector registry; values must be declared ``MetricSpec``s."""

    def __init__(self, registry: CollectorRegistry, footprint: Footprint) -> None:
        self._registry = registry
        self._footprint = footprint

    def register(self, collector: Collector) -> None:
        """Add a collector (``name``, ``metrics``, ``collect() -> {"name": value}``)."""
        if not isinstance(collector, Collector):
            raise TypeError(f"{collector!r} is not a collector: it needs name, metrics, collect")
        if not collector.metrics:
            raise ValueError(f"collector {collector.name!r} declares no metrics")
        self._registry.register(collector)
        self._footprint.note("collectors", collector.name)

    def names(self) -> tuple[str, ...]:
        return self._registry.names()


class PluginRules:
    """Analysis rules, in the rule registry: ``rule(sample, settings, level_of, now)``
    yields ``Check`` values, which get the built-in rules' hysteresis, dedup and escalation."""

    def __init__(self, registry: RuleRegistry, footprint: Footprint) -> None:
        self._registry = registry
        self._footprint = footprint

    def add(self, name: str, rule: RuleFn) -> None:
        self._registry.add(name, rule)
        self._footprint.note("rules", name)

    def errors(self) -> dict[str, str]:
        """The last error of each rule that raised (a broken rule never stops analysis)."""
        return dict(self._registry.errors)


class PluginHost:
    """One plugin's view of the system: bus, settings, registries, agents (see the module
    docstring). Built by the plugin manager, one per plugin::

        host = PluginHost(orchestrator, plugin="dns", footprint=Footprint(), serve=serve)
    """

    def __init__(
        self,
        wiring: HostWiring,
        *,
        plugin: str,
        footprint: Footprint,
        serve: Callable[[Subscription, Handler], None],
    ) -> None:
        self._wiring = wiring
        self._plugin = plugin
        self._footprint = footprint
        self._serve = serve

    # -- what is there -------------------------------------------------------------------
    @property
    def plugin_name(self) -> str:
        return self._plugin

    @property
    def settings(self) -> Settings:
        """The settings in force now (they may change while the system runs)."""
        return self._wiring.settings

    @property
    def bus(self) -> InMemoryBus:
        return self._wiring.bus

    @property
    def agent_context(self) -> AgentContext:
        """What a plugin's own agent is built with: ``MyAgent("name", ctx.agent_context)``."""
        return self._wiring.ctx

    @property
    def services(self) -> Mapping[str, ServiceManager]:
        """The service managers by name, read-only (empty until the system starts)."""
        return MappingProxyType(self._wiring.registries.services)

    # -- the doors -----------------------------------------------------------------------
    def _open(self, kind: RegistryKind) -> Registries:
        if kind in self._wiring.unused_registries():
            agent, what = _USERS[kind]
            raise PluginError(
                f"there is no {agent} agent (agents.{agent}.enabled is false?), so {what} "
                "cannot be registered"
            )
        return self._wiring.registries

    @property
    def actions(self) -> PluginActions:
        return PluginActions(self._open("actions").actions, self._plugin, self._footprint)

    @property
    def collectors(self) -> PluginCollectors:
        return PluginCollectors(self._open("collectors").collectors, self._footprint)

    @property
    def rules(self) -> PluginRules:
        return PluginRules(self._open("rules").rules, self._footprint)

    def add_agent(self, agent: BaseAgent) -> None:
        """Add an agent; the orchestrator starts and supervises it with the others."""
        self._wiring.add_agent(agent)
        self._footprint.note("agents", agent.name)

    def subscribe(self, pattern: str, handler: Handler, *, maxsize: int = 100) -> Subscription:
        """Call ``handler(message)`` for every message on topics matching ``pattern``
        (``alert.*``, ``remediation.#``) while the system runs. A handler that raises
        disables the plugin."""
        sub = self.bus.subscribe(pattern, name=f"plugin:{self._plugin}:{pattern}", maxsize=maxsize)
        self._footprint.subscriptions.append((sub, handler))
        self._serve(sub, handler)
        return sub

    async def publish(self, topic: str, payload: BaseModel) -> Message:
        """Broadcast on the bus as ``plugin:<name>``; a new message type is just a new
        topic (prefer ``<plugin>.<event>``) with a pydantic payload."""
        known = adopt(self.bus.topics, topic, payload)
        return await self.bus.publish(known, payload, sender=f"plugin:{self._plugin}")

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
        registered = self._open("actions").actions.get(action)
        request = ActionRequest(
            action=action,
            target=target,
            target_kind=registered.info.target_kind if registered else "none",
            params=dict(params or {}),
            proposer="plugin",
            proposed_by=self._plugin,
            reason=reason or f"proposed by plugin {self._plugin}",
        )
        return await self._wiring.submit_action(request)
