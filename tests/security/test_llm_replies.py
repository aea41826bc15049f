"""An LLM server that trickles its answer, or answers with 60 MB: the API must still answer
``analyze_now`` within the advisor's own deadline (never a 504 while the advisor goes on
waiting), the daemon must not read the huge reply whole, and the rules must carry on.

The server is watchkeeper's fake Ollama (the official client cannot tell it from the
real one) with its ``trickle`` and ``oversized`` faults; the daemon is a real
``watchkeeper run`` pointed at it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from state_daemon import Daemon, rss_kb, wait_until

from watchkeeper.llm import call_deadline
from watchkeeper.testing.fake_ollama import FakeOllama, Reply
from watchkeeper.testing.overrides import QUIET_BUT_MEMORY

TIMEOUT, ATTEMPTS, DELAY = 3.0, 2, 0.5


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(["mistral"]) as server:
        yield server


def llm_daemon(tmp_path: Path, fake: FakeOllama) -> Daemon:
    return Daemon(
        tmp_path,
        tmp_path / "data",
        *QUIET_BUT_MEMORY,
        "ollama.enabled=true",
        f'ollama.url="{fake.url}"',
        "ollama.model=mistral",
        f"ollama.timeout={TIMEOUT}",
        f"ollama.retry_attempts={ATTEMPTS}",
        f"ollama.retry_delay={DELAY}",
        interval=0.5,
    )


def token(daemon: Daemon) -> str:
    return str((daemon.data_dir / "api_token").read_text().strip())


def analyze_now(daemon: Daemon, wait: float) -> httpx.Response:
    return httpx.post(
        daemon.url + "/api/command",
        json={"command": "analyze_now", "target": "analyzer"},
        headers={"Authorization": f"Bearer {token(daemon)}"},
        timeout=wait,
    )


def settle_first_call(daemon: Daemon, fake: FakeOllama) -> None:
    """The firing alert's own LLM call takes the scripted quick answer; wait for it."""
    wait_until("the memory alert fires", lambda: daemon.get("/api/alerts").json()["firing"])
    wait_until("the alert's own LLM call is answered", lambda: fake.bodies("/api/chat"))
    wait_until(
        "its analysis is published",
        lambda: daemon.get("/api/analysis").json()["latest_llm"] is not None,
    )


def test_a_trickling_model_gets_an_answer_within_the_advisor_deadline_never_a_504(
    tmp_path: Path, fake: FakeOllama
) -> None:
    fake.script([Reply()])  # the alert's own call: a quick, valid answer
    fake.set_reply_fn(lambda body: Reply(fault="trickle"))  # then 1 byte per second
    deadline = call_deadline(TIMEOUT, ATTEMPTS, DELAY)
    with llm_daemon(tmp_path, fake) as daemon:
        settle_first_call(daemon, fake)
        sent = time.monotonic()
        reply = analyze_now(daemon, wait=deadline + 60)
        took = time.monotonic() - sent
        assert reply.status_code == 200, (reply.status_code, reply.text)
        assert took <= deadline + 10, (took, deadline)
        analysis = reply.json()["replies"]["analyzer"]["analysis"]
        # Marked as fallen back to the rules, with the reason, not silently dropped.
        assert analysis["source"] == "rules"
        assert "timeout" in analysis["fallback_reason"], analysis
        assert len(fake.bodies("/api/chat")) == 1 + ATTEMPTS
        latest = daemon.get("/api/analysis").json()["latest"]
        assert latest["trigger"] == "analyze_now" and latest["fallback_reason"]


def test_a_60_mb_reply_is_refused_after_a_bounded_read_and_the_rules_carry_on(
    tmp_path: Path, fake: FakeOllama
) -> None:
    fake.script([Reply()])
    fake.set_reply_fn(lambda body: Reply(fault="oversized"))
    with llm_daemon(tmp_path, fake) as daemon:
        settle_first_call(daemon, fake)
        assert daemon.proc is not None
        before = rss_kb(daemon.proc.pid)
        reply = analyze_now(daemon, wait=120)
        after = rss_kb(daemon.proc.pid)
        assert reply.status_code == 200, reply.text
        # Reading 60 MB whole (and decoding it) costs well over 100 MB; 256 KB does not.
        grew_mb = (after - before) / 1024
        print(f"daemon RSS {before / 1024:.0f} MB -> {after / 1024:.0f} MB")
        assert grew_mb < 30, f"RSS grew by {grew_mb:.0f} MB"
        analysis = reply.json()["replies"]["analyzer"]["analysis"]
        assert analysis["source"] == "rules", analysis
        assert "invalid reply" in analysis["fallback_reason"], analysis
        assert "256 KB" in analysis["fallback_reason"], analysis
        # An invalid reply is not retried: repeating would fetch the same 60 MB.
        assert len(fake.bodies("/api/chat")) == 2
        # The rules still hold the alert, and the API still answers.
        assert daemon.get("/api/alerts").json()["firing"]
        assert daemon.get("/api/health").status_code == 200
