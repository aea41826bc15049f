"""What every action is, declared once: the policy, the LLM prompt, the UI and the audit
all read these declarations.

An ``ActionInfo`` says what an action does (in words a model and a person both read), what
kind of target it takes, how risky it is, and which parameters it accepts, each with its
type and bounds. The built-in actions are declared here; plugins declare theirs the same
way when they register.

Parameters are checked against these declarations in one place, ``ActionInfo.check_params``,
before a request is recorded anywhere or reaches the action::

    params = info.check_params({"grace": 10})   # {"grace": 10.0}, or ParamError
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from watchkeeper.model.alerts import TargetKind

__all__ = [
    "BUILTIN_ACTIONS",
    "KILL_GRACE_MAX",
    "ActionInfo",
    "ParamError",
    "ParamInfo",
    "ParamValue",
    "Risk",
]

Risk = Literal["safe", "moderate", "dangerous"]
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

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
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

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
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


#: Who a process target is: filled from the sample (rules, the model) or the CLI.
_PROCESS_IDENTITY = (
    ParamInfo(
        name="create_time",
        type="float",
        description="when the process started (unix time): a reused pid is never hit",
        minimum=0,
        maximum=1e11,
    ),
    ParamInfo(
        name="name",
        type="str",
        description="the process's name when it was proposed, for the audit",
        max_length=1024,
    ),
)
#: The longest SIGTERM grace: a kill holds an action slot this long at most.
KILL_GRACE_MAX = 60.0

BUILTIN_ACTIONS: tuple[ActionInfo, ...] = (
    ActionInfo(
        name="restart_service",
        description="Restart a watched service through its service manager.",
        target_kind="service",
        risk="moderate",
        timeout=60,
    ),
    ActionInfo(
        name="start_service",
        description="Start a watched service that is stopped or has failed.",
        target_kind="service",
        risk="safe",
        timeout=60,
    ),
    ActionInfo(
        name="kill_process",
        description="Stop a process: SIGTERM, then SIGKILL after a grace period.",
        target_kind="process",
        risk="dangerous",
        params=(
            ParamInfo(
                name="grace",
                type="float",
                description="seconds before SIGKILL",
                default=5.0,
                minimum=0,
                maximum=KILL_GRACE_MAX,
            ),
        ),
        identity=_PROCESS_IDENTITY,
        # The grace, then a short wait for SIGKILL to land.
        timeout=KILL_GRACE_MAX + 15,
    ),
    ActionInfo(
        name="renice_process",
        description="Lower a process's CPU priority so others get the CPU first.",
        target_kind="process",
        risk="safe",
        params=(
            ParamInfo(
                name="niceness",
                type="int",
                description="new nice value, 1 to 19",
                default=10,
                minimum=1,
                maximum=19,
            ),
        ),
        identity=_PROCESS_IDENTITY,
    ),
    ActionInfo(
        name="clean_directory",
        description="Delete old or large files inside a configured cleanup directory.",
        target_kind="path",
        risk="moderate",
        params=(
            ParamInfo(
                name="older_than_days",
                type="float",
                description="delete files older than this",
                default=7.0,
                minimum=0,
                maximum=36500,
            ),
            ParamInfo(
                name="larger_than_mb",
                type="float",
                description="or larger than this",
                default=None,
                minimum=0,
                maximum=16 * 1024 * 1024,
            ),
        ),
        timeout=120,
    ),
    ActionInfo(
        name="rotate_log",
        description="Rotate a configured log file: move it aside compressed and start a new one.",
        target_kind="path",
        risk="safe",
        timeout=120,
    ),
    ActionInfo(
        name="drop_caches",
        description="Ask the Linux kernel to drop clean page caches (root only).",
        target_kind="none",
        risk="moderate",
    ),
    ActionInfo(
        name="run_script",
        description="Run one of the configured remediation scripts, without a shell.",
        target_kind="none",
        risk="dangerous",
        params=(
            ParamInfo(
                name="script",
                type="str",
                description="name of a configured script",
                required=True,
                max_length=128,
            ),
        ),
        timeout=300,
    ),
)
