"""``/api/metrics`` and its history: the latest sample, the chart ring, storage ranges.

Nothing here collects: the latest sample is the SensorAgent's, serialised once per
sample by the hub; history comes from the in-memory ring or from storage. A stored range
lists every bucket, the empty ones as ``null`` (a gap the charts leave open), in buckets
chosen from the range unless the client names a step (``web.history``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from watchkeeper.model.metrics import MetricsSample
from watchkeeper.storage.errors import StorageError
from watchkeeper.web.feed import SERIES
from watchkeeper.web.history import (
    CHART_SERIES,
    ChartHistory,
    MetricHistory,
    auto_step,
    bucket_starts,
    combine,
    dense,
)
from watchkeeper.web.models import ErrorBody
from watchkeeper.web.responses import FlatMetrics, MetricNames, MetricSpecs, RecentPoints
from watchkeeper.web.routes._common import WebContext, fail, model_response, parse_duration

if TYPE_CHECKING:
    from watchkeeper.storage import Storage

__all__ = ["MAX_POINTS", "build"]

#: The most points one history request may ask for.
MAX_POINTS = 5000
_MAX_RANGE = 90 * 86400.0
#: Steps under this read raw values, which are kept only for the raw window.
_AGGREGATE_STEP = 60.0
#: The sampling interval assumed when the sensor is not running here.
_DEFAULT_INTERVAL = 5.0


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

    def interval() -> float:
        sensor = ctx.sources.agent("sensor")
        value = getattr(sensor, "interval", None)
        return float(value) if isinstance(value, int | float) and value > 0 else _DEFAULT_INTERVAL

    def window(range_: str, step: str | None, end: float | None) -> tuple[float, float, float]:
        """(start, stop, bucket) of a request, or a 422 naming what is wrong."""
        span = parse_duration(range_, "range", minimum=1, maximum=_MAX_RANGE)
        if step is None:
            bucket = auto_step(span, interval())
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
        # Storage answers in minutes outside the raw window: say so, and list minutes.
        raw_from = now - storage.retention.raw_hours * 3600 if storage is not None else now
        if bucket < _AGGREGATE_STEP and stop - span < raw_from:
            bucket = _AGGREGATE_STEP
        return stop - span, stop, max(1.0, float(int(bucket)))

    def open_storage() -> Storage:
        storage = ctx.sources.storage()
        if storage is None:
            raise fail(503, ctx.sources.storage_problem())
        return storage

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
        step: str | None = Query(
            None, max_length=32, description="bucket size; default: a few hundred buckets"
        ),
        end: float | None = Query(None, description="unix time the range ends (default now)"),
    ) -> Response:
        """Min, average and max per step, every step of the range listed oldest first; a
        step with nothing stored (the daemon was down) has ``null`` values and count 0.
        Steps under a minute come from raw samples (kept for a day by default), longer
        ones from one-minute aggregates, whole hours from hourly ones."""
        start, stop, bucket = window(range_, step, end)
        storage = open_storage()
        try:
            # From the first bucket's own start, so it is whole, not cut at the range's start.
            starts = bucket_starts(start, stop, bucket)
            points = await storage.metric_range(metric, starts[0], stop, bucket)
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
                start=start,
                end=stop,
                step=bucket,
                source="storage",
                points=dense(points, starts),
            )
        )

    @router.get(
        "/api/metrics/history/chart",
        summary="The dashboard's chart series over a time range, from storage",
        response_model=ChartHistory,
        responses={422: {"model": ErrorBody}, **unavailable},
    )
    async def chart_history(
        range_: str = Query("1h", alias="range", max_length=32, description="e.g. 15m, 24h, 30d"),
        series: str = Query(
            ",".join(CHART_SERIES),
            max_length=200,
            description=f"comma-separated, of: {', '.join(CHART_SERIES)}",
        ),
        end: float | None = Query(None, description="unix time the range ends (default now)"),
    ) -> Response:
        """What the dashboard's charts draw for a range: per series one value per bucket
        (``null`` where nothing was stored); totals over disks and interfaces as the live
        charts show them. The bucket is chosen from the range: a few hundred of them."""
        wanted = [name.strip() for name in series.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in CHART_SERIES]
        if unknown or not wanted:
            raise fail(
                422,
                f"series: {', '.join(unknown) or 'none given'}; choose from "
                f"{', '.join(CHART_SERIES)}",
            )
        start, stop, bucket = window(range_, None, end)
        storage = open_storage()
        starts = bucket_starts(start, stop, bucket)
        try:
            # Two trips to the storage thread, however many disks and interfaces.
            names = await storage.metric_names("")
            members = {key: CHART_SERIES[key].members(names) for key in dict.fromkeys(wanted)}
            every = [name for group in members.values() for name in group]
            stored = await storage.metric_ranges(every, starts[0], stop, bucket)
            out = {
                key: combine(group, [stored[name] for name in group], starts)
                for key, group in members.items()
            }
        except StorageError as exc:
            raise fail(503, f"history is unavailable: {exc}") from None
        return model_response(
            ChartHistory(
                start=start, end=stop, step=bucket, source="storage", ts=starts, series=out
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
