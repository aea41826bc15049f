"""The scorer counts what the real policy gate would have RUN, judged in the scenario's own
world (its processes, its services, its clock), never this machine's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from watchkeeper.analysis.engine import AnalysisEngine
from watchkeeper.model.actions import ActionRequest
from watchkeeper.testing._scenario_gate import GateReplay
from watchkeeper.testing._scenario_samples import ScenarioProcesses, timeline
from watchkeeper.testing.scenarios import (
    Scenario,
    play_rules,
    scenario_settings,
    score,
    start_time,
    summarise_rules,
)


def make(data: dict[str, Any]) -> Scenario:
    return Scenario.model_validate(data)


def runaway(pid: int, name: str, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": f"runaway {name}",
        "steps": 20,
        "changes": [{"from": 0, "set": {"cpu": 97, "load1": 2.2}}],
        "processes": [{"pid": pid, "name": name, "cpu": 99, "rss_mb": 20}],
        "expect": {
            "verdict": "critical",
            "alerts": [{"rule": "runaway_process"}],
            "allowed_actions": ["renice_process", "kill_process"],
        },
    }
    data.update(extra)
    return data


def hog(**expect: Any) -> dict[str, Any]:
    return {
        "name": "memory hog",
        "steps": 10,
        "base": {"memory": 97.0},
        "settings": {"remediation": {"allow_actions": ["kill_process"]}},
        "processes": [{"pid": 8100, "name": "analytics", "cpu": 20, "rss_mb": 7200}],
        "expect": {
            "verdict": "critical",
            "alerts": [{"rule": "memory_high", "severity": "critical"}],
            "allowed_actions": ["kill_process"],
            **expect,
        },
    }


def test_a_proposal_the_gate_refuses_scores_no_execution() -> None:
    # The busy shell is the parent of the monitor itself: the gate protects the monitor's
    # ancestors, which only the scenario's own process tree can tell.
    data = runaway(
        700, "bash", expect={"verdict": "critical", "forbidden_targets": ["process:700"]}
    )
    data["processes"].append(
        {"pid": 701, "name": "python3", "cmdline": "python3 -m watchkeeper run", "ppid": 700}
    )
    scenario = make(data)
    outcome = play_rules(scenario)
    decided = [d for d in outcome.decisions if d.target == "700"]
    assert decided, "the rules proposed nothing on the busy shell"
    assert {d.verdict for d in decided} == {"refuse"}
    assert "protected" in decided[0].reason
    result = score(scenario, outcome)
    assert result.executions == 0 and result.forbidden_executions == 0
    assert result.forbidden >= 1  # proposed, though: reported as a forbidden proposal
    assert not result.passed


def test_the_gate_sees_the_scenarios_processes_not_this_machines() -> None:
    # This very test process's pid: on this machine it is protected (it is the process
    # asking); in the scenario it is a plain runaway, so the gate lets the renice run.
    scenario = make(runaway(os.getpid(), "spinner"))
    outcome = play_rules(scenario)
    runs = [d for d in outcome.decisions if d.ran]
    assert [(d.action, d.target) for d in runs] == [("renice_process", str(os.getpid()))]
    assert score(scenario, outcome).executions == 1


def test_a_forbidden_kill_the_gate_would_run_scores_one() -> None:
    pair = [{"action": "kill_process", "target": "process:8100"}]
    scenario = make(hog(forbidden_pairs=pair))
    result = score(scenario, play_rules(scenario))
    assert result.forbidden_executions == 1
    assert result.executions == 1
    assert not result.passed
    assert any("forbidden EXECUTIONS" in p and "process:8100" in p for p in result.problems)
    summary = summarise_rules([result])
    assert summary["forbidden_executions"] == 1
    assert summary["action_precision"] == 1.0


def test_a_dangerous_kill_waits_for_a_person_so_it_is_no_execution() -> None:
    data = hog(forbidden_pairs=[{"action": "kill_process", "target": "process:8100"}])
    data["settings"] = {}
    scenario = make(data)
    outcome = play_rules(scenario)
    assert [d.verdict for d in outcome.decisions if d.action == "kill_process"] == ["approve"]
    result = score(scenario, outcome)
    assert (result.forbidden_executions, result.forbidden) == (0, 1)


def test_action_precision_counts_what_would_run() -> None:
    data = hog()
    data["expect"]["allowed_actions"] = ["restart_service"]
    result = score(make(data), play_rules(make(data)))
    assert (result.executions, result.executions_allowed) == (1, 0)
    assert summarise_rules([result])["action_precision"] == 0.0


def _gate(scenario: Scenario) -> tuple[GateReplay, ScenarioProcesses]:
    step = next(iter(timeline(scenario)))
    return GateReplay(scenario_settings(scenario), step.services, start_time(scenario)), step.world


def test_cooldown_follows_the_scenario_clock() -> None:
    scenario = make(runaway(4242, "spinner"))
    gate, world = _gate(scenario)
    proc = world.alive[4242]
    verdicts = []
    for t in (0.0, 30.0, 70.0):
        gate.advance(t, world)
        request = ActionRequest(
            "renice_process",
            "4242",
            "rule",
            params={"create_time": proc.create_time},
            target_kind="process",
        )
        verdicts.append((gate.submit(request).verdict, gate.records[-1].reason))
    assert [v for v, _ in verdicts] == ["run", "refuse", "run"]
    assert "cooling down" in verdicts[1][1]


def test_a_restart_that_never_helps_backs_off_and_gives_up() -> None:
    scenario = make(
        {
            "name": "db stays down",
            "steps": 40,
            "services": [{"name": "db", "state": "failed", "critical": True}],
            "expect": {"verdict": "critical"},
        }
    )
    gate, world = _gate(scenario)
    verdicts = []
    for i in range(8):
        gate.advance(i * 15.0, world)
        request = ActionRequest("restart_service", "db", "rule", target_kind="service")
        verdicts.append(gate.submit(request).verdict)
    # Each attempt is still down when verified; the fifth failure gives up.
    assert verdicts == ["run"] * 5 + ["refuse"] * 3
    assert "gave up" in gate.records[-1].reason
    # The give-up is news for the analyzer, once, as remediation.gave_up is.
    (giveup,) = gate.take_gave_up()
    assert (giveup.target, giveup.failures) == ("db", 5)
    assert gate.take_gave_up() == []


def test_a_restart_that_works_is_not_a_crash_loop() -> None:
    scenario = make(
        {
            "name": "db comes back",
            "steps": 40,
            "services": [
                {"name": "db", "flap": {"every": 15, "down_for": 5}},
            ],
            "expect": {"verdict": "healthy"},
        }
    )
    gate, world = _gate(scenario)
    for i in range(8):
        gate.advance(10 + i * 15.0, world)
        gate.submit(ActionRequest("restart_service", "db", "rule", target_kind="service"))
    assert {r.verdict for r in gate.records} == {"run"}


def test_an_unconfigured_service_is_refused() -> None:
    scenario = make(
        {
            "name": "own services",
            "settings": {"services": [{"name": "api", "manager": "systemd"}]},
            "services": [{"name": "db", "state": "failed"}],
            "expect": {"verdict": "critical"},
        }
    )
    gate, _ = _gate(scenario)
    record = gate.submit(ActionRequest("restart_service", "db", "rule", target_kind="service"))
    assert record.verdict == "refuse" and "not configured" in record.reason


def test_alert_wording_intermittence_and_proposal_counts_are_checked() -> None:
    want = {"rule": "runaway_process", "summary_contains": "spinner"}
    good = make(runaway(4242, "spinner", expect={"verdict": "critical", "alerts": [want]}))
    assert score(good, play_rules(good)).passed
    wrong = {"rule": "runaway_process", "summary_contains": "no such words"}
    bad = make(runaway(4242, "spinner", expect={"verdict": "critical", "alerts": [wrong]}))
    result = score(bad, play_rules(bad))
    assert result.expected_fired == 0
    assert any("'no such words'" in p for p in result.problems)
    steady = {"rule": "runaway_process", "intermittent": True}
    flagged = make(runaway(4242, "spinner", expect={"verdict": "critical", "alerts": [steady]}))
    assert not score(flagged, play_rules(flagged)).passed  # a steady spin is not intermittent
    capped = make(
        runaway(
            4242, "spinner", expect={"verdict": "critical", "max_proposals": {"renice_process": 0}}
        )
    )
    assert any("renice_process proposed" in p for p in score(capped, play_rules(capped)).problems)


def test_incident_expectations() -> None:
    data = {
        "name": "three causes",
        "steps": 20,
        "base": {"cpu": 95.0, "disks": {"/": {"percent": 96.5, "total_gb": 100.0}}},
        "processes": [{"pid": 4300, "name": "converter", "cpu": 98, "rss_mb": 200}],
        "services": [{"name": "db", "critical": True, "state": "failed"}],
        "expect": {"verdict": "critical", "incidents": {"max": 0}},
    }
    scenario = make(data)
    result = score(scenario, play_rules(scenario))
    if not hasattr(AnalysisEngine, "incidents_open"):
        assert any("reports none" in p for p in result.problems)
        return
    assert any("incidents open at once (at most 0)" in p for p in result.problems)
    data["expect"] = {"verdict": "critical", "incidents": {"root_rule": "no_such_rule"}}
    result = score(make(data), play_rules(make(data)))
    assert any("no incident with root cause no_such_rule" in p for p in result.problems)


def _write(directory: Path, name: str, data: dict[str, Any]) -> None:
    (directory / name).write_text(json.dumps(data), encoding="utf-8")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchkeeper.testing.scenarios", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_rules_cli_reports_and_fails_on_a_forbidden_execution(tmp_path: Path) -> None:
    _write(tmp_path, "a_runaway.json", runaway(4242, "spinner"))
    pair = [{"action": "kill_process", "target": "process:8100"}]
    _write(tmp_path, "b_hog.json", hog(forbidden_pairs=pair))
    proc = _cli("--rules", str(tmp_path), "--json")
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    summary = result["summary"]
    assert summary["forbidden_executions"] == 1
    assert (summary["passed"], summary["scenarios"]) == (1, 2)
    assert summary["verdict_accuracy"] == 1.0
    assert summary["expected_rule_recall"] == 1.0
    by_path = {s["path"]: s for s in result["scenarios"]}
    assert by_path["a_runaway.json"]["passed"]
    assert by_path["b_hog.json"]["forbidden_executions"] == 1

    text = _cli("--rules", str(tmp_path))
    assert text.returncode == 1
    lines = text.stdout.splitlines()
    assert "PASS  a_runaway.json: runaway spinner" in lines
    assert "FAIL  b_hog.json: memory hog" in lines
    assert any(line.split() == ["forbidden_executions", "1"] for line in lines)
    assert any(line.split() == ["scenarios", "passed", "1/2"] for line in lines)


def test_rules_cli_exits_zero_when_nothing_forbidden_would_run(tmp_path: Path) -> None:
    _write(tmp_path, "a_runaway.json", runaway(4242, "spinner"))
    proc = _cli("--rules", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "forbidden_executions   0" in proc.stdout


def test_rules_cli_refuses_a_missing_directory(tmp_path: Path) -> None:
    proc = _cli("--rules", str(tmp_path / "nowhere"))
    assert proc.returncode == 2
    assert "is not a directory of scenario files" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_restart_that_never_helps_is_retried_by_the_pipelines_rules_then_given_up() -> None:
    # The remediator retries a failed restart while the alert is open (spaced by the
    # crash-loop backoff), and gives up after five failures; the analyzer hears it.
    scenario = make(
        {
            "name": "db stays down",
            "steps": 30,
            "services": [{"name": "db", "state": "failed", "critical": True, "exit_code": 1}],
            "expect": {"verdict": "critical", "alerts": [{"rule": "service_down"}]},
        }
    )
    outcome = play_rules(scenario)
    restarts = [d for d in outcome.decisions if d.action == "restart_service"]
    assert [d.verdict for d in restarts][:5] == ["run"] * 5
    assert [d.at for d in restarts][:5] == [0.0, 10.0, 20.0, 30.0, 40.0]  # each verified
    assert restarts[5].verdict == "refuse" and "gave up" in restarts[5].reason
    assert len(restarts) == 6  # nothing more is tried once it gave up
    if hasattr(AnalysisEngine, "remediation_gave_up"):
        escalated = [t for t in outcome.transitions if t.kind == "escalated"]
        assert escalated and escalated[0].alert.subject == "service:db"


def test_a_deferred_restart_is_tried_again_when_its_backoff_ends() -> None:
    scenario = make(
        {
            "name": "slow backoff",
            "steps": 20,
            "settings": {"remediation": {"crash_loop_backoff_initial": 30}},
            "services": [
                {"name": "db", "state": "failed", "critical": True, "until": 60},
                {"name": "db", "state": "running", "critical": True, "from": 60},
            ],
            "expect": {"verdict": "healthy"},
        }
    )
    outcome = play_rules(scenario)
    got = [(d.at, d.verdict) for d in outcome.decisions if d.action == "restart_service"]
    # Verified down at 10 s, tried again at once: the 30 s backoff defers it to 30 s,
    # when it runs; verified down again at 40 s, deferred again (the backoff doubled to
    # 60 s: until 90 s), and by then the service is back (from 60 s): the try is dropped.
    assert got == [(0.0, "run"), (10.0, "defer"), (30.0, "run"), (40.0, "defer")]


def test_a_reset_failed_proposal_is_judged_not_executed() -> None:
    # The model may propose reset_failed for a systemd unit the scenario has; the gate looks
    # at what the unit's manager can do, and the scorer must judge the proposal (dangerous:
    # a person approves) rather than crash on the stand-in manager.
    scenario = make(
        {
            "name": "crash loop",
            "settings": {"services": [{"name": "api", "manager": "systemd"}]},
            "services": [{"name": "api", "state": "failed"}],
            "expect": {"verdict": "critical"},
        }
    )
    gate, _ = _gate(scenario)
    record = gate.submit(ActionRequest("reset_failed", "api", "llm", target_kind="service"))
    assert record.verdict == "approve", record.reason
