"""The example fleet server configuration, run by a real nats-server.

Each test starts nats-server on the rendered text and logs in with raw nats-py clients
the way a host and the central do (their own inbox prefix), then checks what the server
lets through: a host publishes its own events into JetStream, and is refused another
host's subjects, another host's inbox, the JetStream API and a wrong password.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import StreamConfig

from watchkeeper.fleet.serverconf import render_server_config
from watchkeeper.testing.fleet_hosts import nats_login_error
from watchkeeper.testing.nats_server import NatsServer, require_nats

HOSTS = ["host-a", "host-b"]
PASSWORDS = {"central": "central-pass-1", "host-a": "a pass $with #odd", "host-b": "b-pass-22"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    require_nats()
    directory = tmp_path_factory.mktemp("serverconf")
    port = _free_port()
    text = render_server_config(
        HOSTS,
        "central",
        passwords=PASSWORDS,
        port=port,
        store_dir=str(directory / "store"),
        address="127.0.0.1",
    )
    with NatsServer(directory=directory, port=port, config_text=text) as running:
        yield running


@dataclass
class Login:
    client: Client
    errors: list[str] = field(default_factory=list)

    def refused(self, subject: str) -> bool:
        return any("permissions violation" in e and subject.lower() in e for e in self.errors)


async def login(server: NatsServer, user: str, password: str | None = None) -> Login:
    errors: list[str] = []

    async def on_error(error: Exception) -> None:
        errors.append(str(error).lower())

    client = await nats.connect(
        server.url,
        user=user,
        password=password if password is not None else PASSWORDS[user],
        inbox_prefix=f"_INBOX_{user}".encode(),
        error_cb=on_error,
        allow_reconnect=False,
        connect_timeout=2,
    )
    return Login(client, errors)


@pytest.fixture
async def fleet(server: NatsServer) -> AsyncIterator[dict[str, Login]]:
    logins = {user: await login(server, user) for user in ("central", *HOSTS)}
    js = logins["central"].client.jetstream()
    await js.add_stream(StreamConfig(name="SC_EVENTS", subjects=["wk.*.alert.>"]))
    yield logins
    await js.delete_stream("SC_EVENTS")
    for one in logins.values():
        await one.client.close()


async def _until(predicate: Any, timeout: float = 3.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return bool(predicate())


async def test_a_host_publishes_its_own_events_into_jetstream(fleet: dict[str, Login]) -> None:
    js = fleet["host-a"].client.jetstream()
    ack = await js.publish(
        "wk.host-a.alert.firing", b"{}", headers={"Nats-Msg-Id": "m-1"}, timeout=3
    )
    assert ack.stream == "SC_EVENTS"
    again = await js.publish(
        "wk.host-a.alert.firing", b"{}", headers={"Nats-Msg-Id": "m-1"}, timeout=3
    )
    assert again.duplicate  # the catch-up after a cut-off counts once
    assert fleet["host-a"].errors == []


async def test_a_host_cannot_publish_as_another(fleet: dict[str, Login]) -> None:
    a = fleet["host-a"]
    with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
        await a.client.jetstream().publish("wk.host-b.alert.firing", b"{}", timeout=1)
    await a.client.publish("wk.central.alert.firing", b"{}")
    await a.client.flush()
    assert await _until(lambda: a.refused("wk.host-b.alert.firing"))
    assert await _until(lambda: a.refused("wk.central.alert.firing"))
    info = await fleet["central"].client.jetstream().stream_info("SC_EVENTS")
    assert info.state.messages == 0
    assert a.client.is_connected  # refused, not thrown off


async def test_a_host_cannot_read_another_hosts_subjects_or_inbox(
    fleet: dict[str, Login],
) -> None:
    a, b = fleet["host-a"], fleet["host-b"]
    seen: list[Msg] = []

    async def spy(msg: Msg) -> None:
        seen.append(msg)

    for subject in ("wk.host-b.>", "wk.*.alert.firing", "_INBOX_host-b.>", ">"):
        await a.client.subscribe(subject, cb=spy)
    await a.client.flush()
    assert await _until(lambda: a.refused("wk.host-b.>") and a.refused('"_inbox_host-b.>"'))
    await b.client.publish("wk.host-b.alert.firing", b"secret")
    await fleet["central"].client.publish("_INBOX_host-b.x.y", b"reply for b")
    await b.client.flush()
    await fleet["central"].client.flush()
    await asyncio.sleep(0.3)
    assert seen == []


async def test_a_host_cannot_use_the_jetstream_api(fleet: dict[str, Login]) -> None:
    """A consumer of its own would let a host read every host's stream."""
    a = fleet["host-a"]
    js = a.client.jetstream(timeout=1)
    with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
        await js.add_consumer("SC_EVENTS", durable_name="peek", filter_subject="wk.host-b.>")
    with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
        await js.delete_stream("SC_EVENTS")
    assert await _until(lambda: a.refused("$js.api.consumer"))
    assert (await fleet["central"].client.jetstream().stream_info("SC_EVENTS")).config.name


