"""Actions: declared once, registered by name, executed only through the policy gate.

An action implements three small steps; the RemediationPipeline does the rest (policy,
concurrency, timeouts, audit)::

    class Touch:
        info = ActionInfo(name="touch_marker", description="...", target_kind="none", risk="safe")

        async def validate(self, request, ctx) -> str | None:
            return None                      # or the reason the target is refused

        async def execute(self, request, ctx) -> ActionResult:
            ...
            return ActionResult(ok=True, detail="marker touched")

        async def verify(self, request, ctx, result) -> bool | None:
            return None                      # None: nothing to check

    registry.register(Touch())

Targets are validated by the action itself (``validate``) before the policy lets it run,
so no action ever runs against something it has not checked. Parameters are checked
against the action's declaration (``ActionInfo.check_params``) before that, so ``validate``
and ``execute`` only ever see declared, typed, bounded values.

Blocking work (a directory walk, /proc reads) goes through ``ctx.run_blocking``: it runs on
the remediation pipeline's own bounded pool, so no action can take the threads sampling or storage
need.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, runtime_checkable

from watchkeeper.model.actions import ActionInfo, ActionRequest, ActionResult

if TYPE_CHECKING:
    from watchkeeper.config import Settings
    from watchkeeper.remediation.processes import ProcessLookup

__all__ = [
    "Action",
    "ActionContext",
    "ActionRegistry",
    "DuplicateActionError",
    "NeedsPrivilege",
]

P = ParamSpec("P")
T = TypeVar("T")


class NeedsPrivilege(PermissionError):
    """The daemon lacks the rights for this action; the message says which, in plain words."""


@dataclass
class ActionContext:
    """What actions may use: settings, the service managers, the clock, and the pool
    their blocking work runs on (``executor``; its owner, the pipeline's ``ActionRunner``,
    shuts it down). ``processes`` is where process targets are looked up (None: this
    machine's /proc; the scenario scorer gives a scenario's own processes)."""

    settings: Callable[[], Settings]
    services: dict[str, Any]
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    executor: Executor | None = None
    processes: ProcessLookup | None = None

    async def run_blocking(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on the actions' pool, off the event loop::

        result = await ctx.run_blocking(clean_tree, root, older_than_s=86400)

        Without a pool (an action tried on its own) it runs on a worker thread."""
        if self.executor is None:
            return await asyncio.to_thread(fn, *args, **kwargs)
        return await asyncio.wrap_future(self.executor.submit(fn, *args, **kwargs))

    def manager_for(self, service: str) -> Any:
        """The manager that runs ``service`` per config, or None when it is not configured."""
        for spec in self.settings().services:
            if spec.name == service:
                return self.services.get(spec.manager)
        return None


@runtime_checkable
class Action(Protocol):
    info: ActionInfo

    async def validate(self, request: ActionRequest, ctx: ActionContext) -> str | None: ...

    async def execute(self, request: ActionRequest, ctx: ActionContext) -> ActionResult: ...

    async def verify(
        self, request: ActionRequest, ctx: ActionContext, result: ActionResult
    ) -> bool | None: ...


class DuplicateActionError(ValueError):
    """An action with that name is already registered."""


class ActionRegistry:
    """Actions by name; registering a name twice is an error, never a silent override."""

    def __init__(self) -> None:
        self._actions: dict[str, Action] = {}

    def register(self, action: Action) -> None:
        name = action.info.name
        if name in self._actions:
            raise DuplicateActionError(f"action {name!r} is already registered")
        self._actions[name] = action

    def unregister(self, name: str) -> None:
        self._actions.pop(name, None)

    def get(self, name: str) -> Action | None:
        return self._actions.get(name)

    def infos(self) -> list[ActionInfo]:
        return [action.info for action in self._actions.values()]

    def names(self) -> list[str]:
        return list(self._actions)

    def __contains__(self, name: object) -> bool:
        return name in self._actions

    def __iter__(self) -> Iterator[Action]:
        return iter(list(self._actions.values()))
