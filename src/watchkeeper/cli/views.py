"""How the running system looks in a terminal: status and agents.

Each function turns the model of one API answer into a rich renderable, and does
nothing else (no requests, no printing), so the menu, the subcommands and the live view
share them and a test can render them to text::

    console.print(system_view(SystemSnapshot.model_validate(data), now=time.time()))

``now`` is passed in rather than read, so ages ("12s ago") are reproducible. Every string
that came from the host goes through :func:`~watchkeeper.cli._format.plain`.
Metrics are in :mod:`watchkeeper.cli.metrics_view`; alerts, analysis and remediation in
:mod:`watchkeeper.cli.reports`; the bus, configuration, command replies and the activity
feed in :mod:`watchkeeper.cli.control_views`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.pretty import Pretty
from rich.text import Text

from watchkeeper.cli._format import (
    DASH,
    ago,
    clock,
    duration,
    kv_grid,
    new_table,
    plain,
    state_style,
)

if TYPE_CHECKING:
    from watchkeeper.model.snapshot import AgentHealth, SystemSnapshot
    from watchkeeper.web.responses import AgentDetail, ConfigReply

__all__ = ["Levels", "agent_view", "agents_table", "system_view"]


@dataclass(frozen=True)
class Levels:
    """Warning and critical percentages that colour the bars (from ``thresholds``)."""

    cpu: tuple[float, float] = (75.0, 90.0)
    memory: tuple[float, float] = (85.0, 95.0)
    disk: tuple[float, float] = (85.0, 95.0)
    swap: tuple[float, float] = (50.0, 80.0)

    @classmethod
    def from_config(cls, config: ConfigReply | None) -> Levels:
        """From ``GET /api/config``'s ``settings.thresholds``; the defaults without one."""
        if config is None:
            return cls()
        from watchkeeper.config import Thresholds

        t = Thresholds.model_validate(config.settings["thresholds"])
        return cls(
            cpu=(t.cpu_warning, t.cpu_critical),
            memory=(t.memory_warning, t.memory_critical),
            disk=(t.disk_warning, t.disk_critical),
            swap=(t.swap_warning, t.swap_critical),
        )


def _state(value: Any) -> Text:
    return plain(value, state_style(value))


# -- system -----------------------------------------------------------------------------------
def system_view(system: SystemSnapshot, now: float) -> RenderableType:
    """Menu 1, ``watchkeeper status``: the whole system at a glance."""
    health = system.health
    status = health.status if health is not None else None
    state = Text()
    state.append_text(_state(system.state))
    state.append(" · agents ")
    state.append_text(_state(system.status))
    score_text = Text()
    if health is not None and health.score is not None:
        score_text.append(f"{health.score:.0f}/100 ", style=state_style(status))
    score_text.append_text(_state(status))
    bus = system.bus
    rows: list[tuple[str, Text | str]] = [
        ("State", state),
        ("Health", score_text),
    ]
    if health is not None and health.reasons:
        rows.append(("Why", plain("; ".join(health.reasons))))
    rows += [
        ("Version", f"{system.version} (pid {system.pid})"),
        ("Uptime", f"{duration(system.uptime_s)} (since {clock(system.started_at)})"),
        ("Config", plain(system.config_file or "built-in defaults")),
    ]
    comment = system.sensor().comment
    if comment:
        rows.append(("Sensor says", plain(comment, "italic")))
    analyzer = system.analyzer()
    if analyzer is not None:
        rows.append(
            (
                "Analyzer",
                plain(
                    f"verdict {analyzer.verdict or DASH} · "
                    f"{analyzer.firing} alert(s) firing · {analyzer.llm or DASH}"
                ),
            )
        )
    remediator = system.remediator()
    if remediator is not None:
        given_up = remediator.given_up
        rows.append(
            (
                "Remediator",
                plain(
                    f"mode {remediator.mode or DASH} · {remediator.running} "
                    f"running · {remediator.pending} awaiting approval"
                    + (f" · gave up on {', '.join(given_up)}" if given_up else "")
                ),
            )
        )
    rows.append(
        (
            "Bus",
            f"{bus.published} published · {bus.delivered} delivered · "
            f"{bus.dropped} dropped · {bus.subscribers} subscribers",
        )
    )
    panel = Panel(kv_grid(rows), title="System Status", border_style=state_style(status) or "none")
    return Group(panel, agents_table(system.agents, now))


def agents_table(agents: Mapping[str, AgentHealth], now: float) -> RenderableType:
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
    for name, h in agents.items():
        table.add_row(
            plain(name, "bold"),
            _state(h.state),
            Text(duration(h.uptime_s)),
            Text(str(h.checks)),
            Text(str(h.errors), style="red" if h.errors else ""),
            Text(str(h.restarts), style="yellow" if h.restarts else ""),
            Text(ago(h.last_check, now)),
        )
        # Errors are shown whole, under the table: cut to fit a column they say nothing.
        for label, text, style in (
            ("last error", h.last_error, "red"),
            ("restarted because", h.last_restart_reason, "yellow"),
        ):
            if text:
                problems.append(
                    Text.assemble(plain(name, "bold"), f" {label}: ", plain(text, style))
                )
    return Group(table, *problems) if problems else table


def agent_view(name: str, body: AgentDetail, now: float) -> RenderableType:
    """One agent (``GET /api/agents/{name}``): health, its own status, its commands."""
    h = body.health
    took = h.last_duration_ms
    rows: list[tuple[str, Text | str]] = [
        ("State", _state(h.state)),
        ("Kind", plain(h.kind)),
        ("Interval", f"{h.interval:g} s"),
        ("Started", f"{clock(h.started_at)} (up {duration(h.uptime_s)})"),
        ("Checks", f"{h.checks}, last {ago(h.last_check, now)}"),
        ("Last check took", DASH if took is None else f"{took:.1f} ms"),
        ("Errors", f"{h.errors} ({h.consecutive_errors} in a row)"),
        ("Last error", plain(h.last_error, "red")),
        ("Restarts", f"{h.restarts}"),
        ("Restart reason", plain(h.last_restart_reason)),
        ("Commands", plain(", ".join(body.commands))),
    ]
    parts: list[RenderableType] = [
        Panel(kv_grid(rows), title=Text(f"Agent {name}"), border_style=state_style(h.state))
    ]
    if body.status:
        # Pretty shows values through repr(): never markup, control characters escaped.
        parts.append(Panel(Pretty(body.status, max_length=12, max_string=160), title="Status"))
    return Group(*parts)
