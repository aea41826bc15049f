"""Alerts from outside: Prometheus Alertmanager's webhook payload as watchkeeper findings.

Alertmanager posts a group of alerts (webhook format version 4) to a receiver's URL each
time the group changes and again every ``repeat_interval``. Everything in it is untrusted
network input, so :class:`AlertmanagerPayload` bounds every size and :func:`findings_of`
keeps only cleaned labels. Each alert becomes one :class:`ExternalFinding`::

    payload = AlertmanagerPayload.model_validate(body)       # 422 on a bad body
    for finding in findings_of(payload, settings, mounts=("/", "/var"), here=names):
        ...                                                 # the engine applies them

A finding's fingerprint comes from Alertmanager's own (or from the labels when it sends
none), so a re-sent group updates its alerts instead of adding new ones, and a
``resolved`` alert resolves it. The label contract (see docs/alertmanager.md):

* ``severity``: ``critical`` / ``page`` are critical, ``warning`` a warning, ``info`` /
  ``none`` info; anything else, or no label, a warning.
* ``service``, ``systemd_unit`` or ``job`` naming a configured service makes the alert
  about that service (subject ``service:<name>``) and proposes its restart, as the rules
  do for a service failing its probe; ``mountpoint`` naming a watched filesystem makes it
  about that disk and proposes what the rules propose for a full disk.
* ``instance`` or ``host`` naming another machine: shown, never acted on here.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from watchkeeper.analysis.checks import Check
from watchkeeper.config import Settings
from watchkeeper.model.alerts import Severity, SuggestedAction, fingerprint_of
from watchkeeper.model.text import LABEL, PROMPT_DATA, clean

__all__ = [
    "ORIGIN",
    "AlertmanagerAlert",
    "AlertmanagerPayload",
    "ExternalFinding",
    "findings_of",
    "local_names",
    "severity_of",
]

ORIGIN = "alertmanager"
"""The ``source`` of every alert made here, and the rule name its proposals carry."""

#: Bounds on one webhook payload (Alertmanager's ``max_alerts`` can keep a group under
#: the first; ``truncatedAlerts`` then says how many it left out).
MAX_ALERTS = 500
MAX_LABELS = 64
MAX_LABEL_NAME = 128
MAX_LABEL_VALUE = 1024
MAX_TEXT = 4096
#: What is kept of a label value and an annotation once cleaned.
KEPT_VALUE = 256
KEPT_ANNOTATION = 300

_SEVERITIES = {
    "critical": Severity.CRITICAL,
    "page": Severity.CRITICAL,
    "warning": Severity.WARNING,
    "info": Severity.INFO,
    "none": Severity.INFO,
}
_ANNOTATIONS_READ = ("summary", "description")
_SERVICE_LABELS = ("service", "systemd_unit", "job")
_HOST_LABELS = ("instance", "host")
_FINGERPRINT = re.compile(r"^[0-9a-fA-F]{1,32}$")
_PORT = re.compile(r":\d{1,5}$")
_RESTART_CONFIDENCE = 0.6  # as for a service that fails its probe
_EVIDENCE_LABELS = 6  # labels copied into the evidence the LLM brief reads
_SAID_ELSEWHERE = frozenset({"alertname", "severity"})  # the summary and severity say them


def _check_labels(labels: dict[str, str], what: str) -> dict[str, str]:
    if len(labels) > MAX_LABELS:
        raise ValueError(f"{what}: at most {MAX_LABELS} entries, got {len(labels)}")
    for name, value in labels.items():
        if not name or len(name) > MAX_LABEL_NAME:
            raise ValueError(f"{what}: names must be 1-{MAX_LABEL_NAME} characters")
        if len(value) > MAX_LABEL_VALUE:
            raise ValueError(
                f"{what}: the value of {clean(name, LABEL)!r} is longer than "
                f"{MAX_LABEL_VALUE} characters"
            )
    return labels


def _check_texts(annotations: dict[str, str]) -> dict[str, str]:
    _check_labels({name: "" for name in annotations}, "annotations")
    for name, value in annotations.items():
        if len(value) > MAX_TEXT:
            raise ValueError(
                f"annotations: {clean(name, LABEL)!r} is longer than {MAX_TEXT} characters"
            )
    return annotations


class _Body(BaseModel):
    # Fields Alertmanager may add in a later release are ignored, not refused.
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class AlertmanagerAlert(_Body):
    """One alert of a webhook payload, as Alertmanager sends it."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = Field(None, alias="startsAt")
    ends_at: datetime | None = Field(None, alias="endsAt")
    generator_url: str = Field("", alias="generatorURL", max_length=MAX_TEXT)
    fingerprint: str = Field("", max_length=64)

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        return _check_labels(labels, "labels")

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, annotations: dict[str, str]) -> dict[str, str]:
        return _check_texts(annotations)


