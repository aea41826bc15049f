"""``watchkeeper service`` where no systemd runs as PID 1, and the steps for macOS/Windows.

The real install (into a booted systemd) is tests/systemd_real/
test_systemd_real_service_install.py; here the command runs as a user runs it, as a
process, and what it prints is checked: the unit of ``--dry-run``, the one-line refusal
when systemd is not PID 1, the sandbox adapting to the cleanup directories, the launchd
plist and the PowerShell steps.
"""

from __future__ import annotations

import os
import plistlib
import subprocess
import sys
from pathlib import Path

import pytest

UNIT_FILE = Path("/etc/systemd/system/watchkeeper.service")
NO_SYSTEMD = not Path("/run/systemd/system").is_dir()


def service(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env["NO_COLOR"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "watchkeeper", "service", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def config_with(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wk.toml"
    path.write_text(text, encoding="utf-8")
    return path


def unit_lines(out: str) -> dict[str, list[str]]:
    lines: dict[str, list[str]] = {}
    for line in out.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            lines.setdefault(key, []).append(value)
    return lines


def test_dry_run_prints_the_hardened_unit_and_the_commands_and_changes_nothing(
    tmp_path: Path,
) -> None:
    existed = UNIT_FILE.exists()
    done = service(tmp_path, "install", "--dry-run")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith(f"# would write {UNIT_FILE}:\n# Written by 'watchkeeper service")
    unit = unit_lines(out)
    exec_start = unit["ExecStart"][0].split()
    assert exec_start[0] == str(Path(sys.executable).parent / "watchkeeper")
    assert exec_start[1:] == ["run", "--config", "/etc/watchkeeper/watchkeeper.toml",
                              "--data-dir", "/var/lib/watchkeeper"]  # fmt: skip
    for key, value in {
        "StateDirectory": "watchkeeper", "Restart": "on-failure", "RestartSec": "5",
        "StartLimitBurst": "5", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
        "ProtectHome": "read-only", "PrivateTmp": "yes", "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes", "ProtectControlGroups": "yes", "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native", "WantedBy": "multi-user.target",
    }.items():  # fmt: skip
        assert unit[key] == [value], key
    assert "ProtectProc" not in unit and "User" not in unit  # it must see and signal everything
    assert "/proc/sys/vm/drop_caches" in " ".join(unit["ReadWritePaths"])
    assert out.rstrip().splitlines()[-3:] == [
        "systemctl daemon-reload",
        "systemctl enable watchkeeper.service",
        "systemctl restart watchkeeper.service",
    ]
    assert UNIT_FILE.exists() == existed


def test_cleanup_dirs_become_writable_and_one_under_tmp_turns_private_tmp_off(
    tmp_path: Path,
) -> None:
    config = config_with(
        tmp_path,
        'data_dir = "/var/lib/watchkeeper"\n'
        '[[remediation.cleanup_dirs]]\npath = "/tmp/build-cache"\n'
        '[[remediation.cleanup_dirs]]\npath = "/home/ci/.cache/pip"\n'
        '[remediation]\nlog_files = ["/var/log/app/app.log"]\n',
    )
    done = service(tmp_path, "install", "--dry-run", "--config", str(config))
    assert done.returncode == 0, done.stderr
    unit = unit_lines(done.stdout)
    assert unit["PrivateTmp"] == ["no"]
    writable = unit["ReadWritePaths"]
    for path in ("/tmp/build-cache", "/home/ci/.cache/pip", "/var/log/app"):
        assert f"-{path}" in writable
    assert unit["ExecStart"][0].split()[3] == str(config)
    assert "note:" not in done.stdout  # its data_dir is the service's


def test_a_config_with_another_data_dir_is_noted(tmp_path: Path) -> None:
    config = config_with(tmp_path, 'data_dir = "/srv/wk"\n')
    done = service(tmp_path, "install", "--dry-run", "--config", str(config))
    assert done.returncode == 0
    assert 'set data_dir = "/var/lib/watchkeeper"' in done.stdout


def test_a_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = config_with(tmp_path, "[thresholds]\ncpu_warning = 99\ncpu_critical = 90\n")
    done = service(tmp_path, "install", "--dry-run", "--config", str(config))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "cpu_warning" in done.stderr
    missing = service(tmp_path, "install", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2
    assert (
        missing.stderr.strip()
        == f"watchkeeper: the config file {tmp_path / 'nope.toml'} does not exist"
    )


@pytest.mark.skipif(not NO_SYSTEMD or os.geteuid() != 0, reason="needs root and no systemd")
def test_without_systemd_as_pid_1_install_says_so_and_prints_the_unit(tmp_path: Path) -> None:
    done = service(tmp_path, "install")
    assert done.returncode == 2
    assert done.stderr.startswith("watchkeeper: systemd is not running as PID 1 here")
    assert done.stderr.count("\n") == 1
    assert done.stdout.startswith("# Written by 'watchkeeper service install'")
    assert "ExecStart=" in done.stdout
    assert not UNIT_FILE.exists()
    assert not Path("/etc/watchkeeper/watchkeeper.toml").exists()  # nothing written
    status = service(tmp_path, "status")
    assert status.returncode == 0
    assert status.stdout.splitlines() == [
        f"installed: no ({UNIT_FILE} does not exist)",
        "systemd: not running as PID 1 here (enabled and active unknown)",
    ]


def test_macos_gets_a_launchd_daemon(tmp_path: Path) -> None:
    done = service(tmp_path, "install", "--platform", "macos")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    plist_text = out.split("<<'PLIST'\n", 1)[1].split("\nPLIST\n", 1)[0]
    job = plistlib.loads(plist_text.encode())
    assert job["Label"] == "org.watchkeeper.daemon"
    assert job["ProgramArguments"][1:] == [
        "run", "--config", "/Library/Application Support/watchkeeper/watchkeeper.toml",
        "--data-dir", "/Library/Application Support/watchkeeper",
    ]  # fmt: skip
    assert job["RunAtLoad"] is True and job["KeepAlive"] == {"SuccessfulExit": False}
    assert "launchctl bootstrap system /Library/LaunchDaemons/org.watchkeeper.daemon.plist" in out
    assert "launchctl bootout system/org.watchkeeper.daemon" in out
    assert "Replace watchkeeper with the full path" in out  # another system than this one


def test_windows_gets_a_task_started_at_boot_and_again_after_a_failure(tmp_path: Path) -> None:
    done = service(tmp_path, "install", "--platform", "windows")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for part in (
        "New-ScheduledTaskTrigger -AtStartup",
        "New-ScheduledTaskPrincipal -UserId 'SYSTEM'",
        "-RestartCount 5",
        "-Argument 'run --config C:\\ProgramData\\watchkeeper\\watchkeeper.toml "
        "--data-dir C:\\ProgramData\\watchkeeper'",
        "Register-ScheduledTask -TaskName 'watchkeeper'",
        "Unregister-ScheduledTask -TaskName 'watchkeeper'",
    ):
        assert part in out, part
    assert "sc.exe" not in out
    removal = service(tmp_path, "uninstall", "--platform", "windows")
    assert "Unregister-ScheduledTask" in removal.stdout


def test_the_reference_unit_in_deploy_is_what_install_writes() -> None:
    from watchkeeper.cli._unit import DEFAULT_CONFIG, STATE_DIR, UnitPlan, render_unit
    from watchkeeper.config import build_settings

    settings = build_settings({}, file_label="test", flags={"data_dir": str(STATE_DIR)})
    plan = UnitPlan.from_settings(settings, DEFAULT_CONFIG, ["/usr/local/bin/watchkeeper"])
    shipped = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "watchkeeper.service"
    assert shipped.read_text(encoding="utf-8") == render_unit(plan), (
        "deploy/systemd/watchkeeper.service is out of date: regenerate it from render_unit"
    )


def test_every_sandboxing_choice_is_explained_in_the_docs() -> None:
    from watchkeeper.cli._unit import HARDENING, NOT_SET

    docs = (Path(__file__).resolve().parents[2] / "docs" / "install.md").read_text()
    for item in HARDENING:
        assert f"`{item.option}=" in docs or f"{item.option}=" in docs, item.option
    for option, _ in NOT_SET:
        assert f"`{option.split('=')[0]}=" in docs, option
