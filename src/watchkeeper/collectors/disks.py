"""Filesystem usage and inodes per real mount, and I/O rates per block device.

Which mounts count as "real disks" is a policy, decided here once:

* kept: block-device filesystems (ext4, xfs, btrfs, zfs, vfat, ntfs, apfs, ...) and
  ``fuseblk``; ``overlay``/``aufs`` only when mounted at ``/``, which is a container's root
  filesystem, the one an operator in a container cares about;
* skipped: kernel pseudo filesystems (proc, sysfs, cgroup, ...), RAM-backed ones (tmpfs,
  ramfs, devtmpfs: their fullness is memory pressure, reported by the memory family),
  read-only images that are always 100 % full (squashfs snaps, iso9660), other overlay
  mounts (per-container layers on a Docker host duplicate the disk beneath them), userspace
  ``fuse.*`` mounts, and network filesystems (nfs, cifs, ...) because ``statvfs`` on a dead
  server blocks the sampler for minutes. ``include_fstypes`` opts any type back in;
* one entry per device, at its shortest mount point, so bind mounts do not repeat ``/``,
  and only directories, so files bind-mounted into a container (``/etc/hosts``) are ignored.

I/O is reported for whole disks only (partitions would count the same bytes twice) and
never for loop, ram, zram or optical devices.

    DiskCollector().collect().filesystems[0].percent
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Collection
from typing import Any, Protocol

import psutil

from watchkeeper.collectors.base import RateTracker
from watchkeeper.model.metrics import DiskIO, DiskMetrics, FilesystemUsage, MetricSpec

__all__ = ["DISK_METRICS", "NETWORK_FSTYPES", "SKIPPED_FSTYPES", "DiskCollector", "DiskSource"]

# Linux exposes the kernel's tables as files; reading them beats any library call.
_DEFAULT_SYS_BLOCK = "/sys/block" if sys.platform.startswith("linux") else None

DISK_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(name="disk.{mount}.total_bytes", unit="bytes", description="Filesystem size."),
    MetricSpec(name="disk.{mount}.used_bytes", unit="bytes", description="Space in use."),
    MetricSpec(
        name="disk.{mount}.free_bytes",
        unit="bytes",
        description="Space available to unprivileged users (excludes the root reserve).",
    ),
    MetricSpec(
        name="disk.{mount}.percent",
        unit="percent",
        description="Space in use as df reports it: used / (used + free).",
    ),
    MetricSpec(name="disk.{mount}.inodes_total", unit="count", description="Inodes (files)."),
    MetricSpec(name="disk.{mount}.inodes_used", unit="count", description="Inodes in use."),
    MetricSpec(
        name="disk.{mount}.inodes_percent",
        unit="percent",
        description="Inodes in use; at 100 no file can be created even with space left.",
    ),
    MetricSpec(name="diskio.{device}.read_bytes_per_s", unit="bytes/s", description="Reads."),
    MetricSpec(name="diskio.{device}.write_bytes_per_s", unit="bytes/s", description="Writes."),
    MetricSpec(name="diskio.{device}.read_ops_per_s", unit="count/s", description="Read ops."),
    MetricSpec(name="diskio.{device}.write_ops_per_s", unit="count/s", description="Write ops."),
    MetricSpec(
        name="diskio.{device}.busy_percent",
        unit="percent",
        description="Share of time the device had I/O in flight; near 100 means saturated.",
    ),
)

#: Never reported unless named in ``include_fstypes``: pseudo, RAM-backed and image filesystems.
SKIPPED_FSTYPES: frozenset[str] = frozenset(
    {
        "", "none", "proc", "sysfs", "devpts", "devfs", "cgroup", "cgroup2", "securityfs",
        "debugfs", "tracefs", "pstore", "bpf", "mqueue", "hugetlbfs", "configfs", "fusectl",
        "autofs", "binfmt_misc", "rpc_pipefs", "nsfs", "efivarfs", "selinuxfs", "nfsd",
        "tmpfs", "ramfs", "devtmpfs", "squashfs", "iso9660", "udf", "cd9660", "fdescfs",
        "linprocfs", "linsysfs", "procfs", "map", "nullfs",
    }
)  # fmt: skip

#: Skipped by default because statvfs on an unreachable server can block for minutes.
NETWORK_FSTYPES: frozenset[str] = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "afs", "ceph", "glusterfs", "lustre", "9p", "davfs"}
)

_LAYERED = frozenset({"overlay", "aufs"})
_IO_SKIP_PREFIXES = ("loop", "ram", "zram", "fd", "sr")


class DiskSource(Protocol):
    """The slice of psutil this collector reads; pass another object to test failures."""

    def disk_partitions(self, all: bool = ...) -> Any: ...
    def disk_io_counters(self, perdisk: bool = ..., nowrap: bool = ...) -> Any: ...


class DiskCollector:
    """Reads mount table, ``statvfs`` per kept mount and I/O counters; ~0.5 ms on Linux."""

    name: str = "disks"
    metrics: tuple[MetricSpec, ...] = DISK_METRICS

    def __init__(
        self,
        source: DiskSource | None = None,
        *,
        statvfs: Callable[[str], os.statvfs_result] = os.statvfs,
        sys_block: str | None = _DEFAULT_SYS_BLOCK,
        include_fstypes: Collection[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source: DiskSource = source if source is not None else psutil
        self._statvfs = statvfs
        self._sys_block = sys_block
        self._include = frozenset(include_fstypes)
        self._clock = clock
        self._rates = RateTracker(clock)

    def collect(self) -> DiskMetrics:
        return DiskMetrics(filesystems=self._filesystems(), io=self._io())

    def _wanted(self, fstype: str, mount: str) -> bool:
        if fstype in self._include:
            return True
        if fstype in _LAYERED:
            return mount == "/"
        return not (
            fstype in SKIPPED_FSTYPES or fstype in NETWORK_FSTYPES or fstype.startswith("fuse.")
        )

    def _filesystems(self) -> tuple[FilesystemUsage, ...]:
        by_device: dict[str, Any] = {}
        for part in self._source.disk_partitions(all=True):
            if not self._wanted(part.fstype, part.mountpoint):
                continue
            kept = by_device.get(part.device)
            if kept is None or len(part.mountpoint) < len(kept.mountpoint):
                by_device[part.device] = part
        usages = []
        for part in by_device.values():
            try:
                if not os.path.isdir(part.mountpoint):
                    continue
                st = self._statvfs(part.mountpoint)
            except OSError:
                # A mount that vanished between listing and reading, or one we may not read.
                continue
            if st.f_blocks == 0:
                continue
            usages.append(_usage(part.mountpoint, part.device, part.fstype, st))
        return tuple(sorted(usages, key=lambda usage: usage.mount))

    def _io(self) -> tuple[DiskIO, ...]:
        counters = self._source.disk_io_counters(perdisk=True, nowrap=True) or {}
        whole = self._whole_disks()
        now = self._clock()
        rate = self._rates.rate
        devices = []
        for name, io in sorted(counters.items()):
            if name.startswith(_IO_SKIP_PREFIXES) or (whole is not None and name not in whole):
                continue
            busy_ms = getattr(io, "busy_time", None)
            busy_rate = rate((name, "busy"), busy_ms, now) if busy_ms is not None else None
            devices.append(
                DiskIO(
                    device=name,
                    read_bytes_per_s=rate((name, "rb"), io.read_bytes, now),
                    write_bytes_per_s=rate((name, "wb"), io.write_bytes, now),
                    read_ops_per_s=rate((name, "rc"), io.read_count, now),
                    write_ops_per_s=rate((name, "wc"), io.write_count, now),
                    # busy_time is in ms: ms of busy per second / 10 = percent.
                    busy_percent=min(100.0, busy_rate / 10.0) if busy_rate is not None else None,
                )
            )
        self._rates.retain(
            (dev.device, field) for dev in devices for field in ("busy", "rb", "wb", "rc", "wc")
        )
        return tuple(devices)

    def _whole_disks(self) -> frozenset[str] | None:
        # Listed afresh each time (about 7 µs) so hot-plugged disks appear without a restart.
        if self._sys_block is None:
            return None
        try:
            return frozenset(os.listdir(self._sys_block))
        except OSError:
            return None


def _usage(mount: str, device: str, fstype: str, st: os.statvfs_result) -> FilesystemUsage:
    total = st.f_blocks * st.f_frsize
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    free = st.f_bavail * st.f_frsize
    # Like df: the root-reserved blocks count neither as used nor as available.
    percent = 100.0 * used / (used + free) if used + free else 0.0
    inodes_total = inodes_used = None
    inodes_percent = None
    if st.f_files > 0:  # btrfs and some network filesystems report no inode limit
        inodes_total = st.f_files
        inodes_used = st.f_files - st.f_ffree
        inodes_percent = 100.0 * inodes_used / st.f_files
    return FilesystemUsage(
        mount=mount,
        device=device,
        fstype=fstype,
        total_bytes=total,
        used_bytes=used,
        free_bytes=free,
        percent=percent,
        inodes_total=inodes_total,
        inodes_used=inodes_used,
        inodes_percent=inodes_percent,
    )
