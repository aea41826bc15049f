"""Typed, frozen settings with an explicit source order.

Submodules by concern: :mod:`.sections` (the plain sections and the floors),
:mod:`.notifications` (channels and routing), :mod:`.fleet` (``[bus]`` and ``[fleet]``),
:mod:`.services` (``[[services]]`` specs), :mod:`.settings` (the whole model and its
sources) and :mod:`.loading` (files, layers, errors). This package imports nothing of
watchkeeper but :mod:`watchkeeper.model`.

Sources, later wins::

    built-in defaults < watchkeeper.toml < WATCHKEEPER_* environment < command-line flags

``OLLAMA_HOST`` sets the Ollama URL the way Ollama's own tools read it, below
``WATCHKEEPER_OLLAMA__URL`` and flags. Load once with :func:`load_settings`; a running
system changes settings only through :class:`ConfigStore.update`, which validates the
whole result before anything takes effect::

    settings = load_settings(config_file="watchkeeper.toml", flags={"web": {"port": 8080}})

Every problem becomes a :class:`ConfigError` whose message names the key and where it
came from, so the command line can print one line and exit with code 2. That includes
input no model should see: nesting deeper than ``datacheck.MAX_DEPTH`` levels and numbers
that are not finite (``inf``, ``nan``, ``1e999``), from any source. Every loop interval
and timeout has a floor (``MIN_INTERVAL``, ``MIN_TIMEOUT``, ``MIN_BACKOFF``) that the
error names. Secrets (``web.token``, the channels' credentials) are secret types from
:mod:`watchkeeper.model.secret`, masked wherever settings are shown.
"""

from __future__ import annotations

from watchkeeper.config.fleet import BusSettings, FleetSettings
from watchkeeper.config.loading import (
    DEFAULT_CONFIG_NAME,
    ConfigError,
    build_settings,
    deep_merge,
    dotted_to_nested,
    find_config_file,
    load_settings,
    read_toml,
)
from watchkeeper.config.sections import (
    MIN_BACKOFF,
    MIN_INTERVAL,
    MIN_TIMEOUT,
    AgentSettings,
    AgentsSettings,
    AnalyzerSettings,
    CleanupDir,
    ExpectedPattern,
    OllamaSettings,
    PluginSettings,
    RemediationSettings,
    ScriptSpec,
    StorageSettings,
    Thresholds,
    WebSettings,
)
from watchkeeper.config.settings import ENV_PREFIX, Settings

__all__ = [
    "DEFAULT_CONFIG_NAME",
    "ENV_PREFIX",
    "MIN_BACKOFF",
    "MIN_INTERVAL",
    "MIN_TIMEOUT",
    "AgentSettings",
    "AgentsSettings",
    "AnalyzerSettings",
    "BusSettings",
    "CleanupDir",
    "ConfigError",
    "ExpectedPattern",
    "FleetSettings",
    "OllamaSettings",
    "PluginSettings",
    "RemediationSettings",
    "ScriptSpec",
    "Settings",
    "StorageSettings",
    "Thresholds",
    "WebSettings",
    "build_settings",
    "deep_merge",
    "dotted_to_nested",
    "find_config_file",
    "load_settings",
    "read_toml",
]
