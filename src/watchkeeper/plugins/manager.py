"""``PluginManager``: loads the plugins the configuration names and keeps each one apart.

The orchestrator drives it in four steps::

    manager = PluginManager(orchestrator)   # any HostWiring: bus, settings, registries
    manager.load()              # import, validate config, register: before agents start
    await manager.start()       # each plugin's start(), before the agents run
    await manager.serve(stop)   # deliver bus messages to plugin subscriptions until stop
    await manager.stop()        # each started plugin's stop(), with a timeout

A plugin that fails at any step (import, config, register, start, a bus handler raising)
is logged, reported by :meth:`PluginManager.status` (``orchestrator.extras["plugins"]``)
and disabled: its actions, collectors, rules and subscriptions are taken back and its
agents removed (or paused when already running). The other plugins and the system carry
on. Setting ``enabled = false`` in a plugin's ``plugin_configs`` section skips it.

Each plugin registers through its own host (:class:`~watchkeeper.plugins.compat.PluginContext`),
which notes everything it adds against it: that record is what is taken back.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from watchkeeper.bus import Message, Subscription
from watchkeeper.model.events import Command
from watchkeeper.model.text import LOG_LINE, clean
from watchkeeper.model.topics import command_for
from watchkeeper.plugins._discovery import find_plugin
from watchkeeper.plugins.adapter import acting_as
from watchkeeper.plugins.base import BasePlugin
from watchkeeper.plugins.compat import PluginContext
from watchkeeper.plugins.errors import PluginError
from watchkeeper.plugins.host import Footprint, Handler, HostWiring
from watchkeeper.plugins.status import Phase, PluginState, PluginStatus

__all__ = ["PluginManager", "resolve_directory"]

log = logging.getLogger("watchkeeper.plugins")


@dataclass
class _Record:
    name: str
    state: PluginState = PluginState.LOADED
    source: str | None = None
    plugin: BasePlugin[Any] | None = None
    phase: Phase | None = None
    reason: str | None = None
    started: bool = False
    stop_error: str | None = None
    footprint: Footprint = field(default_factory=Footprint)


def resolve_directory(directory: Path, config_file: Path | None) -> Path:
    """The plugins directory: as configured when absolute, else beside the config file,
    else in the working directory."""
    directory = directory.expanduser()
    if directory.is_absolute():
        return directory
    base = config_file.resolve().parent if config_file is not None else Path.cwd()
    return base / directory


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return clean(f"{type(exc).__name__}: {text}" if text else type(exc).__name__, LOG_LINE, 500)


def _config_problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or '(section)'}: {error['msg']}"
        for error in exc.errors()
    )


async def _call(method: Any, timeout: float) -> None:
    # start()/stop() are meant to be async; a plain method from an older plugin is called too.
    result = method()
    if inspect.isawaitable(result):
        await asyncio.wait_for(result, timeout)


class PluginManager:
    """Loads, starts, isolates and stops the configured plugins (see the module docstring)."""

    def __init__(self, orchestrator: HostWiring) -> None:
        self._orch = orchestrator
        settings = orchestrator.settings.plugins
        self.directory = resolve_directory(settings.directory, orchestrator.store.path)
        self._records: dict[str, _Record] = {}
        self._group: asyncio.TaskGroup | None = None
        self._serving: set[asyncio.Task[None]] = set()

    # -- reading -------------------------------------------------------------------------
    @property
    def plugins(self) -> dict[str, BasePlugin[Any]]:
        """The plugins that are loaded and not disabled, by name."""
        return {
            name: record.plugin
            for name, record in self._records.items()
            if record.state is PluginState.LOADED and record.plugin is not None
        }

    def status(self) -> dict[str, Any]:
        """Per plugin: state (loaded / failed / disabled), why, and what it registered."""
        errors = dict(self._orch.registries.rules.errors)
        out: dict[str, Any] = {}
        for name, record in self._records.items():
            footprint = record.footprint
            out[name] = PluginStatus(
                name=name,
                state=record.state,
                source=record.source,
                phase=record.phase,
                reason=record.reason,
                started=record.started,
                actions=list(footprint.actions),
                collectors=list(footprint.collectors),
                rules=list(footprint.rules),
                agents=list(footprint.agents),
                subscriptions=[sub.pattern for sub, _ in footprint.subscriptions],
                rule_errors={k: v for k, v in errors.items() if k in footprint.rules},
                stop_error=record.stop_error,
            ).model_dump(mode="json")
        return out

    # -- loading -------------------------------------------------------------------------
    def load(self) -> None:
        """Import, configure and register every plugin in ``plugins_to_load``, in order."""
        settings = self._orch.settings.plugins
        for name in settings.plugins_to_load:
            if name in self._records:
                log.warning("plugin %s is listed twice in plugins_to_load; loading it once", name)
                continue
            record = self._records[name] = _Record(name)
            section = dict(settings.plugin_configs.get(name, {}))
            enabled = section.pop("enabled", True)
            if enabled is False:
                record.state = PluginState.DISABLED
                log.info("plugin %s is disabled by its configuration", name)
                continue
            self._load_one(record, section, enabled)

    def _load_one(self, record: _Record, section: dict[str, Any], enabled: Any) -> None:
        name = record.name
        try:
            found = find_plugin(name, self.directory)
        except (Exception, SystemExit) as exc:  # a plugin's import may do anything
            self._fail_early(record, "import", exc)
            return
        record.source = found.source
        cls = found.plugin_class
        try:
            if not isinstance(enabled, bool):
                raise ValueError(f"enabled must be true or false, not {enabled!r}")
            config: Any = section
            if cls.config_model is not None:
                config = cls.config_model.model_validate(section)
        except ValidationError as exc:
            self._fail_early(record, "config", ValueError(_config_problems(exc)))
            return
        except ValueError as exc:
            self._fail_early(record, "config", exc)
            return
        try:
            with acting_as(name):
                plugin = self._instantiate(cls, config, name)
                record.plugin = plugin
                context = PluginContext(
                    self._orch,
                    plugin=name,
                    footprint=record.footprint,
                    serve=lambda sub, handler: self._serve_later(record, sub, handler),
                )
                plugin.register(context)
        except (Exception, SystemExit) as exc:
            self._undo(record)
            self._fail_early(record, "register", exc)
            return
        log.info("plugin %s loaded from %s", name, found.source)

    @staticmethod
    def _instantiate(cls: type[BasePlugin[Any]], config: Any, name: str) -> BasePlugin[Any]:
        # The brief's plugins may define __init__ with or without a config argument.
        try:
            inspect.signature(cls).bind(config)
            takes_config = True
        except (TypeError, ValueError):
            takes_config = False
        plugin = cls(config) if takes_config else cls()
        if not takes_config or getattr(plugin, "config", None) is None:
            plugin.config = config
        plugin.name = name
        return plugin

    def _fail_early(self, record: _Record, phase: Phase, exc: BaseException) -> None:
        record.state = PluginState.FAILED
        record.phase = phase
        record.reason = _reason(exc)
        log.error(
            "plugin %s failed at %s and is disabled: %s",
            record.name,
            phase,
            record.reason,
            exc_info=None if isinstance(exc, PluginError) or phase == "config" else exc,
        )

    # -- what a plugin added -------------------------------------------------------------
    def _undo(self, record: _Record) -> None:
        """Take back everything the plugin registered through its host; never raises."""
        footprint = record.footprint
        registries = self._orch.registries
        for name in footprint.actions:
            registries.actions.unregister(name)
        for name in footprint.collectors:
            with contextlib.suppress(KeyError):
                registries.collectors.unregister(name)
        for name in footprint.rules:
            registries.rules.remove(name)
        for undo in reversed(footprint.undo):
            with contextlib.suppress(Exception):
                undo()
        for sub, _ in footprint.subscriptions:
            sub.close()
        if self._orch.state != "running":
            for name in footprint.agents:
                self._orch.agents.pop(name, None)
            footprint.agents.clear()
        # What is listed from now on is what the plugin still has in the system.
        for names in (footprint.actions, footprint.collectors, footprint.rules):
            names.clear()
        footprint.undo.clear()
        footprint.subscriptions.clear()

    async def _retire_agents(self, record: _Record) -> None:
        # A supervised agent cannot be taken out of the supervisor; pausing it stops its
        # checks, and its state shows "paused" next to the failed plugin.
        for name in record.footprint.agents:
            agent = self._orch.agents.get(name)
            if agent is None:
                continue
            pause = Message(
                topic=command_for(name).name, sender="plugins", value=Command(command="pause")
            )
            with contextlib.suppress(Exception):
                await agent.execute_command(pause)

    # -- running -------------------------------------------------------------------------
    async def start(self) -> None:
        """Start every loaded plugin, one after another, each within its ``start_timeout``."""
        for record in list(self._records.values()):
            plugin = record.plugin
            if record.state is not PluginState.LOADED or plugin is None:
                continue
            record.started = True  # attempted: stop() is owed from now on
            try:
                with acting_as(record.name):
                    await _call(plugin.start, type(plugin).start_timeout)
            except TimeoutError:
                timeout = type(plugin).start_timeout
                await self.disable(record.name, "start", f"start() took longer than {timeout:g}s")
            except (Exception, SystemExit) as exc:
                await self.disable(record.name, "start", exc)

    async def serve(self, stop: asyncio.Event) -> None:
        """Deliver bus messages to the plugins' subscriptions until ``stop`` is set."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            for record in self._records.values():
                if record.state is PluginState.LOADED:
                    for sub, handler in record.footprint.subscriptions:
                        self._spawn(record, sub, handler)
            await stop.wait()
            self._group = None
            for task in list(self._serving):
                task.cancel()

    def _serve_later(self, record: _Record, sub: Subscription, handler: Handler) -> None:
        if self._group is not None:  # subscribed while the system runs
            self._spawn(record, sub, handler)

    def _spawn(self, record: _Record, sub: Subscription, handler: Handler) -> None:
        assert self._group is not None
        task = self._group.create_task(
            self._deliver(record, sub, handler), name=f"plugin:{record.name}:{sub.pattern}"
        )
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def _deliver(self, record: _Record, sub: Subscription, handler: Handler) -> None:
        async for message in sub:
            try:
                with acting_as(record.name):
                    result = handler(message)
                    if inspect.isawaitable(result):
                        await result
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                why = f"handler for {sub.pattern!r} raised {_reason(exc)}"
                await self.disable(record.name, "running", why, exc)
                return

    async def disable(
        self,
        name: str,
        phase: Phase,
        reason: str | BaseException,
        exc: BaseException | None = None,
    ) -> None:
        """Take plugin ``name`` out: unregister what it added, stop it, report why."""
        record = self._records.get(name)
        if record is None or record.state is not PluginState.LOADED:
            return
        record.state = PluginState.FAILED
        record.phase = phase
        record.reason = reason if isinstance(reason, str) else _reason(reason)
        error = exc or (reason if isinstance(reason, BaseException) else None)
        log.error(
            "plugin %s failed at %s and is disabled: %s", name, phase, record.reason, exc_info=error
        )
        self._undo(record)
        await self._retire_agents(record)
        await self._stop_one(record)

    async def stop(self) -> None:
        """Stop every plugin whose start was attempted, all at once, each within its
        ``stop_timeout``; then close their subscriptions."""
        records = [r for r in self._records.values() if r.state is PluginState.LOADED]
        await asyncio.gather(*(self._stop_one(r) for r in records))
        for record in records:
            for sub, _ in record.footprint.subscriptions:
                sub.close()

    async def _stop_one(self, record: _Record) -> None:
        plugin = record.plugin
        if plugin is None or not record.started:
            return
        record.started = False
        timeout = type(plugin).stop_timeout
        try:
            with acting_as(record.name):
                await _call(plugin.stop, timeout)
        except TimeoutError:
            record.stop_error = f"stop() took longer than {timeout:g}s"
        except (Exception, SystemExit) as exc:
            record.stop_error = _reason(exc)
        if record.stop_error:
            log.warning("plugin %s did not stop cleanly: %s", record.name, record.stop_error)
