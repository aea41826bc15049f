"""File actions never follow a link, at any level of the path, out of configured directories.

Each attack is what an unprivileged user who owns a parent (or can write a log directory)
would do after watchkeeper has started and checked its configuration: swap the configured
directory or one of its parents for a symbolic link, rename another directory into its
place, or leave a dangling link at the next rotation name. Requests go through a real
RemediatorAgent (policy, validation, execution, audit); one test drives a real
``watchkeeper run`` over its API.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from action_attack_helpers import Daemon, free_port, wait_for

from watchkeeper.agents.base import AgentContext
from watchkeeper.agents.remediator import RemediatorAgent
from watchkeeper.bus import InMemoryBus
from watchkeeper.config import Settings, deep_merge
from watchkeeper.live_config import ConfigStore
from watchkeeper.model.actions import ActionOutcome, ActionRecord, ActionRequest

DAY = 86400
NOW = 1_700_000_000.0  # the agents' clock in these tests: rotation names are known


def old_file(path: Path, content: bytes = b"x" * 4096) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    stamp = NOW - 30 * DAY
    os.utime(path, (stamp, stamp))
    return path


def settings_with(**remediation: Any) -> Settings:
    base = Settings.model_validate({}).model_dump(mode="json")
    return Settings.model_validate(
        deep_merge(base, {"remediation": {"healing_cooldown": 0, **remediation}})
    )


@contextlib.asynccontextmanager
async def started(tmp_path: Path, **remediation: Any) -> AsyncIterator[RemediatorAgent]:
    """A RemediatorAgent after its start-up (``setup``), as ``watchkeeper run`` has it."""
    bus = InMemoryBus()
    store = ConfigStore(settings_with(**remediation), None, bus)
    ctx = AgentContext(bus=bus, settings=store, data_dir=tmp_path, clock=lambda: NOW)
    agent = RemediatorAgent("remediator", ctx)
    await agent.setup()
    try:
        yield agent
    finally:
        await agent.teardown()


async def run(agent: RemediatorAgent, action: str, target: str) -> ActionRecord:
    """Submit as the disk rule would and wait for the final record."""
    record = await agent.submit(
        ActionRequest(action=action, target=target, proposer="rule", reason="attack test")
    )
    for _ in range(500):
        done = [
            r
            for r in agent.audit(limit=1000)
            if r.id == record.id and r.outcome not in (ActionOutcome.RUNNING, ActionOutcome.PENDING)
        ]
        if done:
            return done[-1]
        await asyncio.sleep(0.01)
    raise AssertionError(f"{action} on {target} did not finish")


def swap_for_link(path: Path, destination: Path) -> None:
    """What the attacker does: move ``path`` aside and leave a link to ``destination``."""
    path.rename(path.with_name(path.name + ".moved"))
    path.symlink_to(destination, target_is_directory=True)


def mount_point_of(path: Path) -> Path:
    while not os.path.ismount(path):
        path = path.parent
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory nobody configured, holding a file old enough to be cleaned."""
    where = tmp_path / "outside"
    old_file(where / "cache" / "victim.db", b"precious")
    old_file(where / "victim.db", b"precious")
    return where


# -- clean_directory -------------------------------------------------------------------------


async def test_configured_directory_swapped_for_a_link_after_start_is_refused(
    tmp_path: Path, outside: Path
) -> None:
    cache = tmp_path / "srv" / "cache"
    old_file(cache / "old.tmp")
    async with started(tmp_path, cleanup_dirs=[{"path": str(cache)}]) as agent:
        swap_for_link(cache, outside)
        record = await run(agent, "clean_directory", str(cache))
    assert record.outcome is ActionOutcome.REFUSED
    assert f"{cache} is a symbolic link" in record.detail
    assert (outside / "victim.db").read_bytes() == b"precious"


