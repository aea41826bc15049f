"""Shared types of watchkeeper: the vocabulary every other package speaks.

Everything above imports from here; this package imports nothing else of watchkeeper,
so a type defined here can be used anywhere without creating a cycle. Submodules by
concern: :mod:`.alerts` (alerts, severities, what an action targets), :mod:`.analysis`
(what an analysis concluded), :mod:`.incidents` (correlated alerts as one problem),
:mod:`.actions` (action declarations, requests, results
and audit records, the one risk vocabulary), :mod:`.metrics` (samples and metric
declarations), :mod:`.services` (service state, status and events), :mod:`.activity`
(activity-log severities), :mod:`.text` (cleaning untrusted text), :mod:`.secret`
(secret settings) and :mod:`.datacheck` (bounded JSON); the bus topics and the system
snapshot have their own modules here too.

The common names are importable from the package itself::

    from watchkeeper.model import LABEL, Alert, MetricsSample, Severity, clean
"""

from __future__ import annotations

from watchkeeper.model.actions import (
    ACTION_NAME_PATTERN,
    PARAM_NAME_PATTERN,
    RISKS,
    STR_MAX_DEFAULT,
    ActionInfo,
    ActionOutcome,
    ActionRecord,
    ActionRequest,
    ActionResult,
    ParamError,
    ParamInfo,
    ParamValue,
    Proposer,
    Risk,
)
from watchkeeper.model.activity import (
    ActivitySeverity,
)
from watchkeeper.model.alerts import (
    SEVERITY_RANK,
    Alert,
    AlertState,
    Severity,
    SuggestedAction,
    TargetKind,
    fingerprint_of,
)
from watchkeeper.model.analysis import AnalysisResult
from watchkeeper.model.incidents import Incident, IncidentMember, IncidentState
from watchkeeper.model.metrics import (
    SERVICE_METRIC_SPECS,
    TCP_STATES,
    BatteryStatus,
    CpuMetrics,
    DiskIO,
    DiskMetrics,
    FanReading,
    FilesystemUsage,
    GpuDevice,
    GpuMetrics,
    InterfaceRates,
    MemoryMetrics,
    MetricCatalog,
    MetricSpec,
    MetricsSample,
    NetworkMetrics,
    ProcessGroup,
    ProcessInfo,
    ProcessMetrics,
    SystemMetrics,
    TemperatureReading,
)
from watchkeeper.model.services import (
    EventKind,
    ServiceEvent,
    ServiceState,
    ServiceStatus,
)
from watchkeeper.model.text import (
    LABEL,
    LOG_LINE,
    NOTIFICATION,
    PROMPT_DATA,
    SERVICE_DETAIL,
    TERMINAL,
    TextProfile,
    clean,
)

__all__ = [
    "ACTION_NAME_PATTERN",
    "LABEL",
    "LOG_LINE",
    "NOTIFICATION",
    "PARAM_NAME_PATTERN",
    "PROMPT_DATA",
    "RISKS",
    "SERVICE_DETAIL",
    "SERVICE_METRIC_SPECS",
    "SEVERITY_RANK",
    "STR_MAX_DEFAULT",
    "TCP_STATES",
    "TERMINAL",
    "ActionInfo",
    "ActionOutcome",
    "ActionRecord",
    "ActionRequest",
    "ActionResult",
    "ActivitySeverity",
    "Alert",
    "AlertState",
    "AnalysisResult",
    "BatteryStatus",
    "CpuMetrics",
    "DiskIO",
    "DiskMetrics",
    "EventKind",
    "FanReading",
    "FilesystemUsage",
    "GpuDevice",
    "GpuMetrics",
    "Incident",
    "IncidentMember",
    "IncidentState",
    "InterfaceRates",
    "MemoryMetrics",
    "MetricCatalog",
    "MetricSpec",
    "MetricsSample",
    "NetworkMetrics",
    "ParamError",
    "ParamInfo",
    "ParamValue",
    "ProcessGroup",
    "ProcessInfo",
    "ProcessMetrics",
    "Proposer",
    "Risk",
    "ServiceEvent",
    "ServiceState",
    "ServiceStatus",
    "Severity",
    "SuggestedAction",
    "SystemMetrics",
    "TargetKind",
    "TemperatureReading",
    "TextProfile",
    "clean",
    "fingerprint_of",
]
