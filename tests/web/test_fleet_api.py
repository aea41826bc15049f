"""``/api/fleet`` on a real running central watchkeeper (uvicorn on loopback), its fleet
view fed with three hosts: one up, one stale, one lost."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from fleet_web_helpers import fleet_factories, sample_fleet
from web_helpers import LiveServer

from watchkeeper.model.alerts import Alert, Severity, SuggestedAction, fingerprint_of
from watchkeeper.model.message import Message

CENTRAL = {
    "fleet": {"role": "central"},
    "bus": {"host_id": "central-1", "request_timeout": 0.5},
}


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    fleet = sample_fleet()
    root = tmp_path_factory.mktemp("fleet-central")
    with LiveServer(root, flags=CENTRAL, factories=fleet_factories(fleet)) as live:
        yield live


@pytest.fixture
def http(central: LiveServer) -> Iterator[httpx.Client]:
    with central.client() as client:
        yield client


def test_hosts_lists_every_host_worst_first_with_counts(http: httpx.Client) -> None:
    reply = http.get("/api/fleet/hosts")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["central"] == "central-1"
    assert [row["host"] for row in body["hosts"]] == ["db-3", "web-2", "central-1"]
    assert body["counts"] == {"up": 1, "stale": 1, "lost": 1}
    assert body["total"] == 3
    web = body["hosts"][1]
    assert web["state"] == "stale" and web["firing"] == 2 and web["pending_approvals"] == 1
    assert 39 <= web["age_s"] <= 60
    # A display name is the host's own text: passed on as data, never turned into markup.
    assert web["name"] == "<img src=x onerror=alert(1)>"


def test_one_host_view_and_unknown_or_malformed_hosts(http: httpx.Client) -> None:
    view = http.get("/api/fleet/hosts/web-2").json()
    assert view["host"] == "web-2"
    assert view["summary"]["state"] == "stale"
    assert view["alerts"][0]["rule"] == "disk_usage"
    assert view["approvals"][0]["id"] == "3f9a0c1d2e4b"
    assert set(view) >= {"summary", "beat", "sample", "alerts", "incidents", "approvals"}
    missing = http.get("/api/fleet/hosts/web-9")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no host 'web-9' in the fleet"
    bad = http.get("/api/fleet/hosts/Web..2")
    assert bad.status_code == 422
    assert "must be 1 to 64 lower-case letters" in bad.json()["detail"]
    assert "Traceback" not in bad.text


def test_fleet_incidents(http: httpx.Client) -> None:
    body = http.get("/api/fleet/incidents").json()
    assert body["open"] == 1 and body["total"] == 1
    assert body["incidents"][0]["title"] == "2 hosts: /var/log filling since 14:05"
    one = http.get("/api/fleet/incidents/f1").json()
    assert [h["host"] for h in one["hosts"]] == ["web-2", "db-3"]
    assert http.get("/api/fleet/incidents/f9").status_code == 404
    assert http.get("/api/fleet/incidents/f9;drop").status_code == 422


def test_answers_need_the_token(http: httpx.Client, central: LiveServer) -> None:
    for path in (
        "/api/fleet/hosts/web-2/approvals/3f9a0c1d2e4b",
        "/api/fleet/hosts/web-2/rejections/3f9a0c1d2e4b",
    ):
        assert http.post(path, json={"by": "mallory"}).status_code == 401
        wrong = {"Authorization": "Bearer " + "x" * 43}
        assert http.post(path, json={"by": "mallory"}, headers=wrong).status_code == 401


def test_a_host_that_does_not_answer_is_504_in_words(
    http: httpx.Client, central: LiveServer
) -> None:
    started = time.monotonic()
    reply = http.post(
        "/api/fleet/hosts/web-2/approvals/3f9a0c1d2e4b", json={"by": "alice"}, headers=central.auth
    )
    assert reply.status_code == 504
    assert reply.json()["detail"] == "host web-2 did not answer within 0.5 s"
    assert time.monotonic() - started < 5
    unknown = http.post("/api/fleet/hosts/web-9/approvals/abc", headers=central.auth)
    assert unknown.status_code == 404
    bad = http.post("/api/fleet/hosts/web-2/approvals/a%20b", headers=central.auth)
    assert bad.status_code == 422
    extra = http.post(
        "/api/fleet/hosts/web-2/approvals/abc", json={"by": "a", "as": "root"}, headers=central.auth
    )
    assert extra.status_code == 422


@pytest.fixture
def sleeper() -> Iterator[psutil.Process]:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield psutil.Process(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def _renice_alert(proc: psutil.Process, rule: str) -> Alert:
    now = time.time()
    subject = f"process:{proc.pid}"
    return Alert(
        id=f"test-{rule}",
        fingerprint=fingerprint_of(rule, subject),
        rule=rule,
        severity=Severity.WARNING,
        subject=subject,
        summary="busy",
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


def _pending(central: LiveServer, pid: int) -> dict[str, Any] | None:
    assert central.orchestrator is not None
    remediator: Any = central.orchestrator.agents["remediator"]
    records = central.on_loop(remediator.pending)
    found = [r for r in records if r.target == str(pid)]
    return found[0].model_dump(mode="json") if found else None


def test_approve_and_reject_on_this_host_through_the_fleet_api(
    http: httpx.Client, central: LiveServer, sleeper: psutil.Process
) -> None:
    """The central host is a host of the fleet too: its own approvals go through its
    remediator's gate, and the audit names the person."""
    assert central.orchestrator is not None
    bus = central.orchestrator.bus
    fleet: Any = central.orchestrator.agents["fleet"].fleet_state  # type: ignore[attr-defined]
    fleet.add(fleet.rows["central-1"])  # central-1 is in the fleet (as its beats would say)
    alert = _renice_alert(sleeper, "cpu_hog")
    central.call(lambda: bus.publish("alert.firing", alert, sender="test"))
    central.wait_for(lambda: _pending(central, sleeper.pid) is not None, what="pending")
    record = _pending(central, sleeper.pid)
    assert record is not None
    path = f"/api/fleet/hosts/central-1/approvals/{record['id']}"
    reply = http.post(path, json={"by": "alice\u202e\n"}, headers=central.auth)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["ok"] is True and body["host"] == "central-1" and body["by"] == "alice"
    central.wait_for(lambda: sleeper.nice() == 10, what="the renice")
    again = http.post(path, json={"by": "alice"}, headers=central.auth)
    assert again.status_code == 409
    assert "no pending action" in again.json()["detail"]

    second = _renice_alert(sleeper, "cpu_hog_again")
    central.call(lambda: bus.publish("alert.firing", second, sender="test"))
    central.wait_for(lambda: _pending(central, sleeper.pid) is not None, what="second pending")
    other = _pending(central, sleeper.pid)
    assert other is not None
    path = f"/api/fleet/hosts/central-1/rejections/{other['id']}"
    rejected = http.post(path, headers=central.auth)
    assert rejected.status_code == 200 and rejected.json()["outcome"] == "rejected"
    assert _pending(central, sleeper.pid) is None
    remediator: Any = central.orchestrator.agents["remediator"]
    audit = central.on_loop(lambda: remediator.audit(50))
    approved = [r for r in audit if r.proposer == "user" and r.target == str(sleeper.pid)]
    assert approved and approved[0].proposed_by == "alice"
    assert approved[0].reason.startswith("approved by alice: ")
    assert any(r.detail == "rejected by fleet-api" for r in audit)


