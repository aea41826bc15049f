"""RateTracker with a controlled clock, the collector registry, and text sanitising."""

from __future__ import annotations

import pytest

from watchkeeper.collectors import (
    Collector,
    CollectorRegistry,
    DuplicateCollectorError,
    DuplicateMetricError,
    MemoryCollector,
    RateTracker,
    UnknownCollectorError,
)
from watchkeeper.model.metrics import MetricSpec
from watchkeeper.model.text import LOG_LINE, clean


def clean_text(text: str, limit: int = LOG_LINE.max_len) -> str:
    return clean(text, LOG_LINE, limit)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_first_reading_has_no_rate_then_rates_per_second() -> None:
    clock = Clock()
    rates = RateTracker(clock=clock)
    assert rates.rate("rx", 1_000) is None
    clock.now += 2.0
    assert rates.rate("rx", 5_000) == pytest.approx(2_000.0)
    clock.now += 0.5
    assert rates.rate("rx", 5_100) == pytest.approx(200.0)


def test_counter_going_backwards_gives_no_rate_and_rebaselines() -> None:
    clock = Clock()
    rates = RateTracker(clock=clock)
    rates.rate("rx", 4_000_000_000)
    clock.now += 1.0
    # A 32-bit wrap or a device reset: the counter restarts near zero.
    assert rates.rate("rx", 1_500) is None
    clock.now += 1.0
    assert rates.rate("rx", 2_500) == pytest.approx(1_000.0)


def test_rates_are_never_negative_over_a_bumpy_series() -> None:
    clock = Clock()
    rates = RateTracker(clock=clock)
    series = [10, 20, 5, 5, 100, 0, 0, 7, 3, 50]
    seen = []
    for value in series:
        clock.now += 1.0
        seen.append(rates.rate("x", value))
    assert seen[0] is None
    assert all(r is None or r >= 0 for r in seen)
    assert seen == [None, 10.0, None, 0.0, 95.0, None, 0.0, 7.0, None, 47.0]


def test_no_time_passed_keeps_the_older_baseline() -> None:
    clock = Clock()
    rates = RateTracker(clock=clock)
    rates.rate("x", 100)
    assert rates.rate("x", 150) is None  # same instant: no division by zero, no baseline loss
    clock.now -= 5.0  # a clock stepping back is treated the same way
    assert rates.rate("x", 160) is None
    clock.now += 7.0
    assert rates.rate("x", 300) == pytest.approx(100.0)  # (300 - 100) / 2 s


def test_shared_now_and_independent_keys() -> None:
    rates = RateTracker(clock=Clock())
    rates.rate("a", 0, now=10.0)
    rates.rate("b", 0, now=10.0)
    assert rates.rate("a", 30, now=13.0) == pytest.approx(10.0)
    assert rates.rate("b", 3, now=13.0) == pytest.approx(1.0)


def test_retain_and_forget_make_a_returning_key_start_afresh() -> None:
    clock = Clock()
    rates = RateTracker(clock=clock)
    rates.rate("eth0", 100)
    rates.rate("eth1", 100)
    rates.retain(["eth0"])  # eth1 went away
    assert len(rates) == 1
    clock.now += 1.0
    assert rates.rate("eth1", 10_000_000) is None  # back again: no bogus jump
    rates.forget("eth0")
    assert rates.rate("eth0", 200) is None


class PluginCollector:
    name = "plugin"
    metrics = (MetricSpec(name="plugin.value", unit="count", description="A test value."),)

    def collect(self) -> dict[str, float]:
        return {"plugin.value": 1.0}


def test_registry_register_get_names_unregister() -> None:
    registry = CollectorRegistry()
    memory, plugin = MemoryCollector(), PluginCollector()
    registry.register(memory)
    registry.register(plugin)
    assert registry.names() == ("memory", "plugin")
    assert registry.get("plugin") is plugin
    assert "memory" in registry and len(registry) == 2
    assert [spec.name for spec in registry.metric_specs()][-1] == "plugin.value"
    assert registry.unregister("memory") is memory
    assert registry.names() == ("plugin",)
    assert list(registry) == [plugin]


def test_duplicate_name_is_an_error_not_an_override() -> None:
    registry = CollectorRegistry([MemoryCollector()])
    first = registry.get("memory")
    with pytest.raises(DuplicateCollectorError):
        registry.register(MemoryCollector())
    assert registry.get("memory") is first


def test_duplicate_metric_name_across_collectors_is_an_error() -> None:
    class Impostor(PluginCollector):
        name = "impostor"

    registry = CollectorRegistry([PluginCollector()])
    with pytest.raises(DuplicateMetricError, match=r"plugin\.value"):
        registry.register(Impostor())
    assert registry.names() == ("plugin",)


def test_unknown_names_and_bad_names() -> None:
    registry = CollectorRegistry()
    with pytest.raises(UnknownCollectorError):
        registry.get("nope")
    with pytest.raises(UnknownCollectorError):
        registry.unregister("nope")

    class Blank(PluginCollector):
        name = " "

    with pytest.raises(ValueError):
        registry.register(Blank())


def test_collectors_satisfy_the_protocol() -> None:
    assert isinstance(MemoryCollector(), Collector)
    assert isinstance(PluginCollector(), Collector)
    assert not isinstance(object(), Collector)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("plain text", "plain text"),
        ("line\nbreak\r\n", "line break"),
        ("\x1b[2J\x1b[31mred", "[2J [31mred"),
        ("tab\there\x00nul\x7fdel\x9bcsi", "tab here nul del csi"),
        ("abc\u202eevil\u2066x", "abc evil x"),
        ("bad \udcff byte", "bad \ufffd byte"),
    ],
)
def test_clean_text_strips_control_characters(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


def test_clean_text_truncates_with_an_ellipsis() -> None:
    out = clean_text("x" * 500, limit=10)
    assert out == "x" * 9 + "…" and len(out) == 10
