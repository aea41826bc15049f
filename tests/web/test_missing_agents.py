"""A watchkeeper with no agents at all, and a history database that cannot be opened:
every endpoint still answers, and says why."""

from __future__ import annotations

from pathlib import Path

from test_events import events, first
from web_helpers import LiveServer


def test_every_endpoint_copes_without_agents(tmp_path: Path) -> None:
    hub = {"heartbeat": 0.3, "status_every": 60}
    (tmp_path / "data" / "watchkeeper.db").mkdir(parents=True)  # a directory: cannot open
    with LiveServer(tmp_path, factories={}, hub_options=hub) as live, live.client() as http:
        health = http.get("/api/health").json()
        assert health["ready"] is True and health["health"]["source"] == "web"
        metrics = http.get("/api/metrics")
        assert metrics.status_code == 503
        assert "sensor agent is disabled" in metrics.json()["detail"]
        assert health["checks"]["storage"]["ok"] is False
        assert "storage is not open" in health["checks"]["storage"]["detail"]
        assert health["status"] == "degraded"
        for path, params in [
            ("/api/metrics/history", {"metric": "cpu.percent"}),
            ("/api/metrics/names", {}),
            ("/api/alerts", {"range": "1h"}),
            ("/api/activity", {"source": "storage"}),
        ]:
            reply = http.get(path, params=params)
            assert reply.status_code == 503, path
            assert reply.json()["detail"].startswith("history is unavailable: storage is not")
        assert http.get("/api/metrics/recent").json()["points"] == 0
        assert http.get("/api/alerts").json() == {
            "analyzer": False,
            "counts": {"critical": 0, "warning": 0, "info": 0},
            "firing": [],
        }
        assert http.get("/api/analysis").json()["analyzer"] is False
        remediation = http.get("/api/remediation").json()
        assert remediation["available"] is False and remediation["actions"]
        assert http.get("/api/activity").json() == {"source": "memory", "items": []}
        assert http.get("/api/agents").json() == {}
        assert http.get("/metrics").status_code == 200
        reply = http.post(
            "/api/command", json={"command": "health_check", "target": "all"}, headers=live.auth
        )
        assert reply.status_code == 400 and reply.json()["valid"] == []
        with http.stream("GET", "/api/events") as response:
            stream = events(response)
            first(stream, "status")
            assert first(stream, "comment", timeout=3) == "keep-alive"
