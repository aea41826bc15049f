"""The sample plugins shipped in ``plugins/``: loaded from there as an operator would, run
on real files and real processes. ``journalctl`` is replaced by a stand-in on ``PATH`` (its
real job needs systemd and root) and Windows' ``wevtutil`` is checked as a plan only."""

from __future__ import annotations

import gzip
import inspect
import json
import stat
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from plugin_helpers import SAMPLES, build, eventually, running

from watchkeeper.agents.base import AgentContext
from watchkeeper.bus import InMemoryBus, Message
from watchkeeper.config import Settings
from watchkeeper.model.events import AgentRestart
from watchkeeper.orchestrator import Orchestrator

REMEDIATION = "sample_remediation_plugin"


def module_of(orch: Orchestrator, name: str) -> ModuleType:
    module = inspect.getmodule(type(orch.plugins.plugins[name]))
    assert module is not None
    return module


async def run_action(orch: Orchestrator, action: str) -> dict[str, Any]:
    message = Message(
        topic="command.remediator",
        sender="test",
        payload={"command": "run_action", "params": {"action": action}},
    )
    return await orch.agents["remediator"].execute_command(message)


def fake_journalctl(bin_dir: Path, log: Path, *, output: str, code: int = 0) -> Path:
    """A stand-in ``journalctl`` that records its arguments and answers like the real one."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "journalctl"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"print({output!r}, file=sys.stderr)\n"
        f"sys.exit({code})\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


# -- the remediation sample (the brief's style) ---------------------------------------------
def test_the_remediation_sample_plans_per_platform(tmp_path: Path) -> None:
    orch = build(tmp_path, [REMEDIATION], directory=SAMPLES)
    module = module_of(orch, REMEDIATION)
    config = module.SampleRemediationConfig(windows_logs=["Application", "Microsoft-Windows-X/Op"])
    windows = module.plan_cleanup("win32", None, [], config)
    assert windows.commands == [
        ["wevtutil", "cl", "Application"],
        ["wevtutil", "cl", "Microsoft-Windows-X/Op"],
    ]
    linux = module.plan_cleanup("linux", "/usr/bin/journalctl", [], config)
    assert linux.commands == [["/usr/bin/journalctl", "--vacuum-time=7d"]]
    logs = [Path("/var/log/app.log")]
    assert module.plan_cleanup("linux", None, logs, config).rotate == logs


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"vacuum_time": "7d; reboot"}, "vacuum_time: String should match pattern"),
        ({"windows_logs": ["/c"]}, "'/c' is not an event log name"),
        ({"windows_logs": ["-x"]}, "'-x' is not an event log name"),
    ],
)
def test_the_remediation_sample_refuses_odd_config(
    tmp_path: Path, section: dict[str, Any], problem: str
) -> None:
    orch = build(tmp_path, [REMEDIATION], {REMEDIATION: section}, directory=SAMPLES)
    status = orch.snapshot().model_dump(mode="json")["plugins"][REMEDIATION]
    assert (status["state"], status["phase"]) == ("failed", "config")
    assert problem in status["reason"]


async def test_clear_event_logs_vacuums_the_journal_when_journalctl_is_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = tmp_path / "calls.jsonl"
    fake_journalctl(
        tmp_path / "bin", calls, output="Vacuuming done, freed 12.0M of archived journals."
    )
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    orch = build(tmp_path, [REMEDIATION], {REMEDIATION: {"vacuum_time": "3d"}}, directory=SAMPLES)
    remediator = orch.agents["remediator"]
    info = remediator.registry.get("clear_event_logs").info  # type: ignore[attr-defined]
    assert info.source == REMEDIATION
    assert info.description.startswith("Free the disk space system logs take")
    async with running(orch):
        await run_action(orch, "clear_event_logs")
        await eventually(lambda: remediator.audit())  # type: ignore[attr-defined]
    record = remediator.audit()[-1]  # type: ignore[attr-defined]
    assert record.outcome == "succeeded", record
    assert record.detail == "Vacuuming done, freed 12.0M of archived journals."
    assert [json.loads(line) for line in calls.read_text().splitlines()] == [["--vacuum-time=3d"]]


async def test_clear_event_logs_reports_missing_privileges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_journalctl(
        tmp_path / "bin",
        tmp_path / "calls.jsonl",
        output="Failed to open /var/log/journal: Permission denied",
        code=1,
    )
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    orch = build(tmp_path, [REMEDIATION], directory=SAMPLES)
    async with running(orch):
        await run_action(orch, "clear_event_logs")
        await eventually(lambda: orch.agents["remediator"].audit())  # type: ignore[attr-defined]
    record = orch.agents["remediator"].audit()[-1]  # type: ignore[attr-defined]
    assert record.outcome == "failed"
    assert record.detail.startswith("needs privileges the daemon lacks: journalctl was refused")


async def test_clear_event_logs_rotates_configured_logs_without_journalctl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "nobin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    app.write_text("line\n" * 1000)
    orch = build(
        tmp_path,
        [REMEDIATION],
        directory=SAMPLES,
        remediation={"log_files": [str(app), str(logs / "absent.log")]},
    )
    async with running(orch):
        await run_action(orch, "clear_event_logs")
        await eventually(lambda: orch.agents["remediator"].audit())  # type: ignore[attr-defined]
    record = orch.agents["remediator"].audit()[-1]  # type: ignore[attr-defined]
    assert record.outcome == "succeeded", record
    assert record.detail == "rotated 1 log file(s), 5000 bytes set aside compressed"
    assert app.stat().st_size == 0
    (rotated,) = logs.glob("app.log.*.gz")
    assert gzip.decompress(rotated.read_bytes()) == b"line\n" * 1000


# -- the metric sample -------------------------------------------------------------------
def test_the_open_files_collector_reads_file_nr(tmp_path: Path) -> None:
    source = tmp_path / "file-nr"
    source.write_text("1024\t0\t2048\n")
    orch = build(
        tmp_path,
        ["open_files_plugin"],
        {"open_files_plugin": {"source": str(source)}},
        directory=SAMPLES,
    )
    module = module_of(orch, "open_files_plugin")
    collector = module.OpenFilesCollector(source)
    assert collector.collect() == {"files.open": 1024.0, "files.max": 2048.0, "files.percent": 50.0}
    source.write_text("3000\t500\t9223372036854775807\n")  # free handles; no real limit
    assert collector.collect() == {"files.open": 2500.0, "files.max": float(2**63 - 1)}
    assert module.OpenFilesCollector(tmp_path / "absent").collect() is None
    specs = {spec.name for spec in collector.metrics}
    assert specs == {"files.open", "files.max", "files.percent"}


@pytest.mark.skipif(not Path("/proc/sys/fs/file-nr").exists(), reason="needs Linux /proc")
async def test_the_open_files_plugin_samples_this_host(tmp_path: Path) -> None:
    orch = build(tmp_path, ["open_files_plugin"], directory=SAMPLES)
    async with running(orch):
        sample = await eventually(lambda: orch.agents["sensor"].latest)  # type: ignore[attr-defined]
    assert sample.extra["files.open"] > 0
    assert sample.extra["files.max"] >= sample.extra["files.open"]
    assert "open_files" not in sample.errors


async def test_the_open_files_rule_warns_near_the_limit(tmp_path: Path) -> None:
    source = tmp_path / "file-nr"
    source.write_text("1800\t0\t2000\n")
    orch = build(
        tmp_path,
        ["open_files_plugin"],
        {"open_files_plugin": {"source": str(source), "warning_percent": 80}},
        directory=SAMPLES,
        analyzer={"for_seconds": 0},
    )
    alerts = orch.bus.subscribe("alert.firing", name="test-alerts")
    async with running(orch):
        message = await alerts.get(timeout=5)
        while message.payload["rule"] != "open_files":
            message = await alerts.get(timeout=5)
    alerts.close()
    assert message.payload["severity"] == "warning"
    assert message.payload["summary"] == "90% of the system's file handles are open (1800 of 2000)"
    bad = build(
        tmp_path,
        ["open_files_plugin"],
        {"open_files_plugin": {"warning_percent": 90, "critical_percent": 80}},
        directory=SAMPLES,
    )
    assert (
        "warning_percent must be below"
        in bad.snapshot().model_dump(mode="json")["plugins"]["open_files_plugin"]["reason"]
    )


# -- the agent sample --------------------------------------------------------------------
async def test_the_heartbeat_agent_beats_and_hears_restarts(tmp_path: Path) -> None:
    orch = build(
        tmp_path, ["heartbeat_plugin"], {"heartbeat_plugin": {"interval": 0.05}}, directory=SAMPLES
    )
    beats = orch.bus.subscribe("heartbeat.*", name="test-beats")
    async with running(orch):
        first = await beats.get(timeout=5)
        await orch.bus.publish(
            "agent.restarted",
            AgentRestart(agent="x", reason="test", restarts=1, backoff_s=0),
            sender="supervisor",
        )
        heard = await eventually(
            lambda: (
                (m := beats.get_nowait()) is not None and m.payload["agent_restarts_heard"] and m
            )
        )
        details = orch.snapshot().model_dump(mode="json")["details"]["heartbeat"]
    beats.close()
    assert (first.topic, first.sender, first.payload["seq"]) == ("heartbeat.beat", "heartbeat", 1)
    assert first.payload["host_uptime_s"] > 0 and first.payload["daemon_uptime_s"] >= 0
    assert heard.payload["agent_restarts_heard"] == 1
    assert details["beats"] >= 2 and details["agent_restarts_heard"] == 1
    assert orch.snapshot().model_dump(mode="json")["agents"]["heartbeat"]["state"] == "stopped"


async def test_a_late_heartbeat_is_reported(tmp_path: Path) -> None:
    orch = build(tmp_path, ["heartbeat_plugin"], directory=SAMPLES)
    module = module_of(orch, "heartbeat_plugin")
    now = [100.0]
    bus = InMemoryBus()
    settings = Settings.model_validate({"data_dir": str(tmp_path)})
    ctx = AgentContext(
        bus=bus, settings=lambda: settings, data_dir=tmp_path, monotonic=lambda: now[0]
    )
    agent = module.HeartbeatAgent(
        "beat", ctx, interval=1.0, late_after_ms=500, boot_time=lambda: 0.0, process_start=0.0
    )
    late = bus.subscribe("heartbeat.late", name="test-late")
    await agent.check_once()
    now[0] += 1.2  # 200 ms late: fine
    await agent.check_once()
    assert late.get_nowait() is None
    now[0] += 3.0  # 2 s late: a starved loop or a suspended machine
    await agent.check_once()
    message = late.get_nowait()
    assert message is not None and message.payload["lag_ms"] == pytest.approx(2000.0)
    assert agent.status()["max_lag_ms"] == pytest.approx(2000.0)


def test_the_samples_directory_carries_the_briefs_base_plugin() -> None:
    text = (SAMPLES / "base_plugin.py").read_text()
    assert "from watchkeeper.plugins import BasePlugin" in text
    sample = (SAMPLES / f"{REMEDIATION}.py").read_text()
    assert "from plugins.base_plugin import BasePlugin" in sample
    assert "remediator.clear_event_logs = self.clear_event_logs" in sample
    assert "shell=True" not in sample and "os.system" not in sample
