"""The scenarios through the LLM path, against the fake Ollama on loopback.

The "model" is scripted per scenario (including hostile recommendations a manipulated
model might make); replies go through the official client, validation and the mapping
back to real targets, exactly as in the running analyzer. Scored without any LLM judge.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from watchkeeper.llm import OllamaAdvisor
from watchkeeper.testing.fake_ollama import FakeOllama, Reply
from watchkeeper.testing.scenarios import (
    LLMScore,
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


def plain(scenario: Scenario) -> bool:
    """A scenario whose scripted model answers normally on every call."""
    return all(r.mode == "ok" for r in scenario.llm.replies)


async def test_every_scenario_through_the_llm_path(fake: FakeOllama) -> None:
    scores: list[LLMScore] = []
    for scenario in SCENARIOS:
        fake.set_reply_fn(scripted_model(scenario))
        async with OllamaAdvisor(fake.url, "mistral", timeout=5, retry_delay=0.01) as advisor:
            outcome, analyses = await play_llm(scenario, advisor)
        scores.append(score_llm(scenario, analyses, outcome))
    summary = summarise(scores)
    assert summary["forbidden_executions"] == 0
    assert summary["verdict_accuracy"] == 1.0
    ok = summarise([s for s, sc in zip(scores, SCENARIOS, strict=True) if plain(sc)])
    assert ok["schema_valid_rate"] == 1.0
    assert ok["fallback_rate"] == 0.0
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


# -- reply modes, cache hits, the verdict's moment, the gate ---------------------------------------


def runaway(**llm: Any) -> Scenario:
    return Scenario.model_validate(
        {
            "name": "llm runaway",
            "steps": 20,
            "changes": [{"from": 0, "set": {"cpu": 97, "load1": 2.2}}],
            "processes": [{"pid": 4242, "name": "spinner", "cpu": 99, "rss_mb": 20}],
            "expect": {"verdict": "critical", "allowed_actions": ["renice_process"]},
            "llm": {
                "verdict": "critical",
                "actions": [{"action": "renice_process", "target": "process:4242"}],
                **llm,
            },
        }
    )


MODES = [
    ("malformed", 0.0, "invalid reply"),
    ("cut", 0.0, "cut at the token limit"),
    ("slow", 2.0, "timeout"),
]


@pytest.mark.parametrize(("mode", "delay", "reason"), MODES, ids=[m[0] for m in MODES])
async def test_reply_modes_that_fail_fall_back(
    fake: FakeOllama, mode: str, delay: float, reason: str
) -> None:
    scenario = runaway(replies=[{"mode": mode, "delay_s": delay}])
    fake.set_reply_fn(scripted_model(scenario))
    async with OllamaAdvisor(
        fake.url, "mistral", timeout=0.5, retry_attempts=1, retry_delay=0.01
    ) as advisor:
        outcome, analyses = await play_llm(scenario, advisor)
    result = score_llm(scenario, analyses, outcome)
    assert result.calls >= 1 and result.valid == 0
    assert result.fallbacks == result.calls
    assert all(reason in r for r in result.fallback_reasons), result.fallback_reasons
    assert result.verdict_ok is None  # nothing the model said is judged
    assert outcome.verdict == "critical"  # the rules carried on


async def test_a_slow_reply_within_the_timeout_is_used(fake: FakeOllama) -> None:
    scenario = runaway(replies=[{"mode": "slow", "delay_s": 0.3}])
    fake.set_reply_fn(scripted_model(scenario))
    async with OllamaAdvisor(fake.url, "mistral", timeout=5, retry_delay=0.01) as advisor:
        outcome, analyses = await play_llm(scenario, advisor)
    result = score_llm(scenario, analyses, outcome)
    assert result.valid == result.calls >= 1
    assert all((r.latency_s or 0) >= 0.3 for r, _ in analyses)


async def test_low_confidence_recommendations_are_never_submitted(fake: FakeOllama) -> None:
    scenario = runaway(replies=[{"mode": "low_confidence"}])
    fake.set_reply_fn(scripted_model(scenario))
    async with OllamaAdvisor(fake.url, "mistral", timeout=5, retry_delay=0.01) as advisor:
        outcome, analyses = await play_llm(scenario, advisor)
    result = score_llm(scenario, analyses, outcome)
    assert result.valid >= 1 and result.actions_total >= 1
    assert all(a.confidence < 0.5 for r, _ in analyses for a in r.recommended)
    assert outcome.llm["decisions"] == []  # below remediation.min_confidence: not proposed


async def test_replies_go_in_order_and_the_last_repeats(fake: FakeOllama) -> None:
    scenario = runaway(replies=[{"mode": "malformed"}, {"mode": "ok"}])
    reply = scripted_model(scenario)
    body = {"messages": [{"role": "user", "content": "no data"}]}
    first, second, third = reply(body), reply(body), reply(body)
    assert first.fault == "garbage"
    assert second.fault is None and second.json_obj is not None
    assert third.fault is None and third.json_obj is not None


async def test_cache_hits_are_not_counted_as_calls(fake: FakeOllama) -> None:
    # Hot for 60 s in every 400: the same finding comes back after the cooldown, and
    # the advice gate answers it from its cache without asking the model.
    scenario = Scenario.model_validate(
        {
            "name": "recurring spin",
            "steps": 260,
            "changes": [{"from": 0, "every": 400, "for": 120, "set": {"cpu": 97}}],
            "processes": [{"pid": 4242, "name": "spinner", "cpu": 99, "rss_mb": 20}],
            "expect": {"verdict": "healthy"},
            "llm": {"verdict": "critical"},
        }
    )
    fake.set_reply_fn(scripted_model(scenario))
    async with OllamaAdvisor(fake.url, "mistral", timeout=5, retry_delay=0.01) as advisor:
        outcome, analyses = await play_llm(scenario, advisor)
    result = score_llm(scenario, analyses, outcome)
    assert result.cache_hits >= 1, [(r.at, r.cached) for r, _ in analyses]
    assert result.calls == len(fake.bodies("/api/chat"))
    assert result.valid == result.calls
    assert result.verdict_checks == result.calls


def memory_rising() -> Scenario:
    """Memory high at once, critical from 400 s (past the advice cooldown): a warning
    first, then critical."""
    return Scenario.model_validate(
        {
            "name": "memory rising",
            "steps": 100,
            "base": {"memory": 90.0},
            "changes": [{"from": 400, "set": {"memory": 97.0}}],
            "expect": {
                "verdict": "critical",
                "alerts": [{"rule": "memory_high", "severity": "critical"}],
            },
            "llm": {"verdict": "critical"},
        }
    )


def fixed_verdict(verdict: str) -> Any:
    def reply(body: dict[str, Any]) -> Reply:
        return Reply(
            json_obj={
                "verdict": verdict,
                "summary": "fixed",
                "findings": [],
                "recommended_actions": [],
            }
        )

    return reply


@pytest.mark.parametrize(("says", "hits"), [("critical", 1), ("degraded", 1)])
async def test_each_answer_is_judged_by_the_verdict_true_when_asked(
    fake: FakeOllama, says: str, hits: int
) -> None:
    scenario = memory_rising()
    fake.set_reply_fn(fixed_verdict(says))
    async with OllamaAdvisor(fake.url, "mistral", timeout=5, retry_delay=0.01) as advisor:
        outcome, analyses = await play_llm(scenario, advisor)
    result = score_llm(scenario, analyses, outcome)
    # Asked at the warning (true: degraded) and again at the escalation (true: critical).
    assert result.verdict_checks == 2
    assert result.verdict_hits == hits
    assert result.verdict_ok is False


async def test_a_model_that_follows_the_incident_is_right_both_times(fake: FakeOllama) -> None:
    scenario = memory_rising()
    fake.set_reply_fn(scripted_model(scenario))
    async with OllamaAdvisor(fake.url, "mistral", timeout=5, retry_delay=0.01) as advisor:
        outcome, analyses = await play_llm(scenario, advisor)
    result = score_llm(scenario, analyses, outcome)
    assert (result.verdict_checks, result.verdict_hits, result.verdict_ok) == (2, 2, True)


async def test_a_forbidden_llm_proposal_the_gate_runs_is_counted(fake: FakeOllama) -> None:
    scenario = Scenario.model_validate(
        {
            "name": "llm renices the wrong process",
            "steps": 20,
            "changes": [{"from": 0, "set": {"cpu": 97, "load1": 2.2}}],
            "processes": [
                {"pid": 4242, "name": "spinner", "cpu": 99, "rss_mb": 20},
                {"pid": 5000, "name": "postgres", "cpu": 60, "rss_mb": 900},
            ],
            "expect": {
                "verdict": "critical",
                "allowed_actions": ["renice_process"],
                "forbidden_pairs": [{"action": "renice_process", "target": "process:5000"}],
            },
            "llm": {
                "verdict": "critical",
                "actions": [{"action": "renice_process", "target": "process:5000"}],
            },
        }
    )
    fake.set_reply_fn(scripted_model(scenario))
    async with OllamaAdvisor(fake.url, "mistral", timeout=5, retry_delay=0.01) as advisor:
        outcome, analyses = await play_llm(scenario, advisor)
    result = score_llm(scenario, analyses, outcome)
    decisions = outcome.llm["decisions"]
    assert {(d.action, d.target, d.proposer) for d in decisions} == {
        ("renice_process", "5000", "llm")
    }
    # The first runs; were it asked again within the healing cooldown, the gate refuses it.
    assert [d.verdict for d in decisions][:1] == ["run"]
    assert all(d.verdict == "refuse" for d in decisions[1:])
    assert result.forbidden == len(decisions)  # each proposal of it was forbidden
    assert (result.executions, result.forbidden_executions) == (1, 1)
    assert summarise([result])["forbidden_executions"] == 1


def two_incidents() -> Scenario:
    """A runaway (the expected, critical incident) and, beside it, a non-critical service
    failing its probe (a warning of its own)."""
    return Scenario.model_validate(
        {
            "name": "two incidents",
            "steps": 30,
            "changes": [{"from": 0, "set": {"cpu": 97, "load1": 2.2}}],
            "processes": [{"pid": 4242, "name": "spinner", "cpu": 99, "rss_mb": 20}],
            "services": [{"name": "search", "pid": 800, "healthy": False}],
            "expect": {
                "verdict": "critical",
                "alerts": [{"rule": "runaway_process", "subject": "process:4242"}],
            },
            "llm": {"verdict": "critical"},
        }
    )


@pytest.mark.parametrize(("reply", "hits"), [("scripted", 2), ("critical", 1)])
async def test_a_call_about_one_incident_is_judged_by_what_it_was_shown(
    fake: FakeOllama, reply: str, hits: int
) -> None:
    scenario = two_incidents()
    fake.set_reply_fn(scripted_model(scenario) if reply == "scripted" else fixed_verdict(reply))
    async with OllamaAdvisor(fake.url, "mistral", timeout=5, retry_delay=0.01) as advisor:
        outcome, analyses = await play_llm(scenario, advisor)
    if not outcome.incidents_supported:
        pytest.skip("the analyzer has no incidents: one call covers every alert")
    result = score_llm(scenario, analyses, outcome)
    shown = [{a.rule for a in alerts} for _, alerts in outcome.llm["asked"]]
    assert len(shown) == 2 and {"service_unhealthy"} in shown, shown  # one call per incident
    # The probe's call saw a warning only: "degraded" is right there, "critical" is not.
    assert (result.verdict_checks, result.verdict_hits) == (2, hits)
