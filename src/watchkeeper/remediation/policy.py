"""The one gate every action passes, whoever proposed it.

``Policy.decide`` answers with a ``Decision``: run now, wait for a person, only say what
would happen (dry run), try again later (a crash-loop backoff), or refuse, with the reason
in words. It checks, in order: the action is registered and not denied; the target passes
its parameters match the action's declaration (names, types, bounds); the target passes
the action's own validation (protected pids and names, identity, allowlisted paths); the
target is not in a given-up state, not blocked for lack of privileges, not cooling down,
and not inside its crash-loop backoff. Then who may let it run without a person:
``remediation.never_auto`` actions (``drop_caches`` by default) always wait, whoever
proposed them, and so does whatever an MCP client (an assistant) proposes, in any mode;
a model's proposals run alone only as far as ``remediation.llm_autonomy``
allows (:meth:`Policy.llm_wait`); the rest follows ``mode``, risk and ``allow_actions``.

``CrashLoopGuard`` keeps per-service attempt history: attempts back off exponentially
(capped) while they keep failing, the backoff resets after a stable period, and after
``max_failures`` failures within ``window`` seconds it gives up until a person (or a
configured timer) resets it.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from watchkeeper.config import RemediationSettings
from watchkeeper.model.actions import ActionInfo, ActionRequest, ParamError
from watchkeeper.remediation.actions import Action, ActionContext

__all__ = ["CrashLoopGuard", "Decision", "GiveUp", "Policy"]

Verdict = Literal["run", "approve", "dry_run", "defer", "refuse"]
_MCP_WAITS = "proposed by an MCP client: it always waits for a person"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str = ""
    retry_after: float = 0.0  # seconds, with "defer"


@dataclass
class GiveUp:
    target: str
    since: float
    failures: int
    reason: str


@dataclass
class _History:
    attempts: deque[float] = field(default_factory=deque)
    failures: deque[float] = field(default_factory=deque)
    consecutive: int = 0
    last_attempt: float = -1e18
    last_success: float | None = None


class CrashLoopGuard:
    """Backoff and give-up for targets that keep failing (services, chiefly)."""

    def __init__(self) -> None:
        self._history: dict[str, _History] = {}
        self.given_up: dict[str, GiveUp] = {}

    def _h(self, target: str) -> _History:
        return self._history.setdefault(target, _History())

    def backoff(self, target: str, cfg: RemediationSettings) -> float:
        consecutive = self._h(target).consecutive
        if consecutive == 0:
            return 0.0
        delay = cfg.crash_loop_backoff_initial * 2.0 ** (consecutive - 1)
        return float(min(cfg.crash_loop_backoff_max, delay))

    def wait_needed(self, target: str, now: float, cfg: RemediationSettings) -> float:
        h = self._h(target)
        if h.last_success is not None and now - h.last_success >= cfg.crash_loop_stable_after:
            h.consecutive = 0  # it stayed up: start afresh
        return max(0.0, h.last_attempt + self.backoff(target, cfg) - now)

    def attempt(self, target: str, now: float) -> None:
        h = self._h(target)
        h.attempts.append(now)
        h.last_attempt = now

    def success(self, target: str, now: float) -> None:
        self._h(target).last_success = now

    def failure(self, target: str, now: float, cfg: RemediationSettings, why: str) -> GiveUp | None:
        """Count a failure (failed start, failed verification); a ``GiveUp`` when it is time."""
        h = self._h(target)
        h.consecutive += 1
        h.last_success = None
        h.failures.append(now)
        while h.failures and h.failures[0] < now - cfg.crash_loop_window:
            h.failures.popleft()
        if len(h.failures) >= cfg.crash_loop_max_failures and target not in self.given_up:
            giveup = GiveUp(target=target, since=now, failures=len(h.failures), reason=why)
            self.given_up[target] = giveup
            return giveup
        return None

    def reset(self, target: str) -> bool:
        self._history.pop(target, None)
        return self.given_up.pop(target, None) is not None

    def expire(self, now: float, cfg: RemediationSettings) -> list[str]:
        """Give-ups whose configured reset timer has run out."""
        if cfg.giveup_reset_after is None:
            return []
        due = [t for t, g in self.given_up.items() if now - g.since >= cfg.giveup_reset_after]
        for target in due:
            self.reset(target)
        return due


class Policy:
    """Decides what may happen; holds cooldowns and privilege blocks."""

    SERVICE_ACTIONS = frozenset({"restart_service", "start_service"})

    def __init__(self, guard: CrashLoopGuard | None = None) -> None:
        self.guard = guard or CrashLoopGuard()
        self._last_run: dict[tuple[str, str], float] = {}
        self._privilege: dict[tuple[str, str], tuple[float, str]] = {}

    @staticmethod
    def key(request: ActionRequest) -> tuple[str, str]:
        return (request.action, request.target or "")

    @staticmethod
    def admit(request: ActionRequest, action: Action | None) -> ActionRequest:
        """``request`` with its parameters checked against ``action``'s declaration and
        typed (``"15"`` becomes 15); raises ``ParamError`` with the reason in words.

        Called before a request is recorded anywhere (bus, audit, storage, approvals), so
        a bad parameter never becomes stored state; ``decide`` checks again for callers
        that come straight to the gate."""
        if action is None:
            return request
        return dataclasses.replace(request, params=action.info.check_params(request.params))

    @staticmethod
    def llm_wait(
        request: ActionRequest, info: ActionInfo, cfg: RemediationSettings, rules_agree: bool
    ) -> str | None:
        """Why a model's proposal must wait for a person, or None when it may run alone.

        ``llm_autonomy``: ``corroborated`` (the default) lets it run when the rules
        suggest the same action on the same target now (``rules_agree``) or the action is
        ``safe``; ``safe`` only safe actions; ``none`` nothing; ``any`` whatever a rule's
        proposal could (the checks after this one still apply)."""
        if request.proposer != "llm" or cfg.llm_autonomy == "any":
            return None
        setting = f"remediation.llm_autonomy={cfg.llm_autonomy}"
        if cfg.llm_autonomy == "none":
            return f"proposed by the model: waiting for a person ({setting})"
        if info.risk == "safe":
            return None
        if cfg.llm_autonomy == "safe":
            return f"proposed by the model and {info.risk}: waiting for a person ({setting})"
        if rules_agree:
            return None
        on = request.target or "the host"
        return (
            f"proposed by the model, and the rules do not suggest {request.action} on {on}: "
            f"waiting for a person ({setting})"
        )

    async def decide(
        self,
        request: ActionRequest,
        action: Action | None,
        ctx: ActionContext,
        now: float,
        *,
        rules_agree: bool = False,
    ) -> Decision:
        """The verdict on ``request``. ``rules_agree``: the rules currently suggest this
        same action on this same target (what corroborates a model's proposal)."""
        cfg = ctx.settings().remediation
        if action is None:
            return Decision("refuse", f"unknown action {request.action!r}")
        if request.action in cfg.deny_actions:
            return Decision("refuse", f"action {request.action!r} is denied by configuration")
        info = action.info
        if info.target_kind != "none" and request.target_kind not in ("none", info.target_kind):
            return Decision(
                "refuse",
                f"{request.action} takes a {info.target_kind}, not a {request.target_kind}",
            )
        try:
            info.check_params(request.params)
        except ParamError as exc:
            return Decision("refuse", str(exc))
        problem = await action.validate(request, ctx)
        if problem:
            return Decision("refuse", problem)
        key = self.key(request)
        target = request.target or ""
        if request.action in self.SERVICE_ACTIONS and target in self.guard.given_up:
            giveup = self.guard.given_up[target]
            return Decision(
                "refuse",
                f"gave up on {target} after {giveup.failures} failures; reset it to try again",
            )
        blocked = self._privilege.get(key)
        if blocked is not None and now - blocked[0] < cfg.privilege_retry_after:
            return Decision("refuse", f"not retried: {blocked[1]}")
        if request.proposer == "mcp":
            # An assistant's proposal waits for a person whatever mode, risk and
            # allow_actions say; a person's approval brings it back here as theirs.
            return Decision("approve", _MCP_WAITS)
        if request.action in self.SERVICE_ACTIONS:
            wait = self.guard.wait_needed(target, now, cfg)
            if wait > 0:
                return Decision(
                    "defer", f"crash-loop backoff: next attempt in {wait:.1f}s", retry_after=wait
                )
        else:
            last = self._last_run.get(key)
            if last is not None and now - last < cfg.healing_cooldown:
                left = cfg.healing_cooldown - (now - last)
                return Decision(
                    "refuse",
                    f"cooling down: {request.action} on {target or 'host'} ran "
                    f"{now - last:.0f}s ago ({left:.0f}s left)",
                )
        if cfg.mode == "dry_run":
            return Decision("dry_run", "dry-run mode: nothing is changed")
        if request.proposer == "user":
            return Decision("run", "asked by a person")
        if cfg.mode == "approve":
            return Decision("approve", "approve mode: waiting for a person")
        if request.action in cfg.never_auto:
            return Decision(
                "approve",
                f"{request.action} never runs without a person (remediation.never_auto)",
            )
        held = self.llm_wait(request, info, cfg, rules_agree)
        if held is not None:
            return Decision("approve", held)
        if info.risk == "dangerous" and request.action not in cfg.allow_actions:
            return Decision("approve", f"{request.action} is dangerous: waiting for a person")
        if cfg.allow_actions and request.action not in cfg.allow_actions and info.risk != "safe":
            return Decision("approve", f"{request.action} is not in remediation.allow_actions")
        return Decision("run", f"{info.risk} action allowed in auto mode")

    def started(self, request: ActionRequest, now: float) -> None:
        self._last_run[self.key(request)] = now
        if request.action in self.SERVICE_ACTIONS:
            self.guard.attempt(request.target or "", now)

    def lacks_privilege(self, request: ActionRequest, now: float, why: str) -> None:
        self._privilege[self.key(request)] = (now, why)

    def forget_privileges(self) -> None:
        self._privilege.clear()
