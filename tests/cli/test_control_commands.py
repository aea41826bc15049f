"""The subcommands that change things: command, approve, reject, config set."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import psutil
from cli_helpers import Daemon, invoke, one_error_line


def test_command_to_all_agents_shows_every_reply(daemon: Daemon) -> None:
    human = invoke(daemon, "command", "health_check", "--target", "all")
    assert human.exit_code == 0, human.output
    assert "health_check → all: ok" in human.stdout
    for agent in ("sensor", "analyzer", "remediator"):
        assert agent in human.stdout
    data = json.loads(invoke(daemon, "command", "health_check", "-t", "all", "--json").stdout)
    assert data["ok"] is True
    assert set(data["replies"]) >= {"sensor", "analyzer", "remediator"}


def test_pause_and_resume_change_the_agent_state(daemon: Daemon) -> None:
    paused = invoke(daemon, "command", "pause", "--target", "analyzer", "--json")
    assert paused.exit_code == 0
    assert json.loads(paused.stdout)["replies"]["analyzer"]["state"] == "paused"
    assert daemon.api("GET", "/api/agents/analyzer")["health"]["state"] == "paused"
    resumed = invoke(daemon, "command", "resume", "--target", "analyzer")
    assert resumed.exit_code == 0
    assert "state running" in resumed.stdout
    assert daemon.api("GET", "/api/agents/analyzer")["health"]["state"] == "running"


def test_run_action_renices_a_real_process_found_by_pid(daemon: Daemon) -> None:
    # A person names a pid; the CLI supplies its start time so the remediator can be
    # sure it is the same process.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        result = invoke(
            daemon,
            "command",
            "run_action",
            "--target",
            "remediator",
            "--param",
            "action=renice_process",
            "--param",
            f"target={child.pid}",
            "--param",
            "params.niceness:=7",
            "--json",
        )
        assert result.exit_code == 0, result.output
        record = json.loads(result.stdout)["replies"]["remediator"]["record"]
        assert record["outcome"] in ("running", "succeeded")
        assert record["proposer"] == "user"
        deadline = time.monotonic() + 10
        while psutil.Process(child.pid).nice() != 7 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert psutil.Process(child.pid).nice() == 7
    finally:
        child.kill()
        child.wait()


def test_a_refused_action_exits_1_with_the_reason(daemon: Daemon) -> None:
    result = invoke(
        daemon,
        "command",
        "run_action",
        "-t",
        "remediator",
        "-p",
        "action=renice_process",
        "-p",
        "target=1",  # init is protected
    )
    assert result.exit_code == 1
    assert "refused" in result.stdout
    assert "protected" in result.stdout


def test_approve_runs_and_reject_drops_an_action(
    daemon: Daemon, pending_two: list[dict[str, Any]]
) -> None:
    first, second = pending_two[0], pending_two[1]
    listed = invoke(daemon, "actions")
    assert "Awaiting approval" in listed.stdout
    assert first["id"] in listed.stdout and second["id"] in listed.stdout  # never cut short
    approved = invoke(daemon, "approve", first["id"], "--json")
    assert approved.exit_code in (0, 1), approved.output  # 1 if the restart itself failed
    reply = json.loads(approved.stdout)["replies"]["remediator"]
    assert reply["ok"] is True and reply["id"] == first["id"]
    assert reply["record"]["proposer"] == "user"  # approved by a person, through the CLI
    rejected = invoke(daemon, "reject", second["id"])
    assert rejected.exit_code == 0, rejected.output
    assert "reject → remediator: ok" in rejected.stdout
    audit = daemon.api("GET", "/api/remediation?limit=200")["audit"]
    assert any(r["id"] == second["id"] and r["outcome"] == "rejected" for r in audit)
    again = invoke(daemon, "reject", second["id"])
    assert again.exit_code == 2
    line = one_error_line(again)
    assert f"no pending action with id '{second['id']}'" in line
    assert "watchkeeper actions" in line  # says where to find the right id


def test_config_set_changes_a_live_setting_and_refuses_others(daemon: Daemon) -> None:
    changed = invoke(daemon, "config", "set", "thresholds.load_warning=1.75")
    assert changed.exit_code == 0, changed.output
    assert "thresholds.load_warning: 1.5 -> 1.75" in changed.stdout
    settings = daemon.api("GET", "/api/config")["settings"]
    assert settings["thresholds"]["load_warning"] == 1.75
    restart_only = invoke(daemon, "config", "set", "web.port=1")
    assert restart_only.exit_code == 2
    assert "takes effect only at start-up" in one_error_line(restart_only)
    unknown = invoke(daemon, "config", "set", "thresholds.nope=1")
    assert unknown.exit_code == 2
    assert "thresholds.nope: unknown key" in one_error_line(unknown)
