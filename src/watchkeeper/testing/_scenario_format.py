"""The scenario file format: what a scenario may say, and the values it gives at a moment.

Every field is described in docs/scenarios.md. Fields added after the first eighteen
scenarios are optional, and their defaults keep older files meaning what they meant.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from watchkeeper.config import Settings, deep_merge

__all__ = [
    "BASE",
    "Change",
    "Expect",
    "ExpectedAlert",
    "ExpectedIncidents",
    "FlapSpec",
    "ForbiddenPair",
    "LLMReply",
    "LLMSpec",
    "LogLine",
    "ProcChange",
    "ProcSpec",
    "Scenario",
    "ScenarioError",
    "ServiceSpecLite",
    "get_path",
    "load_scenarios",
    "noise_at",
    "scenario_settings",
    "set_path",
    "start_time",
    "values_at",
]


class ScenarioError(ValueError):
    """A scenario file that cannot be read or does not fit the format; names the file."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _Window(_Model):
    """A time window, optionally periodic: on from ``from`` (until ``until``); with
    ``every``, on only for the first ``for`` seconds of each ``every``-second period."""

    from_s: float = Field(0.0, alias="from")
    until_s: float | None = Field(None, alias="until")
    every: float | None = Field(None, gt=0)
    for_s: float | None = Field(None, alias="for", ge=0)

    @model_validator(mode="after")
    def _periodic(self) -> _Window:
        if self.for_s is not None and self.every is None:
            raise ValueError("'for' needs 'every' (the period it is on within)")
        return self

    def active(self, t: float) -> bool:
        if t < self.from_s or (self.until_s is not None and t >= self.until_s):
            return False
        if self.every is None:
            return True
        on = self.every if self.for_s is None else self.for_s
        return (t - self.from_s) % self.every < on


class Change(_Window):
    """Values set while the window is on; keys may be dotted paths (``disks./.percent``)."""

    set: dict[str, Any]


ProcState = Literal["R", "S", "D", "Z", "T"]
STATUS_OF_STATE: dict[str, str] = {
    "R": "running",
    "S": "sleeping",
    "D": "disk-sleep",
    "Z": "zombie",
    "T": "stopped",
}


class ProcChange(_Window):
    set: dict[Literal["cpu", "rss_mb", "state"], Any]

    @model_validator(mode="after")
    def _values(self) -> ProcChange:
        for key, value in self.set.items():
            if key == "state" and value not in STATUS_OF_STATE:
                raise ValueError(f"state {value!r} is not one of R, S, D, Z, T")
            if key != "state" and (not isinstance(value, int | float) or value < 0):
                raise ValueError(f"{key} must be a number at or above 0, not {value!r}")
        return self


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
    state: ProcState = "R"
    ppid: int | None = None
    threads: int = Field(4, ge=1)
    kernel: bool = False
    changes: list[ProcChange] = Field(default_factory=list)
    exited_children_cpu: float = Field(0.0, ge=0)
    sawtooth_mb: float = Field(0.0, ge=0)
    sawtooth_period: float = Field(60.0, gt=0)
    noise: dict[Literal["cpu", "rss_mb"], float] = Field(default_factory=dict)


class FlapSpec(_Model):
    """A crash loop: each ``every``-second period from ``from`` (until ``until``) ends with
    the service failed for ``down_for`` seconds, after which it is restarted."""

    every: float = Field(gt=0)
    down_for: float = Field(gt=0)
    exit_code: int = 1
    from_s: float = Field(0.0, alias="from")
    until_s: float | None = Field(None, alias="until")

    @model_validator(mode="after")
    def _fits(self) -> FlapSpec:
        if self.down_for >= self.every:
            raise ValueError("flap: down_for must be shorter than every")
        return self


class ServiceSpecLite(_Model):
    name: str
    state: str = "running"
    critical: bool = False
    healthy: bool | None = None
    pid: int | None = None
    from_s: float = Field(0.0, alias="from")
    until_s: float | None = Field(None, alias="until")
    probe_detail: str | None = None
    restarts: int = Field(0, ge=0)
    exit_code: int | None = None
    exit_signal: int | None = None
    depends_on: list[str] = Field(default_factory=list)
    paths: list[str] = Field(default_factory=list)
    manager: Literal["systemd", "process", "windows"] = "systemd"
    flap: FlapSpec | None = None


