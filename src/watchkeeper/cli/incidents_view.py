"""How incidents look in a terminal: one block per incident, its root cause, the alerts
in it (root first) and its remedies (root first). Like the other views, each function
turns one endpoint's model into a rich renderable and nothing else::

    console.print(incidents_view(IncidentsReply.model_validate(data), now=time.time()))

Everything from the host (titles, subjects, summaries, targets) goes through ``plain``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from watchkeeper.cli._format import DASH, ago, clock, duration, new_table, plain, severity_style

if TYPE_CHECKING:
    from watchkeeper.model.alerts import Alert
    from watchkeeper.model.incidents import Incident, IncidentMember
    from watchkeeper.web.responses import IncidentDetail, IncidentsReply

__all__ = ["incident_block", "incident_detail_view", "incidents_view", "journal_block"]

_ROLE_STYLE = {"root": "bold red", "effect": "yellow"}


def _role(incident: Incident, member: IncidentMember) -> str:
    return "root" if member.fingerprint == incident.root else member.role


def _members_root_first(incident: Incident) -> list[IncidentMember]:
    rank = {"root": 0, "effect": 1}
    return sorted(incident.members, key=lambda m: rank.get(_role(incident, m), 2))


def incident_block(incident: Incident, now: float, *, members: int = 12) -> RenderableType:
    """One incident: the headline, the probable cause, its alerts and remedies."""
    severity = str(incident.severity)
    head = Text()
    head.append_text(plain(severity.upper(), severity_style(severity)))
    head.append("  ")
    head.append_text(plain(incident.title, "bold"))
    resolved = incident.resolved_at is not None
    when = (
        f"resolved {ago(incident.resolved_at, now)}"
        if resolved
        else f"open for {duration(now - incident.opened_at)}"
    )
    head.append(f"  ({when}; id {incident.id[:12]})", style="dim")
    if incident.flapping or incident.flaps:
        head.append(f"  flapping ×{incident.flaps}", style="bold yellow")
    parts: list[RenderableType] = [head]
    cause = Text("  Probable cause: ", style="dim")
    if incident.root_cause:
        cause.append_text(plain(incident.root_cause))
        if incident.confidence:
            cause.append(f" (confidence {incident.confidence:.0%})", style="dim")
    else:
        cause.append("none found; the alerts are related", style="dim")
    parts.append(cause)
    grid = Table.grid(padding=(0, 1))
    for _ in range(4):
        grid.add_column(no_wrap=True)
    grid.add_column()
    shown = _members_root_first(incident)
    for member in shown[:members]:
        role = _role(incident, member)
        member_severity = str(member.severity)
        what = plain(member.summary, limit=160)
        if not member.firing:
            what.append(" (cleared)", style="dim")
        grid.add_row(
            Text("   "),
            plain(role, _ROLE_STYLE.get(role, "dim")),
            plain(member_severity, severity_style(member_severity)),
            plain(f"{member.rule} on {member.subject}", "cyan", limit=60),
            what,
        )
    parts.append(grid)
    if len(shown) > members:
        parts.append(Text(f"    … and {len(shown) - members} more alerts", style="dim"))
    if incident.remedies:
        line = Text("  Remedies, root cause first: ", style="dim")
        for number, action in enumerate(incident.remedies[:5], 1):
            if number > 1:
                line.append("  ")
            line.append(f"{number}. ")
            line.append_text(plain(action.action, "cyan"))
            if action.target:
                line.append(" ")
                line.append_text(plain(action.target, limit=60))
        parts.append(line)
    return Group(*parts)


def incidents_view(body: IncidentsReply, now: float) -> RenderableType:
    """``watchkeeper incidents``: open incidents, worst first (and past ones with --all)."""
    if not body.analyzer and not body.incidents:
        return Text("The analyzer is not running, so nothing raises incidents.", style="yellow")
    open_now = [i for i in body.incidents if i.resolved_at is None]
    past = [i for i in body.incidents if i.resolved_at is not None]
    out: list[RenderableType] = []
    if body.state != "resolved":
        if open_now:
            counts = ", ".join(f"{n} {sev}" for sev, n in body.counts.items() if n)
            out.append(Text(f"Open incidents ({counts})", style="bold"))
            for incident in open_now:
                out.extend([incident_block(incident, now), Text("")])
        else:
            out.append(Text("No open incidents. All quiet.", style="green"))
    if past:
        table = new_table(
            "Past incidents",
            [
                ("Opened", "key"),
                ("Severity", "key"),
                ("Alerts", "num"),
                ("Lasted", "key"),
                ("Title", "text"),
            ],
        )
        for incident in past:
            severity = str(incident.severity)
            ended = incident.resolved_at
            table.add_row(
                Text(clock(incident.opened_at)),
                plain(severity, severity_style(severity)),
                Text(str(len(incident.members))),
                Text(DASH if ended is None else duration(ended - incident.opened_at)),
                plain(incident.title, limit=120),
            )
        out.append(table)
    elif body.state != "open":
        out.append(Text("No past incidents stored.", style="dim"))
    if body.history_unavailable:
        out.append(plain(body.history_unavailable, "yellow"))
    return Group(*out)


def journal_block(alert: Alert, *, lines: int = 20) -> RenderableType | None:
    """The last log lines a failed service wrote (its journal or captured stderr), from
    the alert's evidence; ``None`` when it has none. Each line is shown literally."""
    logged = alert.evidence.get("journal")
    if not isinstance(logged, list) or not logged:
        return None
    head = Text("  Last log lines of ", style="dim")
    head.append_text(plain(alert.subject, "cyan", limit=60))
    head.append(":", style="dim")
    shown = [Text("    ").append_text(plain(line, limit=200)) for line in logged[-lines:]]
    return Group(head, *shown)


def incident_detail_view(body: IncidentDetail, now: float) -> RenderableType:
    """``watchkeeper incidents ID``: the incident, its alerts in full, what was done."""
    parts: list[RenderableType] = [incident_block(body.incident, now, members=50)]
    if body.members:
        alerts = new_table(
            "Alerts",
            [("Since", "key"), ("Severity", "key"), ("Subject", "key"), ("Summary", "text")],
        )
        for alert in body.members:
            severity = str(alert.severity)
            alerts.add_row(
                Text(clock(alert.started_at)),
                plain(severity, severity_style(severity)),
                plain(alert.subject, limit=30),
                plain(alert.summary, limit=300),
            )
        parts.append(alerts)
        logged: set[str] = set()
        for alert in body.members:
            block = journal_block(alert)
            if block is not None and alert.subject not in logged:
                logged.add(alert.subject)  # a service's alerts share its one journal
                parts.append(block)
    if body.actions:
        done = new_table(
            "Actions taken",
            [("When", "key"), ("Action", "key"), ("Target", "key"), ("Outcome", "key")],
        )
        for record in body.actions:
            done.add_row(
                Text(clock(record.created_at)),
                plain(record.action, "cyan"),
                plain(record.target, limit=40),
                plain(str(record.outcome)),
            )
        parts.append(done)
    if body.history_unavailable:
        parts.append(plain(body.history_unavailable, "yellow"))
    return Group(*parts)
