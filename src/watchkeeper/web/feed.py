"""What each bus message becomes for the web: a chart point, an activity line, an SSE frame.

Pure functions over the bus's typed models (a message's ``value``), so they cost nothing to
test and nothing to run more than once per message; none of them needs the JSON payload::

    point = chart_point(METRICS_SAMPLE.read(message))  # for metrics.sample
    line = describe(message.topic, message.value)      # (severity, text, subject) or None
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from watchkeeper.model.actions import ActionRecord
from watchkeeper.model.alerts import Alert
from watchkeeper.model.analysis import AnalysisResult
from watchkeeper.model.events import (
    AgentRestart,
    AgentStateChange,
    ConfigChange,
    Escalation,
    GaveUp,
    HealthChange,
    LlmStatus,
)
from watchkeeper.model.incidents import Incident
from watchkeeper.model.metrics import MetricsSample
from watchkeeper.model.services import ServiceEvent

__all__ = ["SERIES", "chart_point", "describe", "sse_frame"]

#: The chart series kept in memory, in the order of each point's values.
SERIES = ("cpu", "memory", "swap", "disk_read", "disk_write", "net_rx", "net_tx", "disk_used")

#: Remediation outcomes worth a warning in the feed.
_BAD_OUTCOMES = frozenset({"failed", "timed_out", "gave_up", "refused"})


def sse_frame(event: str, data: Any) -> bytes:
    """One server-sent event. Compact JSON has no raw newlines, so one ``data:`` line."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return f"event: {event}\ndata: {text}\n\n".encode()


def _sum(values: Iterable[float | None]) -> float | None:
    total: float | None = None
    for value in values:
        if value is not None:
            total = (total or 0.0) + value
    return total


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def chart_point(sample: MetricsSample) -> dict[str, Any]:
    """The chart values of one sample (as JSON data): totals over disks and interfaces
    (loopback left out, it is not traffic anyone pays for), ``None`` where unknown."""
    cpu, memory, disks, network = sample.cpu, sample.memory, sample.disks, sample.network
    io = disks.io if disks is not None else ()
    used = [fs.percent for fs in disks.filesystems] if disks is not None else []
    ifaces = (
        [i for i in network.interfaces if not i.name.startswith("lo")]
        if network is not None
        else []
    )
    return {
        "ts": float(sample.timestamp),
        "cpu": _r(cpu.percent) if cpu is not None else None,
        "memory": _r(memory.percent) if memory is not None else None,
        "swap": _r(memory.swap_percent) if memory is not None else None,
        "disk_read": _r(_sum(d.read_bytes_per_s for d in io), 0),
        "disk_write": _r(_sum(d.write_bytes_per_s for d in io), 0),
        "net_rx": _r(_sum(i.rx_bytes_per_s for i in ifaces), 0),
        "net_tx": _r(_sum(i.tx_bytes_per_s for i in ifaces), 0),
        "disk_used": _r(max(used)) if used else None,
    }


def _clip(text: Any, limit: int = 240) -> str:
    value = " ".join(str(text or "").split())
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _health_severity(status: str) -> str:
    if status == "healthy":
        return "info"
    return "warning" if status == "degraded" else "critical"


def _remediation(kind: str, value: BaseModel) -> tuple[str, str, str | None] | None:
    if isinstance(value, (ActionRecord, Escalation)):
        action, target, detail = value.action, value.target, value.detail
    elif isinstance(value, GaveUp):
        action, target, detail = "?", value.target, ""
    else:
        return None
    outcome = kind or (value.outcome.value if isinstance(value, ActionRecord) else "")
    severity = "warning" if outcome in _BAD_OUTCOMES else "info"
    suffix = f": {detail}" if detail else ""
    text = f"action {action} on {target or '-'}: {outcome}{suffix}"
    return severity, _clip(text), _clip(target, 120) or None


def describe(topic: str, value: BaseModel) -> tuple[str, str, str | None] | None:
    """A one-line account of a bus message (its topic and model, ``message.value``) for
    the activity feed: (severity, text, subject), or None for messages not worth a line.
    The text is plain: the page inserts it as text, never as markup."""
    family, _, kind = topic.partition(".")
    if family == "alert" and isinstance(value, Alert):
        severity = "info" if kind == "resolved" else str(value.severity)
        return (
            severity,
            _clip(f"alert {kind}: {value.summary}"),
            _clip(value.subject, 120),
        )
    if family == "incident" and isinstance(value, Incident):
        if kind == "updated":
            return None  # members come and go; the dashboard's incident list shows it
        severity = "info" if kind == "resolved" else str(value.severity)
        count = len(value.members)
        cause = f"; probable cause: {value.root_cause}" if value.root_cause else ""
        text = f"incident {kind}: {value.title} ({count} alert{'' if count == 1 else 's'}){cause}"
        return severity, _clip(text), _clip(value.key, 120)
    if family == "analysis" and kind == "result" and isinstance(value, AnalysisResult):
        text = f"analysis by {value.source}: {value.verdict} — {value.summary}"
        return "info", _clip(text), None
    if family == "analysis" and kind == "llm_status" and isinstance(value, LlmStatus):
        return ("info" if value.ok else "warning"), _clip(value.status), None
    if family == "remediation":
        return _remediation(kind, value)
    if family == "agent" and isinstance(value, (AgentRestart, AgentStateChange)):
        agent = value.agent or "?"
        why = value.reason if isinstance(value, AgentRestart) else ""
        reason = f" ({why})" if why else ""
        return "warning", _clip(f"agent {agent} {kind}{reason}"), agent
    if family == "service" and isinstance(value, ServiceEvent):
        detail = f": {value.detail}" if value.detail else ""
        severity = "warning" if kind in ("exited", "unhealthy") else "info"
        return (
            severity,
            _clip(f"service {value.name} {kind}{detail}"),
            _clip(value.name, 120),
        )
    if family == "config" and isinstance(value, ConfigChange):
        keys = ", ".join(sorted(value.changes))
        return "info", _clip(f"configuration changed by {value.actor}: {keys}"), None
    if family == "health" and isinstance(value, HealthChange):
        severity = _health_severity(value.status)
        return severity, _clip(f"health {value.status}, score {value.score}"), None
    if family == "system":
        return "info", f"system {kind}", None
    return None
