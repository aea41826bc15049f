"""How the plumbing looks in a terminal: the message bus, the configuration, the replies
to commands and the activity feed.

Like :mod:`watchkeeper.cli.views`: JSON from the API in, a rich renderable out::

    console.print(command_view(api.command("health_check", "all").body))
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.pretty import Pretty
from rich.table import Table
from rich.text import Text

from watchkeeper.cli._format import (
    DASH,
    clock,
    field,
    kv_grid,
    new_table,
    num,
    plain,
    severity_style,
    state_style,
)

__all__ = ["activity_table", "bus_view", "command_view", "config_view"]


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _rows(value: Any) -> list[Mapping[str, Any]]:
    return [row for row in value if isinstance(row, Mapping)] if isinstance(value, list) else []


def bus_view(body: Mapping[str, Any], now: float) -> RenderableType:
    """Menu 6, ``watchkeeper bus``: traffic, subscribers and the latest messages."""
    stats = _map(body.get("stats"))
    web = _map(body.get("web"))
    dropped = int(num(stats, "dropped") or 0)
    header = Text(
        f"{int(num(stats, 'published') or 0)} published · "
        f"{int(num(stats, 'delivered') or 0)} delivered · "
    )
    header.append(f"{dropped} dropped", style="red" if dropped else "")
    header.append(
        f" · {int(num(stats, 'pending_requests') or 0)} requests waiting · "
        f"{int(num(web, 'clients') or 0)} live web clients"
    )
    parts: list[RenderableType] = [header]
    topics = stats.get("topics")
    rates = _map(stats.get("rates"))
    if isinstance(topics, Mapping) and topics:
        table = new_table("Topics", [("Topic", "key"), ("Messages", "num"), ("Rate", "num")])
        for topic, count in sorted(topics.items(), key=lambda kv: -int(kv[1] or 0)):
            rate = num(rates, str(topic))
            table.add_row(
                plain(topic, "cyan"),
                Text(str(count)),
                Text(DASH if rate is None else f"{rate:g}/s"),
            )
        parts.append(table)
    subscribers = _rows(stats.get("subscribers"))
    if subscribers:
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
        for sub in subscribers:
            lost = int(num(sub, "dropped") or 0)
            table.add_row(
                plain(sub.get("name")),
                plain(sub.get("pattern"), "cyan"),
                Text(f"{int(num(sub, 'queued') or 0)}/{int(num(sub, 'maxsize') or 0)}"),
                Text(str(int(num(sub, "delivered") or 0))),
                Text(str(lost), style="red" if lost else ""),
            )
        parts.append(table)
    recent = _rows(body.get("recent"))
    if recent:
        table = new_table(
            "Latest messages (newest last)",
            [("Time", "key"), ("Topic", "key"), ("From", "key"), ("Reply to", "key")],
        )
        for msg in recent:
            table.add_row(
                Text(clock(num(msg, "timestamp"))),
                plain(msg.get("topic"), "cyan"),
                plain(msg.get("sender")),
                plain(msg.get("correlation_id"), "dim", limit=14),
            )
        parts.append(table)
    return Group(*parts)


def _value(value: Any) -> Text:
    if isinstance(value, (dict, list)):
        return plain(json.dumps(value, ensure_ascii=False), limit=110)
    if isinstance(value, bool):
        return Text(str(value).lower(), style="green" if value else "red")
    return plain(json.dumps(value) if value is None else value)


def config_view(body: Mapping[str, Any]) -> RenderableType:
    """Menu 7, ``watchkeeper config remote``: the settings the running system uses."""
    settings = _map(body.get("settings"))
    live = {str(s) for s in body.get("live_sections") or []}
    header = Text("Config file: ")
    header.append_text(plain(body.get("file") or "none (defaults, environment and flags)"))
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
def _reply_summary(reply: Mapping[str, Any]) -> RenderableType:
    if not reply.get("ok"):
        return plain(reply.get("error") or "failed", "red")
    record = reply.get("record")
    if isinstance(record, Mapping):
        outcome = record.get("outcome")
        text = Text(f"{record.get('action', '?')} on {record.get('target') or 'host'}: ")
        text.append_text(plain(outcome, state_style(outcome) or "bold"))
        if record.get("detail"):
            text.append(" — ")
            text.append_text(plain(record.get("detail")))
        text.append(f" (id {record.get('id', '?')})", style="dim")
        return text
    health = reply.get("health")
    if isinstance(health, Mapping):
        return Text.assemble("state ", plain(health.get("state"), state_style(health.get("state"))))
    if isinstance(reply.get("state"), str):
        return Text.assemble("state ", plain(reply["state"], state_style(reply["state"])))
    actions = reply.get("actions")
    if isinstance(actions, list):
        return plain(", ".join(str(field(a, "name") or a) for a in actions))
    rest = {k: v for k, v in reply.items() if k not in ("ok", "agent", "command")}
    return Pretty(rest, max_length=10, max_string=160) if rest else Text("done", style="green")


def command_view(body: Mapping[str, Any]) -> RenderableType:
    """The reply to a command: one row per agent asked."""
    ok = bool(body.get("ok"))
    title = Text(f"{body.get('command', '?')} → {body.get('target', '?')}: ")
    title.append("ok" if ok else "not done", style="green" if ok else "bold red")
    table = new_table(None, [("Agent", "key"), ("Result", "text")])
    replies = _map(body.get("replies"))
    for agent, reply in replies.items():
        table.add_row(
            plain(agent, "bold"),
            _reply_summary(reply) if isinstance(reply, Mapping) else plain(reply),
        )
    return Panel(table, title=title, border_style="green" if ok else "red", expand=False)


def activity_table(items: Sequence[Any], now: float, *, limit: int = 10) -> Table:
    """The recent-activity feed (``GET /api/activity``), newest first."""
    table = new_table("Recent activity", [("When", "key"), ("Agent", "key"), ("Message", "fill")])
    for item in _rows(list(items))[:limit]:
        table.add_row(
            Text(clock(num(item, "ts"))),
            plain(item.get("agent")),
            plain(item.get("message"), severity_style(item.get("severity"))),
        )
    return table
