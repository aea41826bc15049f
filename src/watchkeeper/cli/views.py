"""How the running system looks in a terminal: status and agents.

Each function turns the JSON one API endpoint returns into a rich renderable, and does
nothing else (no requests, no printing), so the menu, the subcommands and the live view
share them and a test can render them to text::

    console.print(system_view(api.get("/api/system"), now=time.time()))

``now`` is passed in rather than read, so ages ("12s ago") are reproducible. Every string
that came from the host goes through :func:`~watchkeeper.cli._format.plain`.
Metrics are in :mod:`watchkeeper.cli.metrics_view`; alerts, analysis and remediation in
:mod:`watchkeeper.cli.reports`; the bus, configuration, command replies and the activity
feed in :mod:`watchkeeper.cli.control_views`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.pretty import Pretty
from rich.text import Text

from watchkeeper.cli._format import (
    DASH,
    ago,
    clock,
    duration,
    field,
    kv_grid,
    new_table,
    num,
    plain,
    state_style,
)

__all__ = ["Levels", "agent_view", "agents_table", "system_view"]


@dataclass(frozen=True)
class Levels:
    """Warning and critical percentages that colour the bars (from ``thresholds``)."""

    cpu: tuple[float, float] = (75.0, 90.0)
    memory: tuple[float, float] = (85.0, 95.0)
    disk: tuple[float, float] = (85.0, 95.0)
    swap: tuple[float, float] = (50.0, 80.0)

    @classmethod
    def from_config(cls, config: Any) -> Levels:
        """From ``GET /api/config``'s ``settings.thresholds``; defaults where absent."""
        t = field(config, "settings", "thresholds")
        base = cls()

        def pair(name: str, default: tuple[float, float]) -> tuple[float, float]:
            warn, crit = num(t, f"{name}_warning"), num(t, f"{name}_critical")
            return (warn or default[0], crit or default[1])

        return cls(
            cpu=pair("cpu", base.cpu),
            memory=pair("memory", base.memory),
            disk=pair("disk", base.disk),
            swap=pair("swap", base.swap),
        )


def _state(value: Any) -> Text:
    return plain(value, state_style(value))


# -- system -----------------------------------------------------------------------------------
def system_view(system: Mapping[str, Any], now: float) -> RenderableType:
    """Menu 1, ``watchkeeper status``: the whole system at a glance."""
    health = field(system, "health") or {}
    score = num(health, "score")
    status = health.get("status") if isinstance(health, Mapping) else None
    reasons = health.get("reasons") if isinstance(health, Mapping) else None
    state = Text()
    state.append_text(_state(system.get("state")))
    state.append(" · agents ")
    state.append_text(_state(system.get("status")))
    score_text = Text()
    if score is not None:
        score_text.append(f"{score:.0f}/100 ", style=state_style(status))
    score_text.append_text(_state(status))
    details = field(system, "details") or {}
    analyzer = details.get("analyzer") if isinstance(details, Mapping) else None
    remediator = details.get("remediator") if isinstance(details, Mapping) else None
    bus = field(system, "bus") or {}
    rows: list[tuple[str, Text | str]] = [
        ("State", state),
        ("Health", score_text),
    ]
    if isinstance(reasons, list) and reasons:
        rows.append(("Why", plain("; ".join(str(r) for r in reasons))))
    rows += [
        ("Version", f"{system.get('version', DASH)} (pid {system.get('pid', DASH)})"),
        (
            "Uptime",
            f"{duration(num(system, 'uptime_s'))} (since {clock(num(system, 'started_at'))})",
        ),
        ("Config", plain(system.get("config_file") or "built-in defaults")),
    ]
    comment = field(details, "sensor", "comment")
    if comment:
        rows.append(("Sensor says", plain(comment, "italic")))
    if isinstance(analyzer, Mapping):
        rows.append(
            (
                "Analyzer",
                plain(
                    f"verdict {analyzer.get('verdict', DASH)} · "
                    f"{analyzer.get('firing', 0)} alert(s) firing · {analyzer.get('llm', DASH)}"
                ),
            )
        )
    if isinstance(remediator, Mapping):
        given_up = remediator.get("given_up") or []
        rows.append(
            (
                "Remediator",
                plain(
                    f"mode {remediator.get('mode', DASH)} · {remediator.get('running', 0)} "
                    f"running · {remediator.get('pending', 0)} awaiting approval"
                    + (f" · gave up on {', '.join(map(str, given_up))}" if given_up else "")
                ),
            )
        )
    rows.append(
        (
            "Bus",
            f"{bus.get('published', 0)} published · {bus.get('delivered', 0)} delivered · "
            f"{bus.get('dropped', 0)} dropped · {bus.get('subscribers', 0)} subscribers",
        )
    )
    panel = Panel(kv_grid(rows), title="System Status", border_style=state_style(status) or "none")
    agents = system.get("agents")
    parts: list[RenderableType] = [panel]
    if isinstance(agents, Mapping):
        parts.append(agents_table(agents, now))
    return Group(*parts)


