"""File actions that delete or truncate: only inside configured places, never via links.

``clean_directory`` walks a configured directory with ``os.fwalk`` and directory file
descriptors, so a directory swapped for a symlink mid-walk cannot lead it elsewhere;
symlinks are never followed and never deleted. ``rotate_log`` works only on configured
regular files (a symlink in their place is refused).
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CleanResult", "clean_tree", "inside", "resolve_cleanup_target", "rotate_file"]


def inside(path: Path, root: Path) -> bool:
    """Whether ``path`` is ``root`` or below it (both already resolved)."""
    return path == root or root in path.parents


def resolve_cleanup_target(target: str, roots: list[Path]) -> tuple[list[Path], str | None]:
    """The configured directories a ``clean_directory`` target stands for, or why none.

    ``target`` is a configured directory (or a path inside one), or a mount point: then every
    configured directory on that filesystem. Relative paths, ``..`` and paths whose real
    location is outside every configured directory are refused.
    """
    if not target or "\x00" in target:
        return [], "empty target"
    candidate = Path(target)
    if not candidate.is_absolute():
        return [], f"{target!r} is not an absolute path"
    if ".." in candidate.parts:
        return [], f"{target!r} contains '..'"
    real_roots = [Path(os.path.realpath(root)) for root in roots]
    if not real_roots:
        return [], "no cleanup directories are configured (remediation.cleanup_dirs)"
    real = Path(os.path.realpath(candidate))
    within = [root for root in real_roots if inside(real, root)]
    if within:
        # Its real location is inside a configured directory, links or not.
        return [real], None
    # A mount point (or any directory above the configured ones): the configured
    # directories on the same filesystem and below it.
    try:
        device = os.stat(real).st_dev
    except OSError as exc:
        return [], f"{target!r}: {exc.strerror or exc}"
    chosen = []
    for root in real_roots:
        try:
            if os.stat(root).st_dev == device and inside(root, real):
                chosen.append(root)
        except OSError:
            continue
    if not chosen:
        return [], f"no configured cleanup directory is under {target!r}"
    return chosen, None


@dataclass(frozen=True)
class CleanResult:
    files: int
    bytes: int
    skipped_links: int
    errors: int


def clean_tree(
    root: Path, *, older_than_s: float, larger_than: int | None, now: float | None = None
) -> CleanResult:
    """Delete regular files under ``root`` older than ``older_than_s`` (or larger than
    ``larger_than`` bytes). Directories stay; links are neither followed nor deleted."""
    now = time.time() if now is None else now
    files = freed = links = errors = 0
    for _dirpath, dirnames, filenames, dirfd in os.fwalk(root, follow_symlinks=False):
        for name in list(dirnames):
            try:
                if stat.S_ISLNK(os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_mode):
                    links += 1
            except OSError:
                errors += 1
        for name in filenames:
            try:
                info = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            except OSError:
                errors += 1
                continue
            if stat.S_ISLNK(info.st_mode):
                links += 1
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            old = now - info.st_mtime >= older_than_s
            big = larger_than is not None and info.st_size > larger_than
            if not (old or big):
                continue
            try:
                os.unlink(name, dir_fd=dirfd)
            except OSError:
                errors += 1
                continue
            files += 1
            freed += info.st_blocks * 512 if hasattr(info, "st_blocks") else info.st_size
    return CleanResult(files=files, bytes=freed, skipped_links=links, errors=errors)


def rotate_file(path: Path, *, keep: int, now: float | None = None) -> tuple[int, Path]:
    """Compress ``path`` to ``path.<stamp>.gz`` and truncate it in place (writers keep their
    descriptor); keep the newest ``keep`` rotations. Returns (bytes before, rotated file)."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise ValueError(f"{path} is a symbolic link; refusing to rotate it")
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{path} is not a regular file")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    rotated = path.with_name(f"{path.name}.{stamp}.gz")
    counter = 1
    while rotated.exists():
        rotated = path.with_name(f"{path.name}.{stamp}-{counter}.gz")
        counter += 1
    flags = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    try:
        with os.fdopen(os.dup(fd), "rb") as source, gzip.open(rotated, "wb") as target:
            shutil.copyfileobj(source, target)
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)
    olds = sorted(path.parent.glob(f"{path.name}.*.gz"), key=lambda p: p.stat().st_mtime)
    for stale in olds[:-keep]:
        stale.unlink(missing_ok=True)
    return info.st_size, rotated
