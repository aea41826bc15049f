"""Safety of the remediator: what it must refuse, and that every refusal is recorded."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from watchkeeper.agents.base import AgentContext
from watchkeeper.agents.remediator import RemediatorAgent
from watchkeeper.bus import InMemoryBus
from watchkeeper.config import Settings, deep_merge
from watchkeeper.live_config import ConfigStore
from watchkeeper.model.actions import ActionOutcome, ActionRequest
from watchkeeper.remediation.files import clean_tree, resolve_cleanup_target, rotate_file

DAY = 86400


def settings_with(**remediation: Any) -> Settings:
    base = Settings.model_validate({}).model_dump(mode="json")
    return Settings.model_validate(deep_merge(base, {"remediation": remediation}))


@pytest.fixture
async def remediator(tmp_path: Path) -> AsyncIterator[RemediatorAgent]:
    cleanup = tmp_path / "cleanup"
    cleanup.mkdir()
    store = ConfigStore(
        settings_with(
            cleanup_dirs=[{"path": str(cleanup), "older_than_days": 1}], healing_cooldown=60
        ),
        None,
        InMemoryBus(),
    )
    assert store._bus is not None
    agent = RemediatorAgent(
        "remediator", AgentContext(bus=store._bus, settings=store, data_dir=tmp_path)
    )
    yield agent
    await agent.teardown()


@pytest.fixture
def sleeper() -> Iterator[psutil.Process]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield psutil.Process(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def request(
    action: str, target: str | None, proposer: str = "rule", **params: Any
) -> ActionRequest:
    return ActionRequest(action=action, target=target, proposer=proposer, params=params)  # type: ignore[arg-type]


def make_tree(root: Path, outside: Path) -> None:
    old = time.time() - 3 * DAY
    (root / "sub").mkdir()
    for path in (root / "old.log", root / "sub" / "old.bin"):
        path.write_bytes(b"x" * 4096)
        os.utime(path, (old, old))
    (root / "fresh.log").write_bytes(b"y" * 100)
    (outside / "precious.txt").write_bytes(b"keep me")
    os.utime(outside / "precious.txt", (old, old))
    (root / "link_to_file").symlink_to(outside / "precious.txt")
    (root / "link_to_dir").symlink_to(outside, target_is_directory=True)


# -- clean_directory ------------------------------------------------------------------------


def test_clean_tree_deletes_only_old_regular_files_and_never_follows_links(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    make_tree(root, outside)
    result = clean_tree(root, older_than_s=DAY, larger_than=None)
    assert result.files == 2
    assert not (root / "old.log").exists() and not (root / "sub" / "old.bin").exists()
    assert (root / "fresh.log").exists()
    assert (outside / "precious.txt").read_bytes() == b"keep me"
    assert (root / "link_to_file").is_symlink() and (root / "link_to_dir").is_symlink()
    assert result.skipped_links == 2


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("relative/path", "not an absolute path"),
        ("{root}/../outside", "contains '..'"),
        ("{outside}", "no configured cleanup directory"),
        ("/etc", "no configured cleanup directory"),
    ],
)
def test_cleanup_targets_outside_the_allowlist_are_refused(
    tmp_path: Path, target: str, problem: str
) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    make_tree(root, outside)
    roots, why = resolve_cleanup_target(target.format(root=root, outside=outside), [root])
    assert roots == []
    assert why is not None and problem in why


def test_cleanup_target_inside_and_mount_point(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    assert resolve_cleanup_target(str(root / "sub"), [root]) == ([root.resolve() / "sub"], None)
    # A mount point (or any directory above) stands for the configured dirs beneath it.
    assert resolve_cleanup_target(str(tmp_path), [root]) == ([root.resolve()], None)


async def test_clean_directory_refusals_are_recorded(
    remediator: RemediatorAgent, tmp_path: Path
) -> None:
    for target in ("/etc", f"{tmp_path}/cleanup/../..", "cleanup", "/proc"):
        record = await remediator.submit(request("clean_directory", target, "llm"))
        assert record.outcome is ActionOutcome.REFUSED, target
    audit = remediator.audit()
    assert len(audit) == 4 and all(r.outcome is ActionOutcome.REFUSED for r in audit)
    assert all(r.proposer == "llm" for r in audit)


async def test_clean_directory_on_a_mount_cleans_only_the_configured_dirs(
    remediator: RemediatorAgent, tmp_path: Path
) -> None:
    import asyncio

    outside = tmp_path / "outside"
    outside.mkdir()
    make_tree(tmp_path / "cleanup", outside)
    bystander = tmp_path / "bystander.old"
    bystander.write_bytes(b"z")
    old = time.time() - 3 * DAY
    os.utime(bystander, (old, old))
    record = await remediator.submit(request("clean_directory", "/", "rule"))
    assert record.outcome is ActionOutcome.RUNNING
    for _ in range(100):
        done = [r for r in remediator.audit() if r.id == record.id]
        if done:
            break
        await asyncio.sleep(0.02)
    assert done[0].outcome is ActionOutcome.SUCCEEDED, done[0].detail
    assert "deleted 2 files" in done[0].detail
    assert bystander.exists() and (outside / "precious.txt").exists()


def test_rotate_file_refuses_links_and_keeps_writers_working(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("line\n" * 1000)
    size, rotated = rotate_file(log, keep=2)
    assert size == 5000 and rotated.exists() and log.stat().st_size == 0
    link = tmp_path / "link.log"
    link.symlink_to(log)
    with pytest.raises(ValueError, match="symbolic link"):
        rotate_file(link, keep=2)


# -- processes ----------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["init", "self", "parent"])
async def test_kill_refuses_protected_pids(remediator: RemediatorAgent, which: str) -> None:
    proc = {
        "init": psutil.Process(1),
        "self": psutil.Process(),
        "parent": psutil.Process().parent(),
    }[which]
    assert proc is not None
    record = await remediator.submit(
        request("kill_process", str(proc.pid), "llm", create_time=proc.create_time())
    )
    assert record.outcome is ActionOutcome.REFUSED
    assert "protected" in record.detail
    assert proc.is_running()


async def test_kill_refuses_a_reused_pid(
    remediator: RemediatorAgent, sleeper: psutil.Process
) -> None:
    # Same pid, different start time: the process we meant is gone; this is someone else.
    record = await remediator.submit(
        request("kill_process", str(sleeper.pid), create_time=sleeper.create_time() - 100)
    )
    assert record.outcome is ActionOutcome.REFUSED
    assert "another process" in record.detail
    assert sleeper.is_running()
    record = await remediator.submit(request("kill_process", str(sleeper.pid)))
    assert record.outcome is ActionOutcome.REFUSED and "identity" in record.detail


async def test_kill_refuses_protected_names(tmp_path: Path) -> None:
    # A process whose name is on the protected list is never touched.
    exe = tmp_path / "sshd"
    exe.symlink_to(sys.executable)
    proc = subprocess.Popen([str(exe), "-c", "import time; time.sleep(60)"])
    try:
        store = ConfigStore(settings_with(protected_names=["sshd"]), None, InMemoryBus())
        assert store._bus is not None
        agent = RemediatorAgent(
            "remediator", AgentContext(bus=store._bus, settings=store, data_dir=tmp_path)
        )
        target = psutil.Process(proc.pid)
        deadline = time.monotonic() + 5
        while target.name() != "sshd" and time.monotonic() < deadline:
            time.sleep(0.01)
        record = await agent.submit(
            request("kill_process", str(proc.pid), "user", create_time=target.create_time())
        )
        assert record.outcome is ActionOutcome.REFUSED and "protected" in record.detail
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


async def test_user_kill_runs_and_is_verified(
    remediator: RemediatorAgent, sleeper: psutil.Process
) -> None:
    record = await remediator.submit(
        request(
            "kill_process", str(sleeper.pid), "user", create_time=sleeper.create_time(), grace=1
        )
    )
    assert record.outcome is ActionOutcome.RUNNING
    for _ in range(100):
        done = [r for r in remediator.audit() if r.id == record.id]
        if done:
            break
        await __import__("asyncio").sleep(0.05)
    assert done[0].outcome is ActionOutcome.SUCCEEDED and done[0].verified is True
    assert not sleeper.is_running() or sleeper.status() == psutil.STATUS_ZOMBIE


# -- the LLM's proposals ------------------------------------------------------------------


async def test_llm_recommendation_with_unknown_action_or_target_is_refused_and_recorded(
    remediator: RemediatorAgent,
) -> None:
    bus = remediator.ctx.bus
    refused = bus.subscribe("remediation.refused", name="t")
    payload = {
        "at": 0.0,
        "trigger": "alert",
        "verdict": "critical",
        "summary": "the model's view",
        "source": "mistral",
        "recommended": [
            {"action": "format_disk", "target": "/", "target_kind": "path", "confidence": 0.9},
            {
                "action": "restart_service",
                "target": "sshd",
                "target_kind": "service",
                "confidence": 0.9,
            },
            {
                "action": "restart_service",
                "target": "not-configured",
                "target_kind": "service",
                "confidence": 0.9,
            },
            {
                "action": "clean_directory",
                "target": "/home",
                "target_kind": "path",
                "confidence": 0.9,
            },
        ],
    }
    from watchkeeper.bus import Message

    await remediator._on_analysis(
        Message(topic="analysis.result", sender="analyzer", payload=payload)
    )
    records = [r for r in remediator.audit() if r.proposer == "llm"]
    assert [r.outcome for r in records] == [ActionOutcome.REFUSED] * 4
    assert "unknown action 'format_disk'" in records[0].detail
    assert "protected" in records[1].detail
    assert "not configured" in records[2].detail
    assert "no configured cleanup directory" in records[3].detail
    assert refused.qsize() == 4
