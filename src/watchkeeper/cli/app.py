"""The ``watchkeeper`` command.

Every failure a person can cause (a bad flag, a bad config file, a port in use) ends with
one line on stderr that says what to fix, and exit code 2; nothing prints a traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from watchkeeper import __version__
from watchkeeper.cli._common import fail, load_or_exit, parse_sets
from watchkeeper.cli.commands import register
from watchkeeper.config import Settings

__all__ = ["app", "main"]

app = typer.Typer(
    name="watchkeeper",
    help="Watch this host, reason about what goes wrong, and heal what is safe to heal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
config_app = typer.Typer(help="Show or check the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
from watchkeeper.cli.llm import llm_app  # noqa: E402  (the sub-apps, in help order)

app.add_typer(llm_app, name="llm")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file (default: $WATCHKEEPER_CONFIG, else ./watchkeeper.toml if present).",
        show_default=False,
    ),
]


def _merge_flag(flags: dict[str, Any], dotted: str, value: Any) -> None:
    if value is None:
        return
    node = flags
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


IntervalOption = Annotated[
    float | None, typer.Option(help="Seconds between checks for every agent (at least 0.1).")
]
DataDirOption = Annotated[Path | None, typer.Option(help="Where logs, status and history go.")]
HostOption = Annotated[str | None, typer.Option(help="Address the web server binds to.")]
PortOption = Annotated[int | None, typer.Option(help="Port of the web server.", min=0, max=65535)]
ModeOption = Annotated[str | None, typer.Option(help="Remediation mode: auto, approve or dry_run.")]
PersonalityOption = Annotated[str | None, typer.Option(help="witty or plain.")]
LogLevelOption = Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")]
AgentsOption = Annotated[
    str | None,
    typer.Option(
        "--agents",
        help="Run only these agents, comma-separated (sensor,analyzer,remediator,"
        "communicator): place them on different hosts of a fleet.",
    ),
]
AGENT_NAMES = ("sensor", "analyzer", "remediator", "communicator")
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Any setting as KEY=VALUE (dotted key, JSON value)."),
]


def _run_flags(
    set_: list[str] | None,
    interval: float | None,
    data_dir: Path | None,
    host: str | None,
    port: int | None,
    mode: str | None,
    personality: str | None,
    log_level: str | None,
    agents: str | None = None,
) -> dict[str, Any]:
    """``--set`` pairs with the named flags of ``run``/``web`` laid over them."""
    flags = parse_sets(set_ or [])
    if agents is not None:
        chosen = [name.strip() for name in agents.split(",") if name.strip()]
        unknown = [name for name in chosen if name not in AGENT_NAMES]
        if unknown or not chosen:
            fail(
                f"--agents takes a comma-separated list of {', '.join(AGENT_NAMES)}; "
                f"got {agents[:200]!r}"
            )
        for name in AGENT_NAMES:
            _merge_flag(flags, f"agents.{name}.enabled", name in chosen)
    named = {
        "agents.check_interval": interval,
        "data_dir": str(data_dir) if data_dir else None,
        "web.host": host,
        "web.port": port,
        "remediation.mode": mode,
        "personality": personality,
        "log_level": log_level,
    }
    for dotted, value in named.items():
        _merge_flag(flags, dotted, value)
    return flags


def _start(config: Path | None, flags: dict[str, Any], *, web: bool) -> None:
    settings, path = load_or_exit(config, flags)
    if web is True and not settings.web.enabled:
        fail(
            "web.enabled is false, and 'watchkeeper web' serves the dashboard; set "
            "web.enabled = true (or WATCHKEEPER_WEB__ENABLED=true), or use 'watchkeeper run'"
        )
    from watchkeeper.runner import run_system
    from watchkeeper.web.server import PortInUse, bind_socket, serve_web

    if not (web and settings.web.enabled):
        raise typer.Exit(run_system(settings, path))
    try:  # bound before anything starts: a port in use is one line, not a half-started team
        sock = bind_socket(settings.web.host, settings.web.port)
    except PortInUse as exc:
        fail(str(exc))
    try:
        code = run_system(settings, path, front_end=functools.partial(serve_web, sock=sock))
    finally:
        sock.close()
    raise typer.Exit(code)


@app.command()
def run(
    config: ConfigOption = None,
    interval: IntervalOption = None,
    data_dir: DataDirOption = None,
    host: HostOption = None,
    port: PortOption = None,
    no_web: Annotated[bool, typer.Option("--no-web", help="Run without the web server.")] = False,
    mode: ModeOption = None,
    personality: PersonalityOption = None,
    log_level: LogLevelOption = None,
    agents: AgentsOption = None,
    set_: SetOption = None,
) -> None:
    """Start the agents (and the web dashboard) and run until stopped."""
    flags = _run_flags(set_, interval, data_dir, host, port, mode, personality, log_level, agents)
    _start(config, flags, web=not no_web)


@app.command()
def web(
    config: ConfigOption = None,
    interval: IntervalOption = None,
    data_dir: DataDirOption = None,
    host: HostOption = None,
    port: PortOption = None,
    no_web: Annotated[
        bool, typer.Option("--no-web", help="Refused: this command is the web.")
    ] = False,
    mode: ModeOption = None,
    personality: PersonalityOption = None,
    log_level: LogLevelOption = None,
    set_: SetOption = None,
) -> None:
    """Like ``run``, but insists on the web dashboard (an error when it is turned off)."""
    if no_web:
        fail("--no-web contradicts 'watchkeeper web'; use 'watchkeeper run --no-web'")
    flags = _run_flags(set_, interval, data_dir, host, port, mode, personality, log_level)
    _start(config, flags, web=True)


def _public_dump(settings: Settings) -> dict[str, Any]:
    # Secret settings serialise as the mask by their types (watchkeeper.model.secret).
    return settings.model_dump(mode="json", exclude_none=True)


@config_app.command("show")
def config_show(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of TOML.")] = False,
) -> None:
    """Print the effective configuration (every source applied)."""
    settings, path = load_or_exit(config)
    data = _public_dump(settings)
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    import tomli_w

    source = str(path) if path else "built-in defaults"
    typer.echo(f"# effective configuration (file: {source}; environment and flags applied)")
    typer.echo(tomli_w.dumps(data), nl=False)


@config_app.command("check")
def config_check(
    file: Annotated[
        Path | None, typer.Argument(help="File to check (default: as for run).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Validate a configuration file; exit 0 when it is good, 2 when not."""
    chosen = file or config
    _, path = load_or_exit(chosen)
    where = str(path) if path else "built-in defaults (no config file found)"
    typer.echo(f"ok: {where} is valid")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"watchkeeper {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Watch this host, reason about what goes wrong, and heal what is safe to heal."""


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(f"watchkeeper {__version__}")


