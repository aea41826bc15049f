"""The scriptable subcommands that read and steer a running watchkeeper over its API.

``register(app)`` adds them to the ``watchkeeper`` command::

    watchkeeper status | agents [NAME] | metrics | alerts | incidents [ID] | analysis
    watchkeeper actions | bus
    watchkeeper config remote | config set KEY=VALUE...
    watchkeeper command NAME --target T [--param k=v ...]
    watchkeeper approve ID | reject ID
    watchkeeper watch          (the live view)      watchkeeper cli   (the menu)

Each takes the API options of :func:`~watchkeeper.cli._common.api_command` (``--url``,
``--token``, ``--timeout``, ``--config`` and ``--json``, the API's JSON, for scripts).
Answers are read with the API's response models. Failures are one line on stderr and an
exit code from :data:`~watchkeeper.cli.client.EXIT_CODES`. Heavy imports (httpx, rich,
the models) happen inside the commands, so ``watchkeeper --help`` stays quick.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote

import typer

from watchkeeper.cli._common import ApiOptions, api_command, emit_json, make_console

if TYPE_CHECKING:
    from rich.console import RenderableType

    from watchkeeper.web.responses import FlatMetrics, MetricHistory

__all__ = ["register"]


# -- reading ------------------------------------------------------------------------------------
@api_command()
def status(api: ApiOptions) -> None:
    """The system at a glance: state, health score, agents, bus."""
    from watchkeeper.cli.views import system_view
    from watchkeeper.model.snapshot import SystemSnapshot

    with api.session() as client:
        data = client.get("/api/system")
    snapshot = SystemSnapshot.model_validate(data)
    api.show(data, lambda: system_view(snapshot, time.time()))


@api_command()
def agents(
    api: ApiOptions,
    name: Annotated[str | None, typer.Argument(help="One agent, in detail.")] = None,
) -> None:
    """Every agent's health, or one agent's health, status and commands."""
    from pydantic import TypeAdapter

    from watchkeeper.cli.views import agent_view, agents_table
    from watchkeeper.model.snapshot import AgentHealth
    from watchkeeper.web.responses import AgentDetail

    with api.session() as client:
        data = client.get(f"/api/agents/{name}" if name else "/api/agents")
    if name:
        detail = AgentDetail.model_validate(data)
        api.show(data, lambda: agent_view(name, detail, time.time()))
    else:
        table = TypeAdapter(dict[str, AgentHealth]).validate_python(data)
        api.show(data, lambda: agents_table(table, time.time()))


@api_command()
def metrics(
    api: ApiOptions,
    history: Annotated[
        str | None,
        typer.Option("--history", help="One metric's stored history, e.g. cpu.percent."),
    ] = None,
    range_: Annotated[str, typer.Option("--range", help="With --history: 15m, 6h, 7d.")] = "1h",
    flat: Annotated[bool, typer.Option("--flat", help="Dotted metric names.")] = False,
) -> None:
    """The latest sample: CPU, memory, disks, network, top processes, services."""
    from watchkeeper.cli.metrics_view import metrics_view
    from watchkeeper.cli.views import Levels
    from watchkeeper.model.metrics import MetricsSample
    from watchkeeper.web.responses import ConfigReply, FlatMetrics, MetricHistory, RecentPoints

    with api.session() as client:
        if history:
            data = client.get("/api/metrics/history", metric=history, range=range_)
            found = MetricHistory.model_validate(data)
            api.show(data, lambda: _history_view(found))
            return
        data = client.get("/api/metrics", flat="true" if flat else None)
        if api.as_json:
            emit_json(data)
            return
        if flat:
            values = FlatMetrics.model_validate(data)
            make_console().print(_flat_view(values))
            return
        sample = MetricsSample.model_validate(data)
        recent = RecentPoints.model_validate(client.get("/api/metrics/recent"))
        levels = Levels.from_config(ConfigReply.model_validate(client.get("/api/config")))
    make_console().print(metrics_view(sample, recent, time.time(), levels))


def _flat_view(data: FlatMetrics) -> RenderableType:
    from watchkeeper.cli._format import kv_grid

    return kv_grid((str(k), f"{v:g}") for k, v in sorted(data.metrics.items()))


def _history_view(data: MetricHistory) -> RenderableType:
    from rich.console import Group
    from rich.text import Text

    from watchkeeper.cli._format import clock, plain, sparkline

    # Steps with nothing stored (null) are gaps: left out of the summary line.
    points = [p for p in data.points if p.avg is not None and p.min is not None]
    head = Text.assemble(
        plain(data.metric, "bold"),
        f" from {clock(data.start)} to {clock(data.end)}, {len(points)} points of {data.step:g}s",
    )
    if not points:
        return Group(head, Text("No data in that range.", style="dim"))
    avg = [p.avg for p in points if p.avg is not None]
    stats = Text(
        f"min {min(p.min for p in points if p.min is not None):.4g} · "
        f"avg {sum(avg) / len(avg):.4g} · "
        f"max {max(p.max for p in points if p.max is not None):.4g}"
    )
    return Group(head, sparkline(list(avg), 80), stats)


@api_command()
def alerts(
    api: ApiOptions,
    range_: Annotated[
        str | None, typer.Option("--range", help="Also stored alerts of this span, e.g. 24h.")
    ] = None,
) -> None:
    """Alerts firing now (and, with --range, their history)."""
    from watchkeeper.cli.reports import alerts_table
    from watchkeeper.web.responses import AlertsReply

    with api.session() as client:
        data = client.get("/api/alerts", range=range_)
    reply = AlertsReply.model_validate(data)
    api.show(data, lambda: alerts_table(reply, time.time()))


@api_command()
def incidents(
    api: ApiOptions,
    incident_id: Annotated[
        str | None, typer.Argument(metavar="[ID]", help="One incident, in detail.")
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Also the resolved incidents kept in the history.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Incidents to list.")] = 50,
) -> None:
    """Open incidents: correlated alerts with their probable root cause and remedies."""
    from watchkeeper.cli.incidents_view import incident_detail_view, incidents_view
    from watchkeeper.web.responses import IncidentDetail, IncidentsReply

    if incident_id is not None and all_:
        from watchkeeper.cli._common import fail

        fail("--all lists incidents; with an ID there is only the one")
    with api.session() as client:
        if incident_id is not None:
            data = client.get(f"/api/incidents/{quote(incident_id, safe='')}")
        else:
            data = client.get("/api/incidents", state="all" if all_ else "open", limit=limit)
    if incident_id is not None:
        detail = IncidentDetail.model_validate(data)
        api.show(data, lambda: incident_detail_view(detail, time.time()))
        return
    reply = IncidentsReply.model_validate(data)
    api.show(data, lambda: incidents_view(reply, time.time()))


@api_command()
def analysis(
    api: ApiOptions,
    history: Annotated[
        int, typer.Option("--history", min=0, max=200, help="Also this many stored analyses.")
    ] = 0,
) -> None:
    """The latest analyses, the LLM's reasoning and recommendations, and its status."""
    from watchkeeper.cli.reports import analysis_view
    from watchkeeper.web.responses import AlertsReply, AnalysisReply, IncidentsReply

    with api.session() as client:
        data = client.get("/api/analysis", history=history or None)
        firing = None if api.as_json else AlertsReply.model_validate(client.get("/api/alerts"))
        open_now = None
        if not api.as_json:
            from watchkeeper.cli.client import ApiError

            with contextlib.suppress(ApiError):  # a server from before incidents has none
                open_now = IncidentsReply.model_validate(client.get("/api/incidents"))
    reply = AnalysisReply.model_validate(data)
    api.show(data, lambda: analysis_view(reply, firing, time.time(), open_now))