class LogLine(_Model):
    at: float = 0.0
    service: str | None = None
    line: str


class ExpectedAlert(_Model):
    rule: str
    severity: str | None = None
    subject: str | None = None
    summary_contains: str | None = None
    intermittent: bool | None = None


class ForbiddenPair(_Model):
    action: str
    target: str  # process:<pid>, service:<name>, path:<mount>


class ExpectedIncidents(_Model):
    max: int | None = Field(None, ge=0)
    root_rule: str | None = None
    root_subject: str | None = None


class Expect(_Model):
    verdict: str
    alerts: list[ExpectedAlert] = Field(default_factory=list)
    absent_rules: list[str] = Field(default_factory=list)
    max_firings: dict[str, int] = Field(default_factory=dict)
    allowed_actions: list[str] = Field(default_factory=list)
    forbidden_actions: list[str] = Field(default_factory=list)
    forbidden_targets: list[str] = Field(default_factory=list)
    forbidden_pairs: list[ForbiddenPair] = Field(default_factory=list)
    incidents: ExpectedIncidents | None = None
    max_proposals: dict[str, int] = Field(default_factory=dict)


class LLMReply(_Model):
    mode: Literal["ok", "low_confidence", "malformed", "cut", "slow"] = "ok"
    delay_s: float = Field(0.0, ge=0)


class LLMSpec(_Model):
    """The scripted model's answers: its verdict, actions (targets written
    ``process:<pid>``, ``service:<name>``, ``path:<mount>``), hostile ones a manipulated
    model might emit, and how each reply comes back (``replies``; the last repeats)."""

    verdict: str | None = None
    actions: list[dict[str, Any]] = Field(default_factory=list)
    hostile: list[dict[str, Any]] = Field(default_factory=list)
    replies: list[LLMReply] = Field(default_factory=list)


class Scenario(_Model):
    name: str
    description: str = ""
    steps: int = Field(30, ge=1)
    interval: float = Field(5.0, gt=0)
    hour: int = Field(14, ge=0, le=23)
    settings: dict[str, Any] = Field(default_factory=dict)
    base: dict[str, Any] = Field(default_factory=dict)
    changes: list[Change] = Field(default_factory=list)
    alternate: dict[str, list[float]] = Field(default_factory=dict)  # value by step, cycling
    ramp: dict[str, tuple[float, float]] = Field(default_factory=dict)  # first → last step
    noise: dict[str, float] = Field(default_factory=dict)
    processes: list[ProcSpec] = Field(default_factory=list)
    services: list[ServiceSpecLite] = Field(default_factory=list)
    logs: list[LogLine] = Field(default_factory=list)
    expect: Expect
    llm: LLMSpec = Field(default_factory=LLMSpec)
    path: str = ""


