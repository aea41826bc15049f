"""Request bodies and documented response shapes of the API.

Request models forbid unknown fields, so a typo is a 422 naming the field rather than a
silently ignored setting. Response models document the shapes in ``/openapi.json``; the
hot endpoints send pre-serialised bytes and do not re-validate against them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from watchkeeper.model.snapshot import HealthScore

__all__ = [
    "ApproveParams",
    "CommandReply",
    "CommandRequest",
    "ConfigPatch",
    "ErrorBody",
    "HealthCheck",
    "HealthReport",
    "NotifyTestParams",
    "ResetGiveUpParams",
    "RunActionParams",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CommandRequest(_Strict):
    """``{"command": "health_check", "target": "all"}``; ``params`` when the command
    takes some (``run_action``, ``approve``, ``reject``, ``reset_giveup``)."""

    command: str = Field(min_length=1, max_length=64, examples=["health_check"])
    target: str = Field(min_length=1, max_length=64, examples=["all"])
    params: dict[str, Any] = Field(default_factory=dict)


class RunActionParams(_Strict):
    action: str = Field(min_length=1, max_length=64, description="a registered action")
    target: str | None = Field(None, max_length=4096, description="pid, service or path")
    params: dict[str, Any] = Field(default_factory=dict)
    reason: str = Field("", max_length=500)


class ApproveParams(_Strict):
    id: str = Field(min_length=1, max_length=128, description="the pending action's id")


class ResetGiveUpParams(_Strict):
    target: str = Field(min_length=1, max_length=4096)


class NotifyTestParams(_Strict):
    severity: Literal["info", "warning", "critical"] = "info"


class NoParams(_Strict):
    """Commands that take no parameters."""


class ConfigPatch(_Strict):
    """Live configuration changes: dotted keys (``"thresholds.cpu_warning": 80``) or
    nested tables; written back to the config file only with ``persist``."""

    changes: dict[str, Any] = Field(min_length=1, examples=[{"thresholds.cpu_warning": 80}])
    persist: bool = False


class CommandReply(BaseModel):
    ok: bool
    command: str
    target: str
    replies: dict[str, dict[str, Any]]


class HealthCheck(BaseModel):
    ok: bool | None
    detail: str


class HealthReport(BaseModel):
    status: Literal["ok", "degraded", "unavailable"]
    live: bool
    ready: bool
    state: str
    version: str
    uptime_s: float
    reasons: list[str] = []
    checks: dict[str, HealthCheck]
    health: HealthScore | None = None


class ErrorBody(BaseModel):
    detail: Any
    valid: list[str] | None = None
