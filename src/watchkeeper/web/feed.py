"""What each bus message becomes for the web: a chart point, an activity line, an SSE frame.

Pure functions over JSON data (bus payloads), so they cost nothing to test and nothing to
run more than once per message::

    point = chart_point(message.payload)             # for metrics.sample
    line = describe(message.topic, message.payload)  # (severity, text, subject) or None
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["SERIES", "chart_point", "describe", "sse_frame"]

#: The chart series kept in memory, in the order of each point's values.
SERIES = ("cpu", "memory", "swap", "disk_read", "disk_write", "net_rx", "net_tx", "disk_used")


def sse_frame(event: str, data: Any) -> bytes:
    """One server-sent event. Compact JSON has no raw newlines, so one ``data:`` line."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return f"event: {event}\ndata: {text}\n\n".encode()


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _sum(
    rows: Any, key: str, skip: Callable[[Mapping[str, Any]], bool] | None = None
) -> float | None:
    total: float | None = None
    for row in rows or ():
        if not isinstance(row, Mapping) or (skip is not None and skip(row)):
            continue
        value = _num(row.get(key))
        if value is not None:
            total = (total or 0.0) + value
    return total


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def chart_point(sample: Mapping[str, Any]) -> dict[str, Any]:
    """The chart values of one sample (as JSON data): totals over disks and interfaces
    (loopback left out, it is not traffic anyone pays for), ``None`` where unknown."""
    cpu = sample.get("cpu") or {}
    memory = sample.get("memory") or {}
    disks = sample.get("disks") or {}
    network = sample.get("network") or {}
    used = [
        _num(fs.get("percent")) for fs in disks.get("filesystems") or () if isinstance(fs, Mapping)
    ]
    known = [u for u in used if u is not None]

    def loopback(row: Mapping[str, Any]) -> bool:
        return str(row.get("name", "")).startswith("lo")

    ifaces = network.get("interfaces")
    return {
        "ts": _num(sample.get("timestamp")),
        "cpu": _r(_num(cpu.get("percent"))),
        "memory": _r(_num(memory.get("percent"))),
        "swap": _r(_num(memory.get("swap_percent"))),
        "disk_read": _r(_sum(disks.get("io"), "read_bytes_per_s"), 0),
        "disk_write": _r(_sum(disks.get("io"), "write_bytes_per_s"), 0),
        "net_rx": _r(_sum(ifaces, "rx_bytes_per_s", loopback), 0),
        "net_tx": _r(_sum(ifaces, "tx_bytes_per_s", loopback), 0),
        "disk_used": _r(max(known)) if known else None,
    }


def _clip(text: Any, limit: int = 240) -> str:
    value = " ".join(str(text or "").split())
    return value if len(value) <= limit else value[: limit - 1] + "…"


def describe(topic: str, payload: Mapping[str, Any]) -> tuple[str, str, str | None] | None:
    """A one-line account of a bus message for the activity feed: (severity, text,
    subject), or None for messages not worth a line. The text is plain: the page inserts
    it as text, never as markup."""
    family, _, kind = topic.partition(".")
    p = payload
    if family == "alert":
        severity = "info" if kind == "resolved" else str(p.get("severity", "warning"))
        return (
            severity,
            _clip(f"alert {kind}: {p.get('summary', '')}"),
            _clip(p.get("subject"), 120),
        )
    if family == "analysis" and kind == "result":
        source = p.get("source", "rules")
        text = f"analysis by {source}: {p.get('verdict', '?')} — {p.get('summary', '')}"
        return "info", _clip(text), None
    if family == "analysis" and kind == "llm_status":
        return ("info" if p.get("ok") else "warning"), _clip(p.get("status")), None
    if family == "remediation":
        outcome = kind or str(p.get("outcome", ""))
        detail = f": {p.get('detail')}" if p.get("detail") else ""
        severity = "warning" if outcome in ("failed", "timed_out", "gave_up", "refused") else "info"
        text = f"action {p.get('action', '?')} on {p.get('target') or '-'}: {outcome}{detail}"
        return severity, _clip(text), _clip(p.get("target"), 120) or None
    if family == "agent":
        agent = p.get("agent") or p.get("name") or "?"
        reason = f" ({p.get('reason')})" if p.get("reason") else ""
        return "warning", _clip(f"agent {agent} {kind}{reason}"), str(agent)
    if family == "service":
        detail = f": {p.get('detail')}" if p.get("detail") else ""
        severity = "warning" if kind in ("exited", "unhealthy") else "info"
        return (
            severity,
            _clip(f"service {p.get('name', '?')} {kind}{detail}"),
            _clip(p.get("name"), 120),
        )
    if family == "config":
        changes = p.get("changes")
        keys = ", ".join(sorted(changes)) if isinstance(changes, Mapping) else "?"
        return "info", _clip(f"configuration changed by {p.get('actor', '?')}: {keys}"), None
    if family == "health":
        status = p.get("status", "?")
        severity = {"healthy": "info", "degraded": "warning"}.get(str(status), "critical")
        return severity, _clip(f"health {status}, score {p.get('score', '?')}"), None
    if family == "system":
        return "info", f"system {kind}", None
    return None
