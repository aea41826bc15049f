"""How NatsBus logs in and what it shows: token, user and password, TLS with a client
certificate, a wrong password, a server that is not there; secrets never in the status."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from watchkeeper.bus.nats import NatsBus
from watchkeeper.config.fleet import BusSettings
from watchkeeper.model.events import SystemStarted
from watchkeeper.model.secret import MASK
from watchkeeper.model.topics import SYSTEM_STARTED
from watchkeeper.testing.nats_server import NatsServer

Factory = Callable[..., NatsServer]


def _settings(url: str, host: str, **extra: object) -> BusSettings:
    values: dict[str, object] = {
        "backend": "nats",
        "servers": [url],
        "host_id": host,
        "connect_timeout": 0.5,
        "reconnect_wait": 0.1,
    }
    values.update(extra)
    return BusSettings.model_validate(values)


async def _round_trip(sender: NatsBus, receiver: NatsBus) -> None:
    view = receiver.subscribe("system.started", name="view", scope="fleet")
    for bus in (receiver, sender):
        await bus.start()
        assert await bus.wait_connected(10), bus.status()
    await sender.publish(SYSTEM_STARTED, SystemStarted(version="hello"), sender="t")
    got = await view.get(timeout=10)
    assert got.parse(SystemStarted).version == "hello" and got.host == sender.host


async def test_token_login(nats_server_factory: Factory, tmp_path: Path) -> None:
    config = (
        'listen: "127.0.0.1:{port}"\njetstream { store_dir: "{store}" }\n'
        'authorization { token: "s3cret-token" }\n'
    )
    server = nats_server_factory(config_text=config, name="token")
    web = NatsBus(
        _settings(server.url, "web-1", token="s3cret-token"), host="web-1", data_dir=tmp_path / "w"
    )
    central = NatsBus(
        _settings(server.url, "central", token="s3cret-token"),
        host="central",
        data_dir=tmp_path / "c",
    )
    try:
        await _round_trip(web, central)
        assert "s3cret-token" not in json.dumps(web.status())
    finally:
        await web.stop()
        await central.stop()


async def test_a_wrong_password_is_shown_without_the_secret(
    nats_server_factory: Factory, tmp_path: Path
) -> None:
    config = (
        'listen: "127.0.0.1:{port}"\njetstream { store_dir: "{store}" }\n'
        "authorization { users = [ { user: web-1, password: right-one } ] }\n"
    )
    server = nats_server_factory(config_text=config, name="pw")
    url = f"nats://web-1:wrong-one@127.0.0.1:{server.port}"
    bus = NatsBus(
        _settings(url, "web-1", user="web-1", password="wrong-one"),
        host="web-1",
        data_dir=tmp_path / "w",
    )
    local = bus.subscribe("system.*", name="local")
    try:
        await bus.start()
        deadline = time.monotonic() + 10
        while bus.status()["last_error"] is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        status = bus.status()
        assert status["connected"] is False
        assert "authorization" in str(status["last_error"]).lower()
        text = json.dumps(status)
        assert "wrong-one" not in text
        assert status["servers"] == [f"nats://{MASK}@127.0.0.1:{server.port}"]
        # The host works alone meanwhile, and keeps its events.
        await bus.publish(SYSTEM_STARTED, SystemStarted(version="alone"), sender="t")
        assert (await local.get(timeout=1)).parse(SystemStarted).version == "alone"
        assert len(bus.outbox) == 1
    finally:
        await bus.stop()


async def test_start_does_not_wait_for_a_server_that_is_not_there(tmp_path: Path) -> None:
    bus = NatsBus(_settings("nats://127.0.0.1:9", "web-1"), host="web-1", data_dir=tmp_path)
    began = time.monotonic()
    await bus.start()
    assert time.monotonic() - began < 0.5
    await bus.publish(SYSTEM_STARTED, SystemStarted(version="queued"), sender="t")
    began = time.monotonic()
    await bus.stop()
    assert time.monotonic() - began < 2.0
    assert (
        len(
            NatsBus(
                _settings("nats://127.0.0.1:9", "web-1"), host="web-1", data_dir=tmp_path
            ).outbox
        )
        == 1
    )


async def test_stop_sends_what_is_waiting(nats_server: NatsServer, tmp_path: Path) -> None:
    central = NatsBus(
        _settings(nats_server.url, "central"), host="central", data_dir=tmp_path / "c"
    )
    view = central.subscribe("system.*", name="view", scope="fleet")
    web = NatsBus(_settings(nats_server.url, "web-1"), host="web-1", data_dir=tmp_path / "w")
    try:
        for bus in (central, web):
            await bus.start()
            assert await bus.wait_connected(10)
        for i in range(200):
            await web.publish(SYSTEM_STARTED, SystemStarted(version=str(i)), sender="t")
        await web.stop()  # at once: the outbox drains first
        assert len(web.outbox) == 0
        got = [await view.get(timeout=10) for _ in range(200)]
        assert [m.parse(SystemStarted).version for m in got] == [str(i) for i in range(200)]
    finally:
        await web.stop()
        await central.stop()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _certificates(where: Path) -> None:
    where.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=watchkeeper test CA",
        cwd=where,
    )
    (where / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl(
            "req",
            *ec,
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={name}",
            cwd=where,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            cwd=where,
        )


async def test_tls_with_a_client_certificate(nats_server_factory: Factory, tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (needed to make the test certificates)")
    certs = tmp_path / "certs"
    _certificates(certs)
    config = (
        'listen: "127.0.0.1:{port}"\njetstream { store_dir: "{store}" }\n'
        f'tls {{ cert_file: "{certs}/server.pem", key_file: "{certs}/server.key", '
        f'ca_file: "{certs}/ca.pem", verify: true }}\n'
    )
    server = nats_server_factory(config_text=config, name="tls")
    url = f"tls://127.0.0.1:{server.port}"
    tls = {
        "tls_ca_file": certs / "ca.pem",
        "tls_cert_file": certs / "client.pem",
        "tls_key_file": certs / "client.key",
    }
    web = NatsBus(_settings(url, "web-1", **tls), host="web-1", data_dir=tmp_path / "w")
    central = NatsBus(_settings(url, "central", **tls), host="central", data_dir=tmp_path / "c")
    try:
        await _round_trip(web, central)
    finally:
        await web.stop()
        await central.stop()
    # Without the client certificate the server refuses, and the bus says so.
    bare = NatsBus(
        _settings(url, "db-1", tls_ca_file=certs / "ca.pem"), host="db-1", data_dir=tmp_path / "d"
    )
    try:
        await bare.start()
        assert not await bare.wait_connected(2)
        assert bare.status()["last_error"]
    finally:
        await bare.stop()


async def test_nkey_login(nats_server_factory: Factory, tmp_path: Path) -> None:
    nkeys = pytest.importorskip("nkeys", reason="nkey logins need the nkeys package")
    import os

    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    seed_file = tmp_path / "web-1.nk"
    seed_file.write_bytes(seed + b"\n")
    seed_file.chmod(0o600)
    config = (
        'listen: "127.0.0.1:{port}"\njetstream { store_dir: "{store}" }\n'
        f'authorization {{ users = [ {{ nkey: "{public}" }} ] }}\n'
    )
    server = nats_server_factory(config_text=config, name="nkey")
    web = NatsBus(
        _settings(server.url, "web-1", nkey_seed_file=seed_file),
        host="web-1",
        data_dir=tmp_path / "w",
    )
    central = NatsBus(
        _settings(server.url, "central", nkey_seed_file=seed_file),
        host="central",
        data_dir=tmp_path / "c",
    )
    try:
        await _round_trip(web, central)
        assert seed.decode() not in json.dumps(web.status())
    finally:
        await web.stop()
        await central.stop()
