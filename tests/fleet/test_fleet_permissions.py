"""A host that tries to speak for another, against the real server and a real central.

The fleet runs the example configuration (``watchkeeper fleet server-config``): ``web-1``
and ``web-2`` are leaves, ``central`` keeps the fleet view; ``web-2`` waits for approvals.
An attacker holding web-1's login (a raw nats-py client, as a compromised web-1 would be)
forges alerts and commands about web-2. The server refuses them; what it lets through (a
message on web-1's own subjects that claims to be about web-2) the central drops; nothing
shows on the central for web-2 and nothing runs there.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from watchkeeper.fleet.serverconf import render_server_config
from watchkeeper.model.message import Message
from watchkeeper.testing.fleet_hosts import (
    FleetHosts,
    HostSpec,
    free_port,
    nats_login_error,
    wait_for,
)
from watchkeeper.testing.nats_server import NatsServer, require_nats

pytestmark = pytest.mark.slow

PASSWORDS = {name: f"pw-{name}-f5perm-secret" for name in ("central", "web-1", "web-2")}
SPECS = [
    HostSpec("central", role="central", service=False),
    HostSpec("web-1"),
    HostSpec("web-2", mode="approve"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    require_nats()
    directory = tmp_path_factory.mktemp("nats-perm")
    port = free_port()
    text = render_server_config(
        ["web-1", "web-2"],
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
    with FleetHosts(
        tmp_path_factory.mktemp("fleet-perm"), [server.url], SPECS, passwords=PASSWORDS
    ) as hosts:
        wait_for(
            lambda: hosts.central.get("/api/fleet/hosts")["counts"]["up"] == 3,
            30,
            "three hosts up on the fleet view",
        )
        yield hosts


class Attacker:
    """A raw client logged in as web-1; records the server's refusals."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.client: Client | None = None

    async def connect(self, url: str) -> Attacker:
        async def on_error(error: Exception) -> None:
            self.errors.append(str(error).lower())

        self.client = await nats.connect(
            url,
            user="web-1",
            password=PASSWORDS["web-1"],
            inbox_prefix=b"_INBOX_web-1",
            error_cb=on_error,
            allow_reconnect=False,
        )
        return self

    async def refused(self, subject: str, timeout: float = 3.0) -> bool:
        needle = f'permissions violation for publish to "{subject.lower()}"'
        for _ in range(int(timeout / 0.05)):
            if any(needle in e for e in self.errors):
                return True
            await asyncio.sleep(0.05)
        return False


@pytest.fixture
async def attacker(server: NatsServer) -> AsyncIterator[Attacker]:
    one = await Attacker().connect(server.url)
    yield one
    assert one.client is not None
    await one.client.close()


def _forged_alert(fleet: FleetHosts) -> dict[str, Any]:
    """A real alert of web-1's (so it parses everywhere), made into a new one about web-2."""
    fleet["web-1"].kill_service()
    real = wait_for(
        lambda: [a for a in fleet["web-1"].alert_history() if a["rule"] == "service_down"],
        30,
        "a real service_down alert on web-1",
    )[0]
    forged = copy.deepcopy(real)
    forged["id"] = uuid.uuid4().hex[:12]
    forged["fingerprint"] = uuid.uuid4().hex[:16]
    forged["state"] = "firing"
    forged["resolved_at"] = None
    forged["summary"] = "forged by web-1"
    return forged


def _envelope(topic: str, payload: dict[str, Any], *, host: str, origin: str) -> bytes:
    message = Message(topic=topic, sender="analyzer", payload=payload, host=host, origin=origin)
    return json.dumps(message.to_dict()).encode()


def _central_knows(fleet: FleetHosts, alert_id: str) -> bool:
    view = fleet.central.get("/api/fleet/hosts/web-2")
    texts = json.dumps(view) + json.dumps(fleet.central.get("/api/fleet/hosts"))
    return alert_id in texts or "forged by web-1" in texts


