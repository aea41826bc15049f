"""What would have run: a scenario's proposals through the real policy gate.

``GateReplay`` takes proposals the way the remediation pipeline does (a firing alert's
first ordered candidate; the model's recommendations at or above ``min_confidence``),
admits them and asks the real ``Policy.decide`` with the real built-in actions, in the
scenario's settings, at the scenario's clock. Process targets are looked up in the
scenario's own processes (``ScenarioProcesses``), never this machine's; services are the
scenario's configured services. Nothing is executed: a decision ``run`` is recorded, the
policy is told it started (so cooldowns and the crash-loop backoff apply), and a service
action's verification is read off the scenario: it succeeded when the scenario shows the
service running ``verify_timeout`` seconds later. What the pipeline does next follows at
its own moment: a failed service action is tried again while its alert is open (deferred
by the backoff, retried while the service is still down, until the guard gives up), then
the alert's other candidates, then a person (``take_escalations``). The scenario's world
does not react to actions, so process actions are taken to have worked.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from watchkeeper.config import Settings
from watchkeeper.model.actions import ActionRequest, ParamError
from watchkeeper.model.alerts import Alert, AlertState, Severity, SuggestedAction
from watchkeeper.model.services import ServiceEvent
from watchkeeper.remediation.actions import ActionContext
from watchkeeper.remediation.bookkeeping import (
    SuccessBook,
    order_candidates,
    recommended,
    renewed,
)
from watchkeeper.remediation.builtin import builtin_registry
from watchkeeper.remediation.policy import Decision, GiveUp, Policy
from watchkeeper.testing._scenario_format import Expect
from watchkeeper.testing._scenario_samples import ScenarioProcesses, ServiceWorld

__all__ = ["GateReplay", "Replayed", "forbidden_reason"]

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class Replayed:
    """One proposal and what the gate decided about it."""

    at: float  # seconds into the scenario
    action: str
    target: str | None
    target_kind: str
    proposer: str
    proposed_by: str
    verdict: str  # run, approve, defer, refuse, dry_run
    reason: str

    @property
    def ran(self) -> bool:
        return self.verdict == "run"


class _ScenarioContext(ActionContext):
    """The actions' context in a scenario: the world is in memory, so blocking work is
    only a lookup and runs in place."""

    async def run_blocking(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return fn(*args, **kwargs)


class _ScenarioManager:
    """Stands for the scenario's service manager: the gate needs one to exist and may look
    at what it can do (``reset_failed`` is offered only where the manager has it); calling
    any of it fails, since the scorer executes nothing."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        def refuse(*_args: Any, **_kwargs: Any) -> Any:
            raise RuntimeError(f"the scenario scorer executes nothing (asked to {name})")

        return refuse


def _drive(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """The coroutine's result, without an event loop when it never waits (the gate's
    checks on an in-memory world do not); on a worker thread's loop when it does."""
    coro = make()
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, make()).result()


def _targets(kind: str, target: str | None) -> set[str]:
    raw = target or ""
    return {raw, f"{kind}:{raw}"}


def forbidden_reason(expect: Expect, action: str, kind: str, target: str | None) -> str | None:
    """Why ``expect`` forbids this proposal (action, target or pair), or None."""
    if action in expect.forbidden_actions:
        return f"action {action} is forbidden"
    names = _targets(kind, target)
    if names & set(expect.forbidden_targets):
        return f"target {target} is forbidden"
    for pair in expect.forbidden_pairs:
        if pair.action == action and pair.target in names:
            return f"{action} on {pair.target} is forbidden"
    return None


_STILL_UP = ("running", "starting")
_MAX_FOLLOW_UPS = 10_000  # per advance: a guard against a loop that never settles


