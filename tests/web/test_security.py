"""Secure by default: the token, closed reads, headers, CORS, errors, exposure warnings.

Everything that can be is tested against a real server on loopback.
"""

from __future__ import annotations

import logging
import socket
import stat
from pathlib import Path

import httpx
import pytest
from web_helpers import LiveServer, wait_for_samples

from watchkeeper.agents.sensor import SensorAgent
from watchkeeper.web.auth import TOKEN_FILE, ensure_token, token_matches
from watchkeeper.web.server import PortInUse, bind_socket, is_loopback

SENSOR_ONLY = {"sensor": SensorAgent}
CONFIGURED = "a-configured-token-of-some-length"


@pytest.mark.parametrize("method", ["POST", "PATCH", "PUT", "DELETE"])
@pytest.mark.parametrize("path", ["/api/command", "/api/config", "/api/agents", "/nowhere"])
def test_every_state_changing_request_needs_the_token(
    server: LiveServer, method: str, path: str
) -> None:
    with server.client() as http:
        missing = http.request(method, path, json={})
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="watchkeeper"'
        assert "Authorization: Bearer" in missing.json()["detail"]
        wrong = http.request(method, path, json={}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
        basic = http.request(method, path, json={}, headers={"Authorization": "Basic Zm9vOmJhcg=="})
        assert basic.status_code == 401
        right = http.request(method, path, json={}, headers=server.auth)
        assert right.status_code != 401


def test_the_generated_token_file_is_private(server: LiveServer) -> None:
    path = Path(server.settings.data_dir) / TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(server.token) >= 32


def test_security_headers_everywhere(server: LiveServer) -> None:
    with server.client() as http:
        for response in (
            http.get("/"),
            http.get("/api/metrics"),
            http.get("/static/app.js"),
            http.get("/missing"),
            http.post("/api/command", json={}),
        ):
            headers = response.headers
            csp = headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert "frame-ancestors 'none'" in csp
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["x-frame-options"] == "DENY"
            assert headers["referrer-policy"] == "no-referrer"
            assert "server" not in headers


def test_cors_is_off_unless_configured(server: LiveServer) -> None:
    with server.client() as http:
        response = http.get("/api/system", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in response.headers


def test_closed_reads_configured_token_and_cors(tmp_path: Path) -> None:
    flags = {
        "web": {
            "token": CONFIGURED,
            "open_reads": False,
            "cors_origins": ["http://grafana.local:3000"],
        }
    }
    with LiveServer(tmp_path, flags=flags, factories=SENSOR_ONLY) as live:
        wait_for_samples(live, 1)
        assert not (tmp_path / "data" / TOKEN_FILE).exists()
        auth = {"Authorization": f"Bearer {CONFIGURED}"}
        with live.client() as http:
            for path in ("/api/system", "/api/metrics", "/metrics", "/api/config", "/api/events"):
                assert http.get(path).status_code == 401, path
            assert http.get("/api/system", headers=auth).status_code == 200
            for path in ("/", "/api/health", "/static/app.js", "/openapi.json", "/docs"):
                assert http.get(path).status_code == 200, path
            allowed = http.get(
                "/api/system", headers={**auth, "Origin": "http://grafana.local:3000"}
            )
            assert allowed.headers["access-control-allow-origin"] == "http://grafana.local:3000"
            other = http.get("/api/system", headers={**auth, "Origin": "http://evil.example"})
            assert "access-control-allow-origin" not in other.headers
            preflight = http.options(
                "/api/command",
                headers={
                    "Origin": "http://grafana.local:3000",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization,content-type",
                },
            )
            assert preflight.status_code == 200
            assert "POST" in preflight.headers["access-control-allow-methods"]


def test_bound_beyond_loopback_warns_and_the_token_is_shown_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logger="watchkeeper.web")
    with LiveServer(tmp_path, host="0.0.0.0", factories=SENSOR_ONLY) as live:
        token = live.token
        with live.client() as http:
            assert http.get("/api/health").status_code == 200
    first = [r for r in caplog.records if r.name == "watchkeeper.web"]
    warnings = [r.getMessage() for r in first if r.levelno == logging.WARNING]
    assert any("need no token" in text and "0.0.0.0" in text for text in warnings)
    # The token goes to the terminal once, never into log records (log files).
    assert not any(token in r.getMessage() for r in first)
    assert any("API token created" in r.getMessage() for r in first)
    assert capfd.readouterr().err.count(token) == 1
    caplog.clear()
    with LiveServer(tmp_path, host="127.0.0.1", factories=SENSOR_ONLY) as again:
        assert again.token == token
    later = [r.getMessage() for r in caplog.records if r.name == "watchkeeper.web"]
    assert not any(token in text for text in later)
    assert token not in capfd.readouterr().err
    assert not any("need no token" in text for text in later)


def test_a_port_in_use_is_one_line_naming_the_setting() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        with pytest.raises(PortInUse, match=r"port \d+ on 127.0.0.1 is already in use.*web.port"):
            bind_socket("127.0.0.1", port)


def test_errors_never_leak_a_traceback(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in a route: a generic 500 for the client, the details in the log."""
    from fastapi import FastAPI

    from watchkeeper.web.app import create_app

    assert server.orchestrator is not None
    app: FastAPI = create_app(server.orchestrator, token="t" * 20)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals at /etc/shadow")

    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            return await http.get("/boom")

    caplog.set_level(logging.ERROR, logger="watchkeeper.web")
    response = server.call(fetch)
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error; the details are in watchkeeper's log"}
    assert "secret" not in response.text and "Traceback" not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    assert any("secret internals" in str(r.exc_info) for r in caplog.records)


def test_token_comparison_and_files(tmp_path: Path) -> None:
    assert token_matches("Bearer abc", "abc")
    assert token_matches("bearer   abc ", "abc")
    assert not token_matches("Bearer abd", "abc")
    assert not token_matches("Bearer abcd", "abc")
    assert not token_matches("Token abc", "abc")
    assert not token_matches(None, "abc")
    assert not token_matches("Bearer ", "abc")
    created = ensure_token(tmp_path, None)
    assert created.source == "created" and created.path is not None
    assert ensure_token(tmp_path, None).token == created.token
    created.path.chmod(0o644)
    again = ensure_token(tmp_path, None)
    assert again.source == "file" and stat.S_IMODE(created.path.stat().st_mode) == 0o600
    assert ensure_token(tmp_path, CONFIGURED).source == "config"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
