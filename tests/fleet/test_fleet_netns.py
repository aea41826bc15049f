"""A host cut off from the fleet and reconnected, with a real network in between.

``edge-1`` runs inside its own network namespace, joined to this one by a veth pair on a
private /30; it reaches nats-server on the outer address. The test takes the link down
(the host's only way out), kills edge-1's service, and checks that edge-1 heals it on its
own while the central flags it stale; then brings the link back and checks that the
central gets edge-1's alerts and audit records exactly once.

Needs root and ``ip netns``: skipped with one reason otherwise (failed instead when
``WATCHKEEPER_REQUIRE_NETNS=1``).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from watchkeeper.fleet.serverconf import render_server_config
from watchkeeper.testing.fleet_hosts import (
    FleetHost,
    FleetHosts,
    HostSpec,
    NetnsUnavailable,
    VethNamespace,
    free_port,
    wait_for,
)
from watchkeeper.testing.nats_server import NatsServer, require_nats

pytestmark = [pytest.mark.netns, pytest.mark.slow]

PASSWORDS = {name: f"pw-{name}-f5netns-secret" for name in ("central", "edge-1", "edge-2")}


def _namespace() -> VethNamespace:
    try:
        return VethNamespace().open()
    except NetnsUnavailable as exc:
        reason = f"cannot make a network namespace here: {exc}"
        if os.environ.get("WATCHKEEPER_REQUIRE_NETNS") == "1":
            pytest.fail(f"{reason}; WATCHKEEPER_REQUIRE_NETNS=1 requires it")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def cut_fleet(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[FleetHosts, dict[str, VethNamespace]]]:
    """The central here; ``edge-1`` (all agents) and ``edge-2`` (``--agents
    sensor,remediator``: the central analyses it) each in a namespace of its own."""
    require_nats()
    with ExitStack() as stack:
        spaces: dict[str, VethNamespace] = {}
        for host in ("edge-1", "edge-2"):
            spaces[host] = ns = _namespace()
            stack.callback(ns.close)
        directory = tmp_path_factory.mktemp("netns")
        port = free_port()
        text = render_server_config(
            ["edge-1", "edge-2"],
            "central",
            passwords=PASSWORDS,
            port=port,
            store_dir=str(directory / "nats" / "store"),
            address="0.0.0.0",
        )
        server = NatsServer(directory=directory / "nats", port=port, config_text=text)
        stack.enter_context(server)
        specs = [HostSpec("central", role="central", service=False)]
        for host, ns in spaces.items():
            specs.append(
                HostSpec(
                    host,
                    agents="sensor,remediator" if host == "edge-2" else None,
                    netns=ns.name,
                    servers=(f"nats://{ns.outer_address}:{port}",),
                    web_address=ns.inner_address,
                )
            )
        fleet = FleetHosts(directory, [server.url], specs, passwords=PASSWORDS)
        stack.enter_context(fleet)
        for host in spaces:
            wait_for(
                lambda h=host: _state(fleet, h) == "up",  # type: ignore[misc]
                30,
                f"{host} (in its namespace) up on the fleet view",
            )
        yield fleet, spaces


def _state(fleet: FleetHosts, host: str) -> str | None:
    rows = fleet.central.get("/api/fleet/hosts")["hosts"]
    return next((row["state"] for row in rows if row["host"] == host), None)


def _central_record_ids(fleet: FleetHosts, host: str) -> list[str]:
    view = fleet.central.get(f"/api/fleet/hosts/{host}")
    return [r["id"] for r in (view.get("approvals") or []) + (view.get("actions") or [])]


def _local_restarts(host: FleetHost) -> list[dict[str, Any]]:
    """From the host's own store: edge-1's web cannot be reached while it is cut off."""
    db = host.data_dir / "watchkeeper.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        rows = conn.execute(
            "SELECT id FROM audit WHERE action = 'restart_service' AND target = 'demo' "
            "AND outcome = 'succeeded'"
        )
        return [{"id": row[0]} for row in rows]


def _status_restarts(host: FleetHost) -> int:
    """Succeeded restarts of demo among the remediator's recent records (status file)."""
    recent = host.status().get("details", {}).get("remediator", {}).get("recent", [])
    return sum(
        1
        for r in recent
        if r.get("action") == "restart_service"
        and r.get("target") == "demo"
        and r.get("outcome") == "succeeded"
    )


def _outbox(host: FleetHost) -> dict[str, Any]:
    outbox = host.status().get("bus_backend", {}).get("outbox", {})
    return outbox if isinstance(outbox, dict) else {}


