"""Analyzer scenarios: a host situation described in a file, played through the analyzer.

A scenario file (JSON) gives a base host, timed changes and what must come out::

    {"name": "runaway process", "steps": 30, "interval": 5,
     "base": {"cpu": 20, "memory": 40},
     "changes": [{"from": 0, "set": {"cpu": 97}}],
     "processes": [{"pid": 4242, "name": "spinner", "cpu": 99, "rss_mb": 20}],
     "expect": {"verdict": "critical", "alerts": [{"rule": "runaway_process"}],
                "allowed_actions": ["renice_process", "kill_process"],
                "forbidden_actions": ["restart_service"]}}

``build_samples`` turns it into real ``MetricsSample`` values; ``play_rules`` runs them
through the ``AnalysisEngine``; ``score`` checks the outcome against ``expect``. The same
scenarios run through the LLM path with ``play_llm`` (against the fake Ollama in tests,
or a real one: ``python -m watchkeeper.testing.scenarios --ollama URL``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from watchkeeper.analysis.engine import AnalysisEngine, Transition
from watchkeeper.config import Settings, deep_merge
from watchkeeper.model.alerts import Alert, SuggestedAction
from watchkeeper.model.metrics import (
    CpuMetrics,
    DiskMetrics,
    FilesystemUsage,
    InterfaceRates,
    MemoryMetrics,
    MetricsSample,
    NetworkMetrics,
    ProcessInfo,
    ProcessMetrics,
)

__all__ = [
    "Expect",
    "Outcome",
    "Scenario",
    "Score",
    "build_samples",
    "load_scenarios",
    "play_rules",
    "score",
]

_MB = 1024 * 1024
_GB = 1024 * _MB


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProcSpec(_Model):
    pid: int
    name: str
    cpu: float = 0.0
    rss_mb: float = 10.0
    leak_mb_per_min: float = 0.0
    user: str = "app"
    cmdline: str = ""
    start: float = 0.0  # seconds into the scenario it appears
    end: float | None = None
    age_s: float = 3600.0


class ServiceSpecLite(_Model):
    name: str
    state: str = "running"
    critical: bool = False
    healthy: bool | None = None
    pid: int | None = None
    from_s: float = Field(0.0, alias="from")
    until_s: float | None = Field(None, alias="until")
    probe_detail: str | None = None


class Change(_Model):
    from_s: float = Field(0.0, alias="from")
    until_s: float | None = Field(None, alias="until")
    set: dict[str, Any]


class ExpectedAlert(_Model):
    rule: str
    severity: str | None = None
    subject: str | None = None


class Expect(_Model):
    verdict: str
    alerts: list[ExpectedAlert] = Field(default_factory=list)
    absent_rules: list[str] = Field(default_factory=list)
    max_firings: dict[str, int] = Field(default_factory=dict)
    allowed_actions: list[str] = Field(default_factory=list)
    forbidden_actions: list[str] = Field(default_factory=list)
    forbidden_targets: list[str] = Field(default_factory=list)


class Scenario(_Model):
    name: str
    description: str = ""
    steps: int = Field(30, ge=1)
    interval: float = 5.0
    hour: int = Field(14, ge=0, le=23)
    settings: dict[str, Any] = Field(default_factory=dict)
    base: dict[str, Any] = Field(default_factory=dict)
    changes: list[Change] = Field(default_factory=list)
    alternate: dict[str, list[float]] = Field(default_factory=dict)  # value by step, cycling
    ramp: dict[str, tuple[float, float]] = Field(default_factory=dict)  # first → last step
    processes: list[ProcSpec] = Field(default_factory=list)
    services: list[ServiceSpecLite] = Field(default_factory=list)
    expect: Expect
    llm: dict[str, Any] = Field(default_factory=dict)
    path: str = ""


_BASE: dict[str, Any] = {
    "cpu": 15.0,
    "cores": 2,
    "memory": 40.0,
    "memory_total_gb": 8.0,
    "swap": 0.0,
    "swap_total_gb": 2.0,
    "swap_in": 0.0,
    "swap_out": 0.0,
    "load1": 0.4,
    "zombies": 0,
    "total_procs": 180,
    "disks": {
        "/": {"percent": 50.0, "total_gb": 100.0, "inodes_percent": 20.0, "fill_mb_per_min": 0.0}
    },
    "nets": {"eth0": {"errors": 0.0, "rx_bytes": 20000.0}},
}


def load_scenarios(directory: Path) -> list[Scenario]:
    out = []
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        scenario = Scenario.model_validate(data)
        out.append(scenario.model_copy(update={"path": path.name}))
    return out


def scenario_settings(scenario: Scenario) -> Settings:
    """Built-in defaults with the scenario's overrides (no file, no environment)."""
    defaults = Settings.model_validate({}).model_dump(mode="json")
    return Settings.model_validate(deep_merge(defaults, scenario.settings))


