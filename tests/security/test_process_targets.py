"""Process actions aimed the way an attacker would aim them: at a thread's id, at a
protected daemon through one of its threads, at sshd's per-login process, at a kernel
thread. Every one is refused, and the process it aimed at is still there afterwards."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from action_attack_helpers import (
    kernel_thread,
    running_daemon,
    thread_ids,
    victim,
    wait_for,
)

from watchkeeper.agents.base import AgentContext
from watchkeeper.agents.remediator import RemediatorAgent
from watchkeeper.bus import InMemoryBus
from watchkeeper.config import Settings
from watchkeeper.live_config import ConfigStore
from watchkeeper.model.actions import ActionOutcome, ActionRecord, ActionRequest

PROCESS_ACTIONS = ["kill_process", "renice_process"]


@pytest.fixture
async def remediator(tmp_path: Path) -> AsyncIterator[RemediatorAgent]:
    """A remediator with the default settings (default protected names included)."""
    bus = InMemoryBus()
    store = ConfigStore(
        Settings.model_validate({"remediation": {"healing_cooldown": 0}}), None, bus
    )
    agent = RemediatorAgent("remediator", AgentContext(bus=bus, settings=store, data_dir=tmp_path))
    yield agent
    await agent.teardown()


async def ask(agent: RemediatorAgent, action: str, pid: int, **params: Any) -> ActionRecord:
    """A person's request (the proposer the policy trusts most) on ``pid``."""
    params.setdefault("create_time", psutil.Process(pid).create_time())
    if action == "kill_process":
        params.setdefault("grace", 0.2)
    record = await agent.submit(
        ActionRequest(
            action=action,
            target=str(pid),
            target_kind="process",
            proposer="user",
            params=params,
        )
    )
    # Had it been let through, let it finish, so what it did is what the test sees.
    for _ in range(100):
        if record.outcome is not ActionOutcome.RUNNING:
            break
        await asyncio.sleep(0.05)
        record = next((r for r in agent.audit() if r.id == record.id), record)
    return record


@pytest.fixture
def own_thread() -> Iterator[int]:
    """The native id of a thread of this very process (watchkeeper's own, here)."""
    ready, stop = threading.Event(), threading.Event()
    tid: list[int] = []

    def body() -> None:
        tid.append(threading.get_native_id())
        ready.set()
        stop.wait(30)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    ready.wait(5)
    try:
        yield tid[0]
    finally:
        stop.set()
        thread.join(5)


@pytest.mark.parametrize("action", PROCESS_ACTIONS)
async def test_a_thread_id_of_another_process_is_refused(
    remediator: RemediatorAgent, action: str
) -> None:
    with victim() as child:
        tid = thread_ids(child.pid)[0]
        nice_before = psutil.Process(child.pid).nice()
        record = await ask(remediator, action, tid)
        assert record.outcome is ActionOutcome.REFUSED, record
        assert f"pid {tid} is a thread of process {child.pid}" in record.detail
        assert child.poll() is None
        assert psutil.Process(child.pid).nice() == nice_before


async def test_a_thread_of_watchkeeper_itself_is_refused(
    remediator: RemediatorAgent, own_thread: int
) -> None:
    # Renice only: a kill let through would end this test run (the daemon test below
    # aims kill_process at the daemon's own threads).
    nice_before = os.getpriority(os.PRIO_PROCESS, own_thread)
    record = await ask(remediator, "renice_process", own_thread)
    assert record.outcome is ActionOutcome.REFUSED, record
    assert "thread of protected process" in record.detail
    assert os.getpriority(os.PRIO_PROCESS, own_thread) == nice_before


@pytest.mark.parametrize("name", ["sshd", "sshd-session"])
@pytest.mark.parametrize("action", PROCESS_ACTIONS)
async def test_protected_daemons_are_refused_by_pid_and_through_their_threads(
    remediator: RemediatorAgent, name: str, action: str
) -> None:
    # A real child calling itself sshd / sshd-session, as OpenSSH's processes do.
    with victim(name) as child:
        assert psutil.Process(child.pid).name() == name
        for pid in (thread_ids(child.pid)[0], child.pid):
            record = await ask(remediator, action, pid)
            assert record.outcome is ActionOutcome.REFUSED, record
            assert "protected" in record.detail or "thread of process" in record.detail
        assert child.poll() is None
        assert psutil.Process(child.pid).nice() == 0


async def test_a_renamed_protected_daemon_stays_protected(remediator: RemediatorAgent) -> None:
    # sshd's per-login child names itself "sshd: user@pts/0" on its command line; the
    # protection follows every name the process goes by, not only its kernel name.
    script = "import time; print('ready', flush=True); time.sleep(600)"
    proc = subprocess.Popen(
        ["bash", "-c", f'exec -a "sshd: alice@pts/0" {sys.executable} -c "{script}"'],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert psutil.Process(proc.pid).cmdline()[0] == "sshd: alice@pts/0"
        record = await ask(remediator, "kill_process", proc.pid)
        assert record.outcome is ActionOutcome.REFUSED and "'sshd'" in record.detail, record
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.parametrize("action", PROCESS_ACTIONS)
async def test_kernel_threads_are_never_targets(remediator: RemediatorAgent, action: str) -> None:
    kthread = kernel_thread()
    nice_before = kthread.nice()
    try:
        record = await ask(remediator, action, kthread.pid)
        assert record.outcome is ActionOutcome.REFUSED, record
        assert "kernel thread" in record.detail
        assert kthread.is_running() and kthread.nice() == nice_before
    finally:
        if kthread.is_running() and kthread.nice() != nice_before:
            kthread.nice(nice_before)  # leave the host as it was, whatever happened


@pytest.mark.slow
def test_a_running_daemon_refuses_its_own_threads_and_a_childs_thread(tmp_path: Path) -> None:
    with running_daemon(tmp_path) as daemon, victim() as child:
        own = thread_ids(daemon.proc.pid)
        assert own, "the daemon runs threads"
        for tid in own[:3]:
            reply = daemon.run_action(
                "kill_process", str(tid), {"create_time": psutil.Process(tid).create_time()}
            )
            assert reply.status_code == 200, reply.text
            record = reply.json()["replies"]["remediator"]["record"]
            assert record["outcome"] == "refused", record
            assert "thread of protected process" in record["detail"]
        tid = thread_ids(child.pid)[0]
        reply = daemon.run_action(
            "kill_process", str(tid), {"create_time": psutil.Process(tid).create_time()}
        )
        record = reply.json()["replies"]["remediator"]["record"]
        assert record["outcome"] == "refused" and "is a thread of process" in record["detail"]
        # Nothing was signalled: the daemon and the child are both still there.
        wait_for(lambda: daemon.get("/api/health").status_code in (200, 503), 5, "health")
        assert daemon.proc.poll() is None
        assert child.poll() is None
