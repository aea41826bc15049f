"""The reply cap against a server that lies in its headers: a reply announcing 60 MB is
refused before its body is read (so a server that then sends nothing cannot hold the
call), and a gzip body, which would inflate past any count of bytes on the wire, is
refused although it is small. Both are invalid replies: not retried, breaker closed."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator, Callable

import pytest

from watchkeeper.llm import IncidentBrief, OllamaAdvisor


async def _serve(head: bytes, body: bytes) -> AsyncIterator[tuple[str, list[int]]]:
    requests: list[int] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                lines = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in lines.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                requests.append(length)
                writer.write(head + body)
                await writer.drain()
                await asyncio.sleep(30)  # then nothing more: a stall after the headers
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", requests
        server.close()


@pytest.mark.parametrize(
    ("head", "body", "reason"),
    [
        (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: 62914560\r\n\r\n",
            b'{"model":"mistral","message":{"role":"assistant","content":"',
            "60 MB announced",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
            b"Content-Length: %d\r\n\r\n" % len(gzip.compress(b"x" * 10_000_000)),
            gzip.compress(b"x" * 10_000_000),
            "a 10 MB gzip bomb",
        ),
    ],
    ids=["announced", "gzip"],
)
async def test_a_lying_reply_is_refused_at_once_as_an_invalid_reply(
    head: bytes,
    body: bytes,
    reason: str,
    make_brief: Callable[..., IncidentBrief],
    advisor_for: Callable[..., OllamaAdvisor],
) -> None:
    async for url, requests in _serve(head, body):
        async with advisor_for(url, timeout=20) as advisor:
            started = time.monotonic()
            result = await advisor.analyze(make_brief())
            took = time.monotonic() - started
        assert not result.ok, reason
        assert result.invalid_reason is not None, result
        assert "announced" in result.invalid_reason or "compressed" in result.invalid_reason
        assert took < 5, f"{reason}: the call waited {took:.1f}s for a body it should refuse"
        assert len(requests) == 1  # not retried
        assert advisor.breaker_state == "closed"
