"""Launching, signalling and recording the child processes of the process backend.

Kept apart from the manager's bookkeeping: these functions know about argv, file
descriptors, pidfiles and signals, and nothing about events or states.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from watchkeeper.config.services import ServiceSpec
from watchkeeper.services.base import ServiceActionError, ServicePermissionError

__all__ = [
    "SIGKILL",
    "describe_exit",
    "launch",
    "remove_pidfile",
    "signal_child",
    "write_pidfile",
]

_log = logging.getLogger(__name__)

SIGKILL: int = getattr(signal, "SIGKILL", signal.SIGTERM)  # Windows has no SIGKILL


def describe_exit(code: int | None, sig: int | None) -> str:
    """Plain words for how a process ended."""
    if sig is not None:
        try:
            return f"killed by signal {sig} ({signal.Signals(sig).name})"
        except ValueError:
            return f"killed by signal {sig}"
    if code is not None:
        return f"exited with code {code}"
    return "exited (its exit status is unknown: it is not a child of watchkeeper)"


def _open_log(spec: ServiceSpec, log_dir: Path) -> int:
    path = log_dir / f"{spec.name}.log"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        # 0600: service output may hold secrets; other local users have no business there.
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError as exc:
        raise ServiceActionError(
            spec.name, f"cannot start {spec.name}: cannot open log {path}: {exc}"
        ) from None


async def launch(spec: ServiceSpec, log_dir: Path | None) -> asyncio.subprocess.Process:
    """Start ``spec.argv`` in a new session, output to ``log_dir/<name>.log`` or nowhere.

    Raises ``ServiceActionError`` (missing program or directory, unwritable log) or
    ``ServicePermissionError`` (not allowed to execute it).
    """
    name, argv = spec.name, spec.argv
    if argv is None:
        raise ServiceActionError(name, f"cannot start {name}: it has no argv")
    if spec.cwd is not None and not spec.cwd.is_dir():
        raise ServiceActionError(name, f"cannot start {name}: no directory {spec.cwd}")
    log_fd = None if log_dir is None else _open_log(spec, log_dir)
    output = log_fd if log_fd is not None else asyncio.subprocess.DEVNULL
    try:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            cwd=spec.cwd,
            env={**os.environ, **spec.env} if spec.env else None,
            # Its own session: a Ctrl-C in watchkeeper's terminal does not reach it, and
            # stop() can signal its whole process group.
            start_new_session=True,
        )
    except FileNotFoundError:
        raise ServiceActionError(
            name, f"cannot start {name}: program {argv[0]!r} not found"
        ) from None
    except PermissionError:
        raise ServicePermissionError(
            name, f"cannot start {name}: not allowed to execute {argv[0]!r}"
        ) from None
    except OSError as exc:
        raise ServiceActionError(name, f"cannot start {name}: {exc}") from None
    finally:
        if log_fd is not None:
            os.close(log_fd)  # the child has its own copy


def signal_child(proc: asyncio.subprocess.Process, sig: int) -> None:
    """Signal our own child and, on POSIX, the process group it leads.

    While the child is unreaped its pid, and so its group id, cannot be reused: the
    group signal reaches only the service and the helpers it spawned.
    """
    if proc.returncode is not None:
        return
    if sys.platform == "win32":
        proc.send_signal(sig)
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        proc.send_signal(sig)  # it left its group; signal it alone


def write_pidfile(path: Path, pid: int) -> bool:
    """Record our child's pid so a later watchkeeper can adopt it; best effort."""
    from watchkeeper.status import write_bytes_atomic

    try:
        # Whole or not at all: a reader never sees half a pid, a full disk no empty file.
        write_bytes_atomic(path, f"{pid}\n".encode("ascii"), mode=0o644)
    except OSError as exc:
        _log.warning("cannot write pidfile %s: %s", path, exc)
        return False
    return True


def remove_pidfile(path: Path, pid: int) -> None:
    """Remove the pidfile if it still names ``pid`` (else it is someone else's now)."""
    try:
        if path.read_text(encoding="ascii").strip() == str(pid):
            path.unlink()
    except (OSError, UnicodeDecodeError):
        pass
