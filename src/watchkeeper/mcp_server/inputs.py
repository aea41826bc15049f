"""Checking what an MCP client sends before it reaches the daemon.

An assistant's arguments are untrusted input like any other network input: each check
here bounds a size, names what is accepted, and raises :class:`InputError` with one line
that says what to send instead (the tool answers it as an error, never a traceback)::

    metric = metric_name(raw)            # "cpu.percent"; InputError on "../../etc"
    seconds = duration(raw, "range", minimum=60, maximum=MAX_RANGE_S)
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "MAX_PARAMS",
    "MAX_RANGE_S",
    "MAX_REASON",
    "MAX_TARGET",
    "InputError",
    "action_name",
    "duration",
    "identity",
    "metric_name",
    "params",
    "reason",
    "record_id",
    "target",
]

#: The longest span a history question may cover: the API's own limit (90 days).
MAX_RANGE_S = 90 * 86400.0
MAX_TARGET = 1024
MAX_REASON = 500
MAX_PARAMS = 16
_MAX_PARAM_TEXT = 256
_MAX_IDENTITY = 64
_METRIC = re.compile(r"[A-Za-z0-9_\-]+(?:\.[^\x00-\x20\x7f]+)+")
_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_ACTION = re.compile(r"[a-z][a-z0-9_]{0,63}")
_PARAM_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
_DURATION = re.compile(r"(\d{1,9}(?:\.\d{1,6})?)(s|m|h|d|w)?")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InputError(ValueError):
    """An argument the tools do not take; the message says what they do take."""


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def metric_name(raw: str) -> str:
    """A dotted metric name such as ``cpu.percent`` or ``disk./home.percent``, in its
    shape only: the tools check it against the stored names (``metric_names``)."""
    text = raw.strip()
    if not 0 < len(text) <= 300 or not _METRIC.fullmatch(text):
        raise InputError(
            f"metric {_short(text)} is not a metric name: use a dotted name such as "
            "cpu.percent (the tool metric_names lists the stored ones)"
        )
    return text


def duration(raw: str, name: str, *, minimum: float, maximum: float) -> float:
    """``"15m"``, ``"6h"``, ``"7d"`` or plain seconds → seconds, within the bounds."""
    text = raw.strip().lower()
    match = _DURATION.fullmatch(text)
    if match is None:
        raise InputError(f"{name} {_short(raw)} is not a duration: use e.g. 15m, 6h, 7d or 90")
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not minimum <= seconds <= maximum:
        raise InputError(f"{name} must be between {minimum:g} s and {maximum / 86400:g} days")
    return seconds


def record_id(raw: str, what: str) -> str:
    """An incident, alert or fingerprint id: letters, digits, ``_`` and ``-``, at most 64."""
    text = raw.strip()
    if not _ID.fullmatch(text):
        raise InputError(f"{what} {_short(text)} is not an id (letters, digits, _ and -)")
    return text


def action_name(raw: str) -> str:
    text = raw.strip()
    if not _ACTION.fullmatch(text):
        raise InputError(
            f"action {_short(text)} is not an action name; the tool list_actions names them"
        )
    return text


def target(raw: str | None) -> str | None:
    """A pid, service name or path: bounded, no control characters, no ``..`` segment
    (the action's own validation in the policy gate checks the rest)."""
    if raw is None or raw == "":
        return None
    if len(raw) > MAX_TARGET:
        raise InputError(f"target is {len(raw)} characters long; at most {MAX_TARGET}")
    if _CONTROL.search(raw):
        raise InputError("target holds control characters")
    if ".." in re.split(r"[/\\]", raw):
        raise InputError("target may not climb out of a directory with '..'")
    return raw


def reason(raw: str) -> str:
    text = _CONTROL.sub(" ", raw).strip()
    if len(text) > MAX_REASON:
        raise InputError(f"reason is {len(text)} characters long; at most {MAX_REASON}")
    return text


def identity(raw: str | None) -> str:
    """Who says they are asking (the client's own words): cleaned and bounded."""
    text = re.sub(r"[^A-Za-z0-9 ._@:/+\-]", "", raw or "").strip()
    return text[:_MAX_IDENTITY] or "unnamed"


def params(raw: dict[str, Any] | None) -> dict[str, Any]:
    """An action's parameters: at most 16, named in snake_case, each a number, a boolean
    or a short text (the action's declaration in the gate checks names and bounds)."""
    given = raw or {}
    if len(given) > MAX_PARAMS:
        raise InputError(f"{len(given)} parameters given; at most {MAX_PARAMS}")
    out: dict[str, Any] = {}
    for key, value in given.items():
        if not _PARAM_KEY.fullmatch(str(key)):
            raise InputError(f"parameter name {_short(str(key))} is not snake_case")
        if isinstance(value, str):
            if len(value) > _MAX_PARAM_TEXT or _CONTROL.search(value):
                raise InputError(f"parameter {key}: at most {_MAX_PARAM_TEXT} plain characters")
        elif value is not None and not isinstance(value, bool | int | float):
            raise InputError(f"parameter {key}: a number, true/false or a short text")
        out[str(key)] = value
    return out
