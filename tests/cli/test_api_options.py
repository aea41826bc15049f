"""The API options are declared once and every API subcommand has them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer.main

import watchkeeper.cli
from watchkeeper.cli.app import app

API_COMMANDS = (
    "status",
    "agents",
    "metrics",
    "alerts",
    "analysis",
    "actions",
    "bus",
    "command",
    "approve",
    "reject",
    "watch",
    "cli",
)
CONNECTION = {"--url", "--token", "--timeout", "--config"}


def _options(command: Any) -> set[str]:
    return {name for param in command.params for name in getattr(param, "opts", [])}


def test_every_api_subcommand_takes_the_connection_options() -> None:
    group: Any = typer.main.get_command(app)
    config = group.commands["config"]
    commands = [group.commands[name] for name in API_COMMANDS]
    commands += [config.commands["remote"], config.commands["set"]]
    for command in commands:
        assert _options(command) >= CONNECTION, command.name
        assert ("--json" in _options(command)) == (command.name != "cli"), command.name


def test_the_options_are_declared_in_one_module() -> None:
    package = Path(watchkeeper.cli.__file__).parent
    declaring = sorted(
        path.name for path in package.glob("*.py") if '"--timeout"' in path.read_text("utf-8")
    )
    assert declaring == ["_common.py"]
