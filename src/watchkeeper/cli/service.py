"""``watchkeeper service install|uninstall|status``: watchkeeper as a systemd service.

``install`` checks the config, writes the hardened unit of :mod:`watchkeeper.cli._unit`
to /etc/systemd/system, reloads systemd, enables and starts it, and waits until it is
active; ``uninstall`` stops, disables and removes it (its data stays unless ``--purge``);
``status`` says whether it is installed, enabled and active. systemd is driven with
``systemctl`` argv lists, never a shell::

    watchkeeper service install --dry-run          # the unit and the commands, nothing done
    sudo watchkeeper service install [--config /etc/watchkeeper/watchkeeper.toml]
    watchkeeper service status
    sudo watchkeeper service uninstall [--purge]

Each refusal is one line and exit code 2: not root, systemd not running as PID 1 (the
unit is printed all the same), a unit of the same name that this command did not write
(``--force`` replaces it). On macOS and Windows, and with ``--platform``, it prints the
equivalent steps instead (a launchd daemon, a scheduled task).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Annotated

import typer

from watchkeeper.cli._common import fail, load_or_exit

if TYPE_CHECKING:
    from watchkeeper.config import Settings

__all__ = ["register", "service_app"]

service_app = typer.Typer(
    help="Install watchkeeper as a system service (systemd; the steps for macOS and Windows).",
    no_args_is_help=True,
)

UNIT_DIR = Path("/etc/systemd/system")
# systemd creates this directory early at boot when it runs as PID 1 (sd_booted()).
BOOTED_MARK = Path("/run/systemd/system")
SYSTEMCTL_TIMEOUT = 90.0
ACTIVE_WAIT = 15.0
# Active on two checks this far apart: started, not dying on its first breath.
STEADY_GAP = 1.0

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


class Platform(StrEnum):
    linux = "linux"
    macos = "macos"
    windows = "windows"


def _this_platform() -> Platform:
    if sys.platform == "darwin":
        return Platform.macos
    if sys.platform == "win32":
        return Platform.windows
    return Platform.linux


def _systemctl(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["systemctl", "--no-pager", *args],
            capture_output=True,
            text=True,
            timeout=SYSTEMCTL_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        fail("systemctl is not installed here")
    except subprocess.TimeoutExpired:
        fail(f"systemctl {' '.join(args)} did not answer within {SYSTEMCTL_TIMEOUT:g} s")


def _must(args: Sequence[str], run: Runner = _systemctl) -> None:
    done = run(args)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        fail(f"systemctl {' '.join(args)} failed: {said[-1] if said else done.returncode}")


def _unit_path() -> Path:
    from watchkeeper.cli._unit import UNIT_NAME

    return UNIT_DIR / UNIT_NAME


def _ours(path: Path) -> bool:
    from watchkeeper.cli._unit import MARKER

    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            return handle.readline().rstrip("\n") == MARKER
    except OSError:
        return False


def _is_root() -> bool:
    geteuid = getattr(os, "geteuid", None)  # absent on Windows
    return geteuid is not None and geteuid() == 0


def _check_can_change(doing: str, *, unit_printed: bool = False) -> None:
    """Root, and systemd as PID 1; else one line saying which is missing."""
    if not _is_root():
        fail(f"{doing} a system service needs root: run it with sudo")
    if not BOOTED_MARK.is_dir():
        printed = "; the unit is printed above" if unit_printed else ""
        fail(f"systemd is not running as PID 1 here (no {BOOTED_MARK}){printed}")


def _config_path(config: Path | None) -> tuple[PurePosixPath, bool]:
    """(the config file the service reads, whether the starter one must be written)."""
    from watchkeeper.cli._unit import DEFAULT_CONFIG

    if config is not None:
        if not config.is_file():
            fail(f"the config file {config} does not exist")
        return PurePosixPath(config.resolve()), False
    return DEFAULT_CONFIG, not Path(DEFAULT_CONFIG).is_file()


def _plan_text(config: Path | None) -> tuple[str, PurePosixPath, bool, str]:
    """(the unit text, the config path, whether to write the starter config, a note)."""
    from watchkeeper.cli._unit import STATE_DIR, UnitError, UnitPlan, daemon_argv, render_unit

    path, write_starter = _config_path(config)
    settings = _starter_settings() if write_starter else load_or_exit(Path(path))[0]
    note = ""
    if not write_starter and PurePosixPath(settings.data_dir) != STATE_DIR:
        note = (
            f"note: the service keeps its data in {STATE_DIR} (the config says "
            f'{settings.data_dir}); set data_dir = "{STATE_DIR}" there so the CLI finds '
            "its API token"
        )
    try:
        plan = UnitPlan.from_settings(settings, path, daemon_argv())
        return render_unit(plan), path, write_starter, note
    except UnitError as exc:
        fail(str(exc))


def _starter_settings() -> Settings:
    """The settings of the starter config (never a ./watchkeeper.toml that happens to be here)."""
    from watchkeeper.cli._unit import starter_config

    with tempfile.TemporaryDirectory(prefix="wk-service-") as folder:
        starter = Path(folder) / "watchkeeper.toml"
        starter.write_text(starter_config(), encoding="utf-8")
        return load_or_exit(starter)[0]


def _install_commands(unit: str) -> list[list[str]]:
    return [["daemon-reload"], ["enable", unit], ["restart", unit]]


def _wait_active(unit: str, run: Runner = _systemctl) -> None:
    deadline = time.monotonic() + ACTIVE_WAIT
    steady = 0
    state = "unknown"
    while time.monotonic() < deadline:
        state = run(["is-active", unit]).stdout.strip() or "unknown"
        steady = steady + 1 if state == "active" else 0
        if steady >= 2:
            return
        time.sleep(STEADY_GAP)
    fail(f"{unit} is {state}, not active: see 'journalctl -u {unit}'")


def _other_platform(platform: Platform, config: Path | None) -> None:
    from watchkeeper.cli._service_other import ELSEWHERE, macos_steps, windows_steps
    from watchkeeper.cli._unit import daemon_argv

    here = platform is _this_platform()
    chosen = str(config.resolve()) if (config and here) else (str(config) if config else None)
    steps = macos_steps if platform is Platform.macos else windows_steps
    typer.echo(steps(daemon_argv() if here else [ELSEWHERE], chosen), nl=False)


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="The config file the service reads (default: /etc/watchkeeper/watchkeeper.toml, "
        "written as a starter file when missing).",
        show_default=False,
    ),
]
PlatformOption = Annotated[
    Platform | None,
    typer.Option(
        "--platform",
        help="Print the steps for this system instead (default: this one).",
        show_default=False,
    ),
]


@service_app.command("install")
def install(
    config: ConfigOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the unit and the commands; change nothing.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a unit of that name written by someone else.")
    ] = False,
    platform: PlatformOption = None,
) -> None:
    """Write the hardened systemd unit, then enable and start it."""
    from watchkeeper.cli._unit import STATE_DIR, UNIT_NAME, starter_config

    chosen = platform or _this_platform()
    if chosen is not Platform.linux:
        _other_platform(chosen, config)
        return
    text, config_path, write_starter, note = _plan_text(config)
    unit_path = _unit_path()
    if dry_run:
        typer.echo(f"# would write {unit_path}:")
        typer.echo(text, nl=False)
        if write_starter:
            typer.echo(f"# would write the starter config {config_path}")
        typer.echo("# then run:")
        for args in _install_commands(UNIT_NAME):
            typer.echo(f"systemctl {' '.join(args)}")
        if note:
            typer.echo(f"# {note}")
        return
    printed = _is_root() and not BOOTED_MARK.is_dir()
    if printed:
        typer.echo(text, nl=False)
    _check_can_change("installing", unit_printed=printed)
    if unit_path.exists() and not _ours(unit_path) and not force:
        fail(f"{unit_path} exists and was not written by watchkeeper; --force replaces it")
    if write_starter:
        Path(config_path).parent.mkdir(parents=True, exist_ok=True)
        Path(config_path).write_text(starter_config(), encoding="utf-8")
        Path(config_path).chmod(0o640)
        typer.echo(f"wrote the starter config {config_path}")
    partial = unit_path.with_name(f".{UNIT_NAME}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.chmod(0o644)
    partial.replace(unit_path)
    for args in _install_commands(UNIT_NAME):
        _must(args)
    _wait_active(UNIT_NAME)
    typer.echo(f"installed {UNIT_NAME}: enabled and active")
    typer.echo(f"unit: {unit_path}\nconfig: {config_path}\ndata: {STATE_DIR}")
    if note:
        typer.echo(note)


@service_app.command("uninstall")
def uninstall(
    purge: Annotated[
        bool, typer.Option("--purge", help="Delete its data directory too (history, token).")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Remove a unit of that name written by someone else.")
    ] = False,
    platform: PlatformOption = None,
) -> None:
    """Stop, disable and remove the unit; the data stays unless --purge."""
    from watchkeeper.cli._unit import STATE_DIR, UNIT_NAME

    chosen = platform or _this_platform()
    if chosen is not Platform.linux:
        _other_platform(chosen, None)
        return
    _check_can_change("removing")
    unit_path = _unit_path()
    if not unit_path.exists():
        fail(f"{UNIT_NAME} is not installed (no {unit_path})")
    if not _ours(unit_path) and not force:
        fail(f"{unit_path} was not written by watchkeeper; --force removes it")
    _systemctl(["disable", "--now", UNIT_NAME])  # a unit already stopped is fine
    unit_path.unlink()
    _must(["daemon-reload"])
    _systemctl(["reset-failed", UNIT_NAME])
    typer.echo(f"removed {UNIT_NAME} ({unit_path})")
    if purge:
        shutil.rmtree(STATE_DIR, ignore_errors=True)
        typer.echo(f"deleted its data in {STATE_DIR}")
    elif Path(STATE_DIR).exists():
        typer.echo(f"its data stays in {STATE_DIR} (--purge deletes it)")


@service_app.command("status")
def status(platform: PlatformOption = None) -> None:
    """Whether the unit is installed, enabled and active, and where it is."""
    from watchkeeper.cli._unit import UNIT_NAME

    chosen = platform or _this_platform()
    if chosen is not Platform.linux:
        _other_platform(chosen, None)
        return
    unit_path = _unit_path()
    if not unit_path.exists():
        typer.echo(f"installed: no ({unit_path} does not exist)")
    else:
        owner = "written by watchkeeper" if _ours(unit_path) else "NOT written by watchkeeper"
        typer.echo(f"installed: yes ({unit_path}, {owner})")
    if not BOOTED_MARK.is_dir():
        typer.echo("systemd: not running as PID 1 here (enabled and active unknown)")
        return
    enabled = _systemctl(["is-enabled", UNIT_NAME]).stdout.strip() or "unknown"
    active = _systemctl(["is-active", UNIT_NAME]).stdout.strip() or "unknown"
    typer.echo(f"enabled: {enabled}\nactive: {active}")


def register(app: typer.Typer) -> None:
    """Add ``watchkeeper service`` to the command."""
    app.add_typer(service_app, name="service")
