"""Two watchkeeper processes on one NATS server: a host process and a central one talk
only through the server (events, a command and its reply, the host's outbox after the
host process is killed and started again)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from watchkeeper.bus import make_bus
from watchkeeper.bus.nats import NatsBus
from watchkeeper.config import Settings
from watchkeeper.config.fleet import BusSettings
from watchkeeper.model.events import AgentReply, Command, SystemStarted
from watchkeeper.model.topics import COMMAND, SYSTEM_STARTED
from watchkeeper.testing.nats_server import NatsServer

HOST_PROGRAM = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from watchkeeper.bus.nats import NatsBus
    from watchkeeper.config.fleet import BusSettings
    from watchkeeper.model.events import AgentReply, SystemStarted
    from watchkeeper.model.topics import SYSTEM_STARTED

    async def main() -> None:
        url, data, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
        settings = BusSettings(
            backend="nats", servers=[url], host_id="web-1", reconnect_wait=0.1,
            connect_timeout=0.5,
        )
        bus = NatsBus(settings, host="web-1", data_dir=data)
        commands = bus.subscribe("command.*", name="remediator")
        await bus.start()
        for i in range(count):
            await bus.publish(SYSTEM_STARTED, SystemStarted(version=f"child-{i}"), sender="t")
        print("published", flush=True)
        while True:
            request = await commands.get()
            word = request.value.command
            await bus.reply(
                request, AgentReply(ok=True, agent="remediator", command=word), sender="r"
            )
            if word == "quit":
                break
        await bus.stop()

    asyncio.run(main())
    """
)


def _start_host(tmp_path: Path, server: NatsServer, count: int) -> subprocess.Popen[str]:
    script = tmp_path / "host_program.py"
    script.write_text(HOST_PROGRAM)
    with (tmp_path / "host_program.log").open("a") as log:
        return subprocess.Popen(
            [sys.executable, str(script), server.url, str(tmp_path / "web-data"), str(count)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=os.environ.copy(),
        )


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


async def _wait_line(proc: subprocess.Popen[str], text: str, timeout: float = 30.0) -> None:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout)
    assert line.strip() == text, line


async def _ask(bus: NatsBus, word: str, timeout: float = 10.0) -> AgentReply:
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = await bus.request(
                COMMAND.at("remediator"),
                Command(command=word),
                sender="view",
                host="web-1",
                timeout=1.0,
            )
            return reply.parse(AgentReply)
        except TimeoutError:
            if time.monotonic() > deadline:
                raise


async def test_a_host_process_and_a_central_process(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = Settings.model_validate(
        {
            "data_dir": str(tmp_path / "central"),
            "bus": {
                "backend": "nats",
                "servers": [nats_server.url],
                "host_id": "central",
                "reconnect_wait": 0.1,
            },
        }
    )
    central = make_bus(settings)
    assert isinstance(central, NatsBus) and central.host == "central"
    view = central.subscribe("system.started", name="view", scope="fleet")
    await central.start()
    assert await central.wait_connected(10)
    proc = _start_host(tmp_path, nats_server, 5)
    try:
        await _wait_line(proc, "published")
        got = [await view.get(timeout=10) for _ in range(5)]
        assert [m.parse(SystemStarted).version for m in got] == [f"child-{i}" for i in range(5)]
        assert {(m.host, m.origin) for m in got} == {("web-1", "web-1")}
        reply = await _ask(central, "ping")
        assert reply.ok and reply.command == "ping"

        # The host process dies with events still in its outbox (the server is away);
        # started again on the same data dir, it sends them.
        _kill(proc)
        nats_server.kill()
        proc = _start_host(tmp_path, nats_server, 3)
        await _wait_line(proc, "published")
        await asyncio.sleep(0.3)
        _kill(proc)
        nats_server.restart()
        proc = _start_host(tmp_path, nats_server, 0)
        await _wait_line(proc, "published")
        got = [await view.get(timeout=15) for _ in range(3)]
        assert [m.parse(SystemStarted).version for m in got] == [f"child-{i}" for i in range(3)]
        assert (await _ask(central, "quit")).ok
        assert proc.wait(15) == 0
        _kill(proc)
        with pytest.raises(TimeoutError):
            extra = await view.get(timeout=0.5)
            raise AssertionError(f"a duplicate arrived: {extra!r}")
    finally:
        _kill(proc)
        await central.stop()


CENTRAL_PROGRAM = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from watchkeeper.bus.nats import NatsBus
    from watchkeeper.config.fleet import BusSettings

    async def main() -> None:
        url, data = sys.argv[1], Path(sys.argv[2])
        settings = BusSettings(backend="nats", servers=[url], host_id="central",
                               reconnect_wait=0.1)
        bus = NatsBus(settings, host="central", data_dir=data)
        view = bus.subscribe("system.*", name="view", scope="fleet")
        await bus.start()
        await bus.wait_connected(10)
        print("ready", flush=True)
        async for message in view:
            print(message.id, message.value.version, flush=True)

    asyncio.run(main())
    """
)


async def test_a_central_killed_mid_stream_catches_up_exactly_once(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """The central process dies (SIGKILL) and comes back: every event exactly once."""
    script = tmp_path / "central_program.py"
    script.write_text(CENTRAL_PROGRAM)

    def start_central() -> subprocess.Popen[str]:
        with (tmp_path / "central.log").open("a") as log:
            return subprocess.Popen(
                [sys.executable, str(script), nats_server.url, str(tmp_path / "central")],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )

    async def read(proc: subprocess.Popen[str], count: int) -> list[str]:
        assert proc.stdout is not None
        lines = []
        for _ in range(count):
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
            lines.append(line.split()[0])
        return lines

    web = NatsBus(
        BusSettings(backend="nats", servers=[nats_server.url], host_id="web-1"),
        host="web-1",
        data_dir=tmp_path / "web",
    )
    await web.start()
    assert await web.wait_connected(10)
    central = start_central()
    try:
        await _wait_line(central, "ready")
        sent = [
            (await web.publish(SYSTEM_STARTED, SystemStarted(version=f"a{i}"), sender="t")).id
            for i in range(10)
        ]
        first = await read(central, 10)
        _kill(central)
        sent += [
            (await web.publish(SYSTEM_STARTED, SystemStarted(version=f"b{i}"), sender="t")).id
            for i in range(10)
        ]
        assert await web.flush(10)
        central = start_central()
        await _wait_line(central, "ready")
        second = await read(central, 10)
        assert first + second == sent
        assert central.stdout is not None
        with pytest.raises(TimeoutError):
            extra = await asyncio.wait_for(asyncio.to_thread(central.stdout.readline), 1.0)
            raise AssertionError(f"a duplicate arrived: {extra!r}")
    finally:
        _kill(central)
        await web.stop()
