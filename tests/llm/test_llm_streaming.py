"""Streaming and timing for CPU hosts: idle timeout, a deadline learned from the model's
speed, keep_alive, one system prompt for every call, num_ctx fitted to the model.

Servers are real sockets on loopback: the fake Ollama, or a few lines of asyncio that
stream part of an answer and then stall, the way an overloaded CPU host or a wedged
runner does.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from watchkeeper.llm import (
    BriefProcess,
    IncidentBrief,
    OllamaAdvisor,
    build_schema,
    estimate_tokens,
)
from watchkeeper.testing.fake_ollama import FakeOllama, Reply

MakeBrief = Callable[..., IncidentBrief]
AdvisorFor = Callable[..., OllamaAdvisor]


def _part(text: str, *, done: bool = False) -> bytes:
    obj: dict[str, Any] = {
        "model": "mistral",
        "created_at": "2026-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": text},
        "done": done,
    }
    if done:
        obj.update(done_reason="stop", eval_count=5, eval_duration=50_000_000)
    data = json.dumps(obj).encode() + b"\n"
    return b"%X\r\n%s\r\n" % (len(data), data)


@asynccontextmanager
async def streaming_server(*chunks: bytes, then: str) -> AsyncIterator[str]:
    """Answers every chat with ``chunks`` of NDJSON, then ``then``: "stall" (the
    connection stays open, silent) or "end" (the body ends without a done part and the
    connection closes)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
                await asyncio.sleep(0.05)
            if then == "end":
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                return  # and the connection closes
            await asyncio.sleep(60)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        server.close()


async def test_a_reply_that_stops_midway_ends_at_the_idle_timeout_not_the_deadline(
    make_brief: MakeBrief, advisor_for: AdvisorFor
) -> None:
    # Two parts of an answer, then silence: a wedged runner. The attempt may take 30 s
    # in all, but no token for 0.5 s is a stall.
    stalling = streaming_server(_part('{"verdict":'), _part(' "critical"'), then="stall")
    async with stalling as url, advisor_for(url, timeout=30, idle_timeout=0.5) as advisor:
        started = time.monotonic()
        result = await advisor.analyze(make_brief())
        took = time.monotonic() - started
    assert result.error == "llm: unavailable (no token for 0.5s)", result.error
    assert took < 5, f"waited {took:.1f}s for a silent server"


async def test_a_stream_that_ends_without_its_final_part_is_a_dropped_reply(
    make_brief: MakeBrief, advisor_for: AdvisorFor
) -> None:
    ending = streaming_server(_part('{"verdict": "critical"'), then="end")
    async with ending as url, advisor_for(url, retry_attempts=2) as advisor:
        result = await advisor.analyze(make_brief())
    assert result.error == "llm: unavailable (reply ended before it was done)"
    assert result.attempts == 2  # worth one more try, like a dropped connection


async def test_a_streamed_answer_is_put_together_and_validated(
    make_brief: MakeBrief, advisor_for: AdvisorFor, valid_reply: dict[str, Any]
) -> None:
    text = json.dumps(valid_reply)
    parts = [_part(text[i : i + 7]) for i in range(0, len(text), 7)]
    answering = streaming_server(*parts, _part("", done=True), then="stall")
    async with answering as url, advisor_for(url, retry_attempts=1) as advisor:
        result = await advisor.analyze(make_brief())
    assert result.ok, result.error
    assert result.reply is not None and result.reply.verdict == "degraded"
    assert result.tokens_per_s == 100.0  # 5 tokens in 50 ms, as the server reported


