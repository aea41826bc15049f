"""Every GET route answers in the shape its response model declares.

The routes send pre-serialised JSON (no validation per request), so this is where a
model and the answer it documents are held together; the CLI reads the same models.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import BaseModel, TypeAdapter

from watchkeeper.model.metrics import MetricsSample
from watchkeeper.model.snapshot import AgentHealth, SystemSnapshot
from watchkeeper.web.models import HealthReport
from watchkeeper.web.responses import (
    ActivityReply,
    AgentDetail,
    AlertsReply,
    AnalysisReply,
    BusReply,
    ConfigReply,
    FlatMetrics,
    MetricHistory,
    MetricNames,
    MetricSpecs,
    RecentPoints,
    RemediationReply,
)

CASES: list[tuple[str, dict[str, Any], Any]] = [
    ("/api/health", {}, HealthReport),
    ("/api/system", {}, SystemSnapshot),
    ("/api/agents", {}, dict[str, AgentHealth]),
    ("/api/agents/remediator", {}, AgentDetail),
    ("/api/metrics", {}, MetricsSample),
    ("/api/metrics", {"flat": "true"}, FlatMetrics),
    ("/api/metrics/recent", {}, RecentPoints),
    ("/api/metrics/history", {"metric": "cpu.percent", "range": "1h"}, MetricHistory),
    ("/api/metrics/names", {}, MetricNames),
    ("/api/metrics/specs", {}, MetricSpecs),
    ("/api/alerts", {"range": "1h"}, AlertsReply),
    ("/api/analysis", {"history": 3}, AnalysisReply),
    ("/api/activity", {}, ActivityReply),
    ("/api/activity", {"source": "memory"}, ActivityReply),
    ("/api/remediation", {}, RemediationReply),
    ("/api/bus", {"payload": "true"}, BusReply),
    ("/api/config", {}, ConfigReply),
]


@pytest.mark.parametrize(("path", "params", "model"), CASES)
def test_the_answer_fits_the_declared_model(
    client: httpx.Client, path: str, params: dict[str, Any], model: Any
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    TypeAdapter(model).validate_python(body)
    closed = isinstance(model, type) and issubclass(model, BaseModel)
    if closed and model.model_config.get("extra") != "allow":
        assert set(body) <= set(model.model_fields), set(body) - set(model.model_fields)


def test_the_schema_names_each_get_routes_model(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    untyped = [
        path
        for path, item in schema["paths"].items()
        if "get" in item
        and path.startswith("/api/")
        and path != "/api/events"
        and not _json_schema(item["get"]["responses"]["200"])
    ]
    assert untyped == []


def _json_schema(response: dict[str, Any]) -> Any:
    return response.get("content", {}).get("application/json", {}).get("schema")
