"""Health probes against real loopback servers and real commands."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest

from watchkeeper.config.services import CommandProbe, HttpProbe, TcpProbe
from watchkeeper.model.text import SERVICE_DETAIL, clean
from watchkeeper.services import run_probe

PY = sys.executable


def clean_text(text: str, limit: int = SERVICE_DETAIL.max_len) -> str:
    return clean(text, SERVICE_DETAIL, limit)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path == "/ok" else 404
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output quiet


@pytest.fixture
def http_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


async def test_tcp_probe_connects_to_a_listener() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        ok, detail = await run_probe(TcpProbe(port=port))
    finally:
        server.close()
        await server.wait_closed()
    assert ok, detail
    assert f"127.0.0.1:{port}: connected" in detail


async def test_tcp_probe_fails_on_a_closed_port(free_port: int) -> None:
    ok, detail = await run_probe(TcpProbe(port=free_port, timeout=1))
    assert not ok
    assert f"127.0.0.1:{free_port}" in detail


async def test_http_probe_ok_and_status_mismatch(http_port: int) -> None:
    ok, detail = await run_probe(HttpProbe(url=f"http://127.0.0.1:{http_port}/ok"))
    assert ok, detail
    assert "status 200" in detail

    ok, detail = await run_probe(HttpProbe(url=f"http://127.0.0.1:{http_port}/missing"))
    assert not ok
    assert "status 404, expected 200" in detail

    expect_404 = HttpProbe(url=f"http://127.0.0.1:{http_port}/missing", expect_status=404)
    assert (await run_probe(expect_404)).ok


async def test_http_probe_refused_and_credentials_hidden(free_port: int) -> None:
    url = f"http://admin:s3cret@127.0.0.1:{free_port}/"
    ok, detail = await run_probe(HttpProbe(url=url, timeout=1))
    assert not ok
    assert "s3cret" not in detail and "admin" not in detail
    assert f"127.0.0.1:{free_port}" in detail


async def test_command_probe_exit_status_and_output() -> None:
    ok, detail = await run_probe(CommandProbe(argv=[PY, "-c", "print('all good')"]))
    assert ok and "exit 0: all good" in detail

    script = "import sys; print('disk \\x1b[31mfull\\x1b[0m'); sys.exit(2)"
    ok, detail = await run_probe(CommandProbe(argv=[PY, "-c", script]))
    assert not ok
    assert detail.startswith("command ") and "exit 2" in detail
    assert "\x1b" not in detail  # control characters from untrusted output are dropped


async def test_command_probe_is_not_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ok, _ = await run_probe(CommandProbe(argv=["echo", f"x; touch {marker}"]))
    assert ok
    assert not marker.exists()


async def test_command_probe_timeout_kills_it_and_its_children(
    tmp_path: Path, wait_until: Callable[..., Awaitable[None]]
) -> None:
    pids = tmp_path / "pids"
    script = (
        "import subprocess, sys, time, os\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "open(sys.argv[1], 'w').write(f'{os.getpid()} {child.pid}')\n"
        "time.sleep(60)\n"
    )
    probe = CommandProbe(argv=[PY, "-c", script, str(pids)], timeout=1.5)
    ok, detail = await run_probe(probe)
    assert not ok
    assert "timed out after 1.5 s and was killed" in detail
    parent, child = (int(p) for p in pids.read_text().split())
    assert not psutil.pid_exists(parent)  # killed and reaped by the probe

    def child_gone() -> bool:
        try:
            return bool(psutil.Process(child).status() == psutil.STATUS_ZOMBIE)
        except psutil.NoSuchProcess:
            return True

    await wait_until(child_gone, timeout=5)  # the whole process group was killed


async def test_command_probe_missing_program(tmp_path: Path) -> None:
    ok, detail = await run_probe(CommandProbe(argv=[str(tmp_path / "nope")]))
    assert not ok
    assert "cannot run" in detail


def test_clean_text_flattens_and_cuts() -> None:
    assert clean_text("a\nb\tc\x00d") == "a b c d"
    assert clean_text("x" * 500, 10) == "xxxxxxx..."
