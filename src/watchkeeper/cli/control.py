"""The subcommands that change the running system: ``command``, ``approve``, ``reject``
and ``config set``. Each goes through the API's one door for its kind of change (a bus
command to an agent, or a validated live-config patch), and exits 1 when it was not done::

    watchkeeper command pause --target analyzer
    watchkeeper approve 3f2a9c41d0e2
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from watchkeeper.cli._common import (
    ConfigOption,
    JsonOption,
    TimeoutOption,
    TokenOption,
    UrlOption,
    api_session,
    emit_json,
    fail,
    make_console,
)

if TYPE_CHECKING:
    from watchkeeper.cli.client import CommandResult

__all__ = ["approve", "command", "config_set", "reject"]


def config_set(
    pairs: Annotated[list[str], typer.Argument(help="KEY=VALUE (dotted key, JSON value).")],
    persist: Annotated[
        bool, typer.Option("--persist", help="Also write the change to the config file.")
    ] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
    config: ConfigOption = None,
) -> None:
    """Change live settings on the running system (thresholds, remediation, ...)."""
    from watchkeeper.cli.app import parse_sets

    changes = parse_sets(pairs)
    with api_session(url, token, config, timeout) as api:
        data = api.patch_config(changes, persist=persist)
    if as_json:
        emit_json(data)
        return
    change = data.get("change") or {}
    previous = change.get("previous") or {}
    for key, value in (change.get("changes") or {}).items():
        typer.echo(f"{key}: {json.dumps(previous.get(key))} -> {json.dumps(value)}")
    if change.get("persisted"):
        typer.echo(f"written to {change.get('path')}")


# -- changing -----------------------------------------------------------------------------------
_FAILED_OUTCOMES = {"refused", "failed", "timed_out", "gave_up"}


def _report(result: CommandResult, as_json: bool) -> None:
    """Print a command's reply; exit 1 when it was not done."""
    from watchkeeper.cli.control_views import command_view

    if as_json:
        emit_json(result.body)
    else:
        make_console().print(command_view(result.body))
    outcomes = [
        (reply.get("record") or {}).get("outcome")
        for reply in (result.body.get("replies") or {}).values()
        if isinstance(reply, dict)
    ]
    if not result.ok or any(o in _FAILED_OUTCOMES for o in outcomes):
        raise typer.Exit(1)


def command(
    name: Annotated[str, typer.Argument(help="health_check, pause, resume, restart, ...")],
    target: Annotated[str, typer.Option("--target", "-t", help="An agent's name, or all.")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="KEY=VALUE (a string) or KEY:=JSON; repeatable."),
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
    config: ConfigOption = None,
) -> None:
    """Send a command to one agent or to all, and show each reply."""
    from watchkeeper.cli.client import ApiError
    from watchkeeper.cli.params import add_process_identity, parse_params

    try:
        params = parse_params(param or [])
    except ApiError as exc:
        fail(exc.message, exc.exit_code)
    with api_session(url, token, config, timeout) as api:
        if name == "run_action":
            params = add_process_identity(api, params)
        result = api.command(name, target, params)
    _report(result, as_json)


def _decide(
    verb: str,
    action_id: str,
    url: str | None,
    token: str | None,
    config: Path | None,
    timeout: float,
    as_json: bool,
) -> None:
    with api_session(url, token, config, timeout) as api:
        result = api.command(verb, "remediator", {"id": action_id})
    reply = (result.body.get("replies") or {}).get("remediator") or {}
    error = str(reply.get("error") or "")
    if not result.ok and error.startswith("no pending action"):
        fail(f"{error}; `watchkeeper actions` lists the ids awaiting approval")
    _report(result, as_json)


def approve(
    action_id: Annotated[str, typer.Argument(metavar="ID", help="The pending action's id.")],
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
    config: ConfigOption = None,
) -> None:
    """Approve an action awaiting approval; it runs through the policy at once."""
    _decide("approve", action_id, url, token, config, timeout, as_json)


def reject(
    action_id: Annotated[str, typer.Argument(metavar="ID", help="The pending action's id.")],
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
    timeout: TimeoutOption = 10.0,
    config: ConfigOption = None,
) -> None:
    """Reject an action awaiting approval; the audit trail records who said no."""
    _decide("reject", action_id, url, token, config, timeout, as_json)
