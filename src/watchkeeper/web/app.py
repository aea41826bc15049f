"""The FastAPI application: read-only views over the orchestrator's latest snapshot.

Requests never trigger collection: they read what the agents already keep.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse

from watchkeeper import __version__

if TYPE_CHECKING:
    from watchkeeper.orchestrator import Orchestrator

__all__ = ["create_app"]

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>watchkeeper</title>
<style>
body{font:15px/1.4 system-ui,sans-serif;margin:2rem;background:#101418;color:#e6e6e6}
h1{font-size:1.3rem} table{border-collapse:collapse} td,th{padding:.3rem .8rem;text-align:left}
th{color:#9aa} .ok{color:#6c6} .bad{color:#e66}
</style></head><body>
<h1>🛡️ watchkeeper <span id="status">…</span></h1>
<p id="uptime"></p>
<table><thead><tr><th>agent</th><th>state</th><th>checks</th><th>errors</th><th>restarts</th>
</tr></thead><tbody id="agents"></tbody></table>
<script>
async function refresh(){
  const r = await fetch('/api/system'); const s = await r.json();
  const st = document.getElementById('status');
  st.textContent = s.status; st.className = s.status === 'healthy' ? 'ok' : 'bad';
  document.getElementById('uptime').textContent = 'up ' + Math.round(s.uptime_s) + ' s';
  const body = document.getElementById('agents'); body.replaceChildren();
  for (const [name, a] of Object.entries(s.agents)) {
    const tr = document.createElement('tr');
    for (const v of [name, a.state, a.checks, a.errors, a.restarts]) {
      const td = document.createElement('td'); td.textContent = v; tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}
refresh(); setInterval(refresh, 5000);
</script></body></html>"""


def create_app(orchestrator: Orchestrator) -> FastAPI:
    app = FastAPI(title="watchkeeper", version=__version__)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard() -> str:
        return _PAGE

    @app.get("/api/health")
    async def health() -> JSONResponse:
        snap = orchestrator.snapshot()
        ready = snap["state"] == "running"
        return JSONResponse(
            {"status": snap["status"], "ready": ready, "version": __version__},
            status_code=200 if ready else 503,
        )

    @app.get("/api/system")
    async def system() -> dict[str, Any]:
        return orchestrator.snapshot()

    @app.get("/api/agents")
    async def agents() -> dict[str, Any]:
        return {name: a.health().model_dump(mode="json") for name, a in orchestrator.agents.items()}

    return app
