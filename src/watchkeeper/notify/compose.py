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
from watchkeeper.model.text import NOTIFICATION, clean
from watchkeeper.notify.base import NoticeKind, Notification

__all__ = ["alert_notice", "event_notice", "human_duration"]

_VERBS: dict[str, str] = {
    "firing": "FIRING",
    "repeat": "STILL FIRING",
    "escalated": "ESCALATED",
    "resolved": "RESOLVED",
}


def _clock(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _evidence(evidence: dict[str, Any], limit: int = 6) -> str:
    parts = []
    for key, value in list(evidence.items())[:limit]:
        shown = f"{value:.4g}" if isinstance(value, float) else clean(str(value), NOTIFICATION, 60)
        parts.append(f"{clean(key, NOTIFICATION, 60)}={shown}")
    return ", ".join(parts)


def alert_notice(alert: Alert, kind: NoticeKind, *, host: str, now: float) -> Notification:
    """The notice for one step of an alert's life (``firing``, ``repeat``, ...)."""
    verb = _VERBS.get(kind, kind.upper())
    subject = clean(alert.subject, NOTIFICATION, 120)
    title = clean(
        f"{verb} {alert.severity.value} {alert.rule} on {subject}: {alert.summary}", NOTIFICATION
    )
    lines = [clean(alert.summary, NOTIFICATION, 1000), ""]
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
    if alert.evidence:
        lines.append(f"Evidence: {_evidence(alert.evidence)}")
    for action in alert.suggested_actions[:3]:
        target = f" {clean(action.target, NOTIFICATION, 80)}" if action.target else ""
        reason = f" ({clean(action.reason, NOTIFICATION, 120)})" if action.reason else ""
        lines.append(f"Suggested: {action.action}{target}{reason}")
    lines.append(f"Fingerprint: {alert.fingerprint}")
    return Notification(
        kind=kind,
        key=alert.fingerprint,
        severity=alert.severity,
        title=title,
        body="\n".join(lines),
        host=host,
        created_at=now,
        alert=alert,
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