def _stored(host: FleetHost, about: str | None = None) -> dict[str, Counter[str]]:
    db = host.data_dir / "watchkeeper.db"
    where, args = ("", ()) if about is None else (" WHERE host = ?", (about,))
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return {
            "alerts": Counter(r[0] for r in conn.execute("SELECT id FROM alert" + where, args)),
            "transitions": Counter(
                f"{r[0]}:{r[1]}"
                for r in conn.execute("SELECT alert_id, kind FROM alert_transition" + where, args)
            ),
            "audit": Counter(r[0] for r in conn.execute("SELECT id FROM audit" + where, args)),
        }


def test_a_cut_off_host_heals_alone_and_catches_up_exactly_once(
    cut_fleet: tuple[FleetHosts, dict[str, VethNamespace]],
) -> None:
    fleet, spaces = cut_fleet
    ns = spaces["edge-1"]
    edge = fleet["edge-1"]
    wait_for(lambda: edge.service_pid(healthy=True), 30, "edge-1's demo healthy")
    before = {r["id"] for r in _local_restarts(edge)}

    ns.cut()
    old_pid = edge.kill_service()
    healed = wait_for(
        lambda: [r for r in _local_restarts(edge) if r["id"] not in before],
        30,
        "edge-1 healing its service while cut off",
    )
    record_id = healed[0]["id"]
    wait_for(
        lambda: (pid := edge.service_pid(healthy=True)) != old_pid and pid,
        15,
        "edge-1's demo back (a new process)",
    )
    # The central cannot know yet, and says that edge-1 is no longer heard from.
    wait_for(lambda: _state(fleet, "edge-1") in ("stale", "lost"), 20, "edge-1 flagged stale")
    assert record_id not in _central_record_ids(fleet, "edge-1")
    # What edge-1 could not send waits in its outbox.
    wait_for(lambda: _outbox(edge).get("count", 0) >= 1, 15, "edge-1's events in its outbox")
    time.sleep(2)

    ns.reconnect()
    wait_for(lambda: _state(fleet, "edge-1") == "up", 60, "edge-1 up again on the fleet view")
    wait_for(
        lambda: record_id in _central_record_ids(fleet, "edge-1"),
        60,
        "edge-1's restart on the fleet view after the link came back",
    )
    assert _central_record_ids(fleet, "edge-1").count(record_id) == 1

    def in_step() -> bool:
        local, central = _stored(edge), _stored(fleet.central, about="edge-1")
        return local["alerts"] == central["alerts"] and local["audit"] == central["audit"]

    try:
        wait_for(in_step, 45, "the central's store of edge-1 to match edge-1's own")
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\nedge-1: {_stored(edge)}\ncentral: {_stored(fleet.central, 'edge-1')}"
        ) from None
    central = _stored(fleet.central, about="edge-1")
    assert record_id in central["audit"]
    assert max(central["audit"].values()) == 1
    assert max(central["alerts"].values()) == 1
    assert central["transitions"] == _stored(edge)["transitions"]
    wait_for(lambda: _outbox(edge).get("count") == 0, 30, "edge-1's outbox drained")
    assert edge.status()["bus_backend"]["dropped"]["outbox_events"] == 0


def test_a_cut_off_host_without_an_analyzer_still_heals(
    cut_fleet: tuple[FleetHosts, dict[str, VethNamespace]],
) -> None:
    """edge-2 leaves analysis to the central. Cut off by the network (the server is fine,
    no connection is closed: the packets just stop), it must notice, start its rules-only
    fallback analyzer (``fleet.fallback_analyzer_after`` is 3 s here) and heal its
    service itself; back on the network it hands analysis back to the central."""
    fleet, spaces = cut_fleet
    edge = fleet["edge-2"]
    wait_for(lambda: edge.service_pid(healthy=True), 30, "edge-2's demo healthy")
    before_ids = {r["id"] for r in edge.restarts()}
    before = _status_restarts(edge)
    spaces["edge-2"].cut()
    try:
        edge.kill_service()
        # edge-2 keeps no store of its own (no communicator) and its web is behind the cut
        # link: its status file says what its remediator did.
        wait_for(
            lambda: _status_restarts(edge) > before,
            60,
            "edge-2 (no analyzer of its own) healing its service while cut off",
        )
        placement = edge.status().get("placement", {})
        assert placement.get("fallback_analyzer") == "running", placement
    finally:
        spaces["edge-2"].reconnect()
    new = wait_for(
        lambda: [r for r in edge.restarts() if r["id"] not in before_ids],
        30,
        "edge-2's restart in its own audit (its web reachable again)",
    )
    wait_for(
        lambda: new[0]["id"] in _central_record_ids(fleet, "edge-2"),
        60,
        "edge-2's restart on the fleet view after the link came back",
    )
    assert _central_record_ids(fleet, "edge-2").count(new[0]["id"]) == 1
    wait_for(
        lambda: new[0]["id"] in _stored(fleet.central, about="edge-2")["audit"],
        30,
        "edge-2's restart in the central's store",
    )
    assert max(_stored(fleet.central, about="edge-2")["audit"].values()) == 1
