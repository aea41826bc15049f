"""Limits on untrusted structured data: how deep it nests, and that every number is finite.

Configuration files, environment values, ``--set`` values and API bodies are all checked
with these before anything else looks at them, so a 10,000-level ``[[[...]]]`` or an
``Infinity`` ends in one clear message instead of a ``RecursionError`` or a number that
cannot be written back as JSON::

    problem = data_problem(parsed)          # "a.b: nested deeper than 32 levels" or None
    value = loads_strict(body)              # JSON, refusing NaN, Infinity and 1e999
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_DEPTH", "DataError", "data_problem", "loads_strict", "text_depth"]

#: The deepest nesting of tables and lists accepted anywhere (settings need about 5).
MAX_DEPTH = 32


class DataError(ValueError):
    """Structured input that is nested too deeply or holds a non-finite number."""


def _key(path: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in path) or "(top level)"


def data_problem(data: Any, *, limit: int = MAX_DEPTH) -> str | None:
    """The first problem in ``data`` worded for a person, or ``None``.

    Walks without recursion, so any depth of input is safe to look at."""
    stack: list[tuple[tuple[Any, ...], Any]] = [((), data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return f"{_key(path)}: {value} is not a finite number"
        children: list[tuple[Any, Any]] = []
        if isinstance(value, Mapping):
            children = list(value.items())
        elif isinstance(value, list | tuple):
            children = list(enumerate(value))
        if children and len(path) >= limit:
            return f"{_key(path[:limit])}: nested deeper than {limit} levels"
        stack.extend(((*path, key), child) for key, child in reversed(children))
    return None


def text_depth(text: str) -> int:
    """How deep ``[`` and ``{`` nest in JSON-like ``text`` (brackets in strings ignored)."""
    depth = deepest = 0
    quoted = escaped = False
    for char in text:
        if quoted:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(0, depth - 1)
    return deepest


def _no_constant(name: str) -> Any:
    raise DataError(f"{name} is not a number JSON allows; every number must be finite")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise DataError(f"{text} is out of range; every number must be finite")
    return value


def loads_strict(text: str | bytes, *, limit: int = MAX_DEPTH) -> Any:
    """Standard JSON only: no ``NaN``/``Infinity``, no number that overflows to infinity,
    nesting at most ``limit`` deep. Raises :class:`DataError` (a ``ValueError``) for
    those, and ``json.JSONDecodeError`` for text that is not JSON at all."""
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise DataError(f"nested deeper than {limit} levels") from None
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # an integer too long to convert, and the like
        raise DataError(str(exc)) from None
    problem = data_problem(value, limit=limit)
    if problem is not None:
        raise DataError(problem)
    return value
