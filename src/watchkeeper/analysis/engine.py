"""The rule path of the analyzer: samples in, alert transitions out.

::

    engine = AnalysisEngine(settings=store)
    for transition in engine.observe(sample, now):
        await bus.publish(ALERT_TOPICS[transition.kind], transition.alert, sender="analyzer")

Layers run cheapest first: thresholds (with hysteresis and "for" durations), trends,
baselines, then context (expected patterns cap a severity). Alerts are deduplicated by
fingerprint; a warning that persists past ``escalate_after`` escalates, as does an alert
whose remediation ran out of things to try. No I/O happens here: it is a deterministic
function of the samples, the settings and time, which is what the scenario tests rely on.

Two judgments sit above the single alerts:

* **Crash loops** (:mod:`~watchkeeper.analysis.flapping`): a service changing state
  ``flap_changes`` times within ``flap_window`` fires one ``service_flapping`` alert that
  holds the verdict while it lasts; meanwhile its deaths open no new ``service_down``
  alerts, and the loop gets one restart proposal within the window (the remediator's
  backoff and give-up decide after that; ``remediation_gave_up`` puts its word on the
  incident); a service still down once the loop has calmed fires ``service_down`` again.
* **Incidents** (:mod:`~watchkeeper.analysis.incidents`): after every batch of
  transitions the firing alerts are grouped into incidents with a probable root cause.
  Alerts a firing root explains lose their own suggestions until it clears, when they
  fire again with them restored. Read them with ``incidents_open()``, and the changes
  with ``take_incident_changes()``::

      for kind, incident in engine.take_incident_changes():
          await bus.publish(INCIDENT_TOPICS[kind], incident, sender="analyzer")
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from watchkeeper.analysis.baselines import BaselineBook
from watchkeeper.analysis.checks import (
    Check,
    judge,
    restarts_itself,
    run_checks,
    service_checks,
)
from watchkeeper.analysis.external import ORIGIN, AlertmanagerPayload, findings_of
from watchkeeper.analysis.flapping import FlapTracker, flap_check, restart_suggestion
from watchkeeper.analysis.incidents import IncidentBook, IncidentContext, ServiceFacts
from watchkeeper.analysis.levels import LevelTracker
from watchkeeper.analysis.remedies import vet
from watchkeeper.analysis.rules import RuleRegistry
from watchkeeper.analysis.trends import TrendTracker
from watchkeeper.config import Settings
from watchkeeper.model.alerts import (
    SEVERITY_RANK,
    Alert,
    AlertState,
    Severity,
    fingerprint_of,
)
from watchkeeper.model.incidents import Incident
from watchkeeper.model.metrics import MetricsSample
from watchkeeper.model.text import LABEL, LOG_LINE, clean

__all__ = ["AnalysisEngine", "Transition", "verdict_of"]

TransitionKind = Literal["firing", "resolved", "escalated"]

# While a service flaps, its deaths and failed probes open no alerts of their own.
_ABSORBED_WHILE_FLAPPING = frozenset({"service_down", "service_unhealthy"})
_LOG_LINES_KEPT = 8


@dataclass(frozen=True)
class Transition:
    kind: TransitionKind
    alert: Alert


def verdict_of(alerts: Iterable[Alert]) -> str:
    """healthy (nothing above info), degraded (a warning) or critical."""
    worst = max(
        (SEVERITY_RANK[a.severity] for a in alerts if a.state is AlertState.FIRING), default=-1
    )
    return "critical" if worst >= 2 else "degraded" if worst >= 1 else "healthy"


class _Known:
    """A service event's status, with what the latest sample knew and the event lacks."""

    def __init__(self, status: Any, **known: Any) -> None:
        self._status = status
        self.__dict__.update(known)

    def __getattr__(self, key: str) -> Any:
        return getattr(self._status, key)


def _with_known_policy(status: Any, last: Any) -> Any:
    """``status`` with the ``Restart=`` of the unit from its last sampled status when the
    event did not say (an event tells what happened; the sample what the unit is)."""
    if last is None or getattr(status, "restart_policy", None) is not None:
        return status
    policy = getattr(last, "restart_policy", None)
    return status if not policy else _Known(status, restart_policy=policy)


