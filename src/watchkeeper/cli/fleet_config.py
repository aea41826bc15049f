"""``watchkeeper fleet server-config``: the nats-server configuration for a fleet.

Prints (or writes, mode 0600) a configuration with JetStream on, one account, a user for
the central and one per host, each host kept to its own subjects. Passwords not given in
``--passwords-file`` (TOML or ``user = "password"`` lines) are generated::

    watchkeeper fleet server-config --central central --host web-1 --host web-2 \\
        --output /etc/nats/fleet.conf

The command is registered on the ``fleet`` sub-app with :func:`register`.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated

import typer

from watchkeeper.cli._common import fail

__all__ = ["register", "server_config"]


def _passwords(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read --passwords-file {path}: {exc.__class__.__name__}")
    except tomllib.TOMLDecodeError as exc:
        fail(f'--passwords-file {path} is not TOML (user = "password" lines): {exc}')
    if not all(isinstance(v, str) for v in data.values()):
        fail(f"--passwords-file {path}: every value must be a quoted password")
    return {str(k): str(v) for k, v in data.items()}


def server_config(
    host: Annotated[
        list[str], typer.Option("--host", "-H", help="A host id of the fleet (repeat).")
    ],
    central: Annotated[str, typer.Option("--central", help="The central's host id.")],
    prefix: Annotated[str, typer.Option(help="The [bus] subject_prefix.")] = "wk",
    port: Annotated[int, typer.Option(help="Client port.")] = 4222,
    address: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    store_dir: Annotated[str, typer.Option(help="JetStream store directory.")] = "/var/lib/nats",
    passwords_file: Annotated[
        Path | None,
        typer.Option(help='TOML file of user = "password" lines; others are generated.'),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (mode 0600), not stdout.")
    ] = None,
) -> None:
    """Print the nats-server configuration for a fleet (users and permissions per host)."""
    from watchkeeper.fleet.serverconf import render_server_config

    try:
        text = render_server_config(
            host,
            central,
            prefix=prefix,
            passwords=_passwords(passwords_file),
            port=port,
            store_dir=store_dir,
            address=address,
        )
    except ValueError as exc:
        fail(str(exc))
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(output, 0o600)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc.__class__.__name__}")
    typer.echo(f"wrote {output} ({len(host)} hosts and the central; passwords inside, mode 0600)")


def register(fleet_app: typer.Typer) -> None:
    """Add ``server-config`` to the ``watchkeeper fleet`` sub-app."""
    fleet_app.command("server-config")(server_config)
