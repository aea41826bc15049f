"""The pieces under the commands: untrusted text on screen, --param, where the token goes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from watchkeeper.cli.client import ApiError, resolve_endpoint
from watchkeeper.cli.control_views import activity_table
from watchkeeper.cli.metrics_view import processes_table
from watchkeeper.cli.params import parse_params
from watchkeeper.config import build_settings
from watchkeeper.model.metrics import ProcessInfo
from watchkeeper.storage.models import ActivityEntry

HOSTILE = "[bold red]pwn[/bold red]\x1b[2J\x1b]0;title\x07evil"


def render(renderable: object, width: int = 160) -> str:
    out = io.StringIO()
    Console(file=out, width=width, force_terminal=True, color_system="standard").print(renderable)
    return out.getvalue()


def test_process_names_are_shown_literally_and_cannot_drive_the_terminal() -> None:
    # Built without validation, so the view itself must keep the hostile text harmless.
    rows = [
        ProcessInfo.model_construct(
            pid=42,
            name=HOSTILE,
            user="root",
            cmdline=HOSTILE,
            rss_bytes=1,
            status="running",
            cpu_percent=None,
            num_threads=1,
            create_time=0.0,
            age_seconds=0.0,
        )
    ]
    shown = render(processes_table(rows, "Top"))
    assert "[bold red]pwn[/bold red]" in shown  # markup stays text
    assert "\x1b[2J" not in shown and "\x1b]0;" not in shown and "\x07" not in shown
    feed = [
        ActivityEntry.model_construct(ts=0, agent="x", kind="x", severity="info", message=HOSTILE)
    ]
    shown = render(activity_table(feed, now=10))
    assert "[bold red]pwn" in shown and "\x1b[2J" not in shown


def test_params_strings_json_and_nesting() -> None:
    assert parse_params(["action=renice_process", "target=4242", "params.niceness:=15"]) == {
        "action": "renice_process",
        "target": "4242",  # a pid as a target stays a string, as the API wants
        "params": {"niceness": 15},
    }
    assert parse_params(["reason=a=b", "flag:=true"]) == {"reason": "a=b", "flag": True}
    for bad in (["x"], ["=1"], ["a.=1"], ["a:=nope"], ["a=1", "a.b=2"], ["a.b=2", "a=1"]):
        with pytest.raises(ApiError) as caught:
            parse_params(bad)
        assert caught.value.exit_code == 2


def test_the_local_token_is_never_sent_to_another_machine(tmp_path: Path) -> None:
    (tmp_path / "api_token").write_text("local-secret\n")
    settings = build_settings(
        {}, file_label="test", flags={"data_dir": str(tmp_path), "web": {"port": 8123}}
    )
    here = resolve_endpoint(url=None, token=None, settings=settings, environ={})
    assert (here.url, here.token, here.url_explicit) == (
        "http://127.0.0.1:8123",
        "local-secret",
        False,
    )
    remote = resolve_endpoint(
        url="https://watch.example.org", token=None, settings=settings, environ={}
    )
    assert remote.token is None
    assert "not this machine" in (remote.token_problem or "")
    told = resolve_endpoint(
        url="https://watch.example.org",
        token=None,
        settings=settings,
        environ={"WATCHKEEPER_TOKEN": "given"},
    )
    assert (told.token, told.token_source) == ("given", "WATCHKEEPER_TOKEN")
    from_env = resolve_endpoint(
        url=None, token=None, settings=settings, environ={"WATCHKEEPER_URL": "localhost:9"}
    )
    assert from_env.url == "http://localhost:9" and from_env.url_explicit
    assert from_env.token == "local-secret"  # loopback: this machine's own token


def test_a_wildcard_bind_is_reached_on_loopback(tmp_path: Path) -> None:
    settings = build_settings(
        {}, file_label="test", flags={"data_dir": str(tmp_path), "web": {"host": "0.0.0.0"}}
    )
    endpoint = resolve_endpoint(url=None, token=None, settings=settings, environ={})
    assert endpoint.url == "http://127.0.0.1:8000"
    assert endpoint.token is None and "does not exist" in (endpoint.token_problem or "")
