"""DNS rebinding: a request whose ``Host:`` is not this server's is refused before any
route runs.

The attack: a page on ``rebind.example`` re-points its name at 127.0.0.1, so the
victim's browser talks to the daemon while still saying ``Host: rebind.example``. The
tests send exactly such requests to a real ``watchkeeper run`` bound to loopback: reads
and a token-bearing change are refused (and the change never happens); loopback names
and addresses, and a name from ``web.allowed_hosts``, are served.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from web_attack_helpers import WebDaemon, read_response

from watchkeeper.web.hosts import HostPolicy

CONFIGURED = "watchkeeper.lan"
FOREIGN = [
    "rebind.example",
    "rebind.example:{port}",
    "127.0.0.1.rebind.example:{port}",
    "localhost.rebind.example",
    "127.1:{port}",  # not a literal address: a resolver decides what it means
    "10.0.0.1:{port}",  # an address, but not one this loopback-bound server has
    "[::2]:{port}",
    "watchkeeper.lan.rebind.example",
    "",
]
SERVED = [
    "127.0.0.1:{port}",
    "127.0.0.1",
    "localhost:{port}",
    "LOCALHOST",
    "localhost.:{port}",
    "127.8.9.10:{port}",
    "[::1]:{port}",
    CONFIGURED,
    "WatchKeeper.LAN:{port}",
]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDaemon]:
    with WebDaemon(tmp_path_factory.mktemp("host"), allowed_hosts=[CONFIGURED]) as live:
        yield live


def _cpu_warning(daemon: WebDaemon) -> float:
    reply = httpx.get(daemon.url + "/api/config", timeout=5)
    assert reply.status_code == 200
    return float(reply.json()["settings"]["thresholds"]["cpu_warning"])


@pytest.mark.parametrize("host", FOREIGN)
def test_a_foreign_host_is_refused_with_one_clear_message(daemon: WebDaemon, host: str) -> None:
    header = host.format(port=daemon.port)
    for path in ("/api/health", "/api/system", "/", "/api/events"):
        reply = httpx.get(daemon.url + path, headers={"Host": header}, timeout=5)
        assert reply.status_code == 400, (path, header, reply.status_code)
        assert "web.allowed_hosts" in reply.json()["detail"]
        assert "traceback" not in reply.text.lower()


def test_a_change_with_a_valid_token_and_a_foreign_host_never_runs(daemon: WebDaemon) -> None:
    before = _cpu_warning(daemon)
    body = {"changes": {"thresholds.cpu_warning": before - 11}, "persist": False}
    for host in ("rebind.example:{port}", "127.0.0.1.rebind.example"):
        reply = httpx.patch(
            daemon.url + "/api/config",
            json=body,
            headers={**daemon.auth, "Host": host.format(port=daemon.port)},
            timeout=5,
        )
        assert reply.status_code == 400
        command = httpx.post(
            daemon.url + "/api/command",
            json={"command": "pause", "target": "analyzer"},
            headers={**daemon.auth, "Host": host.format(port=daemon.port)},
            timeout=5,
        )
        assert command.status_code == 400
    assert _cpu_warning(daemon) == before
    agents = httpx.get(daemon.url + "/api/agents", timeout=5).json()
    assert agents["analyzer"]["state"] == "running"
    # The same change through this machine's own name is served: the 400 was the Host.
    reply = httpx.patch(daemon.url + "/api/config", json=body, headers=daemon.auth, timeout=5)
    assert reply.status_code == 200, reply.text
    assert _cpu_warning(daemon) == before - 11


@pytest.mark.parametrize("host", SERVED)
def test_loopback_names_addresses_and_configured_names_are_served(
    daemon: WebDaemon, host: str
) -> None:
    header = host.format(port=daemon.port)
    reply = httpx.get(daemon.url + "/api/health", headers={"Host": header}, timeout=5)
    assert reply.status_code == 200, (header, reply.text)


def test_a_request_without_a_host_header_is_served(daemon: WebDaemon) -> None:
    """HTTP/1.0 without ``Host:`` names nothing that could have been rebound."""
    with daemon.connect() as sock:
        sock.sendall(b"GET /api/health HTTP/1.0\r\n\r\n")
        status, _, body = read_response(sock)
    assert status == 200, body


def test_the_decision_for_other_binds() -> None:
    """Bound to a non-loopback address: that address, loopback and the configured
    names. Bound to a wildcard: any address literal (rebinding needs a name) and the
    configured names. ``"*"`` turns the check off, for a proxy that does it."""
    lan = HostPolicy.for_bind("192.0.2.10", ["wk.example"])
    assert lan.allows("192.0.2.10:8000") and lan.allows("wk.example:8000")
    assert lan.allows("localhost") and lan.allows("127.0.0.1:8000")
    assert not lan.allows("rebind.example") and not lan.allows("192.0.2.11")
    six = HostPolicy.for_bind("2001:DB8::10")
    assert six.allows("[2001:db8::10]:8000") and six.allows("[2001:db8:0::10]")
    wildcard = HostPolicy.for_bind("0.0.0.0", ["wk.example"])
    assert wildcard.allows("198.51.100.7:8000") and wildcard.allows("[2001:db8::1]")
    assert wildcard.allows("wk.example") and not wildcard.allows("rebind.example")
    assert HostPolicy.for_bind("0.0.0.0", ["*"]).allows("anything.example")
    for bad in ("", "a b", "rebind.example:port", "user@127.0.0.1", "[::1", "[nope]:80"):
        assert not lan.allows(bad), bad


def test_an_empty_allowed_host_list_at_start_up_is_loopback_only(tmp_path: Path) -> None:
    """The default configuration (no ``web.allowed_hosts``) serves loopback only."""
    with WebDaemon(tmp_path) as live:
        ok = httpx.get(live.url + "/api/health", timeout=5)
        refused = httpx.get(live.url + "/api/health", headers={"Host": CONFIGURED}, timeout=5)
    assert ok.status_code == 200 and refused.status_code == 400
