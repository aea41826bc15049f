"""Actions as data: what an action is (declaration), what is asked of it (request),
what it returned (result) and what the audit keeps of it (record).

One vocabulary for everyone who talks about actions: the remediation engine, the policy,
the analyzer's advice, the LLM brief, the web API and plugins. Risk is one of
:data:`RISKS`; an action's name matches :data:`ACTION_NAME_PATTERN` wherever it appears.

An ``ActionInfo`` says what an action does (in words a model and a person both read), what
kind of target it takes, how risky it is, and which parameters it accepts, each with its
type and bounds. Parameters are checked against it in one place,
``ActionInfo.check_params``, before a request is recorded anywhere or reaches the action::

    params = info.check_params({"grace": 10})   # {"grace": 10.0}, or ParamError

Records go out on the bus as ``remediation.<outcome>`` (``remediation.pending``,
``remediation.started``, ``remediation.succeeded``, ``remediation.failed``,
``remediation.refused``, ``remediation.dry_run``, ``remediation.gave_up``...) and are kept
in storage, so "what did it do, why, and did it work" always has an answer.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from watchkeeper.model.alerts import TargetKind

__all__ = [
    "ACTION_NAME_PATTERN",
    "PARAM_NAME_PATTERN",
    "RISKS",
    "STR_MAX_DEFAULT",
    "ActionInfo",
    "ActionOutcome",
    "ActionRecord",
    "ActionRequest",
    "ActionResult",
    "ParamError",
    "ParamInfo",
    "ParamValue",
    "Proposer",
    "Risk",
]

Risk = Literal["safe", "moderate", "dangerous"]
"""How much an action can break: the policy's ``max_risk`` and approvals are set in it."""
RISKS: tuple[Risk, ...] = get_args(Risk)

#: What an action's name looks like, for registered actions, the LLM brief and the API.
ACTION_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
#: What a declared parameter's name looks like.
PARAM_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"

ParamValue = int | float | str | bool

#: How long a parameter name may be before it is refused unread.
_NAME_MAX = 64
#: The longest string parameter when a declaration does not say.
STR_MAX_DEFAULT = 256


class ParamError(ValueError):
    """A request's parameters do not match the action's declaration; the message says how."""


