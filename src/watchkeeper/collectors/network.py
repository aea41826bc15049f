"""Per-interface traffic, errors and drops per second, and TCP connections by state.

Connection counting must stay cheap on busy servers. ``psutil.net_connections()``
resolves every socket to its process and costs milliseconds even on a quiet host, so on
Linux the kernel is asked directly: first through socket diagnostics over netlink (one
small record per socket), and where that is not allowed, by parsing the state column of
``/proc/net/tcp`` and ``tcp6`` (which on large-memory hosts costs ~3 ms per file even when
empty, as the kernel walks its whole connection table). Other platforms use psutil; where
it lacks privileges (macOS without root), ``tcp_states`` is ``None`` and the interface
rates are still reported.

    NetworkCollector().collect().tcp_states["established"]
"""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import psutil

from watchkeeper.collectors.base import RateTracker
from watchkeeper.model.metrics import TCP_STATES, InterfaceRates, MetricSpec, NetworkMetrics
from watchkeeper.model.text import LOG_LINE, clean

__all__ = ["NETWORK_METRICS", "NetworkCollector", "NetworkSource", "count_tcp_states"]

# Linux exposes the kernel's tables as files; reading them beats any library call.
_DEFAULT_PROC_ROOT = "/proc" if sys.platform.startswith("linux") else None

_DIRECTIONS = (
    ("rx_bytes_per_s", "Bytes received."),
    ("tx_bytes_per_s", "Bytes sent."),
    ("rx_packets_per_s", "Packets received."),
    ("tx_packets_per_s", "Packets sent."),
    ("rx_errors_per_s", "Receive errors (bad frames, CRC); any steady rate means a sick link."),
    ("tx_errors_per_s", "Transmit errors."),
    ("rx_drops_per_s", "Received packets dropped, usually full buffers under load."),
    ("tx_drops_per_s", "Outgoing packets dropped."),
)

NETWORK_METRICS: tuple[MetricSpec, ...] = (
    *(
        MetricSpec(
            name=f"net.{{iface}}.{field}",
            unit="bytes/s" if "bytes" in field else "count/s",
            description=text,
        )
        for field, text in _DIRECTIONS
    ),
    *(
        MetricSpec(name=f"tcp.{state}", unit="count", description=f"TCP sockets in {state}.")
        for state in TCP_STATES
    ),
    MetricSpec(name="tcp.total", unit="count", description="TCP sockets in any state."),
)

# psutil's snetio fields, in the order of _DIRECTIONS.
_COUNTERS = (
    "bytes_recv",
    "bytes_sent",
    "packets_recv",
    "packets_sent",
    "errin",
    "errout",
    "dropin",
    "dropout",
)
_FIELDS = tuple(field for field, _ in _DIRECTIONS)
# The kernel numbers states from 1 in TCP_STATES order (include/net/tcp_states.h).
_STATE_BY_HEX = {f"{index:02X}".encode(): name for index, name in enumerate(TCP_STATES, 1)}
_LOOPBACK_PREFIXES = ("lo", "Loopback")


class NetworkSource(Protocol):
    """The slice of psutil this collector reads; pass another object to test failures."""

    def net_io_counters(self, pernic: bool = ..., nowrap: bool = ...) -> Any: ...
    def net_connections(self, kind: str = ...) -> Any: ...


def count_tcp_states(table: bytes) -> Counter[str]:
    """TCP sockets by state from the text of ``/proc/net/tcp`` (or ``tcp6``)."""
    counts: Counter[str] = Counter()
    # Column 4 ("st") holds the state in hex; the first line is the header.
    raw = Counter(line.split(None, 4)[3] for line in table.splitlines()[1:] if line.strip())
    for code, count in raw.items():
        state = _STATE_BY_HEX.get(code.upper())
        if state is not None:  # a state newer than this table: not worth guessing
            counts[state] += count
    return counts


