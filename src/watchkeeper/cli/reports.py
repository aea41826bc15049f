"""How the team's conclusions look in a terminal: alerts, analyses and remediation.

Like :mod:`watchkeeper.cli.views`, each function turns one endpoint's JSON into a rich
renderable and does nothing else::

    console.print(remediation_view(api.get("/api/remediation"), now=time.time()))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from watchkeeper.cli._format import (
    DASH,
    ago,
    clock,
    field,
    kv_grid,
    new_table,
    num,
    plain,
    severity_style,
    state_style,
)

__all__ = ["alerts_table", "analysis_view", "remediation_view"]


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _rows(value: Any) -> list[Mapping[str, Any]]:
    return [row for row in value if isinstance(row, Mapping)] if isinstance(value, list) else []


def _suggested(alert: Mapping[str, Any]) -> Text:
    items = []
    for s in _rows(alert.get("suggested_actions")):
        target = f" {s.get('target')}" if s.get("target") else ""
        items.append(f"{s.get('action', '?')}{target}")
    return plain(", ".join(items) or None, "cyan", limit=120)


# -- alerts and analysis ----------------------------------------------------------------------
def alerts_table(body: Mapping[str, Any], now: float, *, limit: int = 50) -> RenderableType:
    """``watchkeeper alerts``: what is firing now, worst first."""
    if body.get("analyzer") is False:
        return Text("The analyzer is not running, so nothing raises alerts.", style="yellow")
    firing = _rows(body.get("firing"))
    counts = _map(body.get("counts"))
    if not firing:
        out: list[RenderableType] = [Text("No alerts firing. All quiet.", style="green")]
    else:
        summary = ", ".join(f"{n} {sev}" for sev, n in (counts or {}).items() if n)
        table = new_table(
            Text(f"Firing alerts ({summary})"),
            [("Severity", "key"), ("Subject", "key"), ("Since", "key"), ("Summary", "text")],
        )
        for alert in firing[:limit]:
            severity = alert.get("severity")
            since = ago(num(alert, "started_at"), now)
            what = plain(alert.get("summary"), limit=300)
            suggested = _suggested(alert)
            if suggested.plain != DASH:
                what.append("\n→ ")
                what.append_text(suggested)
            table.add_row(
                plain(severity, severity_style(severity)),
                plain(alert.get("subject"), limit=30),
                Text(since + (" ⚠ escalated" if alert.get("escalated") else "")),
                what,
            )
        out = [table]
    history = _rows(body.get("history"))
    if history:
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
        for alert in history[:limit]:
            severity = alert.get("severity")
            past.add_row(
                Text(clock(num(alert, "started_at"))),
                plain(severity, severity_style(severity)),
                plain(alert.get("state")),
                plain(alert.get("subject"), limit=30),
                plain(alert.get("summary"), limit=60),
                Text(clock(num(alert, "resolved_at"))),
            )
        out.append(past)
    return Group(*out)


def _analysis_panel(result: Mapping[str, Any], title: str, now: float) -> Panel:
    verdict = result.get("verdict")
    rows: list[tuple[str, Text | str]] = [
        ("Verdict", plain(verdict, state_style(verdict) or "bold")),
        ("By", plain(f"{result.get('source', DASH)} ({result.get('trigger', DASH)})")),
        ("When", f"{clock(num(result, 'at'))} ({ago(num(result, 'at'), now)})"),
        ("Summary", plain(result.get("summary"))),
    ]
    if result.get("fallback_reason"):
        rows.append(("Fallback", plain(result.get("fallback_reason"), "yellow")))
    latency = num(result, "latency_s")
    if latency is not None:
        rows.append(("Took", f"{latency:.1f} s" + (" (cached)" if result.get("cached") else "")))
    parts: list[RenderableType] = [kv_grid(rows)]
    explanations = result.get("explanations")
    if isinstance(explanations, Mapping) and explanations:
        reasoning = new_table("Reasoning", [("Alert", "key"), ("Explanation", "text")])
        for alert_id, text in explanations.items():
            reasoning.add_row(plain(alert_id, "dim"), plain(text))
        parts.append(reasoning)
    recommended = _rows(result.get("recommended"))
    if recommended:
        recs = new_table(
            "Recommended actions",
            [("Action", "key"), ("Target", "key"), ("Confidence", "num"), ("Why", "text")],
        )
        for rec in recommended:
            confidence = num(rec, "confidence")
            recs.add_row(
                plain(rec.get("action"), "cyan"),
                plain(rec.get("target")),
                Text(DASH if confidence is None else f"{confidence:.0%}"),
                plain(rec.get("reason"), limit=80),
            )
        parts.append(recs)
    dropped = result.get("dropped")
    if isinstance(dropped, list) and dropped:
        parts.append(plain("Dropped (not allowed): " + "; ".join(map(str, dropped)), "yellow"))
    return Panel(Group(*parts), title=title)


def analysis_view(
    analysis: Mapping[str, Any], alerts: Mapping[str, Any] | None, now: float
) -> RenderableType:
    """Menu 4, ``watchkeeper analysis``: alerts, the latest analyses and the LLM's state."""
    parts: list[RenderableType] = []
    llm = _map(analysis.get("llm"))
    line = Text("LLM: ")
    if llm.get("enabled") is False:
        line.append("disabled in the configuration (rules and statistics only)", style="dim")
    else:
        available = llm.get("available")
        line.append_text(plain(llm.get("model"), "bold"))
        line.append(" · ")
        line.append(
            "available" if available else "unavailable", style="green" if available else "red"
        )
        line.append(" · ")
        line.append_text(plain(llm.get("status")))
    parts.append(line)
    if alerts is not None:
        parts.append(alerts_table(alerts, now))
    if analysis.get("analyzer") is False:
        parts.append(Text("The analyzer is not running.", style="yellow"))
        return Group(*parts)
    latest = analysis.get("latest")
    latest_llm = analysis.get("latest_llm")
    if isinstance(latest, Mapping):
        parts.append(_analysis_panel(latest, "Latest analysis", now))
    else:
        parts.append(Text("No analysis yet: one is made when an alert fires.", style="dim"))
    if isinstance(latest_llm, Mapping) and (
        not isinstance(latest, Mapping) or latest_llm.get("id") != latest.get("id")
    ):
        parts.append(_analysis_panel(latest_llm, "Latest analysis by the LLM", now))
    for item in _rows(analysis.get("history"))[:10]:
        parts.append(
            plain(
                f"{clock(num(item, 'at'))}  {item.get('source', DASH)}: "
                f"{item.get('verdict', DASH)} — {item.get('summary', '')}",
                limit=150,
            )
        )
    return Group(*parts)


