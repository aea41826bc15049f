"""Holding service managers by name, and building them from the config's specs.

``build_managers`` groups the ``[[services]]`` specs by their ``manager`` and builds one
backend per group; backend modules are imported only when a spec needs them::

    managers = build_managers(settings.services, on_event=publish, log_dir=logs)
    await managers["process"].restart("web")

The result maps backend name to manager; ``ServiceManagerRegistry`` is the same mapping
with the project's registry rule: registering a second manager under a taken name fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from watchkeeper.config.services import ManagerKind, ServiceSpec
from watchkeeper.services.base import EventSink, ServiceManager

if TYPE_CHECKING:
    from watchkeeper.services.scm import ScmApi

__all__ = ["DuplicateManagerError", "ServiceManagerRegistry", "build_managers"]


class DuplicateManagerError(ValueError):
    """A manager with this name is already registered."""


class ServiceManagerRegistry:
    """Service managers by name (``"process"``, ``"systemd"``, ...); duplicates are errors.

    Use: ``registry.register(manager)``; registering a second ``"process"`` manager raises
    :class:`DuplicateManagerError`.
    """

    def __init__(self) -> None:
        self._managers: dict[str, ServiceManager] = {}

    def register(self, manager: ServiceManager) -> ServiceManager:
        if manager.name in self._managers:
            raise DuplicateManagerError(f"a service manager named {manager.name!r} is registered")
        self._managers[manager.name] = manager
        return manager

    def get(self, name: str) -> ServiceManager:
        try:
            return self._managers[name]
        except KeyError:
            raise KeyError(f"no service manager named {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._managers

    def __iter__(self) -> Iterator[str]:
        return iter(self._managers)

    def __len__(self) -> int:
        return len(self._managers)

    def as_dict(self) -> dict[str, ServiceManager]:
        return dict(self._managers)


def build_managers(
    specs: Iterable[ServiceSpec],
    on_event: EventSink | None = None,
    *,
    log_dir: Path | None = None,
    systemctl: str | Path = "systemctl",
    poll_interval: float = 5.0,
    scm: ScmApi | None = None,
    clock: Callable[[], float] = time.time,
) -> dict[str, ServiceManager]:
    """One manager per backend the specs use, keyed by backend name; no I/O, no tasks.

    Raises ``ValueError`` when two specs share a name (service names are global: events
    and the remediator address services by name alone) or a spec is invalid for its
    backend (e.g. a unit name systemd would not accept). ``log_dir`` is for the process
    backend, ``systemctl`` for systemd, ``scm`` for windows (default: the real SCM);
    ``poll_interval`` is how often systemd/windows status is polled once watching.
    """
    groups: dict[ManagerKind, list[ServiceSpec]] = {}
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ValueError(f"service {spec.name} is configured twice")
        seen.add(spec.name)
        groups.setdefault(spec.manager, []).append(spec)

    registry = ServiceManagerRegistry()
    if "process" in groups:
        from watchkeeper.services.process import ProcessServiceManager

        registry.register(
            ProcessServiceManager(groups["process"], on_event, log_dir=log_dir, clock=clock)
        )
    if "systemd" in groups:
        from watchkeeper.services.systemd import SystemdServiceManager

        registry.register(
            SystemdServiceManager(
                groups["systemd"],
                on_event,
                systemctl=systemctl,
                poll_interval=poll_interval,
                clock=clock,
            )
        )
    if "windows" in groups:
        from watchkeeper.services.windows import WindowsServiceManager

        registry.register(
            WindowsServiceManager(
                groups["windows"], on_event, scm=scm, poll_interval=poll_interval, clock=clock
            )
        )
    return registry.as_dict()
