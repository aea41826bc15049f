"""The ``systemd`` backend: units started and supervised by systemd, reached via systemctl.

Everything goes through ``systemctl`` run with an argv list (never a shell), with unit
names checked by :func:`validate_unit_name` before they get anywhere near it::

    systemctl show UNIT... --property=Id,LoadState,ActiveState,SubState,MainPID,... --no-pager
    systemctl --no-ask-password --no-pager start|stop|restart UNIT

``systemctl`` is a constructor parameter: point it at another executable to use a
different one (tests use a stand-in script, since systemd is not PID 1 there).
systemd offers no cheap event stream here, so status is polled every ``poll_interval``
once ``start_watching()`` is called; see :mod:`watchkeeper.services._polling`.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

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

__all__ = ["SHOW_PROPERTIES", "SystemdServiceManager", "validate_unit_name"]

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
_VERBING = {"start": "starting", "stop": "stopping", "restart": "restarting"}
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
        poll_interval: float = 5.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        probe_runner: ProbeRunner = run_probe,
    ) -> None:
        self._systemctl = str(systemctl)
        self._monotonic = monotonic
        self._units: dict[str, str] = {}
        super().__init__(
            specs, on_event, poll_interval=poll_interval, clock=clock, probe_runner=probe_runner
        )

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
        return ServiceStatus(
            name=spec.name,
            manager=self.name,
            state=state,
            pid=pid if state in (ServiceState.RUNNING, ServiceState.STARTING) else None,
            started_at=started_at,
            last_exit_code=exit_code,
            last_exit_signal=exit_signal,
            restarts=_int(props.get("NRestarts")) or 0,
            critical=spec.critical,
            detail=detail,
        )

    async def _act(self, action: Action, spec: ServiceSpec) -> None:
        unit = validate_unit_name(self._units[spec.name])  # checked again right before use
        timeout = _ACTION_MARGIN + (
            spec.start_timeout
            if action == "start"
            else spec.stop_timeout
            if action == "stop"
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
