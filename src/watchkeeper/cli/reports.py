"""How the team's conclusions look in a terminal: alerts, analyses and remediation.

Like :mod:`watchkeeper.cli.views`, each function turns one endpoint's model into a rich
renderable and does nothing else::

    console.print(remediation_view(RemediationReply.model_validate(data), now=time.time()))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from watchkeeper.cli._format import (
    DASH,
    ago,
    clock,
    kv_grid,
    new_table,
    plain,
    severity_style,
    state_style,
)
from watchkeeper.web.responses import LiveRates

if TYPE_CHECKING:
    from watchkeeper.model.actions import ActionInfo, ActionRecord
    from watchkeeper.model.alerts import Alert
    from watchkeeper.model.analysis import AnalysisResult
    from watchkeeper.web.responses import (
        AlertsReply,
        AnalysisReply,
        IncidentsReply,
        RemediationReply,
    )

__all__ = ["alerts_table", "analysis_view", "remediation_view"]


def _suggested(alert: Alert) -> Text:
    items = [f"{s.action}{f' {s.target}' if s.target else ''}" for s in alert.suggested_actions]
    return plain(", ".join(items) or None, "cyan", limit=120)


# -- alerts and analysis ----------------------------------------------------------------------
def alerts_table(body: AlertsReply, now: float, *, limit: int = 50) -> RenderableType:
    """``watchkeeper alerts``: what is firing now, worst first."""
    if not body.analyzer:
        return Text("The analyzer is not running, so nothing raises alerts.", style="yellow")
    firing = body.firing
    if not firing:
        out: list[RenderableType] = [Text("No alerts firing. All quiet.", style="green")]
    else:
        summary = ", ".join(f"{n} {sev}" for sev, n in body.counts.items() if n)
        table = new_table(
            Text(f"Firing alerts ({summary})"),
            [("Severity", "key"), ("Subject", "key"), ("Since", "key"), ("Summary", "text")],
        )
        for alert in firing[:limit]:
            severity = str(alert.severity)
            what = plain(alert.summary, limit=300)
            suggested = _suggested(alert)
            if suggested.plain != DASH:
                what.append("\n→ ")
                what.append_text(suggested)
            table.add_row(
                plain(severity, severity_style(severity)),
                plain(alert.subject, limit=30),
                Text(ago(alert.started_at, now) + (" ⚠ escalated" if alert.escalated else "")),
                what,
            )
        out = [table]
    if body.history:
        past = new_table(
            "Alert history",
            [
                ("Started", "key"),
                ("Severity", "key"),
                ("State", "key"),
                ("Subject", "key"),
                ("Summary", "text"),
                ("Resolved", "key"),
            ],
        )
        for alert in body.history[:limit]:
            severity = str(alert.severity)
            past.add_row(
                Text(clock(alert.started_at)),
                plain(severity, severity_style(severity)),
                plain(str(alert.state)),
                plain(alert.subject, limit=30),
                plain(alert.summary, limit=60),
                Text(clock(alert.resolved_at)),
            )
        out.append(past)
    return Group(*out)


def _analysis_panel(result: AnalysisResult, title: str, now: float) -> Panel:
    verdict = result.verdict
    rows: list[tuple[str, Text | str]] = [
        ("Verdict", plain(verdict, state_style(verdict) or "bold")),
        ("By", plain(f"{result.source} ({result.trigger})")),
        ("When", f"{clock(result.at)} ({ago(result.at, now)})"),
        ("Summary", plain(result.summary)),
    ]
    disagreement = result.disagreement()
    if disagreement:
        # The verdict above is the rules' floor; the model's own view is its opinion.
        rows.append(("Opinion", plain(disagreement, "yellow")))
    if result.fallback_reason:
        rows.append(("Fallback", plain(result.fallback_reason, "yellow")))
    latency = result.latency_s
    if latency is not None:
        took = f"{latency:.1f} s" + (" (cached)" if result.cached else "")
        if result.completion_tokens is not None:
            took += f", {result.completion_tokens} tokens"
        if result.tokens_per_s is not None:
            took += f" at {result.tokens_per_s:g} tokens/s"
        rows.append(("Took", took))
    parts: list[RenderableType] = [kv_grid(rows)]
    if result.explanations:
        reasoning = new_table("Reasoning", [("Alert", "key"), ("Explanation", "text")])
        for alert_id, text in result.explanations.items():
            reasoning.add_row(plain(alert_id, "dim"), plain(text))
        parts.append(reasoning)
    if result.recommended:
        recs = new_table(
            "Recommended actions",
            [("Action", "key"), ("Target", "key"), ("Confidence", "num"), ("Why", "text")],
        )
        for rec in result.recommended:
            # Suggested actions carry no confidence (the model chooses, it does not score).
            recs.add_row(
                plain(rec.action, "cyan"),
                plain(rec.target),
                Text(DASH),
                plain(rec.reason, limit=80),
            )
        parts.append(recs)
    if result.dropped:
        parts.append(plain("Dropped (not allowed): " + "; ".join(result.dropped), "yellow"))
    return Panel(Group(*parts), title=title)


def analysis_view(
    analysis: AnalysisReply,
    alerts: AlertsReply | None,
    now: float,
    incidents: IncidentsReply | None = None,
) -> RenderableType:
    """Menu 4, ``watchkeeper analysis``: open incidents, alerts, the latest analyses and
    the LLM's state."""
    parts: list[RenderableType] = []
    llm = analysis.llm
    line = Text("LLM: ")
    if llm.enabled is False:
        line.append("disabled in the configuration (rules and statistics only)", style="dim")
    else:
        available = llm.available
        line.append_text(plain(llm.model, "bold"))
        line.append(" · ")
        line.append(
            "available" if available else "unavailable", style="green" if available else "red"
        )
        line.append(" · ")
        line.append_text(plain(llm.status))
    parts.append(line)
    if incidents is not None and incidents.incidents:
        from watchkeeper.cli.incidents_view import incidents_view

        parts.append(incidents_view(incidents, now))
    if alerts is not None:
        parts.append(alerts_table(alerts, now))
    if not analysis.analyzer:
        parts.append(Text("The analyzer is not running.", style="yellow"))
        return Group(*parts)
    latest, latest_llm = analysis.latest, analysis.latest_llm
    if latest is not None:
        parts.append(_analysis_panel(latest, "Latest analysis", now))
    else:
        parts.append(Text("No analysis yet: one is made when an alert fires.", style="dim"))
    if latest_llm is not None and (latest is None or latest_llm.id != latest.id):
        parts.append(_analysis_panel(latest_llm, "Latest analysis by the LLM", now))
    for item in (analysis.history or [])[:10]:
        parts.append(
            plain(
                f"{clock(item.ts)}  {item.source or DASH}: {item.verdict or DASH} — "
                f"{item.summary or ''}",
                limit=150,
            )
        )
    return Group(*parts)


