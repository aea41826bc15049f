"""No storms: one group per incident (or per alert fingerprint for an alert that belongs
to none), a repeat interval, resolved notices, quiet hours. Pure bookkeeping on an
injected clock; the :class:`Notifier` does the sending.

The life of a group::

    firing ──(group_wait)──► first notice ──(repeat_interval)──► repeat ... ──► resolved
      └── resolved within group_wait: nothing is sent (a flap)

A rise in severity is told at once (``escalated``); a resolved notice goes to exactly
the channels that were told the alert (or incident) fired. An incident's group is keyed
``incident:<id>``, a fleet incident's ``fleet:<id>``; its opening is its ``firing``. On a
central host another host's alert is grouped as ``<host>/<alert id>``: the same rule and
subject firing on two hosts are two problems until a fleet incident joins them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from watchkeeper.config.notifications import NotificationSettings
from watchkeeper.model.alerts import SEVERITY_RANK, Alert, Severity
from watchkeeper.model.fleet import FleetIncident
from watchkeeper.model.incidents import Incident
from watchkeeper.model.text import NOTIFICATION, clean
from watchkeeper.notify.base import NoticeKind

__all__ = ["AlertGrouper", "FleetBook", "IncidentBook", "Outgoing", "Subject", "group_key"]

Route = Callable[[Severity], frozenset[str]]
Subject = Alert | Incident | FleetIncident
"""What a group is about: one alert, one incident of correlated alerts, or one fleet
incident (the same alert on many hosts)."""


def group_key(item: Subject, host: str | None = None) -> str:
    """The group of an alert (its fingerprint; ``<host>/<id>`` for another host's), an
    incident (``<host>/incident:<id>`` for another host's) or a fleet incident."""
    if isinstance(item, Alert):
        return item.fingerprint if host is None else f"{host}/{item.id}"
    if isinstance(item, FleetIncident):
        return f"fleet:{item.id}"
    return f"incident:{item.id}" if host is None else f"{host}/incident:{item.id}"


@dataclass(frozen=True)
class Outgoing:
    """A notice to build and send now: what happened, about which alert or incident, to
    whom."""

    kind: NoticeKind
    item: Subject
    channels: frozenset[str]
    told: Subject | None = None
    """For a resolved notice: the alert or incident as people were last told of it."""
    host: str | None = None
    """The other host an alert is about (None: this host's own)."""


@dataclass
class _Group:
    alert: Subject
    due: float | None  # a first (or held) notice is waiting until this time
    pending_kind: NoticeKind = "firing"
    notified_at: float | None = None
    told_rank: int = -1  # the highest severity people were told about
    told_item: Subject | None = None  # what the last notice said
    absorbed: bool = False  # told alone once, now told through its incident
    told: set[str] = field(default_factory=set)
    escalation_told: bool = False
    host: str | None = None


class AlertGrouper:
    """Decides which alert notices go out, and when. ``local_time`` turns the clock's
    unix time into local wall time for quiet hours (injectable for tests)."""

    def __init__(
        self,
        settings: NotificationSettings,
        route: Route,
        *,
        local_time: Callable[[float], dt.datetime] = dt.datetime.fromtimestamp,
    ) -> None:
        self.settings = settings
        self._route = route
        self._local_time = local_time
        self._groups: dict[str, _Group] = {}
        self._by_alert_id: dict[str, str] = {}  # alert id -> its group's key
        # Resolved notices held by quiet hours: at most ``queue_size``, what one channel's
        # queue takes when the window ends; the rest are counted in ``dropped_quiet``.
        self._held_resolved: list[Outgoing] = []
        self.suppressed = 0
        self.flapped = 0
        self.dropped_quiet = 0

    # -- questions ----------------------------------------------------------------------
    def quiet(self, now: float) -> bool:
        hours = self.settings.quiet_hours
        return hours is not None and hours.contains(self._local_time(now))

    @property
    def firing(self) -> int:
        return len(self._groups)

    def held(self, now: float) -> int:
        """Notices kept back by quiet hours right now."""
        waiting = sum(1 for g in self._groups.values() if g.due is not None and g.due <= now)
        return len(self._held_resolved) + (waiting if self.quiet(now) else 0)

    def next_due(self, now: float) -> float | None:
        """When something is next due, or None. Notices held by quiet hours do not count:
        they wait for the window to end, and the caller polls for that anyway."""
        quiet = self.quiet(now)
        times = []
        for group in self._groups.values():
            if group.due is not None:
                if not (quiet and group.due <= now):
                    times.append(group.due)
            elif group.notified_at is not None and not group.absorbed:
                times.append(group.notified_at + self.settings.repeat_interval)
        return min(times, default=None)

    # -- events -------------------------------------------------------------------------
    def on_firing(
        self,
        alert: Subject,
        now: float,
        notified_at: float | None = None,
        *,
        wait: float = 0.0,
        host: str | None = None,
    ) -> list[Outgoing]:
        """A firing alert, or an opened or updated incident (new, or seen again).
        ``notified_at`` is when people were told about it before a restart, if storage
        remembers; ``wait`` is the least time a first notice waits (``group_wait`` when
        longer); ``host``: the other host an alert is about."""
        key = group_key(alert, host)
        group = self._groups.get(key)
        if group is None:
            group = _Group(alert=alert, due=now + max(wait, self.settings.group_wait), host=host)
            if notified_at is not None and now - notified_at < self.settings.repeat_interval:
                group.due = None
                group.notified_at = notified_at
                group.told_rank = SEVERITY_RANK[alert.severity]
                group.told = set(self._route(alert.severity))
            self._add(key, group)
            return self.due(now)
        group.alert = alert
        if isinstance(alert, Alert):
            self._by_alert_id[alert.id] = key
        group.absorbed = False  # told alone again: out of any incident
        if group.notified_at is not None and SEVERITY_RANK[alert.severity] > group.told_rank:
            return self._send(group, "escalated", now)
        if group.due is not None and SEVERITY_RANK[alert.severity] > group.told_rank >= 0:
            group.pending_kind = "escalated"
        self.suppressed += 1
        return self.due(now)

    def on_escalated(
        self, alert: Subject, now: float, *, host: str | None = None
    ) -> list[Outgoing]:
        """The analyzer escalated the alert (it lasted, or remediation failed), or an
        alert of the incident was escalated."""
        key = group_key(alert, host)
        group = self._groups.get(key)
        if group is None:
            group = _Group(alert=alert, due=now, host=host)
            self._add(key, group)
        group.alert = alert
        if group.notified_at is None or group.due is not None:
            group.pending_kind, group.due = "escalated", now
            return self.due(now)
        if group.escalation_told:
            self.suppressed += 1
            return []
        group.escalation_told = True
        return self._send(group, "escalated", now)

    def on_resolved(self, alert: Subject, now: float, *, host: str | None = None) -> list[Outgoing]:
        group = self._pop(group_key(alert, host))
        if group is None:
            return []
        if group.notified_at is None:
            self.flapped += 1  # resolved before anyone was told: say nothing
            return []
        if not self.settings.send_resolved or not group.told:
            return []
        out = Outgoing(
            "resolved", alert, frozenset(group.told), told=group.told_item, host=group.host
        )
        woke_someone = group.told_rank >= SEVERITY_RANK[Severity.CRITICAL]
        if self.quiet(now) and not woke_someone:
            if self._hold() and len(self._held_resolved) < self.settings.queue_size:
                self._held_resolved.append(out)
            else:  # dropped, or past what a channel's queue could take when quiet ends
                self.dropped_quiet += 1
            return []
        return [out]

    def absorb(self, key: str) -> bool:
        """An alert is now told through its incident: a notice still waiting is dropped
        without a word (True); one people already heard keeps only its resolved notice,
        to close what they were told (no repeats, no escalations)."""
        group = self._groups.get(key)
        if group is None:
            return False
        if group.notified_at is None:
            self._pop(key)
            return True
        group.absorbed, group.due = True, None
        return False

    def absorb_alert(self, alert_id: str) -> bool:
        """:meth:`absorb` for the group of the alert with ``alert_id`` (a fleet incident
        names its hosts' alerts by id)."""
        key = self._by_alert_id.get(alert_id)
        return False if key is None else self.absorb(key)

    def due(self, now: float) -> list[Outgoing]:
        """Everything that should go out at ``now``: first notices after ``group_wait``,
        repeats, and whatever quiet hours held back once they are over."""
        out: list[Outgoing] = []
        if self._held_resolved and not self.quiet(now):
            out.extend(self._held_resolved)
            self._held_resolved.clear()
        repeat = self.settings.repeat_interval
        for group in self._groups.values():
            if group.due is not None:
                if group.due <= now:
                    out.extend(self._send(group, group.pending_kind, now))
            elif group.absorbed:
                continue
            elif group.notified_at is not None and now - group.notified_at >= repeat:
                out.extend(self._send(group, "repeat", now))
        return out

    # -- internals ----------------------------------------------------------------------
    def _add(self, key: str, group: _Group) -> None:
        self._groups[key] = group
        if isinstance(group.alert, Alert):
            self._by_alert_id[group.alert.id] = key

    def _pop(self, key: str) -> _Group | None:
        group = self._groups.pop(key, None)
        alert = group.alert if group is not None else None
        if isinstance(alert, Alert) and self._by_alert_id.get(alert.id) == key:
            del self._by_alert_id[alert.id]
        return group

    def _hold(self) -> bool:
        hours = self.settings.quiet_hours
        return hours is not None and hours.mode == "hold"

    def _mark(self, group: _Group, channels: frozenset[str], now: float) -> None:
        group.due = None
        group.pending_kind = "firing"
        group.notified_at = now
        group.told_rank = max(group.told_rank, SEVERITY_RANK[group.alert.severity])
        group.told_item = group.alert
        group.told |= channels

    def _send(self, group: _Group, kind: NoticeKind, now: float) -> list[Outgoing]:
        severity = group.alert.severity
        channels = self._route(severity)
        if severity is not Severity.CRITICAL and self.quiet(now):
            if self._hold():
                if group.due is None or group.due > now:  # keep it; due() retries later
                    group.due, group.pending_kind = now, kind
                return []
            self.dropped_quiet += 1
            self._mark(group, frozenset(), now)
            return []
        self._mark(group, channels, now)
        if kind == "escalated" and isinstance(group.alert, Alert):
            group.escalation_told = group.escalation_told or group.alert.escalated
        return [Outgoing(kind, group.alert, channels, host=group.host)]


class IncidentBook:
    """Which alerts belong to an open incident, so they are told through it, not alone.

    While incidents are ``expected`` (from the start when the caller knows the analyzer
    groups its alerts, else from the first incident message), an alert above info that
    arrives alone waits at least ``grace`` seconds for the incident it will belong to
    before it is told on its own: the analyzer publishes an incident just after the
    alerts it groups. This host's alerts are members by fingerprint; another host's (a
    central host tells them) by ``<host>/<alert id>``, their group's key.
    """

    def __init__(self, grace: float = 2.0, *, expected: bool = False) -> None:
        self.grace = grace
        self.expected = expected
        self._open: dict[str, Incident] = {}
        self._member_of: dict[str, str] = {}
        #: another host's open incident (its group key) -> its firing alerts' ids
        self._remote: dict[str, list[str]] = {}

    def __len__(self) -> int:
        return len(self._open)

    def remote_firing(self) -> list[tuple[str, list[str]]]:
        """Other hosts' open incidents: (group key, the ids of their firing alerts)."""
        return list(self._remote.items())

    @staticmethod
    def member_key(alert: Alert, host: str | None = None) -> str:
        """How an alert is named as a member: its fingerprint, ``<host>/<id>`` remotely."""
        return alert.fingerprint if host is None else f"{host}/{alert.id}"

    def holding(self, member: str) -> Incident | None:
        """The open incident the alert named ``member`` (:meth:`member_key`) belongs to."""
        incident_key = self._member_of.get(member)
        return None if incident_key is None else self._open.get(incident_key)

    def wait_for(self, alert: Alert) -> float:
        """How long a lone alert's first notice waits at least for its incident."""
        above_info = SEVERITY_RANK[alert.severity] > SEVERITY_RANK[Severity.INFO]
        return self.grace if self.expected and above_info else 0.0

    def update(self, incident: Incident, *, resolved: bool, host: str | None = None) -> list[str]:
        """Take an incident (of ``host``, another host's) as it is now; returns its
        members' keys (the keys of their groups)."""
        self.expected = True
        key = group_key(incident, host)
        for member in [m for m, i in self._member_of.items() if i == key]:
            del self._member_of[member]
        if host is None:
            members = incident.fingerprints
        else:
            members = [f"{host}/{alert_id}" for alert_id in incident.alert_ids]
        if resolved:
            self._open.pop(key, None)
            self._remote.pop(key, None)
            return members
        self._open[key] = incident
        for member in members:
            self._member_of[member] = key
        if host is not None:
            self._remote[key] = [m.alert_id for m in incident.members if m.firing]
        return members


def fleet_key_of(alert: Alert) -> str:
    """The key a fleet incident about this alert carries (rule and subject, cleaned)."""
    return clean(f"{alert.rule}:{alert.subject}", NOTIFICATION)


class FleetBook:
    """Which hosts' alerts belong to an open fleet incident, so they are told through it.

    An alert is named by its id (every host's alert ids are its own). A host's alert that
    fires while a fleet incident about the same rule and subject is open waits ``grace``
    seconds for the fleet view to add it, rather than going out alone.
    """

    def __init__(self, grace: float = 2.0) -> None:
        self.grace = grace
        self._open: dict[str, FleetIncident] = {}
        self._member_of: dict[str, str] = {}
        self._keys: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._open)

    def holding(self, alert_id: str) -> FleetIncident | None:
        """The open fleet incident the alert with ``alert_id`` is part of, if any."""
        found = self._member_of.get(alert_id)
        return None if found is None else self._open.get(found)

    def wait_for(self, alert: Alert) -> float:
        return self.grace if fleet_key_of(alert) in self._keys else 0.0

    def wait_for_incident(self, incident: Incident) -> float:
        """:meth:`wait_for` for another host's incident: the grace when one of its alerts
        is about the rule and subject of an open fleet incident."""
        keys = (clean(f"{m.rule}:{m.subject}", NOTIFICATION) for m in incident.members)
        return self.grace if any(key in self._keys for key in keys) else 0.0

    def holds_all(self, alert_ids: list[str]) -> bool:
        """Whether every one of these alerts is part of an open fleet incident."""
        return bool(alert_ids) and all(self.holding(a) is not None for a in alert_ids)

    def update(self, incident: FleetIncident, *, resolved: bool) -> list[str]:
        """Take a fleet incident as it is now; the ids of the alerts firing in it."""
        for alert_id in [a for a, i in self._member_of.items() if i == incident.id]:
            del self._member_of[alert_id]
        members = [h.alert_id for h in incident.hosts if h.firing]
        if resolved:
            self._open.pop(incident.id, None)
            if self._keys.get(incident.key) == incident.id:
                del self._keys[incident.key]
            return members
        self._open[incident.id] = incident
        self._keys[incident.key] = incident.id
        for alert_id in members:
            self._member_of[alert_id] = incident.id
        return members