def agents_table(agents: Mapping[str, Any], now: float) -> RenderableType:
    """Menu 2, ``watchkeeper agents``: one row per agent, then any agent's last error."""
    table = new_table(
        "Agents",
        [
            ("Agent", "key"),
            ("State", "key"),
            ("Up", "num"),
            ("Checks", "num"),
            ("Errors", "num"),
            ("Restarts", "num"),
            ("Last check", "num"),
        ],
    )
    problems: list[RenderableType] = []
    for name, health in agents.items():
        h = health if isinstance(health, Mapping) else {}
        errors = int(num(h, "errors") or 0)
        restarts = int(num(h, "restarts") or 0)
        table.add_row(
            plain(name, "bold"),
            _state(h.get("state")),
            Text(duration(num(h, "uptime_s"))),
            Text(str(int(num(h, "checks") or 0))),
            Text(str(errors), style="red" if errors else ""),
            Text(str(restarts), style="yellow" if restarts else ""),
            Text(ago(num(h, "last_check"), now)),
        )
        # Errors are shown whole, under the table: cut to fit a column they say nothing.
        for label, key, style in (
            ("last error", "last_error", "red"),
            ("restarted because", "last_restart_reason", "yellow"),
        ):
            if h.get(key):
                problems.append(
                    Text.assemble(plain(name, "bold"), f" {label}: ", plain(h[key], style))
                )
    return Group(table, *problems) if problems else table


def agent_view(name: str, body: Mapping[str, Any], now: float) -> RenderableType:
    """One agent (``GET /api/agents/{name}``): health, its own status, its commands."""
    h = body.get("health") or {}
    took = num(h, "last_duration_ms")
    rows: list[tuple[str, Text | str]] = [
        ("State", _state(h.get("state"))),
        ("Kind", plain(h.get("kind"))),
        ("Interval", f"{num(h, 'interval') or 0:g} s"),
        ("Started", f"{clock(num(h, 'started_at'))} (up {duration(num(h, 'uptime_s'))})"),
        ("Checks", f"{int(num(h, 'checks') or 0)}, last {ago(num(h, 'last_check'), now)}"),
        ("Last check took", DASH if took is None else f"{took:.1f} ms"),
        (
            "Errors",
            f"{int(num(h, 'errors') or 0)} ({int(num(h, 'consecutive_errors') or 0)} in a row)",
        ),
        ("Last error", plain(h.get("last_error"), "red")),
        ("Restarts", f"{int(num(h, 'restarts') or 0)}"),
        ("Restart reason", plain(h.get("last_restart_reason"))),
        ("Commands", plain(", ".join(str(c) for c in body.get("commands") or []))),
    ]
    parts: list[RenderableType] = [
        Panel(kv_grid(rows), title=Text(f"Agent {name}"), border_style=state_style(h.get("state")))
    ]
    status = body.get("status")
    if status:
        # Pretty shows values through repr(): never markup, control characters escaped.
        parts.append(Panel(Pretty(status, max_length=12, max_string=160), title="Status"))
    return Group(*parts)
