"""The subcommands for people at a terminal: ``watch`` (the live view, or the event stream
as JSON lines) and ``cli`` (the menu, starting watchkeeper in this process when none
answers)."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer

from watchkeeper.cli._common import ApiOptions, api_command, fail, make_console, settings_for

if TYPE_CHECKING:
    from watchkeeper.cli.client import ApiClient

__all__ = ["cli", "watch"]


@api_command(json_help="Follow the event stream as JSON lines.")
def watch(
    api: ApiOptions,
    every: Annotated[float, typer.Option(min=0.2, help="Seconds between refreshes.")] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="Draw one picture and exit.")] = False,
    count: Annotated[
        int | None, typer.Option(min=1, help="With --json: stop after this many events.")
    ] = None,
) -> None:
    """The live view: refreshes in place until q or Ctrl-C."""
    from watchkeeper.cli.live import dashboard, fetch_live, run_live
    from watchkeeper.cli.views import Levels
    from watchkeeper.web.responses import ConfigReply

    with api.session() as client:
        if api.as_json:
            _follow(client, count)
            return
        levels = Levels.from_config(ConfigReply.model_validate(client.get("/api/config")))
        if once:
            data = fetch_live(client, None, time.time())
            if data.error:
                fail(data.error, data.error_code or 3)
            make_console().print(dashboard(data, time.time(), url=client.url, levels=levels))
            return
        run_live(client, make_console(), every=every, levels=levels)


def _follow(api: ApiClient, count: int | None) -> None:
    seen = 0
    try:
        for event in api.events():
            typer.echo(json.dumps({"event": event.event, "data": event.data}, ensure_ascii=False))
            sys.stdout.flush()
            seen += 1
            if count is not None and seen >= count:
                return
    except KeyboardInterrupt:
        return


@api_command(json_help=None)
def cli(
    api: ApiOptions,
    local: Annotated[
        bool, typer.Option("--local", help="Always start watchkeeper inside this process.")
    ] = False,
    every: Annotated[float, typer.Option(min=0.2, help="Live Monitoring refresh, s.")] = 2.0,
) -> None:
    """The interactive menu. Without a running watchkeeper, starts one in this process."""
    from rich.text import Text

    from watchkeeper.cli.client import ApiClient, ApiError, resolve_endpoint
    from watchkeeper.cli.local import LocalSystem, running_without_web
    from watchkeeper.cli.menu import Menu

    settings, path = settings_for(api.config)
    try:
        endpoint = resolve_endpoint(url=api.url, token=api.token, settings=settings)
    except ApiError as exc:
        fail(exc.message, exc.exit_code)
    out = make_console()
    with ApiClient(endpoint, timeout=api.timeout) as probe:
        answering = not local and probe.healthy()
    if answering:
        with ApiClient(endpoint, timeout=api.timeout) as client:
            Menu(client, out, every=every).run()
        return
    if endpoint.url_explicit and not local:
        fail(
            f"no watchkeeper answers at {endpoint.url} (start it with `watchkeeper run`, "
            "or leave out --url to start one in this process)",
            3,
        )
    pid = running_without_web(settings, time.time())
    if pid is not None:
        fail(
            f"a watchkeeper (pid {pid}) runs on {settings.data_dir} without its web server; "
            "the menu needs its API: restart it with the web enabled, or use another "
            "--data-dir (WATCHKEEPER_DATA_DIR)",
            3,
        )
    why = "--local given" if local else f"nothing answered at {endpoint.url}"
    out.print(Text(f"Starting watchkeeper in this process ({why})…"))
    system = LocalSystem(settings, path)
    try:
        try:
            local_endpoint = system.start()
        except ApiError as exc:
            fail(exc.message, exc.exit_code)
        with ApiClient(local_endpoint, timeout=api.timeout) as client:
            note = (
                f"In-process watchkeeper ({why}): it runs inside this menu and stops when you quit."
            )
            Menu(client, out, note=note, every=every).run()
    finally:
        # Whatever ended the menu (Quit, Ctrl-C, an error), the system must not outlive it.
        if system.running:
            out.print(Text("Stopping the in-process watchkeeper…"))
            system.stop()
            out.print(Text("Stopped."))
        else:
            system.stop()
