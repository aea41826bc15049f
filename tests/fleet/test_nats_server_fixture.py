"""The nats-server fixture itself: it really runs JetStream, survives a SIGKILL and a
restart on the same port and store, and leaves no process behind."""

from __future__ import annotations

import os
from pathlib import Path

import nats
import pytest

from watchkeeper.testing.nats_server import NatsServer, require_nats


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_jetstream_keeps_a_message_across_sigkill_and_restart(tmp_path: Path) -> None:
    require_nats()
    server = NatsServer(directory=tmp_path / "srv").start()
    try:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await js.add_stream(name="FIXTURE", subjects=["fixture.>"])
        ack = await js.publish("fixture.one", b"kept")
        assert ack.seq == 1
        await nc.close()
        first_pid, port = server.pid, server.port
        assert first_pid is not None
        server.kill()
        assert not _alive(first_pid)
        server.restart()
        assert server.port == port and server.pid != first_pid
        nc = await nats.connect(server.url)
        msg = await nc.jetstream().get_msg("FIXTURE", 1)
        assert msg.data == b"kept"
        await nc.close()
    finally:
        pid = server.pid
        server.close()
    assert pid is not None and not _alive(pid)


def test_config_text_gets_port_and_store(tmp_path: Path) -> None:
    require_nats()
    config = 'listen: "127.0.0.1:{port}"\njetstream { store_dir: "{store}" }\n'
    with NatsServer(directory=tmp_path / "srv", config_text=config, monitor_port=0) as server:
        text = (tmp_path / "srv" / "server.conf").read_text()
        assert f"127.0.0.1:{server.port}" in text and str(server.store_dir) in text
        import httpx

        assert server.monitor_url is not None
        jsz = httpx.get(server.monitor_url + "/jsz", timeout=5).json()
        assert jsz["config"]["store_dir"].startswith(str(server.store_dir))


def test_a_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    require_nats()
    with pytest.raises(RuntimeError, match="did not come up"):
        NatsServer(directory=tmp_path / "bad", config_text="this is { not a config").start()


def test_fixture_server_runs(nats_server: NatsServer) -> None:
    assert nats_server.running and nats_server.url.startswith("nats://127.0.0.1:")
