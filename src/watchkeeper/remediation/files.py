"""File actions that delete or truncate: only inside configured places, never via links.

Paths are matched against the configuration as written, never resolved: a configured
directory is then reached component by component without following a link
(``watchkeeper.remediation.safe_dirs``), and all work happens relative to its descriptor.
``clean_directory`` walks it with ``os.fwalk`` on directory descriptors, so a directory
swapped for a link mid-walk cannot lead it elsewhere; links are never followed and never
deleted. ``rotate_log`` opens the log with ``O_NOFOLLOW`` inside its directory's descriptor
and creates the rotated file there with ``O_CREAT | O_EXCL | O_NOFOLLOW``, so a link
waiting at the next rotation name is never written through.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import re
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from watchkeeper.remediation.safe_dirs import UnsafePath, device_of, open_directory

__all__ = [
    "CleanResult",
    "clean_tree",
    "clean_tree_at",
    "configured_root",
    "inside",
    "resolve_cleanup_target",
    "rotate_at",
    "rotate_file",
]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_MAX_NAME_TRIES = 100  # rotation names tried in one second before giving up


def inside(path: Path, root: Path) -> bool:
    """Whether ``path`` is ``root`` or below it, as written (nothing is resolved)."""
    return path == root or root in path.parents


def configured_root(path: Path, roots: list[Path]) -> Path | None:
    """The innermost configured directory that ``path`` lies in, as written."""
    holding = [root for root in roots if inside(path, root)]
    return max(holding, key=lambda root: len(root.parts)) if holding else None


def _plain_absolute(target: str) -> tuple[Path | None, str | None]:
    if not target or "\x00" in target:
        return None, "empty target"
    candidate = Path(target)
    if not candidate.is_absolute() or candidate.anchor != "/":
        return None, f"{target!r} is not an absolute path"
    if ".." in candidate.parts:
        return None, f"{target!r} contains '..'"
    return candidate, None


def resolve_cleanup_target(target: str, roots: list[Path]) -> tuple[list[Path], str | None]:
    """The directories a ``clean_directory`` target stands for, or why there are none.

    ``target`` is a configured directory (or a path inside one), or a mount point: then
    every configured directory on that filesystem and below it. Matching is on the paths
    as written, never on where links lead; reaching them safely is the caller's step.
    """
    candidate, problem = _plain_absolute(target)
    if candidate is None:
        return [], problem
    if not roots:
        return [], "no cleanup directories are configured (remediation.cleanup_dirs)"
    if configured_root(candidate, roots) is not None:
        return [candidate], None
    below = [root for root in roots if inside(root, candidate)]
    if not below:
        return [], f"no configured cleanup directory is under {target!r}"
    try:
        device = device_of(candidate)
    except UnsafePath as exc:
        return [], f"{target!r}: {exc}"
    except OSError as exc:
        return [], f"{target!r}: {exc.strerror or exc}"
    chosen = []
    for root in below:
        try:
            if device_of(root) != device:
                continue
        except UnsafePath:
            pass  # kept: opening it refuses it, with the reason, where a person sees it
        except OSError:
            continue  # missing: nothing to clean there
        chosen.append(root)
    if not chosen:
        return [], f"no configured cleanup directory is on the filesystem of {target!r}"
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
    """``clean_tree_at`` on the directory ``root``, reached without following links."""
    fd = open_directory(root)
    try:
        return clean_tree_at(fd, older_than_s=older_than_s, larger_than=larger_than, now=now)
    finally:
        os.close(fd)


def clean_tree_at(
    dir_fd: int, *, older_than_s: float, larger_than: int | None, now: float | None = None
) -> CleanResult:
    """Delete regular files below the open directory ``dir_fd`` older than
    ``older_than_s`` (or larger than ``larger_than`` bytes). Directories stay; links are
    neither followed nor deleted."""
    now = time.time() if now is None else now
    files = freed = links = errors = 0
    for _dirpath, dirnames, filenames, dirfd in os.fwalk(".", dir_fd=dir_fd, follow_symlinks=False):
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
    """``rotate_at`` on ``path`` inside its directory, reached without following links."""
    fd = open_directory(path.parent)
    try:
        size, rotated = rotate_at(fd, path.name, keep=keep, now=now)
    finally:
        os.close(fd)
    return size, path.parent / rotated


def _open_log(dir_fd: int, name: str) -> tuple[int, os.stat_result]:
    """The log ``name`` opened for writing, only when it is a plain regular file."""
    if not name or name in (".", "..") or "/" in name:
        raise ValueError(f"{name!r} is not a file name")
    info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if stat.S_ISLNK(info.st_mode):
        raise ValueError(f"{name} is a symbolic link; refusing to rotate it")
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{name} is not a regular file")
    try:
        fd = os.open(name, os.O_RDWR | _NOFOLLOW | _CLOEXEC | os.O_NOCTTY, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError(f"{name} is a symbolic link; refusing to rotate it") from None
        raise
    opened = os.fstat(fd)
    problem = None
    if not os.path.samestat(info, opened):
        problem = f"{name} was replaced while being opened; not rotated"
    elif opened.st_nlink > 1:
        # Another name for the same file may lie anywhere on the filesystem.
        problem = f"{name} has {opened.st_nlink} hard links; refusing to truncate it"
    if problem:
        os.close(fd)
        raise ValueError(problem)
    return fd, opened


def _create_rotation(dir_fd: int, name: str, stamp: str, mode: int) -> tuple[int, str]:
    """A new file for the rotation, created in ``dir_fd`` where nothing (not even a
    dangling link) has that name yet."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
    for counter in range(_MAX_NAME_TRIES):
        suffix = f"-{counter}" if counter else ""
        rotated = f"{name}.{stamp}{suffix}.gz"
        try:
            return os.open(rotated, flags, mode, dir_fd=dir_fd), rotated
        except FileExistsError:
            continue
    raise ValueError(f"{name}: no free rotation name after {_MAX_NAME_TRIES} tries")


