"""Channels that need no network: the console and the log.

On a central host they keep to what matters there: its own notices, fleet incidents and
the hosts' incidents. Another host's single alert or action (``remote``, with no incident)
is per-host chatter with a thousand hosts: the log has it at DEBUG and the console leaves
it out; the fleet view and the other channels have it as before."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TextIO

from watchkeeper.model.alerts import Severity
from watchkeeper.notify.base import Notification

__all__ = ["ConsoleChannel", "LogChannel", "chatter", "one_line"]

_LEVELS = {Severity.INFO: logging.INFO, Severity.WARNING: logging.WARNING}


def chatter(notice: Notification) -> bool:
    """Whether ``notice`` is another host's single alert or action (not an incident)."""
    return notice.remote and notice.incident is None and notice.fleet_incident is None


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
        if chatter(notice):
            return
        stamp = time.strftime("%H:%M:%S", time.localtime(notice.created_at))
        stream = self._stream if self._stream is not None else sys.stderr
        with self._lock:  # whole lines, even when two notices go out at once
            print(f"{stamp} {one_line(notice)}", file=stream, flush=True)


class LogChannel:
    """Logs each notice: resolved and info at INFO, warning at WARNING, critical at ERROR;
    another host's single alert or action at DEBUG (:func:`chatter`)."""

    def __init__(self, name: str = "log", *, logger: str = "watchkeeper.notify") -> None:
        self.name = name
        self._logger = logging.getLogger(logger)

    def send(self, notice: Notification) -> None:
        level = logging.INFO if notice.resolved else _LEVELS.get(notice.severity, logging.ERROR)
        if chatter(notice):
            level = logging.DEBUG
        self._logger.log(level, "%s", one_line(notice))
