"""The fake Ollama serving a REAL model: what the official client and watchkeeper see.

A real GGUF model (Gemma 3 270M) answers through Ollama's protocol on loopback, with the
request's schema compiled to a decoding grammar. Nothing here is scripted: the assertions
are about what a real, small, CPU-bound model does through the server.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from watchkeeper.llm import OllamaAdvisor
from watchkeeper.testing._real_model import grammar_text
from watchkeeper.testing.real_server import RealModelServer

pytestmark = [pytest.mark.realmodel, pytest.mark.slow]

VERDICTS = ["healthy", "degraded", "critical"]
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": VERDICTS},
        "summary": {"type": "string", "maxLength": 120},
        "causes": {
            "type": "array",
            "items": {"type": "string", "enum": ["E1", "E2"]},
            "maxItems": 2,
        },
    },
    "required": ["verdict", "summary", "causes"],
}
MESSAGES = [
    {
        "role": "system",
        "content": "You watch a Linux host. Answer in JSON: verdict (healthy, degraded or "
        "critical), a one-sentence summary, and causes (finding ids).",
    },
    {
        "role": "user",
        "content": "Findings: E1 CPU at 98% for 10 minutes, one process 'stress-ng'. "
        "E2 service nginx has failed and does not answer.",
    },
]
OPTIONS = {"temperature": 0, "seed": 7, "num_ctx": 2048, "num_predict": 200}


def _client(server: RealModelServer) -> ollama.Client:
    return ollama.Client(host=server.url, timeout=httpx.Timeout(300, connect=5))


@pytest.fixture
def client(real_server: RealModelServer) -> Iterator[ollama.Client]:
    """The official client on the real-model server, closed after the test."""
    with _client(real_server) as official:
        yield official


def _assert_matches_schema(data: Any) -> None:
    assert isinstance(data, dict), data
    assert set(data) == {"verdict", "summary", "causes"}, data
    assert data["verdict"] in VERDICTS
    assert isinstance(data["summary"], str) and len(data["summary"]) <= 120
    assert isinstance(data["causes"], list) and len(data["causes"]) <= 2
    assert all(cause in ("E1", "E2") for cause in data["causes"])


def test_official_client_gets_a_schema_valid_reply(
    real_server: RealModelServer, client: ollama.Client
) -> None:
    response = client.chat(
        model=real_server.model, messages=MESSAGES, format=SCHEMA, options=OPTIONS, stream=False
    )
    assert response.done_reason == "stop"
    _assert_matches_schema(json.loads(response.message.content or ""))
    # Ollama's counters: real token counts and integer nanosecond durations.
    assert response.prompt_eval_count and response.prompt_eval_count > 40
    assert response.eval_count and 5 < response.eval_count < OPTIONS["num_predict"]
    assert response.eval_duration and response.eval_duration > 0
    assert response.total_duration and response.total_duration >= response.eval_duration


def test_streamed_reply_arrives_token_by_token_and_repeats_with_the_seed(
    real_server: RealModelServer, client: ollama.Client
) -> None:
    parts = list(
        client.chat(
            model=real_server.model, messages=MESSAGES, format=SCHEMA, options=OPTIONS, stream=True
        )
    )
    deltas = [p.message.content or "" for p in parts[:-1]]
    final = parts[-1]
    assert final.done and final.done_reason == "stop"
    assert final.message.content == ""
    # One line per token (a multi-byte character may wait for its last byte).
    assert final.eval_count is not None and len(deltas) >= final.eval_count - 2
    text = "".join(deltas)
    _assert_matches_schema(json.loads(text))
    again, third = (
        client.chat(
            model=real_server.model,
            messages=MESSAGES,
            format=SCHEMA,
            options=OPTIONS,
            stream=False,
        )
        for _ in range(2)
    )
    # The repeat found the whole prompt in the model's cache: one token evaluated.
    assert again.prompt_eval_count == 1
    # temperature 0 and the same seed from the same cache state: the same answer. (The
    # first call evaluated the prompt in one batch, so its numbers may differ slightly.)
    assert third.message.content == again.message.content
    _assert_matches_schema(json.loads(again.message.content or ""))


def test_a_reply_cut_at_num_predict_says_length(
    real_server: RealModelServer, client: ollama.Client
) -> None:
    response = client.chat(
        model=real_server.model,
        messages=MESSAGES,
        format=SCHEMA,
        options={**OPTIONS, "num_predict": 6},
        stream=False,
    )
    assert response.done_reason == "length"
    assert response.eval_count == 6
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.message.content or "")


def test_generate_endpoint_answers_too(real_server: RealModelServer, client: ollama.Client) -> None:
    response = client.generate(
        model=real_server.model,
        system="Answer in JSON.",
        prompt="Is the sky blue? Answer with ok true or false.",
        format={"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
        options={"temperature": 0, "seed": 1, "num_predict": 30, "num_ctx": 2048},
    )
    assert response.done_reason == "stop"
    assert isinstance(json.loads(response.response or "")["ok"], bool)


def test_show_tags_and_ps_report_the_real_model(
    real_server: RealModelServer, client: ollama.Client
) -> None:
    shown = client.show(real_server.model)
    info = dict(shown.modelinfo or {})
    assert info["general.architecture"] == "gemma3"
    assert info["gemma3.context_length"] == 32768
    assert shown.details is not None
    assert shown.details.family == "gemma3"
    assert shown.details.quantization_level == "Q4_K_M"
    listed = client.list().models
    assert [m.model for m in listed] == [real_server.model]
    assert listed[0].size is not None and 200_000_000 < listed[0].size < 300_000_000
    # An empty chat only loads the model; keep_alive says for how long.
    loaded = httpx.post(
        real_server.url + "/api/chat",
        json={
            "model": real_server.model,
            "messages": [],
            "keep_alive": "10m",
            "options": {"num_ctx": 1024},
        },
        timeout=120,
    ).json()
    assert loaded["done_reason"] == "load"
    running = client.ps().models
    assert len(running) == 1 and running[0].model == real_server.model
    assert running[0].context_length == 1024  # num_ctx is the loaded context
    assert running[0].expires_at is not None
    left = running[0].expires_at.timestamp() - time.time()
    assert 500 < left <= 601
    unloaded = httpx.post(
        real_server.url + "/api/chat",
        json={"model": real_server.model, "messages": [], "keep_alive": 0},
        timeout=60,
    ).json()
    assert unloaded["done_reason"] == "unload"
    assert client.ps().models == []


def test_bad_requests_get_ollama_errors(
    real_server: RealModelServer, client: ollama.Client
) -> None:
    with pytest.raises(ollama.ResponseError) as missing:
        client.chat(model="mistral", messages=MESSAGES)
    assert missing.value.status_code == 404 and "not found" in missing.value.error
    with pytest.raises(ollama.ResponseError) as bad_option:
        client.chat(model=real_server.model, messages=MESSAGES, options={"num_predict": "lots"})
    assert bad_option.value.status_code == 400


def test_requests_are_served_one_at_a_time(real_server: RealModelServer) -> None:
    before = len(real_server.stats())
    errors: list[BaseException] = []

    def ask(seed: int) -> None:
        try:
            with _client(real_server) as own:
                own.chat(
                    model=real_server.model,
                    messages=MESSAGES,
                    format=SCHEMA,
                    options={**OPTIONS, "seed": seed, "temperature": 0.7, "num_predict": 40},
                    stream=False,
                )
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(seed,)) for seed in (1, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors
    runs = real_server.stats()[before:]
    assert len(runs) == 3
    # Each run's inference window [end - compute, end]: no two overlap.
    windows = sorted(
        (r["at"] - (r["prompt_eval_duration"] + r["eval_duration"]) / 1e9, r["at"]) for r in runs
    )
    for (_, first_end), (second_start, _) in itertools.pairwise(windows):
        assert second_start >= first_end - 0.05


async def test_watchkeeper_advisor_gets_a_valid_analysis(
    real_server: RealModelServer, make_brief: Any
) -> None:
    # The advisor as the daemon builds it by default (timeouts, num_ctx, num_predict).
    async with OllamaAdvisor(real_server.url, real_server.model) as advisor:
        outcome = await advisor.analyze(make_brief())
    assert outcome.ok, outcome.error
    assert outcome.reply is not None
    assert outcome.reply.verdict in VERDICTS


def test_schema_strings_cannot_hold_raw_control_characters(model_path: Path) -> None:
    # llama.cpp's converter (Ollama's) keeps control characters out of JSON strings; a raw
    # newline in a string makes the whole reply invalid JSON.
    text = grammar_text({"type": "object", "properties": {"s": {"type": "string"}}})
    char_rule = next(line for line in text.splitlines() if line.startswith("char ::="))
    assert "\\x00-\\x1F" in char_rule and "\\x7F" in char_rule
