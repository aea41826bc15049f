"""A fleet brought up in the wrong order: the hosts before the central.

With the example permissions only the central may create the JetStream streams, so a
host that starts first has nowhere to store its events. It must keep working alone (heal
a killed service, record it) and keep those events in its outbox; once the central is up
and has made the streams, the central must get them, each once.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from watchkeeper.fleet.serverconf import render_server_config
from watchkeeper.testing.fleet_hosts import FleetHost, HostSpec, free_port, wait_for
from watchkeeper.testing.nats_server import NatsServer, require_nats

pytestmark = pytest.mark.slow

PASSWORDS = {name: f"pw-{name}-f5order-secret" for name in ("central", "web-1")}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    require_nats()
    port = free_port()
    text = render_server_config(
        ["web-1"],
        "central",
        passwords=PASSWORDS,
        port=port,
        store_dir=str(tmp_path / "nats" / "store"),
        address="127.0.0.1",
    )
    with NatsServer(directory=tmp_path / "nats", port=port, config_text=text) as running:
        yield running


def _audit(host: FleetHost, about: str | None = None) -> Counter[str]:
    db = host.data_dir / "watchkeeper.db"
    where, args = ("", ()) if about is None else (" WHERE host = ?", (about,))
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return Counter(r[0] for r in conn.execute("SELECT id FROM audit" + where, args))


def _central_record_ids(central: FleetHost, host: str) -> list[str]:
    """The action records the central shows for ``host`` (none while it knows no such host)."""
    try:
        view = central.get(f"/api/fleet/hosts/{host}")
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 404:
            return []
        raise
    return [r["id"] for r in (view.get("approvals") or []) + (view.get("actions") or [])]


def test_a_host_started_before_the_central_is_caught_up_once(
    server: NatsServer, tmp_path: Path
) -> None:
    web1 = FleetHost(HostSpec("web-1"), tmp_path / "web-1", [server.url], PASSWORDS["web-1"])
    central = FleetHost(
        HostSpec("central", role="central", service=False),
        tmp_path / "central",
        [server.url],
        PASSWORDS["central"],
    )
    try:
        web1.start()
        wait_for(web1.ready, 60, "web-1's web")
        web1.kill_service()
        healed = wait_for(
            lambda: web1.restarts(), 30, "web-1 healing with no central and no streams yet"
        )
        bus = wait_for(lambda: web1.status().get("bus_backend"), 10, "web-1's bus status")
        assert bus["connected"] is True  # the server is there, the streams are not
        central.start()
        wait_for(central.ready, 60, "the central's web")
        wait_for(
            lambda: healed[0]["id"] in _central_record_ids(central, "web-1"),
            60,
            "web-1's restart from before the central on the fleet view",
        )
        wait_for(
            lambda: _audit(central, about="web-1") == _audit(web1),
            30,
            "the central's store of web-1's audit to match web-1's own",
        )
        assert max(_audit(central, about="web-1").values()) == 1
        outbox = wait_for(
            lambda: (b := web1.status().get("bus_backend")) and b["outbox"]["count"] == 0 and b,
            30,
            "web-1's outbox drained",
        )
        assert outbox["dropped"]["outbox_events"] == 0
    finally:
        central.stop()
        web1.stop()