class GateReplay:
    """The remediator's gate, replayed over a scenario (see the module docstring)."""

    def __init__(self, settings: Settings, services: ServiceWorld, t0: float) -> None:
        self.settings = settings
        self.registry = builtin_registry()
        self.policy = Policy()
        self.book = SuccessBook()  # the world does not react to actions: no record builds
        self.world = ScenarioProcesses()
        self.services = services
        self.t0 = t0
        self.t = 0.0
        managers: dict[str, Any] = {
            m: _ScenarioManager() for m in ("systemd", "process", "windows")
        }
        self.ctx = _ScenarioContext(
            settings=lambda: settings,
            services=managers,
            clock=lambda: self.t0 + self.t,
            processes=self.world,
        )
        self.records: list[Replayed] = []
        self.gave_up: list[GiveUp] = []  # give-ups not yet told to the analyzer
        self.escalations: list[tuple[ActionRequest, str]] = []  # likewise, run-out chains
        # Follow-ups, by when they are due: a service action's verification, or a deferred
        # request's next try.
        self._due: list[tuple[float, str, ActionRequest]] = []
        self._deferred: set[tuple[str, str]] = set()
        self._candidates: dict[str, list[ActionRequest]] = {}  # open alert → spare ones

    # -- time ----------------------------------------------------------------------------------
    def advance(self, t: float, world: ScenarioProcesses) -> None:
        """Move the clock to ``t`` (seconds in), settling on the way, at their own moments,
        the verifications and deferred retries that fell due, as the pipeline would."""
        self.world.alive = world.alive
        for _ in range(_MAX_FOLLOW_UPS):
            due = [item for item in self._due if item[0] <= t]
            if not due:
                break
            item = min(due, key=lambda x: x[0])
            self._due.remove(item)
            when, kind, request = item
            self.t = max(self.t, when)
            if kind == "verify":
                self._verified(request, when)
            else:
                self._retry(request, when)
        self.t = t

    def _state(self, name: str, when: float) -> str | None:
        status = self.services.status(name, when, self.t0)
        return None if status is None else str(status.state)

    def _verified(self, request: ActionRequest, when: float) -> None:
        """A service action's verification, read off the scenario; a failure counts for the
        crash-loop guard and escalates as ``RemediationPipeline._escalate`` does."""
        name = request.target or ""
        now = self.t0 + when
        if self._state(name, when) == "running":
            self.policy.guard.success(name, now)
            return
        detail = "still down after the restart"
        self._failed(name, now, detail)
        self._escalate(request, detail)

    def _retry(self, request: ActionRequest, when: float) -> None:
        """A deferred request's next try: still wanted only while its service is down."""
        self._deferred.discard(Policy.key(request))
        service = request.action in Policy.SERVICE_ACTIONS and bool(request.target)
        if service and self._state(request.target or "", when) in _STILL_UP:
            return
        self.submit(renewed(request, self.t0 + when))

    def _escalate(self, failed: ActionRequest, detail: str) -> None:
        fingerprint = failed.fingerprint or ""
        if fingerprint in self._candidates:
            again = self.submit(renewed(failed, self.t0 + self.t))
            if again.verdict != "refuse":
                return
        remaining = self._candidates.get(fingerprint, [])
        while remaining:
            if self.submit(remaining.pop(0)).verdict != "refuse":
                return
        self._candidates.pop(fingerprint, None)
        self.escalations.append((failed, detail))

    def _failed(self, name: str, now: float, why: str) -> None:
        giveup = self.policy.guard.failure(name, now, self.settings.remediation, why)
        if giveup is not None:
            self.gave_up.append(giveup)

    def take_gave_up(self) -> list[GiveUp]:
        """The crash-loop give-ups since the last call (``remediation.gave_up``)."""
        out, self.gave_up = self.gave_up, []
        return out

    def take_escalations(self) -> list[tuple[ActionRequest, str]]:
        """Chains that ran out of things to try since the last call
        (``remediation.escalated``): the failed request and why."""
        out, self.escalations = self.escalations, []
        return out

    def on_service_event(self, event: ServiceEvent) -> None:
        """A service died sooner than its ``min_uptime``: one more crash-loop failure (the
        remediator's ``on_service_exit``)."""
        if event.kind != "exited" or event.uptime is None:
            return
        spec = next((s for s in self.settings.services if s.name == event.name), None)
        if spec is None or event.uptime >= spec.min_uptime:
            return
        self._failed(event.name, event.at.timestamp(), "failed start")

    # -- proposals -----------------------------------------------------------------------------
    def on_alert(self, alert: Alert) -> Replayed | None:
        """A firing alert's best candidate, as ``RemediationPipeline.on_alert`` takes it
        (the others are kept for escalation)."""
        if alert.state is not AlertState.FIRING or not alert.suggested_actions:
            return None
        if alert.severity is Severity.INFO:
            return None
        candidates = order_candidates(
            alert, list(alert.suggested_actions), "rule", self.registry, self.book
        )
        self._candidates[alert.fingerprint] = candidates[1:]
        return self.submit(candidates[0])

    def on_resolved(self, fingerprint: str) -> None:
        """The alert is gone: its spare candidates are no longer needed."""
        self._candidates.pop(fingerprint, None)

    def on_recommendations(
        self, suggestions: list[SuggestedAction], source: str, alert: Alert | None
    ) -> list[Replayed]:
        """The model's recommendations, as ``RemediationPipeline.on_recommendations``."""
        minimum = self.settings.remediation.min_confidence
        out = []
        for suggestion in suggestions:
            if suggestion.confidence < minimum:
                continue
            request = recommended(
                suggestion,
                source,
                alert.id if alert else None,
                alert.fingerprint if alert else None,
            )
            out.append(self.submit(request))
        return out

    def submit(self, request: ActionRequest) -> Replayed:
        now = self.t0 + self.t
        action = self.registry.get(request.action)
        try:
            request = self.policy.admit(request, action)
        except ParamError as exc:
            decision = Decision("refuse", str(exc))
        else:
            decision = _drive(lambda: self.policy.decide(request, action, self.ctx, now))
        if decision.verdict == "run":
            self.policy.started(request, now)
            if request.action in Policy.SERVICE_ACTIONS and request.target:
                due = self.t + self.settings.remediation.verify_timeout
                self._due.append((due, "verify", request))
        elif decision.verdict == "defer" and Policy.key(request) not in self._deferred:
            self._deferred.add(Policy.key(request))
            self._due.append((self.t + decision.retry_after, "retry", request))
        record = Replayed(
            at=self.t,
            action=request.action,
            target=request.target,
            target_kind=request.target_kind,
            proposer=request.proposer,
            proposed_by=request.proposed_by,
            verdict=decision.verdict,
            reason=decision.reason,
        )
        self.records.append(record)
        return record