async def test_parent_swapped_for_a_link_after_start_is_refused(
    tmp_path: Path, outside: Path
) -> None:
    parent = tmp_path / "srv" / "app"
    cache = parent / "cache"
    old_file(cache / "old.tmp")
    async with started(tmp_path, cleanup_dirs=[{"path": str(cache)}]) as agent:
        swap_for_link(parent, outside)  # app/cache now leads to outside/cache
        record = await run(agent, "clean_directory", str(cache))
        inside = await run(agent, "clean_directory", str(cache / "sub"))
    assert record.outcome is ActionOutcome.REFUSED
    assert f"{parent} is a symbolic link" in record.detail
    assert inside.outcome is ActionOutcome.REFUSED
    assert (outside / "cache" / "victim.db").read_bytes() == b"precious"


async def test_disk_rule_on_the_mount_point_does_not_follow_a_swapped_parent(
    tmp_path: Path, outside: Path
) -> None:
    parent = tmp_path / "srv" / "app"
    swapped, kept = parent / "cache", tmp_path / "srv" / "kept"
    old_file(swapped / "old.tmp")
    stale = old_file(kept / "old.tmp")
    dirs = [{"path": str(swapped)}, {"path": str(kept)}]
    async with started(tmp_path, cleanup_dirs=dirs) as agent:
        swap_for_link(parent, outside)
        # The disk rule proposes clean_directory on the filling mount point.
        record = await run(agent, "clean_directory", str(mount_point_of(tmp_path)))
    assert (outside / "cache" / "victim.db").read_bytes() == b"precious"
    assert not stale.exists(), "the directory that was not swapped is still cleaned"
    assert record.outcome is ActionOutcome.FAILED
    assert "deleted 1 files" in record.detail
    assert f"{parent} is a symbolic link" in record.detail


async def test_another_directory_renamed_into_place_after_start_is_refused(
    tmp_path: Path, outside: Path
) -> None:
    cache = tmp_path / "srv" / "cache"
    old_file(cache / "old.tmp")
    async with started(tmp_path, cleanup_dirs=[{"path": str(cache)}]) as agent:
        cache.rename(tmp_path / "srv" / "cache.moved")
        (outside / "cache").rename(cache)  # a real directory now, but not the checked one
        record = await run(agent, "clean_directory", str(cache))
    assert record.outcome is ActionOutcome.REFUSED
    assert "not the directory that was there" in record.detail
    assert (cache / "victim.db").read_bytes() == b"precious"


async def test_a_link_inside_a_configured_directory_is_not_a_target(
    tmp_path: Path, outside: Path
) -> None:
    cache = tmp_path / "srv" / "cache"
    old_file(cache / "old.tmp")
    (cache / "elsewhere").symlink_to(outside, target_is_directory=True)
    async with started(tmp_path, cleanup_dirs=[{"path": str(cache)}]) as agent:
        record = await run(agent, "clean_directory", str(cache / "elsewhere"))
    assert record.outcome is ActionOutcome.REFUSED
    assert "elsewhere is a symbolic link" in record.detail
    assert (outside / "victim.db").exists() and (cache / "old.tmp").exists()


async def test_cleaning_still_deletes_inside_and_leaves_links_alone(
    tmp_path: Path, outside: Path
) -> None:
    cache = tmp_path / "srv" / "cache"
    stale = [old_file(cache / "old.tmp"), old_file(cache / "deep" / "er" / "old.bin")]
    fresh = cache / "fresh.tmp"
    fresh.write_bytes(b"new")
    os.utime(fresh, (NOW, NOW))
    (cache / "to_file").symlink_to(outside / "victim.db")
    (cache / "to_dir").symlink_to(outside, target_is_directory=True)
    async with started(tmp_path, cleanup_dirs=[{"path": str(cache)}]) as agent:
        record = await run(agent, "clean_directory", str(cache))
    assert record.outcome is ActionOutcome.SUCCEEDED, record.detail
    assert "deleted 2 files" in record.detail and "2 links left alone" in record.detail
    assert not any(path.exists() for path in stale) and fresh.exists()
    assert (cache / "to_file").is_symlink() and (cache / "to_dir").is_symlink()
    assert (outside / "victim.db").exists() and (outside / "cache" / "victim.db").exists()


# -- insecure places --------------------------------------------------------------------------


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def warnings_logged() -> Iterator[list[str]]:
    handler = Lines()
    logger = logging.getLogger("watchkeeper.remediation.files")
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)


def world_writable(path: Path) -> str:
    path.chmod(0o777)
    return f"its parent {path} is writable by others (mode 0777)"


