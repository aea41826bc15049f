"""Reaching a configured directory without following a link at any level of its path.

File actions run as root, while a parent of a configured directory may belong to someone
who could swap it for a symbolic link (or rename another directory into its place) after
start-up. Resolving the path with ``realpath`` and then working on the result never sees
such a swap. So a configured directory is reached the way the kernel lets us hold on to
it: every component is opened from ``/`` with ``O_NOFOLLOW | O_DIRECTORY`` relative to
its parent's descriptor, each parent is checked on the way (root-owned, not writable by
anyone else unless sticky and the next component is root's), and the directory finally
reached must be the one recorded when the configuration was first checked::

    pins = DirectoryPins()
    pins.record(Path("/var/tmp/app"))      # at start-up
    fd = pins.open(Path("/var/tmp/app"))   # later: same (st_dev, st_ino), or UnsafePath
    try:
        ...                                # work relative to fd, never by path
    finally:
        os.close(fd)
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from pathlib import Path

__all__ = ["DirectoryPins", "UnsafePath", "device_of", "open_below", "open_directory"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_OTHERS_WRITE = stat.S_IWOTH
_GROUP_WRITE = stat.S_IWGRP


class UnsafePath(ValueError):
    """A configured path that cannot be reached safely; ``str()`` is the one line to show."""


def _require_openat() -> None:
    if not _NOFOLLOW or os.open not in os.supports_dir_fd:
        raise UnsafePath("file actions need openat() and O_NOFOLLOW, which this system lacks")


def _step(parent_fd: int, name: str, shown: Path) -> int:
    """Open directory ``name`` inside ``parent_fd`` without following a link.

    ``shown`` is the path of that component, for the message.
    """
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            try:
                mode = os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode
            except OSError:
                mode = 0
            if exc.errno != errno.ENOTDIR or stat.S_ISLNK(mode):
                raise UnsafePath(
                    f"{shown} is a symbolic link (file actions never follow links)"
                ) from None
            raise UnsafePath(f"{shown} is not a directory") from None
        if exc.errno == errno.ENOENT:
            raise FileNotFoundError(errno.ENOENT, f"{shown} does not exist") from None
        raise


def _parent_problem(parent: os.stat_result, child: os.stat_result, where: str) -> str | None:
    """Why a user other than root could replace ``child`` inside ``parent``, if they could.

    ``where`` names the parent ("its parent /srv"). A sticky directory (such as ``/tmp``)
    lets only an entry's owner rename it, so it is safe above an entry that root owns.
    """
    if parent.st_uid != 0:
        return f"{where} is owned by uid {parent.st_uid}, who could swap it"
    mode = parent.st_mode
    group_write = bool(mode & _GROUP_WRITE) and parent.st_gid != 0
    if not (group_write or mode & _OTHERS_WRITE):
        return None
    if mode & stat.S_ISVTX and child.st_uid == 0:
        return None
    who = "others" if mode & _OTHERS_WRITE else f"group {parent.st_gid}"
    return f"{where} is writable by {who} (mode {stat.S_IMODE(mode):04o})"


def _own_problem(info: os.stat_result) -> str | None:
    mode = info.st_mode
    if mode & _OTHERS_WRITE and not mode & stat.S_ISVTX:
        return f"it is writable by others without the sticky bit (mode {stat.S_IMODE(mode):04o})"
    return None


def open_directory(path: Path) -> int:
    """A descriptor of the directory ``path``, reached from ``/`` without following links.

    Raises ``UnsafePath`` (a link or a non-directory on the way, a parent that a user other
    than root could change, the directory itself world-writable without the sticky bit),
    ``FileNotFoundError`` when a component is missing, and ``OSError`` otherwise.
    """
    _require_openat()
    if not path.is_absolute() or ".." in path.parts:
        raise UnsafePath(f"refusing {path}: not an absolute path without '..'")
    fd = os.open("/", _DIR_FLAGS)
    try:
        info = os.fstat(fd)
        where = Path("/")
        for name in path.parts[1:]:
            child_fd = _step_or_refuse(fd, name, where / name, path)
            child = os.fstat(child_fd)
            kin = "its parent" if where / name == path else "its ancestor"
            problem = _parent_problem(info, child, f"{kin} {where}")
            os.close(fd)
            fd, info, where = child_fd, child, where / name
            if problem:
                raise UnsafePath(f"refusing {path}: {problem}")
        problem = _own_problem(info)
        if problem:
            raise UnsafePath(f"refusing {path}: {problem}")
        return fd
    except BaseException:
        os.close(fd)
        raise


def _step_or_refuse(parent_fd: int, name: str, shown: Path, path: Path) -> int:
    try:
        return _step(parent_fd, name, shown)
    except UnsafePath as exc:
        raise UnsafePath(f"refusing {path}: {exc}") from None


def open_below(dir_fd: int, base: Path, target: Path) -> int:
    """A new descriptor of ``target``, a directory below ``base`` (open as ``dir_fd``).

    Each component between them is opened without following links; ``dir_fd`` stays open.
    """
    fd = os.dup(dir_fd)
    try:
        shown = base
        for name in target.relative_to(base).parts:
            shown = shown / name
            child_fd = _step_or_refuse(fd, name, shown, target)
            os.close(fd)
            fd = child_fd
        return fd
    except BaseException:
        os.close(fd)
        raise


def device_of(path: Path) -> int:
    """The filesystem (st_dev) of the directory ``path``, reached without following links.

    Unlike ``open_directory`` it does not judge the parents: it only tells which
    configured directories share a mount point.
    """
    _require_openat()
    root_fd = os.open("/", _DIR_FLAGS)
    try:
        fd = open_below(root_fd, Path("/"), path)
    finally:
        os.close(root_fd)
    try:
        return os.fstat(fd).st_dev
    finally:
        os.close(fd)


class DirectoryPins:
    """The identity (st_dev, st_ino) of each configured directory when it was first checked.

    ``record`` is called at start-up for every configured directory; one added later is
    recorded the first time an action opens it. ``open`` refuses a directory at that path
    that is not the one recorded, such as another directory renamed into its place.
    """

    def __init__(self) -> None:
        self._identities: dict[Path, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def record(self, path: Path) -> None:
        """Check ``path`` now and remember which directory it is (raises as ``open``)."""
        os.close(self.open(path))

    def open(self, path: Path) -> int:
        """As ``open_directory``, and the directory must be the one recorded for ``path``."""
        fd = open_directory(path)
        info = os.fstat(fd)
        identity = (info.st_dev, info.st_ino)
        with self._lock:
            known = self._identities.setdefault(path, identity)
        if known != identity:
            os.close(fd)
            raise UnsafePath(
                f"refusing {path}: it is not the directory that was there when watchkeeper "
                "checked it (replaced since); restart watchkeeper to accept the new one"
            )
        return fd
