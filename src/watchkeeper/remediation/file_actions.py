"""The built-in file actions: ``clean_directory`` and ``rotate_log``.

Both work only in configured places, and never follow a link at any level of the path out
of them. Each configured directory (a cleanup directory, a log file's directory) is
checked and its identity recorded when the remediator starts (``record_configured_paths``);
later it is reached again without following links and must still be the same directory.
A place that fails this is refused with one line that names it and says why, both in the
log at start-up and in the action's record; the daemon keeps running.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from watchkeeper.config import CleanupDir, Settings
from watchkeeper.model.actions import ActionInfo, ActionRequest, ActionResult
from watchkeeper.remediation.actions import ActionContext, NeedsPrivilege
from watchkeeper.remediation.catalog import BUILTIN_ACTIONS
from watchkeeper.remediation.files import (
    CleanResult,
    clean_tree_at,
    configured_root,
    resolve_cleanup_target,
    rotate_at,
)
from watchkeeper.remediation.safe_dirs import DirectoryPins, UnsafePath, open_below

__all__ = ["CleanDirectory", "RotateLog"]

log = logging.getLogger("watchkeeper.remediation.files")

_INFO: dict[str, ActionInfo] = {info.name: info for info in BUILTIN_ACTIONS}


def _why(exc: UnsafePath | OSError, path: Path) -> str:
    """One line for an error met while reaching ``path``."""
    if isinstance(exc, UnsafePath):
        return str(exc)
    text = exc.strerror or str(exc)
    return text if str(path) in text else f"{path}: {text}"


def _record(pins: DirectoryPins, action: str, paths: Iterable[Path]) -> None:
    """Check and remember each configured directory now; say which ones will be refused."""
    for path in dict.fromkeys(paths):
        try:
            pins.record(path)
        except FileNotFoundError:
            continue  # recorded when an action first finds it
        except (UnsafePath, OSError) as exc:
            log.warning("%s: %s", action, _why(exc, path))


def _refusal(problems: list[str], reachable: int) -> str | None:
    """The reason to refuse a request: only when none of its places can be reached safely."""
    return "; ".join(problems) if problems and not reachable else None


class CleanDirectory:
    """Delete old (or large) files in configured cleanup directories, links left alone."""

    info = _INFO["clean_directory"]

    def __init__(self) -> None:
        self.pins = DirectoryPins()

    async def record_configured_paths(self, ctx: ActionContext) -> None:
        dirs = ctx.settings().remediation.cleanup_dirs
        await ctx.run_blocking(_record, self.pins, self.info.name, [d.path for d in dirs])

    def _plan(self, target: str, settings: Settings) -> tuple[list[tuple[Path, CleanupDir]], str]:
        """Each directory to clean with the configured directory it lies in, or why none."""
        dirs = settings.remediation.cleanup_dirs
        roots = [d.path for d in dirs]
        chosen, problem = resolve_cleanup_target(target, roots)
        plan = []
        for path in chosen:
            root = configured_root(path, roots)
            plan.append((path, next(conf for conf in dirs if conf.path == root)))
        return plan, problem or ""

    def _open(self, path: Path, conf: CleanupDir) -> int:
        """``path`` opened below its configured directory, which must be the recorded one."""
        fd = self.pins.open(conf.path)
        if path == conf.path:
            return fd
        try:
            return open_below(fd, conf.path, path)
        finally:
            os.close(fd)

    def _check(self, target: str, settings: Settings) -> str | None:
        plan, problem = self._plan(target, settings)
        if not plan:
            return problem
        problems, reachable = [], 0
        for path, conf in plan:
            try:
                os.close(self._open(path, conf))
            except FileNotFoundError:
                reachable += 1  # nothing there to clean; not a risk
            except (UnsafePath, OSError) as exc:
                problems.append(_why(exc, path))
            else:
                reachable += 1
        return _refusal(problems, reachable)

    async def validate(self, request: ActionRequest, ctx: ActionContext) -> str | None:
        return await ctx.run_blocking(self._check, request.target or "", ctx.settings())

    def _clean(
        self, path: Path, conf: CleanupDir, request: ActionRequest, now: float
    ) -> CleanResult:
        days = float(request.params.get("older_than_days") or conf.older_than_days)
        limit_mb = request.params.get("larger_than_mb") or conf.larger_than_mb
        larger = int(float(limit_mb) * 1024 * 1024) if limit_mb else None
        fd = self._open(path, conf)
        try:
            return clean_tree_at(fd, older_than_s=days * 86400, larger_than=larger, now=now)
        finally:
            os.close(fd)

    async def execute(self, request: ActionRequest, ctx: ActionContext) -> ActionResult:
        plan, problem = await ctx.run_blocking(self._plan, request.target or "", ctx.settings())
        if not plan:
            return ActionResult(ok=False, detail=problem)
        total_files = total_bytes = links = errors = 0
        problems = []
        for path, conf in plan:
            try:
                result = await ctx.run_blocking(self._clean, path, conf, request, ctx.clock())
            except FileNotFoundError:
                continue
            except (UnsafePath, OSError) as exc:
                problems.append(_why(exc, path))
                continue
            total_files += result.files
            total_bytes += result.bytes
            links += result.skipped_links
            errors += result.errors
        detail = f"deleted {total_files} files, {total_bytes / 1024 / 1024:.1f} MB freed"
        if links:
            detail += f"; {links} links left alone"
        if errors:
            detail += f"; {errors} files could not be removed"
        if problems:
            detail += "; " + "; ".join(problems)
        return ActionResult(
            ok=not problems, detail=detail, data={"files": total_files, "bytes": total_bytes}
        )

    async def verify(
        self, request: ActionRequest, ctx: ActionContext, result: ActionResult
    ) -> bool | None:
        return bool(result.data.get("files", 0) > 0)


class RotateLog:
    """Compress configured log files aside and truncate them, inside their directories."""

    info = _INFO["rotate_log"]

    def __init__(self) -> None:
        self.pins = DirectoryPins()

    async def record_configured_paths(self, ctx: ActionContext) -> None:
        logs = ctx.settings().remediation.log_files
        await ctx.run_blocking(_record, self.pins, self.info.name, [p.parent for p in logs])

    def _files(self, request: ActionRequest, ctx: ActionContext) -> list[Path]:
        target = Path(request.target or "")
        chosen = []
        for path in ctx.settings().remediation.log_files:
            if path == target or target in path.parents:
                chosen.append(path)
        return chosen

    def _check(self, files: list[Path]) -> str | None:
        problems, reachable = [], 0
        for path in files:
            try:
                os.close(self.pins.open(path.parent))
            except FileNotFoundError:
                reachable += 1  # no log there yet; not a risk
            except (UnsafePath, OSError) as exc:
                problems.append(_why(exc, path.parent))
            else:
                reachable += 1
        return _refusal(problems, reachable)

    async def validate(self, request: ActionRequest, ctx: ActionContext) -> str | None:
        if not request.target or ".." in Path(request.target).parts:
            return f"bad target {request.target!r}"
        files = self._files(request, ctx)
        if not files:
            return f"no configured log file at or under {request.target!r} (remediation.log_files)"
        return await ctx.run_blocking(self._check, files)

    def _rotate(self, path: Path, keep: int, now: float) -> int:
        fd = self.pins.open(path.parent)
        try:
            size, _ = rotate_at(fd, path.name, keep=keep, now=now)
        finally:
            os.close(fd)
        return size

    async def execute(self, request: ActionRequest, ctx: ActionContext) -> ActionResult:
        keep = ctx.settings().remediation.rotate_keep
        rotated = freed = 0
        problems = []
        for path in self._files(request, ctx):
            try:
                size = await ctx.run_blocking(self._rotate, path, keep, ctx.clock())
            except FileNotFoundError:
                continue
            except PermissionError:
                raise NeedsPrivilege(f"rotating {path} needs write access to it") from None
            except (OSError, ValueError) as exc:
                problems.append(str(exc) if isinstance(exc, UnsafePath) else f"{path}: {exc}")
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
