"""``watchkeeper fleet``: the fleet view of the central host, in the terminal.

It talks to the central watchkeeper's ``/api/fleet`` like the other read commands talk to
theirs (``--url``, ``--token``, ``--json``)::

    watchkeeper fleet [--json]                   every host, worst first, and fleet incidents
    watchkeeper fleet host web-2 [--json]        one host: health, alerts, approvals, actions
    watchkeeper fleet approve web-2 3f9a0c1d2e4b [--by alice]
    watchkeeper fleet reject web-2 3f9a0c1d2e4b

An approval is sent to that host's remediator; its policy gate decides and its audit
records who approved it from which host. A daemon that is not the central host, or one
that does not answer, is one line on stderr.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import typer

from watchkeeper.cli._common import ApiOptions, api_command, emit_json, fail, make_console

if TYPE_CHECKING:
    from rich.console import RenderableType

    from watchkeeper.cli.client import ApiClient

__all__ = ["fleet_app", "register"]

fleet_app = typer.Typer(
    help="The fleet view on the central host: every host, one host, approvals for any host.",
    invoke_without_command=True,
    no_args_is_help=False,
)

_BY_HELP = "Your name, for that host's audit (default: your login name)."
_STATE_MARK = {"up": "up", "stale": "STALE", "lost": "LOST"}


def _checked(host_id: str) -> str:
    """``host_id`` if it can name a host, else one line and exit 2 (before any request)."""
    from watchkeeper.config.fleet import check_host_id

    try:
        return quote(check_host_id(host_id), safe="")
    except ValueError as exc:
        fail(str(exc), 2)


def _call(client: ApiClient, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    """One request; the API's own words, as one line, for any answer but a success."""
    response = client._send(method, path, **kwargs)
    status = response.status_code
    if status == 401:
        raise client._error_for(response, path)
    if "json" not in response.headers.get("content-type", ""):
        raise client._error_for(response, path)
    data = client._decode(response, path)
    detail = data.get("detail") if isinstance(data, dict) else None
    if status == 404 and not isinstance(detail, str):
        fail(f"{client.url} has no {path}: it is not a watchkeeper with the fleet view", 3)
    if status in (404, 409, 422) and isinstance(detail, str):
        fail(detail, 2)
    if status in (502, 504) and isinstance(detail, str):
        fail(detail, 1)
    if status >= 400:
        raise client._error_for(response, path)
    return status, data


def _hosts_view(hosts: dict[str, Any], incidents: dict[str, Any], now: float) -> RenderableType:
    from rich.console import Group
    from rich.text import Text

    from watchkeeper.cli._format import ago, new_table, plain, severity_style, state_style

    counts = hosts.get("counts", {})
    head = Text(
        f"{hosts.get('total', 0)} hosts: {counts.get('up', 0)} up, "
        f"{counts.get('stale', 0)} stale, {counts.get('lost', 0)} lost"
    )
    head.append(" · central ")
    head.append_text(plain(hosts.get("central")))
    parts: list[RenderableType] = [head]
    open_ones = [i for i in incidents.get("incidents", []) if i.get("state") == "open"]
    if open_ones:
        table = new_table(
            "Fleet incidents", [("Severity", "key"), ("Hosts", "num"), ("Incident", "text")]
        )
        for item in open_ones:
            severity = str(item.get("severity", ""))
            table.add_row(
                plain(severity, severity_style(severity)),
                str(len(item.get("hosts", []))),
                plain(item.get("title")),
            )
        parts.append(table)
    table = new_table(
        "Hosts",
        [
            ("Host", "key"),
            ("Name", "text"),
            ("State", "key"),
            ("Health", "key"),
            ("Score", "num"),
            ("Alerts", "num"),
            ("Incidents", "num"),
            ("Approvals", "num"),
            ("Last seen", "key"),
        ],
    )
    for row in hosts.get("hosts", []):
        state = str(row.get("state", ""))
        status = str(row.get("status", ""))
        score = row.get("score")
        seen = row.get("last_seen")
        table.add_row(
            plain(row.get("host")),
            plain(row.get("name"), limit=40),
            plain(_STATE_MARK.get(state, state), "bold red" if state != "up" else "green"),
            plain(status, state_style(status)),
            "–" if score is None else f"{score:.0f}",
            str(row.get("firing", 0)),
            str(row.get("incidents", 0)),
            str(row.get("pending_approvals", 0)),
            ago(seen, now) if isinstance(seen, (int, float)) else "–",
        )
    if not hosts.get("hosts"):
        parts.append(Text("No host has been heard from yet."))
    else:
        parts.append(table)
    return Group(*parts)


