"""Turning alerts and events into notices people read: plain words, facts first.

Notices are deliberately plain whatever the personality: they end up on pagers and in
mailboxes, where a joke at 3 a.m. helps nobody. Text from the host (process names,
subjects, summaries) is stripped of control characters before it goes anywhere.
"""

from __future__ import annotations

import time
from typing import Any

from watchkeeper.humanize import human_duration
from watchkeeper.model.alerts import Alert, Severity
from watchkeeper.model.fleet import FleetIncident
from watchkeeper.model.incidents import Incident, IncidentMember
from watchkeeper.model.text import NOTIFICATION, clean
from watchkeeper.notify.base import NoticeKind, Notification

__all__ = [
    "alert_notice",
    "event_notice",
    "fleet_incident_notice",
    "human_duration",
    "incident_notice",
]

_VERBS: dict[str, str] = {
    "firing": "FIRING",
    "repeat": "STILL FIRING",
    "escalated": "ESCALATED",
    "resolved": "RESOLVED",
}


_LOG_LINES_SHOWN = 10


def _clock(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _evidence(evidence: dict[str, Any], limit: int = 6) -> str:
    parts = []
    for key, value in list(evidence.items())[:limit]:
        shown = f"{value:.4g}" if isinstance(value, float) else clean(str(value), NOTIFICATION, 60)
        parts.append(f"{clean(key, NOTIFICATION, 60)}={shown}")
    return ", ".join(parts)


def _journal(logged: Any, limit: int = _LOG_LINES_SHOWN) -> list[str]:
    """A failed service's last log lines (its journal, or its captured stderr), one a
    line, cleaned, the last ``limit`` of them."""
    if not isinstance(logged, list) or not logged:
        return []
    return [
        "Last log lines:",
        *(f"  {clean(str(line), NOTIFICATION, 200)}" for line in logged[-limit:]),
    ]


def alert_notice(
    alert: Alert, kind: NoticeKind, *, host: str, now: float, name_host: bool = False
) -> Notification:
    """The notice for one step of an alert's life (``firing``, ``repeat``, ...).
    ``name_host``: the alert is another host's (told by a central host), so its title
    begins with that host and its key carries it."""
    verb = _VERBS.get(kind, kind.upper())
    subject = clean(alert.subject, NOTIFICATION, 120)
    where = f"{clean(host, NOTIFICATION, 64)}: " if name_host else ""
    title = clean(
        f"{where}{verb} {alert.severity.value} {alert.rule} on {subject}: {alert.summary}",
        NOTIFICATION,
    )
    lines = [clean(alert.summary, NOTIFICATION, 1000), ""]
    if name_host:
        lines.append(f"Host: {clean(host, NOTIFICATION, 64)}")
    lines.append(f"Severity: {alert.severity.value}   Rule: {alert.rule}   Subject: {subject}")
    if kind == "resolved":
        ended = alert.resolved_at or now
        lines.append(
            f"Resolved at {_clock(ended)} after {human_duration(ended - alert.started_at)}."
        )
    else:
        lines.append(
            f"Firing since {_clock(alert.started_at)} "
            f"({human_duration(now - alert.started_at)} so far)."
        )
    shown = {k: v for k, v in alert.evidence.items() if k != "journal"}
    if shown:
        lines.append(f"Evidence: {_evidence(shown)}")
    lines.extend(_journal(alert.evidence.get("journal")))
    for action in alert.suggested_actions[:3]:
        target = f" {clean(action.target, NOTIFICATION, 80)}" if action.target else ""
        reason = f" ({clean(action.reason, NOTIFICATION, 120)})" if action.reason else ""
        lines.append(f"Suggested: {action.action}{target}{reason}")
    lines.append(f"Fingerprint: {alert.fingerprint}")
    return Notification(
        kind=kind,
        key=f"{host}/{alert.fingerprint}" if name_host else alert.fingerprint,
        severity=alert.severity,
        title=title,
        body="\n".join(lines),
        host=host,
        created_at=now,
        alert=alert,
    )


_INCIDENT_VERBS: dict[str, str] = {
    "firing": "INCIDENT",
    "repeat": "STILL OPEN",
    "escalated": "WORSE",
    "resolved": "RESOLVED",
}
_ROLE_ORDER = {"root": 0, "effect": 1}
#: Members and remedies listed in a notice; the rest are counted.
_MEMBERS_SHOWN = 12
_REMEDIES_SHOWN = 5


def _members_root_first(incident: Incident) -> list[IncidentMember]:
    def rank(member: IncidentMember) -> int:
        if member.fingerprint == incident.root or member.role == "root":
            return 0
        return 1 + _ROLE_ORDER.get(member.role, 1)

    return sorted(incident.members, key=rank)


def incident_notice(
    incident: Incident,
    kind: NoticeKind,
    *,
    host: str,
    now: float,
    told: Incident | None = None,
    link: str | None = None,
) -> Notification:
    """The notice for one step of an incident (``firing`` is its opening): the title, the
    probable root cause, every alert in it (root first) and the remedies, root first.

    ``told`` is the incident as people last heard of it: a resolved notice is headed by
    that (an incident whose alerts cleared one by one ends smaller than it began).
    ``link`` is the incident's page on the dashboard: the body's last line says it and
    ``details["url"]`` carries it, so every channel (mail, chat, webhook, pager) has it."""
    verb = _INCIDENT_VERBS.get(kind, kind.upper())
    headline = told if kind == "resolved" and told is not None else incident
    title_text = clean(headline.title, NOTIFICATION, 200)
    count = len(headline.members)
    title = clean(
        f"{verb} {headline.severity.value}: {title_text} "
        f"({count} alert{'' if count == 1 else 's'})",
        NOTIFICATION,
    )
    lines = [title_text, ""]
    if headline.title != incident.title:
        lines.append(f"Last seen as: {clean(incident.title, NOTIFICATION, 200)}")
    if headline.root_cause:
        sure = f" (confidence {headline.confidence:.0%})" if headline.confidence else ""
        cause = clean(headline.root_cause, NOTIFICATION, 300)
        lines.append(f"Probable root cause: {cause}{sure}")
    else:
        lines.append("Root cause: not determined; the alerts below are related.")
    lines.append(f"Severity: {headline.severity.value}   Alerts: {count}")
    if kind == "resolved":
        ended = incident.resolved_at or now
        lines.append(
            f"Resolved at {_clock(ended)} after {human_duration(ended - incident.opened_at)}."
        )
    else:
        lines.append(
            f"Open since {_clock(incident.opened_at)} "
            f"({human_duration(now - incident.opened_at)} so far)."
        )
    if incident.flapping or incident.flaps:
        lines.append(f"Flapping: {incident.flaps} state changes in the flap window.")
    members = _members_root_first(headline)
    if members:
        lines.append("Alerts:")
    for member in members[:_MEMBERS_SHOWN]:
        role = "root" if member.fingerprint == headline.root else member.role
        state = "" if member.firing else " (cleared)"
        lines.append(
            f"  [{clean(role, NOTIFICATION, 20)}] {member.severity.value} "
            f"{clean(member.rule, NOTIFICATION, 60)} on {clean(member.subject, NOTIFICATION, 120)}"
            f": {clean(member.summary, NOTIFICATION, 240)}{state}"
        )
    if len(members) > _MEMBERS_SHOWN:
        lines.append(f"  … and {len(members) - _MEMBERS_SHOWN} more")
    if incident.remedies and kind != "resolved":
        lines.append("Remedies (root cause first):")
    for number, action in enumerate(incident.remedies[:_REMEDIES_SHOWN], 1):
        if kind == "resolved":
            break
        target = f" {clean(action.target, NOTIFICATION, 80)}" if action.target else ""
        reason = f" ({clean(action.reason, NOTIFICATION, 120)})" if action.reason else ""
        lines.append(f"  {number}. {clean(action.action, NOTIFICATION, 60)}{target}{reason}")
    lines.append(f"Incident: {clean(incident.id, NOTIFICATION, 64)}")
    details: dict[str, Any] = {}
    if link:
        details["url"] = link
        lines.append(f"Details: {link}")
    return Notification(
        kind=kind,
        key=f"incident:{incident.id}",
        severity=headline.severity,
        title=title,
        body="\n".join(lines),
        host=host,
        created_at=now,
        incident=incident,
        details=details,
    )


_FLEET_VERBS: dict[str, str] = {
    "firing": "FLEET INCIDENT",
    "repeat": "FLEET STILL OPEN",
    "escalated": "FLEET WORSE",
    "resolved": "FLEET RESOLVED",
}
#: Hosts listed in a fleet notice; the rest are counted.
_HOSTS_SHOWN = 20


def fleet_incident_notice(
    incident: FleetIncident,
    kind: NoticeKind,
    *,
    host: str,
    now: float,
    told: FleetIncident | None = None,
) -> Notification:
    """The one notice for the same alert on many hosts ("7 hosts: disk usage on /var/log
    since 14:05"), with every host in it; ``told`` heads a resolved notice as above."""
    verb = _FLEET_VERBS.get(kind, kind.upper())
    headline = told if kind == "resolved" and told is not None else incident
    title_text = clean(headline.title, NOTIFICATION, 200)
    title = clean(f"{verb} {headline.severity.value}: {title_text}", NOTIFICATION)
    firing = [h for h in incident.hosts if h.firing]
    lines = [title_text, ""]
    lines.append(
        f"Severity: {headline.severity.value}   Rule: {clean(incident.rule, NOTIFICATION, 60)}"
        f"   Subject: {clean(incident.subject, NOTIFICATION, 120)}"
    )
    if kind == "resolved":
        ended = incident.resolved_at or now
        lines.append(f"Resolved at {_clock(ended)} after {human_duration(ended - incident.since)}.")
    else:
        lines.append(
            f"Since {_clock(incident.since)} on {len(firing)} host"
            f"{'' if len(firing) == 1 else 's'} ({human_duration(now - incident.since)} so far)."
        )
    shown = headline.hosts[:_HOSTS_SHOWN]
    if shown:
        lines.append("Hosts:")
    for member in shown:
        state = "" if member.firing else " (cleared)"
        lines.append(
            f"  {clean(member.host, NOTIFICATION, 64)}: {member.severity.value} "
            f"{clean(member.summary, NOTIFICATION, 200)}{state}"
        )
    if len(headline.hosts) > _HOSTS_SHOWN:
        lines.append(f"  … and {len(headline.hosts) - _HOSTS_SHOWN} more")
    lines.append(f"Fleet incident: {clean(incident.id, NOTIFICATION, 64)}")
    return Notification(
        kind=kind,
        key=f"fleet:{incident.id}",
        severity=headline.severity,
        title=title,
        body="\n".join(lines),
        host=host,
        created_at=now,
        fleet_incident=incident,
    )


def event_notice(
    key: str,
    severity: Severity,
    title: str,
    body: str,
    *,
    host: str,
    now: float,
    details: dict[str, Any] | None = None,
) -> Notification:
    """A one-off notice that is not an alert (a failed remediation, a crash-looping agent)."""
    return Notification(
        kind="event",
        key=key,
        severity=severity,
        title=clean(title, NOTIFICATION),
        body=str(body)[:4000],
        host=host,
        created_at=now,
        details=dict(details or {}),
    )
