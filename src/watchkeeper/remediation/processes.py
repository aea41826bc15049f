"""Which processes an action may touch, decided from what the kernel says about them.

A process target is a pid *and* its start time, so a pid the kernel has handed to a new
process is never hit. On top of that identity, a target must be a whole process:

- a **thread-group leader** (``Tgid`` equals the pid in ``/proc/<pid>/status``): a signal
  sent to any thread's id reaches the whole process, so a tid would let a request aimed
  at "some number" kill watchkeeper itself or a protected daemon through one of its
  threads. The protected checks below apply to the thread group, never to a lone thread;
- not a **kernel thread** (``PF_KTHREAD`` in ``/proc/<pid>/stat``, or kthreadd itself):
  they cannot be killed usefully and renicing them changes the kernel's own scheduling;
- not **protected**: pid 1, kthreadd, watchkeeper and each of its ancestors, and any
  process known by one of ``remediation.protected_names`` (its kernel name, the name of
  its executable, or the name its command line gives itself, so renaming one of them does
  not unprotect it)::

    proc, problem = check_process_target(pid, create_time, protected_names)

Everything here reads ``/proc`` synchronously: callers run it on the actions' own pool.
The facts come from a ``ProcessLookup`` (this machine's ``/proc`` by default); the scenario
scorer passes one that answers from a scenario's own processes, so the same checks judge
them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable
from typing import Any, Protocol

import psutil

__all__ = [
    "LIVE_PROCESSES",
    "ProcessLookup",
    "check_process_target",
    "is_kernel_thread",
    "names_of",
    "protected_pids",
    "same_process",
    "thread_group_of",
    "wait_gone",
]

_IDENTITY_SLACK = 0.05  # seconds: create times from /proc and psutil agree to a jiffy
_PF_KTHREAD = 0x00200000  # include/linux/sched.h: "I am a kernel thread"
_KTHREADD = 2
_POLL = 0.1  # seconds between looks while waiting for a process to go


def protected_pids() -> set[int]:
    """pid 1, the kernel's thread parent, watchkeeper itself and every ancestor of it."""
    pids = {0, 1, _KTHREADD, os.getpid()}
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


def thread_group_of(pid: int) -> int | None:
    """The thread group (process) ``pid`` belongs to: ``Tgid`` from /proc; None if gone.

    /proc answers for a thread's id even though it is not listed there, so this is how a
    tid is told apart from a pid."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("Tgid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def is_kernel_thread(pid: int) -> bool:
    """True for kthreadd and every kernel thread (``PF_KTHREAD`` in the stat flags)."""
    if pid == _KTHREADD:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            stat = handle.read()
        # The name (field 2) may hold spaces and parentheses: count from its last ')'.
        fields = stat[stat.rindex(")") + 1 :].split()
        ppid, flags = int(fields[1]), int(fields[6])
    except (OSError, ValueError, IndexError):
        return False
    return bool(flags & _PF_KTHREAD) or ppid == _KTHREADD


def names_of(proc: psutil.Process) -> set[str]:
    """Every name ``proc`` goes by, lower-cased: kernel name, executable, command line.

    sshd's per-login children call themselves ``sshd: user@pts/0`` on their command
    line; a process may rename itself (``prctl``) but not its executable."""
    names: set[str] = set()
    with contextlib.suppress(psutil.Error):
        names.add(proc.name())
    with contextlib.suppress(psutil.Error, OSError):
        exe = proc.exe()
        if exe:
            names.add(os.path.basename(exe))
    with contextlib.suppress(psutil.Error):
        argv = proc.cmdline()
        if argv and argv[0]:
            first = argv[0].split(":", 1)[0].split()
            if first:
                names.add(os.path.basename(first[0]))
    return {name.lower() for name in names if name}


class ProcessLookup(Protocol):
    """Where ``check_process_target`` learns about processes (``LIVE_PROCESSES``: /proc)."""

    def thread_group_of(self, pid: int) -> int | None: ...

    def is_kernel_thread(self, pid: int) -> bool: ...

    def protected_pids(self) -> set[int]: ...

    def same_process(self, pid: int, create_time: float | None) -> Any | None: ...

    def names_of(self, proc: Any) -> set[str]: ...


class _Live:
    """This machine's processes, read from /proc and psutil."""

    thread_group_of = staticmethod(thread_group_of)
    is_kernel_thread = staticmethod(is_kernel_thread)
    protected_pids = staticmethod(protected_pids)
    same_process = staticmethod(same_process)
    names_of = staticmethod(names_of)


LIVE_PROCESSES: ProcessLookup = _Live()


def _protected_name(
    pid: int, proc: Any, protected_names: Iterable[str], lookup: ProcessLookup
) -> str | None:
    protected = {name.lower() for name in protected_names}
    hit = sorted(lookup.names_of(proc) & protected)
    if hit:
        return f"process {hit[0]!r} (pid {pid}) is protected (remediation.protected_names)"
    return None


def check_process_target(
    pid: int,
    create_time: float | None,
    protected_names: Iterable[str],
    lookup: ProcessLookup | None = None,
) -> tuple[Any | None, str | None]:
    """``(process, None)`` when ``pid`` may be acted on, else ``(None, why not)``; the
    process is a ``psutil.Process`` with the default ``lookup``."""
    look = LIVE_PROCESSES if lookup is None else lookup
    if pid <= 0:
        return None, f"target {pid} is not a pid"
    group = look.thread_group_of(pid)
    if group is not None and group != pid:
        if group in look.protected_pids():
            return None, (
                f"pid {pid} is a thread of protected process {group} "
                "(init, watchkeeper or one of its parents)"
            )
        return None, (
            f"pid {pid} is a thread of process {group}, not a process: "
            "actions take a process id, never a thread's"
        )
    if look.is_kernel_thread(pid):
        return None, f"pid {pid} is a kernel thread: no action touches the kernel's threads"
    if pid in look.protected_pids():
        return None, f"pid {pid} is protected (init, watchkeeper or one of its parents)"
    if create_time is None:
        return None, "the process's start time is unknown, so its identity cannot be checked"
    proc = look.same_process(pid, create_time)
    if proc is None:
        return None, f"pid {pid} is gone or now belongs to another process"
    # Checked again on the process found, in case the pid moved on between the reads.
    if look.thread_group_of(pid) != pid or look.is_kernel_thread(pid):
        return None, f"pid {pid} is gone or now belongs to another process"
    problem = _protected_name(pid, proc, protected_names, look)
    if problem:
        return None, problem
    return proc, None


def _gone(proc: psutil.Process) -> bool:
    """Exited (reaped when it is our child) or only a zombie left."""
    try:
        proc.wait(timeout=0)
        return True
    except psutil.TimeoutExpired:
        pass
    except psutil.NoSuchProcess:
        return True
    try:
        return bool(proc.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


async def wait_gone(proc: psutil.Process, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``proc`` to exit; True when it did.

    Polls from the event loop (each look is a /proc read), so a long grace period holds
    no thread at all while it waits."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not _gone(proc):
        left = deadline - loop.time()
        if left <= 0:
            return False
        await asyncio.sleep(min(_POLL, left))
    return True
