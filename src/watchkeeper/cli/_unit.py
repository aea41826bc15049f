"""The systemd unit ``watchkeeper service install`` writes, and why each line is there.

watchkeeper's job is to reach into the rest of the machine: read ``/proc`` of every
process, signal and renice them, ask systemd (over D-Bus and ``systemctl``) to restart
units, delete old files in the configured cleanup directories. So the unit runs it as
root, and the sandboxing it gets is only what leaves that job intact. Each option is
declared once in :data:`HARDENING` with its trade-off; the unit carries them as comments
and docs/install.md repeats them::

    plan = UnitPlan.from_settings(settings, config_path, daemon_argv())
    text = render_unit(plan)      # the unit file, marked as ours on its first line

A unit whose first line is not :data:`MARKER` was written by someone else: the installer
refuses to replace or remove it unless told to (``--force``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from watchkeeper.config import Settings

__all__ = [
    "DEFAULT_CONFIG",
    "HARDENING",
    "MARKER",
    "STATE_DIR",
    "UNIT_NAME",
    "Hardening",
    "UnitError",
    "UnitPlan",
    "daemon_argv",
    "render_unit",
    "starter_config",
    "systemd_quote",
]

UNIT_NAME = "watchkeeper.service"
MARKER = "# Written by 'watchkeeper service install'; remove with 'watchkeeper service uninstall'."
#: ``StateDirectory=watchkeeper``: systemd makes it, owned by the service, before each start.
STATE_DIR = PurePosixPath("/var/lib/watchkeeper")
#: ``ConfigurationDirectory=watchkeeper``: where the starter config goes when none is given.
DEFAULT_CONFIG = PurePosixPath("/etc/watchkeeper/watchkeeper.toml")
DROP_CACHES = PurePosixPath("/proc/sys/vm/drop_caches")
RESTART_SEC = 5
CONFIG_ERROR_EXIT = 2  # what `watchkeeper run` exits with for a bad config or a busy port
START_LIMIT_INTERVAL_SEC = 300
START_LIMIT_BURST = 5
STOP_TIMEOUT_SEC = 30
# The kernel's OOM killer takes others before the process that is meant to free memory.
OOM_SCORE_ADJUST = -500
#: The capabilities the daemon keeps (it runs as root; every other one is dropped).
CAPABILITIES = (
    "CAP_KILL", "CAP_SYS_NICE", "CAP_SYS_PTRACE", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER", "CAP_CHOWN", "CAP_SETUID", "CAP_SETGID", "CAP_NET_BIND_SERVICE",
)  # fmt: skip
#: systemd's groups of system calls watchkeeper never makes; denied with EPERM.
DENIED_CALLS = (
    "@clock", "@cpu-emulation", "@debug", "@module", "@mount", "@obsolete", "@raw-io",
    "@reboot", "@swap",
)  # fmt: skip
_TEMP_ROOTS = (PurePosixPath("/tmp"), PurePosixPath("/var/tmp"))


class UnitError(ValueError):
    """A setting cannot be written into a unit (the message says which, in one line)."""


@dataclass(frozen=True)
class Hardening:
    """One sandboxing line of the unit: the option, its value and what it costs."""

    option: str
    value: str
    why: str


def _hardening(private_tmp: bool) -> tuple[Hardening, ...]:
    tmp_why = (
        "its own /tmp and /var/tmp, gone when it stops"
        if private_tmp
        else "off: a cleanup directory is under /tmp or /var/tmp, which it must see as they are"
    )
    return (
        Hardening("NoNewPrivileges", "yes", "nothing it starts gains privileges (setuid)"),
        Hardening(
            "ProtectSystem",
            "strict",
            "the whole filesystem read-only but its data dir, its config dir and the "
            "ReadWritePaths below (the cleanup dirs and the rotated logs' folders)",
        ),
        Hardening(
            "ProtectHome",
            "read-only",
            "home folders are read (disk usage, process files), never written except "
            "a cleanup dir listed in ReadWritePaths",
        ),
        Hardening("PrivateTmp", "yes" if private_tmp else "no", tmp_why),
        Hardening(
            "ProtectKernelTunables", "yes", "/proc/sys and /sys are read-only: read, not set"
        ),
        Hardening("ProtectKernelModules", "yes", "it cannot load kernel modules"),
        Hardening("ProtectKernelLogs", "yes", "no access to the kernel log ring buffer"),
        Hardening("ProtectControlGroups", "yes", "cgroups are read, never changed"),
        Hardening("ProtectClock", "yes", "it cannot set the clock"),
        Hardening("ProtectHostname", "yes", "it cannot change the host name"),
        Hardening("RestrictSUIDSGID", "yes", "it cannot make setuid or setgid files"),
        Hardening("RestrictRealtime", "yes", "no real-time scheduling (renice still works)"),
        Hardening("RestrictNamespaces", "yes", "it cannot make namespaces (containers)"),
        Hardening("LockPersonality", "yes", "its execution domain is fixed"),
        Hardening(
            "MemoryDenyWriteExecute",
            "yes",
            "no memory both writable and executable; CPython does not need it (no JIT)",
        ),
        Hardening("SystemCallArchitectures", "native", "only this machine's system call ABI"),
        Hardening(
            "RestrictAddressFamilies",
            "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
            "D-Bus and the journal (unix), the web API, Ollama, NATS and probes (inet), "
            "interface addresses (netlink)",
        ),
        Hardening(
            "CapabilityBoundingSet",
            " ".join(CAPABILITIES),
            "root keeps only what its actions use: signal and renice any process, read "
            "every /proc entry, delete and chown files in cleanup dirs, start services as "
            "their users, bind a low port; no CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SYS_MODULE",
        ),
        Hardening(
            "SystemCallFilter",
            "~" + " ".join(DENIED_CALLS),
            "system calls no part of it makes (mount, modules, reboot, swap, clock, "
            "ptrace, raw I/O) fail; services it starts itself get the same filter",
        ),
        Hardening("SystemCallErrorNumber", "EPERM", "a filtered call fails, it does not kill"),
        Hardening("UMask", "0027", "its files (history, token) are not readable by others"),
    )


#: Every sandboxing option, with the trade-off docs/install.md explains (PrivateTmp=yes
#: here; it is turned off when a cleanup directory lies under /tmp or /var/tmp).
HARDENING: tuple[Hardening, ...] = _hardening(private_tmp=True)

#: What is deliberately left out, and why: each would stop watchkeeper doing its job.
NOT_SET: tuple[tuple[str, str], ...] = (
    ("User=", "it runs as root: signalling and renicing any process needs it"),
    ("ProtectProc=invisible", "it must read /proc of every process"),
    ("PrivateDevices=yes", "the GPU collector opens /dev/nvidia*"),
    ("PrivateNetwork=yes", "it serves the web API and talks to Ollama and NATS"),
    (
        "SystemCallFilter=@system-service",
        "an allow-list: the calls of psutil, the process manager and every action were not "
        "audited against it, and a call left out would fail an action",
    ),
)


def systemd_quote(word: str) -> str:
    """One argument of ``ExecStart=``, quoted for systemd (``%`` and ``$`` escaped)."""
    if any(ch in word for ch in "\n\r\0"):
        raise UnitError(f"{word[:80]!r}: a line break cannot be written into a unit")
    escaped = word.replace("%", "%%").replace("$", "$$")
    if escaped and not any(ch in escaped for ch in " \t\"'\\;"):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def daemon_argv() -> list[str]:
    """How to start this installation's watchkeeper: its console script, else ``-m``."""
    name = "watchkeeper.exe" if sys.platform == "win32" else "watchkeeper"
    script = Path(sys.executable).parent / name
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "watchkeeper"]


