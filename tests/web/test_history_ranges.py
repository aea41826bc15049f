"""Stored history over the dashboard's ranges, on a real daemon over a real database with
a month in it: the bucket follows the range, every bucket is listed, a stretch where the
daemon was down is null (never interpolated), the chart series are the live charts'
totals, and a bad range gets one clear 422."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from web_helpers import LiveServer, wait_for_samples

from watchkeeper.testing.history_seed import DAY, seed_month

#: The dashboard's ranges and the bucket each gets (the server samples every 0.2 s, so
#: the range, not the interval, decides).
STEPS = {"15m": 5.0, "1h": 10.0, "24h": 300.0, "7d": 1800.0, "30d": 7200.0}
SPANS = {"15m": 900, "1h": 3600, "24h": DAY, "7d": 7 * DAY, "30d": 30 * DAY}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Any]]:
    root = tmp_path_factory.mktemp("history")
    seeded_until = time.time()
    gaps = seed_month(root / "data", seeded_until)
    with LiveServer(root) as live:
        wait_for_samples(live, 3)
        # Between the seeding and the server's first sample nothing was recorded either.
        yield live, {**gaps, "startup": (seeded_until, time.time())}


@pytest.fixture
def client(seeded: tuple[LiveServer, Any]) -> Iterator[httpx.Client]:
    with seeded[0].client() as http:
        yield http


def inside(points: list[dict[str, Any]], step: float, low: float, high: float) -> list[Any]:
    """The buckets lying wholly inside ``[low, high)``."""
    return [p for p in points if p["ts"] >= low and p["ts"] + step <= high]


@pytest.mark.parametrize("range_", list(STEPS))
def test_each_range_lists_every_bucket_of_its_step(
    client: httpx.Client, seeded: tuple[LiveServer, Any], range_: str
) -> None:
    body = client.get(
        "/api/metrics/history", params={"metric": "cpu.percent", "range": range_}
    ).json()
    step = STEPS[range_]
    assert body["step"] == step
    assert body["end"] - body["start"] == SPANS[range_]
    ts = [p["ts"] for p in body["points"]]
    assert ts == [ts[0] + i * step for i in range(len(ts))]  # no bucket left out
    assert ts[0] <= body["start"] < ts[0] + step and ts[-1] < body["end"] <= ts[-1] + step
    assert 90 <= len(ts) <= 361
    # Outside the outages every bucket has values (less the month's first hour, never
    # written).
    outages = [*seeded[1].values(), (0, body["end"] - 30 * DAY + 3600)]
    kept = [
        p
        for p in body["points"]
        if not any(low < p["ts"] + step and p["ts"] < high for low, high in outages)
    ]
    assert len(kept) > len(ts) // 2
    assert all(p["count"] and p["min"] <= p["avg"] <= p["max"] for p in kept), kept


@pytest.mark.parametrize(("range_", "gap"), [("30d", "day"), ("24h", "minutes"), ("1h", "minutes")])
def test_an_outage_is_null_buckets_between_values(
    client: httpx.Client, seeded: tuple[LiveServer, Any], range_: str, gap: str
) -> None:
    low, high = seeded[1][gap]
    body = client.get(
        "/api/metrics/history", params={"metric": "memory.percent", "range": range_}
    ).json()
    step, points = body["step"], body["points"]
    empty = inside(points, step, low, high)
    assert len(empty) >= (high - low) // step - 1 > 0
    assert all(
        p == {"ts": p["ts"], "min": None, "avg": None, "max": None, "count": 0} for p in empty
    )
    before = inside(points, step, low - 5 * step, low)
    after = inside(points, step, high, high + 5 * step)
    assert before and after and all(p["count"] for p in before + after)


def test_a_given_step_is_kept_and_minutes_outside_the_raw_window(client: httpx.Client) -> None:
    params = {"metric": "cpu.percent", "range": "10m", "step": "30s"}
    assert client.get("/api/metrics/history", params=params).json()["step"] == 30.0
    params = {"metric": "cpu.percent", "range": "30h", "step": "30s"}
    body = client.get("/api/metrics/history", params=params).json()
    assert body["step"] == 60.0  # raw values are gone there: the minutes it really is
    assert {p["ts"] % 60 for p in body["points"]} == {0}


def test_the_chart_series_are_totals_with_bands_for_single_metrics(client: httpx.Client) -> None:
    body = client.get("/api/metrics/history/chart", params={"range": "7d"}).json()
    assert body["step"] == 1800.0 and body["source"] == "storage"
    assert set(body["series"]) == {
        "cpu",
        "memory",
        "swap",
        "disk_read",
        "disk_write",
        "net_rx",
        "net_tx",
    }
    n = len(body["ts"])
    middle = n // 2  # days ago: only the seeded metrics were stored then
    disk, net, cpu = (body["series"][k] for k in ("disk_read", "net_rx", "cpu"))
    assert {"diskio.sdx.read_bytes_per_s", "diskio.sdy.read_bytes_per_s"} <= set(disk["metrics"])
    assert disk["avg"][middle] == pytest.approx(150)
    assert disk["min"] is None and disk["max"] is None  # the extremes of a sum are unknown
    assert "net.lo.rx_bytes_per_s" not in net["metrics"]  # loopback is no traffic
    assert net["avg"][middle] == pytest.approx(10)
    assert cpu["metrics"] == ["cpu.percent"] and len(cpu["min"]) == len(cpu["max"]) == n
    assert cpu["min"][middle] <= cpu["avg"][middle] <= cpu["max"][middle]
    some = client.get("/api/metrics/history/chart", params={"range": "30d", "series": "memory"})
    month = some.json()
    assert list(month["series"]) == ["memory"] and month["step"] == 7200.0
    assert None in month["series"]["memory"]["avg"]  # the day the daemon was down


@pytest.mark.parametrize(
    ("path", "params", "words"),
    [
        ("/api/metrics/history", {"metric": "cpu.percent", "range": "forever"}, "range"),
        ("/api/metrics/history", {"metric": "cpu.percent", "range": "0"}, "range"),
        ("/api/metrics/history", {"metric": "cpu.percent", "range": "91d"}, "range"),
        ("/api/metrics/history/chart", {"range": "a week"}, "range"),
        ("/api/metrics/history/chart", {"range": "1y"}, "range"),
        ("/api/metrics/history/chart", {"range": "1h", "series": "cpu,bogus"}, "bogus"),
    ],
)
def test_a_bad_range_is_one_clear_422(
    client: httpx.Client, path: str, params: dict[str, str], words: str
) -> None:
    reply = client.get(path, params=params)
    assert reply.status_code == 422, reply.text
    body = reply.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str)
    assert words in body["detail"] and "\n" not in body["detail"]
    assert "Traceback" not in reply.text
