"""What the Windows Service Control Manager (SCM) says and how it fails: the vocabulary the
``windows`` backend and the real SCM client (:mod:`watchkeeper.services._scm_ctypes`) share.

Both import it, neither imports the other at module level; a fake SCM in a test needs only
these names::

    class FakeScm:  # satisfies ScmApi
        def query(self, service: str) -> WindowsServiceInfo:
            raise ScmError(ERROR_SERVICE_DOES_NOT_EXIST, "The specified service does not exist.")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "ERROR_ACCESS_DENIED",
    "ERROR_SERVICE_ALREADY_RUNNING",
    "ERROR_SERVICE_DOES_NOT_EXIST",
    "ERROR_SERVICE_NEVER_STARTED",
    "ERROR_SERVICE_NOT_ACTIVE",
    "ScmApi",
    "ScmError",
    "WindowsServiceInfo",
]

ERROR_ACCESS_DENIED = 5
ERROR_SERVICE_ALREADY_RUNNING = 1056
ERROR_SERVICE_DOES_NOT_EXIST = 1060
ERROR_SERVICE_NOT_ACTIVE = 1062
ERROR_SERVICE_NEVER_STARTED = 1077  # the exit code of a service that simply never ran


@dataclass(frozen=True)
class WindowsServiceInfo:
    """What the SCM says about one service; ``status`` uses psutil's words
    (``running``, ``stopped``, ``start_pending``, ``stop_pending``, ``paused``...)."""

    name: str
    status: str
    pid: int | None = None
    display_name: str = ""
    exit_code: int | None = None


class ScmError(Exception):
    """A failed SCM call; ``winerror`` is the Windows error code (5 = access denied)."""

    def __init__(self, winerror: int, message: str) -> None:
        super().__init__(message)
        self.winerror = winerror
        self.message = message


class ScmApi(Protocol):
    """The three SCM operations the backend needs. Calls block; the manager runs them in
    a worker thread. Failures raise :class:`ScmError`."""

    def query(self, service: str) -> WindowsServiceInfo: ...

    def start(self, service: str) -> None: ...

    def stop(self, service: str) -> None: ...
