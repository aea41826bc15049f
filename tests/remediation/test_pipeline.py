"""The remediation lifecycle driven directly, without a bus: real built-in actions against
real child processes, scripts and temp directories; and, on a bus, the one escalation path
(a failure is escalated exactly once, and nobody tries the failed remedy again)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import psutil
import pytest

from watchkeeper.agents.analyzer import AnalyzerAgent
from watchkeeper.agents.base import AgentContext, BaseAgent
from watchkeeper.agents.remediator import RemediatorAgent
from watchkeeper.bus import InMemoryBus
from watchkeeper.config import Settings, deep_merge
from watchkeeper.live_config import ConfigStore
from watchkeeper.model.actions import ActionOutcome, ActionRecord, ActionRequest
from watchkeeper.model.alerts import Alert, Severity, SuggestedAction
from watchkeeper.model.services import ServiceEvent
from watchkeeper.remediation.actions import ActionContext
from watchkeeper.remediation.builtin import builtin_registry
from watchkeeper.remediation.pipeline import PendingNotFound, RemediationPipeline
from watchkeeper.services import ProcessServiceManager, build_managers

DAY = 86400.0
FAIL = [sys.executable, "-c", "raise SystemExit(3)"]


class Sink:
    """What the pipeline emitted, in order, by topic name."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    async def __call__(self, topic: Any, value: Any) -> None:
        self.events.append((str(getattr(topic, "name", topic)), value))

    def named(self, topic: str) -> list[Any]:
        return [value for name, value in self.events if name == topic]


def make_store(
    tmp_path: Path, services: list[dict[str, Any]] | None = None, **remediation: Any
) -> ConfigStore:
    base = Settings.model_validate({}).model_dump(mode="json")
    overrides = {
        "data_dir": str(tmp_path / "data"),
        "services": services or [],
        "ollama": {"enabled": False},
        "remediation": {"healing_cooldown": 0, **remediation},
    }
    return ConfigStore(Settings.model_validate(deep_merge(base, overrides)), None, InMemoryBus())


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[tuple[RemediationPipeline, Sink, ConfigStore]]:
    cleanup = tmp_path / "cleanup"
    cleanup.mkdir()
    store = make_store(
        tmp_path,
        cleanup_dirs=[{"path": str(cleanup), "older_than_days": 1}],
        scripts={
            "fails": {"argv": FAIL},
            "fails_too": {"argv": FAIL},
            "mends": {"argv": [sys.executable, "-c", f"open({str(tmp_path / 'mended')!r}, 'w')"]},
        },
        allow_actions=["run_script", "kill_process"],
    )
    sink = Sink()
    pipeline = RemediationPipeline(
        builtin_registry(), ActionContext(settings=store, services={}), emit=sink
    )
    pipeline.start()
    yield pipeline, sink, store
    await pipeline.close()


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def alert_with(*suggestions: SuggestedAction, fingerprint: str = "fp1") -> Alert:
    return Alert(
        id=f"id-{fingerprint}",
        fingerprint=fingerprint,
        rule="test_rule",
        severity=Severity.CRITICAL,
        subject="host",
        summary="something broke",
        suggested_actions=list(suggestions),
        started_at=0,
        updated_at=0,
    )


def script(name: str, confidence: float = 0.5) -> SuggestedAction:
    return SuggestedAction(action="run_script", params={"script": name}, confidence=confidence)


def old_file(path: Path) -> Path:
    path.write_bytes(b"x" * 1024)
    old = time.time() - 3 * DAY
    os.utime(path, (old, old))
    return path


