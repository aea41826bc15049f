"""BaseAgent and the supervisor, through the bus and the public surface."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from watchkeeper.agents.base import AgentContext, BaseAgent
from watchkeeper.bus import InMemoryBus
from watchkeeper.config import load_settings
from watchkeeper.live_config import ConfigStore
from watchkeeper.model.events import Command
from watchkeeper.model.snapshot import AgentState
from watchkeeper.supervisor import Supervisor


class Tick(BaseModel):
    n: int


class Counter(BaseAgent):
    async def _perform_check(self) -> None:
        await self.publish(f"tick.{self.name}", Tick(n=self.checks))


class Slow(BaseAgent):
    """Takes a while over each check, then publishes what it found."""

    started = 0

    async def _perform_check(self) -> None:
        type(self).started += 1
        await asyncio.sleep(0.3)
        await self.publish(f"tick.{self.name}", Tick(n=self.checks))


class Crasher(BaseAgent):
    max_consecutive_errors = 2

    async def _perform_check(self) -> None:
        raise RuntimeError("disk on fire")


class Flaky(BaseAgent):
    """Fails its first two checks, then works."""

    async def _perform_check(self) -> None:
        if self.checks < 2:
            raise OSError("transient")


class Hanger(BaseAgent):
    """Hangs in its second check of each life."""

    lives = 0

    async def setup(self) -> None:
        type(self).lives += 1
        self._life_checks = 0

    async def _perform_check(self) -> None:
        self._life_checks += 1
        if self._life_checks == 2:
            await asyncio.Event().wait()  # never set: a hang


@pytest.fixture
def store(tmp_path: Path) -> ConfigStore:
    settings, _ = load_settings(
        flags={"data_dir": str(tmp_path), "agents": {"check_interval": 0.1}}
    )
    return ConfigStore(settings, None, InMemoryBus())


def make_ctx(store: ConfigStore) -> AgentContext:
    assert store._bus is not None
    return AgentContext(bus=store._bus, settings=store, data_dir=store.current.data_dir)


@contextlib.asynccontextmanager
async def supervised(
    store: ConfigStore, *agents: BaseAgent, min_hang: float = 0.3
) -> AsyncIterator[Supervisor]:
    assert store._bus is not None
    supervisor = Supervisor(
        store._bus,
        backoff_initial=0.05,
        backoff_max=0.2,
        min_hang_timeout=min_hang,
        stable_after=30,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(supervisor.run(agents, stop))
    try:
        yield supervisor
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def wait_until(predicate: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_agent_checks_at_its_interval_and_reports_health(store: ConfigStore) -> None:
    ctx = make_ctx(store)
    agent = Counter("counter", ctx)
    ticks = ctx.bus.subscribe("tick.counter", name="t")
    async with supervised(store, agent):
        await wait_until(lambda: agent.checks >= 5)
        health = agent.health()
    assert health.state is AgentState.RUNNING
    assert health.errors == 0 and health.last_duration_ms is not None
    assert ticks.qsize() >= 5
    assert agent.state is AgentState.STOPPED


async def test_failed_checks_degrade_then_recover(store: ConfigStore) -> None:
    agent = Flaky("flaky", make_ctx(store))
    async with supervised(store, agent):
        await wait_until(lambda: agent.checks >= 4)
    health = agent.health()
    assert health.errors == 2
    assert health.last_error == "OSError: transient"
    assert health.consecutive_errors == 0
    assert health.restarts == 0


async def test_crashing_agent_is_restarted_with_backoff_and_others_keep_going(
    store: ConfigStore,
) -> None:
    ctx = make_ctx(store)
    crasher = Crasher("crasher", ctx)
    steady = Counter("steady", ctx)
    restarts = ctx.bus.subscribe("agent.restarted", name="t")
    async with supervised(store, crasher, steady):
        await wait_until(lambda: crasher.restarts >= 3)
        checks_then = steady.checks
        await wait_until(lambda: steady.checks > checks_then + 3)
    events = [restarts.get_nowait() for _ in range(3)]
    assert all(e is not None and e.payload["agent"] == "crasher" for e in events)
    backoffs = [e.payload["backoff_s"] for e in events if e]
    assert backoffs[0] < backoffs[1] <= backoffs[2] <= 0.2  # exponential, capped
    assert "disk on fire" in events[0].payload["reason"]  # type: ignore[union-attr]
    assert steady.restarts == 0 and steady.errors == 0


async def test_hanging_agent_is_cancelled_and_restarted(store: ConfigStore) -> None:
    ctx = make_ctx(store)
    Hanger.lives = 0
    hanger = Hanger("hanger", ctx)
    async with supervised(store, hanger, min_hang=0.2):
        await wait_until(lambda: hanger.restarts >= 1 and Hanger.lives >= 2)
    assert hanger.last_restart_reason is not None
    assert hanger.last_restart_reason.startswith("hung")


async def test_commands_over_the_bus(store: ConfigStore) -> None:
    ctx = make_ctx(store)
    agent = Counter("counter", ctx)
    async with supervised(store, agent):
        await wait_until(lambda: agent.state is AgentState.RUNNING)
        reply = await ctx.bus.request(
            "command.counter", Command(command="health_check"), sender="t", timeout=2
        )
        assert reply.payload["ok"] is True
        assert reply.payload["health"]["name"] == "counter"

        reply = await ctx.bus.request("command.counter", Command(command="pause"), sender="t")
        assert reply.payload["state"] == "paused"
        paused_at = agent.checks
        await asyncio.sleep(0.3)
        assert agent.checks == paused_at
        assert agent.health().state is AgentState.PAUSED

        await ctx.bus.request("command.all", Command(command="resume"), sender="t")
        await wait_until(lambda: agent.checks > paused_at)

        reply = await ctx.bus.request("command.counter", Command(command="restart"), sender="t")
        assert reply.payload["state"] == "restarting"
        await wait_until(lambda: agent.restarts == 1 and agent.state is AgentState.RUNNING)
        assert agent.last_restart_reason == "restart requested"

        reply = await ctx.bus.request("command.counter", Command(command="dance"), sender="t")
        assert reply.payload["ok"] is False
        assert "no command 'dance'" in reply.payload["error"]


async def test_pause_answers_after_a_check_under_way_and_nothing_follows(
    store: ConfigStore,
) -> None:
    """An operator who reads "paused" sees no sample published after it."""
    ctx = make_ctx(store)
    agent = Slow("slow", ctx)
    sub = ctx.bus.subscribe("tick.slow", name="t")
    async with supervised(store, agent, min_hang=2.0):
        await wait_until(lambda: agent.check_started is not None)
        reply = await ctx.bus.request("command.slow", Command(command="pause"), sender="t")
        assert reply.payload["state"] == "paused"
        assert agent.check_started is None, "pause answered while a check was running"
        published = agent.checks
        assert published >= 1
        await asyncio.sleep(0.7)
        assert agent.checks == published and agent.check_started is None
    ticks = 0
    while True:
        try:
            await asyncio.wait_for(sub.get(), 0.05)
        except TimeoutError:
            break
        ticks += 1
    sub.close()
    assert ticks == published, "a sample was published after 'paused'"


async def test_interval_change_applies_without_restart(store: ConfigStore) -> None:
    await store.update({"agents.check_interval": 10})
    agent = Counter("counter", make_ctx(store))
    async with supervised(store, agent):
        await wait_until(lambda: agent.checks >= 1)
        await asyncio.sleep(0.2)
        assert agent.checks == 1  # waiting out a 10 s interval
        await store.update({"agents.check_interval": 0.1})
        await wait_until(lambda: agent.checks >= 5, timeout=3)
    assert agent.restarts == 0
