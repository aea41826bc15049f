"""Crash loops as the analyzer sees them: a worker that dies every 40 s for ten minutes.

systemd brings it back each time (``Restart=always``), so most samples catch it running
and ``NRestarts`` counts up; the service manager also tells of each exit and start as an
event between samples. That is one problem with one restart proposal, not fifteen
outages, and the verdict stays degraded while it lasts even when a sample caught it up.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from watchkeeper.analysis.engine import AnalysisEngine, Transition
from watchkeeper.analysis.flapping import FlapTracker, implied_changes
from watchkeeper.config import Settings
from watchkeeper.model.incidents import Incident
from watchkeeper.model.metrics import MetricsSample
from watchkeeper.model.services import ServiceState, ServiceStatus

T0 = 1_773_000_000.0
PERIOD = 40  # it dies every 40 s ...
LOOP_FOR = 600  # ... for ten minutes
STEP = 5


def settings(**analyzer: Any) -> Settings:
    return Settings.model_validate(
        {"services": [{"name": "worker", "manager": "systemd"}], "analyzer": analyzer}
    )


def event_status(state: str) -> SimpleNamespace:
    """What the analyzer agent hands the engine for a service event."""
    return SimpleNamespace(
        name="worker",
        state=state,
        critical=False,
        detail="exited with status 1" if state == "failed" else "",
        healthy=None,
        probe_detail=None,
        last_exit_code=1 if state == "failed" else None,
        last_exit_signal=None,
    )


class Loop:
    """Samples every 5 s; in the loop the worker dies at 35 s of each 40 s and is back at
    40 s (so one sample in eight sees it failed), with events between samples if asked."""

    def __init__(self, s: Settings, *, events: bool, seen_down: bool = True) -> None:
        self.engine = AnalysisEngine(lambda: s)
        self.events, self.seen_down = events, seen_down
        self.transitions: list[Transition] = []
        self.changes: list[tuple[str, Incident]] = []
        self.verdicts: list[tuple[float, str, str]] = []  # (t, state seen, verdict)
        self.restarts = 0

    def run(self, until: float) -> None:
        for offset in range(0, int(until), STEP):
            t = T0 + offset
            looping = 0 < offset <= LOOP_FOR
            phase = offset % PERIOD
            dies = looping and phase == 35
            back = looping and phase == 0
            if back:
                self.restarts += 1
            if self.events and dies:
                self._take(self.engine.observe_service(event_status("failed"), t - 3))
            if self.events and back:
                self._take(self.engine.observe_service(event_status("running"), t - 2))
            state = "failed" if dies and self.seen_down else "running"
            status = ServiceStatus(
                name="worker",
                manager="systemd",
                state=ServiceState(state),
                restarts=self.restarts,
            )
            self._take(
                self.engine.observe(MetricsSample(timestamp=t, host="h", services=[status]), t)
            )
            self.verdicts.append((offset, state, self.engine.verdict()))

    def _take(self, transitions: list[Transition]) -> None:
        self.transitions.extend(transitions)
        self.changes.extend(self.engine.take_incident_changes())

    def fired(self, rule: str) -> int:
        return sum(1 for t in self.transitions if t.kind == "firing" and t.alert.rule == rule)

    def restart_proposals(self) -> int:
        return sum(
            1
            for t in self.transitions
            if t.kind in ("firing", "escalated")
            for s in t.alert.suggested_actions
            if s.action == "restart_service"
        )


def test_a_worker_dying_every_40s_for_ten_minutes_is_one_incident_with_one_restart() -> None:
    loop = Loop(settings(), events=True)
    loop.run(LOOP_FOR + 20)
    assert loop.fired("service_down") <= 1
    assert loop.fired("service_flapping") == 1
    assert loop.restart_proposals() == 1
    # Degraded from the second death on, also on samples that caught it running.
    flapping_from = 2 * PERIOD
    after = [(t, seen, v) for t, seen, v in loop.verdicts if t >= flapping_from]
    assert {v for _, _, v in after} == {"degraded"}, after
    assert any(seen == "running" for _, seen, _ in after)
    # One incident from the first death to the end, flapping, with the count.
    assert len({i.id for _, i in loop.changes}) == 1
    (incident,) = loop.engine.incidents_open()
    assert incident.flapping
    assert incident.key == "service:worker"
    assert incident.title == "worker is flapping"
    # 15 deaths and 15 starts in 10 min; the window holds those of the last 600 s.
    assert incident.flaps >= 28, incident.flaps
    (alert,) = [a for a in loop.engine.firing() if a.rule == "service_flapping"]
    assert "state changes in 10 min" in alert.summary
    assert alert.evidence["flaps"] == incident.flaps
    assert "a restart was proposed" in alert.evidence["restart"]


def test_each_change_counts_once_whether_heard_as_an_event_a_sample_or_both() -> None:
    counts = []
    for events in (False, True):
        loop = Loop(settings(), events=events)
        loop.run(LOOP_FOR + 20)
        counts.append(loop.engine.incidents_open()[0].flaps)
    assert counts[0] == counts[1], counts


def test_restarts_rising_between_running_samples_is_a_crash_loop() -> None:
    """Down for less than a sample interval: every sample says running, NRestarts climbs."""
    loop = Loop(settings(), events=False, seen_down=False)
    loop.run(LOOP_FOR + 20)
    assert loop.fired("service_down") == 0
    assert loop.fired("service_flapping") == 1
    assert loop.restart_proposals() == 1
    assert loop.engine.verdict() == "degraded"


def test_flapping_stops_only_after_a_quiet_period() -> None:
    loop = Loop(settings(), events=True)
    loop.run(LOOP_FOR + 600)
    last_death = max(t for t in range(0, LOOP_FOR + 1, STEP) if t % PERIOD == 35)
    last_change = last_death + 5
    steady = [(t, v) for t, _, v in loop.verdicts if t > last_change]
    still = [v for t, v in steady if t < last_change + 300]
    assert set(still) == {"degraded"}
    assert [v for t, v in steady if t >= last_change + 300] == ["healthy"] * len(
        [t for t, _ in steady if t >= last_change + 300]
    )
    assert loop.fired("service_flapping") == 1  # it did not start again on the old changes
    assert loop.engine.incidents_open() == []
    assert loop.changes[-1][0] == "resolved"


def test_a_give_up_and_a_person_resetting_it_show_on_the_incident() -> None:
    loop = Loop(settings(), events=True)
    loop.run(300)
    now = T0 + 300
    told = loop.engine.remediation_gave_up("worker", 5, "died 0.4s after starting", now)
    assert told == []  # the remediator raises its own give-up alert; nothing escalates here
    kinds = [k for k, _ in loop.engine.take_incident_changes()]
    assert kinds == ["updated"]
    (incident,) = loop.engine.incidents_open()
    assert "remediation gave up after 5 failures" in incident.root_cause
    (alert,) = [a for a in loop.engine.firing() if a.rule == "service_flapping"]
    assert alert.evidence["remediation"].startswith("remediation gave up after 5 failures")

    again = loop.engine.giveup_reset("worker", "a person", now + 60)
    assert [(t.kind, t.alert.rule) for t in again] == [("firing", "service_flapping")]
    assert [(s.action, s.target) for s in again[0].alert.suggested_actions] == [
        ("restart_service", "worker")
    ]
    (incident,) = loop.engine.incidents_open()
    assert "give-up reset by a person" in incident.root_cause


def test_implied_changes_between_two_samples() -> None:
    assert implied_changes(True, True, 0) == 0
    assert implied_changes(True, True, 3) == 6
    assert implied_changes(True, False, 0) == 1
    assert implied_changes(True, False, 2) == 5
    assert implied_changes(False, True, 0) == 1  # started by hand, no restart counted
    assert implied_changes(False, True, 1) == 1
    assert implied_changes(False, False, 2) == 4


def test_a_stop_by_a_person_and_a_counter_reset_are_not_crashes() -> None:
    flaps = FlapTracker()
    flaps.sample("web", "running", 7, T0)
    flaps.sample("web", "stopped", 7, T0 + 5)
    flaps.sample("web", "running", 0, T0 + 10)  # counter reset by the manager
    state = flaps.judge("web", T0 + 10, window=600, threshold=3)
    assert state.changes == 0 and not state.flapping


def test_a_service_that_dies_at_once_after_each_restart_is_one_outage() -> None:
    """exit 3 right after every start: each restart brings it up for a moment. That is one
    service_down alert from first to last (the remediator's retries, backoff and give-up
    stay with it), flapping on top, and no new restart proposal from the analyzer."""
    engine = AnalysisEngine(lambda: settings())
    transitions: list[Transition] = []
    t = T0
    for attempt in range(6):
        transitions += engine.observe_service(event_status("failed"), t + 0.3)
        status = ServiceStatus(name="worker", manager="systemd", state=ServiceState.FAILED)
        transitions += engine.observe(
            MetricsSample(timestamp=t + 1, host="h", services=[status]), t + 1
        )
        # The remediator restarts it (backing off a little more each time); up for 0.3 s.
        transitions += engine.observe_service(event_status("running"), t + 2 + attempt)
        t += 3 + attempt
    fired = [(x.alert.rule, x.kind) for x in transitions if x.kind != "escalated"]
    assert fired.count(("service_down", "firing")) == 1, fired
    assert ("service_down", "resolved") not in fired
    assert fired.count(("service_flapping", "firing")) == 1
    proposals = [
        s.action for x in transitions if x.kind == "firing" for s in x.alert.suggested_actions
    ]
    assert proposals == ["restart_service"]
    assert engine.verdict() == "degraded"
