"""Process counts by state, and the top N processes by CPU and by memory.

This is the expensive family: a host has hundreds or thousands of processes and the sampler
runs every second. So for *every* process only what ranking needs is read, in the cheapest
way, and the details an operator wants (user, full command line, open descriptors) are
fetched for the top N alone.

On Linux that means one read of ``/proc/<pid>/stat`` per process (state, name, CPU ticks,
start time, RSS and threads are all on that one line), parsed here. The file of each process
is opened once and kept open, re-read with ``pread`` every sample: that halves the cost
(~5 µs instead of ~9 µs a process), and an open file belongs to one process for good, so a
reused pid shows up as a read error rather than as someone else's numbers. How many stay
open is bounded by ``keep_open`` (by default a share of the descriptor limit, none when the
limit is the classic 1,024). CPU % comes from tick deltas keyed by ``(pid, start time)``,
so a new process never inherits an old one's counters. Details of top processes (name,
command line, user) are cached per process for a minute. Elsewhere psutil's
``process_iter`` is used with the same delta logic.

``cpu_percent`` is relative to one core, like ``top``: a process keeping two cores busy
shows 200. ``top_cpu`` is empty on the first sample (no delta yet) and lists only
processes that used some CPU in the interval.

Every top process carries its ``ppid`` and whether it is a kernel thread (the
``PF_KTHREAD`` flag of the same stat line; elsewhere: ``kthreadd``, pid 2, or its
children). ``groups`` names the ``jobs`` (5) busiest *jobs* (see
:mod:`watchkeeper.collectors.jobs`): busy children by (parent, command), plus what
children that exited between two samples used, read from the parent's
``cutime``/``cstime`` growth (also on that stat line) minus what was already counted for
them. A process first seen after the previous sample counts there with all its ticks,
since it was born in the interval. No extra file is read for any of this.

    ProcessCollector(top_n=5).collect().top_memory[0].cmdline
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import os
import sys
import time
import weakref
from collections import Counter
from collections.abc import Callable
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import psutil

from watchkeeper.collectors.jobs import group_jobs
from watchkeeper.model.metrics import MetricSpec, ProcessGroup, ProcessInfo, ProcessMetrics
from watchkeeper.model.text import LOG_LINE, clean

__all__ = ["PROCESS_METRICS", "ProcessCollector", "ProcessSource"]

# Linux exposes the kernel's tables as files; reading them beats any library call.
_DEFAULT_PROC_ROOT = "/proc" if sys.platform.startswith("linux") else None

PROCESS_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(name="procs.total", unit="count", description="Processes (not threads)."),
    MetricSpec(name="procs.running", unit="count", description="Processes running or runnable."),
    MetricSpec(name="procs.sleeping", unit="count", description="Processes waiting for events."),
    MetricSpec(
        name="procs.disk_sleep",
        unit="count",
        description="Processes in uninterruptible sleep, usually stuck on I/O; they add to load.",
    ),
    MetricSpec(name="procs.stopped", unit="count", description="Stopped or traced processes."),
    MetricSpec(
        name="procs.zombie",
        unit="count",
        description="Exited processes whose parent never collected them; a growing count "
        "points at a buggy parent.",
    ),
    MetricSpec(name="procs.idle", unit="count", description="Idle kernel threads."),
    MetricSpec(name="procs.other", unit="count", description="Processes in any other state."),
    MetricSpec(name="procs.threads", unit="count", description="Threads across all processes."),
)

# State letters of /proc/<pid>/stat (see proc(5)) and psutil's status strings, to our names.
_LINUX_STATUS = {
    b"R": "running", b"S": "sleeping", b"D": "disk_sleep", b"Z": "zombie", b"T": "stopped",
    b"t": "tracing_stop", b"X": "dead", b"I": "idle", b"P": "parked", b"W": "waking",
    b"K": "wakekill",
}  # fmt: skip
_PSUTIL_STATUS = {
    "disk-sleep": "disk_sleep",
    "tracing-stop": "tracing_stop",
    "wake-kill": "wakekill",
}
_BUCKET = {"tracing_stop": "stopped"}
_BUCKETS = ("running", "sleeping", "disk_sleep", "stopped", "zombie", "idle")

# A row per process, kept as a plain tuple: building 1,000+ objects per second would cost
# more than reading the data. Fields: cpu % (or None), rss bytes, pid, identity (start
# time), status (Linux: the stat letter; elsewhere psutil's word), threads, payload
# (Linux: the stat line; elsewhere: the psutil.Process), ppid.
_Row = tuple[float | None, int, int, float, bytes | str, int, Any, int]
_CPU, _RSS = itemgetter(0), itemgetter(1)
# What one process had used at the last sample: own CPU, its reaped children's CPU (ticks
# on Linux, seconds elsewhere) and its parent, to account for children that exit.
_Account = tuple[float, float, int]
_PF_KTHREAD = 0x00200000  # include/linux/sched.h
_RECENT_S = 60.0  # how long a parent's children's command is remembered


class _Member(NamedTuple):
    """A busy process as job grouping reads it (lighter than a ProcessInfo)."""

    pid: int
    ppid: int | None
    name: str
    cpu_percent: float | None
    kernel_thread: bool


# Details fetched for a top process: name, argv, uid (Linux) or user name (psutil).
_Fresh = tuple[str, list[str], int | None, str | None]


class ProcessSource(Protocol):
    """The slice of psutil used off Linux (or with ``proc_root=None``); pass another object to
    test failures."""

    def process_iter(self, attrs: list[str] | None = ...) -> Any: ...


class ProcessCollector:
    """Counts and ranks processes; on Linux ~10 µs per process plus ~50 µs per top entry.

    Call :meth:`close` when done to release the kept-open ``/proc`` files early.
    """

    name: str = "processes"
    metrics: tuple[MetricSpec, ...] = PROCESS_METRICS

    def __init__(
        self,
        source: ProcessSource | None = None,
        *,
        proc_root: str | Path | None = _DEFAULT_PROC_ROOT,
        top_n: int = 10,
        cmdline_limit: int = 256,
        keep_open: int | None = None,
        jobs: int = 5,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        user_lookup: Callable[[int], str | None] | None = None,
    ) -> None:
        if top_n < 0 or jobs < 0:
            raise ValueError("top_n and jobs must be >= 0")
        self._source: ProcessSource = source if source is not None else psutil
        self._root = str(proc_root) if proc_root is not None else None
        self._top_n = top_n
        self._job_limit = jobs
        self._cmdline_limit = cmdline_limit
        self._budget = _default_budget() if keep_open is None else max(0, keep_open)
        self._clock = clock
        self._wall = wall_clock
        self._lookup = user_lookup or _passwd_name
        self._users: dict[int, str | None] = {}
        self._last_cpu: dict[tuple[int, float], _Account] = {}
        self._jobs: tuple[ProcessGroup, ...] = ()
        self._recent_children: dict[int, tuple[str, float]] = {}  # parent -> (command, seen)
        self._cores = os.cpu_count() or 1
        self._last_time: float | None = None
        self._details_cache: dict[tuple[int, float], tuple[float, str, str, str | None]] = {}
        self._fds: dict[str, int] = {}
        self._finalizer = weakref.finalize(self, _close_all, self._fds)
        # Constants of the running kernel, read once on first use.
        self._hz = 100
        self._page = 4096
        self._boot = 0.0
        self._mem_total: int | None = None
        self._fd_size_counts = False
        self._constants_read = False

    def close(self) -> None:
        """Close the kept-open ``/proc`` files; a later ``collect()`` reopens them."""
        _close_all(self._fds)

    def collect(self) -> ProcessMetrics:
        now = self._clock()
        elapsed = now - self._last_time if self._last_time is not None else 0.0
        rows = self._scan_linux(elapsed) if self._root is not None else self._scan_psutil(elapsed)
        self._last_time = now

        counts: Counter[str] = Counter()
        for status, count in Counter(row[4] for row in rows).items():
            name = _BUCKET.get(_status_name(status), _status_name(status))
            counts[name if name in _BUCKETS else "other"] += count

        n = self._top_n
        busy = [row for row in rows if row[0]]  # None (no delta yet) and 0.0 are not "top"
        top_cpu = heapq.nlargest(n, busy, key=_CPU) if n else []
        top_mem = heapq.nlargest(n, rows, key=_RSS) if n else []
        wall = self._wall()
        infos: dict[int, ProcessInfo | None] = {}
        for row in (*top_cpu, *top_mem):
            if row[2] not in infos:
                infos[row[2]] = self._details(row, now, wall)
        live = self._last_cpu
        self._details_cache = {k: v for k, v in self._details_cache.items() if k in live}
        return ProcessMetrics(
            total=len(rows),
            threads=sum(row[5] for row in rows),
            top_cpu=tuple(info for row in top_cpu if (info := infos[row[2]]) is not None),
            top_memory=tuple(info for row in top_mem if (info := infos[row[2]]) is not None),
            groups=self._jobs if n else (),
            **{bucket: counts.get(bucket, 0) for bucket in (*_BUCKETS, "other")},
        )

    def _details(self, row: _Row, now: float, wall: float) -> ProcessInfo | None:
        key = (row[2], row[3])
        cached = self._details_cache.get(key)
        if cached is None or cached[0] <= now:
            fresh = self._fresh_linux(row) if self._root is not None else _fresh_psutil(row)
            if fresh is None:
                return None  # it exited while we looked
            name, args, uid, user = fresh
            if user is None and uid is not None:
                if uid not in self._users:
                    self._users[uid] = self._lookup(uid)
                user = self._users[uid]
            cached = (
                now + _DETAILS_TTL,
                clean(name, LOG_LINE, 64),
                clean(" ".join(args), LOG_LINE, self._cmdline_limit),
                clean(user, LOG_LINE, 64) if user is not None else None,
            )
            self._details_cache[key] = cached
        cpu, rss, pid, start, status, threads, payload, ppid = row
        if self._root is not None:
            created = self._boot + start / self._hz
            open_files = _count_fds(f"{self._root}/{pid}/fd", self._fd_size_counts)
        else:
            created, open_files = start, _psutil_fds(payload)
        return ProcessInfo(
            pid=pid,
            name=cached[1],
            user=cached[3],
            cmdline=cached[2],
            status=_status_name(status),
            cpu_percent=round(cpu, 2) if cpu is not None else None,
            rss_bytes=rss,
            memory_percent=100.0 * rss / self._mem_total if self._mem_total else None,
            num_threads=threads,
            open_files=open_files,
            create_time=created,
            age_seconds=max(0.0, wall - created),
            ppid=ppid,
            kernel_thread=self._kernel_thread(pid, ppid, payload),
        )

    # -- Linux: /proc parsed by hand -------------------------------------------------------

    def _read_constants(self) -> None:
        root = self._root
        self._hz = os.sysconf("SC_CLK_TCK")
        self._page = os.sysconf("SC_PAGE_SIZE")
        with open(f"{root}/stat", "rb") as stat:
            for line in stat:
                if line.startswith(b"btime "):
                    self._boot = float(line.split()[1])
                    break
        try:
            with open(f"{root}/meminfo", "rb") as meminfo:
                for line in meminfo:
                    if line.startswith(b"MemTotal:"):
                        self._mem_total = int(line.split()[1]) * 1024
                        break
        except OSError:
            self._mem_total = None  # memory_percent stays unknown; the rest still works
        with contextlib.suppress(OSError):  # no "self" link: not a live procfs, so no trick
            self._fd_size_counts = os.stat(f"{root}/self/fd").st_size > 0
        self._constants_read = True

    def _scan_linux(self, elapsed: float) -> list[_Row]:
        if not self._constants_read:
            self._read_constants()
        root = str(self._root)
        scale = 100.0 / (self._hz * elapsed) if elapsed > 0 else None
        last = self._last_cpu
        current: dict[tuple[int, float], _Account] = {}
        busy: list[tuple[int, int, bool, float, Any]] = []  # what job grouping needs
        grown: dict[int, float] = {}  # parent pid -> growth of its reaped children's ticks
        page, budget, pread = self._page, self._budget, os.pread
        kept = self._fds
        stale = dict(kept)  # what is left in here at the end belongs to exited processes
        kept.clear()
        rows: list[_Row] = []
        append = rows.append
        for entry in os.listdir(root):
            if not entry.isdigit():
                continue
            fd = stale.pop(entry, None)
            data = None
            if fd is not None:
                with contextlib.suppress(OSError):
                    data = pread(fd, 4096, 0)
                if data:
                    kept[entry] = fd
                else:  # that process is gone, even if its pid is back in use
                    os.close(fd)
                    data = None
            if data is None:
                fd = self._open_stat(f"{root}/{entry}/stat", stale)
                if fd is None:
                    continue  # exited since the listing; that is normal
                try:
                    data = pread(fd, 4096, 0)
                except OSError:
                    os.close(fd)
                    continue
                if len(kept) < budget:
                    kept[entry] = fd
                else:
                    os.close(fd)
            # The name field may hold spaces and ")" itself; only the LAST ")" ends it.
            fields = data[data.rfind(b")") + 2 :].split(b" ", 22)
            try:
                ticks = int(fields[11]) + int(fields[12])
                c1, c2 = fields[13], fields[14]  # mostly "0 0": no parse needed
                children = 0 if c1 == b"0" and c2 == b"0" else int(c1) + int(c2)
                start = float(fields[19])
                rss = int(fields[21]) * page
                threads = int(fields[17])
                ppid = int(fields[1])
            except (IndexError, ValueError):
                continue  # not a stat line we understand (foreign or truncated file)
            pid = int(entry)
            key = (pid, start)
            current[key] = (ticks, children, ppid)
            previous = last.get(key)
            used: float
            reaped: float
            if previous is None:  # no rate yet; for jobs: born in the interval, all counts
                cpu = None
                used, reaped = ticks, children
            else:
                used, reaped = ticks - previous[0], children - previous[1]
                cpu = used * scale if scale else None
            if used > 0 and scale:
                busy.append((pid, ppid, _stat_kthread(data), used * scale, data))
            if reaped > 0 and scale:
                grown[pid] = reaped * scale
            append((cpu, rss, pid, start, fields[0], threads, data, ppid))
        _close_all(stale)
        self._jobs = self._group(last, current, busy, grown, scale, rows, _stat_name)
        self._last_cpu = current  # exited processes drop out here, so this never grows
        return rows

    def _group(
        self,
        last: dict[tuple[int, float], _Account],
        current: dict[tuple[int, float], _Account],
        busy: list[tuple[int, int, bool, float, Any]],
        grown: dict[int, float],
        scale: float | None,
        rows: list[_Row],
        name_of: Callable[[Any], str],
    ) -> tuple[ProcessGroup, ...]:
        """This interval's jobs. ``busy`` and ``grown`` are already in % of one core;
        ``scale`` turns the counters of ``last`` into the same unit."""
        if not scale or not self._top_n or not self._job_limit:
            return ()
        cap = 100.0 * self._cores  # nothing uses more than every core
        if grown:
            # A child that exited was counted up to its last sample: its own CPU and what
            # it had reaped. Only the rest of what its parent reaps now is new. When the
            # parent went too (a shell and its command ending together), what both had
            # counted lands on the nearest ancestor still alive, which reaps it all.
            gone = {key[0]: last[key] for key in last.keys() - current.keys()}
            for ticks, children, parent in gone.values():
                hops = 0
                while parent in gone and parent not in grown and hops < 32:
                    parent, hops = gone[parent][2], hops + 1
                if parent in grown:
                    grown[parent] -= (ticks + children) * scale
        exited = {pid: min(cap, used) for pid, used in grown.items() if used > 0}
        members = [
            _Member(pid, ppid, name_of(payload), min(cap, used), kthread)
            for pid, ppid, kthread, used, payload in busy
        ]
        wanted = {m.ppid for m in members} | exited.keys()
        names = {row[2]: name_of(row[6]) for row in rows if row[2] in wanted}
        # What each parent's children ran lately: a parent whose children all exited
        # between two samples still names the job by them.
        now, recent = self._clock(), self._recent_children
        for m in members:
            if m.ppid is not None and not m.kernel_thread:
                recent[m.ppid] = (m.name, now)
        for parent in [p for p, (_, seen) in recent.items() if now - seen > _RECENT_S]:
            del recent[parent]
        lately = {parent: recent[parent][0] for parent in exited.keys() & recent.keys()}
        return group_jobs(members, exited, names, limit=self._job_limit, recent=lately)

    def _kernel_thread(self, pid: int, ppid: int, payload: Any) -> bool:
        if self._root is not None:
            return _stat_kthread(payload)
        # Without the flags: kthreadd (pid 2) and its children, where that holds (Linux).
        return sys.platform.startswith("linux") and (pid == 2 or ppid == 2)

    def _open_stat(self, path: str, stale: dict[str, int]) -> int | None:
        try:
            return os.open(path, os.O_RDONLY)
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE) or not (self._fds or stale):
                return None
        # Out of descriptors: give back every kept file, keep none from now on, try again.
        self._budget = 0
        _close_all(self._fds)
        _close_all(stale)
        try:
            return os.open(path, os.O_RDONLY)
        except OSError:
            return None

    def _fresh_linux(self, row: _Row) -> _Fresh | None:
        pid, start, data = row[2], row[3], row[6]
        base = f"{self._root}/{pid}"
        name = data[data.find(b"(") + 1 : data.rfind(b")")].decode("utf-8", "replace")
        raw = _read(f"{base}/cmdline") or b""
        args = [arg.decode("utf-8", "replace") for arg in raw.rstrip(b"\0").split(b"\0") if arg]
        if len(name) >= 15 and args:
            # The kernel keeps only 15 characters of the name; the command usually has all.
            full = os.path.basename(args[0])
            name = full if full.startswith(name) else name
        uid = _real_uid(_read(f"{base}/status"))
        # All of that came through a pid; make sure it still names the process we ranked.
        again = _read(f"{base}/stat")
        if again is None or _start_time(again) != start:
            return None
        return name, args, uid, None

    # -- Other platforms: psutil --------------------------------------------------------

    def _scan_psutil(self, elapsed: float) -> list[_Row]:
        if not self._constants_read:
            total = getattr(self._source, "virtual_memory", None)
            self._mem_total = total().total if total is not None else None
            self._constants_read = True
        attrs = ["pid", "ppid", "name", "status", "cpu_times", "memory_info", "num_threads"]
        attrs.append("create_time")
        scale = 100.0 / elapsed if elapsed > 0 else None
        last = self._last_cpu
        current: dict[tuple[int, float], _Account] = {}
        busy: list[tuple[int, int, bool, float, Any]] = []
        grown: dict[int, float] = {}
        rows: list[_Row] = []
        linux = sys.platform.startswith("linux")
        for proc in self._source.process_iter(attrs):
            info = proc.info
            created, times, mem = info["create_time"], info["cpu_times"], info["memory_info"]
            if created is None:
                continue  # no identity, no safe delta
            pid, ppid = info["pid"], info.get("ppid") or 0
            key = (pid, created)
            kthread = linux and (pid == 2 or ppid == 2)
            cpu = None
            if times is not None:
                seconds = times.user + times.system
                children = getattr(times, "children_user", 0.0) + getattr(
                    times, "children_system", 0.0
                )
                current[key] = (seconds, children, ppid)
                previous = last.get(key)
                if previous is None:
                    used, reaped = seconds, children
                else:
                    used, reaped = seconds - previous[0], children - previous[1]
                    if scale:
                        cpu = max(0.0, used * scale)
                if scale:
                    if used > 0:
                        busy.append((pid, ppid, kthread, used * scale, proc))
                    if reaped > 0:
                        grown[pid] = reaped * scale
            rss, threads = (mem.rss if mem else 0), (info["num_threads"] or 0)
            status = str(info["status"] or "other")
            rows.append((cpu, rss, pid, created, status, threads, proc, ppid))
        self._jobs = self._group(last, current, busy, grown, scale, rows, _psutil_name)
        self._last_cpu = current
        return rows


_DETAILS_TTL = 60.0  # seconds; command lines rarely change, but some daemons rewrite theirs


def _status_name(status: bytes | str) -> str:
    if isinstance(status, bytes):
        return _LINUX_STATUS.get(status, "other")
    return _PSUTIL_STATUS.get(status, status)


def _stat_kthread(stat: bytes) -> bool:
    """Whether a stat line's flags (field 9) carry PF_KTHREAD; read for the few processes
    that need it, not for every one."""
    try:
        return bool(int(stat[stat.rfind(b")") + 2 :].split(b" ", 7)[6]) & _PF_KTHREAD)
    except (IndexError, ValueError):
        return False


def _stat_name(stat: bytes) -> str:
    """The name field of a stat line, cleaned for a sample."""
    name = stat[stat.find(b"(") + 1 : stat.rfind(b")")].decode("utf-8", "replace")
    return clean(name, LOG_LINE, 64)


def _psutil_name(proc: Any) -> str:
    """The name read with the rest of the row (a process may be gone by now)."""
    return clean(str(proc.info.get("name") or f"pid {proc.pid}"), LOG_LINE, 64)


def _fresh_psutil(row: _Row) -> _Fresh | None:
    proc = row[6]
    name, user = "", None
    args: list[str] = []
    try:
        with proc.oneshot():
            name = proc.name()
            args = list(_or_none(proc.cmdline) or [])
            user = _or_none(proc.username)
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        pass  # keep what we have: the ranking numbers are still true
    return name, args, None, user


def _psutil_fds(proc: Any) -> int | None:
    count = getattr(proc, "num_fds", None) or getattr(proc, "num_handles", None)
    try:
        return int(count()) if count is not None else None
    except (psutil.Error, OSError):
        return None


def _count_fds(fd_dir: str, by_size: bool) -> int | None:
    try:
        # Since Linux 6.2 procfs gives the directory's entry count as its size: one stat
        # instead of a listing that grows with the descriptors.
        return (by_size and os.stat(fd_dir).st_size) or len(os.listdir(fd_dir))
    except OSError:
        return None  # another user's process, and we are not root


def _default_budget() -> int:
    """Kept-open files allowed: a share of the soft descriptor limit, leaving the rest (and
    all of a 1,024 limit) to the agent's sockets, database and clients."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft == resource.RLIM_INFINITY:
            soft = 1 << 20
    except (ImportError, OSError, ValueError):
        return 0
    return max(0, min(16384, soft // 2 - 512))


def _close_all(fds: dict[str, int]) -> None:
    for fd in fds.values():
        with contextlib.suppress(OSError):  # already closed: nothing to release
            os.close(fd)
    fds.clear()


def _or_none(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except psutil.AccessDenied:
        return None


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError:
        return None


def _start_time(stat: bytes) -> float | None:
    try:
        return float(stat[stat.rfind(b")") + 2 :].split(b" ", 20)[19])
    except (IndexError, ValueError):
        return None


def _real_uid(status: bytes | None) -> int | None:
    for line in (status or b"").splitlines():
        if line.startswith(b"Uid:"):
            return int(line.split()[1])
    return None


def _passwd_name(uid: int) -> str | None:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)  # no account by that number (a container's uid, a deleted user)
