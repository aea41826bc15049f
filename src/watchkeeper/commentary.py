"""A dry one-liner about each sample, for the "witty" personality.

The SensorAgent may log one line per sample. With the ``plain`` personality there is none
(the numbers speak for themselves); with ``witty`` there is a short remark that always
carries the number behind it, so the joke never stands between a reader and the fact::

    comment(sample, "witty")   # 'CPU at 93%. Something in here is working very hard.'
    comment(sample, "plain")   # None

The most pressing state wins: critical memory, disk, CPU; then their warning levels;
then zombies; then a partial sample; otherwise calm. The variant within a state follows
the sample's timestamp, so lines vary over time but a given sample always gets the same one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from watchkeeper.model.metrics import MetricsSample
from watchkeeper.model.text import LOG_LINE, clean

__all__ = ["TEMPLATES", "CommentThresholds", "ThresholdsLike", "comment", "mood"]

TEMPLATES: dict[str, tuple[str, ...]] = {
    "memory_critical": (
        "Memory {memory:.0f}% used. Room left for one small thought, maybe.",
        "Memory at {memory:.0f}%. The kernel is eyeing the door marked OOM.",
    ),
    "disk_critical": (
        "{mount} is {disk:.0f}% full. Something is writing a very long diary.",
        "{mount} at {disk:.0f}%. Soon it will be full in the literal sense.",
    ),
    "cpu_critical": (
        "CPU at {cpu:.0f}%. Something in here is working very hard.",
        "CPU {cpu:.0f}%. Every core is busy and none of them is happy about it.",
    ),
    "memory_tight": (
        "Memory at {memory:.0f}%. Getting cosy in here.",
        "Memory {memory:.0f}% used. Not a crisis, just less elbow room.",
    ),
    "disk_filling": (
        "{mount} at {disk:.0f}% and filling, as disks do.",
        "{mount} is {disk:.0f}% full. A good week to look at old logs.",
    ),
    "cpu_busy": (
        "CPU at {cpu:.0f}%. Busy, not yet bothered.",
        "CPU {cpu:.0f}%. The host has found something to do.",
    ),
    "zombies": (
        "{zombies} zombie process(es) about. Their parents should call them in.",
        "{zombies} zombie(s) in the process table. Harmless, until they are not.",
    ),
    "partial": (
        "Partial view: {families} did not answer. The rest is below.",
        "{families} kept quiet this round; working from what the others said.",
    ),
    "calm": (
        "CPU {cpu:.0f}%, memory {memory:.0f}%. A nice, boring host.",
        "All quiet: CPU {cpu:.0f}%, memory {memory:.0f}%. Boring is the goal.",
    ),
    "warming_up": (
        "Memory {memory:.0f}%. CPU figures arrive with the next sample.",
        "First look: memory at {memory:.0f}%; CPU needs a second glance.",
    ),
}


class ThresholdsLike(Protocol):
    """Anything with these levels, such as the configuration's ``thresholds`` section."""

    @property
    def cpu_warning(self) -> float: ...
    @property
    def cpu_critical(self) -> float: ...
    @property
    def memory_warning(self) -> float: ...
    @property
    def memory_critical(self) -> float: ...
    @property
    def disk_warning(self) -> float: ...
    @property
    def disk_critical(self) -> float: ...


@dataclass(frozen=True)
class CommentThresholds:
    """Default levels (percent) at which a remark turns from calm to busy to worried."""

    cpu_warning: float = 75.0
    cpu_critical: float = 90.0
    memory_warning: float = 85.0
    memory_critical: float = 95.0
    disk_warning: float = 85.0
    disk_critical: float = 95.0


def comment(
    sample: MetricsSample, personality: str, thresholds: ThresholdsLike | None = None
) -> str | None:
    """The remark for ``sample`` when ``personality`` is ``"witty"``; ``None`` for ``"plain"``."""
    if personality == "plain":
        return None
    if personality != "witty":
        raise ValueError(f"unknown personality {personality!r}: use 'witty' or 'plain'")
    levels = thresholds if thresholds is not None else CommentThresholds()
    state, facts = _state(sample, levels)
    variants = TEMPLATES[state]
    return variants[int(sample.timestamp) % len(variants)].format(**facts)


def mood(sample: MetricsSample, thresholds: ThresholdsLike | None = None) -> str:
    """The state a remark is chosen for (``calm``, ``cpu_busy``, ``memory_tight``...): the
    SensorAgent logs a remark when this changes, not on every sample."""
    return _state(sample, thresholds if thresholds is not None else CommentThresholds())[0]


def _state(sample: MetricsSample, levels: ThresholdsLike) -> tuple[str, dict[str, object]]:
    cpu = sample.cpu.percent if sample.cpu is not None else None
    memory = sample.memory.percent if sample.memory is not None else None
    mount, disk = None, None
    if sample.disks is not None and sample.disks.filesystems:
        fullest = max(sample.disks.filesystems, key=lambda fs: fs.percent)
        mount, disk = clean(fullest.mount, LOG_LINE, 60), fullest.percent
    facts: dict[str, object] = {"cpu": cpu, "memory": memory, "mount": mount, "disk": disk}

    for level in ("critical", "warning"):
        if memory is not None and memory >= getattr(levels, f"memory_{level}"):
            return ("memory_critical" if level == "critical" else "memory_tight"), facts
        if disk is not None and disk >= getattr(levels, f"disk_{level}"):
            return ("disk_critical" if level == "critical" else "disk_filling"), facts
        if cpu is not None and cpu >= getattr(levels, f"cpu_{level}"):
            return ("cpu_critical" if level == "critical" else "cpu_busy"), facts
    if sample.processes is not None and sample.processes.zombie > 0:
        return "zombies", {"zombies": sample.processes.zombie}
    if sample.errors or memory is None:
        families = ", ".join(sorted(sample.errors)) or "memory"
        return "partial", {"families": clean(families, LOG_LINE, 80)}
    if cpu is None:
        return "warming_up", facts
    return "calm", facts
