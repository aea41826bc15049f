"""The built-in actions, declared once: the policy, the LLM prompt, the UI and the audit
all read these declarations (:class:`~watchkeeper.model.actions.ActionInfo`).

Plugins declare theirs the same way when they register::

    info = next(a for a in BUILTIN_ACTIONS if a.name == "kill_process")
    params = info.check_params({"grace": 10})   # {"grace": 10.0}, or ParamError
"""

from __future__ import annotations

from watchkeeper.model.actions import ActionInfo, ParamInfo

__all__ = ["BUILTIN_ACTIONS", "KILL_GRACE_MAX"]


#: Who a process target is: filled from the sample (rules, the model) or the CLI.
_PROCESS_IDENTITY = (
    ParamInfo(
        name="create_time",
        type="float",
        description="when the process started (unix time): a reused pid is never hit",
        minimum=0,
        maximum=1e11,
    ),
    ParamInfo(
        name="name",
        type="str",
        description="the process's name when it was proposed, for the audit",
        max_length=1024,
    ),
)
#: The longest SIGTERM grace: a kill holds an action slot this long at most.
KILL_GRACE_MAX = 60.0

BUILTIN_ACTIONS: tuple[ActionInfo, ...] = (
    ActionInfo(
        name="restart_service",
        description="Restart a watched service through its service manager.",
        target_kind="service",
        risk="moderate",
        timeout=60,
    ),
    ActionInfo(
        name="start_service",
        description="Start a watched service that is stopped or has failed.",
        target_kind="service",
        risk="safe",
        timeout=60,
    ),
    ActionInfo(
        name="reset_failed",
        description="Clear a systemd unit's failed state (systemctl reset-failed) and start "
        "it: for a unit systemd gave up on, once the cause is fixed.",
        target_kind="service",
        risk="dangerous",
        timeout=60,
    ),
    ActionInfo(
        name="kill_process",
        description="Stop a process: SIGTERM, then SIGKILL after a grace period.",
        target_kind="process",
        risk="dangerous",
        params=(
            ParamInfo(
                name="grace",
                type="float",
                description="seconds before SIGKILL",
                default=5.0,
                minimum=0,
                maximum=KILL_GRACE_MAX,
            ),
        ),
        identity=_PROCESS_IDENTITY,
        # The grace, then a short wait for SIGKILL to land.
        timeout=KILL_GRACE_MAX + 15,
    ),
    ActionInfo(
        name="renice_process",
        description="Lower a process's CPU priority so others get the CPU first.",
        target_kind="process",
        risk="safe",
        params=(
            ParamInfo(
                name="niceness",
                type="int",
                description="new nice value, 1 to 19",
                default=10,
                minimum=1,
                maximum=19,
            ),
        ),
        identity=_PROCESS_IDENTITY,
    ),
    ActionInfo(
        name="clean_directory",
        description="Delete old or large files inside a configured cleanup directory.",
        target_kind="path",
        risk="moderate",
        params=(
            ParamInfo(
                name="older_than_days",
                type="float",
                description="delete files older than this",
                default=7.0,
                minimum=0,
                maximum=36500,
            ),
            ParamInfo(
                name="larger_than_mb",
                type="float",
                description="or larger than this",
                default=None,
                minimum=0,
                maximum=16 * 1024 * 1024,
            ),
        ),
        timeout=120,
    ),
    ActionInfo(
        name="rotate_log",
        description="Rotate a configured log file: move it aside compressed and start a new one.",
        target_kind="path",
        risk="safe",
        timeout=120,
    ),
    ActionInfo(
        name="drop_caches",
        description="Ask the Linux kernel to drop clean page caches (root only).",
        target_kind="none",
        risk="moderate",
    ),
    ActionInfo(
        name="run_script",
        description="Run one of the configured remediation scripts, without a shell.",
        target_kind="none",
        risk="dangerous",
        params=(
            ParamInfo(
                name="script",
                type="str",
                description="name of a configured script",
                required=True,
                max_length=128,
            ),
        ),
        timeout=300,
    ),
)
