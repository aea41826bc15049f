"""Commands and live configuration through the API, against a real running watchkeeper."""

from __future__ import annotations

import subprocess
import time
import tomllib
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest
from web_helpers import LiveServer

from watchkeeper.model.alerts import Alert, Severity, SuggestedAction, fingerprint_of


def post(client: httpx.Client, server: LiveServer, body: Any) -> httpx.Response:
    return client.post("/api/command", json=body, headers=server.auth)


def test_health_check_all_answers_for_every_agent(client: httpx.Client, server: LiveServer) -> None:
    reply = post(client, server, {"command": "health_check", "target": "all"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["ok"] is True
    assert set(body["replies"]) == {"sensor", "analyzer", "remediator", "communicator"}
    assert all(r["health"]["checks"] >= 1 for r in body["replies"].values())


def test_unknown_command_or_target_is_400_listing_the_valid_ones(
    client: httpx.Client, server: LiveServer
) -> None:
    reply = post(client, server, {"command": "explode", "target": "sensor"})
    assert reply.status_code == 400
    assert reply.json()["valid"] == ["health_check", "pause", "resume", "restart", "sample_now"]
    assert "valid: health_check" in reply.json()["detail"]
    reply = post(client, server, {"command": "health_check", "target": "kitchen"})
    assert reply.status_code == 400
    assert reply.json()["valid"] == ["all", "analyzer", "communicator", "remediator", "sensor"]
    # analyze_now is the analyzer's alone, so "all" does not take it
    reply = post(client, server, {"command": "analyze_now", "target": "all"})
    assert reply.status_code == 400
    assert "analyze_now" not in reply.json()["valid"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"target": "all"}, "command"),
        ({"command": "health_check"}, "target"),
        ({"command": "", "target": "all"}, "command"),
        ({"command": 7, "target": "all"}, "command"),
        ({"command": "health_check", "target": "all", "force": True}, "force"),
        ({"command": "health_check", "target": "all", "params": []}, "params"),
        ({"command": "pause", "target": "sensor", "params": {"now": 1}}, "params.now"),
        ({"command": "approve", "target": "remediator", "params": {}}, "params.id"),
        ({"command": "reset_giveup", "target": "remediator", "params": {"target": ""}}, "target"),
    ],
)
def test_bad_bodies_are_422_naming_the_field(
    client: httpx.Client, server: LiveServer, body: dict[str, Any], field: str
) -> None:
    reply = post(client, server, body)
    assert reply.status_code == 422, reply.text
    assert field in reply.text


def test_a_body_that_is_not_json_is_422(client: httpx.Client, server: LiveServer) -> None:
    headers = {**server.auth, "Content-Type": "application/json"}
    reply = client.post("/api/command", content=b"{not json", headers=headers)
    assert reply.status_code == 422
    assert "Traceback" not in reply.text


def test_run_action_checks_the_action_name(client: httpx.Client, server: LiveServer) -> None:
    body = {"command": "run_action", "target": "remediator", "params": {"action": "rm_rf"}}
    reply = post(client, server, body)
    assert reply.status_code == 400
    assert "kill_process" in reply.json()["valid"]


def test_analyze_now_and_sample_now(client: httpx.Client, server: LiveServer) -> None:
    reply = post(client, server, {"command": "analyze_now", "target": "analyzer"})
    assert reply.status_code == 200
    assert reply.json()["replies"]["analyzer"]["source"] == "rules"
    reply = post(client, server, {"command": "sample_now", "target": "sensor"})
    assert reply.json()["replies"]["sensor"]["sample"]["cpu"]["count"] >= 1


def test_pause_resume_and_restart(client: httpx.Client, server: LiveServer) -> None:
    paused = post(client, server, {"command": "pause", "target": "analyzer"})
    assert paused.json()["replies"]["analyzer"]["state"] == "paused"
    assert client.get("/api/agents/analyzer").json()["health"]["state"] == "paused"
    post(client, server, {"command": "resume", "target": "analyzer"})
    assert client.get("/api/agents/analyzer").json()["health"]["state"] == "running"
    before = client.get("/api/agents/communicator").json()["health"]["restarts"]
    reply = post(client, server, {"command": "restart", "target": "communicator"})
    assert reply.json()["replies"]["communicator"]["state"] == "restarting"

    def restarted() -> bool:
        health = client.get("/api/agents/communicator").json()["health"]
        return bool(health["restarts"] == before + 1 and health["state"] == "running")

    server.wait_for(restarted, what="communicator restarted")


def test_an_agent_refusing_is_409_with_its_reason(client: httpx.Client, server: LiveServer) -> None:
    body = {"command": "reset_giveup", "target": "remediator", "params": {"target": "nginx"}}
    reply = post(client, server, body)
    assert reply.status_code == 409
    assert "not in a given-up state" in reply.json()["detail"]