@api_command()
def actions(
    api: ApiOptions,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Audit records to show.")] = 15,
    target: Annotated[
        str | None, typer.Option("--target", help="Only the audit of this target.")
    ] = None,
) -> None:
    """Remediation: mode, actions awaiting approval, the audit trail, success rates."""
    from watchkeeper.cli.reports import remediation_view
    from watchkeeper.web.responses import RemediationReply

    with api.session() as client:
        data = client.get("/api/remediation", limit=limit, target=target)
    reply = RemediationReply.model_validate(data)
    api.show(data, lambda: remediation_view(reply, time.time(), limit=limit))


@api_command()
def bus(
    api: ApiOptions,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Recent messages to show.")] = 20,
    pattern: Annotated[str, typer.Option(help="Topic pattern, e.g. 'alert.*'.")] = "#",
    payload: Annotated[bool, typer.Option("--payload", help="With payloads (JSON).")] = False,
) -> None:
    """The message bus: traffic per topic, subscribers, the latest messages."""
    from watchkeeper.cli.control_views import bus_view
    from watchkeeper.web.responses import BusReply

    with api.session() as client:
        data = client.get(
            "/api/bus", limit=limit, pattern=pattern, payload="true" if payload else None
        )
    reply = BusReply.model_validate(data)
    api.show(data, lambda: bus_view(reply, time.time()))


@api_command()
def config_remote(api: ApiOptions) -> None:
    """The configuration the running system uses (secrets masked)."""
    from watchkeeper.cli.control_views import config_view
    from watchkeeper.web.responses import ConfigReply

    with api.session() as client:
        data = client.get("/api/config")
    reply = ConfigReply.model_validate(data)
    api.show(data, lambda: config_view(reply))


def register(app: typer.Typer) -> None:
    """Add the API subcommands to ``app``, and ``remote``/``set`` to its ``config`` group
    when it has one."""
    from watchkeeper.cli.control import approve, command, config_set, reject
    from watchkeeper.cli.interactive import cli, watch

    functions: tuple[Callable[..., None], ...] = (
        status,
        agents,
        metrics,
        alerts,
        incidents,
        analysis,
        actions,
        bus,
        command,
        approve,
        reject,
        watch,
        cli,
    )
    for function in functions:
        app.command()(function)
    for group in app.registered_groups:
        if group.name == "config" and group.typer_instance is not None:
            group.typer_instance.command("remote")(config_remote)
            group.typer_instance.command("set")(config_set)
