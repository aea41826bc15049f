"""What every route module shares: the context it reads, JSON helpers, duration parsing."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException
from fastapi.responses import Response
from pydantic import BaseModel

from watchkeeper.web.sources import Sources, jsonable

if TYPE_CHECKING:
    from watchkeeper.orchestrator import Orchestrator
    from watchkeeper.web.live import LiveHub

__all__ = ["WebContext", "fail", "json_response", "model_response", "parse_duration"]


@dataclass
class WebContext:
    """Everything a route reads; passed to each router's ``build`` once, at app creation,
    so no per-request dependency resolution sits on the hot path."""

    orchestrator: Orchestrator
    hub: LiveHub
    sources: Sources
    clock: Callable[[], float]


def json_response(
    data: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """Serialise ``data`` (models included) straight to bytes."""
    body = json.dumps(jsonable(data), separators=(",", ":"), ensure_ascii=False)
    return Response(body.encode(), status_code, headers, media_type="application/json")


def model_response(
    model: BaseModel,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    *,
    exclude: dict[str, Any] | None = None,
) -> Response:
    """A route's response model as JSON bytes, serialised once with no second validation.
    A top-level optional field left unset (``history`` when none was asked for) stays out
    of the answer; nested models are sent whole, less what ``exclude`` names (pydantic's
    nested form: ``{"recent": {"__all__": {"payload"}}}``)."""
    unset: dict[str, Any] = {
        name: True for name in type(model).model_fields if name not in model.model_fields_set
    }
    body = model.model_dump_json(exclude={**unset, **(exclude or {})})
    return Response(body.encode(), status_code, headers, media_type="application/json")


def fail(status: int, detail: str, **extra: Any) -> HTTPException:
    """An HTTP error whose JSON body is ``{"detail": ..., **extra}``."""
    return HTTPException(status, detail={"detail": detail, **extra})


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str, name: str, *, minimum: float, maximum: float) -> float:
    """``"15m"``, ``"1h"``, ``"90"`` (seconds) → seconds; 422 naming ``name`` otherwise."""
    match = _DURATION.match(text)
    if match is None:
        raise fail(422, f"{name}: {text!r} is not a duration; use e.g. 90, 15m, 6h or 7d")
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not minimum <= seconds <= maximum:
        raise fail(422, f"{name}: must be between {minimum:g} s and {maximum:g} s")
    return seconds
