"""What the API subcommands share: their options, the client session, output helpers.

::

    with api_session(url, token, config, timeout) as api:   # ApiError -> one line, exit
        show(as_json, api.get("/api/system"), lambda: ...)
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from watchkeeper.cli.client import ApiClient
    from watchkeeper.config import Settings

__all__ = [
    "ConfigOption",
    "JsonOption",
    "TimeoutOption",
    "TokenOption",
    "UrlOption",
    "api_session",
    "emit_json",
    "fail",
    "make_console",
    "settings_for",
    "show",
]

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="watchkeeper's address (default: $WATCHKEEPER_URL, else web.host and web.port "
        "from the config).",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="API token (default: $WATCHKEEPER_TOKEN, web.token, or <data_dir>/api_token).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON.")]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=0.1, help="Seconds to wait for an answer.")
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file, read for the default URL and token (default: as for run).",
        show_default=False,
    ),
]


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit ``code`` (the same contract as the rest of the CLI)."""
    from watchkeeper.cli.app import fail as app_fail

    app_fail(message, code)


def settings_for(config: Path | None) -> tuple[Settings, Path | None]:
    from watchkeeper.cli.app import load_or_exit

    return load_or_exit(config)


def make_console() -> Console:
    from rich.console import Console

    return Console(highlight=False)


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


@contextmanager
def api_session(
    url: str | None, token: str | None, config: Path | None, timeout: float
) -> Iterator[ApiClient]:
    """A client for the resolved endpoint; any :class:`ApiError` becomes one line."""
    from watchkeeper.cli.client import ApiClient, ApiError, resolve_endpoint

    settings, _ = settings_for(config)
    try:
        endpoint = resolve_endpoint(url=url, token=token, settings=settings)
    except ApiError as exc:
        fail(exc.message, exc.exit_code)
    with ApiClient(endpoint, timeout=timeout) as api:
        try:
            yield api
        except ApiError as exc:
            message = exc.message
            if exc.exit_code == 3 and not api.endpoint.url_explicit:
                message += _hint_no_web(settings)
            fail(message, exc.exit_code)


def _hint_no_web(settings: Settings) -> str:
    from watchkeeper.cli.local import running_without_web

    pid = running_without_web(settings, time.time())
    if pid is None:
        return ""
    return f"; a watchkeeper (pid {pid}) runs on this data dir without its web server"


def show(as_json: bool, data: Any, render: Any) -> None:
    if as_json:
        emit_json(data)
    else:
        renderable: RenderableType = render()
        make_console().print(renderable)
