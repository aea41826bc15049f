"""Turn whatever the Ollama client raised into one short, human reason.

The official client raises a mix of types: ``ollama.ResponseError`` for HTTP errors
(``status_code == -1`` when the error arrived inside a stream), the builtin
``ConnectionError`` when it cannot connect, and httpx's own exceptions, unwrapped, for
timeouts and for connections that die mid-response. :func:`classify` maps all of them
to a :class:`Failure` that says what to show and whether a retry can help.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import pydantic

from watchkeeper.model.text import PROMPT_DATA, clean

__all__ = [
    "Failure",
    "FailureKind",
    "ReplyRefused",
    "classify",
    "model_missing_reason",
    "seconds",
]

FailureKind = Literal[
    "connection", "timeout", "busy", "server", "protocol", "model_missing", "rejected", "unexpected"
]

# Kinds that mean "Ollama is not usable right now": shown as "unavailable (...)".
_UNAVAILABLE: frozenset[FailureKind] = frozenset(
    {"connection", "timeout", "busy", "server", "protocol"}
)
_RETRYABLE = _UNAVAILABLE
_RETRY_STATUSES = frozenset({500, 502, 503, 504})


class ReplyRefused(Exception):
    """The server's reply was refused unread (too large, compressed): the server answered,
    but not with anything usable, so the advisor counts it as an invalid reply."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Failure:
    """Why a call failed: ``reason`` is short text, ``message`` the full status text."""

    kind: FailureKind
    reason: str

    @property
    def retryable(self) -> bool:
        """Connection trouble, timeouts, busy or erroring servers may pass; a missing
        model or a rejected request will not."""
        return self.kind in _RETRYABLE

    @property
    def message(self) -> str:
        """The text for results and status lines, always starting with ``llm:``."""
        if self.kind in _UNAVAILABLE:
            return f"llm: unavailable ({self.reason})"
        if self.kind == "model_missing":
            return f"llm: {self.reason}"
        if self.kind == "rejected":
            return f"llm: request rejected ({self.reason})"
        return f"llm: error ({self.reason})"


def seconds(value: float) -> str:
    """``0.5`` -> ``"0.5s"``, ``30.0`` -> ``"30s"``."""
    return f"{value:g}s"


def model_missing_reason(model: str) -> str:
    """The fix is always the same, so the message says it."""
    name = clean(model, PROMPT_DATA, 80)
    return f"model '{name}' not found: run `ollama pull {name}`"


def _connection_reason(exc: BaseException) -> str:
    # The client replaces httpx.ConnectError by a generic ConnectionError; the original
    # is still chained as __context__ and tells a refused port from a bad host name.
    detail = " ".join(str(e) for e in (exc, exc.__context__) if e is not None).lower()
    if any(s in detail for s in ("name or service", "nodename", "getaddrinfo", "resolve")):
        return "cannot resolve host"
    if "unreachable" in detail:
        return "host unreachable"
    return "connection refused"


def classify(exc: BaseException, *, model: str, timeout: float, connect_timeout: float) -> Failure:
    """Map an exception from a client call to a :class:`Failure`."""
    import httpx
    import ollama

    if isinstance(exc, ReplyRefused):
        return Failure("protocol", clean(exc.reason, PROMPT_DATA, 120))
    if isinstance(exc, ollama.ResponseError):
        text = clean(str(exc.error), PROMPT_DATA, 160)
        status = exc.status_code
        if status == 404 and "model" in text.lower() and "not found" in text.lower():
            return Failure("model_missing", model_missing_reason(model))
        if status == 503:
            return Failure("busy", "server busy")
        if status == -1:
            return Failure("server", f"error during the reply: {text}")
        if status in _RETRY_STATUSES:
            return Failure("server", f"HTTP {status}: {text}")
        return Failure("rejected", f"HTTP {status}: {text}")
    if isinstance(exc, httpx.ConnectTimeout):
        return Failure("timeout", f"connect timeout after {seconds(connect_timeout)}")
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return Failure("timeout", f"timeout after {seconds(timeout)}")
    if isinstance(exc, ConnectionError | httpx.ConnectError):
        return Failure("connection", _connection_reason(exc))
    if isinstance(exc, httpx.TransportError):
        return Failure("protocol", f"connection dropped: {clean(str(exc), PROMPT_DATA, 80)}")
    if isinstance(exc, json.JSONDecodeError):
        return Failure("protocol", "invalid response body: not JSON")
    if isinstance(exc, pydantic.ValidationError):
        return Failure("protocol", "unexpected response shape")
    if isinstance(exc, ollama.RequestError):
        return Failure("rejected", clean(str(exc.error), PROMPT_DATA, 160))
    detail = clean(str(exc), PROMPT_DATA, 120)
    return Failure("unexpected", f"{type(exc).__name__}: {detail}")
