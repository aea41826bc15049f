"""Plugins: new actions, metrics, rules, agents and bus hooks, loaded by name.

A plugin is a :class:`BasePlugin` subclass in the plugins directory (``plugins/`` beside
the config file by default) or behind an entry point in the group ``watchkeeper.plugins``.
Only the names in ``plugins.plugins_to_load`` are loaded, each with its own section of
``plugins.plugin_configs``::

    [plugins]
    plugins_to_load = ["open_files_plugin"]

    [plugins.plugin_configs.open_files_plugin]
    warning_percent = 70

The product brief's style works unchanged (``from plugins.base_plugin import BasePlugin``,
``remediator.clear_event_logs = self.clear_event_logs``); ``docs/plugins.md`` has the whole
contract. Plugins run inside the daemon with its privileges: load only code you trust.
"""

from __future__ import annotations

from watchkeeper.plugins._discovery import ENTRY_POINT_GROUP, PluginNotFound
from watchkeeper.plugins.adapter import CallableAction, action_from_callable, current_plugin
from watchkeeper.plugins.base import BasePlugin, PluginError
from watchkeeper.plugins.context import (
    PluginActions,
    PluginCollectors,
    PluginContext,
    PluginRules,
)
from watchkeeper.plugins.manager import PluginManager
from watchkeeper.plugins.status import PluginState, PluginStatus

__all__ = [
    "ENTRY_POINT_GROUP",
    "BasePlugin",
    "CallableAction",
    "PluginActions",
    "PluginCollectors",
    "PluginContext",
    "PluginError",
    "PluginManager",
    "PluginNotFound",
    "PluginRules",
    "PluginState",
    "PluginStatus",
    "action_from_callable",
    "current_plugin",
]
