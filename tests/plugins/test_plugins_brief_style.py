"""Plugins written to the product brief's style work unchanged: ``from plugins.base_plugin
import BasePlugin``, the remediator found through ``system_context['orchestrator']`` and a
method assigned onto it, which then is a registered action that the policy gates and the
audit records like any other."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from plugin_helpers import build, eventually, running

from watchkeeper.bus import Message
from watchkeeper.model.alerts import Alert, Severity, SuggestedAction, fingerprint_of
from watchkeeper.orchestrator import Orchestrator

# The brief's sample plugin, in its style, with a body that leaves a trace to look for.
BRIEF_PLUGIN = """
from plugins.base_plugin import BasePlugin

CALLS = []

class SampleRemediationPlugin(BasePlugin):
    def register(self, system_context):
        remediator = system_context['orchestrator'].agents.get('remediator')
        if remediator:
            remediator.clear_event_logs = self.clear_event_logs
            remediator.logger.info("Registered clear_event_logs action.")

    async def clear_event_logs(self):
        # Custom remediation logic here
        CALLS.append(self.get_config().get("label", "cleared"))

    def get_config(self):
        return self.config
"""


async def command(orch: Orchestrator, name: str, **params: Any) -> dict[str, Any]:
    message = Message(
        topic="command.remediator", sender="test", payload={"command": name, "params": params}
    )
    return await orch.agents["remediator"].execute_command(message)


def audit(orch: Orchestrator) -> list[Any]:
    return list(orch.agents["remediator"].audit())  # type: ignore[attr-defined]


def calls_of(orch: Orchestrator) -> list[str]:
    plugin = orch.plugins.plugins["sample_remediation_plugin"]
    module = __import__(type(plugin).__module__, fromlist=["CALLS"])
    return module.CALLS  # type: ignore[no-any-return]


@pytest.fixture
def brief_dir(plugin_dir: Path) -> Path:
    (plugin_dir / "sample_remediation_plugin.py").write_text(BRIEF_PLUGIN)
    return plugin_dir


def brief(tmp_path: Path, directory: Path, **overrides: Any) -> Orchestrator:
    orchestrator: Orchestrator = build(
        tmp_path,
        ["sample_remediation_plugin"],
        {"sample_remediation_plugin": {"label": "done"}},
        directory=directory,
        **overrides,
    )
    return orchestrator


def test_the_assignment_registers_a_declared_action(
    tmp_path: Path, brief_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="watchkeeper"):
        orch = brief(tmp_path, brief_dir)
    remediator = orch.agents["remediator"]
    action = remediator.registry.get("clear_event_logs")  # type: ignore[attr-defined]
    assert action is not None
    info = action.info
    assert (info.target_kind, info.risk, info.source) == (
        "none",
        "moderate",
        "sample_remediation_plugin",
    )
    assert info.description == "plugin action clear_event_logs"  # no docstring to read
    assert "clear_event_logs" in [i.name for i in remediator.actions()]  # type: ignore[attr-defined]
    # Still there as an attribute, as the brief's code expects.
    assert remediator.clear_event_logs.__name__ == "clear_event_logs"  # type: ignore[attr-defined]
    assert "Registered clear_event_logs action." in caplog.text
    assert orch.snapshot().model_dump(mode="json")["plugins"]["sample_remediation_plugin"][
        "actions"
    ] == ["clear_event_logs"]


async def test_in_auto_mode_it_runs_and_the_audit_records_it(
    tmp_path: Path, brief_dir: Path
) -> None:
    orch = brief(tmp_path, brief_dir)
    events = orch.bus.subscribe("remediation.#", name="test-remediation")
    async with running(orch):
        reply = await command(orch, "run_action", action="clear_event_logs", by="alice")
        assert reply["ok"], reply
        await eventually(lambda: audit(orch))
        again = await command(orch, "run_action", action="clear_event_logs", by="alice")
    record = audit(orch)[0]
    assert (record.action, record.outcome, record.proposer, record.proposed_by) == (
        "clear_event_logs",
        "succeeded",
        "user",
        "alice",
    )
    assert record.risk == "moderate"
    assert calls_of(orch) == ["done"]
    assert "cooling down" in again["record"]["detail"]  # the cooldown applies to it too
    topics = []
    while (message := events.get_nowait()) is not None:
        topics.append(message.topic)
    assert topics == ["remediation.started", "remediation.succeeded", "remediation.refused"]
    events.close()


async def test_the_policy_denies_it_when_configured_to(tmp_path: Path, brief_dir: Path) -> None:
    orch = brief(tmp_path, brief_dir, remediation={"deny_actions": ["clear_event_logs"]})
    async with running(orch):
        reply = await command(orch, "run_action", action="clear_event_logs")
    assert reply["record"]["outcome"] == "refused"
    assert "denied by configuration" in reply["record"]["detail"]
    assert audit(orch)[-1].outcome == "refused"
    assert calls_of(orch) == []


async def test_proposed_by_an_alert_in_approve_mode_it_waits_for_a_person(
    tmp_path: Path, brief_dir: Path
) -> None:
    orch = brief(tmp_path, brief_dir, remediation={"mode": "approve"})
    now = time.time()
    alert = Alert(
        id="logs1",
        fingerprint=fingerprint_of("disk_high", "/var"),
        rule="disk_high",
        severity=Severity.WARNING,
        subject="/var",
        summary="/var is 91% full",
        suggested_actions=[SuggestedAction(action="clear_event_logs", reason="logs fill /var")],
        started_at=now,
        updated_at=now,
    )
    async with running(orch):
        await orch.bus.publish("alert.firing", alert, sender="analyzer")
        pending = await eventually(lambda: orch.agents["remediator"].pending())  # type: ignore[attr-defined]
        assert (pending[0].action, pending[0].proposer) == ("clear_event_logs", "rule")
        assert calls_of(orch) == []
        approved = await command(orch, "approve", id=pending[0].id, by="bob")
        assert approved["ok"], approved
        await eventually(lambda: audit(orch)[-1].outcome == "succeeded")
    assert calls_of(orch) == ["done"]
    assert [r.outcome for r in audit(orch)] == ["pending", "succeeded"]
    assert audit(orch)[-1].proposed_by == "bob"
    assert audit(orch)[-1].alert_id == "logs1"


async def test_in_dry_run_mode_nothing_runs(tmp_path: Path, brief_dir: Path) -> None:
    orch = brief(tmp_path, brief_dir, remediation={"mode": "dry_run"})
    async with running(orch):
        reply = await command(orch, "run_action", action="clear_event_logs")
    assert reply["record"]["outcome"] == "dry_run"
    assert reply["record"]["detail"] == "would clear event logs"
    assert calls_of(orch) == []


OUTCOMES = """
import threading
from plugins.base_plugin import BasePlugin
from watchkeeper.remediation.actions import NeedsPrivilege

