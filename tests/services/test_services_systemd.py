"""The systemd backend, driving a stand-in ``systemctl`` written by the test.

systemd is not PID 1 here, so the boundary is faked: a small executable script that
answers ``show`` from a JSON state file, changes that state on start/stop/restart, and
records every argv it was called with.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from watchkeeper.config.services import ServiceSpec, TcpProbe
from watchkeeper.model.services import ServiceState
from watchkeeper.services import (
    ServiceActionError,
    ServicePermissionError,
    SystemdServiceManager,
    UnknownServiceError,
    validate_unit_name,
)

_FAKE = """\
#!{python}
import json, sys
STATE, CALLS = {state!r}, {calls!r}
args = sys.argv[1:]
with open(CALLS, "a") as fh:
    fh.write(json.dumps(args) + "\\n")
with open(STATE) as fh:
    state = json.load(fh)
words = [a for a in args if not a.startswith("--")]
verb, units = words[0], words[1:]
if verb == "show":
    wanted = next(a for a in args if a.startswith("--property=")).split("=", 1)[1].split(",")
    blocks = []
    for unit in units:
        props = {{"Id": unit, "LoadState": "not-found", "ActiveState": "inactive",
                  "SubState": "dead", "MainPID": "0"}}
        props.update(state["units"].get(unit, {{}}))
        blocks.append("\\n".join(f"{{k}}={{props.get(k, '')}}" for k in wanted))
    print("\\n\\n".join(blocks))
    sys.exit(0)
unit = units[0]
if state.get("deny"):
    print(f"Failed to {{verb}} {{unit}}: Access denied", file=sys.stderr)
    sys.exit(4)
if unit not in state["units"]:
    print(f"Failed to {{verb}} {{unit}}: Unit {{unit}} not found.", file=sys.stderr)
    sys.exit(5)
props = state["units"][unit]
if verb in ("start", "restart"):
    state["next_pid"] += 1
    props.update(LoadState="loaded", ActiveState="active", SubState="running",
                 MainPID=str(state["next_pid"]), ExecMainCode="0", ExecMainStatus="0")
elif verb == "stop":
    props.update(ActiveState="inactive", SubState="dead", MainPID="0",
                 ExecMainCode="2", ExecMainStatus="15")
with open(STATE, "w") as fh:
    json.dump(state, fh)
