"""``reset_failed``: the remedy for a unit systemd gave up on, under the one policy gate.

The unit is the stand-in ``systemctl`` of tests/services (systemd is not PID 1 here); the
pipeline, policy, audit and the analyzer's checks are the real ones.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any, Literal

import pytest

from watchkeeper.analysis.checks import service_checks
from watchkeeper.analysis.engine import AnalysisEngine
from watchkeeper.bus import InMemoryBus
from watchkeeper.config import Settings, deep_merge
from watchkeeper.live_config import ConfigStore
from watchkeeper.model.actions import ActionOutcome, ActionRecord, ActionRequest
from watchkeeper.model.services import ServiceState, ServiceStatus
from watchkeeper.remediation.actions import ActionContext
from watchkeeper.remediation.builtin import builtin_registry
from watchkeeper.remediation.pipeline import RemediationPipeline
from watchkeeper.services import build_managers

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))
from test_services_systemd import FakeSystemd


class _Sink:
    """What the pipeline emitted (topic name, value), in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    async def __call__(self, topic: Any, value: Any) -> None:
        self.events.append((str(getattr(topic, "name", topic)), value))


def _store(tmp_path: Path, **remediation: Any) -> ConfigStore:
    base = Settings.model_validate({}).model_dump(mode="json")
    overrides = {
        "data_dir": str(tmp_path / "data"),
        "services": [
            {"name": "web", "manager": "systemd", "min_uptime": 0, "watch": "poll"},
            {"name": "worker", "argv": [sys.executable, "-c", "pass"]},
        ],
        "ollama": {"enabled": False},
        "remediation": {"healing_cooldown": 0, "verify_timeout": 5, **remediation},
    }
    return ConfigStore(Settings.model_validate(deep_merge(base, overrides)), None, InMemoryBus())


async def _until(predicate: Any, timeout: float = 10) -> Any:
    async with asyncio.timeout(timeout):
        while not (value := predicate()):
            await asyncio.sleep(0.02)
        return value


def _done(pipeline: RemediationPipeline) -> list[ActionRecord]:
    return [
        r
        for r in pipeline.audit(limit=100)
        if r.outcome not in (ActionOutcome.PENDING, ActionOutcome.RUNNING)
    ]


def _request(target: str, proposer: Literal["rule", "user"] = "rule") -> ActionRequest:
    return ActionRequest(
        action="reset_failed", target=target, target_kind="service", proposer=proposer
    )


async def test_reset_failed_waits_for_a_person_then_runs_argv_and_is_audited(
    tmp_path: Path,
) -> None:
    fake = FakeSystemd(tmp_path)
    started_us = str(int((time.monotonic() - 100) * 1_000_000))
    fake.set_unit(
        "web.service", ActiveState="failed", SubState="failed", Result="start-limit-hit",
        MainPID="0", Restart="on-failure", ExecMainStartTimestampMonotonic=started_us,
    )  # fmt: skip
    store = _store(tmp_path)
    managers = build_managers(store().services, systemctl=fake.executable)
    pipeline = RemediationPipeline(
        builtin_registry(), ActionContext(settings=store, services=managers), emit=_Sink()
    )
    try:
        waiting = await pipeline.submit(_request("web"))
        assert waiting.outcome is ActionOutcome.PENDING
        assert "dangerous" in waiting.detail
        assert not any("reset-failed" in call for call in fake.calls())
        await pipeline.approve(waiting.id, "alice")
        (done,) = await _until(lambda: _done(pipeline))
        assert done.outcome is ActionOutcome.SUCCEEDED, done.detail
        assert done.action == "reset_failed" and done.target == "web"
        acts = [c for c in fake.calls() if c[0] == "--no-ask-password"]
        assert acts == [
            ["--no-ask-password", "--no-pager", "reset-failed", "web.service"],
            ["--no-ask-password", "--no-pager", "start", "web.service"],
        ]
        assert (await managers["systemd"].status("web")).state is ServiceState.RUNNING
    finally:
        await pipeline.close()
        for manager in managers.values():
            await manager.aclose()


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("worker", "not managed by systemd"),
        ("ghost", "not configured"),
        ("web; rm -rf /", "not configured"),
    ],
)
async def test_reset_failed_is_refused_off_systemd(tmp_path: Path, target: str, why: str) -> None:
    fake = FakeSystemd(tmp_path)
    store = _store(tmp_path, allow_actions=["reset_failed"])
    managers = build_managers(
        store().services, systemctl=fake.executable, log_dir=tmp_path / "logs"
    )
    pipeline = RemediationPipeline(
        builtin_registry(), ActionContext(settings=store, services=managers), emit=_Sink()
    )
    try:
        record = await pipeline.submit(_request(target, proposer="user"))
        assert record.outcome is ActionOutcome.REFUSED
        assert why in record.detail
        assert pipeline.audit()[0].outcome is ActionOutcome.REFUSED  # audited all the same
        assert fake.calls() == []
    finally:
        await pipeline.close()
        for manager in managers.values():
            await manager.aclose()