async def test_a_host_publishing_as_another_is_refused_and_nothing_shows(
    fleet: FleetHosts, attacker: Attacker
) -> None:
    forged = _forged_alert(fleet)
    client = attacker.client
    assert client is not None
    # 1. On web-2's subject, as web-2: the server refuses it.
    subject = "wk.web-2.alert.firing"
    await client.publish(
        subject,
        _envelope("alert.firing", forged, host="web-2", origin="web-2"),
        headers={"Nats-Msg-Id": uuid.uuid4().hex},
    )
    await client.flush()
    assert await attacker.refused(subject)
    # 2. On its own subject but claiming to be about web-2: the server lets it pass (it is
    #    web-1's subject); the central must drop it rather than file it under web-2.
    sneaky = dict(forged, id=uuid.uuid4().hex[:12])
    await client.publish(
        "wk.web-1.alert.firing",
        _envelope("alert.firing", sneaky, host="web-2", origin="web-2"),
        headers={"Nats-Msg-Id": uuid.uuid4().hex},
    )
    await client.flush()
    await asyncio.sleep(3)
    assert not _central_knows(fleet, forged["id"])
    assert not _central_knows(fleet, sneaky["id"])
    row = {r["host"]: r for r in fleet.central.get("/api/fleet/hosts")["hosts"]}["web-2"]
    assert row["firing"] == 0 and row["state"] == "up"
    assert client.is_connected  # refused, not thrown off: the server keeps serving web-1


async def test_a_host_cannot_approve_or_command_another(
    fleet: FleetHosts, attacker: Attacker
) -> None:
    web2 = fleet["web-2"]
    web2.kill_service()
    pending = wait_for(
        lambda: [
            r for r in web2.get("/api/remediation").get("pending") or [] if r["target"] == "demo"
        ],
        30,
        "web-2's restart waiting for approval",
    )[0]
    client = attacker.client
    assert client is not None
    command = {"command": "approve", "params": {"id": pending["id"], "by": "web-1"}}
    subject = "wk.web-2.command.remediator"
    with pytest.raises((TimeoutError, nats.errors.TimeoutError, nats.errors.NoRespondersError)):
        await client.request(
            subject,
            _envelope("command.remediator", command, host="web-2", origin="central"),
            timeout=2,
        )
    assert await attacker.refused(subject)
    await asyncio.sleep(2)
    still = [r["id"] for r in web2.get("/api/remediation").get("pending") or []]
    assert pending["id"] in still
    assert not web2.restarts()
    # What it may not send it may not read either: web-2's subjects stay dark to web-1.
    seen: list[Msg] = []

    async def spy(msg: Msg) -> None:
        seen.append(msg)

    await client.subscribe("wk.web-2.>", cb=spy)
    await client.subscribe("wk.*.alert.>", cb=spy)
    await client.flush()
    await asyncio.sleep(3)  # web-2 beats every second and publishes its pending action
    assert seen == []
    # The person at the fleet view approves; that is the way it runs.
    done = fleet.central.post(f"/api/fleet/hosts/web-2/approvals/{pending['id']}", {"by": "ops"})
    assert done.status_code == 200, done.text
    wait_for(lambda: web2.restarts(), 20, "the approved restart on web-2")


def test_a_host_cannot_log_in_as_another(server: NatsServer) -> None:
    assert nats_login_error(server.port, "web-1", PASSWORDS["web-1"]) == ""
    assert "Authorization Violation" in nats_login_error(server.port, "web-2", PASSWORDS["web-1"])
    assert "Authorization Violation" in nats_login_error(server.port, "central", "guess-guess")


def test_secrets_of_the_fleet_never_show_in_a_read(fleet: FleetHosts) -> None:
    """The NATS passwords and the web tokens are in the hosts' configs: no read shows them."""
    for host in fleet:
        for path in ("/api/config", "/api/system", "/api/health", "/metrics"):
            text = host.get_text(path)
            for secret in (*PASSWORDS.values(), *(h.token for h in fleet)):
                assert secret not in text, (host.host_id, path)
    for path in ("/api/fleet/hosts", "/api/fleet/hosts/web-1", "/api/fleet/hosts/web-2"):
        text = fleet.central.get_text(path)
        assert not any(secret in text for secret in PASSWORDS.values()), path