class AlertmanagerPayload(_Body):
    """The body of Alertmanager's webhook (format version 4).

    ``alerts`` holds the group's alerts, firing and resolved; the group's own fields
    (``groupLabels``, ``commonLabels`` ...) are read but each alert carries its labels."""

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str = Field("", max_length=MAX_TEXT)
    group_key: str = Field("", alias="groupKey", max_length=MAX_TEXT)
    truncated_alerts: int = Field(0, alias="truncatedAlerts", ge=0)
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field("", alias="externalURL", max_length=MAX_TEXT)
    alerts: list[AlertmanagerAlert] = Field(max_length=MAX_ALERTS)

    @field_validator("group_labels", "common_labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        return _check_labels(labels, "labels")

    @field_validator("common_annotations")
    @classmethod
    def _annotations(cls, annotations: dict[str, str]) -> dict[str, str]:
        return _check_texts(annotations)

    def compact(self) -> AlertmanagerPayload:
        """The payload with only what :func:`findings_of` reads, each alert's identity
        fixed first: what is passed on (the bus keeps recent messages) stays small."""
        alerts = [
            alert.model_copy(
                update={
                    "fingerprint": _source_fingerprint(alert),
                    "labels": {k: v[: KEPT_VALUE * 2] for k, v in alert.labels.items()},
                    "annotations": {
                        k: alert.annotations[k][: KEPT_ANNOTATION * 2]
                        for k in _ANNOTATIONS_READ
                        if k in alert.annotations
                    },
                    "generator_url": alert.generator_url[: KEPT_VALUE * 2],
                }
            )
            for alert in self.alerts
        ]
        return self.model_copy(
            update={
                "alerts": alerts,
                "group_labels": {},
                "common_labels": {},
                "common_annotations": {},
            }
        )


@dataclass(frozen=True)
class ExternalFinding:
    """One Alertmanager alert as the engine applies it: ``check`` holds what a rule's
    finding would (subject, severity, summary, evidence, proposals), ``firing`` whether it
    fires or resolves, ``labels`` its cleaned labels."""

    fingerprint: str
    firing: bool
    check: Check
    labels: dict[str, str]


def severity_of(labels: Mapping[str, str]) -> Severity:
    """The watchkeeper severity of an alert's ``severity`` label (a warning when unknown)."""
    return _SEVERITIES.get(labels.get("severity", "").strip().lower(), Severity.WARNING)


def _host_part(value: str) -> str:
    """``web1:9100`` -> ``web1``; ``[::1]:9100`` -> ``::1``; a bare address as it is."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") == 1:
        return _PORT.sub("", value)
    return value


def local_names(host: str, hostname: str, addresses: Iterable[str] = ()) -> frozenset[str]:
    """Every name an ``instance`` label may give this machine: its host id, its host name
    (long and short), loopback, and the addresses of its interfaces."""
    names = {"localhost", "localhost.localdomain", "127.0.0.1", "::1"}
    for name in (host, hostname, *addresses):
        name = name.strip().lower()
        if name:
            names.add(name.partition("%")[0])
            if not _is_address(name):
                names.add(name.partition(".")[0])
    return frozenset(names)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return False
    return True


def _elsewhere(labels: Mapping[str, str], here: frozenset[str]) -> str | None:
    """The other machine the alert's ``instance``/``host`` label names, if it names one."""
    for key in _HOST_LABELS:
        value = labels.get(key)
        if not value:
            continue
        name = _host_part(value)
        if name in here or (not _is_address(name) and name.partition(".")[0] in here):
            continue
        return clean(value, LABEL)
    return None


def _service_named(labels: Mapping[str, str], settings: Settings) -> str | None:
    """The configured service a ``service``/``systemd_unit``/``job`` label names."""
    for key in _SERVICE_LABELS:
        value = labels.get(key, "").strip()
        if not value:
            continue
        for spec in settings.services:
            names = {spec.name, f"{spec.name}.service"}
            if spec.unit:
                names.update({spec.unit, spec.unit.removesuffix(".service")})
            if value in names:
                return spec.name
    return None


def _source_fingerprint(alert: AlertmanagerAlert) -> str:
    """Alertmanager's fingerprint of ``alert``, or one of its labels when it sent none."""
    if _FINGERPRINT.match(alert.fingerprint):
        return alert.fingerprint.lower()
    canonical = "\x00".join(f"{k}\x01{v}" for k, v in sorted(alert.labels.items()))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _fingerprint(alert: AlertmanagerAlert) -> str:
    return fingerprint_of(ORIGIN, _source_fingerprint(alert))


def _kept(labels: Mapping[str, str]) -> dict[str, str]:
    return {
        clean(k, LABEL, MAX_LABEL_NAME): clean(v, PROMPT_DATA, KEPT_VALUE)
        for k, v in labels.items()
    }


def _proposals(
    labels: Mapping[str, str],
    settings: Settings,
    mounts: tuple[str, ...],
    alertname: str,
    restartable: Callable[[str], bool],
    evidence: dict[str, Any],
) -> tuple[str | None, tuple[SuggestedAction, ...]]:
    """The subject the alert is about here (None: nothing watchkeeper manages) and what
    the rules would propose for it."""
    service = _service_named(labels, settings)
    if service is not None:
        evidence["service"] = service
        if not restartable(service):
            evidence["not_proposed"] = {
                "restart_service": "systemd restarts it itself, or gave up on it"
            }
            return f"service:{service}", ()
        restart = SuggestedAction(
            action="restart_service",
            target=service,
            target_kind="service",
            reason=f"Alertmanager alert {alertname} fires for service {service}",
            source=ORIGIN,
            confidence=_RESTART_CONFIDENCE,
        )
        return f"service:{service}", (restart,)
    mount = labels.get("mountpoint", "").strip()
    if mount and mount in mounts:
        evidence["mount"] = mount
        cleanup = tuple(
            SuggestedAction(
                action=action,
                target=mount,
                target_kind="path",
                reason=f"Alertmanager alert {alertname}: {why}",
                source=ORIGIN,
                confidence=confidence,
            )
            for action, why, confidence in (
                ("clean_directory", f"{mount} is filling up", 0.6),
                ("rotate_log", f"logs on {mount} may be large", 0.5),
            )
        )
        return f"disk:{mount}", cleanup
    return None, ()


def findings_of(
    payload: AlertmanagerPayload,
    settings: Settings,
    *,
    mounts: tuple[str, ...],
    here: frozenset[str],
    restartable: Callable[[str], bool] = lambda name: True,
) -> list[ExternalFinding]:
    """One finding per alert of ``payload``. ``mounts`` are the filesystems watched here,
    ``here`` this machine's names (:func:`local_names`), ``restartable`` whether the rules
    would propose restarting a service (not one systemd restarts itself)."""
    out: list[ExternalFinding] = []
    for alert in payload.alerts:
        labels = alert.labels
        alertname = clean(labels.get("alertname"), LABEL)
        notes = {
            k: clean(alert.annotations.get(k), PROMPT_DATA, KEPT_ANNOTATION)
            for k in _ANNOTATIONS_READ
            if alert.annotations.get(k)
        }
        # What decides, then the labels, then the rest: the LLM brief reads the first few.
        evidence: dict[str, Any] = {}
        elsewhere = _elsewhere(labels, here)
        subject: str | None = None
        suggested: tuple[SuggestedAction, ...] = ()
        if elsewhere is not None:
            evidence["not_acted_on"] = f"about {elsewhere}, not this host"
            evidence["other_host"] = elsewhere
        else:
            subject, suggested = _proposals(
                labels, settings, mounts, alertname, restartable, evidence
            )
        instance = clean(labels.get("instance") or labels.get("host"), LABEL)
        if subject is None:
            subject = f"alertmanager:{alertname}" + (f"@{instance}" if instance != "?" else "")
        kept = _kept(labels)
        for key in sorted(k for k in kept if k not in _SAID_ELSEWHERE)[:_EVIDENCE_LABELS]:
            evidence.setdefault(f"label_{key}"[:32], kept[key])
        if "description" in notes:
            evidence["description"] = notes["description"]
        evidence.update(origin=ORIGIN, alertname=alertname)
        if "summary" in notes:
            evidence["summary"] = notes["summary"]
        if alert.starts_at is not None and alert.starts_at.year > 1:
            evidence["starts_at"] = alert.starts_at.isoformat()
        if alert.generator_url:
            evidence["generator_url"] = clean(alert.generator_url, LABEL, KEPT_VALUE)
        text = notes.get("summary") or notes.get("description") or ""
        summary = f"Alertmanager: {alertname}" + (f" ({instance})" if instance != "?" else "")
        if text:
            summary += f": {text}"
        check = Check(
            ORIGIN,
            subject,
            "external",
            severity_of(labels),
            clean(summary, PROMPT_DATA, 200),
            evidence,
            suggested,
        )
        out.append(ExternalFinding(_fingerprint(alert), alert.status == "firing", check, kept))
    return out
