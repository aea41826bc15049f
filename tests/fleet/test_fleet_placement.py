"""Agents placed where they fit, with real processes: a real nats-server (one user per
host, each kept to its own subjects), a leaf running ``--agents sensor,remediator`` and a
central running ``--agents analyzer,communicator`` with ``fleet.role = "central"``.

A demo service killed on the leaf is analysed by the central (its alert is about the
leaf, published by the central) and healed on the leaf by the leaf's remediator (the
leaf's own audit). Then the server is killed: the leaf, cut off, starts its fallback
analyzer and heals a second kill on its own; when the server is back, it stands the
fallback down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from watchkeeper.fleet.serverconf import render_server_config
from watchkeeper.testing.fleet_hosts import FleetHost, HostSpec, free_port, wait_for
from watchkeeper.testing.nats_server import NatsServer, require_nats

pytestmark = pytest.mark.slow

CENTRAL, LEAF = "central-p", "leaf-p"
PASSWORDS = {CENTRAL: "pw-central-p-placement", LEAF: "pw-leaf-p-placement"}


class QuickLoops(FleetHost):
    """A fleet host whose crash-loop and flap windows are 5 s, so a second death a few
    seconds after a heal is a new alert to the analyzer, not the remediator's own
    "died again" restart."""

    def config_text(self) -> str:
        text = super().config_text()
        text = text.replace("[remediation]\n", "[remediation]\ncrash_loop_window = 5\n", 1)
        return text + "\n[analyzer]\nflap_window = 5\n"


class Tap:
    """A NATS subscriber (the central's user) in its own thread: every message on
    ``subject``, decoded from its JSON envelope."""

    def __init__(self, url: str, subject: str) -> None:
        self.url, self.subject = url, subject
        self.messages: list[dict[str, Any]] = []
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> Tap:
        self._thread.start()
        if not self._ready.wait(10):
            raise AssertionError(f"the tap on {self.subject} did not connect: {self.error}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:  # reported by __enter__ or the asserts
            self.error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _main(self) -> None:
        import nats

        self._stop = asyncio.Event()
        nc = await nats.connect(
            self.url,
            user=CENTRAL,
            password=PASSWORDS[CENTRAL],
            inbox_prefix=f"_INBOX_{CENTRAL}".encode(),
            allow_reconnect=False,
        )

        async def got(msg: Any) -> None:
            with contextlib.suppress(ValueError):
                self.messages.append(json.loads(msg.data))

        await nc.subscribe(self.subject, cb=got)
        await nc.flush()
        self._ready.set()
        with contextlib.suppress(Exception):
            await self._stop.wait()
        with contextlib.suppress(Exception):
            await nc.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    require_nats()
    port = free_port()
    text = render_server_config(
        [LEAF],
        CENTRAL,
        passwords=PASSWORDS,
        port=port,
        store_dir=str(tmp_path / "nats" / "store"),
        address="127.0.0.1",
    )
    with NatsServer(directory=tmp_path / "nats", port=port, config_text=text) as running:
        yield running


@pytest.fixture
def hosts(server: NatsServer, tmp_path: Path) -> Iterator[tuple[FleetHost, FleetHost]]:
    central = FleetHost(
        spec=HostSpec(CENTRAL, role="central", agents="analyzer,communicator", service=False),
        directory=tmp_path / CENTRAL,
        servers=[server.url],
        password=PASSWORDS[CENTRAL],
    )
    leaf = QuickLoops(
        spec=HostSpec(LEAF, agents="sensor,remediator"),
        directory=tmp_path / LEAF,
        servers=[server.url],
        password=PASSWORDS[LEAF],
    )
    try:
        for host in (central, leaf):
            host.start()
            wait_for(host.ready, 60, f"{host.host_id}'s web to answer")
        yield central, leaf
    finally:
        for host in (leaf, central):
            if host.alive():
                host.stop()
            else:
                print(f"--- {host.host_id} ---\n{host.log_tail()}")


def _analysed_here(central: FleetHost) -> int:
    fleet = central.status().get("details", {}).get("analyzer", {}).get("fleet") or {}
    return int(fleet.get("hosts", 0))


def test_leaf_healed_by_central_analysis_then_alone_when_the_server_dies(
    server: NatsServer, hosts: tuple[FleetHost, FleetHost]
) -> None:
    central, leaf = hosts
    placement = wait_for(lambda: leaf.status().get("placement"), 15, "the leaf's placement")
    assert placement["agents"] == ["sensor", "remediator"]
    assert placement["fallback_analyzer"] == "standby"
    assert "analyzer" not in leaf.status()["agents"]
    assert central.status()["placement"]["role"] == "central"
    wait_for(lambda: _analysed_here(central) == 1, 30, "the central analysing the leaf")
    # The leaf hears what others publish about it once its bus has looked at the streams
    # (a host login may not manage them; that takes up to two request timeouts).
    wait_for(
        lambda: leaf.status().get("bus_backend", {}).get("streams") not in (None, "unknown"),
        30,
        "the leaf's bus to listen on NATS",
    )
    time.sleep(1.0)

    with Tap(server.url, f"wk.{LEAF}.alert.firing") as tap:
        old_pid = leaf.kill_service()
        healed = wait_for(leaf.restarts, 30, "the leaf's own audit of the restart")
        healed_at = time.monotonic()
        record = healed[0]
        assert record["alert_id"], record
        alert = wait_for(
            lambda: [m for m in tap.messages if m["payload"]["id"] == record["alert_id"]],
            10,
            "the central's alert behind the leaf's restart",
        )[0]
    assert tap.error is None
    assert alert["host"] == LEAF and alert["origin"] == CENTRAL
    assert alert["sender"] == "analyzer"
    assert alert["payload"]["subject"] == "service:demo"
    wait_for(
        lambda: leaf.service_pid(healthy=True) not in (None, old_pid), 20, "a new demo, healthy"
    )
    assert "remediator" not in central.status()["agents"]  # nothing can run there

    # The server dies: the leaf, cut off, analyses with its rules and heals alone.
    server.kill()
    wait_for(
        lambda: leaf.status().get("placement", {}).get("fallback_analyzer") == "running",
        30,
        "the leaf's fallback analyzer",
    )
    assert "fallback analyzer started" in " ".join(leaf.log_tail(200).split())
    assert leaf.status()["details"]["analyzer"]["llm"] == "llm: off (rules only)"
    before = {r["id"] for r in leaf.restarts()}
    wait_for(lambda: leaf.service_pid(healthy=True), 20, "demo healthy before the 2nd kill")
    # Past the 5 s windows: the second death is the fallback analyzer's to find.
    time.sleep(max(0.0, healed_at + 7.0 - time.monotonic()))
    leaf.kill_service()
    again = wait_for(
        lambda: [r for r in leaf.restarts() if r["id"] not in before],
        30,
        "the leaf healing the second kill on its own",
    )
    assert again[0]["alert_id"] and again[0]["alert_id"] != record["alert_id"]
    assert "died again" not in again[0]["reason"]
    assert wait_for(lambda: leaf.service_pid(healthy=True), 20, "demo healthy after the 2nd")

    # The server is back: the leaf stands its fallback down and the central analyses it.
    server.restart()
    wait_for(
        lambda: leaf.status().get("placement", {}).get("fallback_analyzer") == "standby",
        30,
        "the leaf's fallback analyzer to stand down",
    )
    assert "connection to the bus server is back" in " ".join(leaf.log_tail(200).split())
    assert "analyzer" not in leaf.status()["agents"]
    assert leaf.status()["placement"]["fallback_runs"] == 1
    wait_for(lambda: _analysed_here(central) == 1, 30, "the central analysing the leaf again")
