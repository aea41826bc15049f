"""How the latest metrics sample looks in a terminal (menu 3, ``watchkeeper metrics``).

Like :mod:`watchkeeper.cli.views`: JSON from the API in, a rich renderable out::

    metrics_view(api.get("/api/metrics"), api.get("/api/metrics/recent"), time.time())

Process names and command lines are untrusted and only ever shown through ``plain``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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
    field,
    human_bytes,
    human_rate,
    kv_grid,
    new_table,
    num,
    pct,
    plain,
    sparkline,
    state_style,
)
from watchkeeper.cli.views import Levels

__all__ = ["metrics_view", "processes_table"]


def _series(recent: Mapping[str, Any] | None, name: str) -> list[float | None]:
    values = (recent or {}).get(name)
    if not isinstance(values, list):
        return []
    return [float(v) if isinstance(v, (int, float)) else None for v in values]


def _cpu_panel(cpu: Mapping[str, Any], recent: Mapping[str, Any] | None, levels: Levels) -> Panel:
    warn, crit = levels.cpu
    rows: list[tuple[str, Text | str]] = [
        ("CPU", bar(num(cpu, "percent"), 30, warn=warn, crit=crit)),
        ("History", sparkline(_series(recent, "cpu"), 36, low=0, high=100)),
        (
            "Split",
            f"user {pct(num(cpu, 'user_percent'))} · system {pct(num(cpu, 'system_percent'))}"
            f" · iowait {pct(num(cpu, 'iowait_percent'))}",
        ),
        (
            "Load",
            " / ".join(
                DASH if (v := num(cpu, k)) is None else f"{v:.2f}"
                for k in ("load_1m", "load_5m", "load_15m")
            )
            + f"  ({int(num(cpu, 'count') or 0)} CPUs)",
        ),
    ]
    freq = num(cpu, "freq_mhz")
    if freq:
        rows.append(("Frequency", f"{freq:.0f} MHz"))
    cores = cpu.get("per_core_percent")
    if isinstance(cores, list) and cores:
        lines = Text()
        for index, value in enumerate(cores[:32]):
            if index:
                lines.append("\n")
            lines.append(f"{index:>2} ")
            lines.append_text(bar(value if isinstance(value, (int, float)) else None, 16))
        rows.append(("Cores", lines))
    return Panel(kv_grid(rows), title="CPU")


def _memory_panel(
    memory: Mapping[str, Any], recent: Mapping[str, Any] | None, levels: Levels
) -> Panel:
    rows: list[tuple[str, Text | str]] = [
        ("Memory", bar(num(memory, "percent"), 30, warn=levels.memory[0], crit=levels.memory[1])),
        ("History", sparkline(_series(recent, "memory"), 36, low=0, high=100)),
        (
            "Used",
            f"{human_bytes(num(memory, 'used_bytes'))} of {human_bytes(num(memory, 'total_bytes'))}"
            f" · {human_bytes(num(memory, 'available_bytes'))} available",
        ),
    ]
    if num(memory, "swap_total_bytes"):
        rows += [
            (
                "Swap",
                bar(num(memory, "swap_percent"), 30, warn=levels.swap[0], crit=levels.swap[1]),
            ),
            (
                "Swap I/O",
                f"in {human_rate(num(memory, 'swap_in_bytes_per_s'))} · "
                f"out {human_rate(num(memory, 'swap_out_bytes_per_s'))}",
            ),
        ]
    else:
        rows.append(("Swap", "none configured"))
    return Panel(kv_grid(rows), title="Memory")


def _filesystems(disks: Mapping[str, Any], levels: Levels) -> Table:
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
    for fs in disks.get("filesystems") or []:
        if not isinstance(fs, Mapping):
            continue
        table.add_row(
            plain(fs.get("mount"), limit=30),
            bar(num(fs, "percent"), 20, warn=levels.disk[0], crit=levels.disk[1]),
            Text(human_bytes(num(fs, "total_bytes"))),
            Text(human_bytes(num(fs, "free_bytes"))),
            Text(pct(num(fs, "inodes_percent"))),
            plain(fs.get("fstype")),
        )
    return table


def _io_tables(disks: Mapping[str, Any], network: Mapping[str, Any]) -> RenderableType:
    io = new_table(
        "Disk I/O", [("Device", "key"), ("Read", "num"), ("Write", "num"), ("Busy", "num")]
    )
    for row in (disks.get("io") or [])[:8]:
        if isinstance(row, Mapping):
            io.add_row(
                plain(row.get("device"), limit=16),
                Text(human_rate(num(row, "read_bytes_per_s"))),
                Text(human_rate(num(row, "write_bytes_per_s"))),
                Text(pct(num(row, "busy_percent"))),
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
    ifaces = [i for i in network.get("interfaces") or [] if isinstance(i, Mapping)]
    ifaces.sort(key=lambda i: -((num(i, "rx_bytes_per_s") or 0) + (num(i, "tx_bytes_per_s") or 0)))
    for iface in ifaces[:8]:
        errors = (num(iface, "rx_errors_per_s") or 0) + (num(iface, "tx_errors_per_s") or 0)
        drops = (num(iface, "rx_drops_per_s") or 0) + (num(iface, "tx_drops_per_s") or 0)
        net.add_row(
            plain(iface.get("name"), limit=16),
            Text(human_rate(num(iface, "rx_bytes_per_s"))),
            Text(human_rate(num(iface, "tx_bytes_per_s"))),
            Text(f"{errors:.1f}", style="red" if errors else ""),
            Text(f"{drops:.1f}", style="yellow" if drops else ""),
        )
    return Adaptive(io, net, min_width=110)


def processes_table(rows: Sequence[Any], title: str, limit: int = 8) -> Table:
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
        if not isinstance(proc, Mapping):
            continue
        threads = num(proc, "num_threads")
        table.add_row(
            Text(str(proc.get("pid", DASH))),
            plain(proc.get("name"), "bold", limit=24),
            plain(proc.get("user"), limit=12),
            Text(pct(num(proc, "cpu_percent"))),
            Text(human_bytes(num(proc, "rss_bytes"))),
            Text(DASH if threads is None else str(int(threads))),
            plain(proc.get("cmdline"), "dim", limit=120),
        )
    return table


def _services(services: Sequence[Any], now: float) -> Table:
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
        if not isinstance(svc, Mapping):
            continue
        healthy = svc.get("healthy")
        table.add_row(
            plain(svc.get("name"), "bold"),
            plain(svc.get("manager")),
            plain(svc.get("state"), state_style(svc.get("state"))),
            plain(svc.get("pid")),
            Text(
                DASH if healthy is None else ("yes" if healthy else "no"),
                style="" if healthy is None else ("green" if healthy else "red"),
            ),
            Text(str(svc.get("restarts", 0))),
            plain(svc.get("probe_detail") or svc.get("detail"), limit=50),
        )
    return table


def metrics_view(
    metrics: Mapping[str, Any] | None,
    recent: Mapping[str, Any] | None,
    now: float,
    levels: Levels | None = None,
) -> RenderableType:
    """Menu 3, ``watchkeeper metrics``: the latest sample, with recent history."""
    if not metrics:
        return Panel(
            Text("No sample yet: the sensor takes its first one within one interval."),
            title="System Metrics",
        )
    levels = levels or Levels()
    header = Text()
    header.append("Sample from ")
    header.append_text(plain(metrics.get("host"), "bold"))
    header.append(f" at {clock(num(metrics, 'timestamp'))} ({ago(num(metrics, 'timestamp'), now)})")
    uptime = num(field(metrics, "system") or {}, "uptime_seconds")
    if uptime is not None:
        header.append(f" · host up {duration(uptime)}")
    parts: list[RenderableType] = [header]
    cpu, memory = metrics.get("cpu"), metrics.get("memory")
    cells: list[RenderableType] = []
    if isinstance(cpu, Mapping):
        cells.append(_cpu_panel(cpu, recent, levels))
    if isinstance(memory, Mapping):
        cells.append(_memory_panel(memory, recent, levels))
    if cells:
        parts.append(Adaptive(*cells, min_width=110))
    raw_disks, raw_network = metrics.get("disks"), metrics.get("network")
    disks: Mapping[str, Any] = raw_disks if isinstance(raw_disks, Mapping) else {}
    network: Mapping[str, Any] = raw_network if isinstance(raw_network, Mapping) else {}
    parts.append(_filesystems(disks, levels))
    parts.append(_io_tables(disks, network))
    procs = metrics.get("processes")
    if isinstance(procs, Mapping):
        counts = Text(
            f"Processes: {procs.get('total', DASH)} total, {procs.get('running', 0)} running, "
            f"{procs.get('zombie', 0)} zombie, {procs.get('threads', 0)} threads"
        )
        parts += [
            counts,
            processes_table(procs.get("top_cpu") or [], "Top processes by CPU"),
            processes_table(procs.get("top_memory") or [], "Top processes by memory", limit=5),
        ]
    services = metrics.get("services")
    if isinstance(services, list) and services:
        parts.append(_services(services, now))
    temps = field(metrics, "system", "temperatures")
    if isinstance(temps, list) and temps:
        line = Text("Temperatures: ")
        for index, temp in enumerate(temps[:8]):
            if isinstance(temp, Mapping):
                line.append(", " if index else "")
                line.append_text(plain(temp.get("sensor")))
                line.append(f" {num(temp, 'celsius') or 0:.0f}°C")
        parts.append(line)
    errors = metrics.get("errors")
    if isinstance(errors, Mapping) and errors:
        for family, why in errors.items():
            parts.append(plain(f"{family}: not collected: {why}", "yellow"))
    return Group(*parts)
