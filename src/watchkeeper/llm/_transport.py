"""The advisor's HTTP transport: at most so many bytes of reply, never a compressed one.

An LLM server is outside watchkeeper's trust: a broken or hostile one can answer a chat
request with 60 MB, or with a small gzip body that inflates to gigabytes. The official
client reads a non-streamed reply whole, so the cap lives below it, in the httpx
transport both of the advisor's clients use::

    transport = CappedTransport(max_bytes=256 * 1024)
    client = ollama.AsyncClient(host=url, transport=transport)

A reply announcing more than ``max_bytes`` (``Content-Length``) is refused before its
body is read; one without a length is counted as it arrives and cut at ``max_bytes``.
Replies are asked for uncompressed, and a compressed one is refused, so the bytes
counted are the bytes kept. Both raise :class:`~watchkeeper.llm._errors.ReplyRefused`,
which the advisor treats as an invalid reply.

This module imports httpx: the advisor imports it on first use only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from watchkeeper.llm._errors import ReplyRefused

__all__ = ["CappedTransport"]


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


class CappedTransport(httpx.AsyncBaseTransport):
    """httpx's own transport, with every reply body capped at ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["accept-encoding"] = "identity"
        response = await self._inner.handle_async_request(request)
        problem = self._problem(response.headers)
        if problem is not None:
            await response.aclose()
            raise ReplyRefused(problem)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_CappedStream(response.stream, self.max_bytes),
            extensions=response.extensions,
        )

    def _problem(self, headers: httpx.Headers) -> str | None:
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            return f"compressed reply ({encoding[:20]}) although none was asked for"
        length = headers.get("content-length", "").strip()
        if length.isdigit() and int(length) > self.max_bytes:
            return f"reply larger than {_size(self.max_bytes)} ({int(length)} bytes announced)"
        return None

    async def aclose(self) -> None:
        await self._inner.aclose()
