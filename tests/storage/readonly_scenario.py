"""The read-only-database scenario, run in its own process by the test.

The test runs it without the right to bypass file permissions (as root it drops the
capabilities that would let it write through ``chmod``), and reads the JSON it prints.
"""

from __future__ import annotations

import asyncio
import json
import logging
import stat
import sys
from pathlib import Path

from watchkeeper.storage import Storage, StorageError

T0 = 1_700_000_040.0


async def scenario(data: Path) -> dict[str, object]:
    storage = Storage.in_data_dir(data)
    await storage.open()
    await storage.write_sample(T0, {"cpu.percent": 5.0})
    await storage.close()
    path = data / "watchkeeper.db"
    path.chmod(stat.S_IRUSR)
    storage = Storage.in_data_dir(data)
    try:
        await storage.open()
    except StorageError as exc:
        return {"opened": False, "error": str(exc)}
    try:
        wrote = await storage.write_sample(T0 + 5, {"cpu.percent": 6.0})
        points = await storage.metric_range("cpu.percent", T0, T0 + 60, 5)
        return {
            "opened": True,
            "wrote": wrote,
            "last_error": storage.stats().last_error,
            "values": [p.avg for p in points],
        }
    finally:
        await storage.close()
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    print(json.dumps(asyncio.run(scenario(Path(sys.argv[1])))))
