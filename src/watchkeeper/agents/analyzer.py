"""AnalyzerAgent: the brain.

Every ``metrics.sample`` goes through the rule path (thresholds with hysteresis, trends,
baselines, expected patterns): cheap, deterministic, always on. Alert transitions go out
at once as ``alert.firing`` / ``alert.resolved`` / ``alert.escalated``, with the rules'
own ``analysis.result``. Service exits are analysed the moment they are heard, not at
the next tick.

Correlated alerts are one incident (``AnalysisEngine.take_incident_changes``), published on
``incident.opened`` / ``incident.updated`` / ``incident.resolved``; an update goes out only
when the incident's members, severity, root, flapping or remediation notes change. The
rules' ``analysis.result`` names its incident and carries its remedies, root-first.
``remediation.gave_up`` and a lifted give-up are put on the service's incident.

When an incident opens or its severity rises, or on ``analyze_now``, the local LLM is
asked about it once (its alerts go along), within the limits of ``AdviceGate``. Its answer
is validated and published as another ``analysis.result`` whose ``source`` is the model's
name and whose ``incident_id`` names the incident. When Ollama is away, analysis carries
on with the rules and ``llm_status`` says why; a cheap probe brings the model back by itself.

A central analyzer (``[fleet] role = "central"``) also analyses every host of the fleet
that runs no analyzer of its own (it learns which from their heartbeats): one analysis
state per host (:mod:`watchkeeper.agents._hosts`), and what it finds is published about
that host (``host=<id>``), so that host's remediator acts on it through its own policy
gate. The model is asked about each host's incidents as about this host's, the host named.
Built with ``llm=False`` it analyses with the rules only (a leaf's fallback analyzer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Mapping
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from watchkeeper.agents._hosts import MAX_HOSTS, HostAnalyses, HostAnalysis
from watchkeeper.agents.base import AgentContext, BaseAgent, CommandError
from watchkeeper.analysis.advice import AdviceGate, consult
from watchkeeper.analysis.engine import AnalysisEngine, Transition, verdict_of
from watchkeeper.analysis.external import AlertmanagerPayload, local_names
from watchkeeper.analysis.rules import RuleRegistry
from watchkeeper.bus import Message
from watchkeeper.model.actions import ActionInfo
from watchkeeper.model.alerts import SEVERITY_RANK, Alert, AlertState, SuggestedAction
from watchkeeper.model.analysis import AnalysisResult
from watchkeeper.model.events import Escalation, GaveUp, LlmStatus
from watchkeeper.model.fleet import HostBeat
from watchkeeper.model.incidents import Incident, IncidentState
from watchkeeper.model.metrics import MetricsSample
from watchkeeper.model.services import ServiceEvent
from watchkeeper.model.topics import (
    ALERT_RESOLVED,
    ALERT_TOPICS,
    ANALYSIS_LLM_STATUS,
    ANALYSIS_RESULT,
    FLEET_HEARTBEAT,
    INCIDENT_TOPICS,
    METRICS_SAMPLE,
    REMEDIATION_ESCALATED,
    REMEDIATION_GAVE_UP,
)
from watchkeeper.remediation.catalog import BUILTIN_ACTIONS

if TYPE_CHECKING:
    from watchkeeper.llm import OllamaAdvisor

__all__ = ["ActionCatalog", "AnalyzerAgent"]

log = logging.getLogger("watchkeeper.agent.analyzer")

_PROBE_EVERY_UP = 300.0
_BASELINE_SAVE_EVERY = 300.0
_LLM_WAITING_MAX = 16  # incidents waiting for the model while it answers another


class ActionCatalog(Protocol):
    """What the analyzer may read of the action registry: the declared actions it offers
    the LLM. The orchestrator passes its ``ActionRegistry``, so plugins' actions are
    offered too; the analyzer can read it, never change it."""

    def infos(self) -> list[ActionInfo]: ...


class _BuiltinCatalog:
    """The built-in actions only: for an analyzer built without the wiring (tests)."""

    def infos(self) -> list[ActionInfo]:
        return list(BUILTIN_ACTIONS)


class AnalyzerAgent(BaseAgent):
    """Turns samples into alerts and analyses.

    ``rules`` are the rules beyond the built-in checks and ``actions`` the actions the
    model may choose among; the orchestrator passes the registries it owns::

        AnalyzerAgent("analyzer", ctx, rules=registries.rules, actions=registries.actions)

    With ``[fleet] role = "central"`` it also analyses up to ``max_hosts`` other hosts
    (``status()["fleet"]`` counts them); ``llm=False`` keeps it to the rules (a leaf's
    fallback analyzer).
    """

    kind = "analyzer"
    extra_commands = ("analyze_now", "alertmanager")

    def __init__(
        self,
        name: str,
        ctx: AgentContext,
        *,
        rules: RuleRegistry | None = None,
        actions: ActionCatalog | None = None,
        storage: Any = None,
        interval: float | None = None,
        llm: bool = True,
        max_hosts: int = MAX_HOSTS,
    ) -> None:
        super().__init__(name, ctx, interval=interval)
        self._llm_allowed = llm
        self.engine = AnalysisEngine(ctx.settings, rules=rules)
        self._actions: ActionCatalog = actions if actions is not None else _BuiltinCatalog()
        self._storage = storage if storage is not None else ctx.storage
        self.latest_sample: MetricsSample | None = None
        self.latest_analysis: AnalysisResult | None = None
        self.latest_llm_analysis: AnalysisResult | None = None
        settings = ctx.settings()
        self.gate = AdviceGate(
            cooldown=settings.ollama.cooldown,
            hourly_budget=settings.ollama.hourly_budget,
            clock=ctx.monotonic,
        )
        self._advisor: OllamaAdvisor | None = None
        self._advisor_key: tuple[Any, ...] | None = None
        self.llm_status = "llm: not checked yet" if self._llm_wanted() else self._llm_off()
        self.llm_available = False
        self._next_probe = 0.0
        self._next_baseline_save = ctx.monotonic() + _BASELINE_SAVE_EVERY
        self._llm_task: asyncio.Task[Any] | None = None
        self.analysis_ms: float | None = None
        self.llm_calls = 0
        self.llm_fallbacks = 0
        # Incidents that wanted the model while it was busy: id -> (trigger key, host).
        self._llm_waiting: dict[str, tuple[str, str | None]] = {}
        self._incident_rank: dict[str, int] = {}  # open incident -> severity last announced
        self._here: frozenset[str] | None = None  # this machine's names, for Alertmanager
        # A central analyzer hears every host's messages (scope "fleet") and keeps one
        # analysis state per host it serves; its own host's go to self.engine as before.
        self.own_host = ctx.bus.host
        self.hosts: HostAnalyses | None = None
        scope = "local"
        if settings.fleet.role == "central":
            scope = "fleet"
            self.hosts = HostAnalyses(
                ctx.settings,
                own=self.own_host,
                rules=rules,
                data_dir=ctx.data_dir,
                max_hosts=max_hosts,
            )
            self.on(FLEET_HEARTBEAT.name, self._on_beat, maxsize=10_000, scope=scope)
        # A fleet's samples arrive spread over the interval; a queue of 2,000 holds a
        # second of 10,000 hosts at 5 s, and a central that falls behind drops the oldest.
        many = 1 if scope == "local" else 500
        self.on(METRICS_SAMPLE.name, self._on_sample, maxsize=4 * many, scope=scope)
        self.on("service.*", self._on_service_event, maxsize=200 * min(many, 50), scope=scope)
        # Remediation's one escalation: the pipeline has nothing left to try (not each failure).
        self.on(
            REMEDIATION_ESCALATED.name, self._on_remediation_escalated, maxsize=100, scope=scope
        )
        self.on(REMEDIATION_GAVE_UP.name, self._on_gave_up, maxsize=100, scope=scope)
        # A lifted give-up is the remediator's remediation_gave_up alert resolving.
        self.on(ALERT_RESOLVED.name, self._on_alert_resolved, maxsize=200, scope=scope)

    def _llm_wanted(self) -> bool:
        return self._llm_allowed and self.settings.ollama.enabled

    def _llm_off(self) -> str:
        return "llm: disabled" if self._llm_allowed else "llm: off (rules only)"

    # -- life ------------------------------------------------------------------------------
    async def setup(self) -> None:
        if self._storage is not None and not self.engine.baselines.all_day:
            with contextlib.suppress(Exception):
                state = await self._storage.load_baselines()
                if isinstance(state, dict) and "analyzer" in state:
                    self.engine.baselines.load_state(state["analyzer"])

    async def teardown(self) -> None:
        task = self._llm_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await self._save_baselines()
        if self.hosts is not None:
            await asyncio.to_thread(self.hosts.save_all)
        if self._advisor is not None:
            with contextlib.suppress(Exception):
                await self._advisor.aclose()
            self._advisor = None

    async def _perform_check(self) -> None:
        now_mono = self.ctx.monotonic()
        if self._llm_wanted() and now_mono >= self._next_probe:
            await self.probe_llm()
        elif not self._llm_wanted():
            self.llm_status, self.llm_available = self._llm_off(), False
        if self.hosts is not None:
            self.hosts.forget_silent(now_mono)
        if now_mono >= self._next_baseline_save:
            self._next_baseline_save = now_mono + _BASELINE_SAVE_EVERY
            await self._save_baselines()
            if self.hosts is not None:
                await asyncio.to_thread(self.hosts.save_all)

    async def _save_baselines(self) -> None:
        if self._storage is None or not self.engine.baselines.dirty:
            return
        try:
            await self._storage.save_baseline("analyzer", self.engine.baselines.to_state())
            self.engine.baselines.dirty = False
        except Exception as exc:
            log.warning("could not save baselines: %s", exc)

    # -- the LLM ---------------------------------------------------------------------------
    def advisor(self) -> OllamaAdvisor | None:
        o = self.settings.ollama
        if not o.enabled or not self._llm_allowed:
            return None
        from watchkeeper.llm import OllamaAdvisor

        key = OllamaAdvisor.settings_key(o)
        if self._advisor is None or key != self._advisor_key:
            old = self._advisor
            self._advisor = OllamaAdvisor.from_settings(o, clock=self.ctx.monotonic)
            self._advisor_key = key
            if old is not None:
                asyncio.get_running_loop().create_task(old.aclose())
        self.gate.cooldown = o.cooldown
        self.gate.hourly_budget = o.hourly_budget
        return self._advisor

    async def probe_llm(self) -> str:
        advisor = self.advisor()
        if advisor is None:
            self.llm_status, self.llm_available = self._llm_off(), False
            return self.llm_status
        health = await advisor.probe()
        was = None if self.llm_status.startswith("llm: not checked") else self.llm_available
        self.llm_available = health.ok
        self.llm_status = health.status_line
        self._next_probe = self.ctx.monotonic() + (
            _PROBE_EVERY_UP if health.ok else self.settings.ollama.probe_interval
        )
        if was != health.ok:
            if health.ok:
                log.info("%s", health.status_line)
            else:
                log.warning("%s; analysing with rules only until it answers", health.status_line)
            await self.publish(
                ANALYSIS_LLM_STATUS, LlmStatus(ok=health.ok, status=health.status_line)
            )
        return self.llm_status

    def _want_llm_for(self, incident: Incident, key: str, host: str | None = None) -> None:
        """Ask the model about ``incident`` once (``key`` names the occasion: opened, or a
        severity it rose to); while it answers another, the incident waits its turn.
        ``host`` is the remote host the incident is on (None: this one)."""
        if self.advisor() is None:
            return
        if self._llm_task is not None and not self._llm_task.done():
            self.gate.skipped["in_flight"] += 1
            if incident.id in self._llm_waiting or len(self._llm_waiting) < _LLM_WAITING_MAX:
                self._llm_waiting[incident.id] = (key, host)
            return
        engine = self._engine_of(host)
        alerts = self._alerts_of(incident, engine) if engine is not None else []
        if not alerts or self.gate.may_call([key]) is not None:
            return
        self._llm_task = asyncio.get_running_loop().create_task(
            self._ask_in_turn(alerts, [key], incident.id, host)
        )

    def _engine_of(self, host: str | None) -> AnalysisEngine | None:
        if host is None:
            return self.engine
        state = self.hosts.hosts.get(host) if self.hosts is not None else None
        return state.engine if state is not None else None

    def _alerts_of(self, incident: Incident, engine: AnalysisEngine | None = None) -> list[Alert]:
        alerts = (engine or self.engine).alerts
        return [alerts[fp] for fp in incident.fingerprints if fp in alerts]

    async def _ask_in_turn(
        self, alerts: list[Alert], triggers: list[str], incident: str, host: str | None
    ) -> None:
        await self.ask_llm(alerts, "alert", triggers, incident_id=incident, host=host)
        # The next incident that waited, if it is still open.
        while self._llm_waiting:
            iid, (key, on) = next(iter(self._llm_waiting.items()))
            del self._llm_waiting[iid]
            engine = self._engine_of(on)
            if engine is None:
                continue
            waiting = next((i for i in engine.incidents_open() if i.id == iid), None)
            if waiting is None or not (alerts := self._alerts_of(waiting, engine)):
                continue
            if self.gate.may_call([key]) is None:
                await self.ask_llm(alerts, "alert", [key], incident_id=iid, host=on)

    async def ask_llm(
        self,
        alerts: list[Alert],
        trigger: str,
        triggers: list[str] | None = None,
        *,
        incident_id: str | None = None,
        host: str | None = None,
    ) -> AnalysisResult | None:
        """Ask the model about ``alerts`` now (of ``incident_id``, when one; on the remote
        ``host``, when given); publishes and returns the analysis."""
        advisor = self.advisor()
        engine = self._engine_of(host)
        if advisor is None or engine is None:
            return None
        sample = self.latest_sample
        asked = alerts
        if host is not None and self.hosts is not None:
            state = self.hosts.hosts.get(host)
            sample = state.latest_sample if state is not None else None
            # The prompt names the host: one model serves the fleet.
            asked = [
                a.model_copy(update={"summary": f"on host {host}: {a.summary}"}) for a in alerts
            ]
        result, used = await consult(
            advisor,
            self.gate,
            asked,
            sample,
            self._actions.infos(),
            trigger="analyze_now" if trigger == "analyze_now" else "alert",
            now=self.ctx.clock(),
            # Read when the answer is in: the rules may find worse while the model writes.
            rules_verdict=engine.verdict,
            rules_summary=lambda: self._rules_summary(engine),
            triggers=triggers,
        )
        if incident_id is not None:
            # The gate keyed the call by incident; the result speaks of the alerts.
            result = result.model_copy(
                update={"incident_id": incident_id, "fingerprints": [a.fingerprint for a in alerts]}
            )
        if not result.cached:
            self.llm_calls += 1
        if used:
            self.llm_available = True
            if host is None:
                self.latest_llm_analysis = result
        else:
            self.llm_fallbacks += 1
            self.llm_status = result.fallback_reason or "llm: failed"
            self.llm_available = False
            self._next_probe = self.ctx.monotonic() + self.settings.ollama.probe_interval
        await self._publish_analysis(result, host)
        return result

    # -- handlers --------------------------------------------------------------------------
    def _route(self, message: Message) -> tuple[bool, HostAnalysis | None]:
        """Whether to analyse ``message``, and the remote host's state it belongs to (None:
        it is about this host). Messages about a host not analysed here are skipped."""
        about = message.host or self.own_host
        if self.hosts is None or about == self.own_host:
            return True, None
        state = self.hosts.get(about, self.ctx.monotonic())
        return state is not None, state

    async def _on_beat(self, message: Message) -> None:
        if self.hosts is not None and message.host == message.origin:
            self.hosts.learn(message.parse(HostBeat), self.ctx.monotonic())

    async def _on_sample(self, message: Message) -> None:
        wanted, remote = self._route(message)
        if not wanted:
            return
        sample = message.parse(MetricsSample)
        started = time.perf_counter()
        if remote is None:
            self.latest_sample = sample
            transitions = self.engine.observe(sample, sample.timestamp)
            self.analysis_ms = round((time.perf_counter() - started) * 1000, 3)
            await self._announce(transitions)
            return
        remote.latest_sample = sample
        remote.samples += 1
        await self._announce(remote.engine.observe(sample, sample.timestamp), remote)

    async def _on_service_event(self, message: Message) -> None:
        wanted, remote = self._route(message)
        if not wanted:
            return
        event = message.parse(ServiceEvent)
        kind, name = event.kind, event.name
        if remote is not None and remote.stale(event.at.timestamp()):
            return  # a replayed old event: that host's newer samples already say more
        if remote is not None:
            critical = remote.critical(name)
        else:
            critical = any(s.name == name and s.critical for s in self.settings.services)
        if kind == "exited":
            state, detail = "failed", event.detail or "exited"
        elif kind in ("started", "healthy"):
            state, detail = "running", ""
        else:
            return
        status = SimpleNamespace(
            name=name,
            state=state,
            critical=critical,
            detail=detail,
            healthy=None,
            probe_detail=None,
            last_exit_code=event.exit_code,
            last_exit_signal=event.exit_signal,
            journal=event.journal,
            restart_policy=event.restart_policy,
            start_limit_hit=event.start_limit_hit,
            restarts=event.restarts,
        )
        engine = remote.engine if remote is not None else self.engine
        transitions = engine.observe_service(status, self.ctx.clock())
        await self._announce(transitions, remote)

    async def _on_remediation_escalated(self, message: Message) -> None:
        """Remediation ran out of candidates: the alert it was for escalates, once."""
        wanted, remote = self._route(message)
        if not wanted:
            return
        escalation = message.parse(Escalation)
        engine = remote.engine if remote is not None else self.engine
        transition = engine.remediation_failed(
            escalation.alert_id, escalation.fingerprint, self.ctx.clock(), escalation.detail
        )
        if transition is not None:
            await self._announce([transition], remote)

    async def _on_gave_up(self, message: Message) -> None:
        """The remediator stopped trying a target: its incident says so."""
        wanted, remote = self._route(message)
        if not wanted:
            return
        gave_up = message.parse(GaveUp)
        engine = remote.engine if remote is not None else self.engine
        await self._announce(
            engine.remediation_gave_up(
                gave_up.target, gave_up.failures, gave_up.reason, self.ctx.clock()
            ),
            remote,
        )

    async def _on_alert_resolved(self, message: Message) -> None:
        alert = message.parse(Alert)
        if alert.rule != "remediation_gave_up" or alert.source != "remediator":
            return
        wanted, remote = self._route(message)
        if not wanted:
            return
        engine = remote.engine if remote is not None else self.engine
        target = alert.subject.removeprefix("service:")
        _, _, by = alert.summary.rpartition(" reset by ")
        transitions = engine.giveup_reset(target, by or "a person", self.ctx.clock())
        await self._announce(transitions, remote)

    async def _announce(
        self, transitions: list[Transition], remote: HostAnalysis | None = None
    ) -> None:
        """Publish what ``transitions`` changed: about this host, or about ``remote``'s
        host (``host=<id>``: its subjects, its remediator)."""
        engine = remote.engine if remote is not None else self.engine
        host = remote.host if remote is not None else None
        ranks = remote.incident_rank if remote is not None else self._incident_rank
        firing: list[Alert] = []
        for transition in transitions:
            await self.publish(ALERT_TOPICS[transition.kind], transition.alert, host=host)
            if transition.kind in ("firing", "escalated"):
                firing.append(transition.alert)
        changes = engine.take_incident_changes()
        worse: dict[str, Incident] = {}
        for kind, incident in changes:
            await self.publish(INCIDENT_TOPICS[kind], incident, host=host)
            rank = SEVERITY_RANK[incident.severity]
            if kind == "opened" or (kind == "updated" and rank > ranks.get(incident.id, rank)):
                worse[incident.id] = incident
            if kind == "resolved":
                ranks.pop(incident.id, None)
                self._llm_waiting.pop(incident.id, None)
            else:
                ranks[incident.id] = rank
        if firing:
            # Read once for the whole batch: a webhook group may fire hundreds of alerts.
            opened = {i.id: i for i in engine.incidents_open()}
            verdict, summary = verdict_of(engine.alerts.values()), self._rules_summary(engine)
            for incident_id, alerts in self._by_incident(firing, engine):
                found = opened.get(incident_id) if incident_id is not None else None
                result = self._rules_result(alerts, incident_id, found, verdict, summary)
                await self._publish_analysis(result, host)
        for incident in worse.values():
            key = f"incident:{incident.id}:{incident.severity.value}"
            self._want_llm_for(incident, key, host)

    def _by_incident(
        self, alerts: list[Alert], engine: AnalysisEngine
    ) -> list[tuple[str | None, list[Alert]]]:
        """``alerts`` by the incident they belong to (info alerts belong to none)."""
        groups: dict[str | None, list[Alert]] = {}
        for alert in alerts:
            incident = engine.incident_of(alert.fingerprint)
            groups.setdefault(incident.id if incident else None, []).append(alert)
        return list(groups.items())

    def _rules_result(
        self,
        alerts: list[Alert],
        incident_id: str | None,
        incident: Incident | None,
        verdict: str,
        summary: str,
    ) -> AnalysisResult:
        recommended: list[SuggestedAction] = (
            list(incident.remedies) if incident is not None else self._rule_actions(alerts)
        )
        return AnalysisResult(
            at=self.ctx.clock(),
            trigger="alert",
            source="rules",
            verdict=verdict,
            summary=summary,
            alert_ids=[a.id for a in alerts],
            fingerprints=[a.fingerprint for a in alerts],
            incident_id=incident_id,
            recommended=recommended,
        )

    async def _publish_analysis(self, result: AnalysisResult, host: str | None = None) -> None:
        if host is None:
            self.latest_analysis = result
        await self.publish(ANALYSIS_RESULT, result, host=host)

    async def stand_down(self, reason: str) -> int:
        """Resolve every alert and incident this analyzer has open on this host, saying
        ``reason`` (a fallback analyzer handing the host back to the central one, so its
        alerts are not left open twice); the number of alerts resolved."""
        now = self.ctx.clock()
        alerts = self.engine.firing()
        for alert in alerts:
            evidence = {**alert.evidence, "resolved_because": reason}
            done = alert.model_copy(
                update={
                    "state": AlertState.RESOLVED,
                    "resolved_at": now,
                    "updated_at": now,
                    "evidence": evidence,
                }
            )
            await self.publish(ALERT_RESOLVED, done)
        for incident in self.engine.incidents_open():
            closed = incident.model_copy(
                update={"state": IncidentState.RESOLVED, "resolved_at": now, "updated_at": now}
            )
            await self.publish(INCIDENT_TOPICS["resolved"], closed)
        self.engine.alerts.clear()
        return len(alerts)

    def _rules_summary(self, engine: AnalysisEngine | None = None) -> str:
        firing = (engine or self.engine).firing()
        if not firing:
            return "all clear"
        parts = [
            f"{a.severity.value}: {a.summary}"
            for a in sorted(firing, key=lambda a: a.severity.value)
        ]
        return "; ".join(parts[:6]) + (f" (+{len(parts) - 6} more)" if len(parts) > 6 else "")

    @staticmethod
    def _rule_actions(alerts: list[Alert]) -> list[Any]:
        return [s for a in alerts for s in a.suggested_actions]

    async def _on_alertmanager(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``alertmanager`` (``params["payload"]``: a webhook body, checked again here, as
        any bus client may send it): its alerts fire, update or resolve ours."""
        try:
            payload = AlertmanagerPayload.model_validate(params.get("payload"))
        except ValidationError as exc:
            why = f"not an Alertmanager webhook payload: {exc.errors()[0]['msg']}"
            raise CommandError(why) from None
        if self._here is None:
            import psutil

            ip = (socket.AF_INET, socket.AF_INET6)
            nics = psutil.net_if_addrs().values()
            addresses = [a.address for nic in nics for a in nic if a.family in ip]
            self._here = local_names(self.own_host, socket.gethostname(), addresses)
        transitions = self.engine.observe_external(payload, self.ctx.clock(), here=self._here)
        await self._announce(transitions)
        return {"alerts": len(payload.alerts), "changed": len(transitions)}

    async def handle_command(self, command: str, params: Mapping[str, Any]) -> dict[str, Any]:
        if command == "alertmanager":
            return await self._on_alertmanager(params)
        if command != "analyze_now":
            raise CommandError(f"agent {self.name!r} has no command {command!r}")
        alerts = self.engine.firing()
        if not alerts:
            return {"verdict": "healthy", "summary": "all clear", "source": "rules"}
        if self.advisor() is None or self.gate.may_call(
            [a.fingerprint for a in alerts], forced=True
        ):
            return {
                "verdict": self.engine.verdict(),
                "summary": self._rules_summary(),
                "source": "rules",
                "llm": self.llm_status,
            }
        incidents = self.engine.incidents_open()
        result = await self.ask_llm(
            alerts, "analyze_now", incident_id=incidents[0].id if len(incidents) == 1 else None
        )
        return {"analysis": result.model_dump(mode="json") if result else None}

    def status(self) -> dict[str, Any]:
        """For the status file and the API."""
        return {
            "verdict": self.engine.verdict(),
            "firing": len(self.engine.firing()),
            "incidents": len(self.engine.incidents_open()),
            "llm": self.llm_status,
            "llm_available": self.llm_available,
            "llm_calls": self.llm_calls,
            "llm_fallbacks": self.llm_fallbacks,
            "llm_calls_last_hour": self.gate.calls_last_hour(),
            "llm_skipped": dict(self.gate.skipped),
            "analysis_ms": self.analysis_ms,
            **({"fleet": self.hosts.status()} if self.hosts is not None else {}),
        }
