"""The fleet end to end: a real nats-server and five real watchkeeper hosts on one machine.

The server runs the example fleet configuration (one user per host, each kept to its own
subjects). The hosts: ``central`` (the fleet view), ``web-1`` (heals on its own),
``web-2`` and ``web-3`` (``remediation.mode = "approve"``) and ``db-1`` (``--agents
sensor,remediator``: the central analyses it). Every host runs a demo service that the
tests kill with SIGKILL, as a crash would. The fleet is shared by the tests of this
module; the server crash comes last.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from watchkeeper.fleet.serverconf import render_server_config
from watchkeeper.testing.fleet_hosts import FleetHost, FleetHosts, HostSpec, free_port, wait_for
from watchkeeper.testing.nats_server import NatsServer, require_nats

pytestmark = pytest.mark.slow

LEAVES = ["web-1", "web-2", "web-3", "db-1"]
PASSWORDS = {name: f"pw-{name}-f5e2e-secret" for name in ["central", *LEAVES]}
SPECS = [
    HostSpec("central", role="central", service=False),
    HostSpec("web-1"),
    HostSpec("web-2", mode="approve"),
    HostSpec("web-3", mode="approve"),
    HostSpec("db-1", agents="sensor,remediator"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    require_nats()
    directory = tmp_path_factory.mktemp("nats")
    port = free_port()
    text = render_server_config(
        LEAVES,
        "central",
        passwords=PASSWORDS,
        port=port,
        store_dir=str(directory / "store"),
        address="127.0.0.1",
    )
    with NatsServer(directory=directory, port=port, config_text=text) as running:
        yield running


@pytest.fixture(scope="module")
def fleet(server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetHosts]:
    directory = tmp_path_factory.mktemp("fleet")
    with FleetHosts(directory, [server.url], SPECS, passwords=PASSWORDS) as hosts:
        wait_for(
            lambda: hosts.central.get("/api/fleet/hosts")["counts"]["up"] == len(SPECS),
            30,
            "every host up on the fleet view",
        )
        try:
            yield hosts
        finally:
            for host in hosts:
                if not host.alive():
                    print(f"--- {host.host_id} ---\n{host.log_tail()}")


def host_view(fleet: FleetHosts, host: str) -> dict[str, Any]:
    return fleet.central.get(f"/api/fleet/hosts/{host}")  # type: ignore[no-any-return]


def audit_ids(host: FleetHost) -> set[str]:
    return {r["id"] for r in host.remediation_records()}


def central_actions(fleet: FleetHosts, host: str) -> list[dict[str, Any]]:
    view = host_view(fleet, host)
    return list(view.get("approvals") or []) + list(view.get("actions") or [])


def test_every_host_is_on_the_fleet_view(fleet: FleetHosts) -> None:
    reply = fleet.central.get("/api/fleet/hosts")
    rows = {row["host"]: row for row in reply["hosts"]}
    assert set(rows) == {"central", *LEAVES}
    assert all(row["state"] == "up" and row["connected"] for row in rows.values())
    assert rows["db-1"]["agents"] == ["sensor", "remediator"]
    assert "fleet" in rows["central"]["agents"]
    # Prometheus on the central: one series per host, labelled with its id.
    metrics = fleet.central.get_text("/metrics")
    for host_id in ("central", *LEAVES):
        assert f'watchkeeper_fleet_host_state{{host="{host_id}",state="up"}} 1.0' in metrics
    assert 'watchkeeper_fleet_hosts{host="central",state="up"} 5.0' in metrics
    # A leaf is no fleet view: it says so instead of showing a partial one.
    leaf = httpx.get(fleet["web-1"].url + "/api/fleet/hosts", timeout=5)
    assert leaf.status_code in (404, 409)
    assert "central" in leaf.text


def test_a_killed_service_shows_centrally_and_is_healed_on_its_host(fleet: FleetHosts) -> None:
    web1 = fleet["web-1"]
    others = {h.host_id: audit_ids(h) for h in fleet if h.host_id not in ("web-1", "central")}
    before = audit_ids(web1)
    old_pid = web1.kill_service()
    healed = wait_for(
        lambda: [r for r in web1.restarts() if r["id"] not in before],
        30,
        "web-1's own audit of the restart",
    )
    record = healed[0]
    assert record["proposer"] == "rule"
    new_pid = wait_for(
        lambda: (pid := web1.service_pid(healthy=True)) != old_pid and pid,
        15,
        "a new demo process, healthy",
    )
    assert new_pid != old_pid
    # The central shows the same record (same id) for web-1, and the alert behind it.
    seen = wait_for(
        lambda: [r for r in central_actions(fleet, "web-1") if r["id"] == record["id"]],
        15,
        "the restart on the fleet view of web-1",
    )
    assert seen[0]["outcome"] == "succeeded"
    alert_ids = {a["id"] for a in web1.alert_history() if a["rule"] == "service_down"}
    assert record["alert_id"] in alert_ids
    wait_for(
        lambda: record["alert_id"] in history(fleet.central, about="web-1")["alerts"],
        15,
        "web-1's alert in the central's history",
    )
    # Nothing ran anywhere else.
    for host_id, ids in others.items():
        assert audit_ids(fleet[host_id]) == ids, host_id
        assert all(r["id"] != record["id"] for r in central_actions(fleet, host_id))


def test_a_host_without_an_analyzer_is_analysed_centrally_and_healed_locally(
    fleet: FleetHosts,
) -> None:
    db1 = fleet["db-1"]
    assert "analyzer" not in db1.status().get("agents", {})
    before = audit_ids(db1)
    db1.kill_service()
    healed = wait_for(
        lambda: [r for r in db1.restarts() if r["id"] not in before],
        30,
        "db-1's own audit of the restart the central's analysis asked for",
    )
    wait_for(
        lambda: any(r["id"] == healed[0]["id"] for r in central_actions(fleet, "db-1")),
        15,
        "db-1's restart on the fleet view",
    )
    assert wait_for(lambda: db1.service_pid(healthy=True), 15, "db-1's demo healthy again")
    # The central's own services were not touched for db-1's trouble.
    assert not fleet.central.restarts()


def _pending(host: FleetHost) -> list[dict[str, Any]]:
    return [
        r
        for r in host.get("/api/remediation").get("pending") or []
        if r["action"] == "restart_service" and r["target"] == "demo"
    ]


def test_an_approval_on_the_fleet_view_runs_on_the_addressed_host_only(
    fleet: FleetHosts,
) -> None:
    web2, web3 = fleet["web-2"], fleet["web-3"]
    web2.kill_service()
    web3.kill_service()
    pending2 = wait_for(lambda: _pending(web2), 30, "web-2's restart waiting for approval")[0]
    pending3 = wait_for(lambda: _pending(web3), 30, "web-3's restart waiting for approval")[0]
    wait_for(
        lambda: any(r["id"] == pending2["id"] for r in host_view(fleet, "web-2")["approvals"]),
        15,
        "web-2's pending approval on the fleet view",
    )

    # The fleet list shows both hosts in trouble, waiting for a person.
    def in_trouble() -> dict[str, dict[str, Any]] | None:
        rows = {row["host"]: row for row in fleet.central.get("/api/fleet/hosts")["hosts"]}
        waiting = [rows[h] for h in ("web-2", "web-3")]
        if all(
            r["pending_approvals"] >= 1
            and r["firing"] >= 1
            and r["worst_severity"] == "critical"
            and r["status"] != "healthy"
            for r in waiting
        ):
            return rows
        return None

    wait_for(in_trouble, 15, "web-2 and web-3 critical, waiting for approval, on the fleet list")
    alerts2 = host_view(fleet, "web-2")["alerts"]
    assert any(a["rule"] == "service_down" and a["subject"] == "service:demo" for a in alerts2)
    url = fleet.central.url + "/api/fleet/hosts/{}/approvals/{}"

    # Without the central's token, or with a leaf's: refused, nothing runs.
    for token in ("", web2.token):
        refused = fleet.central.post(
            f"/api/fleet/hosts/web-2/approvals/{pending2['id']}", {"by": "mallory"}, token=token
        )
        assert refused.status_code == 401, refused.text
    # web-3's approval id addressed to web-2: web-2 has no such request, web-3 is not asked.
    crossed = fleet.central.post(
        f"/api/fleet/hosts/web-2/approvals/{pending3['id']}", {"by": "alice"}
    )
    assert crossed.status_code == 409, crossed.text
    assert [r["id"] for r in _pending(web2)] == [pending2["id"]]
    assert [r["id"] for r in _pending(web3)] == [pending3["id"]]

    audit3 = audit_ids(web3)
    approved = fleet.central.post(
        f"/api/fleet/hosts/web-2/approvals/{pending2['id']}", {"by": "alice"}
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["answered_by"] == "web-2"
    ran = wait_for(
        lambda: [r for r in web2.restarts() if "alice" in r.get("proposed_by", "")],
        20,
        "web-2's audit of the approved restart",
    )
    assert "from host central" in ran[0]["proposed_by"]
    assert wait_for(lambda: web2.service_pid(healthy=True), 15, "web-2's demo healthy again")

    # web-3: still waiting, still down, its audit unchanged.
    time.sleep(2)
    assert [r["id"] for r in _pending(web3)] == [pending3["id"]]
    assert web3.service_pid() is None
    assert audit_ids(web3) == audit3
    assert not web3.restarts()
    # The same click again: web-2 has nothing pending under that id any more.
    again = httpx.post(
        url.format("web-2", pending2["id"]),
        json={"by": "alice"},
        headers={"Authorization": f"Bearer {fleet.central.token}"},
        timeout=15,
    )
    assert again.status_code == 409
    assert len([r for r in web2.restarts() if "alice" in r.get("proposed_by", "")]) == 1
    # Leave web-3 healthy for the tests after this one.
    fleet.central.post(f"/api/fleet/hosts/web-3/approvals/{pending3['id']}", {"by": "alice"})
    wait_for(lambda: web3.service_pid(healthy=True), 20, "web-3's demo healthy again")


# -- history: the central's store against each host's own ----------------------------


def _rows(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return list(conn.execute(sql, args))


def history(host: FleetHost, about: str | None = None) -> dict[str, Counter[str]]:
    """Alert ids, alert transitions (id:kind) and audit record ids in ``host``'s store;
    ``about``: only the rows about that host (the central's store keeps every host's)."""
    db = host.data_dir / "watchkeeper.db"
    where, args = ("", ()) if about is None else (" WHERE host = ?", (about,))
    return {
        "alerts": Counter(r[0] for r in _rows(db, "SELECT id FROM alert" + where, args)),
        "transitions": Counter(
            f"{r[0]}:{r[1]}"
            for r in _rows(db, "SELECT alert_id, kind FROM alert_transition" + where, args)
        ),
        "audit": Counter(r[0] for r in _rows(db, "SELECT id FROM audit" + where, args)),
    }


def _same_history(fleet: FleetHosts, host_id: str) -> bool:
    local = history(fleet[host_id])
    central = history(fleet.central, about=host_id)
    return local["alerts"] == central["alerts"] and local["audit"] == central["audit"]


def in_step(fleet: FleetHosts, host_id: str, timeout: float, what: str) -> None:
    try:
        wait_for(lambda: _same_history(fleet, host_id), timeout, f"{host_id}'s history {what}")
    except AssertionError as exc:
        local = history(fleet[host_id])
        central = history(fleet.central, about=host_id)
        every = history(fleet.central)
        raise AssertionError(
            f"{exc}\n{host_id} stored: {local}\ncentral stored about it: {central}"
            f"\ncentral stored in all: {every}"
        ) from None


def test_the_central_killed_and_restarted_catches_up_once(fleet: FleetHosts) -> None:
    """The central crashes (SIGKILL) at 3 a.m.; web-1 heals a service meanwhile; the central
    restarted on its data dir has web-1's restart once, and the fleet view works again."""
    central, web1 = fleet.central, fleet["web-1"]
    in_step(fleet, "web-1", 30, "in step first")
    before = audit_ids(web1)
    central.kill()
    web1.kill_service()
    healed = wait_for(
        lambda: [r for r in web1.restarts() if r["id"] not in before],
        30,
        "web-1 healing while the central is down",
    )
    central.start()
    wait_for(central.ready, 60, "the central's web again")
    wait_for(
        lambda: any(r["id"] == healed[0]["id"] for r in central_actions(fleet, "web-1")),
        45,
        "web-1's restart on the restarted central's fleet view",
    )
    in_step(fleet, "web-1", 45, "caught up after the central's restart")
    central_history = history(central, about="web-1")
    assert central_history["transitions"] == history(web1)["transitions"]
    assert max(central_history["audit"].values()) == 1
    wait_for(
        lambda: central.get("/api/fleet/hosts")["counts"]["up"] == len(SPECS),
        30,
        "every host up on the restarted central",
    )


