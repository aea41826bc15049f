"""``watchkeeper simulate``: make trouble safely, to watch the team respond.

Every simulation is bounded in time and size and cleans up after itself, also on Ctrl-C:

- ``cpu``: busy-loop workers (one per core by default) for ``seconds``;
- ``memory``: hold ``mb`` of touched memory (at most half of what is available);
- ``disk``: fill a temporary directory with ``mb`` of data (at most half the free space,
  never leaving less than 5 % free), then delete it;
- ``service-crash``: SIGKILL one configured service's process, as a crash would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

__all__ = ["SimulationError", "crash_service", "fill_disk", "hog_cpu", "hog_memory"]

_SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


class SimulationError(Exception):
    """A simulation that cannot be done safely; the message says why."""


Say = Callable[[str], None]


def hog_cpu(seconds: float, workers: int | None, say: Say) -> None:
    count = workers or os.cpu_count() or 1
    if not 0 < seconds <= 3600:
        raise SimulationError("seconds must be between 0 and 3600")
    say(f"spinning {count} worker(s) for {seconds:g}s")
    procs = [
        subprocess.Popen([sys.executable, "-I", "-S", "-c", _SPIN.format(seconds=seconds)])
        for _ in range(count)
    ]
    try:
        for proc in procs:
            proc.wait()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    say("CPU load stopped")


def hog_memory(mb: int, seconds: float, say: Say) -> None:
    available = psutil.virtual_memory().available // (1024 * 1024)
    if mb <= 0:
        raise SimulationError("mb must be positive")
    if mb > available // 2:
        raise SimulationError(
            f"{mb} MB is more than half of the {available} MB available; choose less"
        )
    say(f"holding {mb} MB for {seconds:g}s")
    block = bytearray(mb * 1024 * 1024)
    for offset in range(0, len(block), 4096):
        block[offset] = 1  # touch every page so it is really resident
    try:
        time.sleep(seconds)
    finally:
        del block
    say("memory released")


def fill_disk(mb: int, seconds: float, directory: Path | None, say: Say) -> None:
    base = directory or Path(tempfile.gettempdir())
    usage = psutil.disk_usage(str(base))
    free_mb = usage.free // (1024 * 1024)
    floor_mb = usage.total // (1024 * 1024) // 20
    allowed = min(free_mb // 2, max(0, free_mb - floor_mb))
    if mb <= 0:
        raise SimulationError("mb must be positive")
    if mb > allowed:
        raise SimulationError(
            f"{mb} MB would leave too little free space on {base}; at most {allowed} MB"
        )
    with tempfile.TemporaryDirectory(prefix="watchkeeper-simulate-", dir=base) as tmp:
        target = Path(tmp) / "filler.bin"
        say(f"writing {mb} MB to {target} for {seconds:g}s")
        chunk = b"\0" * (1024 * 1024)
        with target.open("wb") as handle:
            for _ in range(mb):
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        time.sleep(seconds)
    say("disk space given back")


def crash_service(name: str, pid: int | None, say: Say) -> int:
    """SIGKILL the service's process; returns the pid killed."""
    if pid is None:
        raise SimulationError(
            f"no running process is known for service {name!r}; is watchkeeper running with it "
            "configured under [[services]]?"
        )
    try:
        proc = psutil.Process(pid)
        proc.send_signal(signal.SIGKILL)
    except psutil.NoSuchProcess:
        raise SimulationError(f"pid {pid} of {name!r} is already gone") from None
    except psutil.AccessDenied:
        raise SimulationError(f"not allowed to kill pid {pid} of {name!r}") from None
    say(f"sent SIGKILL to {name} (pid {pid}); watch the team bring it back")
    return pid