class Outcomes(BasePlugin):
    def register(self, system_context):
        remediator = system_context['orchestrator'].agents.get('remediator')
        remediator.says_no = self.says_no
        remediator.blows_up = self.blows_up
        remediator.needs_root = self.needs_root
        remediator.blocking_job = self.blocking_job
        self.threads = []

    async def says_no(self):
        '''Report failure by returning False.'''
        return False

    async def blows_up(self):
        raise OSError("disk on fire")

    async def needs_root(self):
        raise NeedsPrivilege("only root may do this")

    def blocking_job(self):
        '''A plain method: it runs in a worker thread.'''
        self.threads.append(threading.current_thread().name)
        return "blocked nobody"
"""


async def test_outcomes_of_brief_style_actions(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    write_plugin("outcomes", OUTCOMES)
    orch = build(tmp_path, ["outcomes"], directory=plugin_dir)
    async with running(orch):
        for name in ("says_no", "blows_up", "needs_root", "blocking_job"):
            await command(orch, "run_action", action=name)
        await eventually(lambda: len(audit(orch)) == 4)
    by_action = {r.action: r for r in audit(orch)}
    assert (by_action["says_no"].outcome, by_action["says_no"].detail) == (
        "failed",
        "says_no reported failure",
    )
    assert by_action["blows_up"].outcome == "failed"
    assert by_action["blows_up"].detail == "OSError: disk on fire"
    assert by_action["needs_root"].outcome == "failed"
    assert "needs privileges the daemon lacks: only root may do this" in (
        by_action["needs_root"].detail
    )
    assert (by_action["blocking_job"].outcome, by_action["blocking_job"].detail) == (
        "succeeded",
        "blocked nobody",
    )
    threads = orch.plugins.plugins["outcomes"].threads  # type: ignore[attr-defined]
    assert threads and threads[0] != threading.main_thread().name


def test_the_assignment_never_touches_private_existing_or_non_function_names(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    write_plugin(
        "polite",
        """
        from plugins.base_plugin import BasePlugin

        class Polite(BasePlugin):
            def register(self, system_context):
                remediator = system_context['orchestrator'].agents.get('remediator')
                remediator._helper = self.helper          # private: a plain attribute
                remediator.note = "just data"             # not a function
                remediator.policy = remediator.policy     # already there
                remediator.helper = self.helper           # new and public: an action

            def helper(self):
                '''Help out.'''
        """,
    )
    orch = build(tmp_path, ["polite"], directory=plugin_dir)
    names = orch.agents["remediator"].registry.names()  # type: ignore[attr-defined]
    assert "helper" in names
    assert not {"_helper", "note", "policy"} & set(names)
    assert orch.snapshot().model_dump(mode="json")["plugins"]["polite"]["actions"] == ["helper"]


def test_assigning_a_taken_action_name_is_an_error(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    write_plugin(
        "usurper",
        """
        from plugins.base_plugin import BasePlugin

        class Usurper(BasePlugin):
            def register(self, system_context):
                remediator = system_context['orchestrator'].agents.get('remediator')
                remediator.kill_process = self.kinder_kill

            async def kinder_kill(self):
                pass
        """,
    )
    write_plugin(
        "twice",
        """
        from plugins.base_plugin import BasePlugin

        class Twice(BasePlugin):
            def register(self, system_context):
                remediator = system_context['orchestrator'].agents.get('remediator')
                remediator.flush = self.flush
                remediator.flush = self.flush

            async def flush(self):
                pass
        """,
    )
    orch = build(tmp_path, ["usurper", "twice"], directory=plugin_dir)
    status = orch.snapshot().model_dump(mode="json")["plugins"]
    assert "action 'kill_process' is already registered" in status["usurper"]["reason"]
    assert "action 'flush' is already registered" in status["twice"]["reason"]
    remediator = orch.agents["remediator"]
    built_in = remediator.registry.get("kill_process")  # type: ignore[attr-defined]
    assert built_in is not None and built_in.info.source == "builtin"  # left alone
    assert "flush" not in remediator.registry  # type: ignore[attr-defined]
    assert not hasattr(remediator, "flush")


async def test_plain_start_and_stop_methods_are_called_too(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    write_plugin(
        "plain",
        """
        from plugins.base_plugin import BasePlugin

        class Plain(BasePlugin):
            def register(self, system_context):
                self.events = ["register"]

            def start(self):
                self.events.append("start")

            def stop(self):
                self.events.append("stop")
        """,
    )
    orch = build(tmp_path, ["plain"], directory=plugin_dir)
    plugin = orch.plugins.plugins["plain"]
    async with running(orch):
        assert plugin.events == ["register", "start"]  # type: ignore[attr-defined]
    assert plugin.events == ["register", "start", "stop"]  # type: ignore[attr-defined]
    assert orch.snapshot().model_dump(mode="json")["plugins"]["plain"]["state"] == "loaded"
