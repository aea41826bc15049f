"""Hearing about systemd unit changes the moment they happen, over the system D-Bus.

:class:`UnitSignals` connects to the system bus (dbus-fast, asyncio), asks systemd to
send its signals (``org.freedesktop.systemd1.Manager.Subscribe``) and listens for

* ``PropertiesChanged`` on a watched unit's object (ActiveState, SubState, MainPID,
  NRestarts, Result...), and
* the Manager's ``JobRemoved`` (a start, stop or restart job of a unit finished).

Each names a unit; the callback gets the unit names (only the ones being watched: a
name or path from the bus that is not one of ours is ignored, never parsed further).
What changed is then read the usual way, so events come from one place. When the bus
goes away the watcher says so (``on_state(False)``) and keeps trying to reconnect, with
a growing pause; ``on_state(True)`` after each (re)connection, so the owner can read
every unit once and catch what happened meanwhile.

dbus-fast is imported here only, when watching starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dbus_fast import Message
    from dbus_fast.aio import MessageBus

__all__ = ["SYSTEMD_BUS_NAME", "UNIT_PATH_PREFIX", "UnitSignals", "unit_object_path"]

_log = logging.getLogger(__name__)

SYSTEMD_BUS_NAME = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER_INTERFACE = "org.freedesktop.systemd1.Manager"
UNIT_PATH_PREFIX = "/org/freedesktop/systemd1/unit/"
_PROPERTIES_INTERFACE = "org.freedesktop.DBus.Properties"
_RETRY_FIRST = 0.5
_RETRY_MAX = 30.0
_CALL_TIMEOUT = 5.0
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def unit_object_path(unit: str) -> str:
    """The D-Bus object path systemd gives ``unit`` (its bus-label escaping: every byte
    that is not an ASCII letter or digit, and a leading digit, becomes ``_xx``)."""
    out = []
    for index, byte in enumerate(unit.encode("utf-8")):
        char = chr(byte)
        if char in _ALNUM and not (index == 0 and char.isdigit()):
            out.append(char)
        else:
            out.append(f"_{byte:02x}")
    return UNIT_PATH_PREFIX + ("".join(out) or "_")


class UnitSignals:
    """Calls ``on_change(units)`` when systemd signals a change to one of ``units``.

    ``bus_address``: a D-Bus address (default: the system bus, as ``DBUS_SYSTEM_BUS_ADDRESS``
    or the standard socket says). ``on_state(connected)`` is told when the bus comes and
    goes. ``start()`` returns at once; the watcher then runs until ``aclose()``.
    """

    def __init__(
        self,
        units: Iterable[str],
        on_change: Callable[[set[str]], None],
        *,
        on_state: Callable[[bool], None] | None = None,
        bus_address: str | None = None,
        retry_max: float = _RETRY_MAX,
    ) -> None:
        self._units = set(units)
        self._by_path = {unit_object_path(unit): unit for unit in self._units}
        self._on_change = on_change
        self._on_state = on_state
        self._address = bus_address
        self._retry_max = retry_max
        self._bus: MessageBus | None = None
        self._task: asyncio.Task[None] | None = None
        self._told_down = False
        self.connected = False
        self.signals = 0  # signals about watched units received, for status and tests

    async def start(self) -> None:
        if self._task is None and self._units:
            self._task = asyncio.create_task(self._run(), name="systemd D-Bus signals")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        bus, self._bus = self._bus, None
        if bus is not None:
            with contextlib.suppress(Exception):
                bus.disconnect()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.connected = False

    # ------------------------------------------------------------ internals

    async def _run(self) -> None:
        pause = _RETRY_FIRST
        while True:
            try:
                bus = await self._connect()
            except Exception as exc:  # any failure to reach or subscribe: poll instead
                self._down(f"{type(exc).__name__}: {exc}")
            else:
                pause = _RETRY_FIRST
                self._bus = bus
                self._set(True)
                try:
                    await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
                except Exception as exc:
                    _log.debug("the system bus connection ended: %s", exc)
                self._bus = None
                self._down("the connection was closed")
            await asyncio.sleep(pause)
            pause = min(pause * 2, self._retry_max)

    async def _connect(self) -> MessageBus:
        from dbus_fast import BusType, Message, MessageType
        from dbus_fast.aio import MessageBus

        bus = MessageBus(bus_address=self._address, bus_type=BusType.SYSTEM)
        async with asyncio.timeout(_CALL_TIMEOUT):
            await bus.connect()
        try:
            bus.add_message_handler(self._on_message)
            rules = (
                f"type='signal',sender='{SYSTEMD_BUS_NAME}',interface='{_PROPERTIES_INTERFACE}',"
                f"member='PropertiesChanged',path_namespace='{UNIT_PATH_PREFIX.rstrip('/')}'",
                f"type='signal',sender='{SYSTEMD_BUS_NAME}',interface='{MANAGER_INTERFACE}',"
                f"member='JobRemoved',path='{MANAGER_PATH}'",
            )
            calls = [
                Message(
                    destination="org.freedesktop.DBus",
                    path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus",
                    member="AddMatch",
                    signature="s",
                    body=[rule],
                )
                for rule in rules
            ]
            # Without Subscribe systemd sends no unit signals to anyone who asked.
            calls.append(
                Message(
                    destination=SYSTEMD_BUS_NAME,
                    path=MANAGER_PATH,
                    interface=MANAGER_INTERFACE,
                    member="Subscribe",
                )
            )
            for call in calls:
                async with asyncio.timeout(_CALL_TIMEOUT):
                    reply = await bus.call(call)
                if reply is None or reply.message_type is MessageType.ERROR:
                    said = reply.body[0] if reply is not None and reply.body else "no reply"
                    name = reply.error_name if reply is not None else ""
                    raise ConnectionError(f"{call.member} refused: {name} {str(said)[:200]}")
        except BaseException:
            bus.disconnect()
            raise
        return bus

    def _set(self, connected: bool) -> None:
        self.connected = connected
        if connected and self._told_down:
            _log.info("systemd D-Bus signals are back: watching units by events again")
            self._told_down = False
        if self._on_state is not None:
            try:
                self._on_state(connected)
            except Exception:
                _log.exception("systemd D-Bus state handler failed")

    def _down(self, why: str) -> None:
        """Say once per outage that the bus is gone; tell the owner when it changes."""
        first = not self._told_down
        if first:
            _log.warning(
                "systemd D-Bus signals unavailable (%s): polling units instead, retrying",
                why[:300],
            )
            self._told_down = True
        if self.connected or first:
            self._set(False)

    def _on_message(self, message: Message) -> Any:
        try:
            units = self._units_of(message)
        except Exception:  # malformed input from the bus never breaks the watcher
            _log.debug("ignored a malformed systemd signal", exc_info=True)
            return None
        if units:
            self.signals += 1
            try:
                self._on_change(units)
            except Exception:
                _log.exception("systemd change handler failed")
        return None

    def _units_of(self, message: Message) -> set[str]:
        from dbus_fast import MessageType

        if message.message_type is not MessageType.SIGNAL:
            return set()
        if message.member == "PropertiesChanged" and message.interface == _PROPERTIES_INTERFACE:
            unit = self._by_path.get(message.path or "")
            return {unit} if unit is not None else set()
        if message.member == "JobRemoved" and message.interface == MANAGER_INTERFACE:
            body = message.body
            name = body[2] if isinstance(body, list) and len(body) >= 3 else None
            if isinstance(name, str) and name in self._units:
                return {name}
        return set()
