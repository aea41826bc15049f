"""The systemd backend hearing changes over D-Bus, against a private dbus-daemon.

A real ``dbus-daemon`` (not systemd: it touches nothing but its own socket) runs per test
on a socket in the test's directory. The test plays systemd on it: it owns the name
``org.freedesktop.systemd1``, answers ``Subscribe`` and sends the signals systemd would
(``PropertiesChanged`` on a unit's object, the Manager's ``JobRemoved``), while the
stand-in ``systemctl`` of test_services_systemd answers what the unit now looks like.
The poll interval is an hour, so an event that arrives came from a signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from test_services_systemd import FakeSystemd

from watchkeeper.config.services import ServiceSpec
from watchkeeper.model.services import ServiceState
from watchkeeper.services import SystemdServiceManager
from watchkeeper.services._dbus import SYSTEMD_BUS_NAME, unit_object_path

pytestmark = pytest.mark.skipif(
    shutil.which("dbus-daemon") is None, reason="dbus-daemon is not installed"
)

_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""
_HOUR = 3600.0


class PrivateBus:
    """A dbus-daemon of the test's own, startable again on the same socket."""

    def __init__(self, root: Path) -> None:
        self.socket = root / "bus.sock"
        self.config = root / "bus.conf"
        self.config.write_text(_CONFIG.format(socket=self.socket))
        self.address = f"unix:path={self.socket}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.socket.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            ["dbus-daemon", f"--config-file={self.config}", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        assert line.startswith("unix:"), f"dbus-daemon did not start: {line!r}"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None


class PlaysSystemd:
    """The test's side of the bus: owns systemd's name, answers Subscribe, sends signals."""

    def __init__(self, address: str, *, answer_subscribe: bool = True) -> None:
        self.address = address
        self.answer_subscribe = answer_subscribe
        self.subscribed = 0
        self.bus: MessageBus | None = None

    async def start(self) -> None:
        self.bus = await MessageBus(bus_address=self.address).connect()
        await self.bus.request_name(SYSTEMD_BUS_NAME)
        self.bus.add_message_handler(self._handle)

    def _handle(self, message: Message) -> bool | None:
        if message.message_type is MessageType.METHOD_CALL and message.member == "Subscribe":
            assert self.bus is not None
            if self.answer_subscribe:
                self.subscribed += 1
                self.bus.send(Message.new_method_return(message))
            else:
                self.bus.send(
                    Message.new_error(
                        message, "org.freedesktop.DBus.Error.AccessDenied", "not for you"
                    )
                )
            return True
        return None

    async def properties_changed(self, path: str, **props: str) -> None:
        assert self.bus is not None
        body = ["org.freedesktop.systemd1.Unit", {k: Variant("s", v) for k, v in props.items()}]
        await self.bus.send(
            Message.new_signal(
                path, "org.freedesktop.DBus.Properties", "PropertiesChanged", "sa{sv}as",
                [*body, []],
            )
        )  # fmt: skip

    async def job_removed(self, unit: str) -> None:
        assert self.bus is not None
        await self.bus.send(
            Message.new_signal(
                "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "JobRemoved",
                "uoss", [7, "/org/freedesktop/systemd1/job/7", unit, "done"],
            )
        )  # fmt: skip

    def close(self) -> None:
        if self.bus is not None:
            self.bus.disconnect()
            self.bus = None


@pytest.fixture
def private_bus(tmp_path: Path) -> Iterator[PrivateBus]:
    bus = PrivateBus(tmp_path)
    bus.start()
    try:
        yield bus
    finally:
        bus.stop()


@pytest.fixture
async def plays_systemd(private_bus: PrivateBus) -> AsyncIterator[PlaysSystemd]:
    peer = PlaysSystemd(private_bus.address)
    await peer.start()
    yield peer
    peer.close()


@pytest.fixture
def fake(tmp_path: Path) -> FakeSystemd:
    return FakeSystemd(tmp_path)


@pytest.fixture
async def make_systemd(
    fake: FakeSystemd, events: Any, tmp_path: Path
) -> AsyncIterator[Callable[..., SystemdServiceManager]]:
    managers: list[SystemdServiceManager] = []

    def _make(specs: list[ServiceSpec], **kwargs: Any) -> SystemdServiceManager:
        kwargs.setdefault("systemctl", fake.executable)
        kwargs.setdefault("journalctl", tmp_path / "no-journalctl")
        kwargs.setdefault("poll_interval", _HOUR)
        manager = SystemdServiceManager(specs, events, **kwargs)
        managers.append(manager)
        return manager

    yield _make
    for manager in managers:
        await manager.aclose()


def unit_spec(name: str = "web", **extra: Any) -> ServiceSpec:
    return ServiceSpec(name=name, manager="systemd", **extra)


async def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def _running(fake: FakeSystemd, unit: str = "web.service", pid: str = "100") -> None:
    fake.set_unit(unit, ActiveState="active", SubState="running", MainPID=pid, Restart="no")


def _killed(fake: FakeSystemd, unit: str = "web.service") -> None:
    fake.set_unit(
        unit, ActiveState="failed", SubState="failed", Result="signal", ExecMainCode="2",
        ExecMainStatus="9", MainPID="0", Restart="no",
    )  # fmt: skip


