"""Logging: colour for people, a rotating text log, and JSON lines for machines.

``setup_logging(data_dir, level)`` wires three handlers onto the ``watchkeeper`` logger:

- the console, through rich (colour, emoji, readable tracebacks only at DEBUG level);
- ``<data_dir>/agent_system.log``, rotating at 10 MB, five files kept;
- ``<data_dir>/agent_system.jsonl``, one JSON object per record, rotating likewise.

Log text is never interpreted as rich markup, because process names and service names
that end up in messages are untrusted.

A log file that cannot be written (a full disk, say) must not bury the console in
Python's "--- Logging error ---" tracebacks: the file handlers say so in one line on
stderr, at most once a minute, carry on, and say when writing works again.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

__all__ = ["JsonLinesFormatter", "RepeatedProblem", "setup_logging"]

_ROTATE_BYTES = 10 * 1024 * 1024
_ROTATE_KEEP = 5
_OURS = "watchkeeper-handler"
#: Seconds between repeated lines about log files that cannot be written.
_TROUBLE_EVERY = 60.0


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, and any ``extra`` fields."""

    _standard = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in self._standard and not key.startswith("_"):
                entry[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class RepeatedProblem:
    """A problem that repeats on every attempt (a file that cannot be written on a full
    disk): logged the first time, then at most once a minute, and once when it is over,
    so the console keeps room for everything else::

        trouble = RepeatedProblem(log)
        try:
            write_json_atomic(path, data)
        except OSError as exc:
            trouble.failed("cannot write %s: %s", path, exc.strerror or exc)
        else:
            trouble.over("writing %s works again", path)
    """

    def __init__(self, logger: logging.Logger, every: float = _TROUBLE_EVERY) -> None:
        self._log = logger
        self._every = every
        self._count = 0
        self._said_at: float | None = None

    def failed(self, message: str, *args: object) -> None:
        self._count += 1
        now = time.monotonic()
        if self._said_at is None or now - self._said_at >= self._every:
            self._said_at = now
            self._log.error(
                message + " (%d time(s) so far; said at most once a minute)", *args, self._count
            )

    def over(self, message: str, *args: object) -> None:
        if self._count:
            self._log.info(message + " (after %d failure(s))", *args, self._count)
        self._count, self._said_at = 0, None


class _FileTrouble:
    """What one log file's handler does when writing fails: one line per minute at
    most, straight to stderr (never through logging, which would fail again), and one
    line when writing works again."""

    def __init__(self, stream: TextIO | None = None, every: float = _TROUBLE_EVERY) -> None:
        self._stream = stream
        self._every = every
        self._lock = threading.Lock()
        self._failing = 0
        self._said_at: float | None = None

    def _say(self, line: str) -> None:
        stream = self._stream or sys.stderr
        try:
            stream.write(f"watchkeeper: {line}\n")
            stream.flush()
        except (OSError, ValueError):
            pass  # no stderr either: nothing more can be done

    def failed(self, path: str, exc: BaseException | None) -> None:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        now = time.monotonic()
        with self._lock:
            self._failing += 1
            due = self._said_at is None or now - self._said_at >= self._every
            if due:
                self._said_at = now
            count = self._failing
        if due:
            self._say(
                f"cannot write the log file {path}: {reason} ({count} record(s) not written "
                "so far); the console still gets every record; said at most once a minute"
            )

    def succeeded(self, path: str) -> None:
        with self._lock:
            lost, self._failing, self._said_at = self._failing, 0, None
        if lost:
            self._say(
                f"writing the log file {path} works again ({lost} record(s) failed meanwhile)"
            )


class _QuietFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file whose write errors go to :class:`_FileTrouble`."""

    def __init__(self, path: Path, trouble: _FileTrouble, **options: Any) -> None:
        super().__init__(path, **options)
        self._trouble = trouble
        self._broken = False

    def emit(self, record: logging.LogRecord) -> None:
        self._broken = False
        super().emit(record)
        if not self._broken:
            self._trouble.succeeded(self.baseFilename)

    def handleError(self, record: logging.LogRecord) -> None:
        self._broken = True
        self._trouble.failed(self.baseFilename, sys.exc_info()[1])


def _console_handler(level: int) -> logging.Handler:
    from rich.console import Console
    from rich.logging import RichHandler

    handler = RichHandler(
        console=Console(stderr=True),
        markup=False,
        rich_tracebacks=level <= logging.DEBUG,
        show_path=False,
        log_time_format="%H:%M:%S",
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


def setup_logging(
    data_dir: Path | None,
    level: str = "INFO",
    *,
    console: bool = True,
) -> list[Path]:
    """Configure the ``watchkeeper`` logger; returns the files it writes to.

    Calling it again replaces the handlers it added before (tests, restarts in-process).
    A data dir that cannot be written leaves console logging on and says so once.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    root = logging.getLogger("watchkeeper")
    root.setLevel(numeric)
    root.propagate = False
    for handler in list(root.handlers):
        if getattr(handler, _OURS, False):
            root.removeHandler(handler)
            handler.close()

    handlers: list[logging.Handler] = []
    if console:
        handlers.append(_console_handler(numeric))
    files: list[Path] = []
    problem: str | None = None
    if data_dir is not None:
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            text = _QuietFileHandler(
                data_dir / "agent_system.log",
                _FileTrouble(),
                maxBytes=_ROTATE_BYTES,
                backupCount=_ROTATE_KEEP,
                encoding="utf-8",
            )
            text.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
            )
            lines = _QuietFileHandler(
                data_dir / "agent_system.jsonl",
                _FileTrouble(),
                maxBytes=_ROTATE_BYTES,
                backupCount=_ROTATE_KEEP,
                encoding="utf-8",
            )
            lines.setFormatter(JsonLinesFormatter())
            handlers += [text, lines]
            files = [data_dir / "agent_system.log", data_dir / "agent_system.jsonl"]
        except OSError as exc:
            problem = f"cannot write logs under {data_dir}: {exc.strerror or exc}"
    if not handlers:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        setattr(handler, _OURS, True)
        root.addHandler(handler)
    if problem:
        root.warning("%s; logging to the console only", problem)
    return files
