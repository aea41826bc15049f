"""Fixtures for the fleet tests: a real ``nats-server`` with JetStream per test.

``nats_server`` is a running server on a free loopback port with its own store under the
test's temporary directory. ``nats_server_factory(config_text=..., monitor_port=0)``
starts more (a server with users and permissions, a second one); every server a test
started is stopped when it ends. Without ``nats-server`` these tests skip with one
reason (they fail instead when ``WATCHKEEPER_REQUIRE_NATS=1``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from watchkeeper.testing.nats_server import NatsServer, require_nats

NatsServerFactory = Callable[..., NatsServer]


@pytest.fixture
def nats_server_factory(tmp_path: Path) -> Iterator[NatsServerFactory]:
    require_nats()
    servers: list[NatsServer] = []

    def make(
        *, config_text: str | None = None, monitor_port: int | None = None, name: str = ""
    ) -> NatsServer:
        directory = tmp_path / f"nats-{name or len(servers)}"
        server = NatsServer(directory=directory, config_text=config_text, monitor_port=monitor_port)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def nats_server(nats_server_factory: NatsServerFactory) -> NatsServer:
    return nats_server_factory(name="main")