def not_roots(path: Path) -> str:
    os.chown(path, 65534, 65534)
    return f"its parent {path} is owned by uid 65534, who could swap it"


@pytest.mark.parametrize("make_insecure", [world_writable, not_roots])
async def test_a_cleanup_directory_with_an_insecure_parent_is_refused(
    tmp_path: Path, warnings_logged: list[str], make_insecure: Any
) -> None:
    parent = tmp_path / "shared"
    kept = old_file(parent / "cache" / "old.tmp")
    why = make_insecure(parent)
    async with started(tmp_path, cleanup_dirs=[{"path": str(parent / "cache")}]) as agent:
        record = await run(agent, "clean_directory", str(parent / "cache"))
    assert record.outcome is ActionOutcome.REFUSED
    assert record.detail == f"refusing {parent / 'cache'}: {why}"
    assert kept.exists()
    # Said at start-up too, in one line, where an operator reads the log.
    assert warnings_logged == [f"clean_directory: {record.detail}"]


@pytest.mark.parametrize("make_insecure", [world_writable, not_roots])
async def test_a_log_directory_with_an_insecure_parent_is_refused(
    tmp_path: Path, make_insecure: Any
) -> None:
    parent = tmp_path / "shared"
    log = parent / "logs" / "app.log"
    old_file(log, b"line\n" * 100)
    why = make_insecure(parent)
    async with started(tmp_path, log_files=[str(log)]) as agent:
        record = await run(agent, "rotate_log", str(log))
    assert record.outcome is ActionOutcome.REFUSED
    assert why in record.detail
    assert log.stat().st_size == 500 and list(log.parent.iterdir()) == [log]


async def test_an_insecure_ancestor_further_up_is_refused_too(tmp_path: Path) -> None:
    ancestor = tmp_path / "home"
    cache = ancestor / "user" / "app" / "cache"
    kept = old_file(cache / "old.tmp")
    os.chown(ancestor, 65534, 65534)
    async with started(tmp_path, cleanup_dirs=[{"path": str(cache)}]) as agent:
        record = await run(agent, "clean_directory", str(cache))
    assert record.outcome is ActionOutcome.REFUSED
    assert record.detail == (
        f"refusing {cache}: its ancestor {ancestor} is owned by uid 65534, who could swap it"
    )
    assert kept.exists()


async def test_a_world_writable_cleanup_directory_needs_the_sticky_bit(tmp_path: Path) -> None:
    loose, sticky = tmp_path / "loose", tmp_path / "sticky"
    kept, gone = old_file(loose / "old.tmp"), old_file(sticky / "old.tmp")
    loose.chmod(0o777)
    sticky.chmod(0o1777)
    dirs = [{"path": str(loose)}, {"path": str(sticky)}]
    async with started(tmp_path, cleanup_dirs=dirs) as agent:
        refused = await run(agent, "clean_directory", str(loose))
        cleaned = await run(agent, "clean_directory", str(sticky))
    assert refused.outcome is ActionOutcome.REFUSED
    assert refused.detail == (
        f"refusing {loose}: it is writable by others without the sticky bit (mode 0777)"
    )
    assert kept.exists()
    assert cleaned.outcome is ActionOutcome.SUCCEEDED and not gone.exists()


# -- rotate_log -------------------------------------------------------------------------------


def stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(NOW))


async def test_a_log_directory_swapped_for_a_link_is_refused(tmp_path: Path, outside: Path) -> None:
    logs = tmp_path / "srv" / "logs"
    log = logs / "app.log"
    old_file(log, b"ours\n")
    (outside / "app.log").write_bytes(b"someone else's log\n")
    async with started(tmp_path, log_files=[str(log)]) as agent:
        swap_for_link(logs, outside)
        record = await run(agent, "rotate_log", str(log))
    assert record.outcome is ActionOutcome.REFUSED
    assert f"{logs} is a symbolic link" in record.detail
    assert (outside / "app.log").read_bytes() == b"someone else's log\n"
    assert not [p.name for p in outside.iterdir() if p.name.endswith(".gz")]


