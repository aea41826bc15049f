"""Live Monitoring: one screen that refreshes in place until q or Ctrl-C.

Each refresh asks the API for what it already keeps (the system snapshot, the in-memory
chart history, firing alerts and the activity feed: four cheap reads, nothing collected
on demand), draws :func:`dashboard`, then waits ``every`` seconds for a key::

    with ApiClient(endpoint) as api:
        run_live(api, Console(), every=2.0)        # returns on q, Esc or Ctrl-C

When the daemon stops answering, the last picture stays with a red line saying so, and
the view picks up again when it comes back.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO, Any

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from watchkeeper.cli._format import (
    DASH,
    Adaptive,
    ago,
    bar,
    clock,
    duration,
    human_rate,
    kv_grid,
    plain,
    sparkline,
    state_style,
)
from watchkeeper.cli.client import ApiClient, ApiError
from watchkeeper.cli.control_views import activity_table
from watchkeeper.cli.reports import alerts_table
from watchkeeper.cli.views import Levels
from watchkeeper.model.snapshot import SystemSnapshot
from watchkeeper.storage.models import ActivityEntry
from watchkeeper.web.responses import ActivityReply, AlertsReply, RecentPoints

__all__ = ["KeyReader", "LiveData", "dashboard", "fetch_live", "run_live"]

_QUIT_KEYS = {"q", "Q", "\x1b"}


@dataclass
class LiveData:
    """What one refresh got; ``error`` is set (and the rest kept) when it failed."""

    system: SystemSnapshot | None = None
    recent: RecentPoints | None = None
    alerts: AlertsReply | None = None
    activity: Sequence[ActivityEntry] = field(default_factory=list)
    error: str | None = None
    refreshed_at: float | None = None
    frames: int = 0
    error_code: int = 0


def fetch_live(api: ApiClient, previous: LiveData | None, now: float) -> LiveData:
    """One refresh's worth of reads; on failure the previous data stays, with the error."""
    base = previous or LiveData()
    try:
        system = SystemSnapshot.model_validate(api.get("/api/system"))
        recent = RecentPoints.model_validate(api.get("/api/metrics/recent"))
        alerts = AlertsReply.model_validate(api.get("/api/alerts"))
        activity = ActivityReply.model_validate(api.get("/api/activity", limit=8, source="memory"))
    except ApiError as exc:
        return LiveData(
            base.system,
            base.recent,
            base.alerts,
            base.activity,
            exc.message,
            base.refreshed_at,
            base.frames + 1,
            exc.exit_code,
        )
    return LiveData(system, recent, alerts, activity.items, None, now, base.frames + 1)


def _column(recent: RecentPoints | None, name: str) -> list[float | None]:
    return recent.column(name) if recent is not None else []


def _last(values: list[float | None]) -> float | None:
    return next((v for v in reversed(values) if v is not None), None)


def _total(a: list[float | None], b: list[float | None]) -> list[float | None]:
    """Two series added point by point (a point is unknown only when both are)."""
    return [
        None if x is None and y is None else (x or 0.0) + (y or 0.0)
        for x, y in zip(a, b, strict=False)
    ]


def _resources(recent: RecentPoints | None, levels: Levels) -> Panel:
    cpu, memory = _column(recent, "cpu"), _column(recent, "memory")
    swap, disk = _column(recent, "swap"), _column(recent, "disk_used")
    read, write = _column(recent, "disk_read"), _column(recent, "disk_write")
    rx, tx = _column(recent, "net_rx"), _column(recent, "net_tx")
    io, net = _total(read, write), _total(rx, tx)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    for label, series, (warn, crit) in (
        ("CPU", cpu, levels.cpu),
        ("Memory", memory, levels.memory),
        ("Swap", swap, levels.swap),
        ("Disk used", disk, levels.disk),
    ):
        grid.add_row(
            label,
            bar(_last(series), 20, warn=warn, crit=crit),
            sparkline(series, 24, low=0, high=100),
        )
    grid.add_row(
        "Disk I/O",
        Text(f"read {human_rate(_last(read))} · write {human_rate(_last(write))}"),
        sparkline(io, 24, low=0, style="magenta"),
    )
    grid.add_row(
        "Network",
        Text(f"in {human_rate(_last(rx))} · out {human_rate(_last(tx))}"),
        sparkline(net, 24, low=0, style="magenta"),
    )
    return Panel(grid, title="Resources")


def _agents(system: SystemSnapshot | None, now: float) -> Panel:
    table = Table.grid(padding=(0, 2))
    for _ in range(4):
        table.add_column(no_wrap=True)
    for name, h in system.agents.items() if system is not None else ():
        state = str(h.state)
        table.add_row(
            plain(name, "bold"),
            plain(state, state_style(state)),
            Text(f"{h.checks} checks, {h.errors} errors", style="red" if h.errors else ""),
            Text(ago(h.last_check, now), style="dim"),
        )
    return Panel(table, title="Agents")


class _FitToScreen:
    """The fixed parts, then each optional part with as many rows as the screen has left
    (a part that cannot fit even one row becomes its one-line summary, or is left out),
    so the live view never scrolls."""

    def __init__(
        self,
        fixed: list[RenderableType],
        optional: list[tuple[Callable[[int], RenderableType], int, Text | None]],
    ) -> None:
        self.fixed = fixed
        self.optional = optional

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        room = (options.height or console.height) - 1  # the cursor's line
        for part in self.fixed:
            room -= len(console.render_lines(part, options, pad=False))
            yield part
        for make, most, summary in self.optional:
            candidates = [make(rows) for rows in range(most, 0, -1)]
            for part in [*candidates, *([summary] if summary is not None else [])]:
                needed = len(console.render_lines(part, options, pad=False))
                if needed <= room:
                    room -= needed
                    yield part
                    break


