"""Changing settings while the system runs: one validated door for the API and the CLI.

::

    change = await store.update({"thresholds.cpu_warning": 80}, actor="api", persist=True)

The whole resulting configuration is validated before anything takes effect; the change
is published on ``config.changed`` (agents read settings afresh every check, so it applies
without a restart) and written back to the config file only when ``persist`` is true.
Keys that only take effect at start-up (ports, paths, services, plugins, the supervisor's
timings) are refused with a message that says so, unless the change leaves them as they
are, so a whole configuration read from ``GET /api/config`` can be sent back.

Secrets are masked in what the change publishes (``config.changed``) and answers; a
change that sends the mask where a secret was keeps the stored secret
(:func:`watchkeeper.model.secret.restore_masked`). Only the file written with ``persist``
holds the real values.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from watchkeeper.bus import Bus
from watchkeeper.config import (
    ConfigError,
    Settings,
    deep_merge,
    dotted_to_nested,
    read_toml,
)
from watchkeeper.model.datacheck import data_problem
from watchkeeper.model.events import ConfigChange
from watchkeeper.model.secret import restore_masked, reveal
from watchkeeper.model.topics import CONFIG_CHANGED

__all__ = ["LIVE_SECTIONS", "ConfigStore"]

log = logging.getLogger("watchkeeper.config")

#: Top-level keys that may change on a running system.
LIVE_SECTIONS = frozenset(
    {
        "thresholds",
        "agents",
        "analyzer",
        "notifications",
        "remediation",
        "ollama",
        "personality",
        "log_level",
        "status_interval",
        "top_processes",
    }
)
#: Keys inside live sections that still need a restart: read once, at start-up.
_RESTART_ONLY = frozenset(
    {
        "ollama.url",
        "ollama.cooldown",
        "ollama.hourly_budget",
        "agents.hang_intervals",
        "agents.min_hang_timeout",
        "agents.restart_backoff_initial",
        "agents.restart_backoff_max",
    }
)


def _needs_restart(key: str) -> bool:
    parts = key.split(".")
    if parts[0] not in LIVE_SECTIONS or key in _RESTART_ONLY:
        return True
    # Which agents exist is decided when the system starts.
    return parts[0] == "agents" and len(parts) == 3 and parts[2] == "enabled"


def _flatten(nested: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _lookup(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _without_none(value: Any) -> Any:
    """TOML has no null: an unset optional key is written by leaving it out."""
    if isinstance(value, Mapping):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(item) for item in value if item is not None]
    return value


def write_toml_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as TOML to ``path`` so a reader sees the old file or the new one."""
    import tomli_w

    text = tomli_w.dumps(_without_none(dict(data)))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ConfigStore:
    """Holds the current ``Settings``; ``current`` is what every agent reads."""

    def __init__(self, settings: Settings, path: Path | None, bus: Bus | None = None) -> None:
        self._settings = settings
        self.path = path
        self._bus = bus
        self._lock = asyncio.Lock()

    @property
    def current(self) -> Settings:
        return self._settings

    def __call__(self) -> Settings:
        return self._settings

    def validate_change(self, changes: Mapping[str, Any]) -> tuple[Settings, dict[str, Any]]:
        """The settings ``changes`` would produce, and the changes as dotted keys."""
        if not changes:
            raise ConfigError("no changes given")
        problem = data_problem(dict(changes))
        if problem is not None:
            raise ConfigError(problem)
        stored = reveal(self._settings)
        nested = restore_masked(
            dotted_to_nested(changes), self._settings.model_dump(mode="json"), stored
        )
        flat = _flatten(nested)
        for key in flat:
            if key.split(".", 1)[0] not in Settings.model_fields:
                raise ConfigError(f"{key}: unknown key")
        candidate = self._validated(deep_merge(stored, nested))
        after = reveal(candidate)
        for key in flat:
            if _needs_restart(key) and _lookup(after, key) != _lookup(stored, key):
                raise ConfigError(
                    f"{key}: takes effect only at start-up; edit the file and restart"
                )
        return candidate, flat

    @staticmethod
    def _validated(merged: dict[str, Any]) -> Settings:
        try:
            return Settings.model_validate(merged)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                loc = ".".join(str(part) for part in error["loc"])
                message = error["msg"].removeprefix("Value error, ")
                if error["type"] == "extra_forbidden":
                    message = "unknown key"
                problems.append(f"{loc}: {message}" if loc else message)
            raise ConfigError("; ".join(problems)) from None

    async def update(
        self, changes: Mapping[str, Any], *, actor: str = "user", persist: bool = False
    ) -> ConfigChange:
        """Validate and apply ``changes`` (dotted or nested keys); raise ``ConfigError``."""
        async with self._lock:
            candidate, flat = self.validate_change(changes)
            before = self._settings.model_dump(mode="json")
            shown = candidate.model_dump(mode="json")
            previous = {key: _lookup(before, key) for key in flat}
            applied = {key: _lookup(shown, key) for key in flat}
            path = self.path
            if persist:
                path = path or Path("watchkeeper.toml")
                existing = read_toml(path) if path.exists() else {}
                real = reveal(candidate)
                written = dotted_to_nested({key: _lookup(real, key) for key in flat})
                try:
                    await asyncio.to_thread(write_toml_atomic, path, deep_merge(existing, written))
                except OSError as exc:
                    raise ConfigError(
                        f"{path}: cannot write the configuration: {exc.strerror or exc}"
                    ) from None
                self.path = path
            self._settings = candidate
            change = ConfigChange(
                actor=actor,
                changes=applied,
                previous=previous,
                persisted=persist,
                path=str(path) if path else None,
            )
            if self._bus is not None:
                await self._bus.publish(CONFIG_CHANGED, change, sender="config")
            return change
