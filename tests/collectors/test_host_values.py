"""The CPU, memory, disk, network and system collectors agree with psutil and the OS
about this machine, and react to load and traffic the tests create."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from watchkeeper.collectors import (
    CpuCollector,
    DiskCollector,
    MemoryCollector,
    NetworkCollector,
    SystemCollector,
)

LINUX = sys.platform.startswith("linux")


def test_memory_matches_psutil() -> None:
    mine = MemoryCollector().collect()
    vm, swap = psutil.virtual_memory(), psutil.swap_memory()
    assert mine.total_bytes == vm.total
    assert mine.percent == pytest.approx(vm.percent, abs=3.0)
    assert mine.swap_total_bytes == swap.total
    assert mine.swap_in_bytes_per_s is None  # first sample: no rate yet


def test_cpu_count_load_and_percent() -> None:
    collector = CpuCollector()
    first = collector.collect()
    assert first.count == psutil.cpu_count()
    assert first.percent is None and first.per_core_percent is None
    load = psutil.getloadavg()
    assert first.load_1m == pytest.approx(load[0], abs=0.5)
    time.sleep(0.3)
    second = collector.collect()
    assert second.percent is not None and 0.0 <= second.percent <= 100.0
    assert second.per_core_percent is not None
    assert len(second.per_core_percent) == len(psutil.cpu_percent(percpu=True))
    assert second.ctx_switches_per_s is not None and second.ctx_switches_per_s > 0


def test_cpu_burner_raises_cpu_percent() -> None:
    collector = CpuCollector()
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it get going
        collector.collect()
        time.sleep(0.7)
        busy = collector.collect()
    finally:
        burner.kill()
        burner.wait()
    assert busy.percent is not None
    # One of the cores is fully taken: at least ~1/count of the machine, give or take.
    assert busy.percent >= 100.0 / busy.count * 0.7
    assert busy.per_core_percent is not None and max(busy.per_core_percent) >= 60.0


def test_root_filesystem_matches_statvfs_and_psutil() -> None:
    result = DiskCollector().collect()
    root = next(fs for fs in result.filesystems if fs.mount == "/")
    usage = psutil.disk_usage("/")
    st = os.statvfs("/")
    assert root.total_bytes == usage.total
    assert root.percent == pytest.approx(usage.percent, abs=1.0)
    assert root.inodes_total == st.f_files
    assert root.inodes_percent == pytest.approx(100 * (st.f_files - st.f_ffree) / st.f_files, abs=1)
    mounts = [fs.mount for fs in result.filesystems]
    assert len(mounts) == len(set(mounts))
    assert not {"/proc", "/sys", "/dev", "/dev/shm", "/sys/fs/cgroup"} & set(mounts)


def part(device: str, mount: str, fstype: str) -> Any:
    return SimpleNamespace(device=device, mountpoint=mount, fstype=fstype, opts="rw")


class Partitions:
    """psutil as usual, except that the mount table is the one the test writes."""

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts

    def disk_partitions(self, all: bool = False) -> list[Any]:
        return self.parts

    def __getattr__(self, name: str) -> Any:
        return getattr(psutil, name)


def test_mount_policy_keeps_real_disks_and_container_root(tmp_path: Path) -> None:
    dirs = {name: tmp_path / name for name in ("data", "bind", "shm", "snap", "nfs", "layer")}
    for path in dirs.values():
        path.mkdir()
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    table = [
        part("overlay", "/", "overlay"),  # a container's root: wanted
        part("/dev/sdz1", str(dirs["data"]), "ext4"),
        part("/dev/sdz1", str(dirs["bind"]) + "/deeper", "ext4"),  # bind mount, same device
        part("/dev/sdz2", str(hosts), "ext4"),  # a file bind-mounted into a container
        part("tmpfs", str(dirs["shm"]), "tmpfs"),
        part("/dev/loop3", str(dirs["snap"]), "squashfs"),
        part("server:/export", str(dirs["nfs"]), "nfs4"),
        part("overlay", str(dirs["layer"]), "overlay"),  # another container's layer
        part("proc", "/proc", "proc"),
    ]
    result = DiskCollector(Partitions(table)).collect()
    assert sorted(fs.mount for fs in result.filesystems) == sorted(["/", str(dirs["data"])])

    opted_in = DiskCollector(Partitions(table), include_fstypes={"tmpfs", "nfs4"}).collect()
    assert {str(dirs["shm"]), str(dirs["nfs"])} <= {fs.mount for fs in opted_in.filesystems}


@pytest.mark.skipif(not LINUX, reason="/sys/block is Linux")
def test_disk_io_lists_whole_disks_with_rates_on_the_second_sample() -> None:
    collector = DiskCollector()
    first = collector.collect()
    whole = set(os.listdir("/sys/block"))
    assert all(dev.device in whole for dev in first.io)
    assert not any(dev.device.startswith(("loop", "ram", "zram")) for dev in first.io)
    assert all(dev.read_bytes_per_s is None for dev in first.io)
    time.sleep(0.2)
    second = collector.collect()
    for dev in second.io:
        assert dev.read_bytes_per_s is not None and dev.read_bytes_per_s >= 0
        assert dev.busy_percent is None or 0 <= dev.busy_percent <= 100


def test_interfaces_match_psutil() -> None:
    result = NetworkCollector().collect()
    expected = {nic for nic in psutil.net_io_counters(pernic=True) if not nic.startswith("lo")}
    assert {iface.name for iface in result.interfaces} == expected
    assert all(iface.rx_bytes_per_s is None for iface in result.interfaces)


@pytest.fixture
def loopback_connections() -> Iterator[int]:
    """A real listening socket with five accepted connections (ten established ends)."""
    server = socket.create_server(("127.0.0.1", 0))
    clients = [socket.create_connection(server.getsockname()) for _ in range(5)]
    accepted = [server.accept()[0] for _ in clients]
    try:
        yield server.getsockname()[1]
    finally:
        for sock in (*clients, *accepted, server):
            sock.close()


@pytest.mark.parametrize(
    "options",
    [{}, {"netlink": False}, {"netlink": False, "proc_root": None}],
    ids=["netlink", "procfs", "psutil"],
)
def test_tcp_states_count_real_connections(
    loopback_connections: int, options: dict[str, Any]
) -> None:
    if options.get("proc_root", "/proc") is not None and not LINUX:
        pytest.skip("Linux only")
    states = NetworkCollector(**options).collect().tcp_states
    assert states is not None
    assert states.get("established", 0) >= 10
    assert states.get("listen", 0) >= 1
    psutil_count = sum(1 for c in psutil.net_connections("tcp") if c.status == "ESTABLISHED")
    assert abs(states["established"] - psutil_count) <= 10  # others' sockets come and go


def test_loopback_traffic_shows_as_a_rate() -> None:
    # Real counters, a hand-moved clock: exactly one "second" passes between the samples.
    now = [100.0]
    collector = NetworkCollector(include_loopback=True, clock=lambda: now[0])
    collector.collect()
    server = socket.create_server(("127.0.0.1", 0))
    payload = b"x" * (4 << 20)

    def sink() -> None:
        conn, _ = server.accept()
        with conn:
            while conn.recv(1 << 16):
                pass

    reader = threading.Thread(target=sink)
    reader.start()
    with socket.create_connection(server.getsockname()) as client:
        client.sendall(payload)
    reader.join(timeout=10)
    server.close()
    now[0] += 1.0
    lo = next(i for i in collector.collect().interfaces if i.name.startswith("lo"))
    assert lo.rx_bytes_per_s is not None and lo.rx_bytes_per_s >= len(payload)
    assert lo.rx_packets_per_s is not None and lo.rx_packets_per_s > 0
    assert lo.rx_errors_per_s == 0.0


def test_system_matches_psutil() -> None:
    result = SystemCollector().collect()
    assert result.boot_time == pytest.approx(psutil.boot_time(), abs=1.0)
    assert result.uptime_seconds == pytest.approx(time.time() - psutil.boot_time(), abs=2.0)
    assert result.users == len(psutil.users())
    temps: dict[str, list[Any]] = getattr(psutil, "sensors_temperatures", dict)()
    assert len(result.temperatures) == sum(
        1 for entries in temps.values() for e in entries if e.current is not None
    )
    if getattr(psutil, "sensors_battery", lambda: None)() is None:
        assert result.battery is None


class Sensors:
    """A laptop's worth of sensor readings, in psutil's shapes."""

    def boot_time(self) -> float:
        return 1_700_000_000.0

    def users(self) -> list[Any]:
        return [object(), object()]

    def sensors_temperatures(self) -> dict[str, list[Any]]:
        core = SimpleNamespace
        return {
            "coretemp": [
                core(label="Package id 0", current=55.0, high=80.0, critical=100.0),
                core(label="Core 0", current=50.0, high=80.0, critical=None),
                core(label="Core 0", current=51.0, high=None, critical=None),
            ]
        }

    def sensors_fans(self) -> dict[str, list[Any]]:
        return {"thinkpad": [SimpleNamespace(label="", current=2100)]}

    def sensors_battery(self) -> Any:
        return SimpleNamespace(
            percent=81.5, secsleft=psutil.POWER_TIME_UNLIMITED, power_plugged=True
        )


def test_sensors_are_reported_with_unique_key_safe_names() -> None:
    result = SystemCollector(Sensors(), clock=lambda: 1_700_000_100.0).collect()
    assert result.uptime_seconds == 100.0 and result.users == 2
    assert [t.sensor for t in result.temperatures] == [
        "coretemp_package_id_0",
        "coretemp_core_0",
        "coretemp_core_0_2",
    ]
    assert result.temperatures[0].critical_celsius == 100.0
    assert [f.sensor for f in result.fans] == ["thinkpad_0"]
    assert result.battery is not None
    assert (result.battery.percent, result.battery.seconds_left, result.battery.plugged) == (
        81.5,
        None,
        True,
    )
    flat: dict[str, float] = {}
    result.add_flat(flat)
    assert flat["temp.coretemp_package_id_0.celsius"] == 55.0
    assert flat["battery.plugged"] == 1.0 and "battery.seconds_left" not in flat
