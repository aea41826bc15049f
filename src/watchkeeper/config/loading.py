"""Loading settings: find and read the file, layer the sources, and word every problem
as one :class:`ConfigError` naming the key and where it came from::

    settings, path = load_settings(config_file="watchkeeper.toml")
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from watchkeeper.config.settings import _CURRENT_LAYERS, ENV_PREFIX, Settings
from watchkeeper.model.datacheck import MAX_DEPTH, data_problem, text_depth

__all__ = [
    "DEFAULT_CONFIG_NAME",
    "ConfigError",
    "build_settings",
    "deep_merge",
    "dotted_to_nested",
    "find_config_file",
    "load_settings",
    "read_toml",
]

# Environment variables of ours that are not settings keys.
_ENV_NOT_SETTINGS = {"WATCHKEEPER_CONFIG", "WATCHKEEPER_TOKEN", "WATCHKEEPER_URL"}
#: The test suite's switches (WATCHKEEPER_REQUIRE_NATS, ..._NETNS, ..._SYSTEMD, ..._REALMODEL).
_ENV_TEST_SWITCHES = "WATCHKEEPER_REQUIRE_"
DEFAULT_CONFIG_NAME = "watchkeeper.toml"


class ConfigError(Exception):
    """A configuration problem, worded for the person who has to fix it."""


def find_config_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to read: ``explicit``, else ``WATCHKEEPER_CONFIG``, else
    ``./watchkeeper.toml`` when it exists. An explicit path that does not exist is an error."""
    chosen = explicit if explicit is not None else os.environ.get("WATCHKEEPER_CONFIG")
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist or is not a file")
        return path
    default = Path(DEFAULT_CONFIG_NAME)
    return default if default.is_file() else None


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML table in ``path``; every problem, nesting and infinities included, is a
    one-line ``ConfigError`` naming the file."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(
            f"{path}: not valid TOML: nested deeper than {MAX_DEPTH} levels"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML: the file is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    problem = data_problem(data)
    if problem is not None:
        raise ConfigError(f"{path}: {problem}")
    return data


def _env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    """Our environment variables as nested keys, to name them in error messages."""
    layer: dict[str, Any] = {}
    for name, value in environ.items():
        if (
            not name.startswith(ENV_PREFIX)
            or name in _ENV_NOT_SETTINGS
            or name.startswith(_ENV_TEST_SWITCHES)
        ):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        node = layer
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[parts[-1]] = value
    return layer


def _check_env_names(environ: Mapping[str, str]) -> None:
    """A misspelt WATCHKEEPER_ variable is a mistake worth stopping for; so is a value
    nested too deeply for anyone to mean it (pydantic-settings decodes it as JSON)."""
    for name, value in environ.items():
        if (
            not name.startswith(ENV_PREFIX)
            or name in _ENV_NOT_SETTINGS
            or name.startswith(_ENV_TEST_SWITCHES)
        ):
            continue
        if text_depth(value) > MAX_DEPTH:
            raise ConfigError(f"environment variable {name}: nested deeper than {MAX_DEPTH} levels")
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        model: Any = Settings
        for part in parts:
            fields = getattr(model, "model_fields", None)
            if fields is None:
                break  # a dict or list field: its contents are validated by its type
            if part not in fields:
                raise ConfigError(f"environment variable {name}: unknown key {'.'.join(parts)!r}")
            model = fields[part].annotation
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                break


def _has_key(layer: Mapping[str, Any], loc: tuple[Any, ...]) -> bool:
    node: Any = layer
    for part in loc:
        in_table = isinstance(node, Mapping) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if in_table or in_list:
            node = node[part]
        else:
            return False
    return True


def _origin(loc: tuple[Any, ...], layers: list[tuple[str, Mapping[str, Any]]]) -> str:
    # Look for the exact key first, then for its parents (a section-level check).
    for depth in range(len(loc), 0, -1):
        for label, layer in layers:
            if _has_key(layer, loc[:depth]):
                return label
    return "built-in defaults"


def _describe(exc: ValidationError, layers: list[tuple[str, Mapping[str, Any]]]) -> str:
    lines = []
    for error in exc.errors():
        loc = tuple(part for part in error["loc"] if part not in ("function-after",))
        message = error["msg"].removeprefix("Value error, ")
        if not loc:
            loc, message = _key_in_message(message)
        key = ".".join(str(part) for part in loc) or "(top level)"
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "missing":
            message = "is required"
        lines.append(f"{key}: {message} (in {_origin(loc, layers)})")
    return "; ".join(lines)


def _key_in_message(message: str) -> tuple[tuple[Any, ...], str]:
    """A whole-model check names its key first (``"plugins.x: ..."``): use it as the key."""
    head, sep, rest = message.partition(": ")
    parts = head.split(".")
    if not sep or parts[0] not in Settings.model_fields:
        return (), message
    return tuple(int(part) if part.isdigit() else part for part in parts), rest


def _check_layers(layers: list[tuple[str, Mapping[str, Any]]]) -> None:
    for label, layer in layers:
        problem = data_problem(layer)
        if problem is not None:
            raise ConfigError(f"{problem} (in {label})")


def build_settings(
    file_data: Mapping[str, Any],
    *,
    file_label: str,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Validate the layered sources into one ``Settings``; raise ``ConfigError``.

    The environment is read from ``os.environ`` by pydantic-settings itself."""
    flags = flags or {}
    environ = os.environ
    layers: list[tuple[str, Mapping[str, Any]]] = [
        ("command-line flags", flags),
        ("environment", _env_layer(environ)),
    ]
    ollama_host = environ.get("OLLAMA_HOST")
    host_layer = {"ollama": {"url": ollama_host}} if ollama_host else {}
    if host_layer:
        layers.append(("environment OLLAMA_HOST", host_layer))
    layers.append((file_label, file_data))
    _check_env_names(environ)
    _check_layers(layers)
    _CURRENT_LAYERS.clear()
    _CURRENT_LAYERS.update(file=dict(file_data), ollama_host=host_layer)
    try:
        return Settings(**dict(flags))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, layers)) from None
    except RecursionError:  # a last guard: the checks above should have caught it
        raise ConfigError(f"configuration nested deeper than {MAX_DEPTH} levels") from None
    finally:
        _CURRENT_LAYERS.clear()


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    *,
    flags: Mapping[str, Any] | None = None,
) -> tuple[Settings, Path | None]:
    """Load settings from every source; return them with the file that was read."""
    path = find_config_file(config_file)
    data = read_toml(path) if path else {}
    label = str(path) if path else "built-in defaults"
    return build_settings(data, file_label=label, flags=flags), path


def deep_merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` laid over it, recursing into tables."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def dotted_to_nested(changes: Mapping[str, Any]) -> dict[str, Any]:
    """``{"thresholds.cpu_warning": 80}`` → ``{"thresholds": {"cpu_warning": 80}}``."""
    nested: dict[str, Any] = {}
    for dotted, value in changes.items():
        parts = [part for part in str(dotted).split(".") if part]
        if not parts:
            raise ConfigError(f"empty key in {dotted!r}")
        node = nested
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{dotted}: conflicts with another change")
            node = child
        node[parts[-1]] = value
    return nested
