"""A real ``watchkeeper run`` for the state-file, full-disk, health and LLM attack tests,
and a small tmpfs that can be filled to the last byte (the tests run as root).

``Tmpfs`` mounts a tmpfs of a few MB on a directory and unmounts it on exit, even when
the test failed; ``fill()`` writes a filler file until the kernel says ENOSPC, ``free()``
removes it. ``Daemon`` starts the real CLI in its own process with its stderr in a file
(so a chatty daemon can never block on a full pipe), waits for ``/api/health`` to answer
and stops it with SIGTERM.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest
from daemon_harness import free_port, stop_process


def wait_until(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, OSError, ValueError):
            last = check()
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:g}s (last: {last!r})")


class Tmpfs:
    """A tmpfs of ``size`` on ``path``; see the module docstring."""

    def __init__(self, path: Path, size: str = "2m") -> None:
        self.path = path
        self.size = size
        self.filler = path / "filler.bin"

    def __enter__(self) -> Tmpfs:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a tmpfs needs root and mount(8)")
        self.path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0755", "tmpfs", str(self.path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for _ in range(20):
            if subprocess.run(["umount", str(self.path)], capture_output=True).returncode == 0:
                return
            time.sleep(0.25)
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)

    def fill(self) -> None:
        """Write to the filler file until the filesystem is full to the last block."""
        with self.filler.open("ab", buffering=0) as handle:
            for size in (1 << 20, 1 << 12, 1):
                block = b"\0" * size
                while True:
                    try:
                        handle.write(block)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def available(self) -> int:
        stats = os.statvfs(self.path)
        return stats.f_bavail * stats.f_frsize


class Daemon:
    """``watchkeeper run`` on loopback with its data dir at ``data_dir``."""

    def __init__(self, root: Path, data_dir: Path, *settings: str, interval: float = 0.5) -> None:
        self.root = root
        self.data_dir = data_dir
        self.settings = settings
        self.interval = interval
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stderr_path = root / f"stderr-{self.port}.txt"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHKEEPER_", "OLLAMA"))}
        env["NO_COLOR"] = "1"
        env["COLUMNS"] = "200"
        argv = [sys.executable, "-m", "watchkeeper", "run", "--data-dir", str(self.data_dir)]
        argv += ["--port", str(self.port), "--interval", str(self.interval)]
        argv += ["--set", "status_interval=0.5", "--set", "ollama.enabled=false"]
        for item in self.settings:
            argv += ["--set", item]
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                argv, cwd=self.root, env=env, stdout=subprocess.DEVNULL, stderr=err
            )
        wait_until("the daemon answers /api/health", self._answers, timeout=60)
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"watchkeeper exited early: {self.stderr()[-3000:]}")
        return self.get("/api/health").status_code in (200, 503)

    def get(self, path: str, **options: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10, **options)

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = self.get("/api/health").json()
        return body

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc is None:
            return 0
        proc, self.proc = self.proc, None
        stop_process(proc, timeout=20)
        return proc.returncode

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def rss_kb(pid: int) -> int:
    """The resident set of ``pid``, in KB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def _iter_lines(text: str) -> Iterator[str]:
    yield from (line for line in text.splitlines() if line.strip())


def problem_lines(text: str) -> list[str]:
    """The lines of a daemon's stderr that are tracebacks or logging's own errors."""
    bad = ("Traceback", "Logging error", "--- Logging")
    return [line for line in _iter_lines(text) if any(word in line for word in bad)]
