"""The interactive menu (``watchkeeper cli``): the product's ten choices, drawn with rich.

::

    1 System Status    2 Agent Details     3 System Metrics    4 Analysis Results
    5 Remediation Status   6 Message Bus   7 Configuration     8 Send Commands
    9 Live Monitoring      0 Quit

Every screen reads the API through the same :class:`~watchkeeper.cli.client.ApiClient`
and views the subcommands use. Ctrl-C inside a screen goes back to the menu; Ctrl-C or
end of input at the menu quits. Send Commands only offers what the running system
accepts (targets from ``/api/agents``, commands from each agent, actions from
``/api/remediation``) and asks before anything that changes the host::

    Menu(api, Console()).run()
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter
from rich.console import Console, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from watchkeeper import __version__
from watchkeeper.cli._format import duration, plain, state_style
from watchkeeper.cli._prompt import Back, Prompter
from watchkeeper.cli.client import ApiClient, ApiError
from watchkeeper.cli.control_views import bus_view, config_view
from watchkeeper.cli.live import run_live
from watchkeeper.cli.menu_commands import SendCommands
from watchkeeper.cli.metrics_view import metrics_view
from watchkeeper.cli.reports import analysis_view, remediation_view
from watchkeeper.cli.views import Levels, agent_view, agents_table, system_view
from watchkeeper.model.metrics import MetricsSample
from watchkeeper.model.snapshot import AgentHealth, SystemSnapshot
from watchkeeper.web.responses import (
    AgentDetail,
    AlertsReply,
    AnalysisReply,
    BusReply,
    ConfigPatchReply,
    ConfigReply,
    IncidentsReply,
    RecentPoints,
    RemediationReply,
)

_AGENTS = TypeAdapter(dict[str, AgentHealth])

__all__ = ["MENU_ITEMS", "Menu"]

MENU_ITEMS: tuple[tuple[str, str], ...] = (
    ("1", "System Status"),
    ("2", "Agent Details"),
    ("3", "System Metrics"),
    ("4", "Analysis Results"),
    ("5", "Remediation Status"),
    ("6", "Message Bus"),
    ("7", "Configuration"),
    ("8", "Send Commands"),
    ("9", "Live Monitoring"),
    ("0", "Quit"),
)


class Menu(Prompter):
    """The loop: draw the menu, read a choice, show the screen, wait for Enter."""

    def __init__(
        self,
        api: ApiClient,
        console: Console,
        *,
        note: str | None = None,
        every: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(console)
        self.api = api
        self.note = note
        self.every = every
        self.clock = clock
        self.levels = Levels()
        self._flash: Text | None = None
        self._screens: dict[str, Callable[[], None]] = {
            "1": self.system_status,
            "2": self.agent_details,
            "3": self.system_metrics,
            "4": self.analysis_results,
            "5": self.remediation_status,
            "6": self.message_bus,
            "7": self.configuration,
            "8": self.send_commands,
            "9": self.live_monitoring,
        }

    # -- the loop -------------------------------------------------------------------------
    def header(self) -> RenderableType:
        line = Text(f"watchkeeper {__version__}", style="bold")
        line.append(" · ")
        line.append_text(plain(self.api.url, "cyan"))
        try:
            system = self.api.read("/api/system", SystemSnapshot)
        except ApiError as exc:
            line.append("\n")
            line.append_text(plain(exc.message, "bold red"))
        else:
            health = system.health
            status = health.status if health is not None else system.status
            line.append(" · ")
            line.append_text(plain(system.state, state_style(system.state)))
            line.append(" · health ")
            line.append_text(plain(status, state_style(status)))
            if health is not None and health.score is not None:
                line.append(f" {health.score:.0f}/100", style=state_style(status))
            line.append(f" · up {duration(system.uptime_s)}")
        if self.note:
            line.append("\n")
            line.append_text(plain(self.note, "yellow"))
        return line

    def draw(self) -> None:
        self.console.clear()
        self.console.print(self.header())
        grid = Table.grid(padding=(0, 2))
        grid.add_column(justify="right", style="bold cyan")
        grid.add_column()
        for key, label in MENU_ITEMS:
            grid.add_row(key, label)
        self.console.print(Panel(grid, title="Menu", expand=False, padding=(0, 2)))
        if self._flash is not None:
            self.console.print(self._flash)
            self._flash = None

    def run(self) -> None:
        """Until 0, q, Ctrl-C or end of input at the menu."""
        config = None
        with contextlib.suppress(ApiError):  # without it the bars keep default levels
            config = self.api.read("/api/config", ConfigReply)
        self.levels = Levels.from_config(config)
        while True:
            self.draw()
            try:
                choice = self.ask("Choose 0-9: ").lower()
            except (EOFError, KeyboardInterrupt):
                break
            if choice in ("0", "q", "quit", "exit"):
                break
            screen = self._screens.get(choice)
            if screen is None:
                self._flash = plain(f"{choice!r} is not on the menu: choose 0-9", "red")
                continue
            try:
                self.console.clear()
                screen()
            except Back:
                continue
            except KeyboardInterrupt:
                continue
            except EOFError:
                break
            except ApiError as exc:
                self.console.print(plain(exc.message, "bold red"))
                try:
                    self.pause()
                except (EOFError, KeyboardInterrupt):
                    break
        self.console.print("Bye.")

    # -- the screens ----------------------------------------------------------------------
    def _title(self, text: str) -> None:
        self.console.rule(Text(text, style="bold"))

    def system_status(self) -> None:
        self._title("1 System Status")
        self.console.print(system_view(self.api.read("/api/system", SystemSnapshot), self.clock()))
        self.pause()

    def agent_details(self) -> None:
        self._title("2 Agent Details")
        agents = _AGENTS.validate_python(self.api.get("/api/agents"))
        self.console.print(agents_table(agents, self.clock()))
        names = list(agents)
        if not names:
            self.pause()
            return
        name = self.pick("Inspect one agent", [(n, plain(n, "bold")) for n in names])
        body = self.api.read(f"/api/agents/{name}", AgentDetail)
        self.console.print(agent_view(name, body, self.clock()))
        self.pause()

    def system_metrics(self) -> None:
        self._title("3 System Metrics")
        metrics = self.api.read_optional("/api/metrics", MetricsSample)
        recent = self.api.read("/api/metrics/recent", RecentPoints)
        self.console.print(metrics_view(metrics, recent, self.clock(), self.levels))
        self.pause()

    def analysis_results(self) -> None:
        self._title("4 Analysis Results")
        analysis = self.api.read("/api/analysis", AnalysisReply)
        alerts = self.api.read("/api/alerts", AlertsReply)
        incidents = None
        with contextlib.suppress(ApiError):  # a server from before incidents has none
            incidents = self.api.read("/api/incidents", IncidentsReply)
        self.console.print(analysis_view(analysis, alerts, self.clock(), incidents))
        self.pause()

    def remediation_status(self) -> None:
        self._title("5 Remediation Status")
        body = self.api.read("/api/remediation", RemediationReply)
        self.console.print(remediation_view(body, self.clock()))
        if body.pending:
            self.console.print(Text("Approve or reject them in 8 Send Commands.", style="yellow"))
        self.pause()

    def message_bus(self) -> None:
        self._title("6 Message Bus")
        self.console.print(bus_view(self.api.read("/api/bus", BusReply, limit=15), self.clock()))
        self.pause()

    def configuration(self) -> None:
        self._title("7 Configuration")
        self.console.print(config_view(self.api.read("/api/config", ConfigReply)))
        while True:
            answer = self.ask("Change a live setting, KEY=VALUE (Enter to go back): ")
            if not answer:
                return
            key, sep, raw = answer.partition("=")
            if not sep or not key.strip():
                self.console.print(Text("Type it as KEY=VALUE, e.g. thresholds.cpu_warning=80"))
                continue
            value = _typed(raw.strip())
            question = Text("Set ")
            question.append_text(plain(key.strip(), "bold"))
            question.append(" to ")
            question.append_text(plain(raw.strip(), "bold"))
            question.append(" on the running system?")
            if not self.confirm(question):
                continue
            try:
                result = self.api.patch_config({key.strip(): value})
            except ApiError as exc:
                self.console.print(plain(exc.message, "red"))
                continue
            change = ConfigPatchReply.model_validate(result).change
            for name, new in change.changes.items():
                self.console.print(
                    plain(f"changed {name}: {change.previous.get(name)!r} → {new!r}", "green")
                )

    def send_commands(self) -> None:
        self._title("8 Send Commands")
        SendCommands(self.api, self).run()

    def live_monitoring(self) -> None:
        self.console.clear()
        run_live(
            self.api,
            self.console,
            every=self.every,
            levels=self.levels,
            hint="Press q to return to the menu (Ctrl-C works too).",
        )


def _typed(raw: str) -> Any:
    """A setting typed in the menu: JSON when it parses (80, true, ["a"]), else a string."""
    import json

    try:
        return json.loads(raw)
    except ValueError:
        return raw
