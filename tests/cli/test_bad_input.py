"""Every way a person can get it wrong ends in one line that says what to do, and a
non-zero exit code: never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cli_helpers import Daemon, free_port, invoke, one_error_line


def test_unknown_command_names_the_valid_ones(daemon: Daemon) -> None:
    result = invoke(daemon, "command", "bogus", "--target", "sensor")
    assert result.exit_code == 2
    line = one_error_line(result)
    assert "unknown command 'bogus' for sensor" in line
    assert "sample_now" in line


def test_unknown_target_names_the_valid_ones(daemon: Daemon) -> None:
    result = invoke(daemon, "command", "health_check", "--target", "nobody")
    assert result.exit_code == 2
    line = one_error_line(result)
    assert "unknown target 'nobody'" in line
    assert "all" in line and "sensor" in line


def test_unknown_agent_for_details(daemon: Daemon) -> None:
    result = invoke(daemon, "agents", "nobody")
    assert result.exit_code == 2
    assert "no agent named 'nobody'" in one_error_line(result)


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        ("novalue", "--param expects KEY=VALUE"),
        ("=5", "--param expects KEY=VALUE"),
        ("a..b=1", "--param expects KEY=VALUE"),
        ("params.niceness:=fifteen", "is not JSON"),
    ],
)
def test_bad_param_is_refused_before_anything_is_sent(
    daemon: Daemon, param: str, expected: str
) -> None:
    result = invoke(daemon, "command", "run_action", "-t", "remediator", "-p", param)
    assert result.exit_code == 2
    assert expected in one_error_line(result)


def test_bad_param_values_get_the_servers_message(daemon: Daemon) -> None:
    unknown_action = invoke(daemon, "command", "run_action", "-t", "remediator", "-p", "action=x")
    assert unknown_action.exit_code == 2
    assert "unknown action 'x'; valid:" in one_error_line(unknown_action)
    missing_id = invoke(daemon, "command", "approve", "-t", "remediator")
    assert missing_id.exit_code == 2
    assert "params.id" in one_error_line(missing_id)
    extra = invoke(daemon, "command", "pause", "-t", "sensor", "-p", "why=because")
    assert extra.exit_code == 2
    assert "params.why: unknown field" in one_error_line(extra)


def test_approve_an_unknown_id(daemon: Daemon) -> None:
    result = invoke(daemon, "approve", "no-such-id")
    assert result.exit_code == 2
    assert "no pending action with id 'no-such-id'" in one_error_line(result)


def test_nothing_answering_says_how_to_start_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["status"], ["command", "health_check", "-t", "all"], ["watch", "--once"]):
        result = invoke(None, *args, "--url", url)
        assert result.exit_code == 3, args
        assert one_error_line(result) == (
            f"watchkeeper: no watchkeeper answers at {url} "
            "(start it with `watchkeeper run`, or pass --url)"
        )
    # The menu with an explicit URL does not start a system of its own either.
    menu = invoke(None, "cli", "--url", url)
    assert menu.exit_code == 3
    assert f"no watchkeeper answers at {url}" in one_error_line(menu)


def test_a_wrong_token_says_where_it_came_from(daemon: Daemon) -> None:
    flag = invoke(daemon, "command", "health_check", "-t", "all", "--token", "wrong")
    assert flag.exit_code == 4
    assert "refused the API token from --token" in one_error_line(flag)
    env = invoke(daemon, "command", "pause", "-t", "sensor", env={"WATCHKEEPER_TOKEN": "nope"})
    assert env.exit_code == 4
    assert "refused the API token from WATCHKEEPER_TOKEN" in one_error_line(env)
    assert daemon.api("GET", "/api/agents/sensor")["health"]["state"] == "running"


def test_no_token_at_all_says_how_to_get_one(daemon: Daemon, tmp_path: Path) -> None:
    # The daemon's address, but a data dir without its token: reads work, changes do not.
    elsewhere = {"WATCHKEEPER_DATA_DIR": str(tmp_path), "WATCHKEEPER_URL": daemon.url}
    reads = invoke(daemon, "status", "--json", env=elsewhere)
    assert reads.exit_code == 0
    result = invoke(daemon, "command", "pause", "-t", "sensor", env=elsewhere)
    assert result.exit_code == 4
    line = one_error_line(result)
    assert "needs the API token and none was found" in line
    assert str(tmp_path / "api_token") in line and "--token" in line


def test_a_bad_url_is_one_line() -> None:
    result = invoke(None, "status", "--url", "ftp://example.org")
    assert result.exit_code == 2
    assert "is not an http(s) address" in one_error_line(result)


@pytest.fixture
def not_watchkeeper(tmp_path: Path) -> Iterator[str]:
    """Some other web server (it serves files), to point --url at by mistake."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(url, timeout=0.5)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def test_another_server_is_not_mistaken_for_watchkeeper(not_watchkeeper: str) -> None:
    for args in (["status"], ["command", "health_check", "-t", "all", "--token", "x"]):
        result = invoke(None, *args, "--url", not_watchkeeper)
        assert result.exit_code == 3, result.output
        assert "it is not watchkeeper's API" in one_error_line(result)


def test_a_daemon_without_its_web_server_is_named_not_duplicated(tmp_path: Path) -> None:
    # A live status file from a running process (this one) on the data dir: that is a
    # watchkeeper started with --no-web. The CLI says so, and the menu does not start a
    # second system on the same data dir.
    data = tmp_path / "data"
    data.mkdir()
    status = {"state": "running", "pid": os.getpid(), "updated_at": time.time()}
    (data / "system_status.json").write_text(json.dumps(status))
    env = {"WATCHKEEPER_DATA_DIR": str(data), "WATCHKEEPER_WEB__PORT": str(free_port())}
    reading = invoke(None, "status", env=env)
    assert reading.exit_code == 3
    assert f"a watchkeeper (pid {os.getpid()}) runs on this data dir without its web server" in (
        one_error_line(reading)
    )
    menu = invoke(None, "cli", env=env)
    assert menu.exit_code == 3
    line = one_error_line(menu)
    assert "without its web server" in line and "the menu needs its API" in line
