"""The small event models of the bus that belong to no engine of their own.

Each is the payload of one topic in :mod:`watchkeeper.model.topics`: a configuration
change, a health change, an agent restart or state, system start and stop, a command to
an agent and its reply, the LLM's availability, an escalation and a give-up::

    await bus.publish(SYSTEM_STARTED, SystemStarted(version=__version__), sender="orchestrator")
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AgentReply",
    "AgentRestart",
    "AgentStateChange",
    "Command",
    "ConfigChange",
    "Escalation",
    "GaveUp",
    "HealthChange",
    "HealthPoint",
    "LlmStatus",
    "SystemStarted",
    "SystemStopped",
]

HealthStatus = Literal["healthy", "degraded", "critical"]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ConfigChange(_Event):
    """``config.changed``: who changed which dotted keys, from what, and whether it was saved."""

    actor: str
    changes: dict[str, Any]
    previous: dict[str, Any]
    persisted: bool
    path: str | None


class HealthPoint(_Event):
    """The system's health at one moment: a status, a 0-100 score and why."""

    ts: float
    status: HealthStatus
    score: int = Field(ge=0, le=100)
    reasons: list[str] = Field(default_factory=list)


class HealthChange(HealthPoint):
    """``health.changed``: the new health, its band (good, fair, poor, bad) and the last one."""

    band: str
    previous: HealthPoint | None = None


class AgentRestart(_Event):
    """``agent.restarted``: the supervisor restarted an agent, why, and after what pause."""

    agent: str
    reason: str
    restarts: int
    backoff_s: float


class AgentStateChange(_Event):
    """``agent.<state>`` other than ``restarted``: an agent (often a plugin's) changed state."""

    agent: str
    state: str
    detail: str = ""


class SystemStarted(_Event):
    """``system.started``: the daemon is up."""

    version: str


class SystemStopped(_Event):
    """``system.stopped``: the daemon stopped its agents."""


class Command(_Event):
    """``command.<agent>`` / ``command.all``: a command for agents, answered by ``AgentReply``."""

    command: str
    params: dict[str, Any] = Field(default_factory=dict)


class AgentReply(BaseModel):
    """An agent's answer to a ``Command``; the command's own result fields ride along."""

    model_config = ConfigDict(frozen=True, extra="allow")

    ok: bool
    agent: str
    command: str
    error: str | None = None

    def result(self) -> dict[str, Any]:
        """The reply as JSON data, the way the API shows it (no empty error)."""
        data = self.model_dump(mode="json")
        if data.get("error") is None:
            data.pop("error", None)
        return data


class LlmStatus(_Event):
    """``analysis.llm_status``: whether the LLM answers, in one line."""

    ok: bool
    status: str


class Escalation(_Event):
    """``remediation.escalated``: nothing left to try for an alert; a person must look."""

    action: str
    target: str | None = None
    detail: str = ""
    alert_id: str | None = None
    fingerprint: str | None = None


class GaveUp(_Event):
    """``remediation.gave_up``: a target failed too often; no more attempts for a while."""

    target: str
    failures: int
    reason: str