# -- remediation ------------------------------------------------------------------------------
def _pending_table(pending: Sequence[ActionRecord], now: float) -> RenderableType:
    # A block per action rather than a table: the id and the reason must stay whole.
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column()
    for rec in pending:
        line = Text.assemble(plain(rec.action, "cyan"), " on ", plain(rec.target))
        line.append(f"  ({rec.risk} risk, proposed {ago(rec.created_at, now)})")
        line.append("\n")
        line.append_text(plain(f"{rec.proposer} {rec.proposed_by}: ", "dim"))
        line.append_text(plain(rec.reason or rec.detail, limit=300))
        grid.add_row(plain(rec.id, "bold yellow"), line)
    title = Text("Awaiting approval", style="bold yellow")
    title.append(" (watchkeeper approve ID, or reject ID)", style="dim")
    return Group(title, grid)


def _audit_table(audit: Sequence[ActionRecord], now: float, limit: int) -> Table:
    table = new_table(
        "Recent actions (newest first)",
        [
            ("When", "key"),
            ("Action", "key"),
            ("Target", "key"),
            ("Outcome", "key"),
            ("Detail", "text"),
        ],
    )
    ordered = sorted(audit, key=lambda r: r.created_at, reverse=True)
    for rec in ordered[:limit]:
        outcome = str(rec.outcome)
        took = rec.duration_s
        detail = plain(f"{rec.proposer}" + ("" if took is None else f", {took:.1f}s") + ": ", "dim")
        detail.append_text(plain(rec.detail, limit=200))
        table.add_row(
            Text(clock(rec.created_at)),
            plain(rec.action, "cyan"),
            plain(rec.target, limit=24),
            plain(outcome, state_style(outcome)),
            detail,
        )
    return table


