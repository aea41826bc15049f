"""The ``systemd`` backend: units started and supervised by systemd, reached via systemctl.

Everything goes through ``systemctl`` run with an argv list (never a shell), with unit
names checked by :func:`validate_unit_name` before they get anywhere near it::

    systemctl show UNIT... --property=Id,LoadState,ActiveState,SubState,MainPID,... --no-pager
    systemctl --no-ask-password --no-pager start|stop|restart|reset-failed UNIT
    journalctl -u UNIT -n 20 -o json --no-pager      (when a unit fails: its last words)

``systemctl`` and ``journalctl`` are constructor parameters: point them at other
executables to use different ones (tests use stand-in scripts where systemd is not PID 1).

Changes are heard over the system D-Bus once ``start_watching()`` is called (see
:mod:`watchkeeper.services._dbus`): a signal about a unit makes the manager read that
unit at once, so a crash is an event within milliseconds. While the bus cannot be
reached (and for specs with ``watch = "poll"``) status is polled every ``poll_interval``
instead; see :mod:`watchkeeper.services._polling`.

systemd restarts a unit whose ``Restart=`` is set (anything but ``no``) by itself; the
status says so (``restart_policy``), and the moments it is dead between two lives
(``auto-restart``) read as ``failed``, so each death is an ``exited`` event and a crash
loop shows as one. A unit systemd gave up on says ``start_limit_hit`` (its Result is
``start-limit-hit``, or it has ``Restart=`` set and is failed for good after restarts:
systemd keeps the first failure's Result when its own restarts hit the limit).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from watchkeeper.config.services import ServiceSpec
from watchkeeper.model.services import ServiceState, ServiceStatus
from watchkeeper.model.text import SERVICE_DETAIL, clean
from watchkeeper.services._journal import LINES_MAX, journal_tail
from watchkeeper.services._polling import Action, PolledServiceManager
from watchkeeper.services.base import (
    EventSink,
    ServiceActionError,
    ServicePermissionError,
    UnknownServiceError,
)
from watchkeeper.services.probes import ProbeRunner, run_probe

if TYPE_CHECKING:
    from watchkeeper.services._dbus import UnitSignals

__all__ = ["SHOW_PROPERTIES", "SystemdServiceManager", "validate_unit_name"]

_log = logging.getLogger(__name__)

SHOW_PROPERTIES = (
    "Id",
    "LoadState",
    "ActiveState",
    "SubState",
    "MainPID",
    "ExecMainStartTimestampMonotonic",
    "ExecMainCode",
    "ExecMainStatus",
    "NRestarts",
    "Result",
    "Restart",
)

# systemd's own alphabet minus the backslash escapes; ASCII ranges spelled out so that
# look-alike Unicode letters or digits can never match. Must start with a letter, digit
# or underscore: never '-' (an option), never '.' or '@'.
_UNIT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9:_.@-]{0,249}")
_UNIT_SUFFIXES = (
    ".service", ".socket", ".target", ".timer", ".mount", ".automount", ".swap", ".path",
    ".slice", ".scope", ".device",
)  # fmt: skip
_STATE_MAP = {
    "active": ServiceState.RUNNING,
    "reloading": ServiceState.RUNNING,
    "refreshing": ServiceState.RUNNING,
    "activating": ServiceState.STARTING,
    "deactivating": ServiceState.STOPPED,
    "inactive": ServiceState.STOPPED,
    "failed": ServiceState.FAILED,
    "maintenance": ServiceState.UNKNOWN,
}
_PERMISSION_MARKERS = ("access denied", "interactive authentication required", "not permitted")
_NOT_FOUND_MARKERS = ("not found", "not loaded", "does not exist")
_EXIT_NO_PERMISSION = 4  # systemctl's LSB exit status for "insufficient privileges"
_EXIT_NOT_INSTALLED = 5  # ... and for "unit not found"
_CLD_EXITED = 1  # ExecMainCode values: how the main process ended (see waitid(2))
_VERBING = {
    "start": "starting",
    "stop": "stopping",
    "restart": "restarting",
    "reset-failed": "resetting the failed state of",
}
_RESTART_VALUES = frozenset(
    {"no", "always", "on-success", "on-failure", "on-abnormal", "on-abort", "on-watchdog"}
)
_SHOW_TIMEOUT = 15.0
_ACTION_MARGIN = 15.0


def validate_unit_name(unit: str) -> str:
    """Return the full unit name (``.service`` added when no type is given) or raise.

    Accepts only ASCII letters, digits and ``: _ . @ -`` (at most 250), starting with a
    letter, digit or underscore. So ``"nginx; rm -rf /"``, ``"-x"``, ``"a b"``, ``"a/b"``
    and names with Unicode look-alikes are all refused with ``ValueError``.
    """
    if not isinstance(unit, str) or not _UNIT_RE.fullmatch(unit) or ".." in unit:
        raise ValueError(
            f"invalid systemd unit name {unit!r}: use ASCII letters, digits and : _ . @ - "
            "only, starting with a letter, digit or underscore"
        )
    return unit if unit.endswith(_UNIT_SUFFIXES) else f"{unit}.service"


def _int(value: str | None) -> int | None:
    if value is None or not value.isascii() or not value.strip().isdigit():
        return None
    return int(value)


def _parse_show(output: str) -> list[dict[str, str]]:
    """Split ``systemctl show`` output into one property dict per unit (blank-line blocks)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in output.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition("=")
        if sep:
            current[key.strip()] = value
    if current:
        blocks.append(current)
    return blocks


