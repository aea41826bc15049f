"""The web layer under load, on loopback, against a real ``watchkeeper run``.

1. Requests per second and p99 latency for ``/api/metrics`` and ``/api/system`` at 1, 16
   and 50 connections (``wrk`` when installed, else a small asyncio keep-alive load
   generator in this file). Targets: at 16 connections, /api/metrics at least 3,000 req/s
   with p99 at most 25 ms.
2. One event stream fanned out to 50 server-sent-events clients: each configuration
   change goes out as one ``config`` event, and every client's delivery latency
   (receive time minus publish time) is recorded.
3. The daemon's CPU with the dashboard open in headless Chromium for ``WINDOW`` seconds
   at the default 5 s interval, next to the same daemon with no browser. Target: at most
   1 % of one core with the dashboard open.

    python bench/bench_web.py               # writes bench/results/web.json
    BENCH_WEB_DURATION=5 BENCH_WEB_WINDOW=20 python bench/bench_web.py   # quicker
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, percentile, write_result

DURATION = float(os.environ.get("BENCH_WEB_DURATION", "10"))
WINDOW = float(os.environ.get("BENCH_WEB_WINDOW", "60"))
CONNECTIONS = (1, 16, 50)
ENDPOINTS = ("/api/metrics", "/api/system")
SSE_CLIENTS = 50
SSE_EVENTS = 40
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# -- the daemon -----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def daemon(interval: float | None) -> Iterator[tuple[str, str, int]]:
    """A real ``watchkeeper run`` with the web on a free port: (url, token, pid)."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
        env["WATCHKEEPER_OLLAMA__ENABLED"] = "false"
        args = [sys.executable, "-m", "watchkeeper", "run", "--port", str(port)]
        args += ["--data-dir", f"{tmp}/data", "--log-level", "WARNING"]
        if interval is not None:
            args += ["--interval", str(interval)]
        proc = subprocess.Popen(
            args, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    raise RuntimeError("watchkeeper exited during start-up")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/api/metrics", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("watchkeeper did not serve in time")
                time.sleep(0.2)
            token = (Path(tmp) / "data" / "api_token").read_text().strip()
            yield url, token, proc.pid
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


# -- request load ---------------------------------------------------------------------------
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(url: str, connections: int) -> dict[str, Any]:
    threads = 1 if connections == 1 else 2
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{DURATION:g}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = {
        q: _ms(re.search(rf"\s{q}%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
        for q in ("50", "90", "99")
    }
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "tool": "wrk",
        "requests_per_s": round(rate),
        "p50_ms": round(latency["50"], 2),
        "p90_ms": round(latency["90"], 2),
        "p99_ms": round(latency["99"], 2),
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(0) if errors else None,
    }


async def _load_connection(host: str, port: int, path: str, stop: float, out: list[float]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    try:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            out.append(time.perf_counter() - started)
    finally:
        writer.close()


def run_asyncio_load(url: str, connections: int) -> dict[str, Any]:
    """The fallback when wrk is missing: keep-alive connections in one event loop."""
    parsed = httpx.URL(url)
    latencies: list[float] = []

    async def main() -> float:
        stop = time.perf_counter() + DURATION
        started = time.perf_counter()
        await asyncio.gather(
            *(
                _load_connection(parsed.host, parsed.port or 80, parsed.path, stop, latencies)
                for _ in range(connections)
            )
        )
        return time.perf_counter() - started

    elapsed = asyncio.run(main())
    return {
        "tool": "asyncio",
        "requests_per_s": round(len(latencies) / elapsed),
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
        "p90_ms": round(percentile(latencies, 0.9) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
    }


def request_load(url: str) -> list[dict[str, Any]]:
    runner = run_wrk if shutil.which("wrk") else run_asyncio_load
    runs = []
    for path in ENDPOINTS:
        for connections in CONNECTIONS:
            result = runner(url + path, connections)
            result.update(endpoint=path, connections=connections, duration_s=DURATION)
            print(json.dumps(result), flush=True)
            runs.append(result)
    return runs


# -- event fan-out --------------------------------------------------------------------------
async def _sse_client(host: str, port: int, got: dict[int, float], ready: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET /api/events HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    try:
        await reader.readuntil(b"\r\n\r\n")
        ready.set()
        event = ""
        while True:
            line = (await reader.readline()).decode().rstrip("\r\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "config":
                now = time.time()
                data = json.loads(line[5:])
                marker = data["data"]["changes"]["status_interval"]
                got[round(marker * 1000)] = now - float(data["ts"])
    finally:
        writer.close()


def fan_out(url: str, token: str) -> dict[str, Any]:
    parsed = httpx.URL(url)
    per_client: list[dict[int, float]] = [{} for _ in range(SSE_CLIENTS)]

    async def main() -> None:
        readies = [asyncio.Event() for _ in range(SSE_CLIENTS)]
        tasks = [
            asyncio.create_task(_sse_client(parsed.host, parsed.port or 80, got, ready))
            for got, ready in zip(per_client, readies, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 10)
        await asyncio.sleep(0.5)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as http:
            for index in range(SSE_EVENTS):
                value = 5.0 + (index + 1) / 1000  # a unique marker per event
                reply = await http.patch(
                    "/api/config", json={"changes": {"status_interval": value}}
                )
                reply.raise_for_status()
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    latencies = [value for got in per_client for value in got.values()]
    delivered = sum(len(got) for got in per_client)
    return {
        "clients": SSE_CLIENTS,
        "events": SSE_EVENTS,
        "delivered": delivered,
        "expected": SSE_CLIENTS * SSE_EVENTS,
        "latency_ms": {
            "median": round(statistics.median(latencies) * 1000, 2),
            "p95": round(percentile(latencies, 0.95) * 1000, 2),
            "p99": round(percentile(latencies, 0.99) * 1000, 2),
            "max": round(max(latencies) * 1000, 2),
        },
    }


# -- CPU with the dashboard open ------------------------------------------------------------
def cpu_with_dashboard() -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    results: dict[str, Any] = {"window_s": WINDOW, "interval_s": 5.0}
    with daemon(None) as (url, _token, pid):
        time.sleep(5)
        before = cpu_seconds(pid)
        time.sleep(WINDOW)
        results["idle_percent_of_one_core"] = round(100 * (cpu_seconds(pid) - before) / WINDOW, 2)
        if chromium is None:
            results["dashboard_percent_of_one_core"] = None
            results["note"] = "chromium not installed"
            return results
        with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=chromium, args=CHROMIUM_ARGS, headless=True
            )
            try:
                page = context.new_page()
                page.goto(url)
                page.wait_for_selector("#live[data-state=on]", timeout=15_000)
                time.sleep(3)  # the initial load is over
                before = cpu_seconds(pid)
                started = time.monotonic()
                # Keep the browser's own loop turning: Playwright's sync API only
                # processes events while it is called.
                while time.monotonic() - started < WINDOW:
                    page.wait_for_timeout(1000)
                spent = cpu_seconds(pid) - before
                elapsed = time.monotonic() - started
                results["dashboard_percent_of_one_core"] = round(100 * spent / elapsed, 2)
                results["dashboard_samples_seen"] = page.locator("#sampled").text_content()
            finally:
                context.close()
    return results


def main() -> None:
    with daemon(None) as (url, token, _pid):
        requests = request_load(url)
        fanout = fan_out(url, token)
        print(json.dumps({"fan_out": fanout}), flush=True)
    cpu = cpu_with_dashboard()
    print(json.dumps({"cpu": cpu}), flush=True)
    metrics16 = next(
        r for r in requests if r["endpoint"] == "/api/metrics" and r["connections"] == 16
    )
    path = write_result(
        "web",
        {
            "benchmark": "web",
            "machine": machine_info(),
            "requests": requests,
            "fan_out": fanout,
            "cpu": cpu,
            "targets": {
                "metrics_16_connections_min_requests_per_s": 3000,
                "metrics_16_connections_max_p99_ms": 25,
                "dashboard_max_percent_of_one_core": 1.0,
            },
            "met": {
                "metrics_rate": metrics16["requests_per_s"] >= 3000,
                "metrics_p99": metrics16["p99_ms"] <= 25,
                "dashboard_cpu": (cpu.get("dashboard_percent_of_one_core") or 99) <= 1.0,
            },
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
