"""The ``process`` backend: programs watchkeeper runs, or finds through a pidfile, itself.

Exits are noticed the moment they happen, never at a next tick:

* a child watchkeeper started is awaited (``Process.wait()``) by a watcher task;
* a process found through its pidfile is awaited through a pidfd in the event loop
  (Linux >= 5.3), or, where that is missing, by asking psutil every ``poll_interval``.

Either way the manager calls ``on_event`` with an ``exited`` event at once (``stopped``
when the exit is the end of our own ``stop()``), and the manager owns every task it
creates: ``aclose()`` stops the children it started, then cancels and awaits the rest.

Programs must stay in the foreground: one that forks into the background and exits
looks like an exit (and, sooner than ``min_uptime``, like a failed start).

**This manager never restarts anything by itself.** Whether a dead service comes back,
and how soon, is the RemediatorAgent's decision (policy, cooldown, crash-loop give-up),
taken on the ``exited`` event and carried out through ``start()``/``restart()``.

Use::

    manager = ProcessServiceManager(specs, on_event=bus_publish, log_dir=state_dir / "logs")
    await manager.start_all()      # adopt what is already running, start the rest
    ...
    await manager.aclose()
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import signal
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watchkeeper.config.services import ServiceSpec
from watchkeeper.model.services import EventKind, ServiceEvent, ServiceState, ServiceStatus
from watchkeeper.services._children import (
    SIGKILL,
    launch,
    remove_pidfile,
    signal_child,
    write_pidfile,
)
from watchkeeper.services._journal import file_tail
from watchkeeper.services._pidwatch import (
    ProcessIdentity,
    adopt_from_pidfile,
    identify,
    send_signal,
    wait_for_exit,
)
from watchkeeper.services._slots import Run, Slot, exit_outcome
from watchkeeper.services._tasks import OwnedTasks
from watchkeeper.services.base import (
    EventSink,
    ServiceActionError,
    ServiceError,
    ServicePermissionError,
    UnknownServiceError,
    deliver_event,
)
from watchkeeper.services.probes import ProbeResult, ProbeRunner, run_probe

__all__ = ["ProcessServiceManager"]

_log = logging.getLogger(__name__)

_KILL_GRACE = 5.0  # seconds to wait for the exit after SIGKILL before giving up


class ProcessServiceManager:
    """Runs and watches the ``manager = "process"`` services of the config.

    ``log_dir``: each service's stdout and stderr go to ``log_dir/<name>.log`` (mode 0600),
    or nowhere when ``None``. ``clock`` gives the wall time for timestamps;
    ``probe_runner`` runs health probes; ``poll_interval`` and ``use_pidfd`` only concern
    adopted processes on platforms without pidfd.
    """

    name = "process"

    def __init__(
        self,
        specs: Iterable[ServiceSpec],
        on_event: EventSink | None = None,
        *,
        log_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
        probe_runner: ProbeRunner = run_probe,
        poll_interval: float = 0.5,
        use_pidfd: bool = True,
    ) -> None:
        self._slots: dict[str, Slot] = {}
        for spec in specs:
            if spec.manager != "process":
                raise ValueError(f"service {spec.name} is for manager {spec.manager!r}")
            if spec.name in self._slots:
                raise ValueError(f"service {spec.name} is configured twice")
            slot = Slot(spec)
            if spec.probe is None:
                slot.probe_detail = "no probe configured"
            self._slots[spec.name] = slot
        self._on_event = on_event
        self._log_dir = log_dir
        self._words: dict[str, list[str]] = {}  # service -> output tail of its last failure
        self._clock = clock
        self._probe_runner = probe_runner
        self._poll_interval = poll_interval
        self._use_pidfd = use_pidfd
        self._tasks = OwnedTasks()
        self._closed = False

    # ----------------------------------------------------------------- reading

    async def list(self) -> builtins.list[ServiceStatus]:
        """Status of every service, in config order (adopting pidfiles as it goes)."""
        for slot in self._slots.values():
            self._refresh(slot)
        return [self._snapshot(slot) for slot in self._slots.values()]

    async def status(self, name: str) -> ServiceStatus:
        slot = self._slot(name)
        self._refresh(slot)
        return self._snapshot(slot)

    async def probe(self, name: str) -> ServiceStatus:
        """Run the service's probe now; emits healthy/unhealthy when the verdict changes."""
        slot = self._slot(name)
        self._refresh(slot)
        run = slot.run
        if slot.spec.probe is None or run is None:
            return self._snapshot(slot)
        result = await self._probe_runner(slot.spec.probe)
        if slot.run is run:
            await self._record_probe(slot, run, result)
        return self._snapshot(slot)

    async def wait_ready(self, name: str, timeout: float | None = None) -> ServiceStatus:
        """Wait until the current launch has settled (healthy, unhealthy or exited)."""
        slot = self._slot(name)
        run = slot.run
        if run is not None:
            async with asyncio.timeout(timeout):
                await run.ready.wait()
        return self._snapshot(slot)

    def log_path(self, name: str) -> Path | None:
        """Where the service's output goes, or ``None`` when it is discarded."""
        self._slot(name)
        return None if self._log_dir is None else self._log_dir / f"{name}.log"

    # ----------------------------------------------------------------- acting

    async def start(self, name: str) -> ServiceStatus:
        """Launch the service unless it is already up; returns once it is launched.

        The probe then runs in the background until healthy or ``start_timeout``
        (events ``healthy``/``unhealthy``; ``wait_ready`` waits for it).
        """
        slot = self._slot(name)
        async with slot.lock:
            await self._start_locked(slot)
        return self._snapshot(slot)

    async def stop(self, name: str) -> ServiceStatus:
        """SIGTERM, up to ``stop_timeout`` seconds, then SIGKILL; reported as ``stopped``."""
        slot = self._slot(name)
        async with slot.lock:
            await self._stop_locked(slot)
        return self._snapshot(slot)

    async def restart(self, name: str) -> ServiceStatus:
        slot = self._slot(name)
        async with slot.lock:
            self._require_argv(slot, "restart")
            await self._stop_locked(slot)
            await self._start_locked(slot)
        return self._snapshot(slot)

    async def start_watching(self) -> None:
        """Adopt every service whose pidfile names a live process; starts nothing."""
        for slot in self._slots.values():
            self._refresh(slot)

    async def start_all(self) -> builtins.list[ServiceStatus]:
        """Autostart: adopt what runs, start every other service that has an argv.

        One service failing to start does not stop the others: its status says why.
        """
        await self.start_watching()

        async def start_one(slot: Slot) -> None:
            try:
                async with slot.lock:
                    await self._start_locked(slot)
            except ServiceError as exc:
                _log.warning("autostart of %s failed: %s", slot.spec.name, exc.message)
                slot.state, slot.detail = ServiceState.FAILED, exc.message

        await asyncio.gather(
            *(start_one(s) for s in self._slots.values() if s.spec.argv is not None)
        )
        return await self.list()

    async def aclose(self) -> None:
        """Stop the children watchkeeper started, stop watching the rest; idempotent.

        Children die with the manager, as under any supervisor; adopted processes (found
        through a pidfile) are left running.
        """
        if self._closed:
            return
        self._closed = True
        owned = [s for s in self._slots.values() if s.run is not None and s.run.proc is not None]
        results = await asyncio.gather(
            *(self.stop(s.spec.name) for s in owned), return_exceptions=True
        )
        for slot, result in zip(owned, results, strict=True):
            if isinstance(result, BaseException):
                _log.error("could not stop %s while closing: %s", slot.spec.name, result)
        await self._tasks.cancel_all()

    # ----------------------------------------------------------------- internals

    def _slot(self, name: str) -> Slot:
        try:
            return self._slots[name]
        except KeyError:
            raise UnknownServiceError(
                name, f"no process service named {name!r} is configured"
            ) from None

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), tz=UTC)

    def _snapshot(self, slot: Slot) -> ServiceStatus:
        status = slot.snapshot(self.name)
        words = self._words.get(slot.spec.name)
        if words and status.state is ServiceState.FAILED:
            status = status.model_copy(update={"journal": words})
        return status

    def _event(self, slot: Slot, kind: EventKind, pid: int | None, **extra: Any) -> ServiceEvent:
        return ServiceEvent(
            name=slot.spec.name, manager=self.name, kind=kind, pid=pid, at=self._now(), **extra
        )

    def _require_argv(self, slot: Slot, verb: str) -> None:
        if slot.spec.argv is None:
            name = slot.spec.name
            raise ServiceActionError(
                name,
                f"cannot {verb} {name}: it has no argv, so watchkeeper only watches it "
                "through its pidfile",
            )

    def _refresh(self, slot: Slot) -> None:
        """Adopt the pidfile's process if the service has no known live process."""
        pidfile = slot.spec.pidfile
        if slot.run is not None or pidfile is None or self._closed:
            return
        identity, reason = adopt_from_pidfile(pidfile)
        if identity is None:
            if not slot.ever_ran:
                slot.detail = reason
            return
        uptime = max(0.0, time.time() - identity.create_time)
        run = Run(
            identity=identity,
            proc=None,
            started_mono=time.monotonic() - uptime,
            started_at=datetime.fromtimestamp(identity.create_time, tz=UTC),
        )
        run.ready.set()
        slot.run, slot.ever_ran = run, True
        slot.state, slot.detail = ServiceState.RUNNING, f"adopted pid {identity.pid} from pidfile"
        self._tasks.spawn(self._watch_adopted(slot, run), f"watch {slot.spec.name}")

    async def _start_locked(self, slot: Slot) -> None:
        if self._closed:
            raise ServiceActionError(slot.spec.name, "the process manager is closed")
        self._refresh(slot)
        if slot.run is not None:
            return
        self._require_argv(slot, "start")
        await self._launch(slot)

    async def _launch(self, slot: Slot) -> None:
        spec = slot.spec
        proc = await launch(spec, self._log_dir)
        identity = identify(proc.pid) or ProcessIdentity(proc.pid, self._clock())
        run = Run(
            identity=identity, proc=proc, started_mono=time.monotonic(), started_at=self._now()
        )
        slot.run, slot.ever_ran = run, True
        slot.launches += 1
        self._words.pop(spec.name, None)
        slot.state, slot.detail = ServiceState.STARTING, "starting"
        slot.healthy = None
        if spec.probe is not None:
            slot.probe_detail = None
        if spec.pidfile is not None:
            run.wrote_pidfile = write_pidfile(spec.pidfile, proc.pid)
        await deliver_event(self._on_event, self._event(slot, "started", proc.pid))
        self._tasks.spawn(self._watch_child(slot, run), f"watch {spec.name}")
        run.startup_task = self._tasks.spawn(self._startup(slot, run), f"startup {spec.name}")

    async def _watch_child(self, slot: Slot, run: Run) -> None:
        assert run.proc is not None
        returncode = await run.proc.wait()
        await self._on_exit(slot, run, returncode)

    async def _watch_adopted(self, slot: Slot, run: Run) -> None:
        await wait_for_exit(
            run.identity, poll_interval=self._poll_interval, use_pidfd=self._use_pidfd
        )
        await self._on_exit(slot, run, None)

    async def _on_exit(self, slot: Slot, run: Run, returncode: int | None) -> None:
        spec = slot.spec
        uptime = time.monotonic() - run.started_mono
        if run.startup_task is not None and not run.startup_task.done():
            run.startup_task.cancel()
        outcome = exit_outcome(run, returncode, uptime, spec.min_uptime)
        code, sig, detail = outcome.exit_code, outcome.exit_signal, outcome.detail
        words: list[str] = []
        if outcome.state is ServiceState.FAILED:
            # Its last words: the tail of the output it wrote, as evidence of why.
            words = file_tail(self.log_path(spec.name))
            self._words[spec.name] = words
        slot.run, slot.state, slot.detail = None, outcome.state, detail
        slot.healthy = None
        slot.last_exit_code, slot.last_exit_signal = code, sig
        if run.wrote_pidfile and spec.pidfile is not None:
            remove_pidfile(spec.pidfile, run.identity.pid)
        event = self._event(
            slot,
            outcome.kind,
            run.identity.pid,
            exit_code=code,
            exit_signal=sig,
            uptime=round(uptime, 6),
            failed_start=outcome.failed_start,
            detail=detail,
            restarts=max(0, slot.launches - 1),
            journal=words,
        )
        try:
            await deliver_event(self._on_event, event)
        finally:
            run.ready.set()
            run.exited.set()

    async def _startup(self, slot: Slot, run: Run) -> None:
        """Decide when a fresh launch counts as running; cancelled if it exits first."""
        spec = slot.spec
        if spec.probe is None:
            await asyncio.sleep(spec.min_uptime)
            if slot.run is run:
                slot.state, slot.detail = ServiceState.RUNNING, "running"
            run.ready.set()
            return
        deadline = time.monotonic() + spec.start_timeout
        delay = 0.05  # probe quickly at first, then back off: most services are fast
        while True:
            result = await self._probe_runner(spec.probe)
            if slot.run is not run:
                return
            if result.ok or time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 1.0)
        slot.state = ServiceState.RUNNING
        slot.detail = (
            "running" if result.ok else f"running, but not healthy after {spec.start_timeout:g} s"
        )
        await self._record_probe(slot, run, result)
        run.ready.set()

    async def _record_probe(self, slot: Slot, run: Run, result: ProbeResult) -> None:
        previous = slot.healthy
        slot.healthy, slot.probe_detail = result.ok, result.detail
        if previous is not result.ok:
            kind: EventKind = "healthy" if result.ok else "unhealthy"
            event = self._event(slot, kind, run.identity.pid, detail=result.detail)
            await deliver_event(self._on_event, event)

    async def _stop_locked(self, slot: Slot) -> None:
        self._refresh(slot)
        run = slot.run
        if run is None:
            return
        run.stopping = True
        detail, slot.detail = slot.detail, "stopping"
        try:
            self._signal(slot, run, signal.SIGTERM)
        except ServicePermissionError:
            # Nothing was stopped: a later exit is still a crash, not our stop.
            run.stopping, slot.detail = False, detail
            raise
        if await self._wait_exit(run, slot.spec.stop_timeout):
            return
        _log.warning(
            "%s ignored SIGTERM for %gs; killing it", slot.spec.name, slot.spec.stop_timeout
        )
        self._signal(slot, run, SIGKILL)
        if not await self._wait_exit(run, _KILL_GRACE):
            name = slot.spec.name
            raise ServiceActionError(
                name, f"{name} (pid {run.identity.pid}) did not exit even after SIGKILL"
            )

    @staticmethod
    async def _wait_exit(run: Run, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await run.exited.wait()
        except TimeoutError:
            return False
        return True

    def _signal(self, slot: Slot, run: Run, sig: int) -> None:
        try:
            if run.proc is None:
                send_signal(run.identity, sig)
            else:
                signal_child(run.proc, sig)
        except ProcessLookupError:
            pass  # already gone; the watcher reports the exit
        except PermissionError:
            name, pid = slot.spec.name, run.identity.pid
            raise ServicePermissionError(
                name,
                f"stopping {name} (pid {pid}) needs the rights of the user it runs as, or root",
            ) from None
