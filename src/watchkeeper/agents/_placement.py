"""Agents placed where they fit: what a host says of itself, and when it analyses alone.

:func:`host_beat` builds the ``fleet.heartbeat`` a host publishes (on a NATS bus) from
the agents it runs: its health and score, counts, last sample, the bus's outbox and
connection, and whether it tells people of its own alerts itself (so the central host
does not tell them again). :class:`FallbackSwitch` says when a host that runs no
analyzer, cut off from the server, should start a rules-only analyzer of its own, and
when to stop it::

    switch = FallbackSwitch(after=30.0)
    switch.update(connected=False)     # "start" once cut off for 30 s, else None
    switch.update(connected=True)      # "stop" once connected again for `settle` s

:class:`LinkWatch` reads "connected" from a bus's ``status()``: the client's word, or an
outbox that has stopped draining (a cut whose packets just stop).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from watchkeeper import __version__
from watchkeeper.model.fleet import HostBeat
from watchkeeper.model.snapshot import AgentState
from watchkeeper.notify.health import HealthTracker

if TYPE_CHECKING:
    from watchkeeper.agents.base import BaseAgent
    from watchkeeper.config import Settings

__all__ = ["FALLBACK_AGENT", "FallbackSwitch", "LinkWatch", "host_beat", "outbox_size"]

#: How the heartbeat names a running fallback analyzer (not "analyzer": a central
#: analyzer keeps analysing a host whose own analysis is only a stand-in).
FALLBACK_AGENT = "fallback-analyzer"


class FallbackSwitch:
    """When to run a fallback analyzer: ``after`` seconds without a connection start it;
    ``settle`` seconds connected again stop it (a flapping link does not toggle it)."""

    def __init__(
        self,
        after: float,
        *,
        settle: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.after = after
        self.settle = settle
        self.active = False
        self._monotonic = monotonic
        self._cut_since: float | None = None
        self._back_since: float | None = None

    def update(self, connected: bool) -> Literal["start", "stop"] | None:
        """Feed the connection state now; "start" or "stop" when the fallback should."""
        now = self._monotonic()
        if not connected:
            self._back_since = None
            if self._cut_since is None:
                self._cut_since = now
            if not self.active and now - self._cut_since >= self.after:
                self.active = True
                return "start"
            return None
        self._cut_since = None
        if not self.active:
            return None
        if self._back_since is None:
            self._back_since = now
        if now - self._back_since >= self.settle:
            self.active = False
            self._back_since = None
            return "stop"
        return None

    def cut_for(self) -> float:
        """Seconds without a connection so far (0 when connected)."""
        return 0.0 if self._cut_since is None else self._monotonic() - self._cut_since


class LinkWatch:
    """Whether the bus reaches its server, from its ``status()``: connected, and its
    outbox draining. A link whose packets just stop (a cable, a firewall) leaves the
    client "connected" until its pings time out, minutes later; but then nothing it sends
    is acknowledged, so events wait in the outbox. Waiting events that have not gone
    down for ``stuck_after`` seconds count as a cut, with the reason in :attr:`why`."""

    def __init__(
        self, stuck_after: float, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.stuck_after = stuck_after
        self.why = ""
        self._monotonic = monotonic
        self._last = 0
        self._moved = monotonic()

    def up(self, status: Mapping[str, Any]) -> bool:
        now = self._monotonic()
        count = outbox_size(status)
        if count == 0 or count < self._last:
            self._moved = now
        self._last = count
        if not status.get("connected", True):
            self.why = "no connection to the bus server"
            return False
        if now - self._moved >= self.stuck_after:
            self.why = f"the bus server has acknowledged nothing ({count} event(s) waiting)"
            return False
        self.why = ""
        return True


def outbox_size(status: Mapping[str, Any]) -> int:
    """The messages waiting for the server, from a bus's ``status()``."""
    value = status.get("outbox", 0)
    if isinstance(value, Mapping):
        value = next((value[k] for k in ("messages", "pending", "rows", "count") if k in value), 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _display_name(settings: Settings) -> str:
    return (settings.fleet.display_name or socket.gethostname() or "")[:120]


def host_beat(
    agents: Mapping[str, BaseAgent],
    settings: Settings,
    *,
    host: str,
    bus_status: Mapping[str, Any],
    started_at: float | None,
    now: float,
    stopped: bool = False,
    fallback: bool = False,
) -> HostBeat:
    """This host's heartbeat from the agents it runs (``fallback``: the analyzer among
    them is a fallback one). The score is the communicator's when it runs here, else the
    same formula over this host's alerts (its analyzer's) and agent states."""
    from watchkeeper.agents.analyzer import AnalyzerAgent
    from watchkeeper.agents.communicator import CommunicatorAgent
    from watchkeeper.agents.remediator import RemediatorAgent
    from watchkeeper.agents.sensor import SensorAgent

    analyzer = agents.get("analyzer")
    communicator = agents.get("communicator")
    remediator = agents.get("remediator")
    sensor = agents.get("sensor")
    firing = incidents = 0
    if isinstance(communicator, CommunicatorAgent):
        health = communicator.latest_health
        status, score = health.status, float(health.score)
        firing = len(communicator.tracker.alerts)
    else:
        tracker = HealthTracker()
        if isinstance(analyzer, AnalyzerAgent):
            for alert in analyzer.engine.firing():
                tracker.alert(alert)
        for name, agent in agents.items():
            tracker.agent_state(name, str(agent.state))
        point = tracker.evaluate(now)
        status, score = point.status, float(point.score)
        firing = len(tracker.alerts)
    if isinstance(analyzer, AnalyzerAgent):
        firing = len(analyzer.engine.firing())
        incidents = len(analyzer.engine.incidents_open())
    if any(a.state is AgentState.FAILED for a in agents.values()) and status == "healthy":
        status = "degraded"
    names = [n for n in agents if not (fallback and n == "analyzer")]
    if fallback:
        names.append(FALLBACK_AGENT)
    latest = sensor.latest if isinstance(sensor, SensorAgent) else None
    return HostBeat(
        host=host,
        name=_display_name(settings),
        version=__version__,
        agents=names,
        role=settings.fleet.role,
        labels=dict(settings.fleet.labels),
        started_at=started_at,
        sent_at=now,
        interval=settings.fleet.heartbeat_interval,
        sample_interval=sensor.interval if sensor is not None else None,
        status="stopped" if stopped else status,
        score=score,
        firing=firing,
        incidents=incidents,
        pending_approvals=(
            len(remediator.pending()) if isinstance(remediator, RemediatorAgent) else 0
        ),
        last_sample_at=latest.timestamp if latest is not None else None,
        outbox=outbox_size(bus_status),
        connected=bool(bus_status.get("connected", True)),
        notifies=isinstance(communicator, CommunicatorAgent) and communicator.notifies,
    )
