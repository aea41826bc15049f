"""Fixtures of the web tests: one real running watchkeeper per module."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from web_helpers import LiveServer, wait_for_samples


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One running watchkeeper per test module, in approve mode, storage on."""
    with LiveServer(tmp_path_factory.mktemp("web")) as live:
        wait_for_samples(live, 3)

        def storage_open() -> bool:
            assert live.orchestrator is not None
            return bool(live.orchestrator.storage.is_open)

        live.wait_for(lambda: live.on_loop(storage_open), what="storage")
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http