def _under(path: PurePosixPath, roots: tuple[PurePosixPath, ...]) -> bool:
    return any(path == root or root in path.parents for root in roots)


@dataclass(frozen=True)
class UnitPlan:
    """What the unit needs to know: how to start the daemon and where it may write."""

    argv: list[str]
    config: PurePosixPath
    writable: list[PurePosixPath] = field(default_factory=list)
    private_tmp: bool = True
    description: str = "watchkeeper: watches this host and heals what it safely can"

    @classmethod
    def from_settings(cls, settings: Settings, config: PurePosixPath, argv: list[str]) -> UnitPlan:
        """The plan for a daemon run with ``settings`` read from ``config``."""
        if not config.is_absolute():
            raise UnitError(f"the config path {config} must be absolute")
        # ProtectKernelTunables makes /proc/sys read-only; the drop_caches action writes here.
        writable: list[PurePosixPath] = [DROP_CACHES]
        if config.parent.name == "watchkeeper":  # a folder of its own: --persist writes there
            writable.append(config.parent)
        cleanup = [PurePosixPath(d.path) for d in settings.remediation.cleanup_dirs]
        logs = [PurePosixPath(p).parent for p in settings.remediation.log_files]
        for path in [*cleanup, *logs]:
            if path not in writable:
                writable.append(path)
        private_tmp = not any(_under(path, _TEMP_ROOTS) for path in cleanup)
        return cls(argv=list(argv), config=config, writable=writable, private_tmp=private_tmp)

    def exec_start(self) -> str:
        words = [*self.argv, "run", "--config", str(self.config), "--data-dir", str(STATE_DIR)]
        return " ".join(systemd_quote(word) for word in words)


