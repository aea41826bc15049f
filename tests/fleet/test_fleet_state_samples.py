"""FleetState and the samples it keeps as they came: checked when a host is first read, a
bad one refused and counted once, and the view's sample JSON made once per sample."""

from __future__ import annotations

from typing import Any

import pytest

from watchkeeper.fleet.state import FleetState
from watchkeeper.model.metrics import MetricsSample
from watchkeeper.testing.fleet_sim import FleetSim, SimConfig


@pytest.fixture(scope="module")
def payload() -> dict[str, Any]:
    """A real sample's JSON payload (the simulator's, from this machine's own sample)."""
    sim = FleetSim(SimConfig(hosts=1))
    sample: dict[str, Any] = sim.base.model_dump(mode="json")
    return sample


def test_a_bad_sample_is_refused_when_read_and_counted_once(payload: dict[str, Any]) -> None:
    state = FleetState()
    state.observe_sample("web-1", {**payload, "timestamp": "soon"}, 1000)
    assert state.stats().bad_samples == 0  # kept as it came, not read yet
    for _ in range(3):
        view = state.host_view("web-1", 1000)
        assert view is not None and view["sample"] is None
    assert state.sample("web-1") is None
    assert state.stats().bad_samples == 1
    assert state.stats().to_dict()["bad_samples"] == 1
    # A good sample after it is read as usual.
    state.observe_sample("web-1", payload, 1005)
    parsed = state.sample("web-1")
    assert isinstance(parsed, MetricsSample) and parsed.timestamp == payload["timestamp"]
    assert state.stats().bad_samples == 1


def test_the_view_shows_the_newest_sample_each_time(payload: dict[str, Any]) -> None:
    state = FleetState()
    first = {**payload, "timestamp": 1000.0}
    state.observe_sample("web-1", first, 1000)
    one = state.host_view("web-1", 1000)
    again = state.host_view("web-1", 1001)
    assert one is not None and again is not None
    assert one["sample"]["timestamp"] == again["sample"]["timestamp"] == 1000.0
    assert one["sample"] == MetricsSample.model_validate(first).model_dump(mode="json")
    assert again["sample"] is one["sample"]  # made once, for every read of this sample
    # A newer sample replaces what the view shows at once, raw or as a model.
    state.observe_sample("web-1", {**payload, "timestamp": 1005.0}, 1005)
    newer = state.host_view("web-1", 1005)
    assert newer is not None and newer["sample"]["timestamp"] == 1005.0
    model = MetricsSample.model_validate({**payload, "timestamp": 1010.0})
    state.observe_sample("web-1", model, 1010)
    newest = state.host_view("web-1", 1010)
    assert newest is not None and newest["sample"]["timestamp"] == 1010.0
