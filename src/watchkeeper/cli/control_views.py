"""How the plumbing looks in a terminal: the message bus, the configuration, the replies
to commands and the activity feed.

Like :mod:`watchkeeper.cli.views`: the model of an API answer in, a rich renderable out::

    console.print(command_view(CommandAnswer.model_validate(result.body)))
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.pretty import Pretty
from rich.table import Table
from rich.text import Text

from watchkeeper.cli._format import (
    DASH,
    clock,
    kv_grid,
    new_table,
    plain,
    severity_style,
    state_style,
)

if TYPE_CHECKING:
    from watchkeeper.storage.models import ActivityEntry
    from watchkeeper.web.responses import AgentAnswer, BusReply, CommandAnswer, ConfigReply

__all__ = ["activity_table", "bus_view", "command_view", "config_view"]


def bus_view(body: BusReply, now: float) -> RenderableType:
    """Menu 6, ``watchkeeper bus``: traffic, subscribers and the latest messages."""
    stats = body.stats
    header = Text(f"{stats.published} published · {stats.delivered} delivered · ")
    header.append(f"{stats.dropped} dropped", style="red" if stats.dropped else "")
    header.append(
        f" · {stats.pending_requests} requests waiting · {body.web.clients} live web clients"
    )
    parts: list[RenderableType] = [header]
    if stats.topics:
        table = new_table("Topics", [("Topic", "key"), ("Messages", "num"), ("Rate", "num")])
        for topic, count in sorted(stats.topics.items(), key=lambda kv: -kv[1]):
            rate = stats.rates.get(topic)
            table.add_row(
                plain(topic, "cyan"),
                Text(str(count)),
                Text(DASH if rate is None else f"{rate:g}/s"),
            )
        parts.append(table)
    if stats.subscribers:
        table = new_table(
            "Subscribers",
            [
                ("Name", "key"),
                ("Pattern", "key"),
                ("Queue", "num"),
                ("Got", "num"),
                ("Lost", "num"),
            ],
        )
        for sub in stats.subscribers:
            table.add_row(
                plain(sub.name),
                plain(sub.pattern, "cyan"),
                Text(f"{sub.queued}/{sub.maxsize}"),
                Text(str(sub.delivered)),
                Text(str(sub.dropped), style="red" if sub.dropped else ""),
            )
        parts.append(table)
    if body.recent:
        table = new_table(
            "Latest messages (newest last)",
            [("Time", "key"), ("Topic", "key"), ("From", "key"), ("Reply to", "key")],
        )
        for msg in body.recent:
            table.add_row(
                Text(clock(msg.timestamp)),
                plain(msg.topic, "cyan"),
                plain(msg.sender),
                plain(msg.correlation_id, "dim", limit=14),
            )
        parts.append(table)
    return Group(*parts)


def _value(value: Any) -> Text:
    if isinstance(value, (dict, list)):
        return plain(json.dumps(value, ensure_ascii=False), limit=110)
    if isinstance(value, bool):
        return Text(str(value).lower(), style="green" if value else "red")
    return plain(json.dumps(value) if value is None else value)


def config_view(body: ConfigReply) -> RenderableType:
    """Menu 7, ``watchkeeper config remote``: the settings the running system uses."""
    settings = body.settings
    live = set(body.live_sections)
    header = Text("Config file: ")
    header.append_text(plain(body.file or "none (defaults, environment and flags)"))
    header.append("\nSections marked ")
    header.append("live", style="green")
    header.append(" can be changed while running (menu 7, or `watchkeeper config set`).")
    parts: list[RenderableType] = [header]
    general = [(str(k), _value(v)) for k, v in settings.items() if not isinstance(v, Mapping)]
    if general:
        parts.append(Panel(kv_grid(general), title="general"))
    for section, values in settings.items():
        if not isinstance(values, Mapping):
            continue
        title = Text(str(section), style="bold")
        if section in live:
            title.append(" (live)", style="green")
        parts.append(Panel(kv_grid((str(k), _value(v)) for k, v in values.items()), title=title))
    return Group(*parts)


# -- commands and activity --------------------------------------------------------------------
def _reply_summary(reply: AgentAnswer) -> RenderableType:
    if not reply.ok:
        return plain(reply.error or "failed", "red")
    record = reply.record
    if record is not None:
        outcome = str(record.outcome)
        text = Text(f"{record.action} on {record.target or 'host'}: ")
        text.append_text(plain(outcome, state_style(outcome) or "bold"))
        if record.detail:
            text.append(" — ")
            text.append_text(plain(record.detail))
        text.append(f" (id {record.id})", style="dim")
        return text
    if reply.health is not None:
        state = str(reply.health.state)
        return Text.assemble("state ", plain(state, state_style(state)))
    if reply.state is not None:
        return Text.assemble("state ", plain(reply.state, state_style(reply.state)))
    if reply.actions is not None:
        return plain(", ".join(a.name for a in reply.actions))
    rest = reply.rest()
    return Pretty(rest, max_length=10, max_string=160) if rest else Text("done", style="green")


def command_view(body: CommandAnswer) -> RenderableType:
    """The reply to a command: one row per agent asked."""
    ok = body.ok
    title = Text(f"{body.command} → {body.target}: ")
    title.append("ok" if ok else "not done", style="green" if ok else "bold red")
    table = new_table(None, [("Agent", "key"), ("Result", "text")])
    for agent, reply in body.replies.items():
        table.add_row(plain(agent, "bold"), _reply_summary(reply))
    return Panel(table, title=title, border_style="green" if ok else "red", expand=False)


def activity_table(items: Sequence[ActivityEntry], now: float, *, limit: int = 10) -> Table:
    """The recent-activity feed (``GET /api/activity``), newest first."""
    table = new_table("Recent activity", [("When", "key"), ("Agent", "key"), ("Message", "fill")])
    for item in items[:limit]:
        table.add_row(
            Text(clock(item.ts)),
            plain(item.agent),
            plain(item.message, severity_style(item.severity)),
        )
    return table
