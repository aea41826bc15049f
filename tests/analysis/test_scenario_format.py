"""The scenario format: each field changes the samples (and events, and settings) the way
docs/scenarios.md says, and the first eighteen files still give the very same samples."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from watchkeeper.model.metrics import MetricsSample
from watchkeeper.testing.scenarios import (
    Scenario,
    ScenarioError,
    build_samples,
    load_scenarios,
    scenario_settings,
    timeline,
)

HERE = Path(__file__).resolve().parent
SHIPPED = HERE.parent / "scenarios"
LEGACY = json.loads((HERE / "scenario_fixtures" / "legacy_samples.json").read_text())


def make(**fields: Any) -> Scenario:
    data: dict[str, Any] = {"name": "format test", "expect": {"verdict": "healthy"}}
    data.update(fields)
    return Scenario.model_validate(data)


def samples(scenario: Scenario) -> list[MetricsSample]:
    return [sample for _, sample in build_samples(scenario)]


def digest(scenario: Scenario) -> str:
    h = hashlib.sha256()
    for sample in samples(scenario):
        data = sample.model_dump(mode="json", exclude_defaults=True)
        for service in data.get("services", []):
            service.pop("manager", None)  # scenario services now say their manager
        h.update(json.dumps(data, sort_keys=True).encode())
    return h.hexdigest()


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_the_first_eighteen_files_give_the_same_samples_as_before(name: str) -> None:
    path = SHIPPED / name
    if hashlib.sha256(path.read_bytes()).hexdigest() != LEGACY[name]["file_sha256"]:
        pytest.skip(f"{name} was edited since its samples were recorded")
    scenario = next(s for s in load_scenarios(SHIPPED) if s.path == name)
    assert digest(scenario) == LEGACY[name]["samples_sha256"]


# -- host values -----------------------------------------------------------------------------


def test_periodic_change_is_on_for_its_share_of_each_period() -> None:
    scenario = make(
        steps=40,
        interval=5,
        changes=[{"from": 20, "until": 180, "every": 90, "for": 20, "set": {"cpu": 99}}],
    )
    cpu = {step * 5: s.cpu.percent for step, s in enumerate(samples(scenario)) if s.cpu}
    hot = sorted(t for t, value in cpu.items() if value == 99)
    # On at 20..35 and 110..125 (20 s of every 90 s from 20), off at 180 and later.
    assert hot == [20, 25, 30, 35, 110, 115, 120, 125]


def test_for_without_every_is_refused_with_the_file_named(tmp_path: Path) -> None:
    bad = {"name": "bad", "changes": [{"for": 10, "set": {"cpu": 1}}], "expect": {"verdict": "x"}}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ScenarioError, match=r"bad\.json.*'for' needs 'every'"):
        load_scenarios(tmp_path)


def test_dotted_paths_reach_disks_and_interfaces_in_set_base_and_ramp() -> None:
    scenario = make(
        steps=3,
        base={"disks./.percent": 70.0, "disks./var/lib.percent": 10.0},
        ramp={"nets.eth0.errors": [0.0, 40.0]},
        changes=[{"from": 10, "set": {"disks./var/lib.inodes_percent": 96.0}}],
    )
    got = samples(scenario)
    roots = [next(f for f in s.disks.filesystems if f.mount == "/") for s in got if s.disks]
    assert [round(f.percent) for f in roots] == [70, 70, 70]
    libs = [next(f for f in s.disks.filesystems if f.mount == "/var/lib") for s in got if s.disks]
    assert [f.inodes_percent for f in libs] == [None, None, 96.0]
    errors = [s.network.interfaces[0].rx_errors_per_s for s in got if s.network]
    assert errors == [0.0, 20.0, 40.0]


def test_noise_is_deterministic_bounded_and_seeded_by_the_scenario_name() -> None:
    noisy = make(steps=50, base={"cpu": 50.0}, noise={"cpu": 10.0, "disks./.percent": 2.0})
    first = [s.cpu.percent for s in samples(noisy) if s.cpu]
    again = [s.cpu.percent for s in samples(noisy) if s.cpu]
    other = make(name="another", steps=50, base={"cpu": 50.0}, noise={"cpu": 10.0})
    theirs = [s.cpu.percent for s in samples(other) if s.cpu]
    assert first == again
    assert first != theirs
    assert all(v is not None and 40.0 <= v <= 60.0 for v in first)
    assert len({round(v or 0, 3) for v in first}) > 40  # it really varies
    disks = [s.disks.filesystems[0].percent for s in samples(noisy) if s.disks]
    assert all(48.0 <= v <= 52.0 for v in disks) and len(set(disks)) > 40


def test_cpu_memory_and_gpu_composition() -> None:
    scenario = make(
        steps=2,
        base={
            "cpu": 60.0,
            "iowait": 35.0,
            "steal": 12.0,
            "per_core": [100.0, 20.0, 60.0, 60.0],
            "cached_gb": 3.0,
            "slab_gb": 1.5,
            "shared_gb": 2.0,
            "gpus": [
                {"name": "A10", "util": 97, "mem_used_gb": 22, "mem_total_gb": 24, "temp": 84}
            ],
        },
        ramp={"gpus.0.util": [10, 90]},
    )
    first, last = samples(scenario)
    assert last.cpu is not None and last.memory is not None and last.gpu is not None
    assert last.cpu.count == 4
    assert last.cpu.per_core_percent == (100.0, 20.0, 60.0, 60.0)
    assert (last.cpu.iowait_percent, last.cpu.steal_percent) == (35.0, 12.0)
    gib = 1024**3
    assert last.memory.cached_bytes == 3 * gib
    assert last.memory.slab_bytes == int(1.5 * gib)
    assert last.memory.shared_bytes == 2 * gib
    (gpu,) = last.gpu.devices
    assert gpu.name == "A10" and gpu.temperature_celsius == 84
    assert gpu.memory_used_bytes == 22 * gib and gpu.memory_total_bytes == 24 * gib
    assert first.gpu is not None and first.gpu.devices[0].utilization_percent == 10
    assert gpu.utilization_percent == 90
    flat = last.flat()
    assert flat["cpu.core.0.percent"] == 100.0 and flat["gpu.0.temperature_celsius"] == 84


def test_without_the_new_keys_the_families_stay_as_before() -> None:
    (sample,) = samples(make(steps=1))
    assert sample.gpu is None
    assert sample.cpu is not None and sample.cpu.iowait_percent is None
    assert sample.memory is not None and sample.memory.cached_bytes is None


# -- processes ---------------------------------------------------------------------------------


def test_process_state_parent_threads_kernel_and_changes() -> None:
    scenario = make(
        steps=8,
        interval=10,
        processes=[
            {"pid": 50, "name": "kswapd0", "cpu": 40, "rss_mb": 0, "kernel": True, "ppid": 2},
            {
                "pid": 900,
                "name": "postgres",
                "cpu": 30,
                "ppid": 1,
                "threads": 12,
                "changes": [{"from": 30, "set": {"state": "D", "cpu": 2}}],
            },
            {"pid": 901, "name": "defunct", "state": "Z", "rss_mb": 0, "cpu": 0},
            {"pid": 902, "name": "paused", "state": "T", "cpu": 0},
            {"pid": 60, "name": "kworker/0:1", "cpu": 1, "rss_mb": 0, "ppid": 2},
        ],
    )
    got = samples(scenario)
    by_pid = {p.pid: p for p in got[5].processes.top_memory} if got[5].processes else {}
    assert by_pid[50].kernel_thread and by_pid[50].ppid == 2
    assert by_pid[900].num_threads == 12 and by_pid[900].ppid == 1
    assert by_pid[900].status == "disk-sleep" and by_pid[900].cpu_percent == 2
    assert by_pid[901].status == "zombie" and by_pid[902].status == "stopped"
    assert by_pid[60].kernel_thread  # kthreadd's child, as the collector reports it
    assert not by_pid[900].kernel_thread
    early = {p.pid: p for p in got[1].processes.top_cpu} if got[1].processes else {}
    assert early[900].status == "running" and early[900].cpu_percent == 30
    procs = got[5].processes
    assert procs is not None
    assert (procs.disk_sleep, procs.zombie, procs.stopped) == (1, 1, 1)
    before = got[1].processes
    assert before is not None and before.disk_sleep == 0


def test_a_gc_sawtooth_rides_on_the_leak() -> None:
    scenario = make(
        steps=25,
        interval=10,
        processes=[
            {
                "pid": 7,
                "name": "java",
                "rss_mb": 1000,
                "leak_mb_per_min": 15,
                "sawtooth_mb": 300,
                "sawtooth_period": 60,
            }
        ],
    )
    rss = [s.processes.top_memory[0].rss_bytes / 2**20 for s in samples(scenario) if s.processes]
    # Each 60 s: climbs 300 MB then drops back; the troughs climb at the leak's rate.
    troughs = rss[::6]
    assert [round(x) for x in troughs] == [1000, 1015, 1030, 1045, 1060]
    assert rss[5] - rss[0] == pytest.approx(250 + 12.5)  # 5/6 of the tooth, 50 s of leak
    assert rss[6] < rss[5]


def test_process_noise_varies_cpu_deterministically() -> None:
    proc = {"pid": 7, "name": "worker", "cpu": 50, "noise": {"cpu": 20}}
    got = [
        s.processes.top_cpu[0].cpu_percent
        for s in samples(make(steps=20, processes=[proc]))[1:]
        if s.processes
    ]
    assert all(v is not None and 30 <= v <= 70 for v in got)
    assert len(set(got)) > 15


def test_exited_children_cpu_reaches_the_job_grouping() -> None:
    jobs = pytest.importorskip("watchkeeper.collectors.jobs")
    assert hasattr(jobs, "group_jobs")
    scenario = make(
        steps=3,
        processes=[
            {"pid": 300, "name": "make", "cpu": 1, "ppid": 1, "exited_children_cpu": 150},
            {"pid": 301, "name": "cc1plus", "cpu": 40, "ppid": 300},
        ],
    )
    last = samples(scenario)[-1]
    assert last.processes is not None and last.processes.groups
    top = last.processes.groups[0]
    assert top.parent_pid == 300 and top.cpu_percent >= 150


# -- services and logs ---------------------------------------------------------------------------


def test_a_flapping_service_fails_for_down_for_each_period_and_restarts_count_up() -> None:
    scenario = make(
        steps=25,
        interval=5,
        services=[
            {
                "name": "worker",
                "pid": 4000,
                "critical": True,
                "flap": {"every": 40, "down_for": 10, "exit_code": 3, "from": 0, "until": 100},
            }
        ],
    )
    states = []
    for s in samples(scenario):
        (svc,) = s.services
        states.append((str(svc.state), svc.restarts, svc.last_exit_code, svc.pid))
    # Up 0..29, failed 30..39, up 40..69, failed 70..79, up after 80; the flap ends at 100.
    assert states[0] == ("running", 0, None, 4000)
    assert states[6] == ("failed", 0, 3, None)  # t=30
    assert states[8] == ("running", 1, 3, 4000)  # t=40
    assert states[14] == ("failed", 1, 3, None)  # t=70
    assert states[16] == ("running", 2, 3, 4000)  # t=80
    assert {s for s, *_ in states[16:]} == {"running"}  # no crash at 110: the flap ended
    assert states[-1][1] == 2


def test_service_events_come_at_the_moments_of_change() -> None:
    scenario = make(
        steps=10,
        interval=15,
        services=[{"name": "worker", "flap": {"every": 40, "down_for": 10, "exit_code": 3}}],
        logs=[{"at": 29, "service": "worker", "line": "worker: fatal: lost connection\x1b[31m"}],
    )
    events = [
        (e.kind, e.at.timestamp(), e.exit_code, e.uptime, e.detail)
        for st in timeline(scenario)
        for e in st.events
    ]
    t0 = next(iter(timeline(scenario))).now
    kinds = [(kind, round(at - t0)) for kind, at, *_ in events]
    assert kinds[:4] == [("exited", 30), ("started", 40), ("exited", 70), ("started", 80)]
    exited = events[0]
    assert exited[2] == 3
    assert exited[3] == 30  # up since the start
    assert str(exited[4]).startswith("worker: fatal: lost connection")
    assert "\x1b" not in str(exited[4])  # cleaned as a manager's status line is


def test_log_lines_naming_a_service_become_its_status_detail() -> None:
    scenario = make(
        steps=4,
        interval=10,
        services=[{"name": "db", "state": "failed", "exit_code": 1}],
        logs=[
            {"at": 0, "service": None, "line": "kernel: EXT4-fs error"},
            {"at": 15, "service": "db", "line": "could not write to file: No space left\n"},
        ],
    )
    details = [s.services[0].detail for s in samples(scenario)]
    assert details == [
        "",
        "",
        "could not write to file: No space left",
        "could not write to file: No space left",
    ]
    assert samples(scenario)[0].services[0].last_exit_code == 1


def test_scenario_services_become_configured_services() -> None:
    scenario = make(
        services=[
            {"name": "db", "critical": True, "paths": ["/var/lib/db"]},
            {"name": "web", "depends_on": ["db"], "manager": "process"},
        ]
    )
    specs = {s.name: s for s in scenario_settings(scenario).services}
    assert specs["db"].manager == "systemd" and specs["db"].unit == "db.service"
    assert specs["db"].critical and specs["db"].paths == [Path("/var/lib/db")]
    assert specs["web"].manager == "process" and specs["web"].depends_on == ["db"]
    sample = samples(scenario)[0]
    assert {s.name: s.manager for s in sample.services} == {"db": "systemd", "web": "process"}


def test_services_the_settings_declare_are_kept() -> None:
    own = [{"name": "api", "manager": "systemd", "unit": "api.service"}]
    scenario = make(settings={"services": own}, services=[{"name": "db"}])
    assert [s.name for s in scenario_settings(scenario).services] == ["api"]


# -- the CLI on a bad file -------------------------------------------------------------------------


def test_cli_names_the_bad_file_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('{"name": "x", "steps": ')
    proc = subprocess.run(
        [sys.executable, "-m", "watchkeeper.testing.scenarios", "--rules", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: broken.json:")
    assert proc.stderr.count("\n") == 1


BAD_VALUES = [
    ("text_cpu.json", {"base": {"cpu": "hot"}}, "cannot be played"),
    (
        "bad_state.json",
        {"processes": [{"pid": 5, "name": "x", "changes": [{"set": {"state": "X"}}]}]},
        "state 'X'",
    ),
    (
        "bad_flap.json",
        {"services": [{"name": "w", "flap": {"every": 10, "down_for": 20}}]},
        "down_for must be shorter",
    ),
]


@pytest.mark.parametrize(("name", "fields", "said"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_a_bad_value_is_one_line_naming_the_file(
    tmp_path: Path, name: str, fields: dict[str, Any], said: str
) -> None:
    data = {"name": "bad", "expect": {"verdict": "healthy"}, **fields}
    (tmp_path / name).write_text(json.dumps(data))
    proc = subprocess.run(
        [sys.executable, "-m", "watchkeeper.testing.scenarios", "--rules", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stdout
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {name}:") and said in proc.stderr
    assert proc.stderr.count("\n") == 1