async def until(predicate: Any, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


def finished(pipeline: RemediationPipeline) -> list[ActionRecord]:
    return [
        r
        for r in pipeline.audit(limit=1000)
        if r.outcome not in (ActionOutcome.PENDING, ActionOutcome.RUNNING)
    ]


# -- decide, run, verify ---------------------------------------------------------------------


async def test_an_alert_gets_its_real_process_killed_and_verified(
    rig: tuple[RemediationPipeline, Sink, ConfigStore], sleeper: subprocess.Popen[bytes]
) -> None:
    pipeline, sink, _ = rig
    created = psutil.Process(sleeper.pid).create_time()
    kill = SuggestedAction(
        action="kill_process",
        target=str(sleeper.pid),
        target_kind="process",
        params={"create_time": created, "grace": 1},
        confidence=0.9,
    )
    record = await pipeline.on_alert(alert_with(kill))
    assert record is not None and record.outcome is ActionOutcome.RUNNING
    done = await until(lambda: finished(pipeline))
    assert [r.outcome for r in done] == [ActionOutcome.SUCCEEDED]
    assert done[0].alert_id == "id-fp1" and done[0].finished_at is not None
    assert sleeper.wait(timeout=5) is not None  # really gone
    assert [name for name, _ in sink.events] == ["remediation.started", "remediation.succeeded"]
    assert sink.named("remediation.escalated") == []


async def test_bad_params_are_refused_before_anything_is_recorded_with_them(
    rig: tuple[RemediationPipeline, Sink, ConfigStore], sleeper: subprocess.Popen[bytes]
) -> None:
    pipeline, sink, _ = rig
    request = ActionRequest(
        action="kill_process",
        target=str(sleeper.pid),
        proposer="llm",
        params={"create_time": "not a number"},
    )
    record = await pipeline.submit(request)
    assert record.outcome is ActionOutcome.REFUSED and record.params == {}
    assert sink.named("remediation.refused")[0].params == {}
    assert sleeper.poll() is None


# -- escalate: the next candidate, then a person, exactly once -------------------------------


async def test_a_failed_chain_escalates_exactly_once_after_its_last_candidate(
    rig: tuple[RemediationPipeline, Sink, ConfigStore],
) -> None:
    pipeline, sink, _ = rig
    await pipeline.on_alert(alert_with(script("fails", 0.9), script("fails_too", 0.5)))
    await until(lambda: sink.named("remediation.escalated"))
    await asyncio.sleep(0.3)  # nothing more comes
    ran = [r.params["script"] for r in sink.named("remediation.failed")]
    assert ran == ["fails", "fails_too"]  # the stronger candidate after the first
    escalations = sink.named("remediation.escalated")
    assert len(escalations) == 1
    assert escalations[0].action == "run_script" and escalations[0].fingerprint == "fp1"
    assert "exit 3" in escalations[0].detail


async def test_a_working_next_candidate_means_no_escalation(
    rig: tuple[RemediationPipeline, Sink, ConfigStore], tmp_path: Path
) -> None:
    pipeline, sink, _ = rig
    await pipeline.on_alert(alert_with(script("fails", 0.9), script("mends", 0.5)))
    await until(lambda: sink.named("remediation.succeeded"))
    await asyncio.sleep(0.2)
    assert (tmp_path / "mended").exists()  # the script really ran
    assert [r.outcome for r in finished(pipeline)] == [
        ActionOutcome.FAILED,
        ActionOutcome.SUCCEEDED,
    ]
    assert sink.named("remediation.escalated") == []


async def test_a_refused_candidate_is_passed_over_and_a_person_told_once(
    rig: tuple[RemediationPipeline, Sink, ConfigStore],
) -> None:
    pipeline, sink, _ = rig
    ourselves = SuggestedAction(  # the daemon's own pid is protected: refused
        action="kill_process",
        target=str(os.getpid()),
        target_kind="process",
        params={"create_time": psutil.Process().create_time()},
        confidence=0.1,
    )
    await pipeline.on_alert(alert_with(script("fails", 0.9), ourselves))
    await until(lambda: sink.named("remediation.escalated"))
    await asyncio.sleep(0.2)
    assert [r.outcome for r in finished(pipeline)] == [
        ActionOutcome.FAILED,
        ActionOutcome.REFUSED,
    ]
    (escalation,) = sink.named("remediation.escalated")
    assert escalation.action == "run_script"


async def test_a_resolved_alert_drops_its_spare_candidates(
    rig: tuple[RemediationPipeline, Sink, ConfigStore],
) -> None:
    pipeline, _, store = rig
    await store.update({"remediation.mode": "approve"})
    await pipeline.on_alert(alert_with(script("fails")))
    assert len(pipeline.pending()) == 1
    await pipeline.on_resolved("fp1")
    assert pipeline.pending() == []
    assert finished(pipeline)[-1].outcome is ActionOutcome.REJECTED
    assert "alert resolved" in finished(pipeline)[-1].detail


# -- give-ups and the model's proposals ------------------------------------------------------


async def test_a_crash_looping_service_is_given_up_once_and_a_person_resets_it(
    rig: tuple[RemediationPipeline, Sink, ConfigStore],
) -> None:
    pipeline, sink, store = rig
    await store.update({"remediation.crash_loop_max_failures": 2})
    for _ in range(3):
        await pipeline.on_service_exit("web", failed_start=True, uptime=0.01)
    (gave_up,) = sink.named("remediation.gave_up")
    assert gave_up.target == "web" and gave_up.failures == 2
    (alert,) = sink.named("alert.firing")
    assert alert.rule == "remediation_gave_up" and alert.severity is Severity.CRITICAL
    assert [g.target for g in pipeline.given_up()] == ["web"]
    assert await pipeline.reset_giveup("web", "tester") is True
    assert await pipeline.reset_giveup("web", "tester") is False  # nothing left to reset
    (cleared,) = sink.named("alert.resolved")
    assert cleared.fingerprint == alert.fingerprint and "tester" in cleared.summary
    assert pipeline.given_up() == []


async def test_only_confident_model_proposals_are_submitted(
    rig: tuple[RemediationPipeline, Sink, ConfigStore], sleeper: subprocess.Popen[bytes]
) -> None:
    pipeline, _, store = rig
    # The model alone may run a kill here (the default needs the rules to agree: see
    # tests/remediation/test_llm_autonomy.py).
    await store.update({"remediation.llm_autonomy": "any"})
    created = psutil.Process(sleeper.pid).create_time()

    def kill(confidence: float) -> SuggestedAction:
        return SuggestedAction(
            action="kill_process",
            target=str(sleeper.pid),
            target_kind="process",
            params={"create_time": created},
            confidence=confidence,
        )

    await pipeline.on_recommendations(
        [kill(0.2)], source="mistral", alert_id="a1", fingerprint="fp1"
    )
    assert pipeline.audit() == [] and sleeper.poll() is None  # below min_confidence
    await pipeline.on_recommendations(
        [kill(0.9)], source="mistral", alert_id="a1", fingerprint="fp1"
    )
    (done,) = await until(lambda: finished(pipeline))
    assert done.outcome is ActionOutcome.SUCCEEDED
    assert (done.proposer, done.proposed_by, done.alert_id) == ("llm", "mistral", "a1")
    assert sleeper.wait(timeout=5) is not None


# -- approvals ---------------------------------------------------------------------------


async def test_an_approved_action_runs_as_the_persons(
    rig: tuple[RemediationPipeline, Sink, ConfigStore], tmp_path: Path
) -> None:
    pipeline, _, store = rig
    await store.update({"remediation.mode": "approve"})
    stale = old_file(tmp_path / "cleanup" / "old.log")
    request = ActionRequest(
        action="clean_directory",
        target=str(tmp_path / "cleanup"),
        target_kind="path",
        proposer="rule",
    )
    waiting = await pipeline.submit(request)
    assert waiting.outcome is ActionOutcome.PENDING and stale.exists()
    running = await pipeline.approve(waiting.id, "tester")
    assert running.outcome is ActionOutcome.RUNNING and running.proposer == "user"
    await until(lambda: not stale.exists())
    with pytest.raises(PendingNotFound):
        await pipeline.reject(waiting.id, "tester")


# -- on a bus: the analyzer and the remediator share the one escalation path -------------------


async def _running(agent: BaseAgent) -> asyncio.Task[None]:
    task = asyncio.get_running_loop().create_task(agent.run())
    await until(lambda: str(agent.state) == "running")
    return task


async def test_a_failing_restart_is_retried_to_the_give_up_then_escalated_once(
    tmp_path: Path,
) -> None:
    broken = {"name": "broken", "argv": FAIL, "min_uptime": 0.5, "critical": True}
    store = make_store(
        tmp_path,
        [broken],
        crash_loop_backoff_initial=0.1,
        crash_loop_max_failures=3,
        verify_timeout=3,
    )
    managers = build_managers(store.current.services, None, log_dir=tmp_path / "logs")
    bus = store._bus
    assert bus is not None
    ctx = AgentContext(bus=bus, settings=store, data_dir=tmp_path, services=managers)
    analyzer = AnalyzerAgent("analyzer", ctx)
    remediator = RemediatorAgent("remediator", ctx, actions=builtin_registry())
    watch = bus.subscribe("#", name="test", maxsize=1000)
    tasks = [await _running(analyzer), await _running(remediator)]
    try:
        event = ServiceEvent(
            name="broken",
            manager="process",
            kind="exited",
            exit_code=3,
            at=datetime.now(UTC),
            uptime=0.01,
            failed_start=True,
        )
        await bus.publish("service.exited", event, sender="sensor")
        seen: list[str] = []

        async def collect(seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    message = await watch.get(timeout=0.1)
                except TimeoutError:
                    continue
                seen.append(message.topic)

        await collect(6.0)
        # Retried with backoff until the crash-loop guard gave up, and never after it.
        restarts = seen.count("remediation.started")
        assert restarts >= 2 and seen.count("remediation.failed") == restarts
        assert seen.count("remediation.gave_up") == 1
        assert "remediation.started" not in seen[seen.index("remediation.gave_up") :]
        # One escalation for the whole chain, then the alert is escalated once.
        assert seen.count("remediation.escalated") == 1
        assert seen.count("alert.escalated") == 1
        assert seen.index("remediation.escalated") < seen.index("alert.escalated")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await cast(ProcessServiceManager, managers["process"]).aclose()
