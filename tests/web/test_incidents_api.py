"""``/api/incidents`` and ``/api/incidents/{id}`` on a real watchkeeper (sensor and
communicator with real storage; no analyzer, so the incidents arrive as an analyzer
publishes them: real ``Incident`` messages on the real bus). Open ones are live, resolved
ones come from storage; reads follow ``web.open_reads``; nothing here changes state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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

    async def resolve() -> None:
        await bus.publish(INCIDENT_TOPICS["resolved"], resolved_copy(fresh), sender="analyzer")

    live.call(resolve)

    def only_disk_open() -> bool:
        assert live.hub is not None
        return [i.id for i in live.hub.open_incidents()] == ["inc-disk"]

    live.wait_for(lambda: live.on_loop(only_disk_open), what="inc-live resolved")


def watchkeeper(live: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI, as a separate process, against the live server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env.update(NO_COLOR="1", COLUMNS="140", TERM="dumb")
    return subprocess.run(
        [sys.executable, "-m", "watchkeeper", *args, "--url", live.url, "--token", live.token],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_the_cli_lists_incidents_as_json_and_as_text(live: LiveServer) -> None:
    result = watchkeeper(live, "incidents", "--json")
    assert result.returncode == 0, result.stderr
    reply = IncidentsReply.model_validate(json.loads(result.stdout))
    assert [i.id for i in reply.incidents] == ["inc-disk"]
    everything = IncidentsReply.model_validate(
        json.loads(watchkeeper(live, "incidents", "--all", "--json").stdout)
    )
    first, *past = everything.incidents
    assert first.id == "inc-disk" and "inc-old" in [i.id for i in past]
    assert all(i.state is IncidentState.RESOLVED for i in past)

    text = watchkeeper(live, "incidents").stdout
    assert "Open incidents (1 critical)" in text
    assert "/: 3 alerts" in text and "flapping ×4" in text
    assert "Probable cause: disk_full on / (confidence 70%)" in text
    rows = [
        line.split() for line in text.splitlines() if "disk_full on" in line or " on db" in line
    ]
    assert [row[0] for row in rows[-2:]] == ["root", "effect"]
    assert "1. clean_directory /srv/tmp  2. restart_service db" in text
    assert "Past incidents" not in text
    assert "Past incidents" in watchkeeper(live, "incidents", "--all").stdout

    detail = watchkeeper(live, "incidents", "inc-disk")
    assert detail.returncode == 0 and "service_unhealthy on web" in detail.stdout
    missing = watchkeeper(live, "incidents", "nope")
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and "nope" in missing.stderr
    both = watchkeeper(live, "incidents", "inc-disk", "--all")
    assert both.returncode == 2 and "--all" in both.stderr


def test_the_cli_shows_host_text_literally(live: LiveServer) -> None:
    evil = alert("service_down", "[bold]web\x1b[2J\x1b]0;pwned\x07", Severity.WARNING, time.time())
    shown = incident_of("inc-evil", [evil]).model_copy(update={"title": "\x1b[31mred[/] title"})
    assert live.orchestrator is not None
    bus = live.orchestrator.bus

    async def publish(incident: Incident, kind: str) -> None:
        await bus.publish(INCIDENT_TOPICS[kind], incident, sender="analyzer")

    live.call(lambda: publish(shown, "opened"))
    try:
        live.wait_for(
            lambda: "inc-evil" in watchkeeper(live, "incidents", "--json").stdout,
            what="the incident",
        )
        text = watchkeeper(live, "incidents").stdout
        assert "\x1b" not in text and "\x07" not in text
        assert "[bold]web" in text and "red[/] title" in text
    finally:
        live.call(lambda: publish(resolved_copy(shown), "resolved"))


def resolved_copy(incident: Incident) -> Incident:
    at = time.time()
    return incident.model_copy(
        update={"state": IncidentState.RESOLVED, "resolved_at": at, "updated_at": at}
    )


def test_the_dashboard_groups_alerts_by_incident_and_follows_them_live(live: LiveServer) -> None:
    import shutil

    from playwright.sync_api import expect, sync_playwright

    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser_path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: apt-get install -y chromium")
        pytest.skip("chromium is not installed: apt-get install -y chromium")
    now = time.time()
    crash = [
        alert("service_flapping", "worker", Severity.WARNING, now),
        alert("service_down", "worker", Severity.WARNING, now + 1),
    ]
    fresh = incident_of("inc-browser", crash).model_copy(
        update={"title": '<img src=x onerror="window.pwned=1">worker keeps dying'}
    )
    assert live.orchestrator is not None
    bus = live.orchestrator.bus

    async def publish(incident: Incident, kind: str) -> None:
        if kind == "opened":
            for a in crash:
                await bus.publish(ALERT_FIRING, a, sender="analyzer")
        await bus.publish(INCIDENT_TOPICS[kind], incident, sender="analyzer")

    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=browser_path, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.goto(live.url)
            expect(page.locator("#live")).to_have_text("live", timeout=10_000)
            disk = page.locator('#alerts li.incident[data-incident="inc-disk"]')
            expect(disk.locator("li.member")).to_have_count(3)
            expect(disk.locator(".cause")).to_contain_text("Probable cause: disk_full on / (70 %)")
            expect(disk.locator(".flap")).to_have_text("flapping ×4")
            expect(page.locator("#incident-count")).to_have_text("1 incident")

            live.call(lambda: publish(fresh, "opened"))  # no reload: over the event stream
            card = page.locator('#alerts li.incident[data-incident="inc-browser"]')
            expect(card).to_be_visible(timeout=10_000)
            expect(card.locator(".title")).to_have_text(fresh.title)
            assert page.locator("#alerts img").count() == 0
            assert page.evaluate("window.pwned") is None
            expect(card.locator("li.member").first).to_have_attribute("data-role", "root")
            expect(page.locator("#incident-count")).to_have_text("2 incidents")

            live.call(lambda: publish(resolved_copy(fresh), "resolved"))
            expect(card).to_have_count(0, timeout=10_000)
            expect(page.locator("#incident-count")).to_have_text("1 incident")
        finally:
            browser.close()
    assert not problems, problems


def test_prometheus_counts_open_incidents(live: LiveServer) -> None:
    with live.client() as http:
        text = http.get("/metrics").text
    from prometheus_client.parser import text_string_to_metric_families

    values = {
        (sample.name, sample.labels.get("severity")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("watchkeeper_incidents_")
    }
    assert values[("watchkeeper_incidents_open", "critical")] == 1.0
    assert values[("watchkeeper_incidents_open", "warning")] == 0.0
    assert values[("watchkeeper_incidents_flapping", None)] == 1.0
    # Every series names the host it is about.
    assert 'watchkeeper_incidents_flapping{host="' in text
