"""The incident page's server side on a real watchkeeper (sensor and communicator with real
storage; the incident and its analysis arrive as the analyzer publishes them, on the real
bus): ``/incidents/{id}`` is rendered with every value escaped, an unknown id is a 404
page, and the API's incident JSON carries ``url``, the ``timeline``, the ``analyses`` and
the gate's ``decisions``, read back from the audit."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from web_helpers import LiveServer, wait_for_samples

from watchkeeper.agents.communicator import CommunicatorAgent
from watchkeeper.agents.sensor import SensorAgent
from watchkeeper.model.actions import ActionOutcome, ActionRecord
from watchkeeper.model.alerts import Alert, AlertState, Severity, fingerprint_of
from watchkeeper.model.analysis import AnalysisResult
from watchkeeper.model.incidents import Incident, IncidentMember, IncidentState
from watchkeeper.model.topics import (
    ALERT_FIRING,
    ALERT_RESOLVED,
    ANALYSIS_RESULT,
    INCIDENT_TOPICS,
    REMEDIATION_OUTCOMES,
)
from watchkeeper.web.incident_view import decision_of
from watchkeeper.web.responses import IncidentDetail, IncidentsReply

TEAM = {"sensor": SensorAgent, "communicator": CommunicatorAgent}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
HOSTILE = '<script>window.pwned=1</script>"><img src=x onerror=alert(1)>{{id}}'
PORT = 18412  # only written into links, never bound
T0 = time.time() - 120  # set again when the server starts: a collection may come long before


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed: apt-get install -y chromium (.ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _alert(state: AlertState = AlertState.FIRING) -> Alert:
    return Alert(
        id="a-db-1",
        fingerprint=fingerprint_of("service_down", "service:db"),
        rule="service_down",
        severity=Severity.CRITICAL,
        subject="service:db",
        summary="service db is down",
        evidence={"journal": [HOSTILE]},
        state=state,
        started_at=T0,
        updated_at=T0 + (30 if state is AlertState.RESOLVED else 0),
        resolved_at=T0 + 30 if state is AlertState.RESOLVED else None,
    )


def _incident(state: IncidentState) -> Incident:
    alert = _alert()
    return Incident(
        id="inc-page",
        key="service:db",
        title=f"db is down {HOSTILE}",
        severity=Severity.CRITICAL,
        state=state,
        root=alert.fingerprint,
        root_cause="service db is down",
        confidence=0.9,
        members=[
            IncidentMember(
                alert_id=alert.id,
                fingerprint=alert.fingerprint,
                rule=alert.rule,
                subject=alert.subject,
                severity=alert.severity,
                summary=alert.summary,
                role="root",
            )
        ],
        opened_at=T0,
        updated_at=T0 + 1,
        resolved_at=T0 + 31 if state is IncidentState.RESOLVED else None,
    )


def _record(outcome: ActionOutcome, detail: str, **extra: object) -> ActionRecord:
    alert = _alert()
    fields: dict[str, object] = {
        "id": "req-1",
        "action": "restart_service",
        "target": "db",
        "target_kind": "service",
        "proposer": "rule",
        "proposed_by": "service_down",
        "reason": "service db is down",
        "alert_id": alert.id,
        "fingerprint": alert.fingerprint,
        "outcome": outcome,
        "detail": detail,
        "created_at": T0 + 2,
        **extra,
    }
    return ActionRecord.model_validate(fields)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    global T0
    T0 = time.time() - 120  # the incident happened two minutes ago, as storage sees it
    flags = {"web": {"port": PORT, "public_url": "https://watch.example.org/wk/"}}
    with LiveServer(tmp_path_factory.mktemp("incident-page"), flags=flags, factories=TEAM) as srv:
        wait_for_samples(srv, 2)
        assert srv.orchestrator is not None
        storage = srv.orchestrator.storage
        srv.wait_for(lambda: srv.on_loop(lambda: bool(storage.is_open)), what="storage")
        bus = srv.orchestrator.bus

        async def publish() -> None:
            await bus.publish(ALERT_FIRING, _alert(), sender="analyzer")
            await bus.publish(
                INCIDENT_TOPICS["opened"], _incident(IncidentState.OPEN), sender="analyzer"
            )
            analysis = AnalysisResult(
                at=T0 + 1,
                trigger="alert",
                source="rules",
                verdict="critical",
                summary=f"the rules: db is down {HOSTILE}",
                alert_ids=["a-db-1"],
                incident_id="inc-page",
            )
            await bus.publish(ANALYSIS_RESULT, analysis, sender="analyzer")
            ran = {"started_at": T0 + 3, "finished_at": T0 + 4, "verified": True}
            done = _record(ActionOutcome.SUCCEEDED, "db restarted, probe answers", **ran)
            await bus.publish(REMEDIATION_OUTCOMES["succeeded"], done, sender="remediator")
            await bus.publish(ALERT_RESOLVED, _alert(AlertState.RESOLVED), sender="analyzer")
            await bus.publish(
                INCIDENT_TOPICS["resolved"], _incident(IncidentState.RESOLVED), sender="analyzer"
            )

        srv.call(publish)

        def stored() -> bool:
            with srv.client() as http:
                body = http.get("/api/incidents/inc-page").json()
            return bool(body.get("source") == "storage" and body.get("decisions"))

        srv.wait_for(stored, what="the incident resolved, stored with its action")
        yield srv


def test_detail_has_url_timeline_analyses_and_decisions(live: LiveServer) -> None:
    with live.client() as http:
        detail = IncidentDetail.model_validate(http.get("/api/incidents/inc-page").json())
        listed = IncidentsReply.model_validate(
            http.get("/api/incidents", params={"state": "resolved"}).json()
        )
    assert detail.url == "https://watch.example.org/wk/incidents/inc-page"
    assert [i.url for i in listed.incidents if i.id == "inc-page"] == [detail.url]
    kinds = [(s.kind, s.subject) for s in detail.timeline]
    assert kinds == [
        ("opened", ""),
        ("firing", "service:db"),
        ("resolved", "service:db"),
        ("closed", ""),
    ], kinds
    assert [a.summary for a in detail.analyses] == [f"the rules: db is down {HOSTILE}"]
    (decision,) = detail.decisions
    assert (decision.verdict, decision.outcome, decision.verification) == (
        "run",
        ActionOutcome.SUCCEEDED,
        "verified",
    )


def test_page_is_rendered_escaped_and_an_unknown_id_is_a_404_page(live: LiveServer) -> None:
    with live.client() as http:
        page = http.get("/incidents/inc-page")
        missing = http.get("/incidents/no-such-thing")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script>window.pwned" not in page.text and "<img src=x" not in page.text
    assert "db is down &lt;script&gt;window.pwned=1&lt;/script&gt;&quot;&gt;" in page.text
    assert "{{id}}" in page.text  # a value's braces stay text, never a second slot
    assert 'data-incident="inc-page"' in page.text and "Resolved at" in page.text
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "No such incident" in missing.text and "no-such-thing" in missing.text


def test_a_hostile_unknown_id_is_escaped_on_the_404_page(live: LiveServer) -> None:
    with live.client() as http:
        missing = http.get("/incidents/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
        too_long = http.get("/incidents/" + "x" * 129)
    assert missing.status_code == 404
    assert "<img src=x" not in missing.text and "&lt;img src=x onerror=alert(1)&gt;" in missing.text
    assert too_long.status_code == 422 and "detail" in too_long.json()


def test_decisions_read_back_from_the_audit() -> None:
    waited = _record(ActionOutcome.PENDING, "approve mode: waiting for a person")
    ran = _record(
        ActionOutcome.SUCCEEDED,
        "restarted",
        proposer="user",
        proposed_by="alice",
        reason="approved by alice: service db is down",
        verified=False,
    )
    refused = _record(ActionOutcome.REFUSED, "db is a protected target")
    approved = decision_of([waited, ran])
    assert (approved.verdict, approved.reason, approved.approved_by) == (
        "approve",
        "approve mode: waiting for a person",
        "alice",
    )
    assert approved.verification == "not verified"
    # Storage keeps only a request's last record: the approval is read from its reason.
    assert decision_of([ran]).verdict == "approve"
    assert (decision_of([refused]).verdict, decision_of([refused]).reason) == (
        "refuse",
        "db is a protected target",
    )
    assert decision_of([refused]).verification == "did not run"
    assert decision_of([waited]).verification == "waiting"


def test_without_public_url_a_loopback_bind_links_the_loopback_address() -> None:
    from watchkeeper.config import WebSettings

    assert WebSettings(port=PORT).incident_url("x1") == f"http://127.0.0.1:{PORT}/incidents/x1"
    assert WebSettings(port=0).incident_url("x1") is None  # chosen at start: unknown here
    with pytest.raises(ValueError, match="http:// or https://"):
        WebSettings(public_url="javascript:alert(1)")


@pytest.mark.browser
def test_with_closed_reads_the_page_is_a_bare_shell_until_the_token_is_given(
    tmp_path: Path,
) -> None:
    flags = {"web": {"open_reads": False}}
    with LiveServer(tmp_path, flags=flags, factories=TEAM) as srv:
        wait_for_samples(srv, 1)
        assert srv.orchestrator is not None
        bus = srv.orchestrator.bus

        async def publish() -> None:
            await bus.publish(ALERT_FIRING, _alert(), sender="analyzer")
            await bus.publish(
                INCIDENT_TOPICS["opened"], _incident(IncidentState.OPEN), sender="analyzer"
            )

        srv.call(publish)
        with srv.client() as http:
            srv.wait_for(
                lambda: http.get("/api/incidents/inc-page", headers=srv.auth).status_code == 200,
                what="the incident",
            )
            page = http.get("/incidents/inc-page")
            unknown = http.get("/incidents/no-such-thing")
            assert http.get("/api/incidents/inc-page").status_code == 401
        # Anyone may load it, and it tells nothing: not the title, not whether it exists.
        assert page.status_code == 200 and unknown.status_code == 200
        assert "db is down" not in page.text and "service db" not in page.text

        from playwright.sync_api import expect, sync_playwright

        problems: list[str] = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
            try:
                tab = browser.new_page()
                tab.on("pageerror", lambda exc: problems.append(str(exc)))
                tab.goto(f"{srv.url}/incidents/inc-page")
                expect(tab.locator("#problem")).to_contain_text("need the API token")
                expect(tab.locator("#live")).to_have_text("no token")
                tab.fill("#token-input", srv.token)
                tab.click("#token-form button[type=submit]")
                expect(tab.locator("#incident-title")).to_have_text(f"db is down {HOSTILE}")
                expect(tab.locator("#problem")).to_be_hidden()
                expect(tab.locator("#live")).to_have_text("live")
                expect(tab.locator('#timeline li.step[data-kind="firing"]')).to_have_count(1)
                assert tab.evaluate("window.pwned") is None
            finally:
                browser.close()
        assert not problems, problems
