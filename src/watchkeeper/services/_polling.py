"""What the systemd and Windows backends share: they can only *ask* for status.

Neither systemctl nor the Windows service API offers us a cheap stream of events, so
these backends poll: one batched status query per ``poll_interval`` while watching, and
one per call to ``list``/``status``. Events are derived by comparing each answer with the
previous one. A subclass writes two methods: ``_fetch`` (statuses for some specs) and
``_act`` (start/stop/restart one spec). A backend that can also be *told* about changes
(systemd over D-Bus) calls ``_refresh`` for the services it heard about and narrows
``_poll_specs`` to what still needs polling. When a service fails, ``_last_words`` (if the
backend has any: systemd's journal) is read once and kept on its status and exit event.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Literal

from watchkeeper.config.services import ServiceSpec
from watchkeeper.model.services import (
    EventKind,
    ServiceEvent,
    ServiceState,
    ServiceStatus,
    telling_lines,
)
from watchkeeper.model.text import SERVICE_DETAIL, clean
from watchkeeper.services.base import EventSink, UnknownServiceError, deliver_event
from watchkeeper.services.probes import ProbeRunner, run_probe

__all__ = ["Action", "PolledServiceManager"]

_log = logging.getLogger(__name__)

Action = Literal["start", "stop", "restart"]
_UP = (ServiceState.RUNNING, ServiceState.STARTING)
_DOWN = (ServiceState.STOPPED, ServiceState.FAILED)


class PolledServiceManager(ABC):
    """Base of backends that learn about their services by asking, every ``poll_interval``."""

    name: str = "polled"

    def __init__(
        self,
        specs: Iterable[ServiceSpec],
        on_event: EventSink | None = None,
        *,
        poll_interval: float = 5.0,
        clock: Callable[[], float] = time.time,
        probe_runner: ProbeRunner = run_probe,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        self._specs: dict[str, ServiceSpec] = {}
        for spec in specs:
            if spec.manager != self.name:
                raise ValueError(f"service {spec.name} is for manager {spec.manager!r}")
            if spec.name in self._specs:
                raise ValueError(f"service {spec.name} is configured twice")
            self._check_spec(spec)
            self._specs[spec.name] = spec
        self._on_event = on_event
        self._poll_interval = poll_interval
        self._clock = clock
        self._probe_runner = probe_runner
        self._last: dict[str, ServiceStatus] = {}
        self._health: dict[str, tuple[bool, str]] = {}
        self._expecting: dict[str, Action] = {}
        self._locks = {name: asyncio.Lock() for name in self._specs}
        self._poller: asyncio.Task[None] | None = None
        self._closed = False
        self._view = asyncio.Lock()  # one fetch-and-compare at a time: answers stay in order
        self._words: dict[str, list[str]] = {}  # service -> its last words, while failed

    # ------------------------------------------------------------ for subclasses

    def _check_spec(self, spec: ServiceSpec) -> None:  # noqa: B027 - optional hook
        """Reject a spec the backend cannot use (e.g. an invalid unit name)."""

    @abstractmethod
    async def _fetch(self, specs: Sequence[ServiceSpec]) -> dict[str, ServiceStatus]:
        """Current status of each spec, keyed by service name; never raises for one
        unreachable service (it gets state ``unknown`` and a detail instead)."""

    @abstractmethod
    async def _act(self, action: Action, spec: ServiceSpec) -> None:
        """Carry out ``action``; raise the typed service errors on failure."""

    async def _last_words(self, spec: ServiceSpec) -> builtins.list[str]:
        """The last lines a failed service logged, cleaned (none by default)."""
        return []

    def _poll_specs(self) -> builtins.list[ServiceSpec]:
        """The specs the poll loop asks about (all, unless events cover some)."""
        return builtins.list(self._specs.values())

    async def _refresh(self, specs: Sequence[ServiceSpec]) -> builtins.list[ServiceStatus]:
        """Ask about ``specs`` now and emit what changed."""
        async with self._view:
            statuses = await self._fetch(specs)
            return [await self._observe(statuses[spec.name]) for spec in specs]

    # ------------------------------------------------------------ the protocol

    async def list(self) -> builtins.list[ServiceStatus]:
        return await self._refresh(builtins.list(self._specs.values()))

    async def status(self, name: str) -> ServiceStatus:
        return (await self._refresh([self._spec(name)]))[0]

    async def start(self, name: str) -> ServiceStatus:
        return await self._do("start", name)

    async def stop(self, name: str) -> ServiceStatus:
        return await self._do("stop", name)

    async def restart(self, name: str) -> ServiceStatus:
        return await self._do("restart", name)

    async def probe(self, name: str) -> ServiceStatus:
        """Run the spec's probe if the service is up; emits healthy/unhealthy on change."""
        spec = self._spec(name)
        status = await self.status(name)
        if spec.probe is None or status.state not in _UP:
            return status
        ok, detail = await self._probe_runner(spec.probe)
        previous = self._health.get(name)
        self._health[name] = (ok, detail)
        if previous is None or previous[0] is not ok:
            await self._emit(status, "healthy" if ok else "unhealthy", detail=detail)
        return status.model_copy(update={"healthy": ok, "probe_detail": detail})

    async def start_watching(self) -> None:
        """Start the poll loop (one batched query per ``poll_interval``); idempotent."""
        if self._poller is None and not self._closed and self._specs:
            self._poller = asyncio.create_task(self._poll_loop(), name=f"poll {self.name}")

    async def aclose(self) -> None:
        self._closed = True
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller

    # ------------------------------------------------------------ internals

    def _spec(self, name: str) -> ServiceSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownServiceError(
                name, f"no {self.name} service named {name!r} is configured"
            ) from None

    async def _do(self, action: Action, name: str) -> ServiceStatus:
        spec = self._spec(name)
        async with self._locks[name]:
            await self.status(name)  # a baseline, so the action's effect shows as events
            self._expecting[name] = action
            try:
                await self._act(action, spec)
                return await self.status(name)
            finally:
                self._expecting.pop(name, None)

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                specs = self._poll_specs()
                if specs:
                    await self._refresh(specs)
            except Exception:
                _log.exception("polling %s services failed", self.name)

    async def _observe(self, current: ServiceStatus) -> ServiceStatus:
        """Remember ``current`` and emit the events its difference from the last one implies."""
        name = current.name
        health = self._health.get(name)
        if current.state not in _UP:
            self._health.pop(name, None)
        elif health is not None:
            current = current.model_copy(update={"healthy": health[0], "probe_detail": health[1]})
        if current.state is ServiceState.UNKNOWN:
            return current  # a failed query says nothing; keep comparing with the last answer
        if current.state is ServiceState.FAILED:
            words = self._words.get(name)
            if words is None:
                try:
                    words = await self._last_words(self._specs[name])
                except Exception:
                    _log.exception("reading the last log lines of %s failed", name)
                    words = []
                self._words[name] = words
            if words:
                current = current.model_copy(update={"journal": words})
        else:
            self._words.pop(name, None)
        previous = self._last.get(name)
        self._last[name] = current
        if previous is None:
            return current
        expecting = self._expecting.get(name)
        end: EventKind = "stopped" if expecting in ("stop", "restart") else "exited"
        was_up, is_up = previous.state in _UP, current.state in _UP
        if was_up and current.state in _DOWN:
            await self._emit(current, end, pid=previous.pid, exit_status=True)
        elif not was_up and is_up:
            await self._emit(current, "started")
        elif was_up and is_up and previous.pid and current.pid and previous.pid != current.pid:
            detail = "" if expecting else f"{self.name} restarted it on its own"
            await self._emit(current, end, pid=previous.pid, exit_status=True, detail=detail)
            await self._emit(current, "started", detail=detail)
        return current

    async def _emit(
        self,
        status: ServiceStatus,
        kind: EventKind,
        *,
        pid: int | None = None,
        exit_status: bool = False,
        detail: str | None = None,
    ) -> None:
        said = status.detail if detail is None else detail
        journal = status.journal if kind == "exited" else []
        if journal:
            # The last line it logged, in the words of the event too: whoever shows only
            # the event's detail still sees why.
            last = telling_lines(journal, 1)[0]  # its own last word, before systemd's
            said = clean(f"{said}; last log: {last}" if said else last, SERVICE_DETAIL)
        event = ServiceEvent(
            name=status.name,
            manager=self.name,
            kind=kind,
            pid=pid if pid is not None else status.pid,
            exit_code=status.last_exit_code if exit_status else None,
            exit_signal=status.last_exit_signal if exit_status else None,
            at=datetime.fromtimestamp(self._clock(), tz=UTC),
            detail=said,
            restart_policy=status.restart_policy,
            restarts=status.restarts,
            start_limit_hit=status.start_limit_hit,
            journal=journal,
        )
        await deliver_event(self._on_event, event)