"""


class FakeSystemd:
    def __init__(self, root: Path) -> None:
        self.state_path = root / "systemd-state.json"
        self.calls_path = root / "systemctl-calls.jsonl"
        self.executable = root / "systemctl"
        self.executable.write_text(
            _FAKE.format(
                python=sys.executable, state=str(self.state_path), calls=str(self.calls_path)
            )
        )
        self.executable.chmod(0o755)
        self.state: dict[str, Any] = {"units": {}, "next_pid": 4000, "deny": False}
        self.save()

    def save(self) -> None:
        self.state_path.write_text(json.dumps(self.state))

    def set_unit(self, unit: str, **props: str) -> None:
        self.state = json.loads(self.state_path.read_text())
        self.state["units"][unit] = {"LoadState": "loaded", **props}
        self.save()

    def deny(self) -> None:
        self.state = json.loads(self.state_path.read_text())
        self.state["deny"] = True
        self.save()

    def calls(self) -> list[list[str]]:
        if not self.calls_path.exists():
            return []
        return [json.loads(line) for line in self.calls_path.read_text().splitlines()]


@pytest.fixture
def fake(tmp_path: Path) -> FakeSystemd:
    return FakeSystemd(tmp_path)


@pytest.fixture
async def make_systemd(
    fake: FakeSystemd, events: Any
) -> AsyncIterator[Callable[..., SystemdServiceManager]]:
    managers: list[SystemdServiceManager] = []

    def _make(specs: list[ServiceSpec], **kwargs: Any) -> SystemdServiceManager:
        kwargs.setdefault("systemctl", fake.executable)
        manager = SystemdServiceManager(specs, events, **kwargs)
        managers.append(manager)
        return manager

    yield _make
    for manager in managers:
        await manager.aclose()


def unit_spec(name: str = "nginx", **extra: Any) -> ServiceSpec:
    return ServiceSpec(name=name, manager="systemd", **extra)


async def test_status_is_parsed_from_systemctl_show(
    fake: FakeSystemd, make_systemd: Callable[..., SystemdServiceManager]
) -> None:
    # systemd started the main process 100 s ago on the monotonic clock.
    fake.set_unit(
        "nginx.service",
        ActiveState="active",
        SubState="running",
        MainPID="1234",
        ExecMainStartTimestampMonotonic=str(400 * 1_000_000),
        NRestarts="2",
        Result="success",
    )
    manager = make_systemd(
        [unit_spec(critical=True)], clock=lambda: 1_000_000.0, monotonic=lambda: 500.0
    )
    status = await manager.status("nginx")
    assert status.state is ServiceState.RUNNING
    assert status.pid == 1234
    assert status.restarts == 2
    assert status.critical is True
    assert status.started_at is not None
    assert status.started_at.timestamp() == pytest.approx(1_000_000.0 - 100)
    assert status.detail == "nginx.service: active/running"
    show = fake.calls()[-1]
    assert show[0] == "show" and show[1] == "nginx.service" and "--no-pager" in show
    assert show[2].startswith("--property=Id,LoadState,ActiveState,")
    assert "ExecMainStartTimestampMonotonic" in show[2] and "NRestarts" in show[2]


@pytest.mark.parametrize(
    ("props", "state", "code", "sig"),
    [
        ({"ActiveState": "failed", "SubState": "failed", "Result": "exit-code",
          "ExecMainCode": "1", "ExecMainStatus": "3"}, ServiceState.FAILED, 3, None),
        ({"ActiveState": "failed", "SubState": "failed", "Result": "signal",
          "ExecMainCode": "2", "ExecMainStatus": "9"}, ServiceState.FAILED, None, 9),
        ({"ActiveState": "activating", "SubState": "start-pre"}, ServiceState.STARTING,
         None, None),
        ({"ActiveState": "inactive", "SubState": "dead"}, ServiceState.STOPPED, None, None),
        ({"ActiveState": "bogus", "SubState": "x"}, ServiceState.UNKNOWN, None, None),
    ],
)  # fmt: skip
async def test_states_and_exit_status(
    fake: FakeSystemd,
    make_systemd: Callable[..., SystemdServiceManager],
    props: dict[str, str],
    state: ServiceState,
    code: int | None,
    sig: int | None,
) -> None:
    fake.set_unit("nginx.service", **props)
    status = await make_systemd([unit_spec()]).status("nginx")
    assert status.state is state
    assert status.last_exit_code == code and status.last_exit_signal == sig
    if props.get("Result", "success") != "success":
        assert f"result {props['Result']}" in status.detail


async def test_list_asks_once_for_all_units(
    fake: FakeSystemd, make_systemd: Callable[..., SystemdServiceManager]
) -> None:
    fake.set_unit("nginx.service", ActiveState="active", SubState="running", MainPID="10")
    fake.set_unit("getty@tty1.service", ActiveState="inactive", SubState="dead")
    manager = make_systemd(
        [unit_spec(), unit_spec("getty", unit="getty@tty1"), unit_spec("gone", unit="gone.timer")]
    )
    statuses = {s.name: s for s in await manager.list()}
    assert [c[:4] for c in fake.calls()] == [
        ["show", "nginx.service", "getty@tty1.service", "gone.timer"]
    ]
    assert statuses["nginx"].state is ServiceState.RUNNING
    assert statuses["getty"].state is ServiceState.STOPPED
    assert statuses["gone"].state is ServiceState.UNKNOWN
    assert "not installed" in statuses["gone"].detail


@pytest.mark.parametrize(
    "bad",
    [
        "nginx; rm -rf /",
        "-x",
        "--help",
        "a b",
        "a/b",
        "../etc",
        "nginx$(id)",
        "nginx`id`",
        "nginx|cat",
        "nginx\n",
        "nginx\\x2d",
        "ngіnx",  # Cyrillic 'і'
        "ｎginx",  # fullwidth 'n'
        "nginx\u200b",  # zero-width space
        "",
        ".hidden",
        "x" * 300,
    ],
)
def test_unit_names_are_validated_strictly(bad: str, fake: FakeSystemd) -> None:
    with pytest.raises(ValueError):
        validate_unit_name(bad)
    try:
        spec = unit_spec("svc", unit=bad)
    except ValidationError:
        pass  # the config layer already refuses it (control characters, length, empty)
    else:
        with pytest.raises(ValueError, match="invalid systemd unit name"):
            SystemdServiceManager([spec], systemctl=fake.executable)
    assert fake.calls() == []  # nothing was ever run


@pytest.mark.parametrize(
    ("good", "full"),
    [
        ("nginx", "nginx.service"),
        ("nginx.service", "nginx.service"),
        ("getty@tty1.service", "getty@tty1.service"),
        ("systemd-journald", "systemd-journald.service"),
        ("dbus.socket", "dbus.socket"),
        ("dev-sda1.device", "dev-sda1.device"),
    ],
)
def test_valid_unit_names(good: str, full: str) -> None:
    assert validate_unit_name(good) == full


async def test_actions_run_systemctl_with_plain_argv(
    fake: FakeSystemd, make_systemd: Callable[..., SystemdServiceManager], events: Any
) -> None:
    fake.set_unit("nginx.service", ActiveState="active", SubState="running", MainPID="100")
    manager = make_systemd([unit_spec()])
    status = await manager.restart("nginx")
    assert ["--no-ask-password", "--no-pager", "restart", "nginx.service"] in fake.calls()
    assert status.state is ServiceState.RUNNING and status.pid == 4001
    assert [(e.kind, e.pid) for e in events.events] == [("stopped", 100), ("started", 4001)]

    events.events.clear()
    stopped = await manager.stop("nginx")
    assert stopped.state is ServiceState.STOPPED and stopped.pid is None
    assert events.kinds() == ["stopped"]
    assert events.events[0].exit_signal == 15

    started = await manager.start("nginx")
    assert started.state is ServiceState.RUNNING
    assert events.kinds() == ["stopped", "started"]


async def test_permission_failures_say_so_plainly(
    fake: FakeSystemd, make_systemd: Callable[..., SystemdServiceManager]
) -> None:
    fake.set_unit("nginx.service", ActiveState="active", SubState="running", MainPID="100")
    fake.deny()
    manager = make_systemd([unit_spec()])
    with pytest.raises(ServicePermissionError) as caught:
        await manager.restart("nginx")
    assert "restarting unit nginx.service needs root" in str(caught.value)
    assert "Access denied" in str(caught.value)
    assert caught.value.service == "nginx"


async def test_unknown_units_and_names(
    fake: FakeSystemd, make_systemd: Callable[..., SystemdServiceManager]
) -> None:
    manager = make_systemd([unit_spec("ghost", unit="ghost")])
    with pytest.raises(UnknownServiceError, match="not installed"):
        await manager.start("ghost")
    with pytest.raises(UnknownServiceError):
        await manager.status("not-configured")


async def test_missing_systemctl_is_reported_not_raised_on_read(
    tmp_path: Path, make_systemd: Callable[..., SystemdServiceManager]
) -> None:
    manager = make_systemd([unit_spec()], systemctl=tmp_path / "no-systemctl")
    status = await manager.status("nginx")
    assert status.state is ServiceState.UNKNOWN
    assert "cannot run" in status.detail
    with pytest.raises(ServiceActionError, match="cannot run"):
        await manager.start("nginx")


async def test_polling_reports_a_crash_as_exited(
    fake: FakeSystemd, make_systemd: Callable[..., SystemdServiceManager], events: Any
) -> None:
    fake.set_unit("nginx.service", ActiveState="active", SubState="running", MainPID="100")
    manager = make_systemd([unit_spec()], poll_interval=0.05)
    await manager.list()  # baseline
    await manager.start_watching()
    fake.set_unit(
        "nginx.service",
        ActiveState="failed",
        SubState="failed",
        Result="core-dump",
        ExecMainCode="3",
        ExecMainStatus="11",
    )
    exited = await events.wait_for("exited", "nginx", timeout=5)
    assert exited.pid == 100 and exited.exit_signal == 11
    # systemd bringing it back by itself is seen as well.
    fake.set_unit("nginx.service", ActiveState="active", SubState="running", MainPID="101")
    started = await events.wait_for("started", "nginx", timeout=5)
    assert started.pid == 101


async def test_probe_runs_only_for_active_units(
    fake: FakeSystemd, make_systemd: Callable[..., SystemdServiceManager], events: Any
) -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        fake.set_unit("nginx.service", ActiveState="active", SubState="running", MainPID="7")
        manager = make_systemd([unit_spec(probe=TcpProbe(port=port))])
        status = await manager.probe("nginx")
        assert status.healthy is True
        assert events.kinds() == ["healthy"]
        assert (await manager.status("nginx")).healthy is True
        fake.set_unit("nginx.service", ActiveState="inactive", SubState="dead")
        stopped = await manager.probe("nginx")
        assert stopped.healthy is None
    finally:
        server.close()
        await server.wait_closed()


async def test_a_failed_query_does_not_fake_a_restart(
    fake: FakeSystemd, make_systemd: Callable[..., SystemdServiceManager], events: Any
) -> None:
    fake.set_unit("nginx.service", ActiveState="active", SubState="running", MainPID="100")
    manager = make_systemd([unit_spec()])
    await manager.list()
    fake.executable.rename(fake.executable.with_name("systemctl-away"))
    assert (await manager.status("nginx")).state is ServiceState.UNKNOWN
    fake.executable.with_name("systemctl-away").rename(fake.executable)
    assert (await manager.status("nginx")).state is ServiceState.RUNNING
    assert events.events == []
