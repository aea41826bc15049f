"""The built-in actions. Each validates its target before it may run.

Processes are identified by pid *and* start time, so a pid the kernel has handed to a new
process is never hit, and must be whole user-space processes (never a thread's id, never a
kernel thread: see ``watchkeeper.remediation.processes``). Services must be configured.
Paths must lie inside configured directories or be configured log files. Scripts are
configured argv lists, run without a shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from typing import Any

import psutil

from watchkeeper.model.actions import ActionInfo, ActionRequest, ActionResult
from watchkeeper.remediation.actions import ActionContext, ActionRegistry, NeedsPrivilege
from watchkeeper.remediation.catalog import BUILTIN_ACTIONS, KILL_GRACE_MAX
from watchkeeper.remediation.file_actions import CleanDirectory, RotateLog
from watchkeeper.remediation.processes import (
    check_process_target,
    protected_pids,
    same_process,
    wait_gone,
)

__all__ = ["builtin_registry", "protected_pids", "same_process"]

_INFO = {info.name: info for info in BUILTIN_ACTIONS}
_KILL_SETTLE = 5.0  # seconds to wait for SIGKILL to land


def _pid(request: ActionRequest) -> int | None:
    try:
        return int(request.target or "")
    except ValueError:
        return None


class _ProcessAction:
    """What every process action shares: the target must be a whole, unprotected,
    user-space process that is still the one proposed (``check_process_target``)."""

    info: ActionInfo

    async def validate(self, request: ActionRequest, ctx: ActionContext) -> str | None:
        pid = _pid(request)
        if pid is None or pid <= 0:
            return f"target {request.target!r} is not a pid"
        names = ctx.settings().remediation.protected_names
        _, problem = await ctx.run_blocking(
            check_process_target, pid, _created(request), tuple(names), ctx.processes
        )
        return problem

    async def _target(self, request: ActionRequest, ctx: ActionContext) -> psutil.Process | None:
        """The process to act on, checked again just before acting (it may have changed)."""
        pid = _pid(request)
        if pid is None:
            return None
        names = tuple(ctx.settings().remediation.protected_names)
        proc, _ = await ctx.run_blocking(check_process_target, pid, _created(request), names)
        return proc


def _created(request: ActionRequest) -> float | None:
    value = request.params.get("create_time")
    return float(value) if isinstance(value, int | float) else None


class KillProcess(_ProcessAction):
    info = _INFO["kill_process"]

    async def execute(self, request: ActionRequest, ctx: ActionContext) -> ActionResult:
        pid = _pid(request)
        assert pid is not None
        proc = await self._target(request, ctx)
        if proc is None:
            return ActionResult(ok=True, detail=f"pid {pid} had already exited")
        default = min(ctx.settings().remediation.kill_grace, KILL_GRACE_MAX)
        grace = float(request.params.get("grace", default))
        try:
            proc.send_signal(signal.SIGTERM)
            if not await wait_gone(proc, grace):
                proc.kill()
                await wait_gone(proc, _KILL_SETTLE)
                return ActionResult(ok=True, detail=f"pid {pid} ignored SIGTERM; sent SIGKILL")
        except psutil.NoSuchProcess:
            pass
        except psutil.AccessDenied:
            raise NeedsPrivilege(f"killing pid {pid} needs root or the same user") from None
        return ActionResult(ok=True, detail=f"pid {pid} stopped after SIGTERM")

    async def verify(
        self, request: ActionRequest, ctx: ActionContext, result: ActionResult
    ) -> bool | None:
        pid = _pid(request)
        return pid is not None and same_process(pid, _created(request)) is None


class ReniceProcess(_ProcessAction):
    info = _INFO["renice_process"]

    async def execute(self, request: ActionRequest, ctx: ActionContext) -> ActionResult:
        pid = _pid(request)
        assert pid is not None
        niceness = int(request.params.get("niceness", 10))
        proc = await self._target(request, ctx)
        if proc is None:
            return ActionResult(ok=False, detail=f"pid {pid} is gone")
        try:
            before = proc.nice()
            if before >= niceness:
                return ActionResult(ok=True, detail=f"pid {pid} already at nice {before}")
            proc.nice(niceness)
        except psutil.AccessDenied:
            raise NeedsPrivilege(f"renicing pid {pid} needs root or the same user") from None
        return ActionResult(
            ok=True, detail=f"pid {pid} niceness {before} → {niceness}", data={"niceness": niceness}
        )

    async def verify(
        self, request: ActionRequest, ctx: ActionContext, result: ActionResult
    ) -> bool | None:
        pid = _pid(request)
        proc = same_process(pid or -1, _created(request))
        if proc is None:
            return None
        with contextlib.suppress(psutil.Error):
            return bool(proc.nice() >= int(request.params.get("niceness", 10)))
        return None


class _ServiceAction:
    info: ActionInfo
    verb = "restart"

    async def validate(self, request: ActionRequest, ctx: ActionContext) -> str | None:
        name = request.target or ""
        protected = {n.lower() for n in ctx.settings().remediation.protected_names}
        if name.lower() in protected or name.lower().removesuffix(".service") in protected:
            return f"service {name!r} is protected"
        if ctx.manager_for(name) is None:
            return f"service {name!r} is not configured under [[services]]"
        return None

    async def execute(self, request: ActionRequest, ctx: ActionContext) -> ActionResult:
        from watchkeeper.services import ServicePermissionError

        name = request.target or ""
        manager = ctx.manager_for(name)
        try:
            status = await getattr(manager, self.verb)(name)
        except ServicePermissionError as exc:
            raise NeedsPrivilege(str(exc)) from None
        return ActionResult(ok=True, detail=f"{self.verb} of {name} issued ({status.state})")

    async def verify(
        self, request: ActionRequest, ctx: ActionContext, result: ActionResult
    ) -> bool | None:
        """Healthy within ``verify_timeout``: running, passing its probe when it has one,
        and up for its ``min_uptime`` when it has none."""
        name = request.target or ""
        manager = ctx.manager_for(name)
        spec = next(s for s in ctx.settings().services if s.name == name)
        deadline = ctx.monotonic() + ctx.settings().remediation.verify_timeout
        while ctx.monotonic() < deadline:
            status = await manager.status(name)
            if str(status.state) == "running":
                if spec.probe is not None:
                    # Asked, not remembered: a backend that only reports whether a unit
                    # runs (systemd) knows its health only from a probe run now.
                    if (await manager.probe(name)).healthy:
                        return True
                    await asyncio.sleep(0.25)  # a probe costs more than a status query
                    continue
                elif status.started_at is not None:
                    up = ctx.clock() - status.started_at.timestamp()
                    if up >= spec.min_uptime:
                        return True
            elif str(status.state) in ("failed", "stopped"):
                return False
            await asyncio.sleep(0.05)
        return False


class RestartService(_ServiceAction):
    info = _INFO["restart_service"]
    verb = "restart"


class StartService(_ServiceAction):
    info = _INFO["start_service"]
    verb = "start"


class ResetFailed(_ServiceAction):
    """``systemctl reset-failed UNIT``, then start it (argv only, via the systemd manager).

    Only for ``manager = "systemd"`` services: systemd stops restarting a unit that failed
    too often (a start-limit hit) and refuses a plain start until its failed state is
    reset. Dangerous (a person approves, unless ``remediation.allow_actions`` names it):
    resetting before the cause is fixed just runs the crash loop again."""

    info = _INFO["reset_failed"]
    verb = "reset_failed"

    async def validate(self, request: ActionRequest, ctx: ActionContext) -> str | None:
        problem = await super().validate(request, ctx)
        if problem is not None:
            return problem
        name = request.target or ""
        spec = next(s for s in ctx.settings().services if s.name == name)
        if spec.manager != "systemd" or not hasattr(ctx.manager_for(name), "reset_failed"):
            return f"service {name!r} is not managed by systemd: reset_failed applies to units"
        return None


class DropCaches:
    info = _INFO["drop_caches"]

    async def validate(self, request: ActionRequest, ctx: ActionContext) -> str | None:
        if not sys.platform.startswith("linux"):
            return "drop_caches exists only on Linux"
        return None

    async def execute(self, request: ActionRequest, ctx: ActionContext) -> ActionResult:
        if os.geteuid() != 0:
            raise NeedsPrivilege("dropping caches needs root")

        def drop() -> None:
            os.sync()
            with open("/proc/sys/vm/drop_caches", "w", encoding="ascii") as handle:
                handle.write("1\n")

        await ctx.run_blocking(drop)
        return ActionResult(ok=True, detail="page cache dropped")

    async def verify(
        self, request: ActionRequest, ctx: ActionContext, result: ActionResult
    ) -> bool | None:
        return None


class RunScript:
    info = _INFO["run_script"]

    async def validate(self, request: ActionRequest, ctx: ActionContext) -> str | None:
        name = str(request.params.get("script", ""))
        if name not in ctx.settings().remediation.scripts:
            return f"script {name!r} is not configured (remediation.scripts)"
        return None

    async def execute(self, request: ActionRequest, ctx: ActionContext) -> ActionResult:
        spec = ctx.settings().remediation.scripts[str(request.params["script"])]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        if request.target:
            env["WATCHKEEPER_TARGET"] = request.target
        proc = await asyncio.create_subprocess_exec(
            *spec.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), spec.timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            return ActionResult(ok=False, detail=f"script timed out after {spec.timeout:g}s")
        text = out.decode("utf-8", "replace").strip()[-400:]
        return ActionResult(
            ok=proc.returncode == 0,
            detail=f"exit {proc.returncode}: {text}",
            data={"exit_code": proc.returncode},
        )

    async def verify(
        self, request: ActionRequest, ctx: ActionContext, result: ActionResult
    ) -> bool | None:
        return result.ok


def builtin_registry() -> ActionRegistry:
    """A registry holding every built-in action."""
    registry = ActionRegistry()
    actions: list[Any] = [
        RestartService(),
        StartService(),
        ResetFailed(),
        KillProcess(),
        ReniceProcess(),
        CleanDirectory(),
        RotateLog(),
        DropCaches(),
        RunScript(),
    ]
    for action in actions:
        registry.register(action)
    return registry
