"""``watchkeeper service install`` away from systemd: the steps, printed, not run.

On macOS the daemon becomes a launchd job (a plist in /Library/LaunchDaemons, written by
:mod:`plistlib` so it is valid XML whatever the paths hold); on Windows a scheduled task
that starts at boot as SYSTEM and is started again when it fails. A Windows *service*
would need a program that answers the Service Control Manager's control requests, which
``watchkeeper run`` does not, so ``sc.exe create`` would see it killed after 30 s; the
task scheduler runs a console program as it is. Both texts are printed for a person to
read and run::

    print(macos_steps(argv, config))
    print(windows_steps(argv, config))
"""

from __future__ import annotations

import plistlib

from watchkeeper.cli._unit import starter_config

__all__ = [
    "LAUNCHD_LABEL",
    "LAUNCHD_PLIST",
    "MACOS_DATA_DIR",
    "WINDOWS_DATA_DIR",
    "WINDOWS_TASK",
    "launchd_plist",
    "macos_steps",
    "windows_steps",
]

LAUNCHD_LABEL = "org.watchkeeper.daemon"
LAUNCHD_PLIST = f"/Library/LaunchDaemons/{LAUNCHD_LABEL}.plist"
MACOS_DATA_DIR = "/Library/Application Support/watchkeeper"
MACOS_CONFIG = "/Library/Application Support/watchkeeper/watchkeeper.toml"
# launchd starts a job that ended with a failure again, at most this often (seconds).
LAUNCHD_THROTTLE = 5
WINDOWS_TASK = "watchkeeper"
WINDOWS_DATA_DIR = r"C:\ProgramData\watchkeeper"
WINDOWS_CONFIG = r"C:\ProgramData\watchkeeper\watchkeeper.toml"
WINDOWS_RESTART_COUNT = 5
WINDOWS_RESTART_MINUTES = 1


def _daemon_args(config: str, data_dir: str) -> list[str]:
    return ["run", "--config", config, "--data-dir", data_dir]


#: The program named in the steps for another system than this one: its path there.
ELSEWHERE = "watchkeeper"
_ELSEWHERE_NOTE = "# Replace {program} with the full path of watchkeeper on that machine ({how})."


def launchd_plist(argv: list[str], config: str | None = None) -> str:
    """The launchd job: started at boot, kept alive after a failure, logs in its data dir."""
    config = config or MACOS_CONFIG
    job = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": [*argv, *_daemon_args(config, MACOS_DATA_DIR)],
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": LAUNCHD_THROTTLE,
        "WorkingDirectory": MACOS_DATA_DIR,
        "EnvironmentVariables": {"NO_COLOR": "1"},
        "StandardOutPath": f"{MACOS_DATA_DIR}/launchd.out.log",
        "StandardErrorPath": f"{MACOS_DATA_DIR}/launchd.err.log",
        "ProcessType": "Standard",
    }
    return plistlib.dumps(job, sort_keys=False).decode()


def _sh_quote(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


def macos_steps(argv: list[str], config: str | None = None) -> str:
    """What to run on a Mac, as root, to keep watchkeeper running as a launchd daemon."""
    config = config or MACOS_CONFIG
    plist = launchd_plist(argv, config)
    head = ["# macOS: watchkeeper as a launchd daemon (run these as root, e.g. with sudo)."]
    if argv == [ELSEWHERE]:
        head.append(_ELSEWHERE_NOTE.format(program=ELSEWHERE, how="command -v watchkeeper"))
    return "\n".join(
        [
            *head,
            f"mkdir -p {_sh_quote(MACOS_DATA_DIR)} && chmod 750 {_sh_quote(MACOS_DATA_DIR)}",
            f"[ -f {_sh_quote(config)} ] || cat > {_sh_quote(config)} <<'TOML'",
            starter_config(MACOS_DATA_DIR, config).rstrip("\n"),
            "TOML",
            f"cat > {LAUNCHD_PLIST} <<'PLIST'",
            plist.rstrip("\n"),
            "PLIST",
            f"chown root:wheel {LAUNCHD_PLIST} && chmod 644 {LAUNCHD_PLIST}",
            f"launchctl bootstrap system {LAUNCHD_PLIST}",
            f"launchctl print system/{LAUNCHD_LABEL}      # state = running",
            "# To remove it:",
            f"launchctl bootout system/{LAUNCHD_LABEL} && rm {LAUNCHD_PLIST}",
            "",
        ]
    )


def _ps_quote(word: str) -> str:
    return "'" + word.replace("'", "''") + "'"


def _windows_command_line(words: list[str]) -> str:
    """The argument string of the task's action (Windows command-line quoting)."""
    return " ".join(f'"{w}"' if (" " in w or not w) else w for w in words)


def windows_steps(argv: list[str], config: str | None = None) -> str:
    """What to run on Windows, in an elevated PowerShell, for a task started at boot."""
    config = config or WINDOWS_CONFIG
    program, *rest = argv
    arguments = _windows_command_line([*rest, *_daemon_args(config, WINDOWS_DATA_DIR)])
    head = [
        "# Windows: watchkeeper as a task that starts at boot as SYSTEM and is started",
        "# again when it fails (run these in an elevated PowerShell).",
    ]
    if argv == [ELSEWHERE]:
        head.append(_ELSEWHERE_NOTE.format(program=ELSEWHERE, how="where.exe watchkeeper"))
    starter = starter_config(WINDOWS_DATA_DIR, config).replace("'", "''")
    return "\n".join(
        [
            *head,
            f"New-Item -ItemType Directory -Force -Path {_ps_quote(WINDOWS_DATA_DIR)} | Out-Null",
            f"if (-not (Test-Path {_ps_quote(config)})) {{ Set-Content -Encoding UTF8 "
            f"-Path {_ps_quote(config)} -Value '{starter}' }}",
            f"$action = New-ScheduledTaskAction -Execute {_ps_quote(program)} "
            f"-Argument {_ps_quote(arguments)} -WorkingDirectory {_ps_quote(WINDOWS_DATA_DIR)}",
            "$trigger = New-ScheduledTaskTrigger -AtStartup",
            "$principal = New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount "
            "-RunLevel Highest",
            f"$settings = New-ScheduledTaskSettingsSet -RestartCount {WINDOWS_RESTART_COUNT} "
            f"-RestartInterval (New-TimeSpan -Minutes {WINDOWS_RESTART_MINUTES}) "
            "-ExecutionTimeLimit ([TimeSpan]::Zero) -StartWhenAvailable",
            f"Register-ScheduledTask -TaskName {_ps_quote(WINDOWS_TASK)} -Action $action "
            "-Trigger $trigger -Principal $principal -Settings $settings",
            f"Start-ScheduledTask -TaskName {_ps_quote(WINDOWS_TASK)}",
            f"Get-ScheduledTask -TaskName {_ps_quote(WINDOWS_TASK)}      # State: Running",
            "# To remove it:",
            f"Stop-ScheduledTask -TaskName {_ps_quote(WINDOWS_TASK)}; "
            f"Unregister-ScheduledTask -TaskName {_ps_quote(WINDOWS_TASK)} -Confirm:$false",
            "",
        ]
    )
