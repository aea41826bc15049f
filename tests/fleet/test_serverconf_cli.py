"""``watchkeeper fleet server-config``: what an operator types, and what nats-server reads."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import typer
from typer.testing import CliRunner

from watchkeeper.cli.fleet_config import register
from watchkeeper.testing.nats_server import NatsServer, require_nats


def _app() -> typer.Typer:
    """The ``fleet`` sub-app as the CLI registers it (``register(fleet_app)``)."""
    fleet_app = typer.Typer(no_args_is_help=True)

    @fleet_app.callback()
    def _fleet() -> None:
        """The fleet."""

    register(fleet_app)
    return fleet_app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_written_config_runs_nats_server_with_the_given_passwords(tmp_path: Path) -> None:
    require_nats()
    passwords = tmp_path / "passwords.toml"
    passwords.write_text('central = "the-central-pw"\n"web-1" = "web-one-pw"\n')
    out = tmp_path / "fleet.conf"
    port = _free_port()
    result = CliRunner().invoke(
        _app(),
        [
            "server-config",
            "--central", "central",
            "--host", "web-1",
            "--host", "web-2",
            "--port", str(port),
            "--address", "127.0.0.1",
            "--store-dir", str(tmp_path / "store"),
            "--passwords-file", str(passwords),
            "--output", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "the-central-pw" not in result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    text = out.read_text()
    assert 'password: "web-one-pw"' in text
    assert 'user: "web-2"' in text
    with NatsServer(directory=tmp_path / "srv", port=port, config_text=text) as server:
        assert server.running


def test_stdout_when_no_output_file() -> None:
    result = CliRunner().invoke(_app(), ["server-config", "--central", "hub", "-H", "leaf-1"])
    assert result.exit_code == 0
    assert '"wk.leaf-1.>"' in result.output
    assert "jetstream" in result.output


def test_a_bad_host_id_is_one_line_and_exit_2() -> None:
    result = CliRunner().invoke(
        _app(), ["server-config", "--central", "hub", "-H", "leaf.1", "-H", "x"]
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [lines[0]] and "host id 'leaf.1'" in lines[0]
    assert "Traceback" not in result.output


def test_an_unreadable_passwords_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text("central = [1, 2]\n")
    result = CliRunner().invoke(
        _app(), ["server-config", "--central", "hub", "-H", "a", "--passwords-file", str(bad)]
    )
    assert result.exit_code == 2
    assert "quoted password" in result.output
    bad.write_text("this is = = not toml")
    result = CliRunner().invoke(
        _app(), ["server-config", "--central", "hub", "-H", "a", "--passwords-file", str(bad)]
    )
    assert result.exit_code == 2 and "not TOML" in result.output
    assert "Traceback" not in result.output


def test_the_installed_command_prints_the_config(tmp_path: Path) -> None:
    """``watchkeeper fleet server-config`` as an operator runs it, piped into a file."""
    import subprocess
    import sys

    require_nats()
    port = _free_port()
    done = subprocess.run(
        [sys.executable, "-m", "watchkeeper", "fleet", "server-config", "--central", "hub",
         "-H", "leaf-1", "-H", "leaf-2", "--port", str(port), "--address", "127.0.0.1",
         "--store-dir", str(tmp_path / "store")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert 'user: "leaf-2"' in done.stdout
    with NatsServer(directory=tmp_path / "srv", port=port, config_text=done.stdout) as server:
        assert server.running
    bad = subprocess.run(
        [sys.executable, "-m", "watchkeeper", "fleet", "server-config", "--central", "hub",
         "-H", "Leaf 1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "host id 'Leaf 1'" in bad.stderr
