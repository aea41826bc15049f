"""Fleet incidents: the same alert on many hosts is one problem, :class:`FleetJudge`.

An alert's *key* is its rule and subject without the host (``disk_usage`` on ``/var/log``).
When at least ``[fleet] incident_min_hosts`` hosts fire the same key and their alerts began
within ``incident_window`` seconds of each other, the judge opens one
:class:`FleetIncident` ("7 hosts: disk usage on /var/log since 14:05"). Later hosts with
the same alert join it whenever they begin; hosts whose alert resolves leave it; it is
resolved when no host fires it any more (so it does not flap open and shut around the
threshold)::

    judge = FleetJudge(settings.fleet)
    for kind, incident in judge.observe("web-1", alert, "alert.firing", now):
        ...                                   # ("opened", FleetIncident) at the Nth host
    for kind, incident in judge.flush(now):   # ("updated", ...) at most once a flush
        ...

Opening and resolving are reported at once; joins and leaves are gathered and reported by
:meth:`FleetJudge.flush`, so a thousand hosts joining in a second is one update, not a
thousand ever-longer ones. Rule, subject and summaries come from other hosts: they are
cleaned before they reach a title.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Literal

from watchkeeper.config.fleet import FleetSettings
from watchkeeper.model.alerts import SEVERITY_RANK, Alert, AlertState, Severity
from watchkeeper.model.fleet import FleetIncident, FleetIncidentHost
from watchkeeper.model.text import LABEL, NOTIFICATION, clean

__all__ = [
    "MAX_LEFT_HOSTS",
    "MAX_OPEN_KEYS",
    "MAX_PER_HOST",
    "Change",
    "FleetJudge",
    "fleet_key",
    "title_of",
]

Change = tuple[Literal["opened", "updated", "resolved"], FleetIncident]
#: Hosts that left an open incident, still listed (``firing=False``), at most.
MAX_LEFT_HOSTS = 100
#: Alert keys followed at once (each a rule and subject firing somewhere); past this the
#: keys firing on the fewest hosts are forgotten first.
MAX_OPEN_KEYS = 50_000
#: Firing alerts followed per host: a host that floods distinct subjects cannot push the
#: others' alerts out; its alerts past this are ignored (and counted) until some resolve.
MAX_PER_HOST = 200


def fleet_key(alert: Alert) -> str:
    """What the same alert on many hosts shares: ``"disk_usage:/var/log"``."""
    return f"{alert.rule}:{alert.subject}"


def _clock(at: float) -> str:
    return time.strftime("%H:%M", time.localtime(at))


def title_of(count: int, rule: str, subject: str, since: float) -> str:
    """``"7 hosts: disk usage on /var/log since 14:05"`` (rule and subject cleaned)."""
    words = clean(rule.replace("_", " "), LABEL)
    return f"{count} hosts: {words} on {clean(subject, LABEL)} since {_clock(since)}"


@dataclass(slots=True)
class _Member:
    alert: Alert
    firing: bool = True
    shown: FleetIncidentHost | None = None  # built once per change, not once per update

    def row(self, host: str) -> FleetIncidentHost:
        shown = self.shown
        if shown is None or shown.firing != self.firing or shown.severity != self.alert.severity:
            shown = self.shown = FleetIncidentHost(
                host=host,
                alert_id=self.alert.id[:128],
                severity=self.alert.severity,
                summary=clean(self.alert.summary, NOTIFICATION),
                since=self.alert.started_at,
                firing=self.firing,
            )
        return shown


@dataclass(slots=True)
class _Group:
    key: str
    rule: str
    subject: str
    members: dict[str, _Member] = field(default_factory=dict)
    incident: FleetIncident | None = None
    dirty: bool = False
    count: int = 0  # members firing

    def firing(self) -> list[tuple[str, Alert]]:
        return [(host, m.alert) for host, m in self.members.items() if m.firing]


class FleetJudge:
    """Groups alerts of many hosts by key and opens, updates and resolves fleet incidents."""

    def __init__(self, settings: FleetSettings | None = None) -> None:
        self._settings = settings or FleetSettings()
        self._groups: dict[str, _Group] = {}
        self.opened = 0
        self.resolved = 0
        self.forgotten = 0
        self.ignored = 0
        self._per_host: dict[str, int] = {}

    def _count(self, host: str, step: int) -> None:
        left = self._per_host.get(host, 0) + step
        if left > 0:
            self._per_host[host] = left
        else:
            self._per_host.pop(host, None)

    def configure(self, settings: FleetSettings) -> None:
        self._settings = settings

    def observe(self, host: str, alert: Alert, topic: str, now: float) -> list[Change]:
        """One ``alert.*`` message about ``host``: what opened or resolved because of it."""
        key = fleet_key(alert)
        resolved = topic.endswith(".resolved") or alert.state is AlertState.RESOLVED
        group = self._groups.get(key)
        member = group.members.get(host) if group is not None else None
        joins = not resolved and (member is None or not member.firing)
        if joins and self._per_host.get(host, 0) >= MAX_PER_HOST:
            self.ignored += 1
            return []
        if group is None:
            if resolved:
                return []
            if len(self._groups) >= MAX_OPEN_KEYS:
                self._forget_smallest()
            group = self._groups[key] = _Group(key=key, rule=alert.rule, subject=alert.subject)
        if resolved:
            if member is None or not member.firing:
                return []
            member.firing = False
            member.alert = alert
            group.count -= 1
            self._count(host, -1)
        elif joins:
            group.members.pop(host, None)
            group.members[host] = _Member(alert)
            group.count += 1
            self._count(host, 1)
        elif member is not None:  # firing already: only a new severity is news
            old = member.alert
            member.alert = alert
            if old.severity == alert.severity:
                return []
        return self._judge(group, now)

    def drop_host(self, host: str, now: float) -> list[Change]:
        """``host`` stopped: its alerts no longer fire anywhere."""
        changes: list[Change] = []
        for group in list(self._groups.values()):
            member = group.members.get(host)
            if member is not None and member.firing:
                member.firing = False
                group.count -= 1
                self._count(host, -1)
                changes.extend(self._judge(group, now))
        return changes

    def _judge(self, group: _Group, now: float) -> list[Change]:
        incident = group.incident
        if incident is not None and group.count > 0:
            group.dirty = True
            return []
        firing = group.firing()
        if incident is None:
            if not firing:
                del self._groups[group.key]
                return []
            if not self._enough(firing):
                return []
            incident = self._build(group, firing, now, opened_at=now, incident_id=None)
            group.incident = incident
            group.dirty = False
            self.opened += 1
            return [("opened", incident)]
        done = self._build(
            group, firing, now, opened_at=incident.opened_at, incident_id=incident.id, resolved=True
        )
        del self._groups[group.key]
        self.resolved += 1
        return [("resolved", done)]

    def _enough(self, firing: list[tuple[str, Alert]]) -> bool:
        """At least N hosts whose alerts began within the window of each other."""
        need = self._settings.incident_min_hosts
        if len(firing) < need:
            return False
        window = self._settings.incident_window
        starts = sorted(alert.started_at for _, alert in firing)
        return any(
            starts[index + need - 1] - starts[index] <= window
            for index in range(len(starts) - need + 1)
        )

    def flush(self, now: float) -> list[Change]:
        """The open incidents whose hosts or severity changed since the last flush."""
        changes: list[Change] = []
        for group in self._groups.values():
            if not group.dirty or group.incident is None:
                continue
            group.dirty = False
            old = group.incident
            new = self._build(
                group, group.firing(), now, opened_at=old.opened_at, incident_id=old.id
            )
            if _hosts_of(new) != _hosts_of(old) or new.severity != old.severity:
                group.incident = new
                changes.append(("updated", new))
        # Hosts that left long ago and never came back: keep the list short.
        for group in self._groups.values():
            left = [host for host, m in group.members.items() if not m.firing]
            for host in left[: max(0, len(left) - MAX_LEFT_HOSTS)]:
                del group.members[host]
        return changes

    def _build(
        self,
        group: _Group,
        firing: list[tuple[str, Alert]],
        now: float,
        *,
        opened_at: float,
        incident_id: str | None,
        resolved: bool = False,
    ) -> FleetIncident:
        alerts = [alert for _, alert in firing] or [m.alert for m in group.members.values()]
        since = min(alert.started_at for alert in alerts)
        worst = max((alert.severity for alert in alerts), key=SEVERITY_RANK.__getitem__)
        if incident_id is None:
            digest = hashlib.sha256(f"{group.key}\x00{since:.3f}".encode()).hexdigest()
            incident_id = f"fleet-{digest[:16]}"
        hosts = [member.row(host) for host, member in group.members.items()]
        hosts.sort(key=lambda item: (not item.firing, item.host))
        count = len(firing) if firing else len(hosts)
        return FleetIncident(
            id=incident_id,
            key=clean(group.key, NOTIFICATION),
            rule=clean(group.rule, LABEL),
            subject=clean(group.subject, LABEL),
            title=title_of(count, group.rule, group.subject, since),
            severity=worst,
            state="resolved" if resolved else "open",
            hosts=hosts,
            opened_at=opened_at,
            updated_at=now,
            resolved_at=now if resolved else None,
            since=since,
        )

    def _forget_smallest(self) -> None:
        unopened = [g for g in self._groups.values() if g.incident is None]
        unopened.sort(key=lambda g: len(g.members))
        for group in unopened[: max(1, len(unopened) // 10)]:
            del self._groups[group.key]
            self.forgotten += 1
            for host, member in group.members.items():
                if member.firing:
                    self._count(host, -1)

    def open_incidents(self) -> list[FleetIncident]:
        return [g.incident for g in self._groups.values() if g.incident is not None]

    def stats(self) -> dict[str, int]:
        return {
            "keys": len(self._groups),
            "open": sum(1 for g in self._groups.values() if g.incident is not None),
            "opened": self.opened,
            "resolved": self.resolved,
            "forgotten": self.forgotten,
            "ignored": self.ignored,
        }


def _hosts_of(incident: FleetIncident) -> list[tuple[str, bool, Severity]]:
    return [(item.host, item.firing, item.severity) for item in incident.hosts]
