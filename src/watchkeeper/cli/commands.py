"""The scriptable subcommands that read and steer a running watchkeeper over its API.

``register(app)`` adds them to the ``watchkeeper`` command::

    watchkeeper status | agents [NAME] | metrics | alerts | analysis | actions | bus
    watchkeeper config remote | config set KEY=VALUE...
    watchkeeper command NAME --target T [--param k=v ...]
    watchkeeper approve ID | reject ID
    watchkeeper watch          (the live view)      watchkeeper cli   (the menu)

Each takes ``--url``, ``--token``, ``--timeout`` and ``--json`` (the API's JSON, for
scripts). Failures are one line on stderr and an exit code from
:data:`~watchkeeper.cli.client.EXIT_CODES`. Heavy imports (httpx, rich) happen inside
the commands, so ``watchkeeper --help`` stays quick.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from watchkeeper.cli._common import (
    ConfigOption,
    JsonOption,
    TimeoutOption,
    TokenOption,
    UrlOption,
    api_session,
    emit_json,
    make_console,
    show,
)

if TYPE_CHECKING:
    from rich.console import RenderableType

__all__ = ["register"]


# -- reading ------------------------------------------------------------------------------------
def status(
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
    config: ConfigOption = None,
) -> None:
    """The system at a glance: state, health score, agents, bus."""
    from watchkeeper.cli.views import system_view

    with api_session(url, token, config, timeout) as api:
        data = api.get("/api/system")
    show(as_json, data, lambda: system_view(data, time.time()))


def agents(
    name: Annotated[str | None, typer.Argument(help="One agent, in detail.")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
    config: ConfigOption = None,
) -> None:
    """Every agent's health, or one agent's health, status and commands."""
    from watchkeeper.cli.views import agent_view, agents_table

    with api_session(url, token, config, timeout) as api:
        data = api.get(f"/api/agents/{name}" if name else "/api/agents")
    if name:
        show(as_json, data, lambda: agent_view(name, data, time.time()))
    else:
        show(as_json, data, lambda: agents_table(data, time.time()))


def metrics(
    history: Annotated[
        str | None,
        typer.Option("--history", help="One metric's stored history, e.g. cpu.percent."),
    ] = None,
    range_: Annotated[str, typer.Option("--range", help="With --history: 15m, 6h, 7d.")] = "1h",
    flat: Annotated[bool, typer.Option("--flat", help="Dotted metric names.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
    config: ConfigOption = None,
) -> None:
    """The latest sample: CPU, memory, disks, network, top processes, services."""
    from watchkeeper.cli.metrics_view import metrics_view
    from watchkeeper.cli.views import Levels

    with api_session(url, token, config, timeout) as api:
        if history:
            data = api.get("/api/metrics/history", metric=history, range=range_)
            show(as_json, data, lambda: _history_view(data))
            return
        data = api.get("/api/metrics", flat="true" if flat else None)
        if as_json:
            emit_json(data)
            return
        if flat:
            show(False, data, lambda: _flat_view(data))
            return
        recent = api.get("/api/metrics/recent")
        levels = Levels.from_config(api.get("/api/config"))
    make_console().print(metrics_view(data, recent, time.time(), levels))


def _flat_view(data: Any) -> RenderableType:
    from watchkeeper.cli._format import kv_grid

    values = data.get("metrics") or {}
    return kv_grid((str(k), f"{v:g}") for k, v in sorted(values.items()))


def _history_view(data: Any) -> RenderableType:
    from rich.console import Group
    from rich.text import Text

    from watchkeeper.cli._format import clock, plain, sparkline

    points = [p for p in data.get("points") or [] if isinstance(p, dict)]
    avg = [p.get("avg") for p in points]
    head = Text.assemble(
        plain(data.get("metric"), "bold"),
        f" from {clock(data.get('start'))} to {clock(data.get('end'))}, "
        f"{len(points)} points of {data.get('step', 0):g}s",
    )
    if not points:
        return Group(head, Text("No data in that range.", style="dim"))
    lows = [p["min"] for p in points if isinstance(p.get("min"), (int, float))]
    highs = [p["max"] for p in points if isinstance(p.get("max"), (int, float))]
    known = [a for a in avg if isinstance(a, (int, float))]
    stats = Text(
        f"min {min(lows, default=0):.4g} · avg {sum(known) / max(1, len(known)):.4g} · "
        f"max {max(highs, default=0):.4g}"
    )
    return Group(head, sparkline(avg, 80), stats)


def alerts(
    range_: Annotated[
        str | None, typer.Option("--range", help="Also stored alerts of this span, e.g. 24h.")
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
    config: ConfigOption = None,
) -> None:
    """Alerts firing now (and, with --range, their history)."""
    from watchkeeper.cli.reports import alerts_table

    with api_session(url, token, config, timeout) as api:
        data = api.get("/api/alerts", range=range_)
    show(as_json, data, lambda: alerts_table(data, time.time()))


def analysis(
    history: Annotated[
        int, typer.Option("--history", min=0, max=200, help="Also this many stored analyses.")
    ] = 0,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
    config: ConfigOption = None,
) -> None:
    """The latest analyses, the LLM's reasoning and recommendations, and its status."""
    from watchkeeper.cli.reports import analysis_view

    with api_session(url, token, config, timeout) as api:
        data = api.get("/api/analysis", history=history or None)
        firing = None if as_json else api.get("/api/alerts")
    show(as_json, data, lambda: analysis_view(data, firing, time.time()))


def actions(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Audit records to show.")] = 15,
    target: Annotated[
        str | None, typer.Option("--target", help="Only the audit of this target.")
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
    config: ConfigOption = None,
) -> None:
    """Remediation: mode, actions awaiting approval, the audit trail, success rates."""
    from watchkeeper.cli.reports import remediation_view

    with api_session(url, token, config, timeout) as api:
        data = api.get("/api/remediation", limit=limit, target=target)
    show(as_json, data, lambda: remediation_view(data, time.time(), limit=limit))


def bus(
    limit: Annotated[int, typer.Option(min=1, max=500, help="Recent messages to show.")] = 20,
    pattern: Annotated[str, typer.Option(help="Topic pattern, e.g. 'alert.*'.")] = "#",
    payload: Annotated[bool, typer.Option("--payload", help="With payloads (JSON).")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
    config: ConfigOption = None,
) -> None:
    """The message bus: traffic per topic, subscribers, the latest messages."""
    from watchkeeper.cli.control_views import bus_view

    with api_session(url, token, config, timeout) as api:
        data = api.get(
            "/api/bus", limit=limit, pattern=pattern, payload="true" if payload else None
        )
    show(as_json, data, lambda: bus_view(data, time.time()))


def config_remote(
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
    config: ConfigOption = None,
) -> None:
    """The configuration the running system uses (secrets masked)."""
    from watchkeeper.cli.control_views import config_view

    with api_session(url, token, config, timeout) as api:
        data = api.get("/api/config")
    show(as_json, data, lambda: config_view(data))


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
