"""``BasePlugin``: write ``register``; the loader does the rest.

A plugin is a class. The loader finds it (in the plugins directory or through an entry
point), validates its own section of ``plugins.plugin_configs``, builds it, calls
``register(system_context)`` before the agents start, awaits ``start()`` once the system
runs and ``stop()`` when it shuts down::

    class DiskQuotaPlugin(BasePlugin[QuotaConfig]):
        config_model = QuotaConfig            # plugin_configs.disk_quota is validated

        def register(self, system_context):
            system_context.collectors.register(QuotaCollector(self.config.paths))

Anything a plugin raises (on import, in ``register``, in ``start``, in a bus handler) is
logged and shown in the status, and the plugin is disabled: what it registered is taken
back, the rest of the system carries on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from watchkeeper.plugins.compat import PluginContext

__all__ = ["BasePlugin", "ConfigT"]

ConfigT = TypeVar("ConfigT")


class BasePlugin(Generic[ConfigT]):
    """The base of every plugin.

    ``config`` holds the plugin's ``plugin_configs[name]`` section: an instance of
    ``config_model`` when the plugin declares one, else the plain dict. ``name`` is the name
    it was loaded under, ``logger`` logs into watchkeeper's own log files.
    """

    #: A pydantic model for this plugin's config section; the section is validated with it
    #: before ``register`` and a mismatch disables the plugin with the model's message.
    config_model: ClassVar[type[BaseModel] | None] = None
    #: Seconds ``start()`` may take before the plugin counts as failed.
    start_timeout: ClassVar[float] = 10.0
    #: Seconds ``stop()`` may take at shutdown before watchkeeper stops waiting for it.
    stop_timeout: ClassVar[float] = 3.0

    name: str = ""
    config: ConfigT

    def __init__(self, config: ConfigT | None = None, *, name: str | None = None) -> None:
        if config is not None:
            self.config = config
        if name is not None:
            self.name = name

    @property
    def logger(self) -> logging.Logger:
        """``watchkeeper.plugin.<name>``: lands in the daemon's log files."""
        return logging.getLogger(f"watchkeeper.plugin.{self.name or type(self).__name__}")

    def register(self, system_context: PluginContext) -> None:
        """Add actions, collectors, rules, agents and bus subscriptions. Runs once, before
        the agents start; raise to refuse (the plugin is then disabled)."""
        raise NotImplementedError(f"{type(self).__name__} must implement register()")

    def get_config(self) -> ConfigT:
        """This plugin's configuration (its ``plugin_configs`` section)."""
        return self.config

    async def start(self) -> None:
        """Called once when the system starts running, before the agents do; keep it short
        (``start_timeout``). Long-running work belongs in an agent or a bus subscription."""

    async def stop(self) -> None:
        """Called once at shutdown (or when the plugin is disabled after it started)."""
