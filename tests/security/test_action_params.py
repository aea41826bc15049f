"""Action parameters chosen the way an attacker would choose them: unbounded, non-finite,
of the wrong type, unknown, nested hundreds of levels deep. Each is refused with one
clear message before it is recorded anywhere, and every reader of the audit and of the bus
keeps answering afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import psutil
import pytest
from action_attack_helpers import running_daemon, victim

from watchkeeper.agents.base import AgentContext
from watchkeeper.agents.remediator import RemediatorAgent
from watchkeeper.bus import InMemoryBus, Message
from watchkeeper.config import Settings
from watchkeeper.live_config import ConfigStore
from watchkeeper.model.actions import ActionOutcome, ActionRecord, ActionRequest


def nested(depth: int) -> dict[str, Any]:
    """``{"a": {"a": ...}}`` ``depth`` levels deep (300 levels is about 2 KB of JSON)."""
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.fixture
async def remediator(tmp_path: Path) -> AsyncIterator[tuple[RemediatorAgent, InMemoryBus]]:
    bus = InMemoryBus()
    cleanup = tmp_path / "cleanup"
    cleanup.mkdir(mode=0o755)
    settings = Settings.model_validate(
        {
            "remediation": {
                "healing_cooldown": 0,
                "cleanup_dirs": [{"path": str(cleanup)}],
                "scripts": {"hello": {"argv": ["/bin/true"]}},
            }
        }
    )
    store = ConfigStore(settings, None, bus)
    agent = RemediatorAgent("remediator", AgentContext(bus=bus, settings=store, data_dir=tmp_path))
    yield agent, bus
    await agent.teardown()


BAD = [
    ("kill_process", {"grace": 1e9}, "grace must be between 0 and 60"),
    ("kill_process", {"grace": float("inf")}, "grace must be a finite number"),
    ("kill_process", {"grace": float("nan")}, "grace must be a finite number"),
    ("kill_process", {"grace": -1}, "grace must be between 0 and 60"),
    ("kill_process", {"grace": "1e999"}, "grace must be a finite number"),
    ("kill_process", {"grace": 10**400}, "grace is too large"),
    ("kill_process", {"grace": True}, "grace must be a number"),
    ("kill_process", {"grace": [5]}, "grace must be a number"),
    ("renice_process", {"niceness": 0}, "niceness must be between 1 and 19"),
    ("renice_process", {"niceness": 20}, "niceness must be between 1 and 19"),
    ("renice_process", {"niceness": -20}, "niceness must be between 1 and 19"),
    ("renice_process", {"niceness": 5.5}, "niceness must be a whole number"),
    ("kill_process", {"create_time": float("inf")}, "create_time must be a finite number"),
    ("kill_process", {"name": "x" * 5000}, "name is longer than 1024 characters"),
    ("kill_process", {"shell": "rm -rf /"}, "kill_process takes no parameter 'shell'"),
    ("kill_process", {"x": nested(300)}, "kill_process takes no parameter 'x'"),
    ("kill_process", {"grace": nested(300)}, "grace must be a number"),
]


@pytest.mark.parametrize(("action", "params", "message"), BAD)
async def test_bad_process_params_are_refused_before_anything_runs(
    remediator: tuple[RemediatorAgent, InMemoryBus],
    action: str,
    params: dict[str, Any],
    message: str,
) -> None:
    agent, bus = remediator
    published = bus.subscribe("remediation.#", name="t")
    with victim() as child:
        proc = psutil.Process(child.pid)
        full = {"create_time": proc.create_time(), **params}
        record = await agent.submit(
            ActionRequest(action=action, target=str(child.pid), proposer="user", params=full)
        )
        assert record.outcome is ActionOutcome.REFUSED, record
        assert message in record.detail
        await asyncio.sleep(0.3)
        assert child.poll() is None and proc.nice() == 0
    # What was recorded (audit, bus) holds the refusal, never the refused values.
    assert [r.params for r in agent.audit()] == [{}]
    message_out = cast(Message, published.get_nowait())
    assert message_out.payload["params"] == {} and message in message_out.payload["detail"]


@pytest.mark.parametrize(
    ("action", "target", "params", "message"),
    [
        ("clean_directory", "{cleanup}", {"older_than_days": float("inf")}, "finite"),
        ("clean_directory", "{cleanup}", {"older_than_days": -1}, "between 0 and 36500"),
        ("clean_directory", "{cleanup}", {"larger_than_mb": float("nan")}, "finite"),
        ("clean_directory", "{cleanup}", {"larger_than_mb": 1e30}, "larger_than_mb must be"),
        ("run_script", None, {"script": "h" * 10_000}, "script is longer than 128"),
        ("run_script", None, {"script": {"argv": ["/bin/sh"]}}, "script must be a string"),
        ("run_script", None, {}, "run_script needs script"),
        ("drop_caches", None, {"level": 3}, "drop_caches takes no parameter 'level'"),
    ],
)
async def test_every_action_bounds_its_params(
    remediator: tuple[RemediatorAgent, InMemoryBus],
    tmp_path: Path,
    action: str,
    target: str | None,
    params: dict[str, Any],
    message: str,
) -> None:
    agent, _ = remediator
    record = await agent.submit(
        ActionRequest(
            action=action,
            target=target.format(cleanup=tmp_path / "cleanup") if target else None,
            proposer="user",
            params=params,
        )
    )
    assert record.outcome is ActionOutcome.REFUSED, record
    assert message in record.detail
    assert record.params == {}


async def test_the_bounds_are_declared_where_the_api_and_the_ui_read_them(
    remediator: tuple[RemediatorAgent, InMemoryBus],
) -> None:
    agent, _ = remediator
    reply = await agent.handle_command("list_actions", {})
    declared = {a["name"]: {p["name"]: p for p in a["params"]} for a in reply["actions"]}
    assert (
        declared["kill_process"]["grace"]["minimum"],
        declared["kill_process"]["grace"]["maximum"],
    ) == (0, 60)
    assert (
        declared["renice_process"]["niceness"]["minimum"],
        declared["renice_process"]["niceness"]["maximum"],
    ) == (1, 19)
    assert declared["run_script"]["script"]["max_length"] == 128


async def test_a_person_gets_the_refusal_from_run_action(
    remediator: tuple[RemediatorAgent, InMemoryBus],
) -> None:
    agent, _ = remediator
    with victim() as child:
        reply = await agent.handle_command(
            "run_action",
            {
                "action": "kill_process",
                "target": str(child.pid),
                "params": {"create_time": psutil.Process(child.pid).create_time(), "grace": 1e9},
            },
        )
        assert reply["record"]["outcome"] == "refused"
        assert "grace must be between 0 and 60" in reply["record"]["detail"]
        assert child.poll() is None


def test_a_stored_record_with_a_bad_value_is_still_readable() -> None:
    # An audit record from elsewhere (an old database, a plugin) holding a nested or
    # non-finite value: it is kept flat and finite so the audit can always be shown.
    record = ActionRecord(
        id="x",
        action="kill_process",
        proposer="user",
        outcome=ActionOutcome.REFUSED,
        created_at=1.0,
        params={"deep": nested(300), "grace": float("inf"), "ok": 3},
    )
    dumped = record.model_dump(mode="json")
    assert dumped["params"]["ok"] == 3
    assert isinstance(dumped["params"]["deep"], str) and isinstance(dumped["params"]["grace"], str)
    again = ActionRecord.model_validate_json(record.model_dump_json())
    assert again.params == dumped["params"]


@pytest.mark.slow
def test_a_running_daemon_refuses_bad_params_and_its_readers_keep_answering(
    tmp_path: Path,
) -> None:
    with running_daemon(tmp_path) as daemon, victim() as child:
        created = psutil.Process(child.pid).create_time()
        # The 2 KB, 300-level request (the body's own depth limit may answer it
        # first), a shallower nested value, an unknown name, and values out of bounds.
        pid = str(child.pid)
        attacks: list[tuple[str, str | None, dict[str, Any], tuple[str, ...]]] = [
            ("kill_process", "1", {"x": nested(300)}, ("no parameter 'x'", "nested deeper")),
            ("kill_process", pid, {"create_time": created, "x": nested(300)}, ("'x'", "nested")),
            ("kill_process", "1", {"x": nested(20)}, ("takes no parameter 'x'",)),
            ("kill_process", pid, {"create_time": created, "grace": nested(20)}, ("a number",)),
            ("kill_process", pid, {"create_time": created, "grace": 1e9}, ("between 0 and 60",)),
            ("renice_process", pid, {"create_time": created, "niceness": 99}, ("1 and 19",)),
            ("clean_directory", "/tmp", {"older_than_days": -5}, ("older_than_days must",)),
        ]
        for action, target, params, messages in attacks:
            reply = daemon.run_action(action, target, params)
            assert reply.status_code == 422, reply.text
            assert any(m in reply.text for m in messages), reply.text
        for path in ("/api/remediation", "/api/bus?payload=true", "/api/remediation?limit=1000"):
            answer = daemon.get(path)
            assert answer.status_code == 200, (path, answer.text[:300])
        assert child.poll() is None and psutil.Process(child.pid).nice() == 0
        assert daemon.proc.poll() is None