def test_unit_object_paths_match_systemds_escaping() -> None:
    assert unit_object_path("web.service") == "/org/freedesktop/systemd1/unit/web_2eservice"
    assert (
        unit_object_path("getty@tty1.service")
        == "/org/freedesktop/systemd1/unit/getty_40tty1_2eservice"
    )
    assert unit_object_path("1x.service").startswith("/org/freedesktop/systemd1/unit/_31x")
    assert unit_object_path("a-b.service").endswith("/a_2db_2eservice")


async def test_a_signal_becomes_an_event_at_once(
    fake: FakeSystemd,
    make_systemd: Callable[..., SystemdServiceManager],
    events: Any,
    private_bus: PrivateBus,
    plays_systemd: PlaysSystemd,
) -> None:
    _running(fake)
    manager = make_systemd([unit_spec(critical=True)], bus_address=private_bus.address)
    await manager.list()
    await manager.start_watching()
    await _until(lambda: manager.watching_events)
    assert plays_systemd.subscribed == 1
    _killed(fake)
    sent = time.perf_counter()
    await plays_systemd.properties_changed(
        unit_object_path("web.service"), ActiveState="failed", SubState="failed"
    )
    exited = await events.wait_for("exited", "web", timeout=5)
    took = events.arrival_of(exited) - sent
    assert exited.pid == 100 and exited.exit_signal == 9
    assert took < 2.0, f"the signal took {took:.3f} s to become an event"
    # A JobRemoved for the unit (its restart finished) is heard the same way.
    _running(fake, pid="101")
    await plays_systemd.job_removed("web.service")
    started = await events.wait_for("started", "web", timeout=5)
    assert started.pid == 101


async def test_signals_about_other_units_or_odd_names_are_ignored(
    fake: FakeSystemd,
    make_systemd: Callable[..., SystemdServiceManager],
    events: Any,
    private_bus: PrivateBus,
    plays_systemd: PlaysSystemd,
) -> None:
    _running(fake)
    manager = make_systemd([unit_spec()], bus_address=private_bus.address)
    await manager.list()
    await manager.start_watching()
    await _until(lambda: manager.watching_events)
    await asyncio.sleep(0.1)  # the read after connecting is done
    before = len(fake.calls())
    for name in ("other.service", "web.service; rm -rf /", "--help", "-x", "web", "../web"):
        await plays_systemd.job_removed(name)
    await plays_systemd.properties_changed(unit_object_path("other.service"), ActiveState="x")
    await plays_systemd.properties_changed("/org/freedesktop/systemd1/unit/web_2eservice_2f")
    await asyncio.sleep(0.3)
    assert fake.calls()[before:] == []  # nothing was read, nothing ran
    assert events.events == []
    # ...and the watcher still works afterwards.
    _killed(fake)
    await plays_systemd.properties_changed(unit_object_path("web.service"), ActiveState="failed")
    await events.wait_for("exited", "web", timeout=5)
    assert all(c[1:2] == ["web.service"] for c in fake.calls()[before:])


