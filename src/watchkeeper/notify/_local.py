"""Channels that need no network: the console and the log."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TextIO

from watchkeeper.model.alerts import Severity
from watchkeeper.notify.base import Notification

__all__ = ["ConsoleChannel", "LogChannel", "one_line"]

_LEVELS = {Severity.INFO: logging.INFO, Severity.WARNING: logging.WARNING}


def one_line(notice: Notification) -> str:
    """The notice as one line: ``[critical] FIRING cpu_high on web01: ... (key)``."""
    return f"[{notice.severity.value}] {notice.title}"


class ConsoleChannel:
    """Prints one line per notice to stderr (or the stream given)."""

    def __init__(self, name: str = "console", *, stream: TextIO | None = None) -> None:
        self.name = name
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, notice: Notification) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(notice.created_at))
        stream = self._stream if self._stream is not None else sys.stderr
        with self._lock:  # whole lines, even when two notices go out at once
            print(f"{stamp} {one_line(notice)}", file=stream, flush=True)


class LogChannel:
    """Logs each notice: resolved and info at INFO, warning at WARNING, critical at ERROR."""

    def __init__(self, name: str = "log", *, logger: str = "watchkeeper.notify") -> None:
        self.name = name
        self._logger = logging.getLogger(logger)

    def send(self, notice: Notification) -> None:
        level = logging.INFO if notice.resolved else _LEVELS.get(notice.severity, logging.ERROR)
        self._logger.log(level, "%s", one_line(notice))
