"""The health score: a 0-100 number and a status, with the reasons behind them.

``HealthTracker`` is fed what the team hears (alerts, agent states and restarts, critical
services) and ``evaluate(now)`` gives the current ``HealthPoint``; ``HealthTimeline``
keeps the changes worth telling (a new status or score band) as the ``HealthChange`` that
``health.changed`` carries::

    timeline = HealthTimeline(HealthTracker(), clock=time.time)
    timeline.tracker.alert(alert)
    change = timeline.update()            # a HealthChange, or None when nothing moved

The web uses the same formula when no communicator runs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from watchkeeper.model.alerts import Alert, AlertState, Severity
from watchkeeper.model.events import HealthChange, HealthPoint
from watchkeeper.model.services import ServiceEvent, ServiceStatus
from watchkeeper.model.text import NOTIFICATION, clean

__all__ = ["HealthTimeline", "HealthTracker", "score_band"]

_UP_STATES = {"running", "starting"}


def score_band(score: int) -> str:
    """The band a score falls in: ``good`` (90+), ``fair`` (70+), ``poor`` (40+), ``bad``."""
    if score >= 90:
        return "good"
    if score >= 70:
        return "fair"
    return "poor" if score >= 40 else "bad"


class HealthTracker:
    """What the health score is computed from; ``evaluate(now)`` gives the record.

    An agent restarted within ``restart_window`` seconds counts as degraded, and as failed
    (crash-looping) from ``crash_loop`` restarts in that window.
    """

    def __init__(self, *, restart_window: float = 600.0, crash_loop: int = 3) -> None:
        self.restart_window = restart_window
        self.crash_loop = crash_loop
        self.alerts: dict[str, Alert] = {}
        self._agent_state: dict[str, str] = {}
        self._restarts: dict[str, deque[float]] = {}
        self._critical_services: dict[str, bool] = {}  # name -> is up

    def alert(self, alert: Alert) -> None:
        if alert.state is AlertState.RESOLVED:
            self.alerts.pop(alert.fingerprint, None)
        else:
            self.alerts[alert.fingerprint] = alert

    def agent_restarted(self, agent: str, now: float) -> int:
        """Count a restart; returns the restarts inside the window."""
        stamps = self._restarts.setdefault(agent, deque(maxlen=50))
        stamps.append(now)
        return sum(1 for t in stamps if now - t <= self.restart_window)

    def agent_state(self, agent: str, state: str) -> None:
        self._agent_state[agent] = state

    def services(self, statuses: Iterable[ServiceStatus | Mapping[str, Any]]) -> bool:
        """Take the service list of a sample (its models, or their JSON from a plugin);
        True when a critical service went up or down."""
        seen: dict[str, bool] = {}
        for status in statuses:
            if isinstance(status, ServiceStatus):
                if status.critical:
                    seen[status.name] = status.is_up
            elif status.get("critical"):
                seen[str(status.get("name"))] = str(status.get("state")) in _UP_STATES
        changed = seen != self._critical_services
        self._critical_services = seen
        return changed

    def service_event(self, event: ServiceEvent) -> bool:
        if event.name not in self._critical_services:
            return False
        up = event.kind in ("started", "healthy")
        changed = self._critical_services[event.name] != up
        self._critical_services[event.name] = up
        return changed

    def _agents(self, now: float) -> tuple[list[str], list[str]]:
        failed, degraded = [], []
        for agent in sorted(set(self._agent_state) | set(self._restarts)):
            recent = sum(1 for t in self._restarts.get(agent, ()) if now - t <= self.restart_window)
            state = self._agent_state.get(agent, "running")
            if state == "failed" or recent >= self.crash_loop:
                failed.append(f"agent {agent} failing ({recent} restarts in window)")
            elif state == "degraded" or recent:
                degraded.append(f"agent {agent} unsteady ({recent} recent restart(s))")
        return failed, degraded

    def evaluate(self, now: float) -> HealthPoint:
        """The health at ``now``. From 100, each term capped: 25 per firing critical alert
        (max 60), 10 per warning (max 30), 2 per info (max 6); 15 per failed agent and 5
        per degraded or recently restarted one (together max 30); 30 per critical service
        down (max 60). Status: ``critical`` with any critical alert, any critical service
        down or a score under 40; ``degraded`` with any warning alert, any unwell agent or
        a score under 80; ``healthy`` otherwise."""
        by_severity: dict[Severity, list[Alert]] = {s: [] for s in Severity}
        for alert in self.alerts.values():
            by_severity[alert.severity].append(alert)
        crit, warn, info = (
            by_severity[s] for s in (Severity.CRITICAL, Severity.WARNING, Severity.INFO)
        )
        failed, degraded = self._agents(now)
        down = sorted(name for name, up in self._critical_services.items() if not up)
        penalty = min(60, 25 * len(crit)) + min(30, 10 * len(warn)) + min(6, 2 * len(info))
        penalty += min(30, 15 * len(failed) + 5 * len(degraded)) + min(60, 30 * len(down))
        score = max(0, 100 - penalty)
        reasons = [f"critical service {name} is down" for name in down]
        for label, alerts in (("critical", crit), ("warning", warn), ("info", info)):
            if alerts:
                names = ", ".join(
                    clean(f"{a.rule} on {a.subject}", NOTIFICATION, 80) for a in alerts[:3]
                )
                more = f" and {len(alerts) - 3} more" if len(alerts) > 3 else ""
                reasons.append(f"{len(alerts)} {label} alert(s): {names}{more}")
        reasons += failed + degraded
        if crit or down or score < 40:
            status = "critical"
        elif warn or failed or degraded or score < 80:
            status = "degraded"
        else:
            status = "healthy"
        return HealthPoint(ts=now, status=status, score=score, reasons=reasons)


class HealthTimeline:
    """The current health and its recent changes; a change is a new status or band.

    Feed ``tracker`` and call :meth:`update` after anything that may move the score; only
    a change is kept (the last ``maxlen``) and returned, so callers publish, store and
    tell only those.
    """

    def __init__(
        self, tracker: HealthTracker, *, clock: Callable[[], float], maxlen: int = 500
    ) -> None:
        self.tracker = tracker
        self._clock = clock
        self._timeline: deque[HealthPoint] = deque(maxlen=maxlen)
        self.current = HealthPoint(ts=clock(), status="healthy", score=100)

    def records(self) -> list[HealthPoint]:
        """The kept changes, oldest first."""
        return list(self._timeline)

    def begin(self) -> None:
        """Start the timeline with the current record (once; later calls do nothing)."""
        if not self._timeline:
            self._timeline.append(self.current)

    def update(self) -> HealthChange | None:
        """Evaluate now; the change when the status or the score band moved, else None."""
        record = self.tracker.evaluate(self._clock())
        self.current = record
        previous = self._timeline[-1] if self._timeline else None
        if previous is not None and (
            previous.status == record.status
            and score_band(previous.score) == score_band(record.score)
        ):
            return None
        self._timeline.append(record)
        band = score_band(record.score)
        return HealthChange(**dict(record), band=band, previous=previous)