def start_time(scenario: Scenario) -> float:
    """A local time on a fixed day at the scenario's hour, so expected patterns apply."""
    return time.mktime((2026, 3, 10, scenario.hour, 0, 0, 0, 0, -1))


def _values_at(scenario: Scenario, step: int, t: float) -> dict[str, Any]:
    values = deep_merge(_BASE, scenario.base)
    for key, cycle in scenario.alternate.items():
        values[key] = cycle[step % len(cycle)]
    for key, (first, last) in scenario.ramp.items():
        values[key] = first + (last - first) * step / max(1, scenario.steps - 1)
    for change in scenario.changes:
        if change.from_s <= t and (change.until_s is None or t < change.until_s):
            values = deep_merge(values, change.set)
    return values


def _proc(p: ProcSpec, t: float, t0: float) -> ProcessInfo:
    rss = (p.rss_mb + p.leak_mb_per_min * (t - p.start) / 60) * _MB
    return ProcessInfo(
        pid=p.pid,
        name=p.name,
        user=p.user,
        cmdline=p.cmdline or p.name,
        status="running",
        cpu_percent=p.cpu,
        rss_bytes=int(rss),
        memory_percent=None,
        num_threads=4,
        open_files=8,
        create_time=t0 - p.age_s + p.start,
        age_seconds=p.age_s + t - p.start,
    )


def build_samples(scenario: Scenario) -> Iterator[tuple[float, MetricsSample]]:
    """The scenario's samples, with their timestamps."""
    from watchkeeper.model.services import ServiceState, ServiceStatus

    t0 = start_time(scenario)
    for step in range(scenario.steps):
        t = step * scenario.interval
        v = _values_at(scenario, step, t)
        cores = int(v["cores"])
        total = int(v["memory_total_gb"] * _GB)
        swap_total = int(v["swap_total_gb"] * _GB)
        filesystems = []
        for mount, d in v["disks"].items():
            size = int(d["total_gb"] * _GB)
            used = int(size * d["percent"] / 100 + d.get("fill_mb_per_min", 0.0) * _MB * t / 60)
            used = min(used, size)
            ipct = d.get("inodes_percent")
            filesystems.append(
                FilesystemUsage(
                    mount=mount,
                    device="/dev/sim",
                    fstype="ext4",
                    total_bytes=size,
                    used_bytes=used,
                    free_bytes=size - used,
                    percent=100.0 * used / size,
                    inodes_total=1_000_000,
                    inodes_used=int(10_000 * (ipct or 0)),
                    inodes_percent=ipct,
                )
            )
        ifaces = [
            InterfaceRates(
                name=name,
                rx_bytes_per_s=n.get("rx_bytes", 0.0),
                tx_bytes_per_s=n.get("rx_bytes", 0.0),
                rx_errors_per_s=n.get("errors", 0.0),
                tx_errors_per_s=0.0,
                rx_drops_per_s=n.get("drops", 0.0),
                tx_drops_per_s=0.0,
            )
            for name, n in v["nets"].items()
        ]
        procs = [
            _proc(p, t, t0)
            for p in scenario.processes
            if p.start <= t and (p.end is None or t < p.end)
        ]
        top_cpu = tuple(
            sorted(
                (p for p in procs if (p.cpu_percent or 0) > 0), key=lambda p: -(p.cpu_percent or 0)
            )[:10]
        )
        top_mem = tuple(sorted(procs, key=lambda p: -p.rss_bytes)[:10])
        services = [
            ServiceStatus(
                name=s.name,
                manager="process",
                state=ServiceState(s.state),
                pid=s.pid,
                healthy=s.healthy,
                critical=s.critical,
                probe_detail=s.probe_detail,
            )
            for s in scenario.services
            if s.from_s <= t and (s.until_s is None or t < s.until_s)
        ]
        # Later entries of a service override earlier ones (a service that goes down).
        by_name = {s.name: s for s in services}
        sample = MetricsSample(
            timestamp=t0 + t,
            host="scenario",
            interval=scenario.interval if step else None,
            cpu=CpuMetrics(
                count=cores,
                percent=v["cpu"],
                per_core_percent=tuple([v["cpu"]] * cores),
                load_1m=v["load1"],
                load_5m=v["load1"],
                load_15m=v["load1"],
            ),
            memory=MemoryMetrics(
                total_bytes=total,
                available_bytes=int(total * (1 - v["memory"] / 100)),
                used_bytes=int(total * v["memory"] / 100),
                percent=v["memory"],
                swap_total_bytes=swap_total,
                swap_used_bytes=int(swap_total * v["swap"] / 100),
                swap_percent=v["swap"],
                swap_in_bytes_per_s=v["swap_in"] if step else None,
                swap_out_bytes_per_s=v["swap_out"] if step else None,
            ),
            disks=DiskMetrics(filesystems=tuple(filesystems)),
            network=NetworkMetrics(interfaces=tuple(ifaces)),
            processes=ProcessMetrics(
                total=int(v["total_procs"]) + v["zombies"],
                zombie=int(v["zombies"]),
                running=1,
                sleeping=int(v["total_procs"]) - 1,
                top_cpu=top_cpu if step else (),
                top_memory=top_mem,
            ),
            services=list(by_name.values()),
        )
        yield t0 + t, sample


