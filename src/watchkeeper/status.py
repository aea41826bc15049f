"""The status snapshot: ``<data_dir>/system_status.json``, rewritten atomically.

A reader (a person with ``cat``, a monitoring script, the CLI when no daemon answers)
always finds either the previous complete file or the new complete file, never half of
one: the snapshot goes to a temporary file in the same directory, is flushed to disk,
then renamed over the old one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["STATUS_FILE", "read_status", "write_json_atomic"]

STATUS_FILE = "system_status.json"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path``, replacing it in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True, default=str)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_status(data_dir: Path) -> dict[str, Any] | None:
    """The last snapshot, or None when there is none or it cannot be read."""
    try:
        with (data_dir / STATUS_FILE).open(encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
