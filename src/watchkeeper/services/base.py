"""The vocabulary every service backend speaks: states, statuses, events, errors, protocol.

A *service manager* is one backend (``"process"``, ``"systemd"``, ``"windows"``) that
owns a set of configured services. The SensorAgent reads it (``list``, ``probe``) and
listens to its events; the RemediatorAgent acts through it (``start``, ``stop``,
``restart``). Backends never restart anything on their own: whether, when and how often
to restart is the remediator's policy (allowlist, cooldown, crash-loop give-up).

Use::

    managers = build_managers(config.services, on_event=publish)
    for manager in managers.values():
        await manager.start_watching()
    status = await managers["process"].restart("web")
"""

from __future__ import annotations

import builtins
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from watchkeeper.model.services import ServiceEvent, ServiceStatus

__all__ = [
    "EventSink",
    "ServiceActionError",
    "ServiceError",
    "ServiceManager",
    "ServicePermissionError",
    "UnknownServiceError",
    "deliver_event",
]

_log = logging.getLogger(__name__)


EventSink = Callable[[ServiceEvent], Awaitable[None] | None]
"""Where managers send events: a plain function or a coroutine function."""


async def deliver_event(sink: EventSink | None, event: ServiceEvent) -> None:
    """Hand ``event`` to ``sink``, awaiting it if it is async.

    Errors in the sink are logged and swallowed: a broken subscriber must never stop a
    manager from watching its services.
    """
    if sink is None:
        return
    try:
        result = sink(event)
        if inspect.isawaitable(result):
            await result
    except Exception:
        _log.exception("service event handler failed for %s %s", event.kind, event.name)


class ServiceError(Exception):
    """Base of the errors service managers raise; ``service`` names the service."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(message)
        self.service = service
        self.message = message


class UnknownServiceError(ServiceError, LookupError):
    """The service is not configured for this manager, or the backend does not know it."""


class ServicePermissionError(ServiceError):
    """The action needs rights watchkeeper lacks; the message says which, in plain words."""


class ServiceActionError(ServiceError):
    """The action was tried and failed (program missing, timed out, backend refused...)."""


@runtime_checkable
class ServiceManager(Protocol):
    """One service backend; every method is about services configured for it.

    Lifecycle: build (no I/O) -> ``await start_watching()`` -> use -> ``await aclose()``.
    ``start``/``stop``/``restart`` return the status right after the action; starting a
    running service or stopping a stopped one is a no-op that returns the status.
    Errors: ``UnknownServiceError``, ``ServicePermissionError``, ``ServiceActionError``.
    """

    @property
    def name(self) -> str:
        """The backend's name: ``"process"``, ``"systemd"`` or ``"windows"``."""
        ...

    async def list(self) -> builtins.list[ServiceStatus]:
        """Status of every configured service, in config order."""
        ...

    async def status(self, name: str) -> ServiceStatus:
        """Status of one service (its probe is not run: see ``probe``)."""
        ...

    async def start(self, name: str) -> ServiceStatus: ...

    async def stop(self, name: str) -> ServiceStatus: ...

    async def restart(self, name: str) -> ServiceStatus: ...

    async def probe(self, name: str) -> ServiceStatus:
        """Run the service's health probe now and return the status with its result."""
        ...

    async def start_watching(self) -> None:
        """Begin watching (adopt pidfiles, start polling); idempotent."""
        ...

    async def aclose(self) -> None:
        """Stop watching and release every task and handle; idempotent."""
        ...
