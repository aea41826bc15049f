"""Crash loops: how often each service changed state lately, with hysteresis.

A service that dies every 40 s and is brought back each time looks healthy in most
samples and dead in a few. Judged sample by sample it is fourteen separate outages, each
with its own restart; judged by its recent history it is one problem: it *flaps*. The
tracker counts state changes per service inside ``analyzer.flap_window`` seconds; with
``analyzer.flap_changes`` or more the service is flapping, and it stops flapping only
after a quiet period (half the window without a single change), the way Nagios' flap
detection has separate start and stop thresholds so the verdict does not flap itself::

    flaps = FlapTracker()
    flaps.sample("worker", "running", restarts=7, now=t)   # from MetricsSample.services
    flaps.event("worker", up=False, now=t + 3)              # from a service.exited event
    state = flaps.judge("worker", now=t + 3, window=600, threshold=3)
    state.flapping, state.changes                            # True, 15

Changes arrive twice: in samples (``ServiceStatus.state`` and its ``restarts`` counter)
and as service events heard between samples. Each real change counts once: events count
at once (so a loop is seen without waiting for the next sample), and at the next sample
the changes the sample implies are compared with those the events already counted; only
the excess is added. ``restarts`` rising between two samples that both saw the service
running still counts: it died and came back in between (two changes per restart).

States ``stopped`` and ``unknown`` carry no information about crashing (a person stopped
it, or the manager cannot tell) and are not counted.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from watchkeeper.analysis.checks import Check, down_remedies, restarts_itself, systemd_evidence
from watchkeeper.model.alerts import Severity, SuggestedAction
from watchkeeper.model.text import LABEL, clean

__all__ = ["FlapState", "FlapTracker", "flap_check", "implied_changes", "restart_suggestion"]

_UP = frozenset({"running", "starting"})
_DOWN = frozenset({"failed"})


def _up_of(state: str) -> bool | None:
    """True up, False down, None when the state says nothing about crashing."""
    state = str(state)
    if state in _UP:
        return True
    if state in _DOWN:
        return False
    return None


def implied_changes(was_up: bool, is_up: bool, restarts: int) -> int:
    """The fewest state changes between two samples that explain what they saw.

    Each restart is a death and a start: two changes. Coming up from down is itself
    one of the restarts (when the counter moved), going down adds one death.
    """
    if was_up and is_up:
        return 2 * restarts
    if was_up and not is_up:
        return 2 * restarts + 1
    if not was_up and is_up:
        return max(1, 2 * restarts - 1)
    return 2 * restarts


@dataclass(frozen=True)
class FlapState:
    """Where one service stands: flapping or not, and the changes in the window."""

    flapping: bool
    changes: int
    since: float | None
    up: bool | None
    last_change: float | None


@dataclass
class _Service:
    up: bool | None = None  # last state known from either source
    sample_up: bool | None = None
    sample_restarts: int = 0
    sampled: bool = False
    credit: int = 0  # changes counted from events since the last sample
    changes: deque[float] = field(default_factory=deque)
    flapping: bool = False
    since: float | None = None
    ended: float | None = None  # when it last stopped flapping


class FlapTracker:
    """State changes per service, and which services flap."""

    def __init__(self) -> None:
        self._services: dict[str, _Service] = {}

    def _get(self, name: str) -> _Service:
        track = self._services.get(name)
        if track is None:
            track = self._services[name] = _Service()
        return track

    def sample(self, name: str, state: str, restarts: int, now: float) -> None:
        """What a sample saw of service ``name``."""
        up = _up_of(state)
        track = self._get(name)
        if up is None:
            track.sample_restarts = restarts
            return
        if track.sampled and track.sample_up is not None:
            moved = max(0, restarts - track.sample_restarts)
            implied = implied_changes(track.sample_up, up, moved)
            for _ in range(max(0, implied - track.credit)):
                track.changes.append(now)
        track.credit = 0
        track.sampled = True
        track.sample_up = up
        track.sample_restarts = restarts
        track.up = up

    def event(self, name: str, up: bool, now: float) -> None:
        """A service event heard between samples: ``up`` after it, or down."""
        track = self._get(name)
        if track.up is not None and track.up != up:
            track.changes.append(now)
            track.credit += 1
        track.up = up

    def judge(self, name: str, now: float, *, window: float, threshold: int) -> FlapState:
        """Whether ``name`` flaps at ``now``: starts at ``threshold`` changes in ``window``
        (one of them new since it last stopped), ends after ``window / 2`` without any."""
        track = self._get(name)
        changes = track.changes
        while changes and changes[0] < now - window:
            changes.popleft()
        last = changes[-1] if changes else None
        fresh = last is not None and (track.ended is None or last > track.ended)
        if not track.flapping and fresh and len(changes) >= threshold:
            track.flapping, track.since = True, now
        elif track.flapping and (last is None or now - last >= window / 2):
            track.flapping, track.since, track.ended = False, None, now
        return FlapState(track.flapping, len(changes), track.since, track.up, last)

    def forget(self, keep: set[str]) -> None:
        """Drop services no longer watched."""
        for name in [n for n in self._services if n not in keep]:
            del self._services[name]

    def names(self) -> list[str]:
        return list(self._services)


def restart_suggestion(name: str) -> SuggestedAction:
    """The one restart a crash loop is given (the remediator's backoff decides the rest)."""
    return SuggestedAction(
        action="restart_service",
        target=name,
        target_kind="service",
        reason=f"service {clean(name, LABEL, 64)} keeps crashing",
        confidence=0.6,
    )


def flap_check(
    name: str,
    state: FlapState,
    *,
    critical: bool,
    window: float,
    restart_held: str = "",
    note: str = "",
    status: Any = None,
) -> Check:
    """The ``service_flapping`` check of one service: fires while it flaps.

    ``restart_held`` says why no restart is proposed (one was, moments ago: a loop gets
    one); ``note`` is remediation's word on the target ("gave up after 5 failures").
    ``status``, its latest, adds what systemd says (``Restart=``, restarts, a start-limit
    hit, the journal): a unit systemd restarts itself is given no restart by watchkeeper,
    and one systemd gave up on is given ``reset_failed``."""
    label = clean(name, LABEL, 64)
    now_state = {True: "running", False: "down", None: "unknown"}[state.up]
    minutes = window / 60
    span = f"{minutes:.0f} min" if minutes >= 1 else f"{window:.0f} s"
    summary = (
        f"service {label} is flapping: {state.changes} state changes in {span} (now {now_state})"
    )
    if note:
        summary += f"; {note}"
    evidence: dict[str, Any] = {
        "service": name,
        "flaps": state.changes,
        "window_s": window,
        "state": now_state,
        "flapping_since": state.since,
        "last_change": state.last_change,
    }
    if restart_held:
        evidence["restart"] = restart_held
    if note:
        evidence["remediation"] = note
    suggested: tuple[SuggestedAction, ...] = () if restart_held else (restart_suggestion(name),)
    if status is not None:
        evidence.update(systemd_evidence(status))
        if getattr(status, "start_limit_hit", False) or restarts_itself(status):
            suggested = down_remedies(status, label, evidence)
    return Check(
        "service_flapping",
        f"service:{name}",
        "service",
        (Severity.CRITICAL if critical else Severity.WARNING) if state.flapping else None,
        summary,
        evidence,
        suggested,
        for_s=0,
        clear_s=0,
    )