async def test_a_dangling_link_at_the_rotation_name_is_never_written_through(
    tmp_path: Path, outside: Path
) -> None:
    log = tmp_path / "srv" / "logs" / "app.log"
    old_file(log, b"line\n" * 1000)
    planted = outside / "planted.conf"
    trap = log.with_name(f"app.log.{stamp()}.gz")
    trap.symlink_to(planted)
    async with started(tmp_path, log_files=[str(log)], rotate_keep=5) as agent:
        record = await run(agent, "rotate_log", str(log))
    assert not planted.exists(), "a file outside was created through the link"
    assert trap.is_symlink() and os.readlink(trap) == str(planted)
    assert record.outcome is ActionOutcome.SUCCEEDED, record.detail
    rotated = log.with_name(f"app.log.{stamp()}-1.gz")
    assert gzip.decompress(rotated.read_bytes()) == b"line\n" * 1000
    assert log.stat().st_size == 0


async def test_rotation_compresses_truncates_and_prunes_regular_files_only(
    tmp_path: Path, outside: Path
) -> None:
    log = tmp_path / "srv" / "logs" / "app.log"
    old_file(log, b"before\n" * 100)
    earlier = [old_file(log.with_name(f"app.log.2020010{day}-000000.gz")) for day in (1, 2, 3)]
    kept_link = log.with_name("app.log.20000101-000000.gz")
    kept_link.symlink_to(outside / "victim.db")
    with log.open("ab") as writer:
        async with started(tmp_path, log_files=[str(log)], rotate_keep=2) as agent:
            record = await run(agent, "rotate_log", str(log))
        writer.write(b"after\n")  # a writer keeps its descriptor and goes on
    assert record.outcome is ActionOutcome.SUCCEEDED, record.detail
    rotated = log.with_name(f"app.log.{stamp()}.gz")
    assert gzip.decompress(rotated.read_bytes()) == b"before\n" * 100
    assert log.read_bytes().lstrip(b"\0") == b"after\n"
    assert [p.exists() for p in earlier] == [False, False, True]
    assert kept_link.is_symlink() and (outside / "victim.db").read_bytes() == b"precious"


# -- a real daemon ----------------------------------------------------------------------------


@contextlib.contextmanager
def daemon_with(tmp_path: Path, remediation: str) -> Iterator[Daemon]:
    data = tmp_path / "data"
    config = tmp_path / "watchkeeper.toml"
    config.write_text(
        f'data_dir = {json.dumps(str(data))}\npersonality = "plain"\n'
        f"[remediation]\nhealing_cooldown = 0\n{remediation}\n[ollama]\nenabled = false\n"
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "watchkeeper", "run", "--config", str(config), "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    daemon = Daemon(proc, port, data)
    try:
        wait_for(lambda: "clean_directory" in _log(data), 30, "the remediator's start-up check")
        yield daemon
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _log(data: Path) -> str:
    try:
        return (data / "agent_system.log").read_text()
    except OSError:
        return ""


@pytest.mark.slow
def test_a_running_daemon_refuses_swapped_directories_and_says_why_at_start(
    tmp_path: Path, outside: Path
) -> None:
    cache, loose = tmp_path / "srv" / "cache", tmp_path / "loose" / "cache"
    old_file(cache / "old.tmp")
    old_file(loose / "old.tmp")
    loose.parent.chmod(0o777)
    tables = ", ".join(f"{{ path = {json.dumps(str(path))} }}" for path in (cache, loose))
    with daemon_with(tmp_path, f"cleanup_dirs = [{tables}]") as wk:
        start_line = [line for line in _log(wk.data).splitlines() if "clean_directory" in line]
        cache.rename(tmp_path / "srv" / "cache.moved")
        (outside / "cache").rename(cache)
        reply = wk.run_action("clean_directory", str(cache), {})
        assert wk.proc.poll() is None, "the daemon keeps running"
    assert reply.status_code == 200, reply.text
    record = reply.json()["replies"]["remediator"]["record"]
    assert record["outcome"] == "refused"
    assert record["detail"].startswith(f"refusing {cache}: it is not the directory that was there")
    assert (cache / "victim.db").read_bytes() == b"precious"
    assert len(start_line) == 1 and f"refusing {loose}" in start_line[0]
    assert "is writable by others (mode 0777)" in start_line[0]