class NetworkCollector:
    """Reads interface counters and TCP states; under 1 ms on a quiet Linux host.

    ``netlink=False`` skips the kernel's socket-diagnostics interface and reads
    ``proc_root``'s ``net/tcp`` tables instead (``proc_root=None``: ask psutil).
    """

    name: str = "network"
    metrics: tuple[MetricSpec, ...] = NETWORK_METRICS

    def __init__(
        self,
        source: NetworkSource | None = None,
        *,
        proc_root: str | Path | None = _DEFAULT_PROC_ROOT,
        netlink: bool = _DEFAULT_PROC_ROOT is not None,
        include_loopback: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source: NetworkSource = source if source is not None else psutil
        self._proc_net = Path(proc_root, "net") if proc_root is not None else None
        self._netlink = netlink
        self._include_loopback = include_loopback
        self._clock = clock
        self._rates = RateTracker(clock)

    def collect(self) -> NetworkMetrics:
        return NetworkMetrics(interfaces=self._interfaces(), tcp_states=self._tcp_states())

    def _interfaces(self) -> tuple[InterfaceRates, ...]:
        counters = self._source.net_io_counters(pernic=True, nowrap=True) or {}
        now = self._clock()
        rate = self._rates.rate
        interfaces = []
        for nic, io in sorted(counters.items()):
            if not self._include_loopback and nic.startswith(_LOOPBACK_PREFIXES):
                continue
            values = {
                field: rate((nic, field), getattr(io, counter), now)
                for field, counter in zip(_FIELDS, _COUNTERS, strict=True)
            }
            interfaces.append(InterfaceRates(name=clean(nic, LOG_LINE, 64), **values))
        # An interface that went away and comes back later starts with no rate, not a jump.
        self._rates.retain((nic, field) for nic in counters for field in _FIELDS)
        return tuple(interfaces)

    def _tcp_states(self) -> dict[str, int] | None:
        if self._netlink:
            try:
                return dict(_netlink_tcp_states())
            except OSError:
                # Netlink socket diagnostics are blocked in some sandboxes (or the module is
                # not loaded): use the slower tables from now on rather than failing each time.
                self._netlink = False
        if self._proc_net is not None:
            try:
                counts = count_tcp_states((self._proc_net / "tcp").read_bytes())
            except FileNotFoundError:
                pass  # no procfs network view here; ask psutil instead
            else:
                with contextlib.suppress(FileNotFoundError):  # IPv6 disabled
                    counts += count_tcp_states((self._proc_net / "tcp6").read_bytes())
                return dict(counts)
        try:
            connections = self._source.net_connections(kind="tcp")
        except (psutil.AccessDenied, PermissionError):
            return None
        by_state: Counter[str] = Counter()
        for conn in connections:
            state = str(conn.status).lower()
            if state in _STATE_SET:
                by_state[state] += 1
        return dict(by_state)


_STATE_SET = frozenset(TCP_STATES)

# Linux socket diagnostics (sock_diag(7)): one dump request per address family returns a
# fixed-size record per socket, state at byte 1 of the record. The kernel skips empty hash
# buckets here, where reading /proc/net/tcp walks all of them: on a host with a large
# connection table that is ~0.2 ms instead of ~3 ms per family even with no sockets at all.
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST_DUMP = 0x1 | 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLMSG_HEADER = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_DIAG_REQUEST = struct.Struct("=BBBBI48x")  # family, protocol, ext, pad, states, socket id
_STATE_BY_NUMBER = dict(enumerate(TCP_STATES, 1))


def _netlink_tcp_states() -> Counter[str]:
    counts: Counter[str] = Counter()
    for family in (socket.AF_INET, socket.AF_INET6):
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as sock:
            sock.settimeout(1.0)  # the kernel answers at once; never let a sample hang here
            body = _DIAG_REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF)
            header = _NLMSG_HEADER.pack(
                _NLMSG_HEADER.size + len(body), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST_DUMP, 1, 0
            )
            sock.sendto(header + body, (0, 0))
            _read_dump(sock, counts)
    return counts


def _read_dump(sock: socket.socket, counts: Counter[str]) -> None:
    by_number: Counter[int] = Counter()
    while True:
        data = sock.recv(65536)
        offset = 0
        while offset + _NLMSG_HEADER.size <= len(data):
            length, kind = struct.unpack_from("=IH", data, offset)
            if kind == _NLMSG_DONE:
                for number, count in by_number.items():
                    if number in _STATE_BY_NUMBER:
                        counts[_STATE_BY_NUMBER[number]] += count
                return
            if kind == _NLMSG_ERROR or length < _NLMSG_HEADER.size:
                raise OSError("socket diagnostics request refused")
            by_number[data[offset + _NLMSG_HEADER.size + 1]] += 1
            offset += (length + 3) & ~3
