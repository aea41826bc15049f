"""The small pieces every CLI view is built from: safe text, bars, sparklines, units.

Anything that came from the host (process names, command lines, service names, alert
summaries, log lines) is untrusted. It reaches the terminal only through :func:`plain`,
which makes a rich ``Text`` (never parsed as markup, so ``[bold]`` stays literal) with
control characters replaced (so an escape sequence hidden in a process name cannot move
the cursor or recolour the screen)::

    table.add_row(plain(proc.name), bar(proc.cpu_percent))

The views read the API's answers through its response models (``watchkeeper.web.
responses``); a value the model allows to be absent shows as "–".
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

from watchkeeper.humanize import human_duration
from watchkeeper.model.text import TERMINAL, clean

__all__ = [
    "DASH",
    "Adaptive",
    "ago",
    "bar",
    "clock",
    "duration",
    "human_bytes",
    "human_rate",
    "kv_grid",
    "new_table",
    "pct",
    "plain",
    "severity_style",
    "sparkline",
    "state_style",
]

DASH = "–"
_SPARKS = "▁▂▃▄▅▆▇█"
_STATE_STYLES = {
    "running": "green",
    "healthy": "green",
    "ok": "green",
    "succeeded": "green",
    "starting": "cyan",
    "paused": "yellow",
    "degraded": "yellow",
    "pending": "yellow",
    "warning": "yellow",
    "dry_run": "cyan",
    "deferred": "cyan",
    "stopping": "yellow",
    "failed": "bold red",
    "critical": "bold red",
    "unavailable": "bold red",
    "refused": "red",
    "timed_out": "red",
    "gave_up": "bold red",
    "rejected": "magenta",
    "stopped": "dim",
}


def plain(value: Any, style: str = "", *, limit: int | None = None) -> Text:
    """Untrusted ``value`` as literal text: no markup, no control characters."""
    text = DASH if value is None or value == "" else str(value)
    return Text(clean(text, TERMINAL, limit), style=style)


def state_style(state: Any) -> str:
    """The colour for a state, status, outcome or severity word."""
    return _STATE_STYLES.get(str(state).lower(), "")


def severity_style(severity: Any) -> str:
    return {"critical": "bold red", "warning": "yellow", "info": "cyan"}.get(str(severity), "")


def _level_style(value: float, warn: float, crit: float) -> str:
    if value >= crit:
        return "bold red"
    return "yellow" if value >= warn else "green"


def bar(percent: float | None, width: int = 20, *, warn: float = 75.0, crit: float = 90.0) -> Text:
    """``████████░░░░  45.2%``, coloured by the warning and critical levels."""
    if percent is None:
        return Text("░" * width + f" {DASH:>6}", style="dim")
    value = max(0.0, min(100.0, percent))
    filled = round(value / 100 * width)
    out = Text()
    out.append("█" * filled, style=_level_style(value, warn, crit))
    out.append("░" * (width - filled), style="dim")
    out.append(f" {percent:5.1f}%")
    return out


def sparkline(
    values: Sequence[float | None],
    width: int = 30,
    *,
    low: float | None = None,
    high: float | None = None,
    style: str = "cyan",
) -> Text:
    """The last ``width`` values as ``▁▂▅█▇▃``; gaps (None) as spaces.

    ``low``/``high`` fix the scale (0-100 for percentages); otherwise it spans the data.
    """
    recent = list(values)[-width:]
    known = [v for v in recent if v is not None]
    if not known:
        return Text(" " * width)
    lo = min(known) if low is None else low
    hi = max(known) if high is None else high
    span = hi - lo
    chars = []
    for value in recent:
        if value is None:
            chars.append(" ")
            continue
        level = 0.0 if span <= 0 else (min(max(value, lo), hi) - lo) / span
        chars.append(_SPARKS[min(len(_SPARKS) - 1, int(level * (len(_SPARKS) - 1) + 0.5))])
    return Text("".join(chars).rjust(width), style=style)


def pct(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f}%"


def human_bytes(value: float | None) -> str:
    """``1536`` → ``1.5 KiB``."""
    if value is None:
        return DASH
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return DASH  # pragma: no cover - the loop always returns


def human_rate(value: float | None) -> str:
    return DASH if value is None else human_bytes(value) + "/s"


def duration(seconds: float | None) -> str:
    """``3725`` → ``1h 2m``; short spans keep seconds; a dash when unknown."""
    return DASH if seconds is None else human_duration(seconds)


def ago(ts: float | None, now: float) -> str:
    """How long before ``now`` the unix time ``ts`` was: ``12s ago``."""
    if ts is None:
        return DASH
    return f"{duration(now - ts)} ago" if now >= ts else "just now"


def clock(ts: float | None) -> str:
    """Local wall-clock time of a unix timestamp, ``HH:MM:SS``."""
    if ts is None:
        return DASH
    return time.strftime("%H:%M:%S", time.localtime(ts))


def kv_grid(rows: Iterable[tuple[str, Text | str]]) -> Table:
    """Two columns, label and value; values given as ``str`` are taken as literal."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for label, value in rows:
        grid.add_row(Text(label), value if isinstance(value, Text) else plain(value))
    return grid


def new_table(title: str | Text | None, columns: Iterable[tuple[str, str]]) -> Table:
    """A table whose columns say how they behave when the terminal is narrow.

    Kinds: ``key`` (names, ids, states: never wrapped), ``num`` (right-aligned, never
    wrapped), ``text`` (wraps at spaces), ``fill`` (one line, takes the room the others
    leave, cut with "…": command lines, feed messages)::

        new_table("Agents", [("Agent", "key"), ("Checks", "num"), ("Last error", "text")])
    """
    table = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD)
    for name, kind in columns:
        if kind == "text":
            table.add_column(name)
        elif kind == "fill":
            table.add_column(name, ratio=1, no_wrap=True, overflow="ellipsis")
            table.expand = True  # ratios only share out the width of an expanded table
        else:
            table.add_column(name, no_wrap=True, justify="right" if kind == "num" else "left")
    return table


class Adaptive:
    """Side by side when the terminal is wide enough, one under the other when not::

    Adaptive(cpu_panel, memory_panel, min_width=120)
    """

    def __init__(self, *parts: RenderableType, min_width: int) -> None:
        self.parts = parts
        self.min_width = min_width

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if options.max_width >= self.min_width:
            grid = Table.grid(padding=(0, 2))
            grid.add_row(*self.parts)
            yield grid
        else:
            yield from self.parts
