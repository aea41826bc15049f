"""The built-in actions. Each validates its target before it may run.

Processes are identified by pid *and* start time, so a pid the kernel has handed to a new
process is never hit. Services must be configured. Paths must lie inside configured
directories or be configured log files. Scripts are configured argv lists, run without a
shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

import psutil

from watchkeeper.remediation.actions import (
    ActionContext,
    ActionRegistry,
    ActionRequest,
    ActionResult,
    NeedsPrivilege,
)
from watchkeeper.remediation.catalog import BUILTIN_ACTIONS, ActionInfo
from watchkeeper.remediation.files import clean_tree, resolve_cleanup_target, rotate_file

__all__ = ["builtin_registry", "protected_pids", "same_process"]

_INFO = {info.name: info for info in BUILTIN_ACTIONS}
_IDENTITY_SLACK = 0.05  # seconds: create times from /proc and psutil agree to a jiffy


def protected_pids() -> set[int]:
    """pid 1, the kernel's thread parent, watchkeeper itself and every ancestor of it."""
    pids = {0, 1, 2, os.getpid()}
    with contextlib.suppress(psutil.Error):
        pids.update(parent.pid for parent in psutil.Process().parents())
    return pids


def same_process(pid: int, create_time: float | None) -> psutil.Process | None:
    """The process ``pid`` if it is still the one that started at ``create_time``."""
    if create_time is None:
        return None
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - float(create_time)) > _IDENTITY_SLACK:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.Error, ValueError):
        return None


def _pid(request: ActionRequest) -> int | None:
    try:
        return int(request.target or "")
    except ValueError:
        return None


class _ProcessAction:
    info: ActionInfo

    async def validate(self, request: ActionRequest, ctx: ActionContext) -> str | None:
        pid = _pid(request)
        if pid is None or pid <= 0:
            return f"target {request.target!r} is not a pid"
        if pid in protected_pids():
            return f"pid {pid} is protected (init, watchkeeper or one of its parents)"
        create_time = request.params.get("create_time")
        if create_time is None:
            return "the process's start time is unknown, so its identity cannot be checked"
        proc = await asyncio.to_thread(same_process, pid, create_time)
        if proc is None:
            return f"pid {pid} is gone or now belongs to another process"
        protected = {name.lower() for name in ctx.settings().remediation.protected_names}
        with contextlib.suppress(psutil.Error):
            if proc.name().lower() in protected:
                return f"process {proc.name()!r} is protected"
        return None


class KillProcess(_ProcessAction):
    info = _INFO["kill_process"]

    async def execute(self, request: ActionRequest, ctx: ActionContext) -> ActionResult:
        pid = _pid(request)
        assert pid is not None
        proc = same_process(pid, request.params.get("create_time"))
        if proc is None:
            return ActionResult(ok=True, detail=f"pid {pid} had already exited")
        grace = float(request.params.get("grace", ctx.settings().remediation.kill_grace))
        try:
            proc.send_signal(signal.SIGTERM)
            _, alive = await asyncio.to_thread(psutil.wait_procs, [proc], grace)
            if alive:
                proc.kill()
                await asyncio.to_thread(psutil.wait_procs, [proc], grace)
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
        return pid is not None and same_process(pid, request.params.get("create_time")) is None


class ReniceProcess(_ProcessAction):
    info = _INFO["renice_process"]

    async def execute(self, request: ActionRequest, ctx: ActionContext) -> ActionResult:
        pid = _pid(request)
        assert pid is not None
        niceness = int(request.params.get("niceness", 10))
        if not 1 <= niceness <= 19:
            return ActionResult(ok=False, detail="niceness must be between 1 and 19")
        proc = same_process(pid, request.params.get("create_time"))
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
        proc = same_process(pid or -1, request.params.get("create_time"))
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
                    if status.healthy:
                        return True
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


class CleanDirectory:
    info = _INFO["clean_directory"]

    def _roots(self, request: ActionRequest, ctx: ActionContext) -> tuple[list[Path], str | None]:
        dirs = ctx.settings().remediation.cleanup_dirs
        return resolve_cleanup_target(request.target or "", [d.path for d in dirs])

    async def validate(self, request: ActionRequest, ctx: ActionContext) -> str | None:
        _, problem = await asyncio.to_thread(self._roots, request, ctx)
        return problem

    async def execute(self, request: ActionRequest, ctx: ActionContext) -> ActionResult:
        roots, problem = await asyncio.to_thread(self._roots, request, ctx)
        if problem:
            return ActionResult(ok=False, detail=problem)
        configured = {
            Path(os.path.realpath(d.path)): d for d in ctx.settings().remediation.cleanup_dirs
        }
        total_files = total_bytes = links = errors = 0
        for root in roots:
            conf = configured.get(root) or next(
                (c for p, c in configured.items() if root == p or p in root.parents), None
            )
            days = float(
                request.params.get("older_than_days") or (conf.older_than_days if conf else 7.0)
            )
            limit_mb = request.params.get("larger_than_mb") or (
                conf.larger_than_mb if conf else None
            )
            larger = int(float(limit_mb) * 1024 * 1024) if limit_mb else None
            result = await asyncio.to_thread(
                clean_tree, root, older_than_s=days * 86400, larger_than=larger, now=ctx.clock()
            )
            total_files += result.files
            total_bytes += result.bytes
            links += result.skipped_links
            errors += result.errors
        detail = f"deleted {total_files} files, {total_bytes / 1024 / 1024:.1f} MB freed"
        if links:
            detail += f"; {links} links left alone"
        if errors:
            detail += f"; {errors} files could not be removed"
        return ActionResult(
            ok=True, detail=detail, data={"files": total_files, "bytes": total_bytes}
        )

    async def verify(
        self, request: ActionRequest, ctx: ActionContext, result: ActionResult
    ) -> bool | None:
        return bool(result.data.get("files", 0) > 0)


class RotateLog:
    info = _INFO["rotate_log"]

    def _files(self, request: ActionRequest, ctx: ActionContext) -> list[Path]:
        target = Path(request.target or "")
        chosen = []
        for path in ctx.settings().remediation.log_files:
            if path == target or target in path.parents:
                chosen.append(path)
        return chosen

    async def validate(self, request: ActionRequest, ctx: ActionContext) -> str | None:
        if not request.target or ".." in Path(request.target).parts:
            return f"bad target {request.target!r}"
        if not self._files(request, ctx):
            return f"no configured log file at or under {request.target!r} (remediation.log_files)"
        return None

    async def execute(self, request: ActionRequest, ctx: ActionContext) -> ActionResult:
        keep = ctx.settings().remediation.rotate_keep
        rotated = freed = 0
        problems = []
        for path in self._files(request, ctx):
            try:
                size, _ = await asyncio.to_thread(rotate_file, path, keep=keep, now=ctx.clock())
            except FileNotFoundError:
                continue
            except PermissionError:
                raise NeedsPrivilege(f"rotating {path} needs write access to it") from None
            except (OSError, ValueError) as exc:
                problems.append(f"{path}: {exc}")
                continue
            rotated += 1
            freed += size
        detail = f"rotated {rotated} log files ({freed / 1024 / 1024:.1f} MB)"
        if problems:
            detail += "; " + "; ".join(problems)
        return ActionResult(
            ok=rotated > 0 or not problems, detail=detail, data={"rotated": rotated}
        )

    async def verify(
        self, request: ActionRequest, ctx: ActionContext, result: ActionResult
    ) -> bool | None:
        return bool(result.data.get("rotated", 0) > 0)


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

        await asyncio.to_thread(drop)
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