# -- remediation ------------------------------------------------------------------------------
def _pending_table(pending: list[Mapping[str, Any]], now: float) -> RenderableType:
    # A block per action rather than a table: the id and the reason must stay whole.
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column()
    for rec in pending:
        line = Text.assemble(plain(rec.get("action"), "cyan"), " on ", plain(rec.get("target")))
        line.append(
            f"  ({rec.get('risk', DASH)} risk, proposed {ago(num(rec, 'created_at'), now)})"
        )
        line.append("\n")
        line.append_text(
            plain(f"{rec.get('proposer', DASH)} {rec.get('proposed_by', '')}: ", "dim")
        )
        line.append_text(plain(rec.get("reason") or rec.get("detail"), limit=300))
        grid.add_row(plain(rec.get("id"), "bold yellow"), line)
    title = Text("Awaiting approval", style="bold yellow")
    title.append(" (watchkeeper approve ID, or reject ID)", style="dim")
    return Group(title, grid)


def _audit_table(audit: list[Mapping[str, Any]], now: float, limit: int) -> Table:
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
    ordered = sorted(audit, key=lambda r: num(r, "created_at") or 0, reverse=True)
    for rec in ordered[:limit]:
        outcome = rec.get("outcome")
        took = num(rec, "duration_s")
        detail = plain(
            f"{rec.get('proposer', DASH)}" + ("" if took is None else f", {took:.1f}s") + ": ",
            "dim",
        )
        detail.append_text(plain(rec.get("detail"), limit=200))
        table.add_row(
            Text(clock(num(rec, "created_at"))),
            plain(rec.get("action"), "cyan"),
            plain(rec.get("target"), limit=24),
            plain(outcome, state_style(outcome)),
            detail,
        )
    return table


def remediation_view(body: Mapping[str, Any], now: float, *, limit: int = 15) -> RenderableType:
    """Menu 5, ``watchkeeper actions``: mode, approvals, the audit trail, success rates."""
    counts = _map(body.get("counts"))
    header = Text("Mode: ")
    header.append_text(plain(body.get("mode"), "bold"))
    if counts:
        header.append(" · since start: ")
        header.append_text(plain(", ".join(f"{n} {k}" for k, n in sorted(counts.items()))))
    if body.get("available") is False:
        header.append(" · the remediator is not running", style="yellow")
    parts: list[RenderableType] = [header]
    pending = _rows(body.get("pending"))
    parts.append(
        _pending_table(pending, now) if pending else Text("Nothing awaits approval.", style="dim")
    )
    audit = _rows(body.get("audit"))
    parts.append(_audit_table(audit, now, limit) if audit else Text("No actions yet.", style="dim"))
    by_action = field(body, "success_rates", "by_action")
    if isinstance(by_action, Mapping) and by_action:
        rates = new_table(
            "Success rates",
            [
                ("Action", "key"),
                ("Attempts", "num"),
                ("Succeeded", "num"),
                ("Failed", "num"),
                ("Rate", "num"),
            ],
        )
        for action, row in sorted(by_action.items()):
            rate = num(row, "rate")
            rates.add_row(
                plain(action, "cyan"),
                Text(str(int(num(row, "attempts") or 0))),
                Text(str(int(num(row, "succeeded") or 0))),
                Text(str(int(num(row, "failed") or 0))),
                Text(DASH if rate is None else f"{rate:.0%}"),
            )
        parts.append(rates)
    for gave in _rows(body.get("given_up")):
        parts.append(
            plain(
                f"Gave up on {gave.get('target')} after {gave.get('failures')} failures "
                f"({ago(num(gave, 'since'), now)}): {gave.get('reason', '')}; reset with "
                "`watchkeeper command reset_giveup --target remediator --param target=NAME`",
                "bold red",
            )
        )
    actions = _rows(body.get("actions"))
    if actions:
        catalog = new_table(
            "Available actions",
            [("Action", "key"), ("Risk", "key"), ("Target", "key"), ("Description", "text")],
        )
        for info in actions:
            params = ", ".join(
                f"{p.get('name')} ({p.get('type')})" for p in _rows(info.get("params"))
            )
            description = plain(info.get("description"), limit=200)
            if params:
                description.append_text(plain(f" Parameters: {params}.", "dim"))
            catalog.add_row(
                plain(info.get("name"), "cyan"),
                plain(
                    info.get("risk"),
                    {"dangerous": "red", "moderate": "yellow"}.get(str(info.get("risk")), "green"),
                ),
                plain(info.get("target_kind")),
                description,
            )
        parts.append(catalog)
    return Group(*parts)