def _status(**extra: Any) -> ServiceStatus:
    base: dict[str, Any] = {
        "name": "web",
        "manager": "systemd",
        "state": ServiceState.FAILED,
        "detail": "web.service: failed/failed, result exit-code",
    }
    return ServiceStatus(**{**base, **extra})


def test_the_down_check_proposes_what_fits_systemd() -> None:
    plain = next(service_checks(_status()))
    assert [a.action for a in plain.suggested] == ["restart_service"]

    limit = next(service_checks(_status(start_limit_hit=True, restart_policy="on-failure")))
    assert [a.action for a in limit.suggested] == ["reset_failed"]
    assert limit.evidence["start_limit_hit"] is True
    assert "restart_service" in limit.evidence["not_proposed"]

    itself = next(service_checks(_status(restart_policy="always", restarts=3)))
    assert itself.suggested == ()
    assert "Restart=always" in itself.evidence["not_proposed"]["restart_service"]
    assert itself.evidence["restarts"] == 3

    logged = next(service_checks(_status(journal=["boom \x1b[2J", "bye"])))
    assert logged.evidence["journal"] == ["boom  [2J", "bye"]  # the escape is a space


def test_a_restart_always_crash_loop_gets_no_restart_from_watchkeeper(
    tmp_path: Path,
) -> None:
    """Samples say Restart=always; the deaths come as events without it (as the analyzer
    builds them): the loop is a service_flapping alert that proposes nothing to race."""
    settings = Settings.model_validate(
        {"services": [{"name": "web", "manager": "systemd", "critical": True}]}
    )
    engine = AnalysisEngine(lambda: settings)
    from watchkeeper.model.metrics import MetricsSample

    now = 1_000.0
    up = ServiceStatus(
        name="web", manager="systemd", state=ServiceState.RUNNING, pid=10,
        restart_policy="always", critical=True,
    )  # fmt: skip
    sample = MetricsSample(timestamp=now, host="h", services=[up])
    engine.observe(sample, now)

    class Event:
        name, critical, healthy, probe_detail = "web", True, None, None
        last_exit_code, last_exit_signal = None, 9

        def __init__(self, state: str) -> None:
            self.state, self.detail = state, "exited" if state == "failed" else ""

    proposed: list[str] = []
    for i in range(6):
        for state in ("failed", "running"):
            for t in engine.observe_service(Event(state), now + i + (0.5 if state else 0)):
                proposed += [a.action for a in t.alert.suggested_actions]
    firing = {a.rule for a in engine.firing()}
    assert "service_flapping" in firing or "service_down" in firing
    assert "restart_service" not in proposed
    flap = [a for a in engine.firing() if a.rule == "service_flapping"]
    if flap:
        assert "Restart=always" in str(flap[0].evidence.get("not_proposed"))


def test_a_start_limit_hit_after_the_alert_fired_brings_reset_failed() -> None:
    """The unit's death fired service_down (restart proposed); systemd then gives up on
    it: the alert fires again, now proposing reset_failed instead."""
    settings = Settings.model_validate({"services": [{"name": "web", "manager": "systemd"}]})
    engine = AnalysisEngine(lambda: settings)
    from watchkeeper.model.metrics import MetricsSample

    first = engine.observe(MetricsSample(timestamp=1.0, host="h", services=[_status()]), 1.0)
    (down,) = [t.alert for t in first if t.alert.rule == "service_down"]
    assert [a.action for a in down.suggested_actions] == ["restart_service"]
    limited = _status(start_limit_hit=True, restart_policy="on-failure")
    again = engine.observe(MetricsSample(timestamp=2.0, host="h", services=[limited]), 2.0)
    (fired,) = [t for t in again if t.alert.rule == "service_down"]
    assert fired.kind == "firing"
    assert [a.action for a in fired.alert.suggested_actions] == ["reset_failed"]
    assert fired.alert.id == down.id  # the same alert, not a new one
    later = engine.observe(MetricsSample(timestamp=3.0, host="h", services=[limited]), 3.0)
    assert [t for t in later if t.alert.rule == "service_down"] == []  # said once
