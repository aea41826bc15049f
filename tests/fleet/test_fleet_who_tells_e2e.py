"""One message per alert across real hosts: a real nats-server (the example fleet
configuration) and three real ``watchkeeper run`` processes, each sending its notices to a
loopback webhook receiver of its own path. ``web-1`` tells people of its own (the default),
``web-2`` does not (notifications off), so the central tells of it with its host named.
Both demo services are killed; each incident reaches people exactly once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from watchkeeper.fleet.serverconf import render_server_config
from watchkeeper.testing.fleet_hosts import FleetHosts, HostSpec, free_port, wait_for
from watchkeeper.testing.nats_server import NatsServer, require_nats

pytestmark = pytest.mark.slow

LEAVES = ["web-1", "web-2"]
PASSWORDS = {name: f"pw-{name}-whotells-secret" for name in ["central", *LEAVES]}


class Receiver:
    """A loopback webhook receiver: every body it is sent, with the path it came to."""

    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, Any]]] = []
        got = self.got

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                got.append((self.path, json.loads(self.rfile.read(length))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{path}"

    def about_demo(self) -> list[tuple[str, str, str]]:
        """(who sent it, kind, title) of every notice about the demo service."""
        return [
            (path.strip("/"), str(body["kind"]), str(body["title"]))
            for path, body in self.got
            if "demo" in str(body["title"])
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _notifications(receiver: Receiver, path: str) -> str:
    return f"""
[notifications]
group_wait = 1.0
retries = {{ attempts = 2, backoff_initial = 0.05 }}

[[notifications.channels]]
type = "webhook"
url = "{receiver.url(path)}"
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    one = Receiver()
    try:
        yield one
    finally:
        one.close()


@pytest.fixture
def fleet(tmp_path: Path, receiver: Receiver) -> Iterator[FleetHosts]:
    require_nats()
    port = free_port()
    text = render_server_config(
        LEAVES,
        "central",
        passwords=PASSWORDS,
        port=port,
        store_dir=str(tmp_path / "store"),
        address="127.0.0.1",
    )
    specs = [
        HostSpec(
            "central",
            role="central",
            service=False,
            extra_toml=_notifications(receiver, "central"),
        ),
        HostSpec("web-1", extra_toml=_notifications(receiver, "web-1")),
        HostSpec("web-2", extra_toml="\n[notifications]\nenabled = false\n"),
    ]
    with (
        NatsServer(directory=tmp_path / "nats", port=port, config_text=text) as server,
        FleetHosts(tmp_path / "fleet", [server.url], specs, passwords=PASSWORDS) as hosts,
    ):
        wait_for(
            lambda: hosts.central.get("/api/fleet/hosts")["counts"]["up"] == len(specs),
            40,
            "every host up on the fleet view",
        )
        # The central has heard each leaf say whether it tells people itself.
        wait_for(
            lambda: all(hosts.central.get(f"/api/fleet/hosts/{leaf}")["beat"] for leaf in LEAVES),
            20,
            "the leaves' heartbeats",
        )
        yield hosts


def test_each_hosts_incident_reaches_people_once(fleet: FleetHosts, receiver: Receiver) -> None:
    for leaf in LEAVES:
        fleet[leaf].kill_service()
    for leaf in LEAVES:
        host = fleet[leaf]
        wait_for(host.restarts, 40, f"{leaf} heals its service")

    def opened() -> list[tuple[str, str, str]]:
        return [n for n in receiver.about_demo() if n[1] != "resolved"]

    wait_for(lambda: len(opened()) >= 2, 30, "a notice for each host's incident")
    time.sleep(6)  # anything told twice (group_wait, the incident grace) has gone out
    told = opened()
    web1 = [n for n in told if "web-1" in n[2] or n[0] == "web-1"]
    web2 = [n for n in told if "web-2" in n[2] or n[0] == "web-2"]
    # web-1 tells its own, once; the central says nothing of it.
    assert [(who, kind) for who, kind, _ in web1] == [("web-1", "firing")], told
    # web-2 tells no one; the central tells of it once, its host named.
    assert len(web2) == 1 and web2[0][0] == "central", told
    assert web2[0][2].startswith("web-2: "), told
    assert len(told) == 2, told
