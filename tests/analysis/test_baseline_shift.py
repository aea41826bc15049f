"""Baselines that do not learn an ongoing anomaly as normal, through the real engine.

A host idles at 10 % CPU for a morning; then a miner starts and holds it at 55 %, under
every fixed threshold. The anomaly must stay open for as long as the miner runs, call the
step a new level, and only after ``baseline_accept_after`` accept it, saying so. A burst
that ends must still resolve, and slow drift must still be learned.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable

import pytest

from watchkeeper.analysis.baselines import BaselineBook
from watchkeeper.analysis.engine import AnalysisEngine
from watchkeeper.config import Settings
from watchkeeper.model.alerts import Alert, Severity
from watchkeeper.model.metrics import CpuMetrics, MetricsSample

T0 = time.mktime((2026, 3, 10, 9, 0, 0, 0, 0, -1))  # 09:00 local on a fixed day
STEP = 5.0
HOUR = 3600.0

Cpu = Callable[[float], float]  # seconds since T0 -> cpu percent


def sample(t: float, cpu: float) -> MetricsSample:
    return MetricsSample(
        timestamp=T0 + t,
        host="web-1",
        interval=STEP if t else None,
        cpu=CpuMetrics(count=4, percent=cpu),
    )


class Host:
    """An engine fed one CPU reading every STEP seconds; remembers every transition."""

    def __init__(self, **analyzer: float) -> None:
        settings = Settings.model_validate({"analyzer": analyzer})
        self.engine = AnalysisEngine(lambda: settings)
        self.t = 0.0
        self.log: list[tuple[float, str, Alert]] = []

    def run(self, seconds: float, cpu: Cpu, watch: Callable[[Host], None] | None = None) -> None:
        end = self.t + seconds
        while self.t < end:
            for tr in self.engine.observe(sample(self.t, cpu(self.t)), T0 + self.t):
                self.log.append((self.t, tr.kind, tr.alert))
            if watch is not None:
                watch(self)
            self.t += STEP

    def open(self, rule: str = "anomaly") -> list[Alert]:
        return [a for a in self.engine.firing() if a.rule == rule]

    def events(self, rule: str, kind: str) -> list[tuple[float, Alert]]:
        return [(t, a) for t, k, a in self.log if a.rule == rule and k == kind]


def idle(seed: int = 1) -> Cpu:
    noise = random.Random(seed)
    return lambda t: 10 + noise.uniform(-3, 3)


def miner(start: float, seed: int = 2) -> Cpu:
    noise = random.Random(seed)
    return lambda t: (55 if t >= start else 10) + noise.uniform(-3, 3)


def test_a_miner_keeps_its_anomaly_open_while_it_runs() -> None:
    host = Host()
    host.run(2 * HOUR, idle())
    assert host.open() == []
    start = host.t
    gaps: list[float] = []

    def still_open(h: Host) -> None:
        if h.t - start > 60 and not h.open():
            gaps.append(h.t - start)

    host.run(3 * HOUR, miner(start), still_open)
    fired = host.events("anomaly", "firing")
    assert fired and fired[0][0] - start <= 60
    assert gaps == [], f"the anomaly was not open {len(gaps)} times, first after {gaps[0]:.0f}s"
    assert host.events("anomaly", "resolved") == []
    alert = host.open()[0]
    assert alert.subject == "metric:cpu.percent"
    since = time.strftime("%H:%M", time.localtime(T0 + start))
    assert f"since {since}" in alert.summary and "new level" in alert.summary, alert.summary
    assert "usual 10" in alert.summary
    assert alert.evidence["anomalous_since"] == pytest.approx(T0 + start)


def test_a_burst_that_ends_resolves_and_leaves_the_baseline_where_it_was() -> None:
    host = Host()
    host.run(2 * HOUR, idle())
    base = host.t
    noise = random.Random(3)

    def burst(t: float) -> float:
        hot = base <= t < base + 120 or base + 1200 <= t < base + 1320
        return (70 if hot else 10) + noise.uniform(-3, 3)

    host.run(1800, burst)
    fired = [t - base for t, _ in host.events("anomaly", "firing")]
    resolved = [t - base for t, _ in host.events("anomaly", "resolved")]
    assert len(fired) == 2 and len(resolved) == 2, (fired, resolved)
    assert fired[0] <= 30 and 120 <= resolved[0] <= 120 + 60
    assert 1200 <= fired[1] <= 1230  # the first burst did not teach it 70 % is normal
    assert host.open() == []


def test_slow_drift_is_learned_without_an_alert() -> None:
    host = Host()
    noise = random.Random(4)
    # From 10 % to 40 % over a day: a service that slowly gets busier.
    host.run(24 * HOUR, lambda t: 10 + 30 * t / (24 * HOUR) + noise.uniform(-3, 3))
    assert [a.summary for _, a in host.events("anomaly", "firing")] == []


def test_a_level_held_past_accept_after_is_accepted_with_a_note_not_silently() -> None:
    host = Host(baseline_accept_after=HOUR)
    host.run(2 * HOUR, idle())
    start = host.t
    host.run(HOUR + 120, miner(start))
    resolved = host.events("anomaly", "resolved")
    assert len(resolved) == 1 and resolved[0][0] - start >= HOUR
    notes = host.open("baseline_shift")
    assert len(notes) == 1
    note = notes[0]
    assert note.severity is Severity.INFO
    since = time.strftime("%H:%M", time.localtime(T0 + start))
    assert f"new level since {since}" in note.summary and "was ~10" in note.summary, note.summary
    assert host.engine.verdict() == "healthy"
    # 55 % is normal now; a jump from there is an anomaly again, measured from 55.
    noise = random.Random(9)
    host.run(300, lambda t: 95 + noise.uniform(-1, 1))
    again = host.open()
    assert again and "usual 5" in again[0].summary, [a.summary for a in again]
    # The note goes away after an hour.
    host.run(HOUR, lambda t: 55.0)
    assert host.open("baseline_shift") == []


def test_accept_after_zero_never_accepts() -> None:
    host = Host(baseline_accept_after=0)
    host.run(2 * HOUR, idle())
    start = host.t
    host.run(8 * HOUR, miner(start))
    assert host.events("anomaly", "resolved") == []
    assert host.open() and host.open("baseline_shift") == []


# -- persistence ------------------------------------------------------------------------


def test_an_open_anomaly_survives_a_restart() -> None:
    host = Host()
    host.run(2 * HOUR, idle())
    start = host.t
    host.run(600, miner(start))
    state = json.loads(json.dumps(host.engine.baselines.to_state()))  # as storage keeps it
    assert state["version"] == 2

    restarted = Host()
    restarted.engine.baselines.load_state(state)
    restarted.t = host.t
    restarted.run(1800, miner(start))
    alerts = restarted.open()
    assert alerts and alerts[0].evidence["anomalous_since"] == pytest.approx(T0 + start)
    assert restarted.events("anomaly", "resolved") == []


def test_version_one_state_still_loads_and_is_used_at_once() -> None:
    hour = time.localtime(T0).tm_hour
    old = {
        "version": 1,
        "all_day": {"cpu.percent": [10.0, 1.5, 5000]},
        "hourly": {"cpu.percent": {str(hour): [10.0, 1.5, 400]}},
    }
    host = Host()
    host.engine.baselines.load_state(old)
    host.run(60, lambda t: 60.0)
    alerts = host.open()
    assert alerts and "usual 10" in alerts[0].summary
    assert host.engine.baselines.to_state()["all_day"]["cpu.percent"][2] == 5000  # paused


@pytest.mark.parametrize(
    "state",
    [
        None,
        "garbage",
        [1, 2, 3],
        {"version": 99, "all_day": {"cpu.percent": [1.0, 1.0, 500]}},
        {"version": 2, "all_day": "nope", "hourly": [], "episodes": 5, "shifts": None},
    ],
)
def test_foreign_state_is_ignored_without_an_error(state: object) -> None:
    book = BaselineBook()
    book.load_state(state)
    assert book.to_state()["all_day"] == {}


def test_bad_rows_cost_only_themselves() -> None:
    book = BaselineBook()
    book.load_state(
        {
            "version": 2,
            "all_day": {
                "cpu.percent": [10.0, 1.0, 500],
                "memory.percent": ["x", 1.0, 500],
                "load.1m_per_core": [1.0, float("nan"), 500],
                "swap.percent": [1.0, 1.0],
            },
            "hourly": {"cpu.percent": {"9": [10.0, 1.0, 200], "25": [1.0, 1.0, 1], "x": []}},
            "episodes": {"cpu.percent": [T0, 55.0, 2.0, 40], "tcp.total": [True, 1, 2, 3]},
            "shifts": {"procs.total": [T0, T0 + 10, 100.0, 150.0], "bad": {"a": 1}},
        }
    )
    state = book.to_state()
    assert list(state["all_day"]) == ["cpu.percent"]
    assert state["hourly"]["cpu.percent"] == {"9": [10.0, 1.0, 200]}
    assert list(state["episodes"]) == ["cpu.percent"]
    assert list(state["shifts"]) == ["procs.total"]
