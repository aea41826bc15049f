"""Asking the LLM about an incident, and living without it.

- ``build_brief`` condenses firing alerts and the latest sample into an ``IncidentBrief``:
  processes, services and paths appear only under opaque ids (P1, S1, D1) with sanitised
  labels; the ``IdMap`` that turns ids back into real targets never leaves this process.
- ``map_back`` turns the model's validated recommendations into ``SuggestedAction`` values
  with real targets (a pid together with its start time, a service name, a path).
- ``AdviceGate`` decides whether a call may go out now: one in flight, a cooldown per
  fingerprint, an hourly budget, and a cache keyed by model, prompt version and findings.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from watchkeeper.llm import (
    PROMPT_VERSION,
    AnalysisReply,
    BriefAction,
    BriefFinding,
    BriefPath,
    BriefProcess,
    BriefService,
    IncidentBrief,
)
from watchkeeper.model.actions import ActionInfo
from watchkeeper.model.alerts import Alert, Severity, SuggestedAction
from watchkeeper.model.analysis import AnalysisResult
from watchkeeper.model.metrics import MetricsSample
from watchkeeper.model.services import telling_lines
from watchkeeper.model.text import PROMPT_DATA, clean

__all__ = [
    "AdviceGate",
    "IdMap",
    "build_brief",
    "consult",
    "findings_key",
    "map_back",
    "worse_verdict",
]

_VERDICT_RANK = {"healthy": 0, "degraded": 1, "critical": 2}


def worse_verdict(rules: str, model: str) -> str:
    """The analysis verdict: the model may raise the rules' verdict, never lower it.
    A word the ranking does not know loses to one it does."""
    return model if _VERDICT_RANK.get(model, -1) > _VERDICT_RANK.get(rules, -1) else rules


_HOUR = 3600.0  # the call budget's window, and the least time a cooldown is remembered
_MB = 1024 * 1024
_MAX_PROCS = 8
_LOG_LINES = 3  # of a failed service's journal, to the model (see telling_lines)


@dataclass
class IdMap:
    findings: dict[str, Alert] = field(default_factory=dict)
    processes: dict[str, dict[str, Any]] = field(default_factory=dict)
    services: dict[str, str] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)


def _evidence(alert: Alert) -> dict[str, float | str]:
    """A few of the alert's values for the model. A failed service's telling log lines
    (its journal: the unit's own last lines and systemd's last word on it) come right after
    its name and state, the last line first, so the prompt's evidence cap keeps them; they
    are data like any label (the brief cleans each)."""
    out: dict[str, float | str] = {}
    for key, value in alert.evidence.items():
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)):
            out[key[:32]] = float(value)
        elif isinstance(value, str):
            out[key[:32]] = value
        if len(out) >= 8:
            break
    logged = alert.evidence.get("journal")
    if isinstance(logged, list) and logged:
        chosen = telling_lines([str(line) for line in logged], _LOG_LINES)
        lines = [clean(line, PROMPT_DATA) for line in chosen][::-1]
        named = {"last_log" if i == 0 else f"log_before_{i}": line for i, line in enumerate(lines)}
        items = list(out.items())
        out = dict([*items[:2], *named.items(), *items[2:]][:8])
    return out


def build_brief(
    alerts: Iterable[Alert], sample: MetricsSample | None, actions: Iterable[ActionInfo]
) -> tuple[IncidentBrief, IdMap]:
    """The brief for these alerts, and the map from its ids back to real targets."""
    idmap = IdMap()
    findings: list[BriefFinding] = []
    process_keys: dict[tuple[int, float], str] = {}
    briefs_p: list[BriefProcess] = []
    briefs_s: list[BriefService] = []
    briefs_d: list[BriefPath] = []

    def add_process(
        pid: int, create_time: float, name: str, cpu: float, rss: float, age: float
    ) -> None:
        key = (pid, create_time)
        if key in process_keys or len(briefs_p) >= _MAX_PROCS:
            return
        pid_id = f"P{len(briefs_p) + 1}"
        process_keys[key] = pid_id
        idmap.processes[pid_id] = {"pid": pid, "create_time": create_time, "name": name}
        briefs_p.append(
            BriefProcess(
                id=pid_id,
                label=name,
                cpu_percent=max(cpu, 0.0),
                rss_mb=max(rss, 0.0),
                age_s=max(age, 0.0),
            )
        )

    ages: dict[int, float] = {}
    if sample is not None and sample.processes is not None:
        for proc in [*sample.processes.top_cpu, *sample.processes.top_memory]:
            ages[proc.pid] = proc.age_seconds
    ordered = sorted(alerts, key=lambda a: (a.severity != Severity.CRITICAL, a.started_at))
    for index, alert in enumerate(ordered[:12], start=1):
        fid = f"E{index}"
        idmap.findings[fid] = alert
        findings.append(
            BriefFinding(
                id=fid,
                severity=alert.severity.value,
                subject=alert.rule.replace("_", " "),
                summary=alert.summary,
                evidence=_evidence(alert),
            )
        )
        if alert.subject.startswith("service:"):
            name = alert.subject.split(":", 1)[1]
            if name not in idmap.services.values():
                sid = f"S{len(briefs_s) + 1}"
                idmap.services[sid] = name
                briefs_s.append(
                    BriefService(id=sid, label=name, state=str(alert.evidence.get("state", "?")))
                )
        for suggestion in alert.suggested_actions:
            if (
                suggestion.target_kind == "path"
                and suggestion.target
                and suggestion.target not in idmap.paths.values()
            ):
                did = f"D{len(briefs_d) + 1}"
                idmap.paths[did] = suggestion.target
                briefs_d.append(BriefPath(id=did, label=suggestion.target))
        for ref in [alert.evidence.get("process"), *(alert.evidence.get("top_processes") or [])]:
            if isinstance(ref, dict) and "pid" in ref:
                add_process(
                    int(ref["pid"]),
                    float(ref.get("create_time", 0.0)),
                    str(ref.get("name", "?")),
                    float(ref.get("cpu_percent", 0.0)),
                    float(ref.get("rss_mb", 0.0)),
                    0.0,
                )
    host: dict[str, float] = {}
    if sample is not None:
        flat = sample.flat()
        for key, name in (
            ("cpu.percent", "cpu_percent"),
            ("memory.percent", "mem_percent"),
            ("swap.percent", "swap_percent"),
            ("load.1m_per_core", "load_per_core"),
            ("procs.zombie", "zombies"),
            ("procs.total", "processes"),
        ):
            if key in flat:
                host[name] = round(flat[key], 2)
        if sample.processes is not None:
            for proc in [*sample.processes.top_cpu[:3], *sample.processes.top_memory[:3]]:
                add_process(
                    proc.pid,
                    proc.create_time,
                    proc.name,
                    proc.cpu_percent or 0.0,
                    proc.rss_bytes / _MB,
                    proc.age_seconds,
                )
    brief = IncidentBrief(
        host=host,
        findings=findings,
        processes=briefs_p,
        services=briefs_s,
        paths=briefs_d,
        actions=[
            BriefAction(
                name=a.name, description=a.description, target_kind=a.target_kind, risk=a.risk
            )
            for a in offerable(actions)
        ],
    )
    return brief, idmap


def offerable(actions: Iterable[ActionInfo], denied: Iterable[str] = ()) -> list[ActionInfo]:
    """The actions a model may choose from: not denied, and needing no parameter it cannot
    give (the schema has targets, not free parameters; ``run_script`` needs a script name)."""
    no = set(denied)
    return [a for a in actions if a.name not in no and not any(p.required for p in a.params)]


def map_back(
    reply: AnalysisReply, idmap: IdMap, model: str
) -> tuple[list[SuggestedAction], list[str]]:
    """Recommendations with real targets, and the reasons any were dropped here."""
    out: list[SuggestedAction] = []
    dropped: list[str] = []
    for rec in reply.recommended_actions:
        target: str | None = None
        params: dict[str, Any] = {}
        if rec.target_kind == "process":
            ref = idmap.processes.get(rec.target_id)
            if ref is None:
                dropped.append(f"{rec.action}: unknown process id {rec.target_id}")
                continue
            target = str(ref["pid"])
            params = {"create_time": ref["create_time"], "name": ref["name"]}
        elif rec.target_kind == "service":
            target = idmap.services.get(rec.target_id)
        elif rec.target_kind == "path":
            target = idmap.paths.get(rec.target_id)
        if rec.target_kind != "none" and target is None:
            dropped.append(f"{rec.action}: unknown target id {rec.target_id}")
            continue
        out.append(
            SuggestedAction(
                action=rec.action,
                target=target,
                target_kind=rec.target_kind,
                params=params,
                reason=rec.reason[:200],
                source=model,
                confidence=rec.confidence,
            )
        )
    return out, dropped


def findings_key(alerts: Iterable[Alert]) -> str:
    """What the cache is keyed on: the alerts' identities and severities, not their numbers."""
    parts = sorted(f"{a.fingerprint}:{a.severity.value}" for a in alerts)
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