def test_server_killed_and_restarted_loses_and_duplicates_nothing(
    fleet: FleetHosts, server: NatsServer
) -> None:
    full = [h for h in LEAVES if "analyzer" in fleet[h].status().get("agents", {})]
    assert "web-1" in full
    for host_id in full:
        in_step(fleet, host_id, 30, "in step first")
    web1, db1 = fleet["web-1"], fleet["db-1"]
    before, db1_before = audit_ids(web1), audit_ids(db1)

    server.kill()
    # Cut off, web-1 heals on its own (its analyzer and remediator never needed the server);
    # db-1, analysed by the central, heals with its fallback analyzer.
    web1.kill_service()
    db1.kill_service()
    healed = wait_for(
        lambda: [r for r in web1.restarts() if r["id"] not in before],
        30,
        "web-1 healing while the server is down",
    )
    db1_healed = wait_for(
        lambda: [r for r in db1.restarts() if r["id"] not in db1_before],
        45,
        "db-1 healing with its fallback analyzer while the server is down",
    )
    assert not any(r["id"] == healed[0]["id"] for r in central_actions(fleet, "web-1"))
    # web-1 itself crashes before the server is back: what it had not sent waits in its
    # outbox on disk, and the restarted web-1 sends it.
    web1.kill()
    web1.start()
    wait_for(web1.ready, 60, "web-1 restarted while the server is down")
    # A click on the fleet view meanwhile is answered in words, and runs nothing.
    cut = fleet.central.post(f"/api/fleet/hosts/web-2/approvals/{'0' * 12}", {"by": "alice"})
    assert cut.status_code == 504, cut.text
    assert "web-2" in cut.json()["detail"]
    time.sleep(2)
    server.restart()

    wait_for(
        lambda: any(r["id"] == healed[0]["id"] for r in central_actions(fleet, "web-1")),
        45,
        "web-1's restart on the fleet view after the server came back",
    )
    for host_id in full:
        in_step(fleet, host_id, 45, "caught up")
        local = history(fleet[host_id])
        central = history(fleet.central, about=host_id)
        assert max(central["alerts"].values(), default=1) == 1
        assert max(central["audit"].values(), default=1) == 1
        # Every firing and resolving the host stored, the central stored once.
        assert central["transitions"] == local["transitions"], host_id
    # db-1 keeps no history of its own (no communicator there): its remediator's audit is
    # in the central's store, each record once.
    db1_ids = audit_ids(db1)
    assert db1_healed[0]["id"] in db1_ids
    wait_for(
        lambda: db1_ids <= set(history(fleet.central, about="db-1")["audit"]),
        45,
        "db-1's audit in the central's store",
    )
    assert max(history(fleet.central, about="db-1")["audit"].values()) == 1
    wait_for(
        lambda: fleet.central.get("/api/fleet/hosts")["counts"]["up"] == len(SPECS),
        30,
        "every host up again",
    )
