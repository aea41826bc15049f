"""Every read endpoint, against a real running watchkeeper."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families
from web_helpers import LiveServer


def test_health_reports_liveness_readiness_and_each_dependency(client: httpx.Client) -> None:
    response = client.get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True and body["live"] is True
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"agents", "storage", "sampling", "llm"}
    assert body["checks"]["sampling"]["ok"] is True and body["reasons"] == []
    assert body["checks"]["storage"]["ok"] is True
    assert body["checks"]["llm"] == {"ok": None, "detail": "llm: disabled"}
    assert 0 <= body["health"]["score"] <= 100
    assert client.get("/api/health", params={"probe": "live"}).status_code == 200
    assert client.get("/api/health", params={"probe": "maybe"}).status_code == 422


def test_system_and_agents(client: httpx.Client, server: LiveServer) -> None:
    system = client.get("/api/system").json()
    assert system["state"] == "running"
    assert set(system["agents"]) == {"sensor", "analyzer", "remediator", "communicator"}
    assert system["health"]["source"] == "communicator"
    agents = client.get("/api/agents").json()
    assert agents["sensor"]["state"] in ("running", "degraded")
    one = client.get("/api/agents/remediator").json()
    assert "approve" in one["commands"] and one["status"]["mode"] == "approve"
    missing = client.get("/api/agents/nobody")
    assert missing.status_code == 404
    assert missing.json()["valid"] == ["analyzer", "communicator", "remediator", "sensor"]


def test_metrics_are_the_sensors_latest_sample(client: httpx.Client, server: LiveServer) -> None:
    sample = client.get("/api/metrics").json()
    assert sample["cpu"]["count"] >= 1
    assert 0 <= sample["memory"]["percent"] <= 100
    assert sample["processes"]["total"] > 0
    flat = client.get("/api/metrics", params={"flat": True}).json()
    assert "memory.percent" in flat["metrics"]
    recent = client.get("/api/metrics/recent").json()
    assert recent["points"] >= 2
    assert len(recent["ts"]) == len(recent["cpu"]) == recent["points"]


def test_no_request_triggers_collection(client: httpx.Client, server: LiveServer) -> None:
    """With the sensor paused, a hundred requests see the same sample and take none."""
    auth = server.auth
    pause = {"command": "pause", "target": "sensor"}
    assert client.post("/api/command", json=pause, headers=auth).status_code == 200
    try:
        assert server.orchestrator is not None
        sensor = server.orchestrator.agents["sensor"]
        checks = server.on_loop(lambda: sensor.checks)
        last = server.on_loop(lambda: sensor.latest.timestamp if sensor.latest else None)
        # The last sample taken before the pause may still be on its way to the web.
        server.wait_for(
            lambda: client.get("/api/metrics").json()["timestamp"] == last,
            what="the sensor's last sample on the web",
        )
        bodies = {client.get("/api/metrics").content for _ in range(100)}
        assert len(bodies) == 1
        assert server.on_loop(lambda: sensor.checks) == checks
    finally:
        resume = {"command": "resume", "target": "sensor"}
        assert client.post("/api/command", json=resume, headers=auth).status_code == 200


def test_history_from_storage_with_clear_errors(client: httpx.Client, server: LiveServer) -> None:
    def stored() -> bool:
        reply = client.get("/api/metrics/history", params={"metric": "cpu.percent", "step": "1"})
        # Every step is listed (empty ones as null gaps): wait for one that holds values.
        return reply.status_code == 200 and any(p["count"] for p in reply.json()["points"])

    server.wait_for(stored, what="stored cpu history")
    body = client.get(
        "/api/metrics/history", params={"metric": "memory.percent", "range": "10m", "step": "5s"}
    ).json()
    assert body["source"] == "storage" and body["step"] == 5.0
    assert {"ts", "min", "avg", "max", "count"} <= set(body["points"][0])
    for params, status, words in [
        ({"metric": "cpu.percent", "range": "soon"}, 422, "range"),
        ({"metric": "cpu.percent", "range": "-5m"}, 422, "range"),
        ({"metric": "cpu.percent", "step": "0"}, 422, "step"),
        ({"metric": "cpu.percent", "range": "30d", "step": "1s"}, 422, "points"),
        ({"metric": "cpu.percent", "end": str(time.time() + 10 * 86400)}, 422, "end"),
        ({"metric": "no.such.metric"}, 404, "no history"),
        ({}, 422, "metric"),
    ]:
        reply = client.get("/api/metrics/history", params=params)
        assert reply.status_code == status, (params, reply.text)
        assert words in reply.text
    names = client.get("/api/metrics/names", params={"prefix": "cpu"}).json()["names"]
    assert "cpu.percent" in names
    specs = client.get("/api/metrics/specs").json()["specs"]
    assert {"name": "disk.{mount}.percent"}.items() <= next(
        s for s in specs if s["name"] == "disk.{mount}.percent"
    ).items()


def test_alerts_analysis_activity(client: httpx.Client) -> None:
    alerts = client.get("/api/alerts").json()
    assert alerts["analyzer"] is True and set(alerts["counts"]) == {"critical", "warning", "info"}
    with_history = client.get("/api/alerts", params={"range": "1h", "state": "all"})
    assert with_history.status_code == 200 and "history" in with_history.json()
    assert client.get("/api/alerts", params={"range": "forever"}).status_code == 422
    assert client.get("/api/alerts", params={"state": "odd"}).status_code == 422
    analysis = client.get("/api/analysis", params={"history": 5}).json()
    assert analysis["llm"]["status"] == "llm: disabled" and analysis["llm"]["enabled"] is False
    assert isinstance(analysis["history"], list)
    memory = client.get("/api/activity", params={"source": "memory", "limit": 5}).json()
    assert memory["source"] == "memory"
    stored = client.get("/api/activity", params={"source": "storage"}).json()
    assert stored["source"] == "storage"
    assert client.get("/api/activity", params={"limit": 0}).status_code == 422


def test_remediation_view(client: httpx.Client) -> None:
    body = client.get("/api/remediation").json()
    assert body["available"] is True and body["mode"] == "approve"
    assert {a["name"] for a in body["actions"]} >= {"restart_service", "kill_process"}
    assert {"pending", "audit", "success_rates", "given_up", "status"} <= set(body)
    assert client.get("/api/remediation", params={"limit": 5000}).status_code == 422


def test_bus_view(client: httpx.Client) -> None:
    body = client.get("/api/bus", params={"limit": 5, "pattern": "metrics.*"}).json()
    assert body["stats"]["published"] > 0
    assert 1 <= len(body["recent"]) <= 5
    assert all(m["topic"] == "metrics.sample" and "payload" not in m for m in body["recent"])
    assert any(s["name"] == "web:live" for s in body["stats"]["subscribers"])
    with_payload = client.get("/api/bus", params={"limit": 1, "payload": True}).json()
    assert "payload" in with_payload["recent"][0]
    assert client.get("/api/bus", params={"pattern": "a..b"}).status_code == 422


def test_config_view_masks_secrets(server: LiveServer, tmp_path: object) -> None:
    with server.client() as http:
        body = http.get("/api/config").json()
    assert body["settings"]["remediation"]["mode"] in ("approve", "dry_run", "auto")
    assert "thresholds" in body["live_sections"] and "web" not in body["live_sections"]
    assert server.token not in str(body)


def test_prometheus_exposition(client: httpx.Client) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert families["watchkeeper_cpu_percent"].samples[0].value >= 0
    disk = families["watchkeeper_disk_percent"].samples
    assert any(s.labels.get("mount") == "/" for s in disk)
    up = {s.labels["agent"]: s.value for s in families["watchkeeper_agent_up"].samples}
    assert up == {"sensor": 1.0, "analyzer": 1.0, "remediator": 1.0, "communicator": 1.0}
    assert "watchkeeper_alerts_firing" in families
    assert "watchkeeper_actions" in families  # counter family (samples end in _total)
    assert families["watchkeeper_info"].samples[0].labels["version"]
    assert 0 <= families["watchkeeper_health_score"].samples[0].value <= 100
    assert "watchkeeper_process_resident_memory_bytes" in families


def test_pages_and_reference(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert "<script>" not in page.text  # no inline script, ever
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/chart.js").status_code == 200
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/api/command" in schema["paths"]
    assert schema["paths"]["/api/command"]["post"]["security"] == [{"bearer": []}]
    assert client.get("/static/nothing.js").status_code == 404