def render_unit(plan: UnitPlan) -> str:
    """The unit file's text; its first line is :data:`MARKER`."""
    lines = [
        MARKER,
        "# Each sandboxing option's trade-off is on the line above it (docs/install.md);",
        "# add paths it may write with 'systemctl edit watchkeeper' (ReadWritePaths=).",
        "[Unit]",
        f"Description={plan.description}",
        "After=network.target dbus.service",
        f"StartLimitIntervalSec={START_LIMIT_INTERVAL_SEC}",
        f"StartLimitBurst={START_LIMIT_BURST}",
        "",
        "[Service]",
        "Type=exec",
        f"ExecStart={plan.exec_start()}",
        "StateDirectory=watchkeeper",
        "StateDirectoryMode=0750",
        f"WorkingDirectory={STATE_DIR}",
        "Restart=on-failure",
        f"RestartSec={RESTART_SEC}",
        "# exit status 2 is a configuration error: starting again would not fix it",
        f"RestartPreventExitStatus={CONFIG_ERROR_EXIT}",
        f"TimeoutStopSec={STOP_TIMEOUT_SEC}",
        "KillMode=mixed",
        f"OOMScoreAdjust={OOM_SCORE_ADJUST}",
        "Environment=NO_COLOR=1",
    ]
    if plan.config.parent.name == "watchkeeper" and plan.config.parent.parent == PurePosixPath(
        "/etc"
    ):
        lines.append("ConfigurationDirectory=watchkeeper")
    for item in _hardening(plan.private_tmp):
        lines += [f"# {item.why}", f"{item.option}={item.value}"]
    if plan.writable:
        lines.append("# where it may write besides its data dir ('-': fine if missing)")
        lines += [f"ReadWritePaths=-{systemd_quote(str(path))}" for path in plan.writable]
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


def starter_config(data_dir: str = str(STATE_DIR), config: str = str(DEFAULT_CONFIG)) -> str:
    """The config file written when the service is installed without one."""
    return (
        "# watchkeeper's configuration for the service ('watchkeeper service install').\n"
        "# Every key: README.md, 'Every key and its default'. Check it with\n"
        f"# 'watchkeeper config check {config}', then restart the service.\n"
        f"data_dir = {json.dumps(data_dir)}\n"
        'personality = "plain"\n'
    )
