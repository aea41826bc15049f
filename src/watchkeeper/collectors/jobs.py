"""Jobs: the CPU of a parent's children taken together, short-lived children included.

A compile keeps every core busy with ``cc1plus`` processes that each live less than a
second. Per-process CPU deltas miss them: a process born and gone between two samples
never has a delta, and one caught alive has none yet. What they used is not lost, though:
when a parent reaps a child, the child's CPU (and that of everything the child reaped in
turn) is added to the parent's ``cutime``/``cstime``. So the collector hands this module

- the processes busy in this interval (with ``ppid`` and CPU % of one core),
- per parent, the CPU % its children that exited during the interval used, read from the
  growth of its children's time minus what was already counted for those children,
- the names of the parents,

and :func:`group_jobs` adds them up by (parent, command): ``make: cc1plus x2, 190%``.

Who is whose parent: a process is grouped under its parent, except where the parent is no
job of its own (pid 0, init as pid 1, ``kthreadd`` as pid 2) or the process is a kernel
thread; then the process is its own job, ``command`` being its own name. A parent's
exited children join the command its live children run most; with none alive, the
command its children ran lately (``recent``, which the collector remembers for a minute)
or else the parent's own name, ``count`` 0 (only exited children).

    group_jobs(procs, {1200: 150.0}, {1200: "make"})[0].command   # "cc1plus"

The scenario builder calls it with the scenario's processes, the collector with its own.
Names are untrusted and cleaned here for display.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from watchkeeper.model.metrics import ProcessGroup
from watchkeeper.model.text import LABEL, clean

__all__ = ["JobMember", "group_jobs"]

#: Parents that are no job of their own: their children are each their own job.
_NO_JOB = frozenset({0, 1, 2})


class JobMember(Protocol):
    """What grouping reads of a process: :class:`~watchkeeper.model.metrics.ProcessInfo`
    has all of it, and so has the collector's lighter record."""

    @property
    def pid(self) -> int: ...
    @property
    def ppid(self) -> int | None: ...
    @property
    def name(self) -> str: ...
    @property
    def cpu_percent(self) -> float | None: ...
    @property
    def kernel_thread(self) -> bool: ...


def group_jobs(
    procs: Iterable[JobMember],
    exited_cpu: Mapping[int, float],
    names: Mapping[int, str],
    limit: int = 5,
    *,
    recent: Mapping[int, str] | None = None,
) -> tuple[ProcessGroup, ...]:
    """The ``limit`` busiest jobs by CPU (% of one core), busiest first; jobs with no CPU
    are left out. ``exited_cpu`` maps a parent pid to the CPU its exited children used in
    the interval; ``names`` maps parent pids to their names; ``recent`` optionally maps a
    parent to the command its children ran lately, for exited CPU with none alive now."""
    if limit <= 0:
        return ()
    cpu: dict[tuple[int, str], float] = {}
    count: dict[tuple[int, str], int] = {}
    own_names: dict[int, str] = {}
    children: dict[int, list[tuple[int, str]]] = {}  # parent -> its child-command keys
    for proc in procs:
        parent = proc.ppid
        if proc.kernel_thread or parent is None or parent in _NO_JOB or parent == proc.pid:
            key = (proc.pid, proc.name)
            own_names[proc.pid] = proc.name
        else:
            key = (parent, proc.name)
            if key not in cpu:
                children.setdefault(parent, []).append(key)
        cpu[key] = cpu.get(key, 0.0) + max(0.0, proc.cpu_percent or 0.0)
        count[key] = count.get(key, 0) + 1
    for parent, used in exited_cpu.items():
        if not used > 0:  # also leaves out NaN
            continue
        keys = children.get(parent)
        if keys:
            key = max(keys, key=lambda k: (cpu[k], count[k]))
        else:
            command = (recent or {}).get(parent)
            key = (parent, command or own_names.get(parent) or names.get(parent) or f"pid {parent}")
            count.setdefault(key, 0)
        cpu[key] = cpu.get(key, 0.0) + used
    ranked = sorted(
        (key for key, used in cpu.items() if used > 0),
        key=lambda k: (-cpu[k], -count[k], k[0], k[1]),
    )[:limit]
    return tuple(
        ProcessGroup(
            parent_pid=parent,
            parent_name=clean(
                own_names.get(parent) or names.get(parent) or f"pid {parent}", LABEL, 48
            ),
            command=clean(command, LABEL, 48),
            count=count[(parent, command)],
            cpu_percent=round(cpu[(parent, command)], 1),
        )
        for parent, command in ranked
    )
