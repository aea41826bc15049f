"""Plain functions as remediation actions.

The product brief's plugins add an action by assigning a method onto the remediator::

    remediator.clear_event_logs = self.clear_event_logs

The remediator's stand-in in ``plugins/compat.py`` turns such an assignment into
:func:`action_from_callable`, and a plugin on the typed path can do the same explicitly::

    system_context.actions.add(self.flush_dns, risk="safe")

Either way the function becomes a :class:`CallableAction`: declared in the registry (name,
description from the docstring's first line, parameters from the signature, risk), gated
by the policy and recorded in the audit like a built-in action. It runs when the policy
lets it: an ``async`` function is awaited, a plain one runs in a worker thread so it
cannot stall the event loop. Returning ``False`` or raising means it failed; returning a
string gives the audit its detail; returning an ``ActionResult`` says everything.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal, get_args

from pydantic import ValidationError

from watchkeeper.model.actions import ActionInfo, ActionRequest, ActionResult, ParamInfo, Risk
from watchkeeper.model.text import LOG_LINE, clean
from watchkeeper.remediation.actions import ActionContext

__all__ = ["CallableAction", "acting_as", "action_from_callable", "current_plugin"]

_PARAM_TYPES: dict[Any, Literal["int", "float", "str", "bool"]] = {
    int: "int",
    float: "float",
    str: "str",
    bool: "bool",
    "int": "int",
    "float": "float",
    "str": "str",
    "bool": "bool",
}
_CONVERT: dict[str, Callable[[Any], Any]] = {"int": int, "float": float, "str": str}

# The plugin whose code is running right now (register, start, stop, a bus handler), so an
# action made from an assignment can name the plugin it came from.
_CURRENT_PLUGIN: ContextVar[str | None] = ContextVar("watchkeeper_current_plugin", default=None)


def current_plugin() -> str | None:
    """The name of the plugin whose code is running in this task, if any."""
    return _CURRENT_PLUGIN.get()


@contextmanager
def acting_as(plugin: str) -> Iterator[None]:
    """Mark the code inside as ``plugin``'s (the loader wraps every call into a plugin)."""
    token = _CURRENT_PLUGIN.set(plugin)
    try:
        yield
    finally:
        _CURRENT_PLUGIN.reset(token)


def _kind(annotation: Any) -> Literal["int", "float", "str", "bool"] | None:
    try:
        return _PARAM_TYPES.get(annotation)
    except TypeError:  # an unhashable annotation: not one of ours
        return None


def _first_line(fn: Callable[..., Any]) -> str | None:
    doc = inspect.getdoc(fn)
    if not doc:
        return None
    line = clean(doc.strip().splitlines()[0], LOG_LINE, 200)
    return line or None


def _param_infos(signature: inspect.Signature | None) -> tuple[ParamInfo, ...]:
    if signature is None:
        return ()
    infos = []
    for param in signature.parameters.values():
        if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            continue
        kind = _kind(param.annotation) or "str"
        required = param.default is param.empty
        default = None if required else param.default
        if not isinstance(default, int | float | str | bool):
            default = None
        infos.append(
            ParamInfo(
                name=param.name,
                type=kind,
                description=f"{param.name} ({kind})",
                default=default,
                required=required,
            )
        )
    return tuple(infos)


def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn, eval_str=True)
    except (NameError, TypeError, ValueError, SyntaxError):
        try:
            return inspect.signature(fn)
        except (TypeError, ValueError):
            return None


class CallableAction:
    """An ``Action`` that calls a function: see the module docstring.

    ::

        action = CallableAction(flush_dns, name="flush_dns", risk="safe", source="dns")
        remediator.register_action(action)
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str,
        description: str | None = None,
        risk: Risk = "moderate",
        timeout: float = 30.0,
        source: str = "plugin",
    ) -> None:
        if not callable(fn):
            raise TypeError(f"action {name!r}: {fn!r} is not callable")
        if risk not in get_args(Risk):
            raise ValueError(f"action {name!r}: risk must be one of {', '.join(get_args(Risk))}")
        self.fn = fn
        signature = _signature(fn)
        # Parameters without a plain int/float/str/bool annotation are passed on unconverted.
        self._typed = {
            p.name
            for p in (signature.parameters.values() if signature else ())
            if _kind(p.annotation) is not None
        }
        try:
            self.info = ActionInfo(
                name=name,
                description=description or _first_line(fn) or f"plugin action {name}",
                target_kind="none",
                risk=risk,
                params=_param_infos(signature),
                timeout=timeout,
                source=source,
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise ValueError(
                f"cannot declare action {name!r} (names are lower-case letters, digits and _, "
                f"starting with a letter): {problems}"
            ) from None

    def __repr__(self) -> str:
        return f"CallableAction({self.info.name!r}, source={self.info.source!r})"

    async def validate(self, request: ActionRequest, ctx: ActionContext) -> str | None:
        declared = {param.name: param for param in self.info.params}
        unknown = sorted(set(request.params) - set(declared))
        if unknown:
            return f"{self.info.name} takes no parameter {', '.join(map(repr, unknown))}"
        missing = [p.name for p in self.info.params if p.required and p.name not in request.params]
        if missing:
            return f"{self.info.name} needs {', '.join(missing)}"
        try:
            self._arguments(request)
        except (TypeError, ValueError) as exc:
            return f"{self.info.name}: bad parameter: {exc}"
        return None

    def _arguments(self, request: ActionRequest) -> dict[str, Any]:
        arguments: dict[str, Any] = {}
        for param in self.info.params:
            if param.name not in request.params:
                continue
            value = request.params[param.name]
            if param.name not in self._typed:
                pass
            elif param.type == "bool":
                if not isinstance(value, bool):
                    raise ValueError(f"{param.name} must be true or false")
            elif param.type == "int" and isinstance(value, float) and not value.is_integer():
                raise ValueError(f"{param.name} must be a whole number")
            else:
                value = _CONVERT[param.type](value)
            arguments[param.name] = value
        return arguments

    async def execute(self, request: ActionRequest, ctx: ActionContext) -> ActionResult:
        arguments = self._arguments(request)
        if inspect.iscoroutinefunction(self.fn):
            result = await self.fn(**arguments)
        else:
            # A plain function may block (subprocess, file I/O): keep it off the event loop,
            # on the actions' own pool so it never takes a thread another concern needs.
            result = await ctx.run_blocking(self.fn, **arguments)
            if inspect.isawaitable(result):
                result = await result
        return _as_result(self.info.name, result)

    async def verify(
        self, request: ActionRequest, ctx: ActionContext, result: ActionResult
    ) -> bool | None:
        return None  # the function's own answer is all there is to go on


def _as_result(name: str, result: Any) -> ActionResult:
    if isinstance(result, ActionResult):
        return result
    if result is False:
        return ActionResult(ok=False, detail=f"{name} reported failure")
    if result is None or result is True:
        return ActionResult(ok=True, detail=f"{name} done")
    return ActionResult(ok=True, detail=clean(str(result), LOG_LINE, 300))


def action_from_callable(
    name: str,
    fn: Callable[..., Any],
    *,
    description: str | None = None,
    risk: Risk = "moderate",
    timeout: float = 30.0,
    source: str | None = None,
) -> CallableAction:
    """Declare ``fn`` as the action ``name``; ``source`` defaults to the plugin running now
    (or whose method ``fn`` is), else ``"plugin"``."""
    if source is None:
        owner = getattr(fn, "__self__", None)
        source = current_plugin() or getattr(owner, "name", None) or "plugin"
    return CallableAction(
        fn, name=name, description=description, risk=risk, timeout=timeout, source=str(source)
    )
