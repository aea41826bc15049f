"""How the latest metrics sample looks in a terminal (menu 3, ``watchkeeper metrics``).

Like :mod:`watchkeeper.cli.views`: the API's models in, a rich renderable out::

    metrics_view(MetricsSample.model_validate(data), RecentPoints.model_validate(r), now)

Process names and command lines are untrusted and only ever shown through ``plain``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from watchkeeper.cli._format import (
    DASH,
    Adaptive,
    ago,
    bar,
    clock,
    duration,
    human_bytes,
    human_rate,
    kv_grid,
    new_table,
    pct,
    plain,
    sparkline,
    state_style,
)
from watchkeeper.cli.views import Levels

if TYPE_CHECKING:
    from watchkeeper.model.metrics import (
        CpuMetrics,
        DiskMetrics,
        MemoryMetrics,
        MetricsSample,
        NetworkMetrics,
        ProcessInfo,
    )
    from watchkeeper.model.services import ServiceStatus
    from watchkeeper.web.responses import RecentPoints

__all__ = ["metrics_view", "processes_table"]


def _series(recent: RecentPoints | None, name: str) -> list[float | None]:
    return recent.column(name) if recent is not None else []


def _cpu_panel(cpu: CpuMetrics, recent: RecentPoints | None, levels: Levels) -> Panel:
    warn, crit = levels.cpu
    loads = (cpu.load_1m, cpu.load_5m, cpu.load_15m)
    rows: list[tuple[str, Text | str]] = [
        ("CPU", bar(cpu.percent, 30, warn=warn, crit=crit)),
        ("History", sparkline(_series(recent, "cpu"), 36, low=0, high=100)),
        (
            "Split",
            f"user {pct(cpu.user_percent)} · system {pct(cpu.system_percent)}"
            f" · iowait {pct(cpu.iowait_percent)}",
        ),
        (
            "Load",
            " / ".join(DASH if v is None else f"{v:.2f}" for v in loads) + f"  ({cpu.count} CPUs)",
        ),
    ]
    if cpu.freq_mhz:
        rows.append(("Frequency", f"{cpu.freq_mhz:.0f} MHz"))
    if cpu.per_core_percent:
        lines = Text()
        for index, value in enumerate(cpu.per_core_percent[:32]):
            if index:
                lines.append("\n")
            lines.append(f"{index:>2} ")
            lines.append_text(bar(value, 16))
        rows.append(("Cores", lines))
    return Panel(kv_grid(rows), title="CPU")


def _memory_panel(memory: MemoryMetrics, recent: RecentPoints | None, levels: Levels) -> Panel:
    rows: list[tuple[str, Text | str]] = [
        ("Memory", bar(memory.percent, 30, warn=levels.memory[0], crit=levels.memory[1])),
        ("History", sparkline(_series(recent, "memory"), 36, low=0, high=100)),
        (
            "Used",
            f"{human_bytes(memory.used_bytes)} of {human_bytes(memory.total_bytes)}"
            f" · {human_bytes(memory.available_bytes)} available",
        ),
    ]
    if memory.swap_total_bytes:
        rows += [
            ("Swap", bar(memory.swap_percent, 30, warn=levels.swap[0], crit=levels.swap[1])),
            (
                "Swap I/O",
                f"in {human_rate(memory.swap_in_bytes_per_s)} · "
                f"out {human_rate(memory.swap_out_bytes_per_s)}",
            ),
        ]
    else:
        rows.append(("Swap", "none configured"))
    return Panel(kv_grid(rows), title="Memory")


def _filesystems(disks: DiskMetrics | None, levels: Levels) -> Table:
    table = new_table(
        "Filesystems",
        [
            ("Mount", "text"),
            ("Used", "key"),
            ("Size", "num"),
            ("Free", "num"),
            ("Inodes", "num"),
            ("Type", "key"),
        ],
    )
    for fs in disks.filesystems if disks is not None else ():
        table.add_row(
            plain(fs.mount, limit=30),
            bar(fs.percent, 20, warn=levels.disk[0], crit=levels.disk[1]),
            Text(human_bytes(fs.total_bytes)),
            Text(human_bytes(fs.free_bytes)),
            Text(pct(fs.inodes_percent)),
            plain(fs.fstype),
        )
    return table


def _io_tables(disks: DiskMetrics | None, network: NetworkMetrics | None) -> RenderableType:
    io = new_table(
        "Disk I/O", [("Device", "key"), ("Read", "num"), ("Write", "num"), ("Busy", "num")]
    )
    for row in (disks.io if disks is not None else ())[:8]:
        io.add_row(
            plain(row.device, limit=16),
            Text(human_rate(row.read_bytes_per_s)),
            Text(human_rate(row.write_bytes_per_s)),
            Text(pct(row.busy_percent)),
        )
    net = new_table(
        "Network",
        [
            ("Interface", "key"),
            ("Receive", "num"),
            ("Send", "num"),
            ("Errors/s", "num"),
            ("Drops/s", "num"),
        ],
    )
    ifaces = list(network.interfaces) if network is not None else []
    ifaces.sort(key=lambda i: -((i.rx_bytes_per_s or 0) + (i.tx_bytes_per_s or 0)))
    for iface in ifaces[:8]:
        errors = (iface.rx_errors_per_s or 0) + (iface.tx_errors_per_s or 0)
        drops = (iface.rx_drops_per_s or 0) + (iface.tx_drops_per_s or 0)
        net.add_row(
            plain(iface.name, limit=16),
            Text(human_rate(iface.rx_bytes_per_s)),
            Text(human_rate(iface.tx_bytes_per_s)),
            Text(f"{errors:.1f}", style="red" if errors else ""),
            Text(f"{drops:.1f}", style="yellow" if drops else ""),
        )
    return Adaptive(io, net, min_width=110)


def processes_table(rows: Sequence[ProcessInfo], title: str, limit: int = 8) -> Table:
    """Top processes; names and command lines are untrusted and shown literally."""
    table = new_table(
        Text(title),
        [
            ("PID", "num"),
            ("Name", "key"),
            ("User", "key"),
            ("CPU", "num"),
            ("Memory", "num"),
            ("Threads", "num"),
            ("Command", "fill"),
        ],
    )
    for proc in list(rows)[:limit]:
        table.add_row(
            Text(str(proc.pid)),
            plain(proc.name, "bold", limit=24),
            plain(proc.user, limit=12),
            Text(pct(proc.cpu_percent)),
            Text(human_bytes(proc.rss_bytes)),
            Text(str(proc.num_threads)),
            plain(proc.cmdline, "dim", limit=120),
        )
    return table


def _services(services: Sequence[ServiceStatus], now: float) -> Table:
    table = new_table(
        "Services",
        [
            ("Service", "key"),
            ("Manager", "key"),
            ("State", "key"),
            ("PID", "num"),
            ("Healthy", "key"),
            ("Restarts", "num"),
            ("Detail", "text"),
        ],
    )
    for svc in services:
        healthy = svc.healthy
        state = str(svc.state)
        table.add_row(
            plain(svc.name, "bold"),
            plain(svc.manager),
            plain(state, state_style(state)),
            plain(svc.pid),
            Text(
                DASH if healthy is None else ("yes" if healthy else "no"),
                style="" if healthy is None else ("green" if healthy else "red"),
            ),
            Text(str(svc.restarts)),
            plain(svc.probe_detail, limit=50),
        )
    return table


def metrics_view(
    metrics: MetricsSample | None,
    recent: RecentPoints | None,
    now: float,
    levels: Levels | None = None,
) -> RenderableType:
    """Menu 3, ``watchkeeper metrics``: the latest sample, with recent history."""
    if metrics is None:
        return Panel(
            Text("No sample yet: the sensor takes its first one within one interval."),
            title="System Metrics",
        )
    levels = levels or Levels()
    header = Text()
    header.append("Sample from ")
    header.append_text(plain(metrics.host, "bold"))
    header.append(f" at {clock(metrics.timestamp)} ({ago(metrics.timestamp, now)})")
    if metrics.system is not None:
        header.append(f" · host up {duration(metrics.system.uptime_seconds)}")
    parts: list[RenderableType] = [header]
    cells: list[RenderableType] = []
    if metrics.cpu is not None:
        cells.append(_cpu_panel(metrics.cpu, recent, levels))
    if metrics.memory is not None:
        cells.append(_memory_panel(metrics.memory, recent, levels))
    if cells:
        parts.append(Adaptive(*cells, min_width=110))
    parts.append(_filesystems(metrics.disks, levels))
    parts.append(_io_tables(metrics.disks, metrics.network))
    procs = metrics.processes
    if procs is not None:
        counts = Text(
            f"Processes: {procs.total} total, {procs.running} running, "
            f"{procs.zombie} zombie, {procs.threads} threads"
        )
        parts += [
            counts,
            processes_table(procs.top_cpu, "Top processes by CPU"),
            processes_table(procs.top_memory, "Top processes by memory", limit=5),
        ]
    if metrics.services:
        parts.append(_services(metrics.services, now))
    temps = metrics.system.temperatures if metrics.system is not None else ()
    if temps:
        line = Text("Temperatures: ")
        for index, temp in enumerate(temps[:8]):
            line.append(", " if index else "")
            line.append_text(plain(temp.sensor))
            line.append(f" {temp.celsius:.0f}°C")
        parts.append(line)
    for family, why in metrics.errors.items():
        parts.append(plain(f"{family}: not collected: {why}", "yellow"))
    return Group(*parts)
