"""Sample remediation plugin: ``clear_event_logs``, written in the product brief's style.

The action frees the disk space system logs take:

- on Linux with systemd it vacuums the journal (``journalctl --vacuum-time=<vacuum_time>``:
  entries older than that go);
- on Linux without ``journalctl`` it rotates the files listed in ``remediation.log_files``
  (compressed aside, truncated in place, ``remediation.rotate_keep`` kept);
- on Windows it clears the event logs named in ``windows_logs`` (``wevtutil cl <name>``).

Commands run as argument lists, never through a shell. Turn it on with::

    [plugins]
    plugins_to_load = ["sample_remediation_plugin"]

    [plugins.plugin_configs.sample_remediation_plugin]
    vacuum_time = "7d"
    windows_logs = ["Application", "System"]

Registering it is one assignment onto the remediator, as in the brief; watchkeeper turns
that into a registered action, so the policy gates it (``deny_actions``, ``approve`` and
``dry_run`` modes, cooldown) and the audit records every run. Vacuuming the journal and
clearing event logs need administrator rights; without them the action fails with a clear
"needs privileges" record.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from plugins.base_plugin import BasePlugin
from pydantic import BaseModel, ConfigDict, Field, field_validator

from watchkeeper.remediation.actions import NeedsPrivilege
from watchkeeper.remediation.files import rotate_file

__all__ = ["CleanupPlan", "SampleRemediationConfig", "SampleRemediationPlugin", "plan_cleanup"]

# Event log names as Windows spells them ("Application", "Microsoft-Windows-Foo/Operational");
# the first character may not be "/" or "-", so a name can never read as a wevtutil option.
_EVENT_LOG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._/-]{0,127}$")
_DENIED = ("permission denied", "access is denied", "operation not permitted", "not permitted")


class SampleRemediationConfig(BaseModel):
    """``plugin_configs.sample_remediation_plugin``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vacuum_time: str = Field("7d", pattern=r"^[1-9][0-9]{0,5}(s|min|h|d|w|weeks|months|y)$")
    windows_logs: list[str] = Field(default_factory=lambda: ["Application", "System"])
    # Below the 30 s every plugin action gets, so a hung command is reported as ours.
    command_timeout: float = Field(25.0, gt=0, le=3600)

    @field_validator("windows_logs")
    @classmethod
    def _log_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not _EVENT_LOG_NAME.match(name):
                raise ValueError(f"{name!r} is not an event log name")
        return names


@dataclass(frozen=True)
class CleanupPlan:
    """What ``clear_event_logs`` would do here: commands to run, or files to rotate."""

    commands: list[list[str]] = field(default_factory=list)
    rotate: list[Path] = field(default_factory=list)


def plan_cleanup(
    platform: str,
    journalctl: str | None,
    log_files: list[Path],
    config: SampleRemediationConfig,
) -> CleanupPlan:
    """Decide what to do on ``platform`` (``sys.platform``), given where ``journalctl`` is
    (``shutil.which``) and the configured log files."""
    if platform == "win32":
        return CleanupPlan(commands=[["wevtutil", "cl", name] for name in config.windows_logs])
    if journalctl is not None:
        return CleanupPlan(commands=[[journalctl, f"--vacuum-time={config.vacuum_time}"]])
    return CleanupPlan(rotate=list(log_files))


async def _run(argv: list[str], timeout: float) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise RuntimeError(f"{Path(argv[0]).name} did not finish within {timeout:g}s") from None
    text = out.decode("utf-8", "replace").strip()
    last = text.splitlines()[-1][:200] if text else ""
    if proc.returncode != 0:
        if any(word in text.lower() for word in _DENIED):
            raise NeedsPrivilege(f"{Path(argv[0]).name} was refused: {last}")
        raise RuntimeError(f"{Path(argv[0]).name} exited {proc.returncode}: {last}")
    return last


class SampleRemediationPlugin(BasePlugin):
    config_model = SampleRemediationConfig

    def register(self, system_context):
        self.orchestrator = system_context["orchestrator"]
        remediator = system_context["orchestrator"].agents.get("remediator")
        if remediator:
            remediator.clear_event_logs = self.clear_event_logs
            remediator.logger.info("Registered clear_event_logs action.")

    async def clear_event_logs(self):
        """Free the disk space system logs take (journal vacuum, log rotation, event logs)."""
        settings = self.orchestrator.settings.remediation
        plan = plan_cleanup(
            sys.platform, shutil.which("journalctl"), settings.log_files, self.config
        )
        if plan.commands:
            done = [await _run(argv, self.config.command_timeout) for argv in plan.commands]
            return "; ".join(line for line in done if line) or "logs cleared"
        if not plan.rotate:
            raise RuntimeError("nothing to clear: no journalctl and no remediation.log_files")
        rotated, freed = 0, 0
        for path in plan.rotate:
            if not os.path.lexists(path):
                continue
            size, _ = await asyncio.to_thread(rotate_file, path, keep=settings.rotate_keep)
            rotated += 1
            freed += size
        if not rotated:
            raise RuntimeError("none of the configured log files exists")
        return f"rotated {rotated} log file(s), {freed} bytes set aside compressed"

    def get_config(self):
        return self.config
