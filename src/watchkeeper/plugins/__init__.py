"""Plugins: new actions, metrics, rules, agents and bus hooks, loaded by name.

A plugin is a :class:`BasePlugin` subclass in the plugins directory (``plugins/`` beside
the config file by default) or behind an entry point in the group ``watchkeeper.plugins``.
Only the names in ``plugins.plugins_to_load`` are loaded, each with its own section of
``plugins.plugin_configs``::

    [plugins]
    plugins_to_load = ["open_files_plugin"]

    [plugins.plugin_configs.open_files_plugin]
    warning_percent = 70

Its ``register(system_context)`` gets a :class:`PluginHost` (bus, settings, the registries
of actions, collectors and rules, the service managers, ``add_agent``, ``subscribe``);
everything a plugin needs is importable from here. The product brief's style works
unchanged (``from plugins.base_plugin import BasePlugin``,
``remediator.clear_event_logs = self.clear_event_logs``; see
:mod:`watchkeeper.plugins.compat`); ``docs/plugins.md`` has the whole contract. Plugins run
inside the daemon with its privileges: load only code you trust.
"""

from __future__ import annotations

from watchkeeper.agents.base import AgentContext, BaseAgent
from watchkeeper.analysis.checks import Check
from watchkeeper.analysis.levels import raw_level
from watchkeeper.analysis.rules import LevelOf, RuleFn
from watchkeeper.bus import Message
from watchkeeper.collectors.base import Collector
from watchkeeper.model.actions import ActionInfo, ActionRequest, ActionResult, ParamInfo, Risk
from watchkeeper.model.alerts import Severity
from watchkeeper.model.metrics import MetricSpec, MetricsSample
from watchkeeper.plugins._discovery import ENTRY_POINT_GROUP, PluginNotFound
from watchkeeper.plugins.adapter import CallableAction, action_from_callable, current_plugin
from watchkeeper.plugins.base import BasePlugin
from watchkeeper.plugins.compat import PluginContext
from watchkeeper.plugins.errors import PluginError
from watchkeeper.plugins.host import (
    Handler,
    PluginActions,
    PluginCollectors,
    PluginHost,
    PluginRules,
    Registries,
    RegistryKind,
)
from watchkeeper.plugins.manager import PluginManager
from watchkeeper.plugins.status import PluginState, PluginStatus
from watchkeeper.remediation.actions import Action, ActionContext, NeedsPrivilege

__all__ = [
    "ENTRY_POINT_GROUP",
    "Action",
    "ActionContext",
    "ActionInfo",
    "ActionRequest",
    "ActionResult",
    "AgentContext",
    "BaseAgent",
    "BasePlugin",
    "CallableAction",
    "Check",
    "Collector",
    "Handler",
    "LevelOf",
    "Message",
    "MetricSpec",
    "MetricsSample",
    "NeedsPrivilege",
    "ParamInfo",
    "PluginActions",
    "PluginCollectors",
    "PluginContext",
    "PluginError",
    "PluginHost",
    "PluginManager",
    "PluginNotFound",
    "PluginRules",
    "PluginState",
    "PluginStatus",
    "Registries",
    "RegistryKind",
    "Risk",
    "RuleFn",
    "Severity",
    "action_from_callable",
    "current_plugin",
    "raw_level",
]