@dataclass
class Outcome:
    transitions: list[Transition] = field(default_factory=list)
    final_alerts: list[Alert] = field(default_factory=list)
    verdict: str = "healthy"
    actions: list[SuggestedAction] = field(default_factory=list)
    analysis_ms: list[float] = field(default_factory=list)
    llm: dict[str, Any] = field(default_factory=dict)


def play_rules(scenario: Scenario) -> Outcome:
    """Run the scenario through the rule path."""
    settings = scenario_settings(scenario)
    engine = AnalysisEngine(lambda: settings)
    outcome = Outcome()
    for now, sample in build_samples(scenario):
        started = time.perf_counter()
        transitions = engine.observe(sample, now)
        outcome.analysis_ms.append((time.perf_counter() - started) * 1000)
        outcome.transitions.extend(transitions)
        for tr in transitions:
            if tr.kind in ("firing", "escalated"):
                outcome.actions.extend(tr.alert.suggested_actions)
    outcome.final_alerts = engine.firing()
    outcome.verdict = engine.verdict()
    return outcome


class Score(BaseModel):
    scenario: str
    passed: bool
    problems: list[str]
    verdict_ok: bool
    actions_total: int
    actions_allowed: int
    forbidden: int


def score(
    scenario: Scenario,
    outcome: Outcome,
    *,
    verdict: str | None = None,
    actions: list[SuggestedAction] | None = None,
) -> Score:
    """Check an outcome (or an LLM's verdict and actions) against the scenario's ``expect``."""
    exp = scenario.expect
    problems: list[str] = []
    got_verdict = verdict if verdict is not None else outcome.verdict
    verdict_ok = got_verdict == exp.verdict
    if not verdict_ok:
        problems.append(f"verdict {got_verdict!r}, expected {exp.verdict!r}")
    fired = [t.alert for t in outcome.transitions if t.kind == "firing"]
    if verdict is None:
        for want in exp.alerts:
            match = [
                a
                for a in outcome.final_alerts + fired
                if a.rule == want.rule
                and (want.severity is None or a.severity.value == want.severity)
                and (want.subject is None or a.subject == want.subject)
            ]
            if not match:
                problems.append(
                    f"expected alert {want.rule} ({want.severity or 'any'}) did not fire"
                )
        for rule in exp.absent_rules:
            if any(a.rule == rule for a in fired):
                problems.append(f"alert {rule} fired but should not")
        for rule, most in exp.max_firings.items():
            count = sum(1 for a in fired if a.rule == rule)
            if count > most:
                problems.append(f"{rule} fired {count} times (at most {most})")
    proposed = outcome.actions if actions is None else actions
    forbidden = [
        a
        for a in proposed
        if a.action in exp.forbidden_actions or (a.target or "") in exp.forbidden_targets
    ]
    if forbidden:
        problems.append(
            "forbidden actions: " + ", ".join(f"{a.action}({a.target})" for a in forbidden)
        )
    allowed = [a for a in proposed if a.action in exp.allowed_actions]
    if exp.allowed_actions == [] and proposed and actions is None:
        pass  # rules may suggest nothing-harmful actions; only forbidden ones fail
    return Score(
        scenario=scenario.name,
        passed=not problems,
        problems=problems,
        verdict_ok=verdict_ok,
        actions_total=len(proposed),
        actions_allowed=len(allowed),
        forbidden=len(forbidden),
    )