async def test_the_deadline_is_learned_from_the_models_speed(
    fake: FakeOllama, make_brief: MakeBrief, advisor_for: AdvisorFor
) -> None:
    # The fake reports 4 ms per written token and 0.15 ms per prompt token: once one call
    # has been measured, an attempt is allowed about twice the expected time plus 5 s,
    # not the 60 s ceiling.
    fake.script([Reply(), Reply(latency=30)])
    async with advisor_for(fake.url, timeout=60, idle_timeout=2, retry_attempts=1) as advisor:
        first = await advisor.analyze(make_brief())
        assert first.ok, first.error
        assert first.deadline_s == 60  # nothing known yet: the ceiling
        assert advisor.speed.tokens_per_s == 250.0
        assert advisor.speed.calls == 1
        started = time.monotonic()
        second = await advisor.analyze(make_brief())
        took = time.monotonic() - started
    assert second.deadline_s is not None and 5 < second.deadline_s < 15, second.deadline_s
    assert second.error == f"llm: unavailable (timeout after {second.deadline_s:g}s)"
    assert took < second.deadline_s + 3


async def test_every_call_sends_keep_alive_and_the_same_system_prompt_bytes(
    fake: FakeOllama, make_brief: MakeBrief, advisor_for: AdvisorFor
) -> None:
    one = make_brief()
    other = make_brief(process_label="postgres", paths=[])
    async with advisor_for(fake.url, keep_alive="1h") as advisor:
        assert (await advisor.analyze(one)).ok
        assert (await advisor.analyze(other)).ok
    first, second = fake.bodies("/api/chat")
    assert first["keep_alive"] == second["keep_alive"] == "1h"
    assert first["stream"] is True
    system = [body["messages"][0]["content"].encode() for body in (first, second)]
    assert system[0] == system[1]  # byte-identical: the server's prompt cache holds
    assert first["messages"][1] != second["messages"][1]  # the incident is in the user part
    assert first["format"] == build_schema(one)
    assert first["format"] != second["format"]


async def test_num_ctx_is_fitted_to_the_models_own_context(
    fake: FakeOllama, make_brief: MakeBrief, advisor_for: AdvisorFor
) -> None:
    async with advisor_for(fake.url, num_ctx=131072) as advisor:
        assert advisor.num_ctx == 131072  # nothing known of the model yet
        health = await advisor.probe()
        assert health.context_length == 32768
        assert (await advisor.analyze(make_brief())).ok
    (body,) = fake.bodies("/api/chat")
    assert body["options"]["num_ctx"] == 32768  # never more than the model holds


async def test_a_small_context_trims_the_prompt_to_leave_room_for_the_answer(
    fake: FakeOllama, make_brief: MakeBrief, advisor_for: AdvisorFor
) -> None:
    many = [
        BriefProcess(id=f"P{i}", label=f"worker-{i}-" + "x" * 50, cpu_percent=i, rss_mb=i, age_s=i)
        for i in range(1, 11)
    ]
    async with advisor_for(fake.url, num_ctx=1024) as advisor:
        assert (await advisor.analyze(make_brief(processes=many))).ok
    (body,) = fake.bodies("/api/chat")
    options = body["options"]
    prompt = sum(estimate_tokens(m["content"]) for m in body["messages"])
    assert options["num_ctx"] == 1024
    assert prompt + options["num_predict"] <= 1024, (prompt, options)
    assert "worker-10-" not in body["messages"][1]["content"]  # trimmed, not overflowed


async def test_a_trickling_stream_meets_its_deadline(
    fake: FakeOllama, make_brief: MakeBrief, advisor_for: AdvisorFor
) -> None:
    # One byte a second: no part ever completes, and every byte would restart a read
    # timeout. The attempt ends at its deadline all the same.
    fake.script([Reply(fault="trickle")])
    async with advisor_for(fake.url, timeout=1.5, retry_attempts=1) as advisor:
        started = time.monotonic()
        result = await advisor.analyze(make_brief())
        took = time.monotonic() - started
    assert result.error == "llm: unavailable (timeout after 1.5s)"
    assert took < 4


async def test_an_oversized_stream_is_cut_off_as_an_invalid_reply(
    fake: FakeOllama, make_brief: MakeBrief, advisor_for: AdvisorFor
) -> None:
    fake.script([Reply(fault="oversized")])
    async with advisor_for(fake.url, timeout=30) as advisor:
        result = await advisor.analyze(make_brief())
    assert result.invalid_reason == "reply larger than 256 KB"
    assert len(fake.bodies("/api/chat")) == 1  # not retried
