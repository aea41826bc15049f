"""The process backend's bookkeeping: what it knows about each service and each run.

A *slot* is one configured service; a *run* is one life of it (a launch by watchkeeper,
or an adoption through the pidfile). ``exit_outcome`` turns how a run ended into the
state, event kind and words the manager reports.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from watchkeeper.config.services import ServiceSpec
from watchkeeper.model.services import EventKind, ServiceState, ServiceStatus
from watchkeeper.services._children import describe_exit
from watchkeeper.services._pidwatch import ProcessIdentity

__all__ = ["ExitOutcome", "Run", "Slot", "exit_outcome"]


@dataclass(eq=False)
class Run:
    """One life of a service."""

    identity: ProcessIdentity
    proc: asyncio.subprocess.Process | None  # None when adopted: not our child
    started_mono: float
    started_at: datetime
    stopping: bool = False  # set by stop(): the coming exit is ours, not a crash
    wrote_pidfile: bool = False
    startup_task: asyncio.Task[None] | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # startup has settled
    exited: asyncio.Event = field(default_factory=asyncio.Event)  # exit handled, told


@dataclass(eq=False)
class Slot:
    """One configured service and what the manager last learned about it."""

    spec: ServiceSpec
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one action at a time
    run: Run | None = None
    state: ServiceState = ServiceState.STOPPED
    healthy: bool | None = None
    probe_detail: str | None = None
    last_exit_code: int | None = None
    last_exit_signal: int | None = None
    launches: int = 0
    ever_ran: bool = False
    detail: str = "not started"

    def snapshot(self, manager: str) -> ServiceStatus:
        run = self.run
        return ServiceStatus(
            name=self.spec.name,
            manager=manager,
            state=self.state,
            pid=run.identity.pid if run else None,
            started_at=run.started_at if run else None,
            healthy=self.healthy,
            probe_detail=self.probe_detail,
            last_exit_code=self.last_exit_code,
            last_exit_signal=self.last_exit_signal,
            restarts=max(0, self.launches - 1),
            critical=self.spec.critical,
            detail=self.detail,
        )


@dataclass(frozen=True)
class ExitOutcome:
    kind: EventKind
    state: ServiceState
    detail: str
    exit_code: int | None
    exit_signal: int | None
    failed_start: bool


def exit_outcome(run: Run, returncode: int | None, uptime: float, min_uptime: float) -> ExitOutcome:
    """Classify an exit: our own stop, a failed start, a clean end, or a crash.

    ``returncode`` follows asyncio (negative = killed by that signal); ``None`` means
    unknown, as for adopted processes, which are not our children.
    """
    code = sig = None
    if returncode is not None:
        code, sig = (None, -returncode) if returncode < 0 else (returncode, None)
    how = describe_exit(code, sig)
    # Only a launch of ours can fail to start; an adopted process was started by others.
    failed_start = run.proc is not None and not run.stopping and uptime < min_uptime
    if run.stopping:
        return ExitOutcome(
            "stopped", ServiceState.STOPPED, "stopped by watchkeeper", code, sig, False
        )
    if failed_start:
        detail = (
            f"failed start: {how} {uptime:.2f} s after launch, "
            f"sooner than min_uptime {min_uptime:g} s"
        )
        return ExitOutcome("exited", ServiceState.FAILED, detail, code, sig, True)
    if code == 0:
        return ExitOutcome("exited", ServiceState.STOPPED, f"{how} on its own", code, sig, False)
    return ExitOutcome("exited", ServiceState.FAILED, how, code, sig, False)