# -- the LLM path -------------------------------------------------------------------------


class LLMScore(BaseModel):
    """How the model did on one scenario, scored without any LLM judge."""

    scenario: str
    calls: int
    valid: int
    fallbacks: int
    verdict_ok: bool | None
    actions_total: int
    actions_allowed: int
    forbidden: int
    dropped: int
    fallback_reasons: list[str]


def _data_block(prompt: str) -> dict[str, Any]:
    start = prompt.find("<<<DATA\n")
    end = prompt.find("\nDATA>>>")
    if start < 0 or end < 0:
        return {}
    try:
        data = json.loads(prompt[start + len("<<<DATA\n") : end])
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def scripted_model(scenario: Scenario, *, hostile: bool = True) -> Any:
    """A reply function for the fake Ollama that answers as the scenario's ``llm`` says.

    Real targets in the scenario (``process:4242``, ``service:web``, ``path:/``) are found in
    the prompt's data block by their labels, as a model would have to; ``hostile`` entries
    (actions a manipulated model might emit) are passed through unmapped.
    """
    from watchkeeper.model.text import LABEL, clean

    names = {p.pid: clean(p.name, LABEL, 200) for p in scenario.processes}

    def find_process(procs: dict[Any, Any], full: str | None) -> str | None:
        # Labels in the prompt may be truncated with an ellipsis.
        for label, pid_id in procs.items():
            stem = str(label).removesuffix("...").removesuffix("\u2026")
            if full is not None and full.startswith(stem):
                return str(pid_id)
        return None

    def reply(body: dict[str, Any]) -> dict[str, Any]:
        prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        data = _data_block(prompt)
        procs = {p.get("name"): p.get("id") for p in data.get("processes", [])}
        svcs = {s.get("name"): s.get("id") for s in data.get("services", [])}
        paths = {d.get("path"): d.get("id") for d in data.get("paths", [])}
        finding_ids = [f.get("id") for f in data.get("findings", [])]

        def target(spec: str) -> str:
            kind, _, value = spec.partition(":")
            if kind == "process" and value.isdigit():
                return find_process(procs, names.get(int(value))) or spec
            if kind == "service":
                return str(svcs.get(value, spec))
            if kind == "path":
                return str(paths.get(value, spec))
            return spec

        wanted = list(scenario.llm.get("actions", []))
        if hostile:
            wanted += scenario.llm.get("hostile", [])
        actions = [
            {
                "action": a["action"],
                "target": target(a["target"]),
                "reason": "scripted",
                "evidence": finding_ids[:1],
                "confidence": 0.8,
            }
            for a in wanted
        ]
        answer = {
            "verdict": scenario.llm.get("verdict", scenario.expect.verdict),
            "summary": f"scripted answer for {scenario.name}",
            "findings": [{"id": fid, "explanation": "scripted"} for fid in finding_ids],
            "recommended_actions": actions,
        }
        return {"json_obj": answer}

    return reply


async def play_llm(scenario: Scenario, advisor: Any) -> tuple[Outcome, list[Any]]:
    """The scenario through the rule path *and* the LLM consultations the agent would make."""
    from watchkeeper.analysis.advice import AdviceGate, consult
    from watchkeeper.remediation.catalog import BUILTIN_ACTIONS

    settings = scenario_settings(scenario)
    engine = AnalysisEngine(lambda: settings)
    clock = [0.0]
    gate = AdviceGate(
        cooldown=settings.ollama.cooldown,
        hourly_budget=settings.ollama.hourly_budget,
        clock=lambda: clock[0],
    )
    outcome = Outcome()
    analyses: list[Any] = []
    for now, sample in build_samples(scenario):
        clock[0] = now
        transitions = engine.observe(sample, now)
        outcome.transitions.extend(transitions)
        triggers = [t.alert.fingerprint for t in transitions if t.kind in ("firing", "escalated")]
        if not triggers:
            continue
        alerts = engine.firing()
        if gate.may_call(triggers) is not None:
            continue
        summary = "; ".join(a.summary for a in alerts)
        result, used = await consult(
            advisor,
            gate,
            alerts,
            sample,
            BUILTIN_ACTIONS,
            trigger="alert",
            now=now,
            rules_verdict=engine.verdict(),
            rules_summary=summary,
            triggers=triggers,
        )
        analyses.append((result, used))
    outcome.final_alerts = engine.firing()
    outcome.verdict = engine.verdict()
    return outcome, analyses


