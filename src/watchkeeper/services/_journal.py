"""The last lines a service logged, as evidence for its failure.

For a systemd unit they come from its journal, read with an argv list (never a shell)::

    journalctl -u UNIT -n 20 -o json --no-pager

and for a process service from the tail of the file its output is captured in
(``log_dir/<name>.log``). Log lines are written by the service, so they are untrusted:
each is cut to ``LINE_MAX`` characters and cleaned with the ``LOG_LINE`` profile, and at
most ``LINES_MAX`` lines are kept. What systemd itself wrote about the unit (its exit,
its result) begins with ``MANAGER_LINE``, so the unit's own words can be told apart.
Reading never raises: a missing ``journalctl``, a journal that says nothing or an
unreadable file give an empty list.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

from watchkeeper.model.services import MANAGER_LINE
from watchkeeper.model.text import LOG_LINE, clean

__all__ = ["LINES_MAX", "LINE_MAX", "file_tail", "journal_tail", "parse_journal_json"]

_log = logging.getLogger(__name__)

LINES_MAX = 20
"""How many of the last lines are attached to a failure."""
LINE_MAX = 200
"""How long one attached line may be (cut with an ellipsis)."""
_OUTPUT_MAX = 256 * 1024  # journalctl's answer is read up to this many bytes
_TAIL_BYTES = 16 * 1024  # how much of the end of a captured output file is read
_TIMEOUT = 5.0


def _message(value: Any) -> str | None:
    """A journal entry's MESSAGE: a string, or a list of byte values when not UTF-8."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return bytes(value).decode("utf-8", errors="replace")
    return None  # null (too large for journald to show) or something unexpected


def parse_journal_json(output: str, lines: int = LINES_MAX) -> list[str]:
    """The MESSAGE of each JSON entry in ``output`` (one entry a line), cleaned, the last
    ``lines`` of them; lines that are not JSON objects are skipped."""
    found: list[str] = []
    for raw in output.splitlines():
        raw = raw.strip()
        if not raw.startswith("{"):
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        text = _message(entry.get("MESSAGE"))
        if text is None:
            continue
        line = clean(text, LOG_LINE, LINE_MAX)
        if line:
            if entry.get("_PID") == "1" or entry.get("_COMM") == "systemd":
                line = clean(MANAGER_LINE + line, LOG_LINE, LINE_MAX)  # systemd, on the unit
            found.append(line)
    return found[-lines:] if lines > 0 else []


async def journal_tail(
    unit: str, *, lines: int = LINES_MAX, journalctl: str = "journalctl"
) -> list[str]:
    """The last ``lines`` journal messages of ``unit`` (already a validated unit name)."""
    lines = max(1, min(lines, LINES_MAX * 5))
    args = ["-u", unit, "-n", str(lines), "-o", "json", "--no-pager"]
    env = {**os.environ, "LC_ALL": "C", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}
    try:
        proc = await asyncio.create_subprocess_exec(
            journalctl,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
        )
    except OSError as exc:
        _log.debug("cannot run %s: %s", journalctl, exc)
        return []
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(_TIMEOUT):
            out = b""
            while len(out) < _OUTPUT_MAX:
                chunk = await proc.stdout.read(_OUTPUT_MAX - len(out))
                if not chunk:
                    break
                out += chunk
            else:
                out = out[: out.rfind(b"\n") + 1]  # an entry cut in half is dropped
    except TimeoutError:
        out = b""
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    return parse_journal_json(out.decode("utf-8", errors="replace"), lines)


def file_tail(path: Path | None, lines: int = LINES_MAX) -> list[str]:
    """The last ``lines`` lines of the file at ``path`` (a service's captured output)."""
    if path is None or lines <= 0:
        return []
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - _TAIL_BYTES))
            data = fh.read(_TAIL_BYTES)
    except OSError:
        return []
    chunks = data.split(b"\n")
    if size > _TAIL_BYTES:
        chunks = chunks[1:]  # the first one is most likely a line cut in half
    found = [clean(chunk, LOG_LINE, LINE_MAX) for chunk in chunks]
    return [line for line in found if line][-lines:]