def _new_remedy(alert: Alert, check: Check) -> bool:
    """Whether ``check`` brings ``reset_failed`` to a service alert that lacked it."""
    had = {a.action for a in alert.suggested_actions}
    return "reset_failed" not in had and any(a.action == "reset_failed" for a in check.suggested)


def _capped(level: Severity | None, cap: Severity | None) -> Severity | None:
    if level is None or cap is None:
        return level
    return cap if SEVERITY_RANK[level] > SEVERITY_RANK[cap] else level


class AnalysisEngine:
    """Holds the analyzer's state: levels, trends, baselines and the alerts that fire.

    ``rules`` holds the rules beyond the built-in checks (plugins'); the orchestrator
    passes the one registry it owns, a test may leave it out."""

    def __init__(
        self,
        settings: Callable[[], Settings],
        *,
        rules: RuleRegistry | None = None,
        id_factory: Callable[[], str] | None = None,
    ) -> None:
        self._settings = settings
        s = settings()
        self.levels = LevelTracker(for_s=s.analyzer.for_seconds, clear_s=s.analyzer.clear_seconds)
        self.trends = TrendTracker()
        self.baselines = BaselineBook()
        self.alerts: dict[str, Alert] = {}
        self._new_id = id_factory or (lambda: uuid.uuid4().hex[:12])
        self._checks_seen: dict[str, Check] = {}
        self.rules = rules if rules is not None else RuleRegistry()
        self.flaps = FlapTracker()
        self.incidents = IncidentBook(id_factory=self._new_id)
        self._flapping: set[str] = set()  # subjects of services that flap now
        self._restart_at: dict[str, float] = {}  # service -> when a restart was last proposed
        self._suggested: dict[str, tuple[Any, ...]] = {}  # fingerprint -> its own actions
        self._held: dict[str, str] = {}  # fingerprint -> "held until / is fixed"
        self._notes: dict[str, str] = {}  # service -> remediation's word on it
        self._status: dict[str, Any] = {}  # service -> its latest status
        self._changed: set[str] = set()  # services with state changes in the flap window
        self._logs: dict[str, deque[str]] = {}
        self._mounts: tuple[str, ...] = ()
        self._host = ""

    # -- inputs ----------------------------------------------------------------------------
    def observe(self, sample: MetricsSample, now: float) -> list[Transition]:
        """Analyse one sample; the alert transitions it causes."""
        settings = self._settings()
        self.levels.configure(settings.analyzer)
        level_of = self._level_of
        checks = run_checks(sample, settings, level_of, now)
        if self.rules:
            checks.extend(self.rules.run(sample, settings, level_of, now))
        service_pids = {
            s.pid: s.name for s in (getattr(sample, "services", None) or ()) if s.pid is not None
        }
        checks.extend(self.trends.observe(sample, settings, now, service_pids))
        checks.extend(self.baselines.observe(sample.flat(), settings, now))
        checks.extend(self._flap_checks(sample, settings, now))
        self._host = sample.host
        if sample.disks is not None:
            self._mounts = tuple(fs.mount for fs in sample.disks.filesystems)
        transitions = self._apply(vet(checks, sample, settings, self.levels.tracked), now)
        # Subjects that vanished (a process gone, a disk unmounted) resolve their alerts.
        families_present = {c.family for c in checks}
        seen_keys = {(c.rule, c.subject) for c in checks}
        for fingerprint, alert in list(self.alerts.items()):
            family = self._checks_seen.get(fingerprint)
            if family is None or (alert.rule, alert.subject) in seen_keys:
                continue
            if family.family in families_present or family.family in ("process", "leak"):
                self.levels.update((alert.rule, alert.subject), None, now, clear_s=0)
                transitions.append(self._resolve(fingerprint, now, "no longer observed"))
        self.levels.end_round(now)  # keys not heard about this sample lose pending timers
        transitions.extend(self._escalate_stale(settings, now))
        return self._settle(transitions, now, force=self.incidents.due(now))

    def observe_service(self, status: Any, now: float) -> list[Transition]:
        """A service event's status, analysed at once (no waiting for the next sample).

        ``status`` has a service's ``name``, ``state`` ("failed" after an exit, "running"
        after a start) and what ``service_checks`` reads; the state change counts toward
        flapping here, once (the next sample does not count it again)."""
        settings = self._settings()
        name, state = str(status.name), str(status.state)
        status = _with_known_policy(status, self._status.get(name))
        if state in ("failed", "running", "starting"):
            self.flaps.event(name, state != "failed", now)
        detail = str(getattr(status, "detail", None) or "")
        if state == "failed" and detail:
            self.observe_log(name, detail)
        for line in getattr(status, "journal", None) or ():
            self.observe_log(name, str(line))
        checks = list(service_checks(status, settings, now))
        checks.append(self._flap_check(name, bool(status.critical), settings, now, status))
        return self._settle(self._apply(vet(checks, None, settings, self.levels.tracked), now), now)

    def observe_external(
        self, payload: AlertmanagerPayload, now: float, *, here: frozenset[str]
    ) -> list[Transition]:
        """A webhook group from Prometheus Alertmanager (:mod:`~watchkeeper.analysis.external`):
        each alert fires, updates or resolves one alert of ours (``source`` "alertmanager"),
        its proposals vetted as the rules' are; ``here`` names this machine."""
        settings = self._settings()
        findings = findings_of(
            payload, settings, mounts=self._mounts, here=here, restartable=self._restartable
        )
        vetted = vet([f.check for f in findings], None, settings)
        out: list[Transition] = []
        for finding, check in zip(findings, vetted, strict=True):
            fp, existing = finding.fingerprint, self.alerts.get(finding.fingerprint)
            if not finding.firing:
                if existing is not None and existing.source == ORIGIN:
                    out.append(self._resolve(fp, now, "resolved in Alertmanager"))
                continue
            level = Severity.CRITICAL if existing and existing.escalated else check.raw
            update: dict[str, Any] = {"summary": check.summary, "evidence": check.evidence}
            if existing is None:
                alert = Alert(
                    id=self._new_id(),
                    fingerprint=fp,
                    rule=check.rule,
                    severity=level or Severity.WARNING,
                    subject=check.subject,
                    started_at=now,
                    updated_at=now,
                    suggested_actions=list(check.suggested),
                    source=ORIGIN,
                    labels=finding.labels,
                    **update,
                )
            elif existing.severity != level or (
                fp not in self._held and existing.suggested_actions != list(check.suggested)
            ):
                update.update(severity=level, suggested_actions=list(check.suggested))
                alert = existing.model_copy(update={**update, "updated_at": now})
            else:  # re-sent unchanged: fresher words, no announcement
                held = self._held.get(fp)
                if held is not None:
                    update["evidence"] = {**check.evidence, "held": held}
                self.alerts[fp] = existing.model_copy(update=update)
                continue
            self.alerts[fp] = alert
            self._suggested[fp] = check.suggested
            out.append(Transition("firing", alert))
        return self._settle(out, now)

    def observe_log(self, service: str, line: str) -> None:
        """A log line of ``service`` (untrusted; kept cleaned, the last few only), read as
        evidence when correlating ("No space left on device" with a full disk). A
        service's status detail, each time it changes, is kept the same way."""
        lines = self._logs.setdefault(clean(service, LABEL, 64), deque(maxlen=_LOG_LINES_KEPT))
        lines.append(clean(line, LOG_LINE).lower())

    def remediation_gave_up(
        self, target: str, failures: int, reason: str, now: float
    ) -> list[Transition]:
        """Remediation stopped trying ``target`` (``remediation.gave_up``): its open alerts
        and its incident say so. Nothing escalates here: the remediator raises its own
        give-up alert, and a chain that ran out escalates through ``remediation_failed``."""
        note = f"remediation gave up after {failures} failures: {clean(reason, LABEL, 120)}"
        self._notes[target] = note
        for fp, alert in list(self.alerts.items()):
            if alert.subject == f"service:{target}":
                evidence = {**alert.evidence, "remediation": note}
                self.alerts[fp] = alert.model_copy(update={"evidence": evidence})
        return self._settle([], now, force=True)

    def giveup_reset(self, target: str, by: str, now: float) -> list[Transition]:
        """A give-up on ``target`` was lifted (a person, or its reset timer): its incident
        says who, and its open alerts fire again with their actions, so it may be tried."""
        self._notes[target] = f"give-up reset by {clean(by, LABEL, 64)}"
        self._restart_at.pop(target, None)
        transitions = []
        for fp, alert in list(self.alerts.items()):
            if alert.subject != f"service:{target}" or fp in self._held:
                continue
            actions = list(self._suggested.get(fp, ()))
            if alert.rule == "service_flapping" and not actions and self._restartable(target):
                actions = [restart_suggestion(target)]
            again = alert.model_copy(update={"suggested_actions": actions, "updated_at": now})
            self.alerts[fp] = again
            transitions.append(Transition("firing", again))
        return self._settle(transitions, now, force=True)

    def remediation_failed(
        self, alert_id: str | None, fingerprint: str | None, now: float, why: str
    ) -> Transition | None:
        """Escalate the alert remediation gave up on (``remediation.escalated``: every
        candidate failed or was refused)."""
        for fp, alert in self.alerts.items():
            if alert.id == alert_id or fp == fingerprint:
                transition = self._escalate(fp, now, f"remediation failed: {why}")
                if transition is None:
                    return None
                settled = self._settle([transition], now)
                return settled[0] if settled else None
        return None

    # -- state -----------------------------------------------------------------------------
    def firing(self) -> list[Alert]:
        return [a for a in self.alerts.values() if a.state is AlertState.FIRING]

    def verdict(self) -> str:
        return verdict_of(self.alerts.values())

    def incidents_open(self) -> list[Incident]:
        """Open incidents, worst first: every firing alert above info is in exactly one."""
        self.incidents.refresh(self.alerts)
        return self.incidents.open()

    def take_incident_changes(self) -> list[tuple[str, Incident]]:
        """The incident changes since the last call: ("opened" | "updated" | "resolved", it)."""
        return self.incidents.take_changes()

    def incident_of(self, fingerprint: str) -> Incident | None:
        """The open incident an alert belongs to."""
        return self.incidents.incident_of(fingerprint)

    # -- internals -------------------------------------------------------------------------
    def _level_of(self, rule: str, subject: str) -> Severity | None:
        return self.levels.current((rule, subject))

    def _apply(self, checks: list[Check], now: float) -> list[Transition]:
        out: list[Transition] = []
        settle = self._settings().analyzer.clear_seconds
        for check in checks:
            if check.rule == "service_down" and check.raw is None and self._changed:
                name = check.subject.removeprefix("service:")
                if name in self._changed and (check.clear_s or 0) < settle:
                    # Back up after a death lately: down until it has stayed up a while,
                    # so a service that dies again at once is the same outage (and the
                    # remediator's retries and give-up stay with that one alert).
                    check = replace(check, clear_s=settle)
            level, check = judge(self.levels, check, now)
            level = _capped(level, check.cap)
            fingerprint = fingerprint_of(check.rule, check.subject)
            existing = self.alerts.get(fingerprint)
            if level is None:
                if existing is not None:
                    out.append(self._resolve(fingerprint, now, "back to normal"))
                continue
            if existing is None and (
                check.subject in self._flapping and check.rule in _ABSORBED_WHILE_FLAPPING
            ):
                continue  # the service_flapping alert speaks for it
            self._checks_seen[fingerprint] = check
            self._suggested[fingerprint] = check.suggested
            if existing is not None and existing.escalated:
                level = Severity.CRITICAL  # an escalated alert stays escalated until it clears
            if existing is None:
                alert = Alert(
                    id=self._new_id(),
                    fingerprint=fingerprint,
                    rule=check.rule,
                    severity=level,
                    subject=check.subject,
                    summary=check.summary,
                    evidence=check.evidence,
                    suggested_actions=list(check.suggested),
                    started_at=now,
                    updated_at=now,
                )
                self.alerts[fingerprint] = alert
                out.append(Transition("firing", alert))
            elif existing.severity != level:
                alert = existing.model_copy(
                    update={
                        "severity": level,
                        "summary": check.summary,
                        "evidence": check.evidence,
                        "suggested_actions": list(check.suggested),
                        "updated_at": now,
                    }
                )
                self.alerts[fingerprint] = alert
                out.append(Transition("firing", alert))
            else:
                # Same level: keep the evidence fresh without announcing anything.
                evidence = check.evidence
                held = self._held.get(fingerprint)
                if held is not None:
                    evidence = {**evidence, "held": held}
                note = self._notes.get(check.subject.removeprefix("service:"))
                if note is not None and check.subject.startswith("service:"):
                    evidence = {**evidence, "remediation": note}
                update: dict[str, Any] = {"summary": check.summary, "evidence": evidence}
                if held is None and _new_remedy(existing, check):
                    # systemd gave up on the unit since the alert fired: its remedy is now
                    # reset_failed, announced (the alert fires again with it).
                    update.update(suggested_actions=list(check.suggested), updated_at=now)
                    self.alerts[fingerprint] = existing.model_copy(update=update)
                    out.append(Transition("firing", self.alerts[fingerprint]))
                    continue
                self.alerts[fingerprint] = existing.model_copy(update=update)
        return out

    def _resolve(self, fingerprint: str, now: float, why: str) -> Transition:
        alert = self.alerts.pop(fingerprint)
        self._checks_seen.pop(fingerprint, None)
        self._suggested.pop(fingerprint, None)
        resolved = alert.model_copy(
            update={
                "state": AlertState.RESOLVED,
                "resolved_at": now,
                "updated_at": now,
                "evidence": {**alert.evidence, "resolution": why},
            }
        )
        return Transition("resolved", resolved)

    def _escalate(self, fingerprint: str, now: float, why: str) -> Transition | None:
        alert = self.alerts.get(fingerprint)
        if alert is None or alert.escalated:
            return None
        escalated = alert.model_copy(
            update={
                "escalated": True,
                "severity": Severity.CRITICAL,
                "updated_at": now,
                "evidence": {**alert.evidence, "escalation": why},
            }
        )
        self.alerts[fingerprint] = escalated
        return Transition("escalated", escalated)

    def _escalate_stale(self, settings: Settings, now: float) -> list[Transition]:
        out = []
        limit = settings.analyzer.escalate_after
        for fp, alert in list(self.alerts.items()):
            if (
                alert.severity is Severity.WARNING
                and not alert.escalated
                and now - alert.started_at >= limit
            ):
                transition = self._escalate(fp, now, f"warning has persisted for {limit:.0f}s")
                if transition:
                    out.append(transition)
        return out

    # -- crash loops ---------------------------------------------------------------------------
    def _flap_checks(self, sample: MetricsSample, settings: Settings, now: float) -> list[Check]:
        statuses = getattr(sample, "services", None) or ()
        checks = []
        for status in statuses:
            previous = self._status.get(status.name)
            if status.detail and (previous is None or previous.detail != status.detail):
                self.observe_log(status.name, status.detail)  # a service's last words
            self._status[status.name] = status
            self.flaps.sample(status.name, str(status.state), status.restarts, now)
            checks.append(self._flap_check(status.name, status.critical, settings, now, status))
        present = {s.name for s in statuses}
        if set(self.flaps.names()) - present:
            self.flaps.forget(present)
            self._flapping = {s for s in self._flapping if s[len("service:") :] in present}
            for name in [n for n in self._status if n not in present]:
                del self._status[name]
        return checks

    def _restartable(self, name: str) -> bool:
        """False for a unit systemd restarts itself, or one it gave up on."""
        last = self._status.get(name)
        return last is None or not (
            getattr(last, "start_limit_hit", False) or restarts_itself(last)
        )

    def _flap_check(
        self, name: str, critical: bool, settings: Settings, now: float, status: Any = None
    ) -> Check:
        a = settings.analyzer
        state = self.flaps.judge(name, now, window=a.flap_window, threshold=a.flap_changes)
        subject = f"service:{name}"
        if state.changes:
            self._changed.add(name)
        else:
            self._changed.discard(name)
        if state.flapping:
            self._flapping.add(subject)
        else:
            self._flapping.discard(subject)
        proposed = self._restart_at.get(name)
        held = (
            f"a restart was proposed {now - proposed:.0f}s ago; the remediator's crash-loop "
            "backoff and give-up decide the rest"
            if proposed is not None and now - proposed < a.flap_window
            else ""
        )
        return flap_check(
            name,
            state,
            critical=critical,
            window=a.flap_window,
            restart_held=held,
            note=self._notes.get(name, ""),
            status=status,
        )

    # -- incidents ---------------------------------------------------------------------------
    def _settle(
        self, transitions: list[Transition], now: float, *, force: bool = False
    ) -> list[Transition]:
        """Group the firing alerts into incidents after a batch of transitions; hold the
        actions of alerts a firing root explains, give them back when it clears."""
        if not transitions and not force:
            return transitions
        firing = [a for a in self.alerts.values() if a.state is AlertState.FIRING]
        self.incidents.refresh(
            {**{t.alert.fingerprint: t.alert for t in transitions}, **self.alerts}
        )
        # A crash loop's restart was proposed once; people still see it among the remedies.
        remedies: dict[str, tuple[Any, ...]] = dict(self._suggested)
        for alert in firing:
            if alert.rule == "service_flapping" and not remedies.get(alert.fingerprint):
                name = alert.subject.removeprefix("service:")
                if self._restartable(name):
                    remedies[alert.fingerprint] = (restart_suggestion(name),)
        held = self.incidents.correlate(firing, remedies, self._context(), now)
        texts = {fp: f"held until {root} is fixed" for fp, root in held.items()}
        out: list[Transition] = []
        touched: set[str] = set()
        for transition in transitions:
            alert = transition.alert
            fp = alert.fingerprint
            if transition.kind != "resolved" and fp in texts and fp in self.alerts:
                alert = self._hold(fp, texts[fp])
                transition = Transition(transition.kind, alert)
            touched.add(fp)
            out.append(transition)
        for fp, text in texts.items():
            if fp not in touched and self._held.get(fp) != text and fp in self.alerts:
                self._hold(fp, text)  # explained after it fired: quiet from now on
        for fp in self._held:
            current = self.alerts.get(fp)
            if fp in texts or current is None or current.state is not AlertState.FIRING:
                continue
            evidence = {k: v for k, v in current.evidence.items() if k != "held"}
            evidence["released"] = self._held[fp].replace("held until", "was held until")
            released = current.model_copy(
                update={
                    "suggested_actions": list(self._suggested.get(fp, ())),
                    "evidence": evidence,
                    "updated_at": now,
                }
            )
            self.alerts[fp] = released
            out = [t for t in out if t.alert.fingerprint != fp or t.kind == "resolved"]
            out.append(Transition("firing", released))
        self._held = texts
        for transition in out:
            if transition.kind == "resolved":
                continue
            for action in transition.alert.suggested_actions:
                if action.action == "restart_service" and action.target:
                    self._restart_at[action.target] = now
        services_alerting = {
            a.subject[len("service:") :]
            for a in self.alerts.values()
            if a.subject.startswith("service:")
        }
        for name in [n for n in self._notes if n not in services_alerting]:
            del self._notes[name]
        return out

    def _hold(self, fingerprint: str, text: str) -> Alert:
        alert = self.alerts[fingerprint]
        held = alert.model_copy(
            update={"suggested_actions": [], "evidence": {**alert.evidence, "held": text}}
        )
        self.alerts[fingerprint] = held
        return held

    def _context(self) -> IncidentContext:
        settings = self._settings()
        specs = {spec.name: spec for spec in settings.services}
        facts: dict[str, ServiceFacts] = {}
        for name in set(specs) | set(self._status) | set(self._logs):
            spec, status = specs.get(name), self._status.get(name)
            text = " ".join(
                [
                    str(getattr(status, "detail", "") or ""),
                    str(getattr(status, "probe_detail", "") or ""),
                    *self._logs.get(name, ()),
                ]
            ).lower()
            facts[name] = ServiceFacts(
                depends_on=tuple(spec.depends_on) if spec else (),
                paths=tuple(str(p) for p in spec.paths) if spec else (),
                text=text,
                pid=getattr(status, "pid", None),
                note=self._notes.get(name, ""),
            )
        # A service back up for less than a tenth of the flap window (a minute by default)
        # that dies again continues its incident: a crash loop is one incident, not many.
        linger = settings.analyzer.flap_window / 10
        return IncidentContext(
            services=facts,
            mounts=self._mounts,
            host=self._host,
            linger={f"service:{name}": linger for name in self._changed},
        )
