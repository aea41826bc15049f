"""Health probes: is the service not just alive but answering?

``run_probe`` takes any :data:`~watchkeeper.config.services.ProbeSpec` and returns a
:class:`ProbeResult` ``(ok, detail)``; it never raises for a failing service, only for
programming errors. Every probe is bounded by its own timeout::

    ok, detail = await run_probe(TcpProbe(port=5432))

Details are short, single-line and safe to show: URLs lose their user:password part and
command output is cut and stripped of control characters (it is untrusted).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

from watchkeeper.config.services import CommandProbe, HttpProbe, ProbeSpec, TcpProbe
from watchkeeper.model.text import SERVICE_DETAIL, clean

__all__ = [
    "ProbeResult",
    "ProbeRunner",
    "run_probe",
]

_OUTPUT_CAP = 4096  # bytes of command output kept; the rest is read and dropped


class ProbeResult(NamedTuple):
    """``ok`` is the verdict; ``detail`` says why in one line (shown to people and the LLM)."""

    ok: bool
    detail: str


ProbeRunner = Callable[[ProbeSpec], Awaitable[ProbeResult]]
"""What managers call to probe; ``run_probe`` is the real one."""


async def run_probe(probe: ProbeSpec) -> ProbeResult:
    """Run one probe to its verdict, within the probe's ``timeout``."""
    if isinstance(probe, TcpProbe):
        return await _probe_tcp(probe)
    if isinstance(probe, HttpProbe):
        return await _probe_http(probe)
    return await _probe_command(probe)


async def _probe_tcp(probe: TcpProbe) -> ProbeResult:
    where = f"tcp {probe.host}:{probe.port}"
    began = time.perf_counter()
    try:
        async with asyncio.timeout(probe.timeout):
            _reader, writer = await asyncio.open_connection(probe.host, probe.port)
    except TimeoutError:
        return ProbeResult(False, f"{where}: no answer within {probe.timeout:g} s")
    except OSError as exc:
        return ProbeResult(False, f"{where}: {clean(exc.strerror or str(exc), SERVICE_DETAIL)}")
    elapsed_ms = (time.perf_counter() - began) * 1000
    writer.close()
    # A peer that never acknowledges the close must not hold the probe hostage.
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(probe.timeout):
            await writer.wait_closed()
    return ProbeResult(True, f"{where}: connected in {elapsed_ms:.1f} ms")


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every HTTP probe: building one costs ~20 ms of CPU, which a
    probe every few seconds would otherwise pay each time."""
    import httpx

    return httpx.create_ssl_context()


async def _probe_http(probe: HttpProbe) -> ProbeResult:
    # httpx is imported here, not at module level: an idle daemon with only TCP probes
    # never pays for it.
    import httpx

    where = f"http GET {_redact_url(probe.url)}"
    began = time.perf_counter()
    try:
        # trust_env=False: a proxy configured for the user's browsing must not sit between
        # watchkeeper and a local service it checks.
        async with (
            asyncio.timeout(probe.timeout),
            httpx.AsyncClient(
                timeout=probe.timeout,
                follow_redirects=False,
                trust_env=False,
                verify=_tls_context(),
            ) as client,
        ):
            response = await client.get(probe.url)
    except TimeoutError:
        return ProbeResult(False, f"{where}: no answer within {probe.timeout:g} s")
    except httpx.HTTPError as exc:
        reason = clean(str(exc), SERVICE_DETAIL) or type(exc).__name__
        return ProbeResult(False, f"{where}: {reason}")
    elapsed_ms = (time.perf_counter() - began) * 1000
    if response.status_code != probe.expect_status:
        return ProbeResult(
            False,
            f"{where}: status {response.status_code}, expected {probe.expect_status}",
        )
    return ProbeResult(True, f"{where}: status {response.status_code} in {elapsed_ms:.1f} ms")


def _kill_tree(proc: asyncio.subprocess.Process) -> None:
    """Kill the probe and anything it spawned (it leads its own process group)."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if sys.platform == "win32":
            proc.kill()
        else:
            os.killpg(proc.pid, signal.SIGKILL)


async def _read_capped(stream: asyncio.StreamReader, cap: int) -> bytes:
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < cap:
            kept += chunk[: cap - len(kept)]
    return bytes(kept)


async def _probe_command(probe: CommandProbe) -> ProbeResult:
    where = f"command {clean(probe.argv[0], SERVICE_DETAIL, 80)}"
    try:
        proc = await asyncio.create_subprocess_exec(
            *probe.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return ProbeResult(
            False, f"{where}: cannot run: {clean(exc.strerror or str(exc), SERVICE_DETAIL)}"
        )
    assert proc.stdout is not None  # we asked for a pipe
    try:
        async with asyncio.timeout(probe.timeout):
            output = await _read_capped(proc.stdout, _OUTPUT_CAP)
            code = await proc.wait()
    except TimeoutError:
        return ProbeResult(False, f"{where}: timed out after {probe.timeout:g} s and was killed")
    finally:
        # Runs on timeout and on cancellation alike: no probe outlives its verdict.
        if proc.returncode is None:
            _kill_tree(proc)
            await proc.wait()
    said = clean(output.decode("utf-8", errors="replace"), SERVICE_DETAIL)
    suffix = f": {said}" if said else ""
    if code == 0:
        return ProbeResult(True, f"{where}: exit 0{suffix}")
    if code < 0:
        return ProbeResult(False, f"{where}: killed by signal {-code}{suffix}")
    return ProbeResult(False, f"{where}: exit {code}{suffix}")
