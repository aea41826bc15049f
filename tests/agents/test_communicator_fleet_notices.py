"""What a fleet incident notice and another host's alert notice say, and what PagerDuty
receives for them (sent to a real loopback HTTP receiver)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from watchkeeper.config.fleet import FleetSettings
from watchkeeper.fleet.judge import FleetJudge
from watchkeeper.model.alerts import Alert, fingerprint_of
from watchkeeper.model.fleet import FleetIncident
from watchkeeper.notify._http import PagerDutyChannel
from watchkeeper.notify.compose import alert_notice, fleet_incident_notice

T0 = 1_767_000_000.0


def alert(host: str, subject: str = "/var/log") -> Alert:
    return Alert.model_validate(
        {
            "id": f"{host}-disk",
            "fingerprint": fingerprint_of("disk_usage", subject),
            "rule": "disk_usage",
            "severity": "critical",
            "subject": subject,
            "summary": f"{subject} 97% full\x1b[2J",
            "started_at": T0,
            "updated_at": T0,
        }
    )


def incident(count: int, subject: str = "/var/log") -> FleetIncident:
    judge = FleetJudge(FleetSettings(incident_min_hosts=3))
    opened: list[FleetIncident] = []
    for n in range(count):
        host = f"web-{n}"
        opened += [i for _, i in judge.observe(host, alert(host, subject), "alert.firing", T0)]
    updated = [i for _, i in judge.flush(T0 + 1)]
    return (updated or opened)[-1]


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    bodies: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v2/enqueue", bodies
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_fleet_notice_lists_its_hosts_and_counts_the_rest() -> None:
    notice = fleet_incident_notice(incident(30), "firing", host="central", now=T0 + 60)
    assert notice.title.startswith("FLEET INCIDENT critical: 30 hosts: disk usage on /var/log")
    assert notice.key.startswith("fleet:fleet-")
    assert "Since " in notice.body and "on 30 hosts" in notice.body
    assert "  web-0: critical /var/log 97% full" in notice.body
    assert "… and 10 more" in notice.body
    assert "\x1b" not in notice.body
    assert notice.fleet_incident is not None and len(notice.fleet_incident.hosts) == 30


def test_another_hosts_alert_notice_names_the_host_first() -> None:
    notice = alert_notice(alert("db-1"), "firing", host="db-1", now=T0, name_host=True)
    assert notice.title.startswith("db-1: FIRING critical disk_usage on /var/log")
    assert "Host: db-1" in notice.body
    assert notice.key == f"db-1/{fingerprint_of('disk_usage', '/var/log')}"
    own = alert_notice(alert("db-1"), "firing", host="central", now=T0)
    assert own.title.startswith("FIRING ") and own.key == fingerprint_of("disk_usage", "/var/log")


def test_pagerduty_gets_one_event_for_the_fleet_with_its_hosts(
    receiver: tuple[str, list[dict[str, Any]]],
) -> None:
    url, bodies = receiver
    channel = PagerDutyChannel("pd", "routing-key", url=url)
    try:
        notice = fleet_incident_notice(incident(5), "firing", host="central", now=T0)
        channel.send(notice)
        resolved = fleet_incident_notice(incident(5), "resolved", host="central", now=T0 + 9)
        channel.send(resolved)
    finally:
        channel.close()
    trigger, resolve = bodies
    assert trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == resolve["dedup_key"] == notice.key
    details = trigger["payload"]["custom_details"]
    assert details["host_count"] == 5
    assert details["hosts"] == [f"web-{n}" for n in range(5)]
    assert trigger["payload"]["group"] == "fleet"
    assert resolve["event_action"] == "resolve"
