"""docs/fleet.md's walkthrough works as written: its files are valid and its server starts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from watchkeeper.testing.fleet_hosts import free_port, nats_login_error
from watchkeeper.testing.nats_server import NatsServer, require_nats

DOC = Path(__file__).resolve().parents[2] / "docs" / "fleet.md"


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_every_watchkeeper_toml_in_the_walkthrough_is_valid(tmp_path: Path) -> None:
    blocks = _blocks("toml")
    assert len(blocks) >= 2
    for index, block in enumerate(blocks):
        path = tmp_path / f"host-{index}.toml"
        path.write_text(block.replace("/var/lib/watchkeeper", str(tmp_path / f"data-{index}")))
        done = subprocess.run(
            [sys.executable, "-m", "watchkeeper", "config", "check", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"block {index}: {done.stderr}"


def test_the_walkthrough_server_config_starts_and_takes_its_passwords(tmp_path: Path) -> None:
    require_nats()
    bash = "\n".join(_blocks("bash"))
    passwords = re.search(r"<<'EOF'\n(.*?)\nEOF", bash, re.S)
    assert passwords is not None
    path = tmp_path / "fleet-passwords.toml"
    path.write_text(passwords.group(1) + "\n")
    command = re.search(r"watchkeeper fleet server-config (.*?)--output", bash, re.S)
    assert command is not None
    args = command.group(1).replace("\\\n", " ").split()
    args = [str(path) if a == "/root/fleet-passwords.toml" else a for a in args]
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "watchkeeper", "fleet", "server-config", *args,
         "--port", str(port), "--address", "127.0.0.1", "--store-dir", str(tmp_path / "st")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    toml_blocks = _blocks("toml")
    web1_password = re.search(r'password = "([^"]+)"', toml_blocks[0])
    central_password = re.search(r'password = "([^"]+)"', toml_blocks[1])
    assert web1_password is not None and central_password is not None
    with NatsServer(directory=tmp_path / "srv", port=port, config_text=done.stdout) as server:
        assert nats_login_error(server.port, "web-1", web1_password.group(1)) == ""
        assert nats_login_error(server.port, "central", central_password.group(1)) == ""
        assert "Authorization" in nats_login_error(server.port, "web-1", "CHANGE-ME-web-1")
