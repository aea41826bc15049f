"""What every action is, declared once: the policy, the LLM prompt, the UI and the audit
all read these declarations.

An ``ActionInfo`` says what an action does (in words a model and a person both read), what
kind of target it takes, how risky it is, and which parameters it accepts. The built-in
actions are declared here; plugins declare theirs the same way when they register.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from watchkeeper.analysis.alerts import TargetKind

__all__ = ["BUILTIN_ACTIONS", "ActionInfo", "ParamInfo", "Risk"]

Risk = Literal["safe", "moderate", "dangerous"]


class ParamInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    type: Literal["int", "float", "str", "bool"]
    description: str
    default: int | float | str | bool | None = None
    required: bool = False


class ActionInfo(BaseModel):
    """The declaration of one action."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    description: str = Field(min_length=1, max_length=200)
    target_kind: TargetKind
    risk: Risk
    params: tuple[ParamInfo, ...] = ()
    timeout: float = Field(30.0, gt=0)
    source: str = "builtin"


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
        name="kill_process",
        description="Stop a process: SIGTERM, then SIGKILL after a grace period.",
        target_kind="process",
        risk="dangerous",
        params=(
            ParamInfo(
                name="grace", type="float", description="seconds before SIGKILL", default=5.0
            ),
        ),
    ),
    ActionInfo(
        name="renice_process",
        description="Lower a process's CPU priority so others get the CPU first.",
        target_kind="process",
        risk="safe",
        params=(
            ParamInfo(
                name="niceness", type="int", description="new nice value, 1 to 19", default=10
            ),
        ),
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
            ),
            ParamInfo(
                name="larger_than_mb", type="float", description="or larger than this", default=None
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
                name="script", type="str", description="name of a configured script", required=True
            ),
        ),
        timeout=300,
    ),
)
