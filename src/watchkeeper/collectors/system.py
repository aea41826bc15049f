"""Uptime, boot time and logged-in users, plus temperatures, fans and battery when the
platform offers them.

Sensors are absent on most servers' VMs and containers; then the lists are empty and the
battery ``None``, with no error. Hardware sensors change slowly and reading them walks many
sysfs files, so they are re-read every ``sensor_interval`` seconds (5 by default) and the
last readings reused in between; a host that has none is asked again only every
``absent_retry`` seconds (300). Boot time is read once.

    SystemCollector().collect().uptime_seconds
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, Protocol

import psutil

from watchkeeper.model.metrics import (
    BatteryStatus,
    FanReading,
    MetricSpec,
    SystemMetrics,
    TemperatureReading,
)

__all__ = ["SYSTEM_METRICS", "SystemCollector", "SystemSource", "sensor_slug"]

SYSTEM_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(name="system.boot_time", unit="unix_time", description="When the host booted."),
    MetricSpec(name="system.uptime_seconds", unit="seconds", description="Time since boot."),
    MetricSpec(name="system.users", unit="count", description="Logged-in user sessions."),
    MetricSpec(name="temp.{sensor}.celsius", unit="celsius", description="A temperature sensor."),
    MetricSpec(name="fan.{sensor}.rpm", unit="rpm", description="A fan's speed."),
    MetricSpec(name="battery.percent", unit="percent", description="Battery charge."),
    MetricSpec(
        name="battery.seconds_left", unit="seconds", description="Estimated time on battery."
    ),
    MetricSpec(name="battery.plugged", unit="boolean", description="1 when on mains power."),
)


class SystemSource(Protocol):
    """The slice of psutil this collector reads; pass another object to test failures.
    ``sensors_*`` may be missing entirely (psutil offers them per platform)."""

    def boot_time(self) -> float: ...
    def users(self) -> Any: ...


def sensor_slug(*parts: str) -> str:
    """A key-safe sensor name: ``sensor_slug("coretemp", "Package id 0")`` gives
    ``coretemp_package_id_0``."""
    joined = "_".join(part for part in parts if part)
    return re.sub(r"[^a-z0-9]+", "_", joined.lower()).strip("_") or "sensor"


class SystemCollector:
    """Reads uptime and users each call (~30 µs); sensors on their own slower cadence."""

    name: str = "system"
    metrics: tuple[MetricSpec, ...] = SYSTEM_METRICS

    def __init__(
        self,
        source: SystemSource | None = None,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sensor_interval: float = 5.0,
        absent_retry: float = 300.0,
    ) -> None:
        self._source: SystemSource = source if source is not None else psutil
        self._clock = clock
        self._monotonic = monotonic
        self._sensor_interval = sensor_interval
        self._absent_retry = absent_retry
        self._boot: float | None = None
        self._next_sensor_read: float | None = None
        self._temps: tuple[TemperatureReading, ...] = ()
        self._fans: tuple[FanReading, ...] = ()
        self._battery: BatteryStatus | None = None

    def collect(self) -> SystemMetrics:
        if self._boot is None:
            self._boot = float(self._source.boot_time())
        try:
            users: int | None = len(self._source.users())
        except OSError:
            users = None  # no utmp in this container: unknown, not zero
        now = self._monotonic()
        if self._next_sensor_read is None or now >= self._next_sensor_read:
            self._read_sensors()
            found = self._temps or self._fans or self._battery is not None
            self._next_sensor_read = now + (self._sensor_interval if found else self._absent_retry)
        return SystemMetrics(
            boot_time=self._boot,
            uptime_seconds=max(0.0, self._clock() - self._boot),
            users=users,
            temperatures=self._temps,
            fans=self._fans,
            battery=self._battery,
        )

    def _read_sensors(self) -> None:
        temps = _call(self._source, "sensors_temperatures") or {}
        self._temps = tuple(
            TemperatureReading(
                sensor=slug,
                celsius=entry.current,
                high_celsius=entry.high or None,
                critical_celsius=entry.critical or None,
            )
            for slug, entry in _unique(temps)
            if entry.current is not None
        )
        fans = _call(self._source, "sensors_fans") or {}
        self._fans = tuple(
            FanReading(sensor=slug, rpm=float(entry.current)) for slug, entry in _unique(fans)
        )
        battery = _call(self._source, "sensors_battery")
        self._battery = None
        if battery is not None and battery.percent is not None:
            seconds = battery.secsleft
            # psutil marks "unknown" and "unlimited" (on mains) with negative values.
            known = isinstance(seconds, int | float) and seconds >= 0
            self._battery = BatteryStatus(
                percent=float(battery.percent),
                seconds_left=float(seconds) if known else None,
                plugged=battery.power_plugged,
            )


def _call(source: Any, method: str) -> Any:
    """A sensor reading, or None where the platform has no such sensor API or it fails."""
    reader = getattr(source, method, None)
    if reader is None:
        return None
    try:
        return reader()
    except (OSError, NotImplementedError, psutil.AccessDenied):
        return None


def _unique(readings: dict[str, list[Any]]) -> list[tuple[str, Any]]:
    """Entries of every chip with distinct slugs (chips repeat labels: ``Core 0`` twice)."""
    out: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for chip, entries in readings.items():
        for index, entry in enumerate(entries):
            slug = base = sensor_slug(chip, entry.label or str(index))
            suffix = 2
            while slug in seen:
                slug, suffix = f"{base}_{suffix}", suffix + 1
            seen.add(slug)
            out.append((slug, entry))
    return out
