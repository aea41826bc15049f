"""The fake Ollama speaks Ollama's protocol: checked through the official client and raw HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from watchkeeper.testing.fake_ollama import (
    FakeOllama,
    Reply,
    load_reply_file,
    minimal_instance,
    request_text,
    scenario,
)

USER = [{"role": "user", "content": "How is the host?"}]


def _client(fake: FakeOllama) -> ollama.AsyncClient:
    return ollama.AsyncClient(host=fake.url, timeout=httpx.Timeout(5, connect=2))


def test_root_says_ollama_is_running(fake: FakeOllama) -> None:
    response = httpx.get(fake.url + "/")
    assert response.status_code == 200
    assert response.text == "Ollama is running"
    assert httpx.head(fake.url + "/").status_code == 200


async def test_chat_streams_ndjson_by_default(fake: FakeOllama) -> None:
    fake.script([Reply(content="The host is overloaded by stress-ng.", chunk_chars=5)])
    with httpx.stream(
        "POST", fake.url + "/api/chat", json={"model": "mistral", "messages": USER}
    ) as response:
        assert response.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert len(lines) == 9  # 36 chars in 5-char deltas, plus the final line
    assert all(line["done"] is False for line in lines[:-1])
    final = lines[-1]
    assert final["done"] is True and final["done_reason"] == "stop"
    assert final["message"] == {"role": "assistant", "content": ""}
    for counter in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(final[counter], int) and final[counter] > 0
    assert "".join(line["message"]["content"] for line in lines) == (
        "The host is overloaded by stress-ng."
    )


async def test_chat_streams_through_the_official_client(fake: FakeOllama) -> None:
    fake.script([Reply(content="streamed words arrive in parts")])
    async with _client(fake) as client:
        parts = [p async for p in await client.chat("mistral", messages=USER, stream=True)]
    assert len(parts) > 2
    assert parts[-1].done and parts[-1].done_reason == "stop"
    assert isinstance(parts[-1].eval_count, int)
    assert "".join(p.message.content or "" for p in parts) == "streamed words arrive in parts"


async def test_non_streamed_chat_with_a_schema_gets_a_json_string(fake: FakeOllama) -> None:
    schema = {
        "type": "object",
        "properties": {"level": {"type": "integer", "minimum": 1, "maximum": 5}},
        "required": ["level"],
    }
    async with _client(fake) as client:
        reply = await client.chat("mistral", messages=USER, format=schema, stream=False)
    assert json.loads(reply.message.content or "") == {"level": 3}
    assert reply.done_reason == "stop"
    assert fake.bodies("/api/chat")[0]["format"] == schema


async def test_generate_streamed_and_not(fake: FakeOllama) -> None:
    fake.script([Reply(content="one"), Reply(content="two words")])
    async with _client(fake) as client:
        whole = await client.generate("mistral", "say one", stream=False)
        parts = [p async for p in await client.generate("mistral", "say two", stream=True)]
    assert whole.response == "one"
    assert "".join(p.response or "" for p in parts) == "two words"
    assert [b["prompt"] for b in fake.bodies("/api/generate")] == ["say one", "say two"]


async def test_tags_ps_show_and_version(fake: FakeOllama) -> None:
    raw = httpx.get(fake.url + "/api/tags").json()
    (entry,) = raw["models"]
    assert set(entry) == {"name", "model", "modified_at", "size", "digest", "details"}
    assert set(entry["details"]) >= {"format", "family", "parameter_size", "quantization_level"}
    assert re.fullmatch(r"[0-9a-f]{64}", entry["digest"])
    async with _client(fake) as client:
        listing = await client.list()
        assert [m.model for m in listing.models] == ["mistral:latest"]
        assert (await client.ps()).models == []
        await client.chat("mistral", messages=USER, stream=False)
        (loaded,) = (await client.ps()).models
        assert loaded.model == "mistral:latest" and loaded.expires_at is not None
        shown = await client.show("mistral")
        assert shown.capabilities is not None and "completion" in shown.capabilities
        with pytest.raises(ollama.ResponseError) as missing:
            await client.show("nope")
    assert missing.value.status_code == 404
    assert httpx.get(fake.url + "/api/version").json() == {"version": fake.version}


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b'{"messages": []}', 400, "model is required"),
        (b"{not json", 400, "invalid character"),
        (b"", 400, "missing request body"),
        (b"[1]", 400, "cannot unmarshal array"),
        (b'{"model": "llama3", "messages": []}', 404, "model 'llama3' not found"),
        (b'{"model": "mistral", "think": true, "messages": []}', 400, "does not support thinking"),
    ],
)
def test_request_errors_use_ollama_status_and_body(
    fake: FakeOllama, body: bytes, status: int, error: str
) -> None:
    response = httpx.post(fake.url + "/api/chat", content=body)
    assert response.status_code == status
    assert error in response.json()["error"]


@pytest.mark.parametrize(
    ("fault", "status", "error"),
    [
        ("503", 503, "server busy, please try again.  maximum pending requests exceeded"),
        ("500", 500, "llama runner process has terminated: exit status 2"),
        ("404", 404, "model 'mistral' not found"),
        ("midstream_error", 500, "an error was encountered while running the model"),
    ],
)
async def test_scripted_http_faults_reach_the_client(
    fake: FakeOllama, fault: str, status: int, error: str
) -> None:
    fake.script([Reply(fault=fault)])  # type: ignore[arg-type]
    async with _client(fake) as client:
        with pytest.raises(ollama.ResponseError) as raised:
            await client.chat("mistral", messages=USER, stream=False)
    assert raised.value.status_code == status
    assert raised.value.error.startswith(error)


async def test_midstream_error_in_a_stream_keeps_status_200(fake: FakeOllama) -> None:
    fake.script([Reply(content="partial content then trouble", fault="midstream_error")])
    received: list[str] = []
    async with _client(fake) as client:
        with pytest.raises(ollama.ResponseError) as raised:
            async for part in await client.chat("mistral", messages=USER, stream=True):
                received.append(part.message.content or "")
    assert raised.value.status_code == -1  # the client's marker for an in-stream error
    assert received and "".join(received) != "partial content then trouble"
    fake.script([Reply(fault="midstream_error")])
    with httpx.stream(
        "POST", fake.url + "/api/chat", json={"model": "mistral", "messages": USER}
    ) as r:
        assert r.status_code == 200
        assert "error" in json.loads(list(r.iter_lines())[-1])


def test_drop_closes_the_connection_without_a_response(fake: FakeOllama) -> None:
    fake.script([Reply(fault="drop")])
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(fake.url + "/api/chat", json={"model": "mistral", "messages": USER})


def test_garbage_content_and_garbage_body(fake: FakeOllama) -> None:
    fake.script([Reply(fault="garbage"), Reply(fault="garbage_body")])
    body = {"model": "mistral", "messages": USER, "stream": False, "format": "json"}
    content = httpx.post(fake.url + "/api/chat", json=body).json()["message"]["content"]
    with pytest.raises(json.JSONDecodeError):
        json.loads(content)
    raw = httpx.post(fake.url + "/api/chat", json=body)
    assert raw.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        raw.json()


def test_num_predict_cuts_the_reply_with_done_reason_length(fake: FakeOllama) -> None:
    fake.script([Reply(content="x" * 100)])
    body = {"model": "mistral", "messages": USER, "stream": False, "options": {"num_predict": 5}}
    reply = httpx.post(fake.url + "/api/chat", json=body).json()
    assert reply["done_reason"] == "length"
    assert reply["message"]["content"] == "x" * 20


def test_empty_chat_loads_the_model(fake: FakeOllama) -> None:
    reply = httpx.post(fake.url + "/api/chat", json={"model": "mistral", "messages": []}).json()
    assert reply["done"] is True and reply["done_reason"] == "load"


def test_latency_delays_the_reply(fake: FakeOllama) -> None:
    fake.script([Reply(content="late", latency=0.3)])
    started = time.monotonic()
    body = {"model": "mistral", "messages": USER, "stream": False}
    assert httpx.post(fake.url + "/api/chat", json=body).json()["message"]["content"] == "late"
    assert time.monotonic() - started >= 0.3


def test_queue_then_reply_function_then_default(fake: FakeOllama) -> None:
    def reply_fn(body: dict[str, Any]) -> Reply | None:
        return Reply(content="disk answer") if "disk" in request_text(body) else None

    fake.set_reply_fn(reply_fn)
    fake.script(["queued"])
    assert fake.pending == 1

    def ask(text: str) -> str:
        body = {
            "model": "mistral",
            "stream": False,
            "messages": [{"role": "user", "content": text}],
        }
        return str(httpx.post(fake.url + "/api/chat", json=body).json()["message"]["content"])

    assert ask("disk full?") == "queued"
    assert ask("disk full?") == "disk answer"
    assert "fake" in ask("cpu?")
    assert fake.pending == 0
    assert [b["messages"][0]["content"] for b in fake.bodies("/api/chat")] == [
        "disk full?",
        "disk full?",
        "cpu?",
    ]


def test_stop_wakes_a_delayed_reply_promptly() -> None:
    fake = FakeOllama().start()
    fake.script([Reply(content="never", latency=30)])
    body = {"model": "mistral", "messages": USER, "stream": False}
    with httpx.Client(timeout=10) as client:
        errors: list[BaseException] = []

        def call() -> None:
            try:
                client.post(fake.url + "/api/chat", json=body)
            except httpx.HTTPError as exc:
                errors.append(exc)

        worker = threading.Thread(target=call)
        worker.start()
        time.sleep(0.2)
        started = time.monotonic()
        fake.stop()
        worker.join(timeout=5)
    assert not worker.is_alive()
    assert time.monotonic() - started < 5
    assert errors  # the delayed request was cut, not answered


def test_minimal_instance_satisfies_common_schema_shapes() -> None:
    schema = {
        "$defs": {"Level": {"type": "string", "enum": ["low", "high"]}},
        "type": "object",
        "properties": {
            "level": {"$ref": "#/$defs/Level"},
            "items": {"type": "array", "minItems": 2, "items": {"type": "boolean"}},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "string"}]},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "optional": {"type": "string"},
        },
        "required": ["level", "items", "maybe", "score"],
    }
    assert minimal_instance(schema) == {
        "level": "low",
        "items": [False, False],
        "maybe": None,
        "score": 0.5,
    }


def test_reply_file_splits_queue_and_rules(tmp_path: Path) -> None:
    path = tmp_path / "replies.jsonl"
    path.write_text(
        "# comments and blank lines are skipped\n\n"
        '{"content": "first"}\n'
        '{"when": "disk", "json_obj": {"verdict": "degraded"}}\n'
        '{"fault": "503"}\n',
        encoding="utf-8",
    )
    queued, rules = load_reply_file(path)
    assert [r.content for r in queued] == ["first", None]
    assert queued[1].fault == "503"
    answer = scenario(rules)
    assert answer({"messages": [{"role": "user", "content": "DISK is full"}]}) == rules[0]
    assert answer({"messages": [{"role": "user", "content": "cpu"}]}) is None
    path.write_text('{"colour": "red"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"replies\.jsonl:1: unknown reply field"):
        load_reply_file(path)


def test_reply_rejects_unknown_faults() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        Reply(fault="explode")  # type: ignore[arg-type]


def test_command_line_server_runs_and_stops_cleanly(tmp_path: Path) -> None:
    replies = tmp_path / "r.jsonl"
    replies.write_text('{"content": "from the file"}\n', encoding="utf-8")
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "watchkeeper.testing.fake_ollama",
            "--port",
            "0",
            "--model",
            "mistral",
            "--model",
            "llama3.2:1b",
            "--reply-file",
            str(replies),
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        banner = [proc.stderr.readline() for _ in range(2)]
        assert "FAKE Ollama" in banner[0]
        url = banner[1].split("listening on", 1)[1].strip()
        assert httpx.get(url + "/").text == "Ollama is running"
        tags = httpx.get(url + "/api/tags").json()
        assert [m["name"] for m in tags["models"]] == ["mistral:latest", "llama3.2:1b"]
        body = {"model": "mistral", "messages": USER, "stream": False}
        assert httpx.post(url + "/api/chat", json=body).json()["message"]["content"] == (
            "from the file"
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        rest = proc.stderr.read()
        assert "stopped" in rest and "Traceback" not in rest and "Warning" not in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
