"""``/api/incidents`` and ``/api/incidents/{id}`` on a real watchkeeper (sensor and
communicator with real storage; no analyzer, so the incidents arrive as an analyzer
publishes them: real ``Incident`` messages on the real bus). Open ones are live, resolved
ones come from storage; reads follow ``web.open_reads``; nothing here changes state."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from web_helpers import LiveServer, wait_for_samples

from watchkeeper.agents.communicator import CommunicatorAgent
from watchkeeper.agents.sensor import SensorAgent
from watchkeeper.model.alerts import Alert, Severity, SuggestedAction, fingerprint_of
from watchkeeper.model.incidents import Incident, IncidentMember, IncidentState
from watchkeeper.model.topics import ALERT_FIRING, INCIDENT_TOPICS
from watchkeeper.web.responses import IncidentDetail, IncidentsReply

TEAM = {"sensor": SensorAgent, "communicator": CommunicatorAgent}


def alert(rule: str, subject: str, severity: Severity, started: float) -> Alert:
    return Alert(
        id=f"{rule}-{subject}-{int(started)}",
        fingerprint=fingerprint_of(rule, subject),
        rule=rule,
        severity=severity,
        subject=subject,
        summary=f"{rule} on {subject}",
        evidence={"value": 99.0},
        started_at=started,
        updated_at=started,
    )


def incident_of(
    incident_id: str, alerts: list[Alert], *, state: IncidentState = IncidentState.OPEN
) -> Incident:
    root = alerts[0]
    opened = min(a.started_at for a in alerts)
    return Incident(
        id=incident_id,
        key=f"{root.rule}:{root.subject}",
        title=f"{root.subject}: {len(alerts)} alerts",
        severity=max((a.severity for a in alerts), key=["info", "warning", "critical"].index),
        state=state,
        root=root.fingerprint,
        root_cause=f"{root.rule} on {root.subject}",
        confidence=0.7,
        members=[
            IncidentMember(
                alert_id=a.id,
                fingerprint=a.fingerprint,
                rule=a.rule,
                subject=a.subject,
                severity=a.severity,
                summary=a.summary,
                role="root" if a is root else "effect",
            )
            for a in alerts
        ],
        remedies=[
            SuggestedAction(action="clean_directory", target="/srv/tmp", target_kind="path"),
            SuggestedAction(action="restart_service", target="db", target_kind="service"),
        ],
        flapping=True,
        flaps=4,
        opened_at=opened,
        updated_at=opened + 1,
        resolved_at=opened + 30 if state is IncidentState.RESOLVED else None,
    )


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("incidents")
    with LiveServer(root, factories=TEAM) as server:
        wait_for_samples(server, 2)
        server.wait_for(
            lambda: server.on_loop(
                lambda: bool(server.orchestrator and server.orchestrator.storage.is_open)
            ),
            what="storage",
        )
        now = time.time()
        disk = [
            alert("disk_full", "/", Severity.CRITICAL, now - 60),
            alert("service_down", "db", Severity.WARNING, now - 50),
            alert("service_unhealthy", "web", Severity.WARNING, now - 40),
        ]
        old = [alert("memory_high", "host", Severity.WARNING, now - 4000)]
        assert server.orchestrator is not None
        bus = server.orchestrator.bus

        async def publish() -> None:
            for a in [*disk, *old]:
                await bus.publish(ALERT_FIRING, a, sender="analyzer")
            await bus.publish(
                INCIDENT_TOPICS["opened"], incident_of("inc-old", old), sender="analyzer"
            )
            await bus.publish(
                INCIDENT_TOPICS["resolved"],
                incident_of("inc-old", old, state=IncidentState.RESOLVED),
                sender="analyzer",
            )
            await bus.publish(
                INCIDENT_TOPICS["opened"], incident_of("inc-disk", disk[:1]), sender="analyzer"
            )
            await bus.publish(
                INCIDENT_TOPICS["updated"], incident_of("inc-disk", disk), sender="analyzer"
            )

        server.call(publish)

        def stored() -> bool:
            with server.client() as http:
                body = http.get("/api/incidents", params={"state": "all"}).json()
            return [i["id"] for i in body["incidents"]] == ["inc-disk", "inc-old"]

        server.wait_for(stored, what="both incidents listed")
        yield server


def test_open_incidents_are_live_with_members_root_cause_and_remedies(live: LiveServer) -> None:
    with live.client() as http:
        response = http.get("/api/incidents")
    assert response.status_code == 200
    reply = IncidentsReply.model_validate(response.json())
    assert (reply.state, reply.source, reply.analyzer) == ("open", "events", False)
    assert reply.counts == {"critical": 1, "warning": 0, "info": 0}
    (disk,) = reply.incidents
    assert disk.id == "inc-disk" and disk.state is IncidentState.OPEN
    assert [m.subject for m in disk.members] == ["/", "db", "web"]  # updated in place
    assert disk.root_cause == "disk_full on /" and (disk.flapping, disk.flaps) == (True, 4)
    assert [r.action for r in disk.remedies] == ["clean_directory", "restart_service"]


def test_resolved_and_all_come_from_storage(live: LiveServer) -> None:
    with live.client() as http:
        resolved = IncidentsReply.model_validate(
            http.get("/api/incidents", params={"state": "resolved"}).json()
        )
        everything = IncidentsReply.model_validate(
            http.get("/api/incidents", params={"state": "all", "limit": 1}).json()
        )
    assert resolved.source == "storage"
    assert [(i.id, i.state) for i in resolved.incidents] == [("inc-old", IncidentState.RESOLVED)]
    assert [i.id for i in everything.incidents] == ["inc-disk"]  # open first, then the limit


def test_one_incident_in_detail(live: LiveServer) -> None:
    with live.client() as http:
        detail = IncidentDetail.model_validate(http.get("/api/incidents/inc-disk").json())
        past = IncidentDetail.model_validate(http.get("/api/incidents/inc-old").json())
        missing = http.get("/api/incidents/no-such-one")
    assert detail.source == "events"
    assert [a.rule for a in detail.members] == ["disk_full", "service_down", "service_unhealthy"]
    assert detail.members[0].evidence == {"value": 99.0}  # the full alert, from storage
    assert [r.target for r in detail.remedies] == ["/srv/tmp", "db"]
    assert past.source == "storage" and past.incident.state is IncidentState.RESOLVED
    assert missing.status_code == 404 and "no-such-one" in missing.json()["detail"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/incidents", {"state": "everything"}),
        ("/api/incidents", {"limit": "0"}),
        ("/api/incidents", {"limit": "100000"}),
        ("/api/incidents/" + "x" * 200, {}),
    ],
)
def test_bad_input_is_one_clear_422(live: LiveServer, path: str, params: dict[str, str]) -> None:
    with live.client() as http:
        response = http.get(path, params=params)
    assert response.status_code == 422
    assert "Traceback" not in response.text


def test_incidents_change_nothing_and_follow_open_reads(live: LiveServer, tmp_path: Path) -> None:
    with live.client() as http:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            refused = http.request(method, "/api/incidents/inc-disk")
            assert refused.status_code in (401, 405), (method, refused.status_code)
        assert http.request("POST", "/api/incidents/inc-disk", headers=live.auth).status_code == 405
    flags = {"web": {"open_reads": False}}
    with (
        LiveServer(tmp_path, flags=flags, factories={"sensor": SensorAgent}) as closed,
        closed.client() as http,
    ):
        assert http.get("/api/incidents").status_code == 401
        ok = http.get("/api/incidents", headers=closed.auth)
        assert ok.status_code == 200 and ok.json()["incidents"] == []
        assert http.get("/api/incidents/inc-disk", headers=closed.auth).status_code == 404


def test_the_event_stream_carries_incidents(live: LiveServer) -> None:
    now = time.time()
    fresh = incident_of("inc-live", [alert("load_high", "host", Severity.WARNING, now)])
    assert live.orchestrator is not None
    bus = live.orchestrator.bus
    with (
        httpx.Client(base_url=live.url, timeout=10) as http,
        http.stream("GET", "/api/events") as stream,
    ):
        lines = stream.iter_lines()
        assert next(lines).startswith("retry:")

        async def publish() -> None:
            await bus.publish(INCIDENT_TOPICS["opened"], fresh, sender="analyzer")

        live.call(publish)
        deadline = time.monotonic() + 10
        seen_event = False
        for line in lines:
            if line == "event: incident":
                seen_event = True
            elif seen_event and line.startswith("data:"):
                assert '"id":"inc-live"' in line and '"topic":"incident.opened"' in line
                assert "incident opened: host: 1 alerts (1 alert)" in line
                break
            assert time.monotonic() < deadline, "no incident event"
