"""Every host as the fleet view knows it: :class:`FleetState`.

The fleet agent feeds it typed values with the host each message is about; the web view and
the CLI read it. Bus-free and clock-free: every call takes ``now``::

    state = FleetState(settings.fleet)
    state.observe_beat(beat, now)
    state.observe_sample("web-1", message.payload, now)    # kept raw, parsed when read
    rows = state.hosts(now)                                # worst first

A sample kept raw is checked by :class:`MetricsSample` when that host is first read: one
that does not parse reads as None from then on and is counted (``stats().bad_samples``);
the parsed sample's JSON is made once and serves every read until the next sample.

A host is *up* while its newest message is younger than ``stale_after``, *stale* until
``lost_after``, then *lost*; a host that said it stopped (``system.stopped``) is lost at
once. Memory is bounded: per-host caps on alerts, incidents, approvals and actions, hosts
lost for more than :data:`DROP_LOST_AFTER` forgotten, and at most :data:`MAX_HOSTS` hosts
(more are refused and counted).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from watchkeeper.config.fleet import HOST_ID_PATTERN, FleetSettings
from watchkeeper.model.actions import ActionOutcome, ActionRecord
from watchkeeper.model.alerts import SEVERITY_RANK, Alert, AlertState, Severity
from watchkeeper.model.fleet import FleetHostState, FleetHostSummary, FleetIncident, HostBeat
from watchkeeper.model.incidents import Incident, IncidentState
from watchkeeper.model.metrics import MetricsSample

__all__ = [
    "DROP_LOST_AFTER",
    "MAX_ACTIONS",
    "MAX_ALERTS",
    "MAX_APPROVALS",
    "MAX_HOSTS",
    "MAX_INCIDENTS",
    "FleetState",
    "FleetStats",
]

#: Seconds a host may stay lost before the fleet view forgets it.
DROP_LOST_AFTER = 86_400.0
#: At most this many hosts; messages about more are refused and counted.
MAX_HOSTS = 20_000
#: Per-host caps: firing alerts, open incidents, pending approvals, recent actions.
MAX_ALERTS = 200
MAX_INCIDENTS = 100
MAX_APPROVALS = 100
MAX_ACTIONS = 50
#: Resolved fleet incidents kept for reading (the open ones are always kept).
MAX_RESOLVED_INCIDENTS = 200

_STATE_RANK = {FleetHostState.LOST: 2, FleetHostState.STALE: 1, FleetHostState.UP: 0}
_STATUS_RANK = {"critical": 3, "degraded": 2, "unknown": 1, "stopped": 1, "healthy": 0}
# Rough bytes per kept thing, for the memory estimate in stats() (measured with
# tracemalloc on typical values; bench/bench_fleet_state.py reports the real figure). A
# sample is kept as the parsed JSON the bus delivered: about 33 KB for 11 KB of JSON.
_HOST_BYTES = 3_000
_SAMPLE_BYTES = 34_000
_ALERT_BYTES = 2_500
_ACTION_BYTES = 2_000
_INCIDENT_BYTES = 4_000


_HOST_ID = re.compile(HOST_ID_PATTERN)


@dataclass(slots=True)
class FleetStats:
    """What :meth:`FleetState.stats` reports."""

    hosts: int
    by_state: dict[str, int]
    messages: int
    by_kind: dict[str, int]
    refused_hosts: int
    dropped_hosts: int
    memory_estimate_bytes: int
    fleet_incidents_open: int
    #: Samples kept as they came and refused when first read (they do not parse).
    bad_samples: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "hosts": self.hosts,
            "by_state": dict(self.by_state),
            "messages": self.messages,
            "by_kind": dict(self.by_kind),
            "refused_hosts": self.refused_hosts,
            "dropped_hosts": self.dropped_hosts,
            "memory_estimate_bytes": self.memory_estimate_bytes,
            "fleet_incidents_open": self.fleet_incidents_open,
            "bad_samples": self.bad_samples,
        }


@dataclass(slots=True)
class _Host:
    host: str
    first_seen: float
    last_seen: float
    beat: HostBeat | None = None
    sample: MetricsSample | Mapping[str, Any] | None = None
    sample_at: float | None = None
    #: The parsed sample as JSON data, made once per sample for every read of the view.
    sample_json: dict[str, Any] | None = None
    alerts: dict[str, Alert] = field(default_factory=dict)
    alerts_seen: bool = False
    incidents: dict[str, Incident] = field(default_factory=dict)
    approvals: dict[str, ActionRecord] = field(default_factory=dict)
    actions: deque[ActionRecord] = field(default_factory=lambda: deque(maxlen=MAX_ACTIONS))
    stopped: bool = False
    messages: int = 0


def _cap(items: dict[str, Any], limit: int) -> None:
    """Drop the oldest entries (insertion order) past ``limit``."""
    while len(items) > limit:
        del items[next(iter(items))]


class FleetState:
    """The fleet view's memory of every host. Not thread-safe; one agent owns it."""

    def __init__(self, settings: FleetSettings | None = None, *, max_hosts: int = MAX_HOSTS):
        self._settings = settings or FleetSettings()
        self._max_hosts = max_hosts
        self._hosts: dict[str, _Host] = {}
        self._incidents: dict[str, FleetIncident] = {}
        self._messages = 0
        self._by_kind: dict[str, int] = {}
        self._refused = 0
        self._dropped = 0
        self._bad_samples = 0

    @property
    def settings(self) -> FleetSettings:
        return self._settings

    def configure(self, settings: FleetSettings) -> None:
        """Use new ``[fleet]`` settings (stale and lost ages) from now on."""
        self._settings = settings

    # -- feeding -------------------------------------------------------------------------
    def _touch(self, host: str, now: float, kind: str) -> _Host | None:
        self._messages += 1
        self._by_kind[kind] = self._by_kind.get(kind, 0) + 1
        entry = self._hosts.get(host)
        if entry is None:
            if len(self._hosts) >= self._max_hosts:
                self.prune(now)
            if len(self._hosts) >= self._max_hosts or not _HOST_ID.match(host):
                self._refused += 1
                return None
            entry = self._hosts[host] = _Host(host=host, first_seen=now, last_seen=now)
        if now > entry.last_seen:
            entry.last_seen = now
        entry.messages += 1
        entry.stopped = False
        return entry

    def observe_beat(self, beat: HostBeat, now: float, host: str | None = None) -> None:
        """A heartbeat; ``host`` is the message's host (the beat's own claim otherwise)."""
        entry = self._touch(host or beat.host, now, "beat")
        if entry is not None:
            entry.beat = beat

    def observe_sample(
        self, host: str, sample: MetricsSample | Mapping[str, Any], now: float
    ) -> None:
        """The newest sample of ``host``: a model, or its JSON payload kept as it came
        (parsed only when someone reads that host)."""
        entry = self._touch(host, now, "sample")
        if entry is not None:
            entry.sample = sample
            entry.sample_at = now
            entry.sample_json = None

    def observe_alert(self, host: str, alert: Alert, topic: str, now: float | None = None) -> None:
        """An ``alert.*`` message: firing and escalated alerts are kept, resolved ones go."""
        entry = self._touch(host, alert.updated_at if now is None else now, "alert")
        if entry is None:
            return
        entry.alerts_seen = True
        if topic.endswith(".resolved") or alert.state is AlertState.RESOLVED:
            entry.alerts.pop(alert.id, None)
            return
        entry.alerts.pop(alert.id, None)
        entry.alerts[alert.id] = alert
        _cap(entry.alerts, MAX_ALERTS)

    def observe_incident(self, host: str, incident: Incident, now: float | None = None) -> None:
        """An ``incident.*`` message: open incidents are kept, resolved ones go."""
        entry = self._touch(host, incident.updated_at if now is None else now, "incident")
        if entry is None:
            return
        entry.incidents.pop(incident.id, None)
        if incident.state is IncidentState.RESOLVED:
            return
        entry.incidents[incident.id] = incident
        _cap(entry.incidents, MAX_INCIDENTS)

    def observe_action(self, host: str, record: ActionRecord, now: float | None = None) -> None:
        """A ``remediation.<outcome>`` record: pending ones await approval; every record
        joins the host's recent actions (the newest state of each action once)."""
        entry = self._touch(host, record.created_at if now is None else now, "action")
        if entry is None:
            return
        entry.approvals.pop(record.id, None)
        if record.outcome is ActionOutcome.PENDING:
            entry.approvals[record.id] = record
            _cap(entry.approvals, MAX_APPROVALS)
        actions = entry.actions
        for index, old in enumerate(actions):
            if old.id == record.id:
                del actions[index]
                break
        actions.append(record)

    def observe_stopped(self, host: str, now: float) -> None:
        """``system.stopped``: the host said goodbye; it is lost from now on."""
        entry = self._touch(host, now, "stopped")
        if entry is not None:
            entry.stopped = True

    def observe_fleet_incident(self, incident: FleetIncident) -> None:
        """A fleet incident opened, updated or resolved (by the judge)."""
        self._incidents.pop(incident.id, None)
        self._incidents[incident.id] = incident
        resolved = [key for key, item in self._incidents.items() if item.state == "resolved"]
        for key in resolved[: max(0, len(resolved) - MAX_RESOLVED_INCIDENTS)]:
            del self._incidents[key]

    def prune(self, now: float) -> int:
        """Forget hosts lost for longer than :data:`DROP_LOST_AFTER`; how many went."""
        limit = self._settings.lost_after + DROP_LOST_AFTER
        gone = [name for name, entry in self._hosts.items() if now - entry.last_seen > limit]
        for name in gone:
            del self._hosts[name]
        self._dropped += len(gone)
        return len(gone)

    # -- reading -------------------------------------------------------------------------
    def _state(self, entry: _Host, now: float) -> FleetHostState:
        if entry.stopped:
            return FleetHostState.LOST
        age = now - entry.last_seen
        if age >= self._settings.lost_after:
            return FleetHostState.LOST
        if age >= self._settings.stale_after:
            return FleetHostState.STALE
        return FleetHostState.UP

    def state_of(self, host: str, now: float) -> FleetHostState | None:
        """``host``'s state, or None for a host never heard of."""
        entry = self._hosts.get(host)
        return None if entry is None else self._state(entry, now)

    def _summary(self, entry: _Host, now: float) -> FleetHostSummary:
        beat = entry.beat
        worst: Severity | None = None
        for alert in entry.alerts.values():
            if worst is None or SEVERITY_RANK[alert.severity] > SEVERITY_RANK[worst]:
                worst = alert.severity
        if beat is not None:
            firing = len(entry.alerts) if entry.alerts_seen else beat.firing
            status = beat.status
        else:
            firing = len(entry.alerts)
            status = "unknown"
        if entry.stopped:
            status = "stopped"
        return FleetHostSummary(
            host=entry.host,
            name=beat.name if beat is not None and beat.name else entry.host,
            state=self._state(entry, now),
            last_seen=entry.last_seen,
            age_s=round(max(0.0, now - entry.last_seen), 3),
            status=status,
            score=beat.score if beat is not None else None,
            firing=firing,
            incidents=len(entry.incidents),
            pending_approvals=len(entry.approvals),
            agents=list(beat.agents) if beat is not None else [],
            labels=dict(beat.labels) if beat is not None else {},
            version=beat.version if beat is not None else "",
            outbox=beat.outbox if beat is not None else 0,
            connected=beat.connected if beat is not None else True,
            worst_severity=worst,
        )

    def hosts(self, now: float) -> list[FleetHostSummary]:
        """Every host, worst first: lost, then stale, then by status, alerts and name."""
        rows = [self._summary(entry, now) for entry in self._hosts.values()]
        rows.sort(
            key=lambda row: (
                -_STATE_RANK[row.state],
                -_STATUS_RANK.get(row.status, 1),
                -(SEVERITY_RANK[row.worst_severity] + 1 if row.worst_severity else 0),
                -row.firing,
                row.host,
            )
        )
        return rows

    def host_names(self) -> list[str]:
        """Every host id known, in the order first heard of."""
        return list(self._hosts)

    def host_view(self, host: str, now: float) -> dict[str, Any] | None:
        """One host in full (JSON data), or None for a host never heard of."""
        entry = self._hosts.get(host)
        if entry is None:
            return None
        return {
            "summary": self._summary(entry, now).model_dump(mode="json"),
            "beat": entry.beat.model_dump(mode="json") if entry.beat is not None else None,
            "sample": self._sample_json(entry),
            "alerts": [alert.model_dump(mode="json") for alert in entry.alerts.values()],
            "incidents": [item.model_dump(mode="json") for item in entry.incidents.values()],
            "approvals": [rec.model_dump(mode="json") for rec in entry.approvals.values()],
            "actions": [rec.model_dump(mode="json") for rec in reversed(entry.actions)],
        }

    def sample(self, host: str) -> MetricsSample | None:
        """``host``'s newest sample, parsed (None when none came, or it does not parse)."""
        entry = self._hosts.get(host)
        if entry is None or entry.sample is None:
            return None
        if isinstance(entry.sample, MetricsSample):
            return entry.sample
        try:
            parsed = MetricsSample.model_validate(entry.sample)
        except ValueError:
            # Refused once: the view shows no sample until a good one comes.
            entry.sample = entry.sample_json = None
            self._bad_samples += 1
            return None
        entry.sample = parsed
        return parsed

    def _sample_json(self, entry: _Host) -> dict[str, Any] | None:
        if entry.sample_json is None:
            parsed = self.sample(entry.host)
            entry.sample_json = None if parsed is None else parsed.model_dump(mode="json")
        return entry.sample_json

    def approvals(self, host: str) -> list[ActionRecord]:
        """``host``'s actions awaiting a person's approval."""
        entry = self._hosts.get(host)
        return [] if entry is None else list(entry.approvals.values())

    def firing(self, host: str) -> list[Alert]:
        """``host``'s firing alerts."""
        entry = self._hosts.get(host)
        return [] if entry is None else list(entry.alerts.values())

    def incidents(self) -> list[FleetIncident]:
        """Fleet incidents: the open ones first, then the newest."""
        items = list(self._incidents.values())
        items.sort(key=lambda item: (item.state != "open", -item.updated_at))
        return items

    def incident(self, incident_id: str) -> FleetIncident | None:
        return self._incidents.get(incident_id)

    def stats(self, now: float | None = None) -> FleetStats:
        """Hosts by state (when ``now`` is given), messages seen, a memory estimate."""
        by_state: dict[str, int] = {state.value: 0 for state in FleetHostState}
        alerts = actions = incidents = samples = 0
        for entry in self._hosts.values():
            if now is not None:
                by_state[self._state(entry, now).value] += 1
            alerts += len(entry.alerts) + len(entry.approvals)
            actions += len(entry.actions)
            incidents += len(entry.incidents)
            samples += entry.sample is not None
        estimate = (
            len(self._hosts) * _HOST_BYTES
            + samples * _SAMPLE_BYTES
            + alerts * _ALERT_BYTES
            + actions * _ACTION_BYTES
            + (incidents + len(self._incidents)) * _INCIDENT_BYTES
        )
        return FleetStats(
            hosts=len(self._hosts),
            by_state=by_state if now is not None else {},
            messages=self._messages,
            by_kind=dict(self._by_kind),
            refused_hosts=self._refused,
            dropped_hosts=self._dropped,
            memory_estimate_bytes=estimate,
            fleet_incidents_open=sum(
                1 for item in self._incidents.values() if item.state == "open"
            ),
            bad_samples=self._bad_samples,
        )