class AdviceGate:
    """Rate limits for LLM calls, so the model is asked about incidents, never every tick.

    Bounded: the calls of the last hour (at most ``hourly_budget``), ``cache_size`` answers,
    and the last call per fingerprint only while it still holds one back (its cooldown, or
    an hour, whichever is longer): fingerprints of alerts long gone are forgotten.
    """

    def __init__(
        self,
        *,
        cooldown: float,
        hourly_budget: int,
        cache_size: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cooldown = cooldown
        self.hourly_budget = hourly_budget
        self._clock = clock
        self._last: dict[str, float] = {}
        self._calls: deque[float] = deque()
        self._cache: dict[str, AnalysisResult] = {}
        self._cache_order: deque[str] = deque()
        self._cache_size = cache_size
        self.in_flight = False
        self.calls = 0
        self.skipped: dict[str, int] = {"cooldown": 0, "budget": 0, "in_flight": 0}

    def cache_key(self, model: str, alerts: Iterable[Alert]) -> str:
        return f"{model}|{PROMPT_VERSION}|{findings_key(alerts)}"

    def cached(self, key: str) -> AnalysisResult | None:
        return self._cache.get(key)

    def remember(self, key: str, result: AnalysisResult) -> None:
        if key not in self._cache:
            self._cache_order.append(key)
            if len(self._cache_order) > self._cache_size:
                self._cache.pop(self._cache_order.popleft(), None)
        self._cache[key] = result

    def may_call(self, fingerprints: Iterable[str], *, forced: bool = False) -> str | None:
        """None when a call may go out now, else the reason it may not."""
        now = self._clock()
        while self._calls and self._calls[0] < now - 3600:
            self._calls.popleft()
        if self.in_flight:
            reason = "in_flight"
        elif len(self._calls) >= self.hourly_budget:
            reason = "budget"
        elif not forced and all(
            now - self._last.get(fp, -1e18) < self.cooldown for fp in fingerprints
        ):
            reason = "cooldown"
        else:
            return None
        self.skipped[reason] += 1
        return reason

    def record_call(self, fingerprints: Iterable[str]) -> None:
        now = self._clock()
        self._calls.append(now)
        self.calls += 1
        horizon = max(self.cooldown, _HOUR)
        for fp in [fp for fp, at in self._last.items() if now - at >= horizon]:
            del self._last[fp]  # its cooldown is over: the same as never asked
        for fp in fingerprints:
            self._last[fp] = now

    @property
    def remembered(self) -> int:
        """How many fingerprints' last calls are kept (for their cooldowns)."""
        return len(self._last)

    def calls_last_hour(self) -> int:
        now = self._clock()
        return sum(1 for t in self._calls if t >= now - 3600)


async def consult(
    advisor: Any,
    gate: AdviceGate,
    alerts: list[Alert],
    sample: MetricsSample | None,
    actions: Iterable[ActionInfo],
    *,
    trigger: Literal["alert", "analyze_now"],
    now: float,
    rules_verdict: str | Callable[[], str],
    rules_summary: str | Callable[[], str],
    triggers: list[str] | None = None,
) -> tuple[AnalysisResult, bool]:
    """Ask ``advisor`` about ``alerts``; the analysis, and whether the model's answer was used.

    ``triggers`` are the fingerprints that prompted the call (new or changed alerts); only
    they enter their cooldown. The other firing alerts go along as context.

    The caller has already checked ``gate.may_call``. A cached answer for the same findings
    is reused without a call. When the model fails (down, slow, garbage), the analysis falls
    back to the rules' verdict and suggestions and says why in ``fallback_reason``.

    The model never lowers what the rules found: the analysis's ``verdict`` is the worse
    of ``rules_verdict`` and the model's, whose own word is kept in ``model_verdict``
    (``AnalysisResult.disagreement()`` says so in one line when they differ). Pass
    ``rules_verdict`` and ``rules_summary`` as callables to have them read when the answer
    is in (a CPU model takes many seconds, during which the rules may find worse).
    """

    def now_rules() -> tuple[str, str]:
        verdict = rules_verdict() if callable(rules_verdict) else rules_verdict
        summary = rules_summary() if callable(rules_summary) else rules_summary
        return verdict, summary

    key = gate.cache_key(advisor.model, alerts)
    # A person asking "analyze now" wants a fresh answer, not the cached one.
    hit = gate.cached(key) if trigger == "alert" else None
    if hit is not None:
        # The rules may have moved since: the verdict is recomputed against today's.
        opinion = hit.model_verdict or hit.verdict
        verdict, summary = now_rules()
        update = {
            "cached": True,
            "at": now,
            "trigger": trigger,
            "verdict": worse_verdict(verdict, opinion),
            "rules_verdict": verdict,
            "rules_summary": summary,
        }
        return hit.model_copy(update=update), True
    brief, idmap = build_brief(alerts, sample, actions)
    fingerprints = triggers if triggers is not None else [a.fingerprint for a in alerts]
    gate.record_call(fingerprints)
    gate.in_flight = True
    try:
        outcome = await advisor.analyze(brief)
    finally:
        gate.in_flight = False
    verdict, summary = now_rules()
    base: dict[str, Any] = {
        "at": now,
        "trigger": trigger,
        "alert_ids": [a.id for a in alerts],
        "fingerprints": fingerprints,
        "latency_s": outcome.latency_s,
        "prompt_chars": outcome.prompt_chars,
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "tokens_per_s": outcome.tokens_per_s,
        "rules_verdict": verdict,
        "rules_summary": summary,
    }
    if not outcome.ok or outcome.reply is None:
        rules_actions = [s for a in alerts for s in a.suggested_actions]
        result = AnalysisResult(
            source="rules",
            verdict=verdict,
            summary=summary,
            recommended=rules_actions,
            fallback_reason=outcome.error or "llm: failed",
            **base,
        )
        return result, False
    reply = outcome.reply
    recommended, dropped = map_back(reply, idmap, outcome.source)
    explanations = {
        idmap.findings[note.id].id: note.explanation
        for note in reply.findings
        if note.id in idmap.findings
    }
    result = AnalysisResult(
        source=outcome.source,
        verdict=worse_verdict(verdict, reply.verdict),
        model_verdict=reply.verdict,
        summary=reply.summary,
        explanations=explanations,
        recommended=recommended,
        dropped=[*reply.dropped, *dropped],
        **base,
    )
    gate.remember(key, result)
    return result, True
