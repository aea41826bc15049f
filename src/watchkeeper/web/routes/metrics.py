"""``/api/metrics`` and its history: the latest sample, the chart ring, storage ranges.

Nothing here collects: the latest sample is the SensorAgent's, serialised once per
sample by the hub; history comes from the in-memory ring or from storage.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from watchkeeper.model.metrics import MetricsSample
from watchkeeper.storage.errors import StorageError
from watchkeeper.web.feed import SERIES
from watchkeeper.web.models import ErrorBody
from watchkeeper.web.responses import (
    FlatMetrics,
    MetricHistory,
    MetricNames,
    MetricSpecs,
    RecentPoints,
)
from watchkeeper.web.routes._common import WebContext, fail, model_response, parse_duration

__all__ = ["MAX_POINTS", "build"]

#: The most points one history request may ask for.
MAX_POINTS = 5000
_MAX_RANGE = 90 * 86400.0


def build(ctx: WebContext) -> APIRouter:
    router = APIRouter(tags=["metrics"])
    unavailable: dict[int | str, dict[str, Any]] = {
        503: {"model": ErrorBody, "description": "no sample yet, or no storage"}
    }

    def no_sample() -> Exception:
        if ctx.sources.agent("sensor") is None:
            return fail(503, "no metrics: the sensor agent is disabled in the configuration")
        return fail(503, "no sample yet: the sensor takes its first one within one interval")

    @router.get(
        "/api/metrics",
        summary="The latest sample",
        response_model=MetricsSample | FlatMetrics,
        responses=unavailable,
    )
    async def metrics(
        flat: bool = Query(False, description="dotted metric names instead of the sample"),
    ) -> Response:
        """CPU, memory, disks, network, processes (top by CPU and memory), system,
        services. ``flat=true`` gives ``{"cpu.percent": 12.5, ...}`` instead."""
        if flat:
            sample = ctx.sources.latest_sample()
            if sample is None:
                raise no_sample()
            return model_response(FlatMetrics(timestamp=sample.timestamp, metrics=sample.flat()))
        body = ctx.hub.metrics_body()
        if body is None:
            raise no_sample()
        return Response(body, media_type="application/json")

    @router.get(
        "/api/metrics/recent",
        summary="The dashboard's chart history (in memory)",
        response_model=RecentPoints,
    )
    async def recent() -> Response:
        """Up to an hour of chart points kept by the web layer from ``metrics.sample``
        (totals over disks and interfaces); needs no storage."""
        points = ctx.hub.points()
        columns: dict[str, list[Any]] = {"ts": [p["ts"] for p in points]}
        for name in SERIES:
            columns[name] = [p[name] for p in points]
        return model_response(
            RecentPoints.model_validate({"series": list(SERIES), "points": len(points), **columns})
        )

    @router.get(
        "/api/metrics/history",
        summary="One metric over a time range, from storage",
        response_model=MetricHistory,
        responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}, **unavailable},
    )
    async def history(
        metric: str = Query(
            ..., min_length=1, max_length=300, description="dotted name, e.g. cpu.percent"
        ),
        range_: str = Query("1h", alias="range", max_length=32, description="e.g. 15m, 6h, 7d"),
        step: str | None = Query(None, max_length=32, description="bucket size; default range/300"),
        end: float | None = Query(None, description="unix time the range ends (default now)"),
    ) -> Response:
        """Min, average and max per step. Steps under a minute come from raw samples
        (kept for a day by default), longer ones from one-minute aggregates."""
        span = parse_duration(range_, "range", minimum=1, maximum=_MAX_RANGE)
        if step is None:
            bucket = max(1.0, math.ceil(span / 300))
        else:
            bucket = parse_duration(step, "step", minimum=0.001, maximum=_MAX_RANGE)
        if span / bucket > MAX_POINTS:
            raise fail(
                422,
                f"range/step asks for {span / bucket:.0f} points; at most {MAX_POINTS}: "
                "choose a larger step",
            )
        now = ctx.clock()
        stop = now if end is None else end
        if not math.isfinite(stop) or stop <= 0 or stop > now + 86400:
            raise fail(422, "end: must be a unix time, not in the future")
        storage = ctx.sources.storage()
        if storage is None:
            raise fail(503, ctx.sources.storage_problem())
        try:
            points = await storage.metric_range(metric, stop - span, stop, bucket)
        except StorageError as exc:
            raise fail(503, f"history is unavailable: {exc}") from None
        if not points:
            known = await storage.metric_names(metric.split(".", 1)[0])
            if metric not in known:
                raise fail(
                    404,
                    f"no history for {metric!r}; /api/metrics/names lists what is stored",
                )
        return model_response(
            MetricHistory(
                metric=metric,
                start=stop - span,
                end=stop,
                step=bucket,
                source="storage",
                points=points,
            )
        )

    @router.get(
        "/api/metrics/names",
        summary="Metric names with stored history",
        response_model=MetricNames,
        responses=unavailable,
    )
    async def names(prefix: str = Query("", max_length=300)) -> Response:
        storage = ctx.sources.storage()
        if storage is None:
            raise fail(503, ctx.sources.storage_problem())
        try:
            found = await storage.metric_names(prefix)
        except StorageError as exc:
            raise fail(503, f"history is unavailable: {exc}") from None
        return model_response(MetricNames(prefix=prefix, names=found))

    @router.get(
        "/api/metrics/specs",
        summary="Every declared metric: name, unit, description",
        response_model=MetricSpecs,
    )
    async def specs() -> Response:
        """The declarations the sensor's collectors emit under (names may hold
        ``{placeholders}``); the same ones Prometheus' HELP lines come from. They are
        read from the orchestrator's collector registry, plugins' collectors included."""
        orchestrator = ctx.orchestrator
        sampled = "collectors" not in orchestrator.unused_registries()
        declared = list(orchestrator.registries.collectors.metric_specs()) if sampled else []
        from watchkeeper.model.metrics import SERVICE_METRIC_SPECS

        return model_response(MetricSpecs(specs=[*declared, *SERVICE_METRIC_SPECS]))

    return router
