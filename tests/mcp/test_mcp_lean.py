"""A daemon that no MCP client talks to pays nothing for MCP: the web app and the command
line load without the SDK, and mounting ``/mcp`` imports none of it."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
from fastapi import FastAPI
import watchkeeper.cli.app
import watchkeeper.web.app
from watchkeeper.mcp_server.http import mount

app = FastAPI()
mount(app, object(), token="x" * 32)
assert any(getattr(r, "path", "") == "/mcp" for r in app.routes), app.routes
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("mcp", "mcp_types", "httpx2"))
print(",".join(loaded))
"""


def test_the_sdk_loads_only_when_mcp_is_used() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"loaded without an MCP client: {done.stdout[:500]}"