def _prune(dir_fd: int, name: str, keep: int) -> None:
    """Delete all but the newest ``keep`` rotations of ``name``: regular files only."""
    pattern = re.compile(re.escape(name) + r"\.\d{8}-\d{6}(?:-\d+)?\.gz")
    rotations = []
    for entry in os.listdir(dir_fd):
        if not pattern.fullmatch(entry):
            continue
        try:
            info = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode):
            rotations.append((info.st_mtime, entry))
    rotations.sort()
    for _, stale in rotations[: max(len(rotations) - keep, 0)]:
        try:
            os.unlink(stale, dir_fd=dir_fd)
        except FileNotFoundError:
            continue


def _compress(log_fd: int, raw: BinaryIO, name: str) -> None:
    """Gzip the whole log (from its start) into ``raw``."""
    with (
        gzip.GzipFile(filename=name, mode="wb", fileobj=raw) as packed,
        os.fdopen(os.dup(log_fd), "rb") as source,
    ):
        source.seek(0)
        shutil.copyfileobj(source, packed)


def rotate_at(dir_fd: int, name: str, *, keep: int, now: float | None = None) -> tuple[int, str]:
    """Compress log ``name`` in the open directory ``dir_fd`` to ``name.<stamp>.gz`` and
    truncate it in place (writers keep their descriptor); keep the newest ``keep``
    rotations. Returns (bytes before, name of the rotated file)."""
    fd, info = _open_log(dir_fd, name)
    try:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
        out_fd, rotated = _create_rotation(dir_fd, name, stamp, stat.S_IMODE(info.st_mode) & 0o666)
        try:
            with os.fdopen(out_fd, "wb") as raw:
                _compress(fd, raw, name)
                raw.flush()
                os.fsync(raw.fileno())
        except BaseException:
            with contextlib.suppress(OSError):  # unlinkat never follows a link
                os.unlink(rotated, dir_fd=dir_fd)
            raise
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)
    _prune(dir_fd, name, keep)
    return info.st_size, rotated
