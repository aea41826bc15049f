"""The reading subcommands against a real daemon: what a person sees, and ``--json``."""

from __future__ import annotations

import json

from cli_helpers import Daemon, invoke, one_error_line


def test_status_shows_the_system_and_json_is_the_api_snapshot(daemon: Daemon) -> None:
    human = invoke(daemon, "status")
    assert human.exit_code == 0, human.output
    assert "System Status" in human.stdout
    assert "running" in human.stdout
    for agent in ("sensor", "analyzer", "remediator"):
        assert agent in human.stdout
    data = json.loads(invoke(daemon, "status", "--json").stdout)
    assert data["state"] == "running"
    assert data["pid"] == daemon.proc.pid
    assert {"sensor", "analyzer", "remediator"} <= set(data["agents"])


def test_agents_lists_every_agent_and_details_one(daemon: Daemon) -> None:
    human = invoke(daemon, "agents")
    assert human.exit_code == 0
    assert "Agents" in human.stdout and "Checks" in human.stdout
    listed = json.loads(invoke(daemon, "agents", "--json").stdout)
    assert listed["sensor"]["state"] == "running"
    one = invoke(daemon, "agents", "sensor")
    assert "Agent sensor" in one.stdout
    assert "sample_now" in one.stdout  # the commands it accepts
    detail = json.loads(invoke(daemon, "agents", "sensor", "--json").stdout)
    assert "sample_now" in detail["commands"]
    assert detail["health"]["name"] == "sensor"


def test_metrics_human_flat_json_and_history(daemon: Daemon) -> None:
    human = invoke(daemon, "metrics")
    assert human.exit_code == 0, human.output
    for heading in ("CPU", "Memory", "Filesystems", "Top processes by CPU", "Services"):
        assert heading in human.stdout
    assert "flaky-a" in human.stdout
    sample = json.loads(invoke(daemon, "metrics", "--json").stdout)
    assert 0 <= sample["cpu"]["percent"] <= 100
    flat = json.loads(invoke(daemon, "metrics", "--flat", "--json").stdout)
    assert "memory.percent" in flat["metrics"]
    assert "memory.percent" in invoke(daemon, "metrics", "--flat").stdout
    history = invoke(daemon, "metrics", "--history", "memory.percent", "--range", "5m", "--json")
    storage_ok = daemon.api("GET", "/api/health?probe=live")["checks"]["storage"]["ok"]
    if storage_ok:
        assert history.exit_code == 0, history.output
        assert json.loads(history.stdout)["metric"] == "memory.percent"
        assert "memory.percent" in invoke(daemon, "metrics", "--history", "memory.percent").stdout
    else:  # no storage configured: one line naming why, not a traceback
        assert history.exit_code != 0
        assert "history is unavailable" in one_error_line(history)


def test_alerts_show_the_failing_services(daemon: Daemon) -> None:
    daemon.wait_for(
        lambda: len(daemon.api("GET", "/api/alerts")["firing"]) >= 2, "both services' alerts"
    )
    human = invoke(daemon, "alerts")
    assert human.exit_code == 0
    assert "Firing alerts" in human.stdout
    assert "service:flaky-a" in human.stdout
    assert "restart_service" in human.stdout  # the suggested action
    data = json.loads(invoke(daemon, "alerts", "--json").stdout)
    # A service restarted (approved earlier) that died again is flapping: one alert for it.
    failing = {a["subject"] for a in data["firing"] if a["rule"].startswith("service_")}
    assert failing == {"service:flaky-a", "service:flaky-b"}


def test_analysis_shows_the_latest_analysis_and_llm_state(daemon: Daemon) -> None:
    daemon.wait_for(lambda: daemon.api("GET", "/api/analysis")["latest"], "an analysis")
    human = invoke(daemon, "analysis")
    assert human.exit_code == 0
    assert "LLM: disabled" in human.stdout
    assert "Latest analysis" in human.stdout
    assert "Recommended actions" in human.stdout
    data = json.loads(invoke(daemon, "analysis", "--json").stdout)
    assert data["llm"]["enabled"] is False
    assert data["latest"]["source"] == "rules"


def test_actions_shows_the_mode_the_trail_and_the_catalog(daemon: Daemon) -> None:
    daemon.wait_for(lambda: daemon.api("GET", "/api/remediation")["audit"], "an audit record")
    human = invoke(daemon, "actions")
    assert human.exit_code == 0
    assert "Mode: approve" in human.stdout
    assert "Recent actions" in human.stdout and "restart_service" in human.stdout
    assert "renice_process" in human.stdout  # the catalog
    data = json.loads(invoke(daemon, "actions", "--json", "--limit", "3").stdout)
    assert data["mode"] == "approve"
    assert len(data["audit"]) <= 3
    assert {a["name"] for a in data["actions"]} >= {"restart_service", "kill_process"}


def test_bus_shows_traffic_and_filters_by_pattern(daemon: Daemon) -> None:
    human = invoke(daemon, "bus", "--limit", "5")
    assert human.exit_code == 0
    assert "Topics" in human.stdout and "metrics.sample" in human.stdout
    data = json.loads(invoke(daemon, "bus", "--json", "--pattern", "metrics.*").stdout)
    assert data["stats"]["published"] > 0
    assert data["recent"] and {m["topic"] for m in data["recent"]} == {"metrics.sample"}
    bad = invoke(daemon, "bus", "--pattern", "no spaces!")
    assert bad.exit_code == 2
    assert "is not a topic pattern" in one_error_line(bad)


def test_config_remote_shows_the_running_settings(daemon: Daemon) -> None:
    human = invoke(daemon, "config", "remote")
    assert human.exit_code == 0
    assert "thresholds (live)" in human.stdout
    data = json.loads(invoke(daemon, "config", "remote", "--json").stdout)
    assert data["settings"]["remediation"]["mode"] == "approve"
    # The local view is still there, unchanged: no daemon needed.
    local = invoke(daemon, "config", "show", "--json")
    assert json.loads(local.stdout)["remediation"]["mode"] == "approve"


def test_watch_once_draws_the_live_view_and_json_follows_events(daemon: Daemon) -> None:
    once = invoke(daemon, "watch", "--once")
    assert once.exit_code == 0, once.output
    for part in ("Live Monitoring", "Resources", "Agents", "CPU", "Recent activity"):
        assert part in once.stdout
    stream = invoke(daemon, "watch", "--json", "--count", "3")
    assert stream.exit_code == 0
    events = [json.loads(line) for line in stream.stdout.splitlines()]
    assert len(events) == 3
    assert events[0]["event"] == "status"  # the stream starts with the current status
    assert events[0]["data"]["state"] == "running"