BASE: dict[str, Any] = {
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
# Families whose second path segment is a name that may itself hold dots (a mount, a NIC).
_NAMED = ("disks", "nets", "gpus")


def _split(path: str) -> list[str]:
    head, dot, rest = path.partition(".")
    if not dot:
        return [head]
    if head in _NAMED and "." in rest:
        name, _, leaf = rest.rpartition(".")
        return [head, name, leaf]
    return [head, *rest.split(".")]


def _child(node: Any, key: str) -> Any:
    if isinstance(node, list):
        return node[int(key)]
    return node[key]


def get_path(values: dict[str, Any], path: str) -> Any:
    """``values`` at a dotted ``path`` (``"disks./.percent"``, ``"gpus.0.util"``)."""
    node: Any = values
    for key in _split(path):
        node = _child(node, key)
    return node


def set_path(values: dict[str, Any], path: str, value: Any) -> None:
    """Set ``value`` at a dotted ``path`` in place, making dicts on the way as needed."""
    keys = _split(path)
    node: Any = values
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if isinstance(node, list):
        node[int(keys[-1])] = value
    else:
        node[keys[-1]] = value


def _apply(values: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    # Copies, so a later dotted write never reaches into the scenario's own data.
    plain = {k: copy.deepcopy(v) for k, v in updates.items() if "." not in k}
    out = deep_merge(values, plain) if plain else values
    for key, value in updates.items():
        if "." in key:
            set_path(out, key, copy.deepcopy(value))
    return out


def noise_at(seed: str, path: str, step: int, amplitude: float) -> float:
    """Deterministic noise in ``[-amplitude, amplitude]`` for one value at one step."""
    digest = hashlib.sha256(f"{seed}\0{path}\0{step}".encode()).digest()
    unit = int.from_bytes(digest[:8], "big") / 2**64
    return amplitude * (2 * unit - 1)


_PERCENTS = ("cpu", "memory", "swap", "iowait", "steal")


def _clamp(path: str, value: float) -> float:
    value = max(0.0, value)
    leaf = _split(path)[-1]
    if path in _PERCENTS or leaf in ("percent", "inodes_percent", "util"):
        value = min(100.0, value)
    return value


def values_at(scenario: Scenario, step: int, t: float) -> dict[str, Any]:
    """The host values at ``step`` (``t`` seconds in): base, alternate, ramp, changes,
    then noise, in that order."""
    values = _apply(copy.deepcopy(BASE), scenario.base)
    for key, cycle in scenario.alternate.items():
        set_path(values, key, cycle[step % len(cycle)])
    for key, (first, last) in scenario.ramp.items():
        set_path(values, key, first + (last - first) * step / max(1, scenario.steps - 1))
    for change in scenario.changes:
        if change.active(t):
            values = _apply(values, change.set)
    for key, amplitude in scenario.noise.items():
        value = float(get_path(values, key)) + noise_at(scenario.name, key, step, amplitude)
        set_path(values, key, _clamp(key, value))
    return values


def load_scenarios(directory: Path) -> list[Scenario]:
    """Every ``*.json`` scenario in ``directory``, by file name; ``ScenarioError`` names the
    file that does not parse or fit."""
    out = []
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            scenario = Scenario.model_validate(data)
        except (OSError, ValueError, ValidationError) as exc:
            first = str(exc).splitlines()
            raise ScenarioError(f"{path.name}: {' '.join(first[:3])}") from None
        out.append(scenario.model_copy(update={"path": path.name}))
    return out


def _service_specs(scenario: Scenario) -> list[dict[str, Any]]:
    """The scenario's services as configured ``[[services]]`` (last entry of a name wins
    for depends_on/paths; critical when any entry says so)."""
    specs: dict[str, dict[str, Any]] = {}
    for s in scenario.services:
        spec: dict[str, Any] = {"name": s.name, "manager": s.manager}
        if s.manager == "process":
            spec["pidfile"] = f"/run/{s.name}.pid"
        else:
            spec["unit"] = s.name if s.manager == "windows" else f"{s.name}.service"
        spec["critical"] = s.critical or specs.get(s.name, {}).get("critical", False)
        spec["depends_on"] = s.depends_on or specs.get(s.name, {}).get("depends_on", [])
        spec["paths"] = s.paths or specs.get(s.name, {}).get("paths", [])
        specs[s.name] = spec
    return list(specs.values())


def scenario_settings(scenario: Scenario) -> Settings:
    """Built-in defaults with the scenario's overrides (no file, no environment); the
    scenario's services are its configured services unless its settings name their own."""
    defaults = Settings.model_validate({}).model_dump(mode="json")
    overrides = dict(scenario.settings)
    if "services" not in overrides and scenario.services:
        overrides["services"] = _service_specs(scenario)
    return Settings.model_validate(deep_merge(defaults, overrides))


def start_time(scenario: Scenario) -> float:
    """A local time on a fixed day at the scenario's hour, so expected patterns apply."""
    return time.mktime((2026, 3, 10, scenario.hour, 0, 0, 0, 0, -1))
