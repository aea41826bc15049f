"""The product brief's plugin style, kept working in this one module.

Plugins written to the brief import their base class from a ``plugins`` package and reach
the system through a dict::

    from plugins.base_plugin import BasePlugin

    class SampleRemediationPlugin(BasePlugin):
        def register(self, system_context):
            remediator = system_context['orchestrator'].agents.get('remediator')
            remediator.clear_event_logs = self.clear_event_logs

Three things make that work, all here:

- :func:`install_brief_alias` provides ``plugins.base_plugin`` (watchkeeper's own
  ``BasePlugin``) and, when no ``plugins`` package exists, a ``plugins`` package whose path
  is the plugins directory, so such plugins import their neighbours too (and modules
  whose types moved stay importable by their old names);
- :class:`PluginContext` is the :class:`~watchkeeper.plugins.host.PluginHost` that is also
  the brief's dict (``orchestrator``, ``config``, ``message_bus``, ``plugin_name``);
- ``system_context['orchestrator']`` is a stand-in for the orchestrator: everything reads
  through to it, but ``add_agent`` goes through the host, and its ``agents`` hand out the
  remediator behind a stand-in that turns ``remediator.name = function`` into a registered
  action (gated by the policy, recorded in the audit) attributed to the plugin, and the
  sensor behind one whose ``registry.register(collector)`` goes through the host too.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import types
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watchkeeper.bus import Subscription
from watchkeeper.plugins.errors import PluginError
from watchkeeper.plugins.host import Footprint, Handler, HostWiring, PluginHost

if TYPE_CHECKING:
    from watchkeeper.agents.analyzer import AnalyzerAgent
    from watchkeeper.agents.base import BaseAgent
    from watchkeeper.agents.remediator import RemediatorAgent
    from watchkeeper.agents.sensor import SensorAgent
    from watchkeeper.collectors.base import Collector
    from watchkeeper.remediation.actions import Action

__all__ = ["PluginContext", "install_brief_alias"]

# Modules the brief-style plugins import by their old place. Their types now live in the
# shared-types package; a plugin written against the old place keeps loading.
_MOVED_MODULES = {
    "watchkeeper.analysis.alerts": "watchkeeper.model.alerts",
    "watchkeeper.metrics": "watchkeeper.model.metrics",
}


def install_brief_alias(directory: Path, base_class: type) -> None:
    """Make ``from plugins.base_plugin import BasePlugin`` work for any plugins directory.

    That module is provided in memory (``base_class``: watchkeeper's own ``BasePlugin``,
    passed in by the loader) unless one is already imported; a ``plugins`` package is
    provided too when none can be found, with ``directory`` as its path so the brief's
    plugins can import their neighbours.
    """
    if "plugins.base_plugin" not in sys.modules:
        alias = types.ModuleType(
            "plugins.base_plugin", "watchkeeper's BasePlugin by the brief's name"
        )
        alias.BasePlugin = base_class  # type: ignore[attr-defined]
        alias.PluginContext = PluginContext  # type: ignore[attr-defined]
        alias.PluginError = PluginError  # type: ignore[attr-defined]
        alias.__all__ = ["BasePlugin", "PluginContext", "PluginError"]  # type: ignore[attr-defined]
        sys.modules["plugins.base_plugin"] = alias
    package = sys.modules.get("plugins")
    if package is None and importlib.util.find_spec("plugins") is None:
        package = types.ModuleType("plugins", "the plugins directory (provided by watchkeeper)")
        package.__path__ = []
        package.__watchkeeper_virtual__ = True  # type: ignore[attr-defined]
        sys.modules["plugins"] = package
    if package is not None and getattr(package, "__watchkeeper_virtual__", False):
        package.__path__ = [str(directory)]
        package.base_plugin = sys.modules["plugins.base_plugin"]  # type: ignore[attr-defined]
    for old, new in _MOVED_MODULES.items():
        sys.modules.setdefault(old, importlib.import_module(new))


def _is_action_assignment(agent: object, name: str, value: object, registered: bool) -> bool:
    """Whether ``agent.name = value`` means "add an action": a new public name given a
    function. A name already registered is also meant so, and is then refused as taken."""
    return (
        not name.startswith("_")
        and (inspect.isfunction(value) or inspect.ismethod(value))
        and not hasattr(type(agent), name)
        and (name not in vars(agent) or registered)
    )


class _BriefRemediator:
    """The remediator as a brief-style plugin sees it: reads and plain assignments go to
    the agent; assigning a function to a new public name registers it as an action."""

    def __init__(self, agent: RemediatorAgent, host: PluginHost, footprint: Footprint) -> None:
        object.__setattr__(self, "_agent", agent)
        object.__setattr__(self, "_host", host)
        object.__setattr__(self, "_footprint", footprint)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._agent, name)

    def __setattr__(self, name: str, value: Any) -> None:
        agent = self._agent
        actions = self._host.actions
        if _is_action_assignment(agent, name, value, name in actions):
            actions.add(value, name=name)
            # Still there as a plain attribute, as the brief's code expects.
            object.__setattr__(agent, name, value)
            self._footprint.undo.append(lambda: _forget(agent, name, value))
        else:
            setattr(agent, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._agent, name)

    def register_action(self, action: Action) -> None:
        """The agent's own door, through the host so the action is the plugin's."""
        self._host.actions.register(action)

    def __repr__(self) -> str:
        return f"<brief-style view of {self._agent!r}>"


def _forget(agent: object, name: str, value: object) -> None:
    if vars(agent).get(name) is value:
        delattr(agent, name)


class _BriefSensor:
    """The sensor as a brief-style plugin sees it: ``sensor.registry.register(collector)``
    goes through the host, so the collector is the plugin's."""

    def __init__(self, agent: SensorAgent, host: PluginHost) -> None:
        self._agent = agent
        self.registry = _BriefCollectors(agent, host)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._agent, name)


