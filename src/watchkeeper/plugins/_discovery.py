"""Finding a named plugin: in the plugins directory, else among installed entry points.

Only names that the configuration lists are looked up; nothing is imported just because it
lies in a folder. ``<directory>/<name>.py`` (or a package ``<directory>/<name>/``) wins over
an entry point of the same name in the group ``watchkeeper.plugins``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import keyword
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watchkeeper.plugins.base import BasePlugin
from watchkeeper.plugins.compat import install_brief_alias
from watchkeeper.plugins.errors import PluginError

__all__ = [
    "ENTRY_POINT_GROUP",
    "Found",
    "PluginNotFound",
    "find_plugin",
    "plugin_class_in",
]

ENTRY_POINT_GROUP = "watchkeeper.plugins"
# Directory plugins are imported under this prefix: their loggers (``__name__``) then land
# in watchkeeper's log files, and two directories' ``x.py`` never share a module.
_PREFIX = "watchkeeper.plugins._loaded"


class PluginNotFound(PluginError):
    """No plugin of that name in the plugins directory or among the entry points."""


@dataclass(frozen=True)
class Found:
    plugin_class: type[BasePlugin[Any]]
    source: str


def plugin_class_in(module: types.ModuleType) -> type[BasePlugin[Any]]:
    """The plugin class a module offers: its ``plugin_class`` attribute when set, else the
    one ``BasePlugin`` subclass it defines."""
    where = getattr(module, "__file__", None) or module.__name__
    chosen = getattr(module, "plugin_class", None)
    if chosen is not None:
        if isinstance(chosen, type) and issubclass(chosen, BasePlugin):
            return chosen
        raise PluginError(f"{where}: plugin_class is not a BasePlugin subclass")
    defined = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, BasePlugin)
        and value is not BasePlugin
        and value.__module__ == module.__name__
    ]
    if len(defined) == 1:
        return defined[0]
    if not defined:
        raise PluginError(
            f"{where} defines no BasePlugin subclass (from plugins.base_plugin import BasePlugin)"
        )
    names = ", ".join(sorted(cls.__name__ for cls in defined))
    raise PluginError(
        f"{where} defines several plugins ({names}); name one with plugin_class = ..."
    )


def _from_directory(name: str, directory: Path) -> Found | None:
    if not name.isidentifier() or keyword.iskeyword(name):
        return None  # not a module name: only an entry point can be called that
    single = directory / f"{name}.py"
    package = directory / name / "__init__.py"
    if single.is_file():
        path, search = single, None
    elif package.is_file():
        path, search = package, [str(package.parent)]
    else:
        return None
    install_brief_alias(directory, BasePlugin)
    module_name = f"{_PREFIX}.{name}"
    for stale in [m for m in sys.modules if m == module_name or m.startswith(module_name + ".")]:
        del sys.modules[stale]  # a fresh import each time it is loaded
    spec = importlib.util.spec_from_file_location(
        module_name, path, submodule_search_locations=search
    )
    if spec is None or spec.loader is None:
        raise PluginError(f"{path} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return Found(plugin_class_in(module), f"{path}")


def _from_entry_point(name: str, directory: Path) -> Found | None:
    points = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=name))
    if not points:
        return None
    if len(points) > 1:
        values = ", ".join(sorted(point.value for point in points))
        raise PluginError(f"several installed packages offer the plugin {name!r}: {values}")
    point = points[0]
    install_brief_alias(directory, BasePlugin)
    loaded = point.load()
    dist = getattr(point, "dist", None)
    where = f"entry point {point.value}" + (f" ({dist.name} {dist.version})" if dist else "")
    if isinstance(loaded, types.ModuleType):
        return Found(plugin_class_in(loaded), where)
    if isinstance(loaded, type) and issubclass(loaded, BasePlugin):
        return Found(loaded, where)
    raise PluginError(f"entry point {point.value} is neither a BasePlugin subclass nor a module")


def find_plugin(name: str, directory: Path) -> Found:
    """Import the plugin called ``name`` and return its class; raise ``PluginNotFound`` or
    whatever importing it raised."""
    found = _from_directory(name, directory) or _from_entry_point(name, directory)
    if found is None:
        raise PluginNotFound(
            f"no plugin named {name!r}: not in {directory} ({name}.py or {name}/__init__.py) "
            f"and no entry point {name!r} in the group {ENTRY_POINT_GROUP!r}"
        )
    return found