def _host_view(data: dict[str, Any], now: float) -> RenderableType:
    from rich.console import Group
    from rich.text import Text

    from watchkeeper.cli._format import ago, clock, kv_grid, new_table, plain, severity_style

    summary = data.get("summary") or {}
    sample = data.get("sample") or {}
    score = summary.get("score")
    seen = summary.get("last_seen")
    rows: list[tuple[str, Text | str]] = [
        ("Host", plain(summary.get("host"))),
        ("Name", plain(summary.get("name"), limit=80)),
        ("State", plain(summary.get("state"))),
        ("Health", plain(summary.get("status"))),
        ("Score", "–" if score is None else f"{score:.0f}/100"),
        ("Last seen", ago(seen, now) if isinstance(seen, (int, float)) else "–"),
        ("Agents", plain(", ".join(str(a) for a in summary.get("agents", [])))),
    ]
    cpu = (sample.get("cpu") or {}).get("percent")
    memory = (sample.get("memory") or {}).get("percent")
    if cpu is not None:
        rows.append(("CPU", f"{cpu:.1f}%"))
    if memory is not None:
        rows.append(("Memory", f"{memory:.1f}%"))
    parts: list[RenderableType] = [kv_grid(rows)]
    alerts = data.get("alerts") or []
    if alerts:
        table = new_table("Alerts", [("Severity", "key"), ("Rule", "key"), ("Summary", "text")])
        for alert in alerts:
            severity = str(alert.get("severity", ""))
            table.add_row(
                plain(severity, severity_style(severity)),
                plain(alert.get("rule")),
                plain(alert.get("summary")),
            )
        parts.append(table)
    else:
        parts.append(Text("No alerts firing."))
    pending = data.get("approvals") or []
    if pending:
        table = new_table(
            "Waiting for approval",
            [("Id", "key"), ("Action", "key"), ("Target", "text"), ("Reason", "text")],
        )
        for record in pending:
            table.add_row(
                plain(record.get("id")),
                plain(record.get("action")),
                plain(record.get("target")),
                plain(record.get("reason")),
            )
        parts.append(table)
    actions = data.get("actions") or []
    if actions:
        table = new_table(
            "Recent actions",
            [
                ("When", "key"),
                ("Action", "key"),
                ("Target", "text"),
                ("Outcome", "key"),
                ("By", "text"),
            ],
        )
        for record in actions[:15]:
            table.add_row(
                clock(record.get("created_at")),
                plain(record.get("action")),
                plain(record.get("target")),
                plain(record.get("outcome")),
                plain(record.get("proposed_by")),
            )
        parts.append(table)
    return Group(*parts)


@fleet_app.callback()
@api_command()
def fleet(api: ApiOptions, ctx: typer.Context) -> None:
    """Every host of the fleet (worst first) and the fleet incidents."""
    if ctx.invoked_subcommand is not None:
        return
    with api.session() as client:
        _, hosts = _call(client, "GET", "/api/fleet/hosts")
        _, incidents = _call(client, "GET", "/api/fleet/incidents")
    if api.as_json:
        emit_json({**hosts, "incidents": incidents.get("incidents", [])})
        return
    make_console().print(_hosts_view(hosts, incidents, time.time()))


@fleet_app.command("host")
@api_command()
def host(
    api: ApiOptions,
    host_id: Annotated[str, typer.Argument(metavar="HOST", help="The host's id.")],
) -> None:
    """One host as the central host last heard of it."""
    with api.session() as client:
        _, data = _call(client, "GET", f"/api/fleet/hosts/{_checked(host_id)}")
    api.show(data, lambda: _host_view(data, time.time()))


def _login() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _answer(api: ApiOptions, verb: str, host_id: str, action_id: str, by: str | None) -> None:
    by = by or _login()
    path = f"/api/fleet/hosts/{_checked(host_id)}/{verb}/{quote(action_id, safe='')}"
    with api.session() as client:
        _, data = _call(client, "POST", path, json={"by": by}, timeout=75.0)
    if api.as_json:
        emit_json(data)
        return
    outcome = data.get("outcome", "done")
    who = data.get("by", by)
    typer.echo(f"{host_id}: {action_id} {outcome} (by {who})")


@fleet_app.command("approve")
@api_command()
def approve(
    api: ApiOptions,
    host_id: Annotated[str, typer.Argument(metavar="HOST", help="The host's id.")],
    action_id: Annotated[str, typer.Argument(metavar="ID", help="The pending action's id.")],
    by: Annotated[str | None, typer.Option("--by", help=_BY_HELP, show_default=False)] = None,
) -> None:
    """Approve an action waiting on a host; that host's policy gate decides and runs it."""
    _answer(api, "approvals", host_id, action_id, by)


@fleet_app.command("reject")
@api_command()
def reject(
    api: ApiOptions,
    host_id: Annotated[str, typer.Argument(metavar="HOST", help="The host's id.")],
    action_id: Annotated[str, typer.Argument(metavar="ID", help="The pending action's id.")],
    by: Annotated[str | None, typer.Option("--by", help=_BY_HELP, show_default=False)] = None,
) -> None:
    """Reject an action waiting on a host; its audit records who said no, from where."""
    _answer(api, "rejections", host_id, action_id, by)


def register(app: typer.Typer) -> None:
    """Add ``watchkeeper fleet`` (with ``server-config``) to the ``watchkeeper`` command."""
    from watchkeeper.cli.fleet_config import register as register_server_config

    register_server_config(fleet_app)
    app.add_typer(fleet_app, name="fleet")
