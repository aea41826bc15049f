"""Every way the model can fail, through the analyzer's own path (``consult``): the
analysis falls back to the rules' verdict and proposals, with the reason, every time.
And when the model does answer, it cannot lower the rules' verdict, cached or not.

The server is the fake Ollama on loopback, playing each fault on the wire (or a dead
port); the advisor streams as in production.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from watchkeeper.analysis.advice import AdviceGate, consult
from watchkeeper.llm import OllamaAdvisor
from watchkeeper.model.alerts import Alert, Severity, SuggestedAction
from watchkeeper.model.analysis import AnalysisResult
from watchkeeper.remediation.catalog import BUILTIN_ACTIONS
from watchkeeper.testing.fake_ollama import FakeOllama, Reply

RULES_SAY = "service web is down"
RESTART = SuggestedAction(action="restart_service", target="web", target_kind="service")


def web_down() -> Alert:
    return Alert(
        id="a1",
        fingerprint="fp-web",
        rule="service_down",
        severity=Severity.CRITICAL,
        subject="service:web",
        summary=RULES_SAY,
        evidence={"state": "failed"},
        suggested_actions=[RESTART],
        started_at=0,
        updated_at=0,
    )


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(["gemma3:270m"]) as server:
        yield server


def _gate() -> AdviceGate:
    return AdviceGate(cooldown=0, hourly_budget=1000)


async def _consult(
    model: OllamaAdvisor,
    gate: AdviceGate | None = None,
    *,
    now: float = 100.0,
    rules_verdict: Any = "critical",
    rules_summary: Any = RULES_SAY,
) -> tuple[AnalysisResult, bool]:
    """The model asked about web being down, as the analyzer asks it."""
    return await consult(
        model,
        gate if gate is not None else _gate(),
        [web_down()],
        None,
        BUILTIN_ACTIONS,
        trigger="alert",
        now=now,
        rules_verdict=rules_verdict,
        rules_summary=rules_summary,
    )


async def _ask(url: str) -> tuple[AnalysisResult, bool]:
    async with OllamaAdvisor(url, "gemma3:270m", timeout=1.5, retry_delay=0.01) as model:
        return await _consult(model)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(latency=5), "timeout after 1.5s"),
        (Reply(fault="404"), "not found"),
        (Reply(fault="503"), "server busy"),
        (Reply(fault="500"), "HTTP 500"),
        (Reply(fault="garbage"), "not JSON"),
        (Reply(fault="garbage_body"), "invalid response body"),
        (Reply(fault="drop"), "connection dropped"),
        (Reply(fault="midstream_error"), "error during the reply"),
        (Reply(content='{"verdict": "healthy", "summ', done_reason="length"), "cut at the token"),
        (Reply(fault="trickle"), "timeout after 1.5s"),
        (Reply(fault="oversized"), "reply larger than 256 KB"),
    ],
    ids=[
        "slow",
        "404",
        "503",
        "500",
        "garbage",
        "garbage_body",
        "drop",
        "midstream",
        "cut",
        "trickle",
        "oversized",
    ],
)
async def test_every_fault_falls_back_to_the_rules_with_the_reason(
    fake: FakeOllama, reply: Reply, reason: str
) -> None:
    fake.set_reply_fn(lambda body: reply)
    result, used = await _ask(fake.url)
    assert not used
    assert result.source == "rules"
    assert result.verdict == "critical"
    assert result.summary == RULES_SAY
    assert result.recommended == [RESTART]
    fallback = result.fallback_reason
    assert fallback is not None and reason in fallback, fallback


async def test_a_server_that_is_down_falls_back_too() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result, used = await _ask(url)
    assert not used
    assert result.fallback_reason == "llm: unavailable (connection refused)"
    assert result.verdict == "critical"


async def test_a_model_that_says_healthy_does_not_lower_the_rules_verdict(
    fake: FakeOllama,
) -> None:
    healthy = {"verdict": "healthy", "summary": "all is well", "recommended_actions": []}
    fake.set_reply_fn(lambda body: Reply(json_obj=healthy))
    gate = _gate()
    async with OllamaAdvisor(fake.url, "gemma3:270m") as model:
        result, used = await _consult(model, gate)
        assert used
        assert (result.verdict, result.model_verdict, result.rules_verdict) == (
            "critical",
            "healthy",
            "critical",
        )
        assert result.summary == "all is well"  # the model's words, shown as its opinion
        assert result.disagreement() == (
            "the model thinks healthy; the rules say critical: service web is down"
        )
        # The same findings again: the cached answer, judged against today's rules.
        again, used = await _consult(
            model, gate, now=200.0, rules_verdict="degraded", rules_summary="web is slow"
        )
    assert used and again.cached
    assert (again.verdict, again.model_verdict) == ("degraded", "healthy")
    assert len(fake.bodies("/api/chat")) == 1


async def test_a_model_may_raise_the_verdict(fake: FakeOllama) -> None:
    worse = {"verdict": "critical", "summary": "disk will fill", "recommended_actions": []}
    fake.set_reply_fn(lambda body: Reply(json_obj=worse))
    async with OllamaAdvisor(fake.url, "gemma3:270m") as model:
        result, _ = await _consult(model, rules_verdict="degraded", rules_summary="disk filling")
    assert (result.verdict, result.model_verdict, result.rules_verdict) == (
        "critical",
        "critical",
        "degraded",
    )
    assert (
        result.disagreement() == "the model thinks critical; the rules say degraded: disk filling"
    )


async def test_the_rules_are_read_when_the_answer_is_in_not_when_the_call_began(
    fake: FakeOllama,
) -> None:
    # While the model writes (20 s on a CPU host), the rules find worse: the analysis
    # published after the answer must not carry the verdict from before.
    rules = {"verdict": "degraded", "summary": "web is slow"}

    def answer(body: dict[str, object]) -> Reply:
        rules.update(verdict="critical", summary=RULES_SAY)  # meanwhile, web went down
        return Reply(json_obj={"verdict": "degraded", "summary": "slow", "recommended_actions": []})

    fake.set_reply_fn(answer)
    async with OllamaAdvisor(fake.url, "gemma3:270m") as model:
        result, used = await _consult(
            model, rules_verdict=lambda: rules["verdict"], rules_summary=lambda: rules["summary"]
        )
    assert used
    assert (result.verdict, result.rules_verdict, result.rules_summary) == (
        "critical",
        "critical",
        RULES_SAY,
    )
