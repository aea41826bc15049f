"""What months of a daemon's life would feed its in-memory state, and that the state stays
bounded: many distinct metrics, fingerprints, alerts and topics, each gone soon after.

Each test feeds a structure through its public methods what weeks would give it (compressed
in time only where the structure keys on the clock it is handed) and asserts its size
stays under its bound, not merely that it works.
"""

from __future__ import annotations

import datetime as dt
import json
import time

from watchkeeper.analysis.advice import AdviceGate
from watchkeeper.analysis.baselines import FORGET_AFTER_S, MAX_METRICS, BaselineBook
from watchkeeper.config import Settings
from watchkeeper.config.notifications import NotificationSettings
from watchkeeper.model.alerts import Alert, AlertState, Severity
from watchkeeper.notify._grouping import AlertGrouper

DAY = 86400.0
T0 = time.mktime((2026, 3, 10, 0, 0, 0, 0, 0, -1))


def _flat(interfaces: list[str]) -> dict[str, float]:
    flat = {"cpu.percent": 12.0, "memory.percent": 40.0, "procs.total": 300.0}
    for nic in interfaces:
        flat[f"net.{nic}.rx_bytes_per_s"] = 1000.0
        flat[f"net.{nic}.tx_bytes_per_s"] = 500.0
    return flat


def test_baselines_of_interfaces_that_are_gone_are_forgotten() -> None:
    """A container an hour for a month: each brings its own interface for an hour. The
    book keeps the live metrics and those seen within FORGET_AFTER_S, not all 720."""
    book, settings = BaselineBook(), Settings()
    minute, hours = 60.0, 30 * 24
    for hour in range(hours):
        nic = f"veth{hour:04x}"
        for m in range(60):
            now = T0 + hour * 3600 + m * minute
            list(book.observe(_flat(["eth0", nic]), settings, now))
    within_a_day = int(FORGET_AFTER_S / 3600) + 1
    assert len(book) <= 5 + 2 * within_a_day  # cpu, memory, procs, eth0 rx and tx
    assert "net.eth0.rx_bytes_per_s" in book.all_day
    assert f"net.veth{hours - 1:04x}.rx_bytes_per_s" in book.all_day
    assert "net.veth0000.rx_bytes_per_s" not in book.all_day
    state = book.to_state()
    assert len(state["hourly"]) == len(state["all_day"]) == len(book)
    assert len(json.dumps(state)) < 400 * len(book) * 25


def test_baselines_keep_at_most_max_metrics() -> None:
    """More live metrics than the bound: the book keeps MAX_METRICS, the latest seen."""
    book, settings = BaselineBook(), Settings()
    nics = [f"tap{i}" for i in range(MAX_METRICS)]  # two metrics each: twice the bound
    for step in range(10):
        list(book.observe(_flat(nics), settings, T0 + step * 5))
    assert len(book) == MAX_METRICS
    restored = BaselineBook()
    restored.load_state({**book.to_state(), "all_day": {f"m{i}": [1, 1, 5] for i in range(999)}})
    assert len(restored) == MAX_METRICS


def test_the_advice_gate_forgets_cooldowns_of_gone_alerts() -> None:
    """An LLM call a minute for two months, each about alerts never seen again: the gate
    remembers the last hour's fingerprints (the cooldown is shorter), not 86,400."""
    clock = [T0]
    gate = AdviceGate(cooldown=600, hourly_budget=1000, clock=lambda: clock[0])
    for minute in range(60 * 24 * 60):
        clock[0] = T0 + minute * 60.0
        fingerprints = [f"proc:worker:{minute}", f"disk:/srv/{minute}"]
        assert gate.may_call(fingerprints) is None
        gate.record_call(fingerprints)
    assert gate.remembered <= 2 * 60
    assert gate.may_call(["proc:worker:86399"]) == "cooldown"  # the recent still count


def _alert(i: int, state: AlertState = AlertState.FIRING) -> Alert:
    return Alert(
        id=f"a{i}",
        fingerprint=f"proc_memory:worker-{i}",
        rule="proc_memory",
        severity=Severity.WARNING,
        subject=f"worker-{i}",
        summary="a worker takes too much memory",
        started_at=T0,
        updated_at=T0,
        state=state,
    )


def test_resolved_notices_held_by_quiet_hours_are_bounded() -> None:
    """A day's storm of 5,000 alerts people were told about, all resolving at night with
    quiet hours holding notices: at most queue_size wait for the morning; the rest are
    counted as dropped."""
    settings = NotificationSettings.model_validate(
        {"group_wait": 0, "queue_size": 200, "quiet_hours": {"start": "22:00", "end": "07:00"}}
    )
    grouper = AlertGrouper(
        settings,
        lambda _severity: frozenset({"log"}),
        local_time=lambda at: dt.datetime(2026, 3, 10) + dt.timedelta(seconds=at - T0),
    )
    noon, night = T0 + 12 * 3600, T0 + 23 * 3600
    storm = 5000
    told = sum(len(grouper.on_firing(_alert(i), noon)) for i in range(storm))
    assert told == storm and grouper.firing == storm
    for i in range(storm):
        assert grouper.on_resolved(_alert(i, AlertState.RESOLVED), night) == []
    assert grouper.firing == 0
    assert grouper.held(night) == settings.queue_size
    assert grouper.dropped_quiet == storm - settings.queue_size
    morning = T0 + 31 * 3600
    assert len(grouper.due(morning)) == settings.queue_size
    assert grouper.held(morning) == 0