class _BriefCollectors:
    def __init__(self, agent: SensorAgent, host: PluginHost) -> None:
        self._registry = agent.registry
        self._host = host

    def register(self, collector: Collector) -> None:
        self._host.collectors.register(collector)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._registry, name)

    def __contains__(self, name: object) -> bool:
        return name in self._registry


class _BriefAgents(Mapping[str, Any]):
    """``orchestrator.agents`` for a brief-style plugin: the remediator and the sensor
    behind their stand-ins."""

    def __init__(self, wiring: HostWiring, host: PluginHost, footprint: Footprint) -> None:
        self._wiring = wiring
        self._host = host
        self._footprint = footprint

    def __getitem__(self, name: str) -> Any:
        agent = self._wiring.agents[name]
        from watchkeeper.agents.remediator import RemediatorAgent
        from watchkeeper.agents.sensor import SensorAgent

        if isinstance(agent, RemediatorAgent):
            return _BriefRemediator(agent, self._host, self._footprint)
        if isinstance(agent, SensorAgent):
            return _BriefSensor(agent, self._host)
        return agent

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._wiring.agents))

    def __len__(self) -> int:
        return len(self._wiring.agents)


class _BriefOrchestrator:
    """``system_context['orchestrator']``: the orchestrator, read through; what a plugin
    adds with ``add_agent`` goes through its host."""

    def __init__(self, wiring: HostWiring, host: PluginHost, footprint: Footprint) -> None:
        self._wiring = wiring
        self._host = host
        self.agents = _BriefAgents(wiring, host, footprint)

    def add_agent(self, agent: BaseAgent) -> None:
        self._host.add_agent(agent)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wiring, name)

    def __repr__(self) -> str:
        return f"<brief-style view of {self._wiring!r}>"


class PluginContext(dict[str, Any], PluginHost):
    """What a plugin's ``register`` receives: the :class:`PluginHost` that is also the
    brief's ``system_context`` dict. Keys: ``orchestrator``, ``config`` (the settings when
    the plugin registered), ``message_bus`` and ``plugin_name``."""

    def __init__(
        self,
        wiring: HostWiring,
        *,
        plugin: str,
        footprint: Footprint,
        serve: Callable[[Subscription, Handler], None],
    ) -> None:
        PluginHost.__init__(self, wiring, plugin=plugin, footprint=footprint, serve=serve)
        dict.__init__(
            self,
            orchestrator=_BriefOrchestrator(wiring, self, footprint),
            config=wiring.settings,
            message_bus=wiring.bus,
            plugin_name=plugin,
        )

    # -- the built-in agents, for plugins that look before they register ----------------
    @property
    def remediator(self) -> RemediatorAgent | None:
        from watchkeeper.agents.remediator import RemediatorAgent

        agent = self._wiring.agents.get("remediator")
        return agent if isinstance(agent, RemediatorAgent) else None

    @property
    def sensor(self) -> SensorAgent | None:
        from watchkeeper.agents.sensor import SensorAgent

        agent = self._wiring.agents.get("sensor")
        return agent if isinstance(agent, SensorAgent) else None

    @property
    def analyzer(self) -> AnalyzerAgent | None:
        from watchkeeper.agents.analyzer import AnalyzerAgent

        agent = self._wiring.agents.get("analyzer")
        return agent if isinstance(agent, AnalyzerAgent) else None