def _rates_table(body: RemediationReply) -> Table | None:
    """Success rates per action, from the remediator's live table or the stored one."""
    rates = body.success_rates
    rows: list[tuple[str, int, int, int, float | None]] = []
    if isinstance(rates, LiveRates):
        rows = [
            (name, r.attempts, r.succeeded, r.failed, r.rate)
            for name, r in sorted(rates.by_action.items())
        ]
    elif rates is not None:
        rows = [(r.key, r.attempts, r.succeeded, r.failed, r.rate) for r in rates.by_action]
    if not rows:
        return None
    table = new_table(
        "Success rates",
        [
            ("Action", "key"),
            ("Attempts", "num"),
            ("Succeeded", "num"),
            ("Failed", "num"),
            ("Rate", "num"),
        ],
    )
    for action, attempts, succeeded, failed, rate in rows:
        table.add_row(
            plain(action, "cyan"),
            Text(str(attempts)),
            Text(str(succeeded)),
            Text(str(failed)),
            Text(DASH if rate is None else f"{rate:.0%}"),
        )
    return table


def _catalog_table(actions: Sequence[ActionInfo]) -> Table:
    catalog = new_table(
        "Available actions",
        [("Action", "key"), ("Risk", "key"), ("Target", "key"), ("Description", "text")],
    )
    for info in actions:
        params = ", ".join(f"{p.name} ({p.type})" for p in info.params)
        description = plain(info.description, limit=200)
        if params:
            description.append_text(plain(f" Parameters: {params}.", "dim"))
        catalog.add_row(
            plain(info.name, "cyan"),
            plain(info.risk, {"dangerous": "red", "moderate": "yellow"}.get(info.risk, "green")),
            plain(info.target_kind),
            description,
        )
    return catalog


def remediation_view(body: RemediationReply, now: float, *, limit: int = 15) -> RenderableType:
    """Menu 5, ``watchkeeper actions``: mode, approvals, the audit trail, success rates."""
    counts = body.counts
    header = Text("Mode: ")
    header.append_text(plain(body.mode, "bold"))
    if counts:
        header.append(" · since start: ")
        header.append_text(plain(", ".join(f"{n} {k}" for k, n in sorted(counts.items()))))
    if not body.available:
        header.append(" · the remediator is not running", style="yellow")
    parts: list[RenderableType] = [header]
    parts.append(
        _pending_table(body.pending, now)
        if body.pending
        else Text("Nothing awaits approval.", style="dim")
    )
    parts.append(
        _audit_table(body.audit, now, limit) if body.audit else Text("No actions yet.", style="dim")
    )
    rates = _rates_table(body)
    if rates is not None:
        parts.append(rates)
    for gave in body.given_up:
        parts.append(
            plain(
                f"Gave up on {gave.target} after {gave.failures} failures "
                f"({ago(gave.since, now)}): {gave.reason}; reset with "
                "`watchkeeper command reset_giveup --target remediator --param target=NAME`",
                "bold red",
            )
        )
    if body.actions:
        parts.append(_catalog_table(body.actions))
    return Group(*parts)
