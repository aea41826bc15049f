"""A real central watchkeeper whose fleet agent hears messages about other hosts on its
bus: ``/metrics`` with a ``host`` label on every series and the fleet's per-host series,
no secret in any fleet read, and the fleet API's answers in their declared models."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel
from web_helpers import LiveServer

from watchkeeper.model.actions import ActionOutcome, ActionRecord
from watchkeeper.model.alerts import Alert, Severity, fingerprint_of
from watchkeeper.model.fleet import HostBeat
from watchkeeper.model.topics import ALERT_FIRING, FLEET_HEARTBEAT, REMEDIATION_OUTCOMES
from watchkeeper.web.fleet_responses import FleetHostsReply, FleetHostView, FleetIncidentsReply

NATS_PASSWORD = "nats-password-never-shown"
WEB_TOKEN = "web-token-never-shown-0123456789"


def _families(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    flags = {"fleet": {"role": "central", "stale_after": 30, "lost_after": 120}}
    flags["bus"] = {"host_id": "central-1", "user": "central-1", "password": NATS_PASSWORD}
    flags["web"] = {"token": WEB_TOKEN}
    with LiveServer(tmp_path_factory.mktemp("fleet-metrics"), flags=flags) as live:
        yield live


def _beat(host: str, **fields: object) -> HostBeat:
    values: dict[str, object] = {
        "host": host,
        "sent_at": time.time(),
        "interval": 5.0,
        "status": "healthy",
        "score": 90.0,
        **fields,
    }
    return HostBeat.model_validate(values)


def test_every_series_has_this_hosts_label(tmp_path: Path) -> None:
    with LiveServer(tmp_path, flags={"bus": {"host_id": "web-7"}}) as plain:
        text = httpx.get(plain.url + "/metrics", timeout=10).text
    families = _families(text)
    assert families, text
    unlabelled = [
        name for name, rows in families.items() for labels, _ in rows if "host" not in labels
    ]
    assert unlabelled == []
    assert all(labels["host"] == "web-7" for rows in families.values() for labels, _ in rows)
    assert families["watchkeeper_agent_up"][0][0]["host"] == "web-7"
    assert "watchkeeper_process_resident_memory_bytes" in families
    assert not any(name.startswith("watchkeeper_fleet_") for name in families)


def test_the_central_host_gives_every_fleet_host_its_series(central: LiveServer) -> None:
    assert central.orchestrator is not None
    bus = central.orchestrator.bus
    web = _beat("web-2", status="degraded", score=61.5, name='evil"} 1\nfake_series 9')
    db = _beat("db-3", score=20.0)

    def scraped() -> dict[str, list[tuple[dict[str, str], float]]] | None:
        # Beats come every interval; the fleet agent hears them once it runs.
        central.call(lambda: bus.publish(FLEET_HEARTBEAT, web, sender="fleet", host="web-2"))
        central.call(lambda: bus.publish(FLEET_HEARTBEAT, db, sender="fleet", host="db-3"))
        time.sleep(1.05)  # the exposition is built at most once a second
        families = _families(httpx.get(central.url + "/metrics", timeout=10).text)
        scores = families.get("watchkeeper_fleet_host_health_score", [])
        return families if {labels["host"] for labels, _ in scores} >= {"web-2", "db-3"} else None

    families = None
    deadline = time.monotonic() + 15
    while families is None and time.monotonic() < deadline:
        families = scraped()
    assert families is not None, "the fleet series never showed both hosts"
    score = {
        labels["host"]: value for labels, value in families["watchkeeper_fleet_host_health_score"]
    }
    assert score["web-2"] == 61.5 and score["db-3"] == 20.0
    state = {
        (labels["host"], labels["state"]): value
        for labels, value in families["watchkeeper_fleet_host_state"]
    }
    assert state[("web-2", "up")] == 1.0 and state[("web-2", "lost")] == 0.0
    ages = dict(
        (labels["host"], value)
        for labels, value in families["watchkeeper_fleet_host_last_seen_age_seconds"]
    )
    assert 0 <= ages["web-2"] < 30
    counts = {labels["state"]: value for labels, value in families["watchkeeper_fleet_hosts"]}
    assert counts["up"] >= 2
    # The display name is no label: nothing it says becomes a series.
    assert "fake_series" not in families
    assert all("name" not in labels for rows in families.values() for labels, _ in rows)
    # This host's own series keep its id.
    assert families["watchkeeper_agent_up"][0][0]["host"] == "central-1"


def test_no_secret_in_any_fleet_read(central: LiveServer) -> None:
    with central.client() as http:
        central.wait_for(
            lambda: http.get("/api/fleet/hosts").json()["total"] >= 1, what="a host in the view"
        )
        for path in (
            "/api/fleet/hosts",
            "/api/fleet/hosts/central-1",
            "/api/fleet/incidents",
            "/metrics",
            "/fleet",
        ):
            text = http.get(path).text
            assert NATS_PASSWORD not in text and WEB_TOKEN not in text, path


def test_fleet_answers_fit_their_declared_models(central: LiveServer) -> None:
    """The real fleet agent's view read back with the models ``/openapi.json`` names."""
    assert central.orchestrator is not None
    bus = central.orchestrator.bus
    now = time.time()
    alert = Alert(
        id="m1",
        fingerprint=fingerprint_of("disk_usage", "disk:/var/log"),
        rule="disk_usage",
        severity=Severity.WARNING,
        subject="disk:/var/log",
        summary="/var/log is 91% full",
        started_at=now,
        updated_at=now,
    )
    waiting = ActionRecord(
        id="m2",
        action="restart_service",
        target="nginx",
        proposer="rule",
        outcome=ActionOutcome.PENDING,
        created_at=now,
    )

    async def web4_says() -> None:
        await bus.publish(FLEET_HEARTBEAT, _beat("web-4"), sender="x", host="web-4")
        await bus.publish(ALERT_FIRING, alert, sender="x", host="web-4")
        await bus.publish(REMEDIATION_OUTCOMES["pending"], waiting, sender="x", host="web-4")

    central.call(web4_says)
    with central.client() as http:

        def seen() -> bool:
            view = http.get("/api/fleet/hosts/web-4")
            return view.status_code == 200 and bool(view.json()["approvals"])

        central.wait_for(seen, what="web-4 in the fleet view")
        cases: list[tuple[str, type[BaseModel]]] = [
            ("/api/fleet/hosts", FleetHostsReply),
            ("/api/fleet/hosts/web-4", FleetHostView),
            ("/api/fleet/incidents", FleetIncidentsReply),
        ]
        for path, model in cases:
            body = http.get(path).json()
            model.model_validate(body)
            assert set(body) <= set(model.model_fields), (path, set(body) - set(model.model_fields))
        view = FleetHostView.model_validate(http.get("/api/fleet/hosts/web-4").json())
        assert view.alerts[0].id == "m1" and view.approvals[0].id == "m2"
        assert view.summary.firing == 1 and view.summary.pending_approvals == 1