def test_a_host_that_is_not_central_says_so(tmp_path: Path) -> None:
    plain_server = LiveServer(tmp_path, flags={"bus": {"host_id": "web-2"}})
    with plain_server as plain, plain.client() as client:
        for path in ("/api/fleet/hosts", "/api/fleet/hosts/web-2", "/api/fleet/incidents"):
            reply = client.get(path)
            assert reply.status_code == 409
            assert reply.json()["detail"] == (
                "this watchkeeper (host web-2) does not keep the fleet view: "
                'its [fleet] role is "host"; ask the central host'
            )
        post = client.post("/api/fleet/hosts/web-2/approvals/abc", headers=plain.auth)
        assert post.status_code == 409


def _answer_as(central: LiveServer, origin: str, payload: dict[str, Any]) -> None:
    """Answer the next command for web-2's remediator as ``origin`` would over the network:
    the way a host that misbehaves (or an impostor) would."""
    assert central.orchestrator is not None and central.loop is not None
    bus: Any = central.orchestrator.bus

    async def answer() -> None:
        sub = bus.subscribe("command.remediator", name="impostor", scope="web-2")
        try:
            asked = await sub.get(timeout=5)
            reply = Message(
                topic=asked.reply_to,
                sender="remediator",
                payload=payload,
                correlation_id=asked.correlation_id,
                host="central-1",
                origin=origin,
            )
            bus.deliver(reply)
        finally:
            sub.close()

    asyncio.run_coroutine_threadsafe(answer(), central.loop)
    time.sleep(0.1)  # subscribed before the request goes out


def test_an_odd_answer_from_a_host_is_one_clear_message(
    http: httpx.Client, central: LiveServer
) -> None:
    path = "/api/fleet/hosts/web-2/approvals/3f9a0c1d2e4b"
    _answer_as(central, "web-2", {"nonsense": True})
    reply = http.post(path, headers=central.auth)
    assert reply.status_code == 502
    assert reply.json()["detail"] == "host web-2 answered with something that is not a reply"

    _answer_as(central, "web-3", {"ok": True, "agent": "remediator", "command": "approve"})
    reply = http.post(path, headers=central.auth)
    assert reply.status_code == 502
    assert reply.json()["detail"] == "the answer for host web-2 came from host web-3"

    refusal = {"ok": False, "agent": "remediator", "command": "approve"}
    _answer_as(central, "web-2", {**refusal, "error": "no\x1b[2J such\u202e action"})
    reply = http.post(path, headers=central.auth)
    assert reply.status_code == 409
    assert reply.json()["detail"] == "host web-2: no [2J such  action"
    assert "\x1b" not in reply.text and "\u202e" not in reply.text


def test_closed_reads_keep_the_page_shell_open_and_the_fleet_closed(tmp_path: Path) -> None:
    flags = {**CENTRAL, "web": {"open_reads": False}}
    fleet = sample_fleet()
    with (
        LiveServer(tmp_path, flags=flags, factories=fleet_factories(fleet)) as live,
        live.client() as client,
    ):
        page = client.get("/fleet")
        assert page.status_code == 200 and "/static/fleet.js" in page.text
        assert live.token not in page.text
        assert client.get("/static/fleet.js").status_code == 200
        assert client.get("/api/fleet/hosts").status_code == 401
        assert client.get("/api/fleet/hosts", headers=live.auth).json()["total"] == 3
