"""The advisor's HTTP guard: at most so many bytes of reply, never a compressed one.

An LLM server is outside watchkeeper's trust: a broken or hostile one can answer a chat
request with 60 MB, or with a small gzip body that inflates to gigabytes. The official
client reads a non-streamed reply whole, so the cap goes in underneath it, as httpx event
hooks on both of the advisor's clients (hooks rather than a transport of our own, so
httpx still picks the transport, proxies from the environment included)::

    client = ollama.AsyncClient(host=url, event_hooks=capped_hooks(256 * 1024))

A reply announcing more than ``max_bytes`` (``Content-Length``) is refused before its
body is read; one without a length is counted as it arrives and cut at ``max_bytes``.
Replies are asked for uncompressed, and a compressed one is refused, so the bytes
counted are the bytes kept. Both raise :class:`~watchkeeper.llm._errors.ReplyRefused`,
which the advisor treats as an invalid reply.

This module imports httpx: the advisor imports it on first use only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx

from watchkeeper.llm._errors import ReplyRefused

__all__ = ["capped_hooks"]

Hook = Callable[..., Awaitable[None]]


def _size(limit: int) -> str:
    return f"{limit // 1024} KB" if limit % 1024 == 0 else f"{limit} bytes"


class _CappedStream(httpx.AsyncByteStream):
    """The body as it arrives, until it passes ``limit`` bytes."""

    def __init__(self, inner: httpx.AsyncByteStream, limit: int) -> None:
        self._inner = inner
        self._limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > self._limit:
                raise ReplyRefused(f"reply larger than {_size(self._limit)}")
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def _problem(headers: httpx.Headers, limit: int) -> str | None:
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        return f"compressed reply ({encoding[:20]}) although none was asked for"
    length = headers.get("content-length", "").strip()
    if length.isdigit() and int(length) > limit:
        return f"reply larger than {_size(limit)} ({int(length)} bytes announced)"
    return None


def capped_hooks(max_bytes: int) -> dict[str, list[Hook]]:
    """httpx ``event_hooks`` that cap every reply body at ``max_bytes``."""
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")

    async def ask_identity(request: httpx.Request) -> None:
        request.headers["accept-encoding"] = "identity"

    async def cap(response: httpx.Response) -> None:
        # Runs before the body is read: refuse what announces too much, count the rest.
        problem = _problem(response.headers, max_bytes)
        if problem is not None:
            await response.aclose()
            raise ReplyRefused(problem)
        if isinstance(response.stream, httpx.AsyncByteStream):
            response.stream = _CappedStream(response.stream, max_bytes)

    return {"request": [ask_identity], "response": [cap]}