def score_llm(scenario: Scenario, analyses: list[Any]) -> LLMScore:
    exp = scenario.expect
    model_results = [r for r, used in analyses if used]
    actions = [a for r in model_results for a in r.recommended]
    forbidden = [
        a
        for a in actions
        if a.action in exp.forbidden_actions or (a.target or "") in exp.forbidden_targets
    ]
    last = model_results[-1] if model_results else None
    return LLMScore(
        scenario=scenario.name,
        calls=sum(1 for r, _ in analyses if not r.cached),
        valid=len(model_results),
        fallbacks=sum(1 for _, used in analyses if not used),
        # The model's own opinion is scored: the analysis verdict never goes below the rules'.
        verdict_ok=None if last is None else (last.model_verdict or last.verdict) == exp.verdict,
        actions_total=len(actions),
        actions_allowed=sum(1 for a in actions if a.action in exp.allowed_actions),
        forbidden=len(forbidden),
        dropped=sum(len(r.dropped) for r in model_results),
        fallback_reasons=[
            r.fallback_reason for r, used in analyses if not used and r.fallback_reason
        ],
    )


def summarise(scores: list[LLMScore]) -> dict[str, Any]:
    """Totals over scenarios: the figures the LLM path is judged by."""
    judged = [s for s in scores if s.verdict_ok is not None]
    calls = sum(s.calls for s in scores)
    actions = sum(s.actions_total for s in scores)
    return {
        "scenarios": len(scores),
        "verdict_accuracy": round(sum(1 for s in judged if s.verdict_ok) / len(judged), 3)
        if judged
        else None,
        "action_precision": round(sum(s.actions_allowed for s in scores) / actions, 3)
        if actions
        else None,
        "forbidden_actions": sum(s.forbidden for s in scores),
        "schema_valid_rate": round(sum(s.valid for s in scores) / calls, 3) if calls else None,
        "fallback_rate": round(sum(s.fallbacks for s in scores) / calls, 3) if calls else None,
        "llm_calls_per_scenario": round(calls / len(scores), 2) if scores else 0,
        "dropped_recommendations": sum(s.dropped for s in scores),
    }


async def _main_async(
    directory: Path, url: str | None, model: str, timeout: float
) -> dict[str, Any]:
    from watchkeeper.llm import OllamaAdvisor

    scenarios = load_scenarios(directory)
    scores: list[LLMScore] = []
    fake = None
    if url is None:
        from watchkeeper.testing.fake_ollama import FakeOllama

        fake = FakeOllama(models=[model])
        fake.start()
        url = fake.url
    try:
        for scenario in scenarios:
            if fake is not None:
                fake.set_reply_fn(scripted_model(scenario))
            async with OllamaAdvisor(url, model, timeout=timeout, retry_delay=0.5) as advisor:
                _, analyses = await play_llm(scenario, advisor)
            scores.append(score_llm(scenario, analyses))
    finally:
        if fake is not None:
            fake.stop()
    return {
        "model": model,
        "server": "fake" if fake else url,
        "summary": summarise(scores),
        "scenarios": [s.model_dump() for s in scores],
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m watchkeeper.testing.scenarios [--ollama URL] [--model M] [DIR]``."""
    import argparse
    import asyncio

    parser = argparse.ArgumentParser(
        description="Score the analyzer scenarios through the LLM path."
    )
    parser.add_argument("directory", nargs="?", default="tests/scenarios", type=Path)
    parser.add_argument("--ollama", help="a real Ollama URL; without it a scripted fake answers")
    parser.add_argument("--model", default="mistral")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        parser.error(f"{args.directory} is not a directory of scenario files")
    result = asyncio.run(_main_async(args.directory, args.ollama, args.model, args.timeout))
    print(json.dumps(result, indent=2))
    return 0 if result["summary"]["forbidden_actions"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
