"""Starvation, the way the attack run caused it: kills of SIGTERM-ignoring processes with
the longest grace, several at once, while the daemon must keep sampling. Each concern's
blocking work has its own pool, and a kill waiting out its grace holds no thread at all,
so neither a busy shared pool nor long kills can stop sampling or other actions."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from action_attack_helpers import running_daemon, victim, wait_for

from watchkeeper.agents.base import AgentContext
from watchkeeper.agents.remediator import RemediatorAgent
from watchkeeper.agents.sensor import SensorAgent
from watchkeeper.bus import InMemoryBus
from watchkeeper.config import Settings
from watchkeeper.live_config import ConfigStore
from watchkeeper.model.actions import ActionOutcome, ActionRecord, ActionRequest

KILLS = 6  # more than the actions' own pool has threads, and than a 2-core default pool


def store_with(**remediation: object) -> tuple[ConfigStore, InMemoryBus]:
    bus = InMemoryBus()
    settings = Settings.model_validate({"remediation": {"healing_cooldown": 0, **remediation}})
    return ConfigStore(settings, None, bus), bus


@pytest.fixture
async def tiny_shared_pool() -> AsyncIterator[ThreadPoolExecutor]:
    """The event loop's shared pool cut to one thread, as a busy daemon's would be."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="shared")
    asyncio.get_running_loop().set_default_executor(pool)
    yield pool
    pool.shutdown(wait=False, cancel_futures=True)


@contextlib.contextmanager
def shared_pool_held(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Every thread of the shared pool busy (with one thread: that one) until the end."""
    release = threading.Event()
    loop.run_in_executor(None, release.wait, 60.0)
    try:
        yield
    finally:
        release.set()


async def test_sampling_goes_on_while_the_shared_pool_is_held(
    tmp_path: Path, tiny_shared_pool: ThreadPoolExecutor
) -> None:
    store, bus = store_with()
    sensor = SensorAgent("sensor", AgentContext(bus=bus, settings=store, data_dir=tmp_path))
    await sensor.setup()
    try:
        with shared_pool_held(asyncio.get_running_loop()):
            for _ in range(2):
                before = time.time()
                await asyncio.wait_for(sensor.check_once(), 10)
                assert sensor.latest is not None and sensor.latest.timestamp >= before
    finally:
        await sensor.teardown()


async def user_kill(agent: RemediatorAgent, pid: int, grace: float) -> ActionRecord:
    created = psutil.Process(pid).create_time()
    return await agent.submit(
        ActionRequest(
            action="kill_process",
            target=str(pid),
            proposer="user",
            params={"create_time": created, "grace": grace},
        )
    )


async def finished(agent: RemediatorAgent, record_id: str, timeout: float) -> ActionRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [r for r in agent.audit() if r.id == record_id]
        if done:
            return done[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"action {record_id} did not finish within {timeout}s")


async def test_kills_waiting_out_their_grace_hold_no_thread(
    tmp_path: Path, tiny_shared_pool: ThreadPoolExecutor
) -> None:
    store, bus = store_with(max_concurrent_actions=KILLS + 1)
    agent = RemediatorAgent("remediator", AgentContext(bus=bus, settings=store, data_dir=tmp_path))
    await agent.setup()
    try:
        with contextlib.ExitStack() as stack:
            stuck = [stack.enter_context(victim(ignore_term=True)) for _ in range(KILLS)]
            other = stack.enter_context(victim())
            kills = [await user_kill(agent, child.pid, grace=3.0) for child in stuck]
            assert all(k.outcome is ActionOutcome.RUNNING for k in kills), kills
            await asyncio.sleep(0.5)
            # While every kill waits out its grace: the shared pool is free...
            assert await asyncio.wait_for(asyncio.to_thread(lambda: "free"), 2) == "free"
            # ...and another action is checked and run at once.
            renice = await agent.submit(
                ActionRequest(
                    action="renice_process",
                    target=str(other.pid),
                    proposer="user",
                    params={"create_time": psutil.Process(other.pid).create_time()},
                )
            )
            assert renice.outcome is ActionOutcome.RUNNING, renice
            assert (await finished(agent, renice.id, 2)).outcome is ActionOutcome.SUCCEEDED
            assert psutil.Process(other.pid).nice() == 10
            # The kills end as they should: SIGTERM ignored, SIGKILL after the grace.
            for kill, child in zip(kills, stuck, strict=True):
                record = await finished(agent, kill.id, 15)
                assert record.outcome is ActionOutcome.SUCCEEDED, record
                assert "ignored SIGTERM; sent SIGKILL" in record.detail
                assert child.poll() is not None
    finally:
        await agent.teardown()


@pytest.mark.slow
def test_a_running_daemon_keeps_sampling_through_kills_at_the_longest_grace(
    tmp_path: Path,
) -> None:
    with running_daemon(tmp_path) as daemon, contextlib.ExitStack() as stack:
        stuck = [stack.enter_context(victim(ignore_term=True)) for _ in range(KILLS + 2)]
        wait_for(lambda: daemon.get("/api/metrics").status_code == 200, 20, "a first sample")
        for child in stuck:
            created = psutil.Process(child.pid).create_time()
            reply = daemon.run_action(
                "kill_process", str(child.pid), {"create_time": created, "grace": 60}
            )
            assert reply.status_code == 200, reply.text
        running = wait_for(
            lambda: daemon.get("/api/remediation").json()["status"]["running"] >= len(stuck),
            10,
            "every kill in flight",
        )
        assert running
        # Three intervals (0.5 s each) is stale; allow twice that before calling it starved.
        ages = []
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            sample = daemon.get("/api/metrics").json()
            ages.append(time.time() - float(sample["timestamp"]))
            time.sleep(0.5)
        assert max(ages) < 3.0, f"sampling stalled while kills waited: ages {ages}"
        assert all(child.poll() is None for child in stuck)  # still inside their grace