def main(argv: list[str] | None = None) -> None:
    """Entry point for the console script and ``python -m watchkeeper``."""
    try:
        app(args=argv, prog_name="watchkeeper")
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # the last line of defence: one line, details in the log
        logging.getLogger("watchkeeper").error("internal error", exc_info=exc)
        typer.echo(
            f"watchkeeper: internal error: {type(exc).__name__}: {exc} "
            "(details in the log under the data dir)",
            err=True,
        )
        sys.exit(1)


simulate_app = typer.Typer(
    help="Make trouble safely (bounded in time and size) to watch the team respond.",
    no_args_is_help=True,
)
app.add_typer(simulate_app, name="simulate")


def _say(text: str) -> None:
    typer.echo(f"simulate: {text}")


def _simulation(run: Any) -> None:
    from watchkeeper.simulate import SimulationError

    try:
        run()
    except SimulationError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        _say("interrupted; cleaned up")
        raise typer.Exit(130) from None


@simulate_app.command("cpu")
def simulate_cpu(
    seconds: Annotated[float, typer.Option(min=1, max=3600, help="How long.")] = 30,
    workers: Annotated[
        int | None, typer.Option(min=1, max=256, help="Default: one per core.")
    ] = None,
) -> None:
    """Keep the CPUs busy for a while."""
    from watchkeeper.simulate import hog_cpu

    _simulation(lambda: hog_cpu(seconds, workers, _say))


@simulate_app.command("memory")
def simulate_memory(
    mb: Annotated[int, typer.Option(min=1, help="Megabytes to hold.")] = 512,
    seconds: Annotated[float, typer.Option(min=1, max=3600)] = 30,
) -> None:
    """Hold a block of memory for a while."""
    from watchkeeper.simulate import hog_memory

    _simulation(lambda: hog_memory(mb, seconds, _say))


@simulate_app.command("disk")
def simulate_disk(
    mb: Annotated[int, typer.Option(min=1, help="Megabytes to write.")] = 512,
    seconds: Annotated[float, typer.Option(min=1, max=3600)] = 30,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Where (default: temp dir).")
    ] = None,
) -> None:
    """Fill a temporary directory for a while, then delete it."""
    from watchkeeper.simulate import fill_disk

    _simulation(lambda: fill_disk(mb, seconds, directory, _say))


@simulate_app.command("service-crash")
def simulate_service_crash(
    name: Annotated[str, typer.Argument(help="A service configured under [[services]].")],
    config: ConfigOption = None,
) -> None:
    """SIGKILL a watched service's process, as a crash would."""
    import time as _time

    from watchkeeper.simulate import crash_service
    from watchkeeper.status import read_status

    settings, _ = load_or_exit(config)
    if not any(spec.name == name for spec in settings.services):
        known = ", ".join(spec.name for spec in settings.services) or "none"
        fail(f"no service named {name!r} is configured (configured: {known})")
    snapshot = read_status(settings.data_dir)
    if snapshot is None or snapshot.state != "running":
        fail(f"watchkeeper does not seem to be running (no live status in {settings.data_dir})")
    if _time.time() - snapshot.updated_at > 3 * settings.status_interval + 10:
        fail("the status file is stale; is watchkeeper running?")
    pid = next(
        (s.pid for s in snapshot.sensor().services if s.name == name and s.state == "running"),
        None,
    )
    _simulation(lambda: crash_service(name, pid, _say))


# The commands that talk to a running watchkeeper over its API (status, agents, ...,
# command, approve, watch, cli) live in their own modules; registered last, so they come
# after the commands above in --help.
register(app)
from watchkeeper.cli.fleet import register as register_fleet  # noqa: E402

register_fleet(app)
from watchkeeper.cli.service import register as register_service  # noqa: E402

register_service(app)
from watchkeeper.cli.mcp import register as register_mcp  # noqa: E402

register_mcp(app)
