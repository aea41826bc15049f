"""How much the model may do alone: ``remediation.llm_autonomy`` and ``never_auto``.

A real pipeline with the built-in actions acts on real sleeping processes: a model's kill
that the rules do not back waits for a person (and the process lives), one the rules
suggest for the same process runs, a safe action runs alone, ``none`` holds everything,
and ``drop_caches`` waits whoever proposes it. Each waiting record says why.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from watchkeeper.bus import InMemoryBus
from watchkeeper.config import Settings
from watchkeeper.config.loading import deep_merge
from watchkeeper.live_config import ConfigStore
from watchkeeper.model.actions import ActionOutcome, ActionRecord
from watchkeeper.model.alerts import Alert, Severity, SuggestedAction
from watchkeeper.remediation.actions import ActionContext
from watchkeeper.remediation.builtin import builtin_registry
from watchkeeper.remediation.pipeline import RemediationPipeline

Rig = tuple[RemediationPipeline, ConfigStore]


async def _ignore(topic: Any, value: Any) -> None:
    return None


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    base = Settings.model_validate({}).model_dump(mode="json")
    overrides = {
        "data_dir": str(tmp_path / "data"),
        "ollama": {"enabled": False},
        # kill_process is allowed in auto mode, as an operator might: autonomy is the
        # only thing that stands between a model's kill and the process.
        "remediation": {"healing_cooldown": 0, "allow_actions": ["kill_process", "drop_caches"]},
    }
    store = ConfigStore(Settings.model_validate(deep_merge(base, overrides)), None, InMemoryBus())
    pipeline = RemediationPipeline(
        builtin_registry(), ActionContext(settings=store, services={}), emit=_ignore
    )
    pipeline.start()
    yield pipeline, store
    await pipeline.close()


@pytest.fixture
def sleepers() -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def kill(proc: subprocess.Popen[bytes], confidence: float = 0.9) -> SuggestedAction:
    return SuggestedAction(
        action="kill_process",
        target=str(proc.pid),
        target_kind="process",
        params={"create_time": psutil.Process(proc.pid).create_time()},
        confidence=confidence,
        source="gemma3:270m",
    )


def renice(proc: subprocess.Popen[bytes]) -> SuggestedAction:
    suggestion = kill(proc)
    return suggestion.model_copy(update={"action": "renice_process"})


def alert_with(*suggestions: SuggestedAction, fingerprint: str = "fp1") -> Alert:
    return Alert(
        id=f"id-{fingerprint}",
        fingerprint=fingerprint,
        rule="runaway_process",
        severity=Severity.CRITICAL,
        subject="host",
        summary="a process pins the CPU",
        suggested_actions=list(suggestions),
        started_at=0,
        updated_at=0,
    )


async def model_says(pipeline: RemediationPipeline, *suggestions: SuggestedAction) -> None:
    await pipeline.on_recommendations(
        list(suggestions), source="gemma3:270m", alert_id="id-fp1", fingerprint="fp1"
    )


def by_model(pipeline: RemediationPipeline) -> list[ActionRecord]:
    return [r for r in pipeline.audit() if r.proposer == "llm"]


async def finished(pipeline: RemediationPipeline, count: int = 1) -> list[ActionRecord]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done = [r for r in pipeline.audit() if r.outcome is ActionOutcome.SUCCEEDED]
        if len(done) >= count:
            return done
        await asyncio.sleep(0.02)
    raise AssertionError(f"not finished: {pipeline.audit()}")


async def test_by_default_a_models_kill_the_rules_do_not_back_waits_for_a_person(
    rig: Rig, sleepers: Callable[[], subprocess.Popen[bytes]]
) -> None:
    pipeline, _ = rig
    victim = sleepers()
    await model_says(pipeline, kill(victim))
    (record,) = by_model(pipeline)
    assert record.outcome is ActionOutcome.PENDING
    assert "the rules do not suggest kill_process" in record.detail
    assert "remediation.llm_autonomy=corroborated" in record.detail
    assert [p.id for p in pipeline.pending()] == [record.id]
    await asyncio.sleep(0.3)
    assert victim.poll() is None  # alive: nobody said yes


async def test_the_same_kill_the_rules_suggest_runs_without_a_person(
    rig: Rig, sleepers: Callable[[], subprocess.Popen[bytes]]
) -> None:
    pipeline, _ = rig
    first, second, bystander = sleepers(), sleepers(), sleepers()
    # The rules suggest killing either hog; they act on one, the other is their spare.
    await pipeline.on_alert(alert_with(kill(first), kill(second)))
    await finished(pipeline)
    deadline = time.monotonic() + 5
    while first.poll() is None and second.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    spare = second if first.poll() is not None else first
    assert spare.poll() is None
    await model_says(pipeline, kill(spare), kill(bystander))
    await finished(pipeline, count=2)
    assert spare.wait(timeout=5) is not None  # corroborated: it ran
    outcomes = {r.target: r.outcome for r in by_model(pipeline)}
    assert outcomes[str(bystander.pid)] is ActionOutcome.PENDING  # not corroborated
    assert bystander.poll() is None
    # The alert resolves: its suggestions no longer back anything.
    await pipeline.on_resolved("fp1")
    third = sleepers()
    await model_says(pipeline, kill(third))
    assert by_model(pipeline)[-1].outcome is ActionOutcome.PENDING


async def test_a_safe_action_runs_alone_unless_autonomy_is_none(
    rig: Rig, sleepers: Callable[[], subprocess.Popen[bytes]]
) -> None:
    pipeline, store = rig
    hog = sleepers()
    await model_says(pipeline, renice(hog))
    (done,) = await finished(pipeline)
    assert (done.action, done.proposer) == ("renice_process", "llm")

    await store.update({"remediation.llm_autonomy": "none"})
    other = sleepers()
    await model_says(pipeline, renice(other))
    record = by_model(pipeline)[-1]
    assert record.outcome is ActionOutcome.PENDING
    assert "remediation.llm_autonomy=none" in record.detail


async def test_autonomy_safe_holds_even_a_corroborated_dangerous_action(
    rig: Rig, sleepers: Callable[[], subprocess.Popen[bytes]]
) -> None:
    pipeline, store = rig
    await store.update({"remediation.llm_autonomy": "safe", "remediation.mode": "approve"})
    first, second = sleepers(), sleepers()
    await pipeline.on_alert(alert_with(kill(first), kill(second)))  # the rules agree...
    await store.update({"remediation.mode": "auto"})
    await model_says(pipeline, kill(second))
    record = by_model(pipeline)[-1]
    assert record.outcome is ActionOutcome.PENDING  # ...but only safe actions run alone
    assert "dangerous" in record.detail and "llm_autonomy=safe" in record.detail
    assert second.poll() is None


async def test_autonomy_any_lets_the_model_act_like_a_rule(
    rig: Rig, sleepers: Callable[[], subprocess.Popen[bytes]]
) -> None:
    pipeline, store = rig
    await store.update({"remediation.llm_autonomy": "any"})
    victim = sleepers()
    await model_says(pipeline, kill(victim))
    await finished(pipeline)
    assert victim.wait(timeout=5) is not None


@pytest.mark.parametrize("proposer", ["rule", "llm"])
async def test_drop_caches_never_runs_automatically_whoever_proposes_it(
    rig: Rig, proposer: str
) -> None:
    pipeline, store = rig
    await store.update({"remediation.llm_autonomy": "any"})  # even the loosest setting
    drop = SuggestedAction(action="drop_caches", confidence=0.9, source="gemma3:270m")
    if proposer == "rule":
        await pipeline.on_alert(alert_with(drop))
    else:
        await model_says(pipeline, drop)
    (record,) = pipeline.audit()
    assert (record.action, record.outcome) == ("drop_caches", ActionOutcome.PENDING)
    assert "never runs without a person (remediation.never_auto)" in record.detail
