"""The subcommands that change the running system: ``command``, ``approve``, ``reject``
and ``config set``. Each goes through the API's one door for its kind of change (a bus
command to an agent, or a validated live-config patch), and exits 1 when it was not done::

    watchkeeper command pause --target analyzer
    watchkeeper approve 3f2a9c41d0e2
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from watchkeeper.cli._common import (
    ApiOptions,
    api_command,
    emit_json,
    fail,
    make_console,
    parse_sets,
)

if TYPE_CHECKING:
    from watchkeeper.cli.client import CommandResult

__all__ = ["approve", "command", "config_set", "reject"]


@api_command()
def config_set(
    api: ApiOptions,
    pairs: Annotated[list[str], typer.Argument(help="KEY=VALUE (dotted key, JSON value).")],
    persist: Annotated[
        bool, typer.Option("--persist", help="Also write the change to the config file.")
    ] = False,
) -> None:
    """Change live settings on the running system (thresholds, remediation, ...)."""
    from watchkeeper.web.responses import ConfigPatchReply

    changes = parse_sets(pairs)
    with api.session() as client:
        data = client.patch_config(changes, persist=persist)
    if api.as_json:
        emit_json(data)
        return
    change = ConfigPatchReply.model_validate(data).change
    for key, value in change.changes.items():
        before = change.previous.get(key)
        typer.echo(f"{key}: {json.dumps(before)} -> {json.dumps(value)}")
    if change.persisted:
        typer.echo(f"written to {change.path}")


# -- changing -----------------------------------------------------------------------------------
_FAILED_OUTCOMES = {"refused", "failed", "timed_out", "gave_up"}


def _report(result: CommandResult, as_json: bool) -> None:
    """Print a command's reply; exit 1 when it was not done."""
    from watchkeeper.cli.control_views import command_view
    from watchkeeper.web.responses import CommandAnswer

    answer = CommandAnswer.model_validate(result.body)
    if as_json:
        emit_json(result.body)
    else:
        make_console().print(command_view(answer))
    if not result.ok or any(o in _FAILED_OUTCOMES for o in answer.outcomes()):
        raise typer.Exit(1)


@api_command()
def command(
    api: ApiOptions,
    name: Annotated[str, typer.Argument(help="health_check, pause, resume, restart, ...")],
    target: Annotated[str, typer.Option("--target", "-t", help="An agent's name, or all.")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="KEY=VALUE (a string) or KEY:=JSON; repeatable."),
    ] = None,
) -> None:
    """Send a command to one agent or to all, and show each reply."""
    from watchkeeper.cli.client import ApiError
    from watchkeeper.cli.params import add_process_identity, parse_params

    try:
        params = parse_params(param or [])
    except ApiError as exc:
        fail(exc.message, exc.exit_code)
    with api.session() as client:
        if name == "run_action":
            params = add_process_identity(client, params)
        result = client.command(name, target, params)
    _report(result, api.as_json)


def _decide(verb: str, action_id: str, api: ApiOptions) -> None:
    from watchkeeper.web.responses import CommandAnswer

    with api.session() as client:
        result = client.command(verb, "remediator", {"id": action_id})
    replies = CommandAnswer.model_validate(result.body).replies
    error = (replies["remediator"].error if "remediator" in replies else None) or ""
    if not result.ok and error.startswith("no pending action"):
        fail(f"{error}; `watchkeeper actions` lists the ids awaiting approval")
    _report(result, api.as_json)


@api_command()
def approve(
    api: ApiOptions,
    action_id: Annotated[str, typer.Argument(metavar="ID", help="The pending action's id.")],
) -> None:
    """Approve an action awaiting approval; it runs through the policy at once."""
    _decide("approve", action_id, api)


@api_command()
def reject(
    api: ApiOptions,
    action_id: Annotated[str, typer.Argument(metavar="ID", help="The pending action's id.")],
) -> None:
    """Reject an action awaiting approval; the audit trail records who said no."""
    _decide("reject", action_id, api)
