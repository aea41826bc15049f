"""The real :class:`~watchkeeper.services.scm.ScmApi`: psutil and advapi32 via ctypes.

Importing this module is safe anywhere: advapi32 is loaded on first use, and only on
Windows. Elsewhere every call raises ``ScmError`` with a plain explanation.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from collections.abc import Iterator
from typing import Any

from watchkeeper.services.scm import ScmError, WindowsServiceInfo

__all__ = ["Win32ScmApi"]

_ERROR_NOT_SUPPORTED = 50
_ERROR_SERVICE_SPECIFIC_ERROR = 1066
_SC_MANAGER_CONNECT = 0x0001
_SERVICE_QUERY_STATUS = 0x0004
_SERVICE_START = 0x0010
_SERVICE_STOP = 0x0020
_SERVICE_CONTROL_STOP = 0x0001
_SC_STATUS_PROCESS_INFO = 0

_DWORD = ctypes.c_uint32


class _ServiceStatus(ctypes.Structure):
    _fields_ = [
        ("dwServiceType", _DWORD),
        ("dwCurrentState", _DWORD),
        ("dwControlsAccepted", _DWORD),
        ("dwWin32ExitCode", _DWORD),
        ("dwServiceSpecificExitCode", _DWORD),
        ("dwCheckPoint", _DWORD),
        ("dwWaitHint", _DWORD),
    ]


class _ServiceStatusProcess(ctypes.Structure):
    _fields_ = [
        *_ServiceStatus._fields_,
        ("dwProcessId", _DWORD),
        ("dwServiceFlags", _DWORD),
    ]


def _not_windows() -> ScmError:
    return ScmError(
        _ERROR_NOT_SUPPORTED,
        f"managing Windows services needs Windows; this host runs {sys.platform}",
    )


class Win32ScmApi:
    """Status from ``psutil.win_service_get``; start/stop via OpenSCManagerW,
    OpenServiceW, StartServiceW and ControlService; exit codes via QueryServiceStatusEx."""

    def __init__(self) -> None:
        self._lib: Any = None

    def _advapi32(self) -> Any:
        if sys.platform != "win32":
            raise _not_windows()
        if self._lib is None:
            lib = ctypes.WinDLL("advapi32", use_last_error=True)
            handle = ctypes.c_void_p
            lib.OpenSCManagerW.argtypes = [ctypes.c_wchar_p, ctypes.c_wchar_p, _DWORD]
            lib.OpenSCManagerW.restype = handle
            lib.OpenServiceW.argtypes = [handle, ctypes.c_wchar_p, _DWORD]
            lib.OpenServiceW.restype = handle
            lib.StartServiceW.argtypes = [handle, _DWORD, ctypes.c_void_p]
            lib.StartServiceW.restype = ctypes.c_int
            lib.ControlService.argtypes = [handle, _DWORD, ctypes.POINTER(_ServiceStatus)]
            lib.ControlService.restype = ctypes.c_int
            lib.QueryServiceStatusEx.argtypes = [
                handle, ctypes.c_int, ctypes.c_void_p, _DWORD, ctypes.POINTER(_DWORD),
            ]  # fmt: skip
            lib.QueryServiceStatusEx.restype = ctypes.c_int
            lib.CloseServiceHandle.argtypes = [handle]
            lib.CloseServiceHandle.restype = ctypes.c_int
            self._lib = lib
        return self._lib

    @staticmethod
    def _last_error(what: str) -> ScmError:
        if sys.platform != "win32":
            return _not_windows()
        code = ctypes.get_last_error()
        return ScmError(code, f"{what}: {ctypes.FormatError(code).strip()}")

    @contextlib.contextmanager
    def _service(self, service: str, access: int) -> Iterator[Any]:
        lib = self._advapi32()
        scm = lib.OpenSCManagerW(None, None, _SC_MANAGER_CONNECT)
        if not scm:
            raise self._last_error("opening the service control manager")
        try:
            handle = lib.OpenServiceW(scm, service, access)
            if not handle:
                raise self._last_error(f"opening service {service}")
            try:
                yield handle
            finally:
                lib.CloseServiceHandle(handle)
        finally:
            lib.CloseServiceHandle(scm)

    def _exit_code(self, service: str) -> int | None:
        lib = self._advapi32()
        status = _ServiceStatusProcess()
        needed = _DWORD(0)
        with self._service(service, _SERVICE_QUERY_STATUS) as handle:
            ok = lib.QueryServiceStatusEx(
                handle,
                _SC_STATUS_PROCESS_INFO,
                ctypes.byref(status),
                ctypes.sizeof(status),
                ctypes.byref(needed),
            )
            if not ok:
                raise self._last_error(f"querying service {service}")
        if status.dwWin32ExitCode == _ERROR_SERVICE_SPECIFIC_ERROR:
            return int(status.dwServiceSpecificExitCode)
        return int(status.dwWin32ExitCode)

    def query(self, service: str) -> WindowsServiceInfo:
        if sys.platform != "win32":
            raise _not_windows()
        import psutil

        try:
            info = psutil.win_service_get(service).as_dict()
        except psutil.NoSuchProcess:
            raise ScmError(1060, f"service {service} does not exist") from None
        except psutil.AccessDenied:
            raise ScmError(5, f"reading service {service} was denied") from None
        try:
            exit_code = self._exit_code(service)
        except ScmError:
            exit_code = None  # status without the exit code is still worth reporting
        return WindowsServiceInfo(
            name=str(info.get("name") or service),
            status=str(info.get("status") or "unknown"),
            pid=int(info["pid"]) if info.get("pid") else None,
            display_name=str(info.get("display_name") or ""),
            exit_code=exit_code,
        )

    def start(self, service: str) -> None:
        lib = self._advapi32()
        with self._service(service, _SERVICE_START) as handle:
            if not lib.StartServiceW(handle, 0, None):
                raise self._last_error(f"starting service {service}")

    def stop(self, service: str) -> None:
        lib = self._advapi32()
        status = _ServiceStatus()
        with self._service(service, _SERVICE_STOP) as handle:
            if not lib.ControlService(handle, _SERVICE_CONTROL_STOP, ctypes.byref(status)):
                raise self._last_error(f"stopping service {service}")
