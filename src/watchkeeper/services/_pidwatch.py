"""Knowing a process by more than its pid, and learning of its death without a tick.

A pid alone names a *slot*, not a process: after an exit the kernel hands it to someone
else. So a watched process is a :class:`ProcessIdentity`: pid plus creation time, checked
through psutil (which compares boot-relative start times, immune to wall-clock jumps).
A zombie has finished running, so it counts as dead.

``wait_for_exit`` sleeps until the process ends: on Linux >= 5.3 it waits on a pidfd in
the event loop (the kernel wakes us the moment the process exits, zombie or not);
elsewhere it falls back to asking psutil every ``poll_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

__all__ = [
    "PIDFILE_SLACK",
    "ProcessIdentity",
    "adopt_from_pidfile",
    "identify",
    "pidfd_supported",
    "send_signal",
    "wait_for_exit",
]

PIDFILE_SLACK = 2.0
"""Seconds a process may seem to start *after* its pidfile was written.

A genuine service exists before it writes its pidfile, so its creation time is earlier
than the file's mtime. A later creation time means the pid was reused. The slack absorbs
the coarse clock psutil derives wall-clock creation times from.
"""

_MAX_PIDFILE_BYTES = 64
_MAX_PID = 2**31 - 1  # pid_t is a signed 32-bit int everywhere watchkeeper runs


@dataclass(frozen=True)
class ProcessIdentity:
    """One particular process: ``pid`` plus its creation time (seconds since the epoch)."""

    pid: int
    create_time: float
    _handle: Any = field(default=None, repr=False, compare=False)

    def alive(self) -> bool:
        """True while this very process exists and is not a zombie."""
        handle = self._handle
        if handle is None:
            return False
        try:
            return bool(handle.is_running()) and handle.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


def identify(pid: int) -> ProcessIdentity | None:
    """The identity of the live process ``pid`` now, or ``None`` if none lives there."""
    try:
        handle = psutil.Process(pid)
        if handle.status() == psutil.STATUS_ZOMBIE:
            return None
        return ProcessIdentity(pid, float(handle.create_time()), handle)
    except psutil.Error:
        return None


def _read_pid(path: Path) -> int:
    """Parse a pidfile strictly: one decimal pid, optional surrounding whitespace."""
    with path.open("rb") as fh:
        raw = fh.read(_MAX_PIDFILE_BYTES + 1)
    if len(raw) > _MAX_PIDFILE_BYTES:
        raise ValueError("pidfile is too large to hold a pid")
    text = raw.decode("ascii").strip()
    if not text.isdigit() or not text.isascii():
        raise ValueError(f"pidfile does not hold a pid: {text[:20]!r}")
    return int(text)


def adopt_from_pidfile(path: Path) -> tuple[ProcessIdentity | None, str]:
    """Find the process a pidfile names, refusing anything that is not plausibly it.

    Returns ``(identity, "")`` or ``(None, reason)``; the reason is plain words for the
    status detail. Refused: missing or malformed files, pid 1 and watchkeeper's own pid
    (a forged pidfile must never make us signal them), zombies, and processes created
    after the pidfile was written (a reused pid).
    """
    try:
        mtime = path.stat().st_mtime
        pid = _read_pid(path)
    except FileNotFoundError:
        return None, f"pidfile {path} does not exist"
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return None, f"pidfile {path} is unreadable: {exc}"
    if pid <= 1 or pid > _MAX_PID or pid == os.getpid():
        return None, f"pidfile {path} names pid {pid}, which watchkeeper refuses to adopt"
    identity = identify(pid)
    if identity is None:
        return None, f"pidfile {path} names pid {pid}, which is not running"
    if identity.create_time > mtime + PIDFILE_SLACK:
        return None, (
            f"pidfile {path} names pid {pid}, but that process started after the pidfile "
            "was written: the pid was reused by another program"
        )
    return identity, ""


def pidfd_supported() -> bool:
    """True when this platform can wait on process exit through a pidfd."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError:
        return False
    os.close(fd)
    return True


def send_signal(identity: ProcessIdentity, sig: int) -> bool:
    """Signal exactly ``identity``; False if it is already gone.

    With a pidfd the signal cannot reach a successor that took over the pid; without
    one, the identity is re-checked right before ``kill``. ``PermissionError`` propagates.
    """
    if hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal"):
        try:
            fd = os.pidfd_open(identity.pid)
        except ProcessLookupError:
            return False
        except OSError:
            pass
        else:
            try:
                # Opened first, verified second: if it is still our process now, the fd
                # pins it, and the signal goes to it and nobody else.
                if not identity.alive():
                    return False
                signal.pidfd_send_signal(fd, sig)
                return True
            except ProcessLookupError:
                return False
            finally:
                os.close(fd)
    if not identity.alive():
        return False
    try:
        os.kill(identity.pid, sig)
    except ProcessLookupError:
        return False
    return True


async def wait_for_exit(
    identity: ProcessIdentity, *, poll_interval: float = 0.5, use_pidfd: bool = True
) -> None:
    """Return once ``identity`` has exited (a zombie counts), without busy waiting."""
    if use_pidfd and hasattr(os, "pidfd_open"):
        try:
            fd = os.pidfd_open(identity.pid)
        except ProcessLookupError:
            return
        except OSError:
            fd = -1  # e.g. ENOSYS on an old kernel, or a sandbox forbids it: poll instead
        if fd >= 0:
            try:
                if await _wait_pidfd(fd, identity):
                    return
            finally:
                os.close(fd)
    while identity.alive():
        await asyncio.sleep(poll_interval)


async def _wait_pidfd(fd: int, identity: ProcessIdentity) -> bool:
    """Wait on ``fd``; False if the loop cannot watch fds (then the caller polls)."""
    if not identity.alive():
        return True  # exited (or was reused) before the fd was opened
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def _readable() -> None:
        if not exited.done():
            exited.set_result(None)

    try:
        loop.add_reader(fd, _readable)
    except NotImplementedError:
        return False  # e.g. a proactor loop
    try:
        await exited
    finally:
        with contextlib.suppress(Exception):
            loop.remove_reader(fd)
    return True