async def test_the_central_commands_a_host_and_the_host_answers(fleet: dict[str, Login]) -> None:
    b = fleet["host-b"]

    async def answer(msg: Msg) -> None:
        await msg.respond(b"done on host-b")

    await b.client.subscribe("wk.host-b.command.remediator", cb=answer)
    await b.client.flush()
    for _ in range(20):  # the new interest may take a moment to reach the central's side
        try:
            reply = await fleet["central"].client.request(
                "wk.host-b.command.remediator", b"approve", timeout=3
            )
            break
        except nats.errors.NoRespondersError:
            await asyncio.sleep(0.05)
    else:
        raise AssertionError("host-b never took the central's command")
    assert reply.data == b"done on host-b"
    assert b.errors == []


async def test_a_host_cannot_command_another(fleet: dict[str, Login]) -> None:
    b = fleet["host-b"]
    got: list[Msg] = []

    async def answer(msg: Msg) -> None:
        got.append(msg)
        await msg.respond(b"ran")

    await b.client.subscribe("wk.host-b.command.remediator", cb=answer)
    await b.client.flush()
    with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
        await fleet["host-a"].client.request("wk.host-b.command.remediator", b"x", timeout=1)
    assert got == []


def test_a_wrong_password_is_refused(server: NatsServer) -> None:
    assert nats_login_error(server.port, "host-a", PASSWORDS["host-a"]) == ""
    for user, password in (("host-a", "not-the-password"), ("stranger", "whatever-pass")):
        assert "Authorization Violation" in nats_login_error(server.port, user, password)


async def test_generated_passwords_are_distinct_and_accepted(tmp_path: Path) -> None:
    require_nats()
    port = _free_port()
    text = render_server_config(
        ["h1", "h2"], "hub", port=port, store_dir=str(tmp_path / "store"), address="127.0.0.1"
    )
    found = dict(re.findall(r'user: "([^"]+)"\n\s+password: "([^"]+)"', text))
    assert set(found) == {"hub", "h1", "h2"}
    assert len(set(found.values())) == 3
    assert all(len(p) >= 20 for p in found.values())
    with NatsServer(directory=tmp_path, port=port, config_text=text) as running:
        client = await nats.connect(running.url, user="h2", password=found["h2"])
        await client.close()


@pytest.mark.parametrize(
    ("hosts", "central", "kwargs", "message"),
    [
        (["web.1"], "central", {}, "host id 'web.1'"),
        (["web-1", "*"], "central", {}, "host id '\\*'"),
        (["web-1", ">"], "central", {}, "host id '>'"),
        (["Web-1"], "central", {}, "host id 'Web-1'"),
        (["web-1", "web-1"], "central", {}, "listed twice"),
        (["central"], "central", {}, "is the central"),
        (["web-1"], "wk.>", {}, "host id"),
        (["web-1"], "central", {"prefix": "wk.>"}, "subject prefix"),
        (["web-1"], "central", {"passwords": {"web-1": 'x"\n}]\nusers: ['}}, "password of"),
        (["web-1"], "central", {"passwords": {"web-1": "short"}}, "password of"),
        (["web-1"], "central", {"passwords": {"web-2": "long-enough"}}, "not in the fleet"),
        (["web-1"], "central", {"port": 0}, "port 0"),
        (["web-1"], "central", {"store_dir": 'rel"ative'}, "store dir"),
        (["web-1"], "central", {"address": "0.0.0.0 }\nx"}, "listen address"),
    ],
)
def test_bad_input_is_one_clear_error(
    hosts: list[str], central: str, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        render_server_config(hosts, central, **kwargs)


def test_the_shipped_example_is_what_the_renderer_writes() -> None:
    """deploy/nats/fleet.conf is the walkthrough's config: three hosts and a central."""
    path = Path(__file__).resolve().parents[2] / "deploy" / "nats" / "fleet.conf"
    shipped = path.read_text(encoding="utf-8")
    passwords = dict(re.findall(r'user: "([^"]+)"\n\s+password: "([^"]+)"', shipped))
    hosts = [u for u in passwords if u != "central"]
    assert hosts == ["web-1", "web-2", "db-1"]
    assert shipped == render_server_config(hosts, "central", passwords=passwords)
