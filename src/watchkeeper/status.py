"""The status snapshot: ``<data_dir>/system_status.json``, rewritten atomically.

A reader (a person with ``cat``, a monitoring script, the CLI when no daemon answers)
always finds either the previous complete file or the new complete file, never half of
one: the snapshot goes to a temporary file in the same directory, is flushed to disk,
then renamed over the old one, and the directory is synced so the rename itself survives
a crash. :func:`write_bytes_atomic` is the one way watchkeeper writes a small file whole
(the status file, the API token): on a full disk the write fails and the old file, or no
file at all, is left behind, never an empty or half-written one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from watchkeeper.model.snapshot import StatusHeader

__all__ = ["STATUS_FILE", "read_status", "write_bytes_atomic", "write_json_atomic"]

STATUS_FILE = "system_status.json"


def write_bytes_atomic(path: Path, data: bytes, *, mode: int = 0o600, replace: bool = True) -> None:
    """Write ``data`` to ``path`` in one rename: a temporary file in the same directory
    (created with ``mode``, so a secret is never readable by others, not even briefly),
    flushed and synced, renamed over ``path``, then the directory synced.

    ``replace=False`` refuses to overwrite an existing file (``FileExistsError``), so two
    processes creating the same file at once cannot both win. Raises ``OSError`` (a full
    disk, say) after removing the temporary file: ``path`` is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if mode != 0o600:  # mkstemp creates 0600 already
            os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails when path exists, unlike a rename
            os.unlink(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_dir(path.parent)


def _sync_dir(directory: Path) -> None:
    # The rename lives in the directory: sync it too. Not every filesystem allows it.
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path``, replacing it in one rename."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


def read_status(data_dir: Path) -> StatusHeader | None:
    """The last snapshot's header (state, pid, freshness, details), or None when there is
    none or it cannot be read as one."""
    try:
        data = (data_dir / STATUS_FILE).read_bytes()
    except OSError:
        return None
    try:
        return StatusHeader.model_validate_json(data)
    except ValueError:
        return None