def _shown(value: object, limit: int = 40) -> str:
    """``value`` short enough for a refusal message: attackers choose these."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ParamInfo(BaseModel):
    """One declared parameter: its type and the bounds every caller is held to.

    ``minimum``/``maximum`` bound numbers (inclusive; numbers are always finite),
    ``max_length`` bounds strings. The API, the CLI and the dashboard show these, and
    ``check`` enforces them, so what is shown and what is enforced are the same.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=PARAM_NAME_PATTERN)
    type: Literal["int", "float", "str", "bool"]
    description: str
    default: ParamValue | None = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    max_length: int = Field(STR_MAX_DEFAULT, ge=1, le=4096)

    @model_validator(mode="after")
    def _sane_bounds(self) -> ParamInfo:
        for bound in (self.minimum, self.maximum):
            if bound is not None and not math.isfinite(bound):
                raise ValueError(f"{self.name}: bounds must be finite numbers")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"{self.name}: minimum is above maximum")
        return self

    def check(self, value: object) -> ParamValue:
        """``value`` as this parameter's type, or ``ParamError`` saying what is wrong."""
        if self.type == "bool":
            if not isinstance(value, bool):
                raise ParamError(f"{self.name} must be true or false, not {_shown(value)}")
            return value
        if self.type == "str":
            if not isinstance(value, str):
                raise ParamError(f"{self.name} must be a string, not {_shown(value)}")
            if len(value) > self.max_length:
                raise ParamError(f"{self.name} is longer than {self.max_length} characters")
            return value
        return self._number(value)

    def _number(self, value: object) -> int | float:
        if isinstance(value, str):
            value = self._parsed(value)  # "15" from a command line is 15
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParamError(f"{self.name} must be a number, not {_shown(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ParamError(f"{self.name} must be a finite number, not {_shown(value)}")
        number: int | float
        if self.type == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ParamError(f"{self.name} must be a whole number, not {_shown(value)}")
            number = int(value)
        else:
            try:
                number = float(value)
            except OverflowError:
                raise ParamError(f"{self.name} is too large: {_shown(value)}") from None
        low = -math.inf if self.minimum is None else self.minimum
        high = math.inf if self.maximum is None else self.maximum
        if not low <= number <= high:
            raise ParamError(f"{self.name} must be {self.range_text()}, not {_shown(value)}")
        return number

    def _parsed(self, text: str) -> object:
        """A number written as text, or ``text`` itself when it is not one."""
        if len(text) > _NAME_MAX:
            return text
        try:
            return int(text) if self.type == "int" else float(text)
        except ValueError:
            return text

    def range_text(self) -> str:
        """``between 0 and 60``: the bounds in words, for messages and help."""
        if self.minimum is not None and self.maximum is not None:
            return f"between {self.minimum:g} and {self.maximum:g}"
        if self.minimum is not None:
            return f"at least {self.minimum:g}"
        if self.maximum is not None:
            return f"at most {self.maximum:g}"
        return "a finite number"


class ActionInfo(BaseModel):
    """The declaration of one action.

    ``identity`` declares the fields watchkeeper itself adds to say *which* target is
    meant (a process's start time and name, so a reused pid is never hit). They are
    checked exactly like ``params`` but are not offered to a person or a model to choose.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=ACTION_NAME_PATTERN)
    description: str = Field(min_length=1, max_length=200)
    target_kind: TargetKind
    risk: Risk
    params: tuple[ParamInfo, ...] = ()
    identity: tuple[ParamInfo, ...] = ()
    timeout: float = Field(30.0, gt=0)
    source: str = "builtin"

    def check_params(self, params: Mapping[str, Any]) -> dict[str, ParamValue]:
        """``params`` checked against the declaration: no unknown names, no nested values,
        every value of its declared type and within its bounds, every required one there.
        Absent (``None``) values are left out so the action's default applies. Raises
        ``ParamError`` with one message naming what is wrong."""
        if not isinstance(params, Mapping):
            raise ParamError(f"{self.name}: params must be an object")
        declared = {p.name: p for p in (*self.params, *self.identity)}
        unknown = [k for k in params if k not in declared]
        if unknown:
            names = ", ".join(_shown(k, _NAME_MAX) for k in unknown[:5])
            takes = ", ".join(p.name for p in self.params) or "no parameters"
            raise ParamError(f"{self.name} takes no parameter {names} (it takes: {takes})")
        checked: dict[str, ParamValue] = {}
        for name, value in params.items():
            if value is None:
                continue
            try:
                checked[name] = declared[name].check(value)
            except ParamError as exc:
                raise ParamError(f"{self.name}: bad parameter: {exc}") from None
        missing = [p.name for p in self.params if p.required and p.name not in checked]
        if missing:
            raise ParamError(f"{self.name} needs {', '.join(missing)}")
        return checked


Proposer = Literal["rule", "llm", "user", "plugin", "mcp", "alertmanager"]
"""Who asked for an action: a rule, the model, a person, a plugin, an MCP client (an
assistant: its proposals always wait for a person), or the rules for an alert that came
from Prometheus Alertmanager (the same policy as a rule's)."""

# What a record keeps of its parameters at most: they were checked against the action's
# declaration before anything was recorded, so these only bite on a record from elsewhere
# (an old database, a plugin's own record) and keep every reader of the audit working.
_PARAMS_KEEP = 32
_TEXT_KEEP = 1024
_DROPPED = "(not a plain value; not kept)"


def _plain(value: Any) -> Any:
    """``value`` if it is a plain JSON scalar, else a short placeholder."""
    if value is None or isinstance(value, bool | int | str):
        return value[:_TEXT_KEEP] if isinstance(value, str) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return _DROPPED


class ActionOutcome(StrEnum):
    PENDING = "pending"  # waiting for a person's approval
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # ran and verified
    FAILED = "failed"  # ran and did not work (or could not be verified)
    REFUSED = "refused"  # the policy said no
    REJECTED = "rejected"  # a person said no
    DRY_RUN = "dry_run"  # said what it would do, changed nothing
    TIMED_OUT = "timed_out"


class ActionRecord(BaseModel):
    """What was attempted, by whom, why, and what came of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    action: str
    target: str | None = None
    target_kind: str = "none"
    params: dict[str, Any] = Field(default_factory=dict)
    proposer: Proposer
    proposed_by: str = ""  # rule name, model name, user or plugin name
    reason: str = ""
    alert_id: str | None = None
    fingerprint: str | None = None
    outcome: ActionOutcome
    detail: str = ""
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    duration_s: float | None = None
    verified: bool | None = None
    risk: Risk | Literal["unknown"] = "safe"
    """``unknown`` when the action was not registered (a request for a name nobody has)."""

    @field_validator("params", mode="before")
    @classmethod
    def _plain_params(cls, value: Any) -> dict[str, Any]:
        """Flat, finite, bounded: one odd record must never stop the audit being read."""
        if not isinstance(value, dict):
            return {}
        items = list(value.items())[:_PARAMS_KEEP]
        return {str(key)[:64]: _plain(item) for key, item in items}

    @field_validator("risk", mode="before")
    @classmethod
    def _known_risk(cls, value: Any) -> str:
        """A risk word from outside the vocabulary (an old database) reads as ``unknown``."""
        return value if value in RISKS else "unknown"


@dataclass(frozen=True)
class ActionRequest:
    """What someone (rule, LLM, user, plugin) asks to be done."""

    action: str
    target: str | None
    proposer: Proposer
    params: dict[str, Any] = field(default_factory=dict)
    target_kind: str = "none"
    proposed_by: str = ""
    reason: str = ""
    alert_id: str | None = None
    fingerprint: str | None = None
    confidence: float = 1.0
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class ActionResult:
    ok: bool
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)
