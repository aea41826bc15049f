"""What a service is doing, as data: its state, a status snapshot, and the events a
service manager reports.

Every service backend produces these, the sensor publishes them inside samples and as
``service.<kind>`` events, the analyzer scores them, and the web and CLI show them::

    status = ServiceStatus(name="web", manager="process", state=ServiceState.RUNNING)
    status.is_up  # True
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "JOURNAL_LINES_MAX",
    "MANAGER_LINE",
    "EventKind",
    "ServiceEvent",
    "ServiceState",
    "ServiceStatus",
    "telling_lines",
]

JOURNAL_LINES_MAX = 50
"""The most log lines a status or an event carries."""

MANAGER_LINE = "systemd: "
"""How a journal line the service manager wrote about the unit begins ("Main process
exited", "Failed with result"), as opposed to what the unit itself logged."""


def telling_lines(journal: list[str], count: int) -> list[str]:
    """Up to ``count`` of the journal's lines that say most about a failure, in the
    journal's order: the unit's own last lines, plus the manager's last line when there
    is room (it names the exit; the unit's lines usually name the cause). Without a
    manager's line this is simply the last ``count`` lines."""
    if count <= 0:
        return []
    own = [i for i, line in enumerate(journal) if not line.startswith(MANAGER_LINE)]
    manager = [i for i, line in enumerate(journal) if line.startswith(MANAGER_LINE)]
    room_for_manager = bool(manager) and count > 1
    keep = own[-(count - 1) :] if room_for_manager else own[-count:]
    keep += manager[-(count - len(keep)) :] if count > len(keep) else []
    return [journal[i] for i in sorted(keep)]


class ServiceState(StrEnum):
    """Where a service is in its life, as far as its manager can tell.

    ``starting`` lasts from launch until the probe passes (or ``min_uptime`` passes when
    there is no probe); ``failed`` means it died without being asked to, or never came up.
    """

    RUNNING = "running"
    STARTING = "starting"
    STOPPED = "stopped"
    FAILED = "failed"
    UNKNOWN = "unknown"


class ServiceStatus(BaseModel):
    """A snapshot of one service, safe to publish on the bus (serialises to JSON).

    ``healthy`` is ``None`` when no probe is configured or the service is not running;
    ``restarts`` counts starts after the first one (for systemd: its ``NRestarts``).
    ``restart_policy`` is systemd's ``Restart=`` of the unit (``"no"``, ``"always"``,
    ``"on-failure"``...; ``None`` for other backends): when set to anything but ``"no"``,
    systemd restarts the unit itself and watchkeeper only watches. ``start_limit_hit``
    means systemd stopped restarting it (``Result=start-limit-hit``). ``journal`` holds
    the last lines the service logged (its journal, or the stderr a process service
    wrote), cleaned, once it has failed; empty otherwise.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    manager: str
    state: ServiceState
    pid: int | None = None
    started_at: datetime | None = None
    healthy: bool | None = None
    probe_detail: str | None = None
    last_exit_code: int | None = None
    last_exit_signal: int | None = None
    restarts: int = Field(default=0, ge=0)
    critical: bool = False
    detail: str = ""
    restart_policy: str | None = None
    start_limit_hit: bool = False
    journal: list[str] = Field(default_factory=list, max_length=JOURNAL_LINES_MAX)

    @property
    def restarts_itself(self) -> bool:
        """True when its own manager restarts it (systemd with ``Restart=`` other than no)."""
        return self.restart_policy not in (None, "", "no")

    @property
    def is_up(self) -> bool:
        """True when the service runs or is coming up."""
        return self.state in (ServiceState.RUNNING, ServiceState.STARTING)


EventKind = Literal["started", "exited", "healthy", "unhealthy", "stopped"]


class ServiceEvent(BaseModel):
    """Something that happened to a service, told the moment the manager learns it.

    ``exited`` is an exit nobody asked for (a crash, or a clean exit of a service meant to
    run); ``stopped`` is the end of a stop the manager itself was asked to do.
    ``failed_start`` is true when the exit came sooner than the spec's ``min_uptime``.
    ``journal``, ``restart_policy``, ``restarts`` and ``start_limit_hit`` are as in
    :class:`ServiceStatus`, at the moment of the event (the journal only on an exit).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    manager: str
    kind: EventKind
    pid: int | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    at: datetime
    uptime: float | None = None
    failed_start: bool = False
    detail: str = ""
    restart_policy: str | None = None
    restarts: int = Field(default=0, ge=0)
    start_limit_hit: bool = False
    journal: list[str] = Field(default_factory=list, max_length=JOURNAL_LINES_MAX)
