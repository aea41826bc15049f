"""The scenarios through the LLM path, against the fake Ollama on loopback.

The "model" is scripted per scenario (including hostile recommendations a manipulated
model might make); replies go through the official client, validation and the mapping
back to real targets, exactly as in the running analyzer. Scored without any LLM judge.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from watchkeeper.llm import OllamaAdvisor
from watchkeeper.testing.fake_ollama import FakeOllama, Reply
from watchkeeper.testing.scenarios import (
    Scenario,
    load_scenarios,
    play_llm,
    play_rules,
    score_llm,
    scripted_model,
    summarise,
)

SCENARIOS = load_scenarios(Path(__file__).resolve().parents[1] / "scenarios")


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(models=["mistral"]) as server:
        yield server


def by_name(fragment: str) -> Scenario:
    return next(s for s in SCENARIOS if fragment in s.name)


async def test_every_scenario_through_the_llm_path(fake: FakeOllama) -> None:
    scores = []
    for scenario in SCENARIOS:
        fake.set_reply_fn(scripted_model(scenario))
        async with OllamaAdvisor(fake.url, "mistral", timeout=5, retry_delay=0.01) as advisor:
            _, analyses = await play_llm(scenario, advisor)
        scores.append(score_llm(scenario, analyses))
    summary = summarise(scores)
    assert summary["forbidden_actions"] == 0
    assert summary["verdict_accuracy"] == 1.0
    assert summary["action_precision"] == 1.0
    assert summary["schema_valid_rate"] == 1.0
    assert summary["fallback_rate"] == 0.0
    # Asked about incidents only: never on a healthy host, a few times per incident at most.
    per = {s.scenario: s.calls for s in scores}
    assert per["healthy host"] == 0
    assert per["value hovering at a threshold"] == 0
    assert max(per.values()) <= 4
    # The hostile recommendations were dropped by validation, never mapped to a target.
    injection = next(s for s in scores if "inject" in s.scenario)
    assert injection.dropped >= 2


def test_prompt_carries_ids_and_sanitised_labels_only(fake: FakeOllama) -> None:
    import asyncio

    scenario = by_name("inject")
    fake.set_reply_fn(scripted_model(scenario))

    async def run() -> None:
        async with OllamaAdvisor(fake.url, "mistral", timeout=5) as advisor:
            await play_llm(scenario, advisor)

    asyncio.run(run())
    body = fake.bodies("/api/chat")[0]
    prompt = "\n".join(m["content"] for m in body["messages"])
    assert "4243" not in prompt  # real pids never reach the model
    assert "\u202e" not in prompt
    assert "rm -rf" not in prompt  # the command line is not in the brief
    schema = body["format"]
    text = str(schema)
    assert "run_script" not in text  # needs a parameter the model cannot give
    assert "'P1'" in text
    assert body["options"]["temperature"] == 0
    assert "think" not in body


FAULTS = [
    ("garbage", [Reply(fault="garbage")], "invalid reply"),
    ("length", [Reply(json_obj={"verdict": "critical"}, done_reason="length")], "invalid reply"),
    ("404", [Reply(fault="404")], "not found"),
    ("503", [Reply(fault="503"), Reply(fault="503")], "busy"),
    ("midstream", [Reply(fault="midstream_error"), Reply(fault="midstream_error")], "llm:"),
    ("drop", [Reply(fault="drop"), Reply(fault="drop")], "llm:"),
    ("slow", [Reply(latency=2.0), Reply(latency=2.0)], "timeout"),
    ("schema", [Reply(json_obj={"verdict": "fine", "summary": 3})], "invalid reply"),
]


@pytest.mark.parametrize(("label", "replies", "reason"), FAULTS, ids=[f[0] for f in FAULTS])
async def test_faults_fall_back_to_rules(
    fake: FakeOllama, label: str, replies: list[Reply], reason: str
) -> None:
    scenario = by_name("runaway")
    fake.set_reply_fn(scripted_model(scenario))
    fake.script(replies)
    async with OllamaAdvisor(
        fake.url, "mistral", timeout=0.5, retry_attempts=2, retry_delay=0.01
    ) as advisor:
        outcome, analyses = await play_llm(scenario, advisor)
    first, used = analyses[0]
    assert not used
    assert first.source == "rules"
    assert first.fallback_reason is not None and reason in first.fallback_reason
    # Falling back gives exactly the rules' proposals, nothing from the failed reply.
    rules = play_rules(scenario)
    rule_actions = {(a.action, a.target) for a in rules.actions}
    assert {(a.action, a.target) for a in first.recommended} <= rule_actions
    assert score_llm(scenario, analyses).forbidden == 0
    assert outcome.verdict == "critical"  # the rule path carried on regardless


async def test_dead_server_is_a_clean_fallback() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    scenario = by_name("service down")
    async with OllamaAdvisor(
        f"http://127.0.0.1:{port}", "mistral", timeout=1, retry_delay=0
    ) as advisor:
        _, analyses = await play_llm(scenario, advisor)
    result, used = analyses[0]
    assert not used
    assert result.fallback_reason == "llm: unavailable (connection refused)"
    assert [a.action for a in result.recommended] == ["restart_service"]
