"""The incident brief: everything the model is allowed to see about one incident.

The AnalyzerAgent condenses an incident into an :class:`IncidentBrief` and hands it to
the advisor. Every entity the model may refer to carries a short id of our choosing
(findings ``E1``, processes ``P1``, services ``S1``, paths ``D1``) so that the model
never has to (and never can) name a real pid, unit or file: ids are mapped back to real
targets on our side, after validation.

Untrusted text fields are sanitised when the brief is built (see
:func:`~watchkeeper.model.text.clean`), so every consumer of a brief (the
prompt, logs, the web UI) sees the same clean labels::

    brief = IncidentBrief(
        host={"cpu_percent": 97.0, "mem_percent": 41.0},
        findings=[BriefFinding(id="E1", severity="critical", subject="cpu",
                               summary="CPU above 95% for 5 min", evidence={"cpu": 97.0})],
        processes=[BriefProcess(id="P1", label="stress", cpu_percent=96.0, rss_mb=12.0,
                                age_s=320.0)],
        actions=[BriefAction(name="kill_process", description="Send SIGTERM",
                             target_kind="process", risk="dangerous")],
    )
"""

from __future__ import annotations

import math
from collections import Counter
from functools import partial
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from watchkeeper.model.actions import ACTION_NAME_PATTERN, Risk
from watchkeeper.model.alerts import TargetKind
from watchkeeper.model.text import PROMPT_DATA, clean

__all__ = [
    "BriefAction",
    "BriefFinding",
    "BriefPath",
    "BriefProcess",
    "BriefService",
    "IncidentBrief",
]


def _clean(max_len: int) -> AfterValidator:
    return AfterValidator(partial(clean, profile=PROMPT_DATA, max_len=max_len))


def _finite(value: float | str) -> float | str:
    # NaN/inf would render as invalid JSON in the prompt; keep them visible as text.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return clean(value, PROMPT_DATA, max_len=64)
    return value


ShortText = Annotated[str, _clean(24)]
Label = Annotated[str, _clean(64)]
Sentence = Annotated[str, _clean(200)]
PathLabel = Annotated[str, _clean(120)]
EvidenceKey = Annotated[str, _clean(32)]
EvidenceValue = Annotated[float | str, AfterValidator(_finite)]
Measure = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BriefFinding(_Frozen):
    """One thing the rules/statistics noticed, e.g. "CPU above 95% for 5 min"."""

    id: Annotated[str, Field(pattern=r"^E[1-9][0-9]{0,3}$")]
    severity: ShortText
    """Free text, conventionally ``info``, ``warning`` or ``critical``."""
    subject: Label
    summary: Sentence
    evidence: dict[EvidenceKey, EvidenceValue] = Field(default_factory=dict)
    """A few measured values backing the finding, e.g. ``{"cpu_percent": 97.2}``."""


class BriefProcess(_Frozen):
    """A process the model may discuss or target (by id only)."""

    id: Annotated[str, Field(pattern=r"^P[1-9][0-9]{0,3}$")]
    label: Label
    """Sanitised process name or a short cmdline; untrusted."""
    cpu_percent: Measure
    rss_mb: Measure
    age_s: Measure


class BriefService(_Frozen):
    """A service the model may discuss or target (by id only)."""

    id: Annotated[str, Field(pattern=r"^S[1-9][0-9]{0,3}$")]
    label: Label
    state: ShortText
    """e.g. ``running``, ``failed``, ``stopped``."""


class BriefPath(_Frozen):
    """A file-system path the model may target with a path action (by id only)."""

    id: Annotated[str, Field(pattern=r"^D[1-9][0-9]{0,3}$")]
    label: PathLabel


class BriefAction(_Frozen):
    """A registered action the model may recommend; mirrors the action registry."""

    name: Annotated[str, Field(pattern=ACTION_NAME_PATTERN)]
    description: Sentence
    target_kind: TargetKind
    risk: Risk


class IncidentBrief(_Frozen):
    """The model's whole view of one incident; ids are unique across the brief."""

    host: dict[EvidenceKey, Annotated[float, Field(allow_inf_nan=False)]] = Field(
        default_factory=dict
    )
    """A few host-wide numbers, e.g. ``{"cpu_percent": 97.0, "load1": 3.2}``."""
    findings: list[BriefFinding] = Field(default_factory=list)
    processes: list[BriefProcess] = Field(default_factory=list)
    services: list[BriefService] = Field(default_factory=list)
    paths: list[BriefPath] = Field(default_factory=list)
    actions: list[BriefAction] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ids_are_unique(self) -> IncidentBrief:
        ids = [
            item.id
            for group in (self.findings, self.processes, self.services, self.paths)
            for item in group
        ]
        duplicates = sorted(i for i, n in Counter(ids).items() if n > 1)
        if duplicates:
            raise ValueError(f"duplicate ids in brief: {', '.join(duplicates)}")
        names = [a.name for a in self.actions]
        dup_names = sorted(name for name, n in Counter(names).items() if n > 1)
        if dup_names:
            raise ValueError(f"duplicate action names in brief: {', '.join(dup_names)}")
        return self

    def target_ids(self, kind: TargetKind) -> list[str]:
        """The ids an action of ``kind`` may target (``["none"]`` for kind ``none``)."""
        if kind == "process":
            return [p.id for p in self.processes]
        if kind == "service":
            return [s.id for s in self.services]
        if kind == "path":
            return [d.id for d in self.paths]
        return ["none"]