async def test_no_bus_means_polling_said_once(
    fake: FakeSystemd,
    make_systemd: Callable[..., SystemdServiceManager],
    events: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _running(fake)
    manager = make_systemd(
        [unit_spec()], bus_address=f"unix:path={tmp_path / 'nobody.sock'}", poll_interval=0.05
    )
    await manager.list()
    with caplog.at_level(logging.WARNING, logger="watchkeeper.services._dbus"):
        await manager.start_watching()
        _killed(fake)
        exited = await events.wait_for("exited", "web", timeout=5)
        await asyncio.sleep(1.0)  # a few reconnection attempts
    assert exited.exit_signal == 9
    assert not manager.watching_events
    said = [r.getMessage() for r in caplog.records if "D-Bus" in r.getMessage()]
    assert len(said) == 1 and "polling units instead" in said[0]


async def test_subscribe_refused_means_polling(
    fake: FakeSystemd,
    make_systemd: Callable[..., SystemdServiceManager],
    events: Any,
    private_bus: PrivateBus,
) -> None:
    peer = PlaysSystemd(private_bus.address, answer_subscribe=False)
    await peer.start()
    try:
        _running(fake)
        manager = make_systemd([unit_spec()], bus_address=private_bus.address, poll_interval=0.05)
        await manager.list()
        await manager.start_watching()
        _killed(fake)
        await events.wait_for("exited", "web", timeout=5)
        assert not manager.watching_events
    finally:
        peer.close()


async def test_the_bus_going_away_and_coming_back(
    fake: FakeSystemd,
    make_systemd: Callable[..., SystemdServiceManager],
    events: Any,
    private_bus: PrivateBus,
    plays_systemd: PlaysSystemd,
) -> None:
    _running(fake)
    manager = make_systemd([unit_spec()], bus_address=private_bus.address, poll_interval=0.1)
    await manager.list()
    await manager.start_watching()
    await _until(lambda: manager.watching_events)
    plays_systemd.close()
    private_bus.stop()
    await _until(lambda: not manager.watching_events)
    # Meanwhile a crash is still seen, by polling.
    _killed(fake)
    await events.wait_for("exited", "web", timeout=5)
    # The bus returns: the watcher reconnects and signals work again.
    private_bus.start()
    peer = PlaysSystemd(private_bus.address)
    await peer.start()
    try:
        await _until(lambda: manager.watching_events, timeout=15)
        await asyncio.sleep(0.2)  # the read of every unit after reconnecting is done
        mark = len(events.events)
        _running(fake, pid="200")
        await asyncio.sleep(0.2)
        # polling has stopped: the change is unseen until systemd says so
        assert events.events[mark:] == []
        await peer.properties_changed(unit_object_path("web.service"), ActiveState="active")
        started = await events.wait_for("started", "web", timeout=5, after=mark)
        assert started.pid == 200
    finally:
        peer.close()


async def test_watch_poll_never_touches_the_bus(
    fake: FakeSystemd,
    make_systemd: Callable[..., SystemdServiceManager],
    events: Any,
    private_bus: PrivateBus,
    plays_systemd: PlaysSystemd,
) -> None:
    _running(fake)
    manager = make_systemd(
        [unit_spec(watch="poll")], bus_address=private_bus.address, poll_interval=0.05
    )
    await manager.list()
    await manager.start_watching()
    _killed(fake)
    await events.wait_for("exited", "web", timeout=5)
    assert plays_systemd.subscribed == 0 and not manager.watching_events


def test_watch_is_only_for_systemd() -> None:
    with pytest.raises(ValueError, match="watch applies only"):
        ServiceSpec(name="web", argv=["true"], watch="dbus")
    assert ServiceSpec(name="web", manager="systemd", watch="poll").watch == "poll"


async def test_a_restart_policy_unit_dying_is_an_exit_not_a_silent_gap(
    fake: FakeSystemd,
    make_systemd: Callable[..., SystemdServiceManager],
    events: Any,
    private_bus: PrivateBus,
    plays_systemd: PlaysSystemd,
) -> None:
    """Restart=always: systemd is between two lives (auto-restart). That is a death, seen
    as one; the status says systemd restarts it itself."""
    fake.set_unit(
        "web.service", ActiveState="active", SubState="running", MainPID="100",
        Restart="always", NRestarts="0",
    )  # fmt: skip
    manager = make_systemd([unit_spec()], bus_address=private_bus.address)
    assert (await manager.status("web")).restart_policy == "always"
    await manager.start_watching()
    await _until(lambda: manager.watching_events)
    fake.set_unit(
        "web.service", ActiveState="activating", SubState="auto-restart", MainPID="0",
        Restart="always", NRestarts="0", ExecMainCode="2", ExecMainStatus="9", Result="signal",
    )  # fmt: skip
    await plays_systemd.properties_changed(unit_object_path("web.service"), SubState="x")
    exited = await events.wait_for("exited", "web", timeout=5)
    assert exited.restart_policy == "always" and exited.exit_signal == 9
    assert "systemd restarts it (Restart=always)" in exited.detail
    status = await manager.status("web")
    assert status.state is ServiceState.FAILED and status.restarts_itself
    fake.set_unit(
        "web.service", ActiveState="active", SubState="running", MainPID="101",
        Restart="always", NRestarts="1",
    )  # fmt: skip
    await plays_systemd.properties_changed(unit_object_path("web.service"), SubState="x")
    started = await events.wait_for("started", "web", timeout=5)
    assert started.pid == 101 and started.restarts == 1


async def test_close_while_connecting_leaves_nothing_running(
    make_systemd: Callable[..., SystemdServiceManager], fake: FakeSystemd, tmp_path: Path
) -> None:
    _running(fake)
    manager = make_systemd([unit_spec()], bus_address=f"unix:path={tmp_path / 'x.sock'}")
    await manager.start_watching()
    await manager.aclose()
    with contextlib.suppress(Exception):
        await manager.aclose()
    names = {t.get_name() for t in asyncio.all_tasks()}
    assert not names & {"systemd D-Bus signals", "systemd signals", "poll systemd"}


@pytest.mark.parametrize(
    ("props", "hit"),
    [
        ({"Result": "start-limit-hit", "Restart": "no", "NRestarts": "0"}, True),
        # systemd 252: its own restarts ran into the limit; Result keeps the first failure
        ({"Result": "exit-code", "Restart": "on-failure", "NRestarts": "3"}, True),
        ({"Result": "exit-code", "Restart": "on-failure", "NRestarts": "0"}, False),
        ({"Result": "exit-code", "Restart": "no", "NRestarts": "3"}, False),
    ],
)
async def test_a_unit_systemd_gave_up_on(
    fake: FakeSystemd,
    make_systemd: Callable[..., SystemdServiceManager],
    props: dict[str, str],
    hit: bool,
) -> None:
    fake.set_unit("web.service", ActiveState="failed", SubState="failed", MainPID="0", **props)
    status = await make_systemd([unit_spec()]).status("web")
    assert status.state is ServiceState.FAILED and status.start_limit_hit is hit