@pytest.fixture
def sleeper() -> Iterator[psutil.Process]:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield psutil.Process(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def _alert_for(proc: psutil.Process, rule: str) -> Alert:
    now = time.time()
    subject = f"process:{proc.pid}"
    return Alert(
        id=f"test-{rule}",
        fingerprint=fingerprint_of(rule, subject),
        rule=rule,
        severity=Severity.WARNING,
        subject=subject,
        summary=f"{proc.name()} is hogging the CPU",
        started_at=now,
        updated_at=now,
        suggested_actions=[
            SuggestedAction(
                action="renice_process",
                target=str(proc.pid),
                target_kind="process",
                params={"create_time": proc.create_time(), "name": proc.name()},
                reason="let the others have the CPU",
            )
        ],
    )


def _pending(client: httpx.Client, pid: int) -> dict[str, Any] | None:
    for record in client.get("/api/remediation").json()["pending"]:
        if record["target"] == str(pid):
            return dict(record)
    return None


def test_approve_and_reject_pending_actions(
    client: httpx.Client, server: LiveServer, sleeper: psutil.Process
) -> None:
    """An alert's suggestion waits for approval; approving runs it for real."""
    assert server.orchestrator is not None
    bus = server.orchestrator.bus
    server.call(lambda: bus.publish("alert.firing", _alert_for(sleeper, "cpu_hog"), sender="test"))
    server.wait_for(lambda: _pending(client, sleeper.pid) is not None, what="pending action")
    record = _pending(client, sleeper.pid)
    assert record is not None and record["action"] == "renice_process"
    approve = {"command": "approve", "target": "remediator", "params": {"id": record["id"]}}
    reply = post(client, server, approve)
    assert reply.status_code == 200, reply.text
    server.wait_for(lambda: sleeper.nice() == 10, what="renice to take effect")

    def audited() -> bool:
        audit = client.get("/api/remediation", params={"target": str(sleeper.pid)}).json()["audit"]
        return any(r["outcome"] == "succeeded" and r["proposer"] == "user" for r in audit)

    server.wait_for(audited, what="succeeded in the audit trail")
    # The same id cannot be approved twice.
    assert post(client, server, approve).status_code == 409

    other = _alert_for(sleeper, "cpu_hog_again")
    server.call(lambda: bus.publish("alert.firing", other, sender="test"))
    server.wait_for(lambda: _pending(client, sleeper.pid) is not None, what="second pending")
    second = _pending(client, sleeper.pid)
    assert second is not None
    reject = {"command": "reject", "target": "remediator", "params": {"id": second["id"]}}
    assert post(client, server, reject).json()["replies"]["remediator"]["outcome"] == "rejected"
    assert _pending(client, sleeper.pid) is None
    counts = client.get("/api/remediation").json()["counts"]
    assert counts.get("pending", 0) >= 2 and counts.get("rejected", 0) >= 1


def test_config_patch_applies_live_and_persists(client: httpx.Client, server: LiveServer) -> None:
    body = {"changes": {"thresholds.cpu_warning": 70}, "persist": False}
    reply = client.patch("/api/config", json=body, headers=server.auth)
    assert reply.status_code == 200, reply.text
    change = reply.json()["change"]
    assert change["changes"] == {"thresholds.cpu_warning": 70.0} and change["actor"] == "api"
    shown = client.get("/api/config").json()["settings"]["thresholds"]["cpu_warning"]
    assert shown == 70.0
    assert not server.config_path.exists()
    nested = {"changes": {"analyzer": {"for_seconds": 20}}, "persist": True}
    assert client.patch("/api/config", json=nested, headers=server.auth).status_code == 200
    written = tomllib.loads(server.config_path.read_text())
    assert written["analyzer"]["for_seconds"] == 20


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"changes": {"thresholds.cpu_warning": 99}}, "cpu_warning (99) must be below"),
        ({"changes": {"web.port": 1}}, "takes effect only at start-up"),
        ({"changes": {"ollama.url": "http://x:1"}}, "takes effect only at start-up"),
        ({"changes": {"nonsense.key": 1}}, "unknown key"),
        ({"changes": {"thresholds.cpu_warnign": 5}}, "unknown key"),
        ({"changes": {"remediation.mode": "yolo"}}, "remediation.mode"),
        ({"changes": {}}, "changes"),
        ({"changes": {"log_level": "INFO"}, "persist": "maybe"}, "persist"),
        ({"change": {"log_level": "INFO"}}, "change"),
    ],
)
def test_bad_config_changes_are_422_with_the_key(
    client: httpx.Client, server: LiveServer, body: dict[str, Any], words: str
) -> None:
    reply = client.patch("/api/config", json=body, headers=server.auth)
    assert reply.status_code == 422, reply.text
    assert words in reply.text
