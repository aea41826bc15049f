"""Service managers: what the SensorAgent watches and the RemediatorAgent acts through.

Three backends share one protocol (:class:`ServiceManager`): ``process`` (programs
watchkeeper runs itself, exits seen the instant they happen), ``systemd`` (via
systemctl) and ``windows`` (via the Service Control Manager). None of them restarts a
service on its own: that is the remediator's decision.

Use::

    managers = build_managers(settings.services, on_event=publish, log_dir=logs)
    for manager in managers.values():
        await manager.start_watching()
"""

from __future__ import annotations

from watchkeeper.services.base import (
    EventSink,
    ServiceActionError,
    ServiceError,
    ServiceManager,
    ServicePermissionError,
    UnknownServiceError,
    deliver_event,
)
from watchkeeper.services.probes import ProbeResult, ProbeRunner, run_probe
from watchkeeper.services.process import ProcessServiceManager
from watchkeeper.services.registry import (
    DuplicateManagerError,
    ServiceManagerRegistry,
    build_managers,
)
from watchkeeper.services.scm import ScmApi, ScmError, WindowsServiceInfo
from watchkeeper.services.systemd import SystemdServiceManager, validate_unit_name
from watchkeeper.services.windows import WindowsServiceManager, validate_windows_service_name

__all__ = [
    "DuplicateManagerError",
    "EventSink",
    "ProbeResult",
    "ProbeRunner",
    "ProcessServiceManager",
    "ScmApi",
    "ScmError",
    "ServiceActionError",
    "ServiceError",
    "ServiceManager",
    "ServiceManagerRegistry",
    "ServicePermissionError",
    "SystemdServiceManager",
    "UnknownServiceError",
    "WindowsServiceInfo",
    "WindowsServiceManager",
    "build_managers",
    "deliver_event",
    "run_probe",
    "validate_unit_name",
    "validate_windows_service_name",
]
