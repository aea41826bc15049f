"""FleetState: every host as the fleet view knows it, read with a fake clock."""

from __future__ import annotations

import json

import pytest

from watchkeeper.config.fleet import FleetSettings
from watchkeeper.fleet.state import DROP_LOST_AFTER, MAX_ACTIONS, MAX_ALERTS, FleetState
from watchkeeper.model.actions import ActionOutcome, ActionRecord
from watchkeeper.model.alerts import Alert, AlertState, Severity, fingerprint_of
from watchkeeper.model.fleet import FleetHostState, HostBeat
from watchkeeper.model.incidents import Incident, IncidentState
from watchkeeper.model.metrics import MetricsSample

SETTINGS = FleetSettings(heartbeat_interval=5, stale_after=15, lost_after=60)


def beat(host: str, at: float, **fields: object) -> HostBeat:
    return HostBeat.model_validate(
        {"host": host, "sent_at": at, "interval": 5, "status": "healthy", **fields}
    )


def alert(rule: str, subject: str, at: float, severity: str = "warning", **fields: object) -> Alert:
    return Alert.model_validate(
        {
            "id": f"{rule}-{subject}",
            "fingerprint": fingerprint_of(rule, subject),
            "rule": rule,
            "severity": severity,
            "subject": subject,
            "summary": f"{subject} trouble",
            "started_at": at,
            "updated_at": at,
            **fields,
        }
    )


def record(rid: str, outcome: str, at: float) -> ActionRecord:
    return ActionRecord(
        id=rid,
        action="restart_service",
        target="web",
        proposer="rule",
        outcome=ActionOutcome(outcome),
        created_at=at,
    )


def test_up_stale_lost_follow_the_newest_message_age() -> None:
    state = FleetState(SETTINGS)
    state.observe_beat(beat("web-1", 1000), 1000)
    assert state.state_of("web-1", 1010) is FleetHostState.UP
    assert state.state_of("web-1", 1015) is FleetHostState.STALE
    assert state.state_of("web-1", 1059) is FleetHostState.STALE
    assert state.state_of("web-1", 1060) is FleetHostState.LOST
    # Any message brings it back, not only a beat.
    state.observe_sample("web-1", {"timestamp": 1070, "host": "web-1"}, 1070)
    assert state.state_of("web-1", 1071) is FleetHostState.UP
    assert state.state_of("nobody", 1071) is None


def test_a_host_that_stopped_is_lost_at_once_and_back_when_it_speaks() -> None:
    state = FleetState(SETTINGS)
    state.observe_beat(beat("db-1", 1000), 1000)
    state.observe_stopped("db-1", 1001)
    [row] = state.hosts(1002)
    assert row.state is FleetHostState.LOST and row.status == "stopped"
    state.observe_beat(beat("db-1", 1005), 1005)
    assert state.hosts(1006)[0].state is FleetHostState.UP


def test_hosts_are_listed_worst_first() -> None:
    state = FleetState(SETTINGS)
    state.observe_beat(beat("a-ok", 1000), 1000)
    state.observe_beat(beat("b-lost", 900), 900)
    state.observe_beat(beat("c-stale", 980), 980)
    state.observe_beat(beat("d-critical", 1000, status="critical"), 1000)
    state.observe_beat(beat("e-warn", 1000), 1000)
    state.observe_alert("e-warn", alert("disk_usage", "/var", 1000), "alert.firing", 1000)
    rows = state.hosts(1001)
    assert [row.host for row in rows] == ["b-lost", "c-stale", "d-critical", "e-warn", "a-ok"]
    warn = rows[3]
    assert warn.firing == 1 and warn.worst_severity is Severity.WARNING


