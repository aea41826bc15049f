"""The MCP server's cost, against a real ``watchkeeper run``.

1. The daemon's memory (RSS) before any MCP client, and after the first ``/mcp``
   request (which imports the SDK): what an idle daemon does not pay.
2. The first ``/mcp`` call's latency (SDK import and tool registration included).
3. Tool-call latency, p50/p95 over ``CALLS`` calls each of ``status``, ``alerts`` and
   ``metric_history``, over streamable HTTP (``/mcp``, in-process) and over stdio
   (``watchkeeper mcp`` reading the daemon's API), with the SDK's own client.

    python bench/bench_mcp.py                  # writes bench/results/mcp.json
    BENCH_MCP_CALLS=20 python bench/bench_mcp.py   # quicker
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import psutil
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from mcp import ClientSession

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, percentile, write_result

CALLS = int(os.environ.get("BENCH_MCP_CALLS", "100"))
TOOLS: dict[str, dict[str, Any]] = {
    "status": {},
    "alerts": {},
    "metric_history": {"metric": "cpu.percent", "range": "15m"},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env["WATCHKEEPER_OLLAMA__ENABLED"] = "false"
    return env


@contextlib.contextmanager
def daemon() -> Iterator[tuple[str, str, int, Path]]:
    """A real ``watchkeeper run`` (1 s interval): (url, token, pid, data dir)."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        data = Path(tmp) / "data"
        args = [sys.executable, "-m", "watchkeeper", "run", "--port", str(port)]
        args += ["--data-dir", str(data), "--log-level", "WARNING", "--interval", "1"]
        proc = subprocess.Popen(
            args, cwd=tmp, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    names = httpx.get(url + "/api/metrics/names", params={"prefix": "cpu"})
                    if names.status_code == 200 and names.json()["names"]:
                        break
                time.sleep(0.2)
            token = (data / "api_token").read_text().strip()
            yield url, token, proc.pid, data
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextlib.asynccontextmanager
async def over_http(url: str, token: str) -> AsyncIterator[ClientSession]:
    headers = {"authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(url + "/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


@contextlib.asynccontextmanager
async def over_stdio(url: str, token: str) -> AsyncIterator[ClientSession]:
    args = ["-m", "watchkeeper", "mcp", "--url", url, "--token", token]
    params = StdioServerParameters(command=sys.executable, args=args, env=clean_env())
    with open(os.devnull, "w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


async def latencies(session: ClientSession) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for tool, arguments in TOOLS.items():
        took: list[float] = []
        for _ in range(CALLS):
            t0 = time.perf_counter()
            result = await session.call_tool(tool, arguments)
            took.append((time.perf_counter() - t0) * 1000)
            assert not result.is_error, result
        out[tool] = {
            "p50_ms": round(percentile(took, 0.5), 2),
            "p95_ms": round(percentile(took, 0.95), 2),
        }
    return out


async def measure(url: str, token: str, pid: int) -> dict[str, Any]:
    process = psutil.Process(pid)
    rss_idle = process.memory_info().rss
    t0 = time.perf_counter()
    async with over_http(url, token) as session:
        await session.call_tool("status", {})
        first_ms = (time.perf_counter() - t0) * 1000
        http = await latencies(session)
    rss_after = process.memory_info().rss
    async with over_stdio(url, token) as session:
        stdio = await latencies(session)
    return {
        "rss_idle_mib": round(rss_idle / 2**20, 1),
        "rss_after_first_mcp_mib": round(rss_after / 2**20, 1),
        "first_http_session_and_call_ms": round(first_ms, 1),
        "http": http,
        "stdio": stdio,
    }


def main() -> None:
    with daemon() as (url, token, pid, _data):
        result = asyncio.run(measure(url, token, pid))
    result.update(
        {"calls_per_tool": CALLS, "load_average": os.getloadavg(), "machine": machine_info()}
    )
    path = write_result("mcp", result)
    print(path.read_text())


if __name__ == "__main__":
    main()
