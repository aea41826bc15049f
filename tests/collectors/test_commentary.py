"""The witty one-liners: right state, number included, silent when plain."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from watchkeeper.commentary import TEMPLATES, CommentThresholds, comment
from watchkeeper.model.metrics import (
    CpuMetrics,
    DiskMetrics,
    FilesystemUsage,
    MemoryMetrics,
    MetricsSample,
    ProcessMetrics,
)


def sample(
    *,
    cpu: float | None = 10.0,
    memory: float | None = 40.0,
    disk: float = 50.0,
    zombies: int = 0,
    errors: dict[str, str] | None = None,
    timestamp: float = 0.0,
) -> MetricsSample:
    gib = 1 << 30
    return MetricsSample(
        timestamp=timestamp,
        host="h",
        cpu=CpuMetrics(count=2, percent=cpu),
        memory=None
        if memory is None
        else MemoryMetrics(
            total_bytes=gib,
            available_bytes=int(gib * (1 - memory / 100)),
            used_bytes=int(gib * memory / 100),
            percent=memory,
            swap_total_bytes=0,
            swap_used_bytes=0,
            swap_percent=0.0,
        ),
        disks=DiskMetrics(
            filesystems=(
                FilesystemUsage(
                    mount="/",
                    device="/dev/sda1",
                    fstype="ext4",
                    total_bytes=100,
                    used_bytes=int(disk),
                    free_bytes=100 - int(disk),
                    percent=disk,
                ),
                FilesystemUsage(
                    mount="/boot",
                    device="/dev/sda2",
                    fstype="ext4",
                    total_bytes=100,
                    used_bytes=10,
                    free_bytes=90,
                    percent=10.0,
                ),
            )
        ),
        processes=ProcessMetrics(total=100, zombie=zombies),
        errors=errors or {},
    )


def state_of(line: str) -> str:
    """Which template produced ``line``."""
    for state, variants in TEMPLATES.items():
        for variant in variants:
            pattern = re.escape(variant)
            pattern = re.sub(r"\\\{[a-z]+(?::[^}]*)?\\\}", ".+?", pattern)
            if re.fullmatch(pattern, line):
                return state
    raise AssertionError(f"no template produced {line!r}")


@pytest.mark.parametrize(
    ("kwargs", "state", "number"),
    [
        ({}, "calm", "10%"),
        ({"cpu": 80.0}, "cpu_busy", "80%"),
        ({"cpu": 97.4}, "cpu_critical", "97%"),
        ({"memory": 88.0}, "memory_tight", "88%"),
        ({"memory": 96.0, "cpu": 99.0}, "memory_critical", "96%"),
        ({"disk": 87.0}, "disk_filling", "87%"),
        ({"disk": 99.0, "cpu": 80.0}, "disk_critical", "99%"),
        ({"zombies": 4}, "zombies", "4"),
        ({"errors": {"disks": "OSError: gone"}}, "partial", "disks"),
        ({"cpu": None}, "warming_up", "40%"),
    ],
)
def test_each_state_has_its_line_with_the_number(
    kwargs: dict[str, object], state: str, number: str
) -> None:
    for timestamp in (0.0, 1.0):  # both variants of the state
        line = comment(sample(timestamp=timestamp, **kwargs), "witty")  # type: ignore[arg-type]
        assert line is not None
        assert state_of(line) == state
        assert number in line
        assert len(line) < 100 and "\n" not in line


def test_disk_lines_name_the_fullest_mount() -> None:
    line = comment(sample(disk=91.0), "witty")
    assert line is not None and line.startswith("/ ") and "91%" in line


def test_plain_personality_says_nothing_and_unknown_is_an_error() -> None:
    assert comment(sample(cpu=99.0), "plain") is None
    with pytest.raises(ValueError):
        comment(sample(), "sarcastic")


def test_thresholds_can_be_passed_in() -> None:
    @dataclass(frozen=True)
    class Strict:
        cpu_warning: float = 5.0
        cpu_critical: float = 50.0
        memory_warning: float = 99.0
        memory_critical: float = 99.5
        disk_warning: float = 99.0
        disk_critical: float = 99.5

    line = comment(sample(cpu=10.0), "witty", thresholds=Strict())
    assert line is not None and state_of(line) == "cpu_busy"
    line = comment(sample(cpu=92.0), "witty")
    assert line is not None and state_of(line) == "cpu_critical"
    line = comment(sample(cpu=92.0), "witty", thresholds=CommentThresholds(cpu_critical=95.0))
    assert line is not None and state_of(line) == "cpu_busy"


def test_same_sample_same_line() -> None:
    assert comment(sample(timestamp=7.0), "witty") == comment(sample(timestamp=7.0), "witty")


def test_the_configuration_thresholds_fit() -> None:
    config = pytest.importorskip("watchkeeper.config")
    levels = config.Thresholds(cpu_warning=20.0, cpu_critical=30.0)
    line = comment(sample(cpu=25.0), "witty", thresholds=levels)
    assert line is not None and state_of(line) == "cpu_busy"
