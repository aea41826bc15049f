"""What every subcommand shares: failing in one line, reading settings, the API options.

The connection options (``--url``, ``--token``, ``--timeout``, ``--config``) and
``--json`` are declared once, here; :func:`api_command` adds them to a subcommand,
which receives them as one :class:`ApiOptions`::

    @api_command()
    def status(api: ApiOptions) -> None:
        with api.session() as client:                 # ApiError -> one line, exit
            data = client.get("/api/system")
        api.show(data, lambda: system_view(data))

This module imports nothing else of the CLI at import time, so every other CLI module
may import it.
"""

from __future__ import annotations

import functools
import inspect
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Concatenate, NoReturn, ParamSpec, cast

import typer

from watchkeeper.config import ConfigError, Settings, dotted_to_nested, load_settings
from watchkeeper.model.datacheck import DataError, loads_strict

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from watchkeeper.cli.client import ApiClient

__all__ = [
    "ApiOptions",
    "api_command",
    "emit_json",
    "fail",
    "load_or_exit",
    "make_console",
    "parse_sets",
    "settings_for",
]

P = ParamSpec("P")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line to stderr and exit with ``code``: how every CLI failure ends."""
    typer.echo(f"watchkeeper: {message}", err=True)
    raise typer.Exit(code)


def load_or_exit(
    config: Path | None, flags: dict[str, Any] | None = None
) -> tuple[Settings, Path | None]:
    """The settings (and the file they came from); a bad config file is one line, exit 2."""
    try:
        return load_settings(config, flags=flags)
    except ConfigError as exc:
        fail(f"config error: {exc}")


def settings_for(config: Path | None) -> tuple[Settings, Path | None]:
    """The settings an API subcommand reads its default URL and token from."""
    return load_or_exit(config)


def _parse_value(key: str, raw: str) -> Any:
    """A ``--set`` value as JSON when it is JSON, else the text itself; JSON that is
    nested too deeply or holds a non-finite number is refused (exit 2)."""
    try:
        return loads_strict(raw)
    except DataError as exc:
        fail(f"--set {key}: {exc}")
    except ValueError:
        return raw


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """``["web.port=8080", "remediation.mode=dry_run"]`` → nested flags."""
    flat: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            fail(f"--set expects KEY=VALUE, got {pair!r}")
        flat[key.strip()] = _parse_value(key.strip(), raw)
    try:
        return dotted_to_nested(flat)
    except ConfigError as exc:
        fail(f"config error: {exc}")


def make_console() -> Console:
    from rich.console import Console

    return Console(highlight=False)


def emit_json(data: Any) -> None:
    """Print JSON data (models included) for scripts, indented."""
    from pydantic import BaseModel

    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json", exclude_unset=True)
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


# -- the API options, declared once --------------------------------------------------------------
@dataclass(frozen=True)
class ApiOptions:
    """How an API subcommand reaches watchkeeper, and whether it prints JSON."""

    url: str | None = None
    token: str | None = None
    as_json: bool = False
    timeout: float = 10.0
    config: Path | None = None

    @contextmanager
    def session(self) -> Iterator[ApiClient]:
        """A client for the resolved endpoint; any :class:`ApiError` becomes one line."""
        from watchkeeper.cli.client import ApiClient, ApiError, resolve_endpoint

        settings, _ = settings_for(self.config)
        try:
            endpoint = resolve_endpoint(url=self.url, token=self.token, settings=settings)
        except ApiError as exc:
            fail(exc.message, exc.exit_code)
        with ApiClient(endpoint, timeout=self.timeout) as api:
            try:
                yield api
            except ApiError as exc:
                message = exc.message
                if exc.exit_code == 3 and not api.endpoint.url_explicit:
                    message += _hint_no_web(settings)
                fail(message, exc.exit_code)

    def show(self, data: Any, render: Callable[[], RenderableType]) -> None:
        """``data`` as JSON with ``--json``, else what ``render`` draws from it."""
        if self.as_json:
            emit_json(data)
        else:
            make_console().print(render())


def _hint_no_web(settings: Settings) -> str:
    from watchkeeper.cli.local import running_without_web

    pid = running_without_web(settings, time.time())
    if pid is None:
        return ""
    return f"; a watchkeeper (pid {pid}) runs on this data dir without its web server"


def _api_parameters(json_help: str | None) -> list[inspect.Parameter]:
    def option(name: str, default: Any, annotation: Any) -> inspect.Parameter:
        kind = inspect.Parameter.KEYWORD_ONLY
        return inspect.Parameter(name, kind, default=default, annotation=annotation)

    url = Annotated[
        str | None,
        typer.Option(
            "--url",
            help="watchkeeper's address (default: $WATCHKEEPER_URL, else web.host and "
            "web.port from the config).",
            show_default=False,
        ),
    ]
    token = Annotated[
        str | None,
        typer.Option(
            "--token",
            help="API token (default: $WATCHKEEPER_TOKEN, web.token, or <data_dir>/api_token).",
            show_default=False,
        ),
    ]
    timeout = Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds to wait for an answer.")
    ]
    config = Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Config file, read for the default URL and token (default: as for run).",
            show_default=False,
        ),
    ]
    params = [option("url", None, url), option("token", None, token)]
    if json_help is not None:
        as_json = Annotated[bool, typer.Option("--json", help=json_help)]
        params.append(option("as_json", False, as_json))
    params += [option("timeout", 10.0, timeout), option("config", None, config)]
    return params


def api_command(
    json_help: str | None = "Print the API's JSON.",
) -> Callable[[Callable[Concatenate[ApiOptions, P], None]], Callable[P, None]]:
    """Give a subcommand the API options; it receives them first, as one ``ApiOptions``.

    ``json_help`` words ``--json`` for this command; None leaves ``--json`` out.
    """
    extra = _api_parameters(json_help)
    names = [p.name for p in extra]

    def decorate(function: Callable[Concatenate[ApiOptions, P], None]) -> Callable[P, None]:
        own = list(inspect.signature(function, eval_str=True).parameters.values())[1:]
        taken = {p.name for p in own} & set(names)
        if taken:
            raise TypeError(f"{function.__name__}: {sorted(taken)} are the API options")

        @functools.wraps(function)
        def command(*args: P.args, **kwargs: P.kwargs) -> None:
            given = cast(dict[str, Any], kwargs)
            options = ApiOptions(**{name: given.pop(name) for name in names if name in given})
            function(options, *args, **kwargs)

        signature = inspect.Signature([*own, *extra])
        command.__signature__ = signature  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
        return command

    return decorate