def dashboard(
    data: LiveData,
    now: float,
    *,
    url: str,
    levels: Levels | None = None,
    hint: str = "",
    fit: bool = False,
) -> RenderableType:
    """The live screen for ``data`` (pure: no requests, no clock reads). With ``fit``,
    the alerts and the activity feed shrink to what the terminal's height leaves."""
    levels = levels or Levels()
    system = data.system
    health = system.health if system is not None else None
    status = health.status if health is not None else (system.status if system else None)
    score = health.score if health is not None else None
    state = system.state if system is not None else DASH
    head = Text("Live Monitoring", style="bold")
    head.append(" · ")
    head.append_text(plain(url, "dim"))
    head.append(" · ")
    head.append_text(plain(state, state_style(state)))
    head.append(" · health ")
    head.append_text(plain(status, state_style(status)))
    if score is not None:
        head.append(f" {score:.0f}/100", style=state_style(status))
    head.append(f" · up {duration(system.uptime_s if system is not None else None)}")
    head.append(f" · refreshed {clock(data.refreshed_at)} (#{data.frames})", style="dim")
    parts: list[RenderableType] = [head]
    if hint:
        parts.append(Text(hint, style="dim"))
    if data.error:
        parts.append(Text(f"! {data.error} — showing the last data; retrying", style="bold red"))
    if health is not None and health.reasons:
        parts.append(kv_grid([("Health", plain("; ".join(health.reasons), "yellow"))]))
    comment = system.sensor().comment if system is not None else None
    if comment:
        parts.append(plain(comment, "italic"))
    parts.append(
        Adaptive(_resources(data.recent, levels), _agents(data.system, now), min_width=128)
    )
    optional: list[tuple[Callable[[int], RenderableType], int, Text | None]] = []
    alerts, activity = data.alerts, data.activity
    if alerts is not None:
        optional.append(
            (lambda rows: alerts_table(alerts, now, limit=rows), 5, _alerts_line(alerts))
        )
    if activity:
        optional.append((lambda rows: activity_table(activity, now, limit=rows), 8, None))
    if fit:
        return _FitToScreen(parts, optional)
    return Group(*parts, *(make(most) for make, most, _ in optional))


def _alerts_line(alerts: AlertsReply) -> Text:
    """The firing alerts in one line, for a screen too short for their table."""
    firing = alerts.firing
    if not firing:
        return Text("No alerts firing.", style="green")
    worst = firing[0]
    severity = str(worst.severity)
    line = Text(f"{len(firing)} alert(s) firing; worst: ", style="bold")
    line.append_text(plain(severity, state_style(severity)))
    line.append(" ")
    line.append_text(plain(worst.summary, limit=120))
    return line


class KeyReader:
    """Single key presses without Enter, while the screen refreshes.

    On a terminal it switches stdin to cbreak mode (keys arrive at once, not echoed;
    Ctrl-C still interrupts) and restores it on exit. Without a terminal it only waits.
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdin
        self._fd: int | None = None
        self._saved: Any = None

    def __enter__(self) -> KeyReader:
        try:
            if self._stream.isatty() and sys.platform != "win32":
                import termios
                import tty

                self._fd = self._stream.fileno()
                self._saved = termios.tcgetattr(self._fd)
                tty.setcbreak(self._fd)
        except (OSError, ValueError, AttributeError):
            self._fd = None
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None and self._saved is not None and sys.platform != "win32":
            import termios

            with contextlib.suppress(OSError):
                termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)

    def wait(self, timeout: float) -> str | None:
        """The keys pressed within ``timeout`` seconds, or None."""
        if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
            import msvcrt

            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if msvcrt.kbhit():
                    return msvcrt.getwch()
                time.sleep(0.05)
            return None
        if self._fd is None:
            time.sleep(timeout)
            return None
        import select

        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return None
        return os.read(self._fd, 64).decode("utf-8", errors="replace")


def _wants_out(keys: str | None) -> bool:
    if not keys:
        return False
    # A lone Esc quits; Esc starting an arrow-key sequence does not.
    return keys in _QUIT_KEYS or keys[0] in ("q", "Q")


def run_live(
    api: ApiClient,
    console: Console,
    *,
    every: float = 2.0,
    levels: Levels | None = None,
    hint: str = "Press q (or Ctrl-C) to stop.",
    keys: KeyReader | None = None,
    clock_fn: Callable[[], float] = time.time,
) -> None:
    """Refresh the dashboard in place until q, Esc or Ctrl-C."""
    data = fetch_live(api, None, clock_fn())
    reader = keys or KeyReader()
    with (
        contextlib.suppress(KeyboardInterrupt),
        reader,
        Live(
            dashboard(data, clock_fn(), url=api.url, levels=levels, hint=hint, fit=True),
            console=console,
            auto_refresh=False,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
            vertical_overflow="crop",
        ) as live,
    ):
        while not _wants_out(reader.wait(every)):
            data = fetch_live(api, data, clock_fn())
            screen = dashboard(data, clock_fn(), url=api.url, levels=levels, hint=hint, fit=True)
            live.update(screen, refresh=True)
