"""The web server under load an attacker chooses: huge bodies, idle and half-sent
connections by the hundred, slow heads, and more event streams than it should carry.

Everything runs against a real ``watchkeeper run`` on loopback with a short request
timeout (2 s) and keep-alive (1 s) so the waits stay short; the body limit, the
connection cap and everything else are the defaults an operator gets.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from web_attack_helpers import WebDaemon, closed_by_peer, read_response

REQUEST_TIMEOUT = 2.0
LIMIT = 1_048_576  # the default web.max_body_bytes
MB = 1_048_576


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDaemon]:
    root = tmp_path_factory.mktemp("limits")
    with WebDaemon(
        root, request_timeout=REQUEST_TIMEOUT, keep_alive_timeout=1, max_event_clients=3
    ) as live:
        yield live


def _wait_closed(socks: list[socket.socket], within: float) -> list[socket.socket]:
    """The sockets the server has not closed after ``within`` seconds."""
    deadline = time.monotonic() + within
    left = list(socks)
    while left and time.monotonic() < deadline:
        left = [sock for sock in left if not closed_by_peer(sock)]
        time.sleep(0.1)
    return left


# -- bodies ---------------------------------------------------------------------------------
def test_a_100_mb_body_is_refused_with_413_and_never_held_in_memory(daemon: WebDaemon) -> None:
    before = daemon.rss_kb()
    started = time.monotonic()
    reply = httpx.patch(
        daemon.url + "/api/config",
        content=b"{" + b" " * (100 * MB) + b"}",
        headers={**daemon.auth, "content-type": "application/json"},
        timeout=30,
    )
    took = time.monotonic() - started
    assert reply.status_code == 413, reply.text[:300]
    body = reply.json()
    assert "web.max_body_bytes" in body["detail"] and body["limit"] == LIMIT
    assert took < 10, took
    grown = daemon.rss_kb() - before
    assert grown < 30 * 1024, f"the daemon's RSS grew by {grown} KiB"
    assert httpx.get(daemon.url + "/api/health", timeout=5).status_code == 200


def test_the_declared_length_alone_is_enough_to_refuse(daemon: WebDaemon) -> None:
    """413 arrives while the client has sent only the head: nothing was waited for."""
    with daemon.connect() as sock:
        sock.sendall(
            b"POST /api/command HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n"
            b"Authorization: Bearer " + daemon.token.encode() + b"\r\n"
            b"Content-Length: 104857600\r\n\r\n{"
        )
        status, headers, body = read_response(sock, timeout=3)
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["limit"] == LIMIT


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def test_a_chunked_body_without_a_length_is_cut_off_at_the_limit(daemon: WebDaemon) -> None:
    """No Content-Length: the server counts as it reads and answers 413 once past the
    limit, without waiting for the rest (the client here never ends its body)."""
    with daemon.connect() as sock:
        sock.sendall(
            b"PATCH /api/config HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            b"Authorization: Bearer " + daemon.token.encode() + b"\r\n\r\n"
        )
        piece = b" " * 65536
        for _ in range(LIMIT // len(piece) + 2):
            sock.sendall(_chunk(piece))
        status, _, body = read_response(sock, timeout=3)
    assert status == 413, body
    assert "web.max_body_bytes" in json.loads(body)["detail"]
    # Within the limit, a chunked body reaches the route whole.
    wanted = {"changes": {"thresholds.cpu_warning": 66}, "persist": False}
    text = json.dumps(wanted).encode()

    def pieces() -> Iterator[bytes]:  # a generator: httpx sends it chunked
        yield text[:10]
        yield text[10:]

    reply = httpx.patch(
        daemon.url + "/api/config",
        content=pieces(),
        headers={**daemon.auth, "content-type": "application/json"},
        timeout=5,
    )
    assert reply.request.headers.get("transfer-encoding") == "chunked"
    assert reply.status_code == 200, reply.text
    shown = httpx.get(daemon.url + "/api/config", timeout=5).json()
    assert shown["settings"]["thresholds"]["cpu_warning"] == 66


# -- connections ----------------------------------------------------------------------------
def test_hundreds_of_idle_and_half_sent_connections_do_not_shut_out_a_real_client(
    daemon: WebDaemon,
) -> None:
    attackers: list[socket.socket] = []
    try:
        for _ in range(500):
            attackers.append(daemon.connect())
        for index in range(50):
            sock = daemon.connect()
            sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow-%d: " % index)
            attackers.append(sock)
        time.sleep(0.3)  # let the server accept them all
        for _ in range(5):
            started = time.monotonic()
            reply = httpx.get(daemon.url + "/api/health", timeout=5)
            took = time.monotonic() - started
            assert reply.status_code == 200, reply.text
            assert took < 1.0, f"/api/health took {took:.2f}s"
            time.sleep(0.2)
        # Every attacker socket is closed by the server: shed as the oldest waiting, or
        # at the request timeout.
        left = _wait_closed(attackers, REQUEST_TIMEOUT + 3)
        assert not left, f"{len(left)} of {len(attackers)} attacker sockets are still open"
    finally:
        for sock in attackers:
            sock.close()
    assert httpx.get(daemon.url + "/api/health", timeout=5).status_code == 200


def test_a_head_sent_a_byte_at_a_time_is_closed_at_the_request_timeout(
    daemon: WebDaemon,
) -> None:
    head = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Drip: " + b"a" * 200
    with daemon.connect() as sock:
        started = time.monotonic()
        closed_at = None
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed_at = time.monotonic()
                break
            if closed_by_peer(sock):
                closed_at = time.monotonic()
                break
            time.sleep(0.1)
    assert closed_at is not None, "the trickling connection was never closed"
    assert closed_at - started < REQUEST_TIMEOUT + 2


def test_an_idle_keep_alive_connection_is_closed(daemon: WebDaemon) -> None:
    with daemon.connect() as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, _, _ = read_response(sock)
        assert status == 200
        assert not _wait_closed([sock], 3.0), "kept alive past web.keep_alive_timeout"


# -- event streams --------------------------------------------------------------------------
def test_the_event_stream_has_a_cap_and_the_next_client_is_told_when_to_retry(
    daemon: WebDaemon,
) -> None:
    with contextlib.ExitStack() as stack:
        http = stack.enter_context(httpx.Client(base_url=daemon.url, timeout=5))
        streams = []
        for _ in range(3):
            response = stack.enter_context(http.stream("GET", "/api/events"))
            assert response.status_code == 200
            streams.append(response)
        with httpx.stream("GET", daemon.url + "/api/events", timeout=5) as refused:
            assert refused.status_code == 503  # checked before reading: a stream never ends
            assert int(refused.headers["retry-after"]) > 0
            assert "web.max_event_clients" in json.loads(refused.read())["detail"]
        # The open streams keep flowing: nobody was dropped to make room.
        for response in streams:
            assert next(response.iter_lines()) is not None
        # Everything else is still served while the streams are open.
        assert httpx.get(daemon.url + "/api/health", timeout=5).status_code == 200
    # Once they are closed, a new client gets in.
    deadline = time.monotonic() + 10
    while True:
        with httpx.stream("GET", daemon.url + "/api/events", timeout=5) as again:
            if again.status_code == 200:
                break
        assert time.monotonic() < deadline, "the closed streams' places were never freed"
        time.sleep(0.2)