def test_host_view_has_every_card_and_alerts_come_and_go() -> None:
    state = FleetState(SETTINGS)
    sample = MetricsSample(timestamp=1000, host="web-1")
    state.observe_beat(beat("web-1", 1000, name="Web one", agents=["sensor"]), 1000)
    # A raw payload, as a networked bus delivers it: kept as is, parsed when read.
    state.observe_sample("web-1", sample.model_dump(mode="json"), 1000)
    firing = alert("service_down", "nginx", 1000, "critical")
    state.observe_alert("web-1", firing, "alert.firing", 1000)
    state.observe_alert("web-1", alert("load", "cpu", 1000), "alert.firing", 1000)
    state.observe_action("web-1", record("r1", "pending", 1001), 1001)
    state.observe_action("web-1", record("r2", "succeeded", 1002), 1002)
    incident = Incident(
        id="i1", key="nginx", title="nginx down", severity=Severity.CRITICAL,
        opened_at=1000, updated_at=1000,
    )  # fmt: skip
    state.observe_incident("web-1", incident, 1000)

    view = state.host_view("web-1", 1003)
    assert view is not None
    json.dumps(view)  # plain JSON all through
    assert set(view) == {
        "summary", "beat", "sample", "alerts", "incidents", "approvals", "actions",
    }  # fmt: skip
    assert view["summary"]["name"] == "Web one"
    assert view["summary"]["firing"] == 2 and view["summary"]["pending_approvals"] == 1
    assert view["summary"]["worst_severity"] == "critical"
    assert view["sample"]["host"] == "web-1"
    assert [a["rule"] for a in view["alerts"]] == ["service_down", "load"]
    assert [i["id"] for i in view["incidents"]] == ["i1"]
    assert [r["id"] for r in view["approvals"]] == ["r1"]
    assert [r["id"] for r in view["actions"]] == ["r2", "r1"]  # newest first

    # The approval is given: the record moves on and no longer waits; the alert resolves.
    state.observe_action("web-1", record("r1", "succeeded", 1004), 1004)
    resolved = firing.model_copy(update={"state": AlertState.RESOLVED, "resolved_at": 1005})
    state.observe_alert("web-1", resolved, "alert.resolved", 1005)
    state.observe_incident(
        "web-1", incident.model_copy(update={"state": IncidentState.RESOLVED}), 1005
    )
    view = state.host_view("web-1", 1006)
    assert view is not None
    assert view["approvals"] == [] and view["incidents"] == []
    assert [a["rule"] for a in view["alerts"]] == ["load"]
    assert [r["id"] for r in view["actions"]] == ["r1", "r2"]  # one row per action
    assert view["actions"][0]["outcome"] == "succeeded"
    assert state.host_view("nobody", 1006) is None


def test_a_sample_that_does_not_parse_reads_as_none_and_keeps_the_host() -> None:
    state = FleetState(SETTINGS)
    state.observe_sample("web-1", {"timestamp": "soon", "host": 7, "cpu": "x" * 10_000}, 1000)
    view = state.host_view("web-1", 1000)
    assert view is not None and view["sample"] is None
    assert view["summary"]["state"] == "up"


def test_per_host_caps_bound_alerts_and_actions() -> None:
    state = FleetState(SETTINGS)
    for n in range(MAX_ALERTS + 50):
        state.observe_alert("web-1", alert("r", f"s{n}", 1000), "alert.firing", 1000)
    for n in range(MAX_ACTIONS * 3):
        state.observe_action("web-1", record(f"a{n}", "failed", 1000), 1000)
    view = state.host_view("web-1", 1000)
    assert view is not None
    assert len(view["alerts"]) == MAX_ALERTS
    assert view["alerts"][-1]["subject"] == f"s{MAX_ALERTS + 49}"  # the newest kept
    assert len(view["actions"]) == MAX_ACTIONS
    assert view["actions"][0]["id"] == f"a{MAX_ACTIONS * 3 - 1}"


def test_a_flood_of_hosts_is_capped_and_counted_and_bad_ids_refused() -> None:
    state = FleetState(SETTINGS, max_hosts=100)
    for n in range(150):
        state.observe_beat(beat(f"h{n}", 1000), 1000)
    state.observe_sample("Bad Host; rm -rf", {}, 1000)
    stats = state.stats(1000)
    assert stats.hosts == 100
    assert stats.refused_hosts == 51
    assert stats.by_state["up"] == 100
    assert stats.messages == 151
    assert stats.memory_estimate_bytes > 0


def test_hosts_lost_for_more_than_a_day_are_forgotten() -> None:
    state = FleetState(SETTINGS)
    state.observe_beat(beat("old", 0), 0)
    state.observe_beat(beat("new", 10), 10)
    assert state.prune(SETTINGS.lost_after + DROP_LOST_AFTER) == 0
    assert state.prune(SETTINGS.lost_after + DROP_LOST_AFTER + 5) == 1
    assert state.host_names() == ["new"]
    assert state.stats().dropped_hosts == 1


@pytest.mark.parametrize("missing", ["beat", "sample"])
def test_a_host_known_only_by_its_events_still_has_a_row(missing: str) -> None:
    state = FleetState(SETTINGS)
    if missing == "beat":
        state.observe_sample("web-1", {"timestamp": 1000, "host": "web-1"}, 1000)
    else:
        state.observe_beat(beat("web-1", 1000), 1000)
    [row] = state.hosts(1000)
    assert row.host == "web-1" and row.name == "web-1"
