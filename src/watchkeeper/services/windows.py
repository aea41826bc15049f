"""The ``windows`` backend: services run by the Windows Service Control Manager (SCM).

The backend talks to the SCM only through a small
:class:`~watchkeeper.services.scm.ScmApi`: ``query`` (psutil's Windows service API),
``start`` and ``stop`` (advapi32 through ctypes, in :mod:`watchkeeper.services._scm_ctypes`).
Anything else that speaks ``ScmApi`` can stand in, which is how this backend is tested away
from Windows::

    manager = WindowsServiceManager(specs, on_event=publish)          # the real SCM
    manager = WindowsServiceManager(specs, scm=FakeScm(), poll_interval=0.1)

Nothing Windows-only is imported by this module; on another OS every SCM call fails with
a plain "needs Windows" status detail. Status is polled, as for systemd.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable, Sequence

from watchkeeper.config.services import ServiceSpec
from watchkeeper.model.services import ServiceState, ServiceStatus
from watchkeeper.model.text import SERVICE_DETAIL, clean
from watchkeeper.services._polling import Action, PolledServiceManager
from watchkeeper.services.base import (
    EventSink,
    ServiceActionError,
    ServicePermissionError,
    UnknownServiceError,
)
from watchkeeper.services.probes import ProbeRunner, run_probe
from watchkeeper.services.scm import (
    ERROR_ACCESS_DENIED,
    ERROR_SERVICE_ALREADY_RUNNING,
    ERROR_SERVICE_DOES_NOT_EXIST,
    ERROR_SERVICE_NEVER_STARTED,
    ERROR_SERVICE_NOT_ACTIVE,
    ScmApi,
    ScmError,
    WindowsServiceInfo,
)

__all__ = [
    "WindowsServiceManager",
    "validate_windows_service_name",
]

# Service key names cannot hold '/' or '\\'; we also refuse anything outside plain ASCII
# so look-alike names cannot pass for real ones.
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9 _.@$#+-]{0,255}")
_STATE_MAP = {
    "running": ServiceState.RUNNING,
    "start_pending": ServiceState.STARTING,
    "continue_pending": ServiceState.STARTING,
    "stop_pending": ServiceState.STOPPED,
    "stopped": ServiceState.STOPPED,
    "paused": ServiceState.STOPPED,
    "pause_pending": ServiceState.STOPPED,
}
_SETTLE_INTERVAL = 0.25  # seconds between status checks while waiting for start/stop


def validate_windows_service_name(name: str) -> str:
    """Return ``name`` if it is a plausible SCM service key name, else raise ``ValueError``."""
    if not _NAME_RE.fullmatch(name) or name != name.strip():
        raise ValueError(
            f"invalid Windows service name {name!r}: use ASCII letters, digits, spaces and "
            "_ . @ $ # + - only, starting with a letter, digit or underscore"
        )
    return name


class WindowsServiceManager(PolledServiceManager):
    """Reads and drives the ``manager = "windows"`` services through the SCM.

    ``scm`` defaults to the real Windows API; ``unit`` (or ``name``) is the service key
    name. Starting and stopping services usually needs an administrator: without it the
    manager raises ``ServicePermissionError`` saying so.
    """

    name = "windows"

    def __init__(
        self,
        specs: Iterable[ServiceSpec],
        on_event: EventSink | None = None,
        *,
        scm: ScmApi | None = None,
        poll_interval: float = 5.0,
        clock: Callable[[], float] = time.time,
        probe_runner: ProbeRunner = run_probe,
    ) -> None:
        if scm is None:
            from watchkeeper.services._scm_ctypes import Win32ScmApi

            scm = Win32ScmApi()
        self._scm: ScmApi = scm
        super().__init__(
            specs, on_event, poll_interval=poll_interval, clock=clock, probe_runner=probe_runner
        )

    def _check_spec(self, spec: ServiceSpec) -> None:
        try:
            validate_windows_service_name(spec.target)
        except ValueError as exc:
            raise ValueError(f"service {spec.name}: {exc}") from None

    def _query_all(self, specs: Sequence[ServiceSpec]) -> dict[str, WindowsServiceInfo | ScmError]:
        answers: dict[str, WindowsServiceInfo | ScmError] = {}
        for spec in specs:
            try:
                answers[spec.name] = self._scm.query(spec.target)
            except ScmError as exc:
                answers[spec.name] = exc
        return answers

    async def _fetch(self, specs: Sequence[ServiceSpec]) -> dict[str, ServiceStatus]:
        answers = await asyncio.to_thread(self._query_all, specs)
        return {spec.name: self._to_status(spec, answers[spec.name]) for spec in specs}

    def _to_status(self, spec: ServiceSpec, answer: WindowsServiceInfo | ScmError) -> ServiceStatus:
        common = {"name": spec.name, "manager": self.name, "critical": spec.critical}
        if isinstance(answer, ScmError):
            if answer.winerror == ERROR_SERVICE_DOES_NOT_EXIST:
                detail = f"Windows service {spec.target} is not installed"
            else:
                detail = f"cannot query Windows service {spec.target}: {answer.message}"
            return ServiceStatus(
                state=ServiceState.UNKNOWN, detail=clean(detail, SERVICE_DETAIL), **common
            )
        state = _STATE_MAP.get(answer.status, ServiceState.UNKNOWN)
        code = answer.exit_code
        failed_exit = code not in (None, 0, ERROR_SERVICE_NEVER_STARTED)
        if state is ServiceState.STOPPED and answer.status == "stopped" and failed_exit:
            state = ServiceState.FAILED
        detail = f"{spec.target}: {clean(answer.status, SERVICE_DETAIL, 40)}"
        if failed_exit:
            detail += f", last exit code {code}"
        return ServiceStatus(
            state=state,
            pid=answer.pid if state in (ServiceState.RUNNING, ServiceState.STARTING) else None,
            last_exit_code=code if failed_exit else None,
            detail=detail,
            **common,
        )

    async def _act(self, action: Action, spec: ServiceSpec) -> None:
        if action in ("stop", "restart"):
            await self._call(spec, "stop", ERROR_SERVICE_NOT_ACTIVE)
            await self._settle(spec, "stopped", spec.stop_timeout)
        if action in ("start", "restart"):
            await self._call(spec, "start", ERROR_SERVICE_ALREADY_RUNNING)
            await self._settle(spec, "running", spec.start_timeout)

    async def _call(self, spec: ServiceSpec, verb: str, harmless: int) -> None:
        target = validate_windows_service_name(spec.target)
        operation = self._scm.start if verb == "start" else self._scm.stop
        try:
            await asyncio.to_thread(operation, target)
        except ScmError as exc:
            if exc.winerror == harmless:
                return  # already in the wanted state
            verbing = "starting" if verb == "start" else "stopping"
            if exc.winerror == ERROR_ACCESS_DENIED:
                raise ServicePermissionError(
                    spec.name, f"{verbing} Windows service {target} needs administrator rights"
                ) from None
            if exc.winerror == ERROR_SERVICE_DOES_NOT_EXIST:
                raise UnknownServiceError(
                    spec.name, f"Windows service {target} is not installed"
                ) from None
            raise ServiceActionError(
                spec.name,
                f"{verbing} Windows service {target} failed: {clean(exc.message, SERVICE_DETAIL)}",
            ) from None

    async def _settle(self, spec: ServiceSpec, wanted: str, timeout: float) -> None:
        """Wait until the SCM reports ``wanted``; pending states are normal on the way."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                info = await asyncio.to_thread(self._scm.query, spec.target)
            except ScmError as exc:
                raise ServiceActionError(spec.name, clean(exc.message, SERVICE_DETAIL)) from None
            if info.status == wanted:
                return
            if wanted == "running" and info.status == "stopped":
                raise ServiceActionError(
                    spec.name,
                    f"Windows service {spec.target} stopped while starting"
                    + (f" (exit code {info.exit_code})" if info.exit_code else ""),
                )
            if time.monotonic() >= deadline:
                raise ServiceActionError(
                    spec.name,
                    f"Windows service {spec.target} is still {info.status} after {timeout:g} s",
                )
            await asyncio.sleep(_SETTLE_INTERVAL)
