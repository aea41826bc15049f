"""Request bodies are standard, finite, shallow JSON, or the request gets a clear 422.

Python's ``json`` accepts ``NaN``, ``Infinity`` and ``1e999`` (read as infinity), and
ends a deeply nested body in a ``RecursionError``; none of that may reach a route. Every
router whose routes take a body uses :class:`StrictJSONRoute`::

    router = APIRouter(tags=["control"], route_class=StrictJSONRoute)

The body is checked with :func:`watchkeeper.model.datacheck.loads_strict` before FastAPI parses
it; text that is not JSON at all is left to FastAPI's own 422.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from watchkeeper.model.datacheck import DataError, loads_strict

__all__ = ["StrictJSONRoute", "check_body"]


def _is_json(request: Request) -> bool:
    # FastAPI reads a body without a content type as JSON too.
    content_type = request.headers.get("content-type")
    return not content_type or "json" in content_type.lower()


async def check_body(request: Request) -> None:
    """Raise ``RequestValidationError`` (422) when the JSON body breaks a limit."""
    body = await request.body()
    if not body or not _is_json(request):
        return
    try:
        loads_strict(body)
    except DataError as exc:
        error = {"type": "json_invalid", "loc": ("body",), "msg": str(exc), "input": None}
        raise RequestValidationError([error]) from None
    except json.JSONDecodeError:
        return  # not JSON at all: FastAPI answers that itself


class StrictJSONRoute(APIRoute):
    """An ``APIRoute`` that refuses non-finite numbers and deep nesting in its body."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            await check_body(request)
            return await handler(request)

        return strict