class SystemdServiceManager(PolledServiceManager):
    """Reads and drives the ``manager = "systemd"`` services through ``systemctl``.

    A spec's ``unit`` (or, if absent, its ``name``) is the unit; a name without a type
    suffix means ``.service``. Starting, stopping and restarting units usually needs root:
    without it the manager raises ``ServicePermissionError`` saying so.
    """

    name = "systemd"

    def __init__(
        self,
        specs: Iterable[ServiceSpec],
        on_event: EventSink | None = None,
        *,
        systemctl: str | Path = "systemctl",
        journalctl: str | Path = "journalctl",
        journal_lines: int = LINES_MAX,
        poll_interval: float = 5.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        probe_runner: ProbeRunner = run_probe,
        bus_address: str | None = None,
    ) -> None:
        self._systemctl = str(systemctl)
        self._journalctl = str(journalctl)
        self._journal_lines = journal_lines
        self._monotonic = monotonic
        self._units: dict[str, str] = {}
        super().__init__(
            specs, on_event, poll_interval=poll_interval, clock=clock, probe_runner=probe_runner
        )
        self._bus_address = bus_address
        self._signals: UnitSignals | None = None
        self._by_unit: dict[str, list[ServiceSpec]] = {}
        for spec in self._specs.values():
            if spec.watch != "poll":
                self._by_unit.setdefault(self._units[spec.name], []).append(spec)
        self._pending: set[str] = set()
        self._waker: asyncio.Event | None = None
        self._listener: asyncio.Task[None] | None = None

    @property
    def watching_events(self) -> bool:
        """True while D-Bus signals are heard (the units are not being polled)."""
        return self._signals is not None and self._signals.connected

    async def start_watching(self) -> None:
        """Listen for systemd's D-Bus signals (units with ``watch`` other than ``poll``),
        and poll whatever they do not cover; idempotent."""
        if self._closed:
            return
        if self._by_unit and self._signals is None:
            from watchkeeper.services._dbus import UnitSignals

            self._waker = asyncio.Event()
            self._signals = UnitSignals(
                self._by_unit,
                self._heard,
                on_state=self._bus_state,
                bus_address=self._bus_address,
            )
            self._listener = asyncio.create_task(self._read_heard(), name="systemd signals")
            await self._signals.start()
        await super().start_watching()

    async def aclose(self) -> None:
        signals, self._signals = self._signals, None
        listener, self._listener = self._listener, None
        if signals is not None:
            await signals.aclose()
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        await super().aclose()

    def _poll_specs(self) -> builtins.list[ServiceSpec]:
        specs = builtins.list(self._specs.values())
        if self.watching_events:
            return [spec for spec in specs if spec.watch == "poll"]
        return specs

    def _heard(self, units: set[str]) -> None:
        """A signal named these (watched) units: read them as soon as possible."""
        self._pending |= units
        if self._waker is not None:
            self._waker.set()

    def _bus_state(self, connected: bool) -> None:
        if connected:  # read every unit once: what happened while we were not listening
            self._heard(set(self._by_unit))
        wanted = [s.name for specs in self._by_unit.values() for s in specs if s.watch == "dbus"]
        if not connected and wanted:
            _log.warning(
                'services %s ask for watch = "dbus" but the system bus does not answer: '
                "they are polled every %g s meanwhile",
                ", ".join(wanted),
                self._poll_interval,
            )

    async def _read_heard(self) -> None:
        assert self._waker is not None
        while True:
            await self._waker.wait()
            self._waker.clear()
            units, self._pending = self._pending, set()
            specs = [spec for unit in sorted(units) for spec in self._by_unit.get(unit, ())]
            if not specs:
                continue
            try:
                await self._refresh(specs)
            except Exception:
                _log.exception("reading systemd units after a signal failed")

    async def reset_failed(self, name: str) -> ServiceStatus:
        """``systemctl reset-failed UNIT``, then start it: systemd forgets the failures
        that made it give up (a start-limit hit) and tries the unit again."""
        spec = self._spec(name)
        async with self._locks[name]:
            await self.status(name)
            self._expecting[name] = "start"
            try:
                await self._act("reset-failed", spec)
                await self._act("start", spec)
                return await self.status(name)
            finally:
                self._expecting.pop(name, None)

    async def _last_words(self, spec: ServiceSpec) -> builtins.list[str]:
        unit = validate_unit_name(self._units[spec.name])
        return await journal_tail(unit, lines=self._journal_lines, journalctl=self._journalctl)

    def _check_spec(self, spec: ServiceSpec) -> None:
        try:
            self._units[spec.name] = validate_unit_name(spec.target)
        except ValueError as exc:
            raise ValueError(f"service {spec.name}: {exc}") from None

    def unit_of(self, name: str) -> str:
        """The full systemd unit name behind service ``name``."""
        self._spec(name)
        return self._units[name]

    async def _run(self, args: Sequence[str], timeout: float) -> tuple[int, str, str]:
        """Run systemctl with ``args``; (exit status, stdout, stderr)."""
        env = {**os.environ, "LC_ALL": "C", "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": ""}
        proc = await asyncio.create_subprocess_exec(
            self._systemctl,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            async with asyncio.timeout(timeout):
                out, err = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode is not None
        return (
            proc.returncode,
            out.decode("utf-8", errors="replace"),
            err.decode("utf-8", errors="replace"),
        )

    async def _fetch(self, specs: Sequence[ServiceSpec]) -> dict[str, ServiceStatus]:
        units = [self._units[spec.name] for spec in specs]
        args = ["show", *units, f"--property={','.join(SHOW_PROPERTIES)}", "--no-pager"]
        try:
            code, out, err = await self._run(args, _SHOW_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            reason = f"cannot run {self._systemctl}: {exc or type(exc).__name__}"
            return {s.name: self._unknown(s, reason) for s in specs}
        if code != 0:
            reason = f"systemctl show failed ({code}): {clean(err or out, SERVICE_DETAIL)}"
            return {s.name: self._unknown(s, reason) for s in specs}
        blocks = _parse_show(out)
        by_id = {block.get("Id", ""): block for block in blocks}
        result: dict[str, ServiceStatus] = {}
        for index, (spec, unit) in enumerate(zip(specs, units, strict=True)):
            block = by_id.get(unit)
            if block is None and len(blocks) == len(units):
                block = blocks[index]  # an alias: systemd answered with the unit's real Id
            if block is None:
                result[spec.name] = self._unknown(spec, f"systemctl said nothing about {unit}")
            else:
                result[spec.name] = self._to_status(spec, unit, block)
        return result

    def _unknown(self, spec: ServiceSpec, detail: str) -> ServiceStatus:
        return ServiceStatus(
            name=spec.name,
            manager=self.name,
            state=ServiceState.UNKNOWN,
            critical=spec.critical,
            detail=detail,
        )

    def _to_status(self, spec: ServiceSpec, unit: str, props: dict[str, str]) -> ServiceStatus:
        active = props.get("ActiveState", "")
        sub = props.get("SubState", "")
        if props.get("LoadState") == "not-found":
            return self._unknown(spec, f"unit {unit} is not installed")
        state = _STATE_MAP.get(active, ServiceState.UNKNOWN)
        if sub == "auto-restart":
            state = ServiceState.FAILED  # dead; systemd starts it again after RestartSec
        restart = props.get("Restart", "")
        policy = restart if restart in _RESTART_VALUES else None
        pid = _int(props.get("MainPID")) or None
        started_at = None
        start_us = _int(props.get("ExecMainStartTimestampMonotonic"))
        if start_us:
            # systemd counts on CLOCK_MONOTONIC, as does time.monotonic() on Linux.
            age = max(0.0, self._monotonic() - start_us / 1e6)
            started_at = datetime.fromtimestamp(self._clock() - age, tz=UTC)
        exit_code = exit_signal = None
        main_code, main_status = _int(props.get("ExecMainCode")), _int(props.get("ExecMainStatus"))
        if main_code == _CLD_EXITED:
            exit_code = main_status
        elif main_code:  # killed or dumped core: the status is the signal number
            exit_signal = main_status
        result = clean(props.get("Result", ""), SERVICE_DETAIL, 40)
        detail = f"{unit}: {clean(active, SERVICE_DETAIL, 40)}/{clean(sub, SERVICE_DETAIL, 40)}"
        if result and result != "success":
            detail += f", result {result}"
        restarted = _int(props.get("NRestarts")) or 0
        # systemd 252 keeps the first failure's Result ("exit-code") when its own restarts
        # run into the start limit: a unit it restarts, failed for good after restarts,
        # is one it gave up on as well.
        gave_up = policy not in (None, "no") and sub == "failed" and restarted > 0
        limit_hit = state is ServiceState.FAILED and (result == "start-limit-hit" or gave_up)
        if limit_hit:
            detail += ": systemd gave up restarting it"
        elif sub == "auto-restart":
            detail += f": systemd restarts it (Restart={policy})"
        return ServiceStatus(
            name=spec.name,
            manager=self.name,
            state=state,
            pid=pid if state in (ServiceState.RUNNING, ServiceState.STARTING) else None,
            started_at=started_at,
            last_exit_code=exit_code,
            last_exit_signal=exit_signal,
            restarts=restarted,
            critical=spec.critical,
            detail=detail,
            restart_policy=policy,
            start_limit_hit=limit_hit,
        )

    async def _act(self, action: Action | Literal["reset-failed"], spec: ServiceSpec) -> None:
        unit = validate_unit_name(self._units[spec.name])  # checked again right before use
        timeout = _ACTION_MARGIN + (
            spec.start_timeout
            if action == "start"
            else spec.stop_timeout
            if action == "stop"
            else 0.0
            if action == "reset-failed"
            else spec.start_timeout + spec.stop_timeout
        )
        args = ["--no-ask-password", "--no-pager", action, unit]
        try:
            code, out, err = await self._run(args, timeout)
        except TimeoutError:
            raise ServiceActionError(
                spec.name,
                f"systemctl {action} {unit} did not finish within {timeout:g} s; "
                "systemd may still be working on it",
            ) from None
        except OSError as exc:
            raise ServiceActionError(spec.name, f"cannot run {self._systemctl}: {exc}") from None
        if code == 0:
            return
        said = clean(err or out, SERVICE_DETAIL) or f"exit status {code}"
        lowered = said.lower()
        if code == _EXIT_NO_PERMISSION or any(m in lowered for m in _PERMISSION_MARKERS):
            raise ServicePermissionError(
                spec.name, f"{_VERBING[action]} unit {unit} needs root (systemctl said: {said})"
            )
        if code == _EXIT_NOT_INSTALLED or any(m in lowered for m in _NOT_FOUND_MARKERS):
            raise UnknownServiceError(spec.name, f"unit {unit} is not installed ({said})")
        raise ServiceActionError(
            spec.name, f"systemctl {action} {unit} failed with exit status {code}: {said}"
        )
