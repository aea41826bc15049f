"""Each extension point through the typed doors of ``system_context``, on a running system:
actions, metric collectors, analysis rules, agents, bus hooks and new message types."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plugin_helpers import build, eventually, running
from pydantic import BaseModel

from watchkeeper.bus import Message, Topic
from watchkeeper.model.alerts import Alert, Severity, fingerprint_of
from watchkeeper.orchestrator import Orchestrator
from watchkeeper.testing.fake_ollama import FakeOllama


class Empty(BaseModel):
    """The payload of the tests' own ``test.tidy`` topic."""


async def run_action(orch: Orchestrator, action: str, **params: Any) -> dict[str, Any]:
    command = {"command": "run_action", "params": {"action": action, "params": params}}
    message = Message(topic="command.remediator", sender="test", payload=command)
    return await orch.agents["remediator"].execute_command(message)


def audit_of(orch: Orchestrator, action: str) -> list[Any]:
    return [r for r in orch.agents["remediator"].audit() if r.action == action]  # type: ignore[attr-defined]


ACTIONS = """
    from pathlib import Path
    from watchkeeper.plugins import BasePlugin
    from watchkeeper.model.actions import ActionResult
    from watchkeeper.model.actions import ActionInfo

    class TouchMarker:
        info = ActionInfo(
            name="touch_marker", description="Create the marker file.", target_kind="none",
            risk="safe",
        )

        def __init__(self, path):
            self.path = path

        async def validate(self, request, ctx):
            return None

        async def execute(self, request, ctx):
            self.path.touch()
            return ActionResult(ok=True, detail="marker touched")

        async def verify(self, request, ctx, result):
            return self.path.exists()

    class Actions(BasePlugin):
        def register(self, system_context):
            system_context.actions.register(TouchMarker(Path(self.config["marker"])))
            system_context.actions.add(self.resize, risk="safe")
            self.calls = []

        def resize(self, size: int, label: str = "disk") -> str:
            '''Resize the widget pool.

            Longer explanation that the registry does not need.'''
            self.calls.append((size, label))
            return f"resized {label} to {size}"
"""


async def test_actions_are_declared_gated_and_audited(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    write_plugin("acts", ACTIONS)
    marker = tmp_path / "marker"
    orch = build(tmp_path, ["acts"], {"acts": {"marker": str(marker)}}, directory=plugin_dir)
    remediator = orch.agents["remediator"]
    infos = {info.name: info for info in remediator.actions()}  # type: ignore[attr-defined]
    assert infos["touch_marker"].source == "acts"  # not "builtin": the UI shows the origin
    resize = infos["resize"]
    assert resize.description == "Resize the widget pool."
    assert resize.risk == "safe" and resize.source == "acts"
    assert [(p.name, p.type, p.required, p.default) for p in resize.params] == [
        ("size", "int", True, None),
        ("label", "str", False, "disk"),
    ]
    async with running(orch):
        reply = await run_action(orch, "touch_marker")
        assert reply["ok"], reply
        await eventually(lambda: audit_of(orch, "touch_marker"))
        record = audit_of(orch, "touch_marker")[-1]
        assert (record.outcome, record.verified, record.detail) == (
            "succeeded",
            True,
            "marker touched",
        )
        assert marker.exists()

        await run_action(orch, "resize", size="3")
        await eventually(lambda: audit_of(orch, "resize"))
        assert audit_of(orch, "resize")[-1].detail == "resized disk to 3"
        assert orch.plugins.plugins["acts"].calls == [(3, "disk")]  # type: ignore[attr-defined]

        refused = await run_action(orch, "resize", size=1, colour="red")
        assert refused["record"]["outcome"] == "refused"
        assert "takes no parameter 'colour'" in refused["record"]["detail"]
        missing = await run_action(orch, "resize")
        assert "needs size" in missing["record"]["detail"]
        wrong = await run_action(orch, "resize", size="lots")
        assert "resize: bad parameter" in wrong["record"]["detail"]
        assert orch.plugins.plugins["acts"].calls == [(3, "disk")]  # type: ignore[attr-defined]


async def test_collectors_add_declared_metrics_to_every_sample(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    write_plugin(
        "gauges",
        """
        from watchkeeper.model.metrics import MetricSpec
        from watchkeeper.plugins import BasePlugin

        class Queue:
            name = "queue"
            metrics = (
                MetricSpec(name="queue.depth", unit="count", description="Jobs waiting."),
            )

            def collect(self):
                return {"queue.depth": 7, "queue.secret": 1}

        class Empty:
            name = "empty"
            metrics = ()

            def collect(self):
                return {}

        class Gauges(BasePlugin):
            def register(self, system_context):
                system_context.collectors.register(Queue())
                if self.config.get("also_empty"):
                    system_context.collectors.register(Empty())
        """,
    )
    orch = build(tmp_path, ["gauges"], directory=plugin_dir)
    sensor = orch.agents["sensor"]
    assert "queue.depth" in {spec.name for spec in sensor.registry.metric_specs()}  # type: ignore[attr-defined]
    async with running(orch):
        sample = await eventually(lambda: sensor.latest)  # type: ignore[attr-defined]
        assert sample.extra["queue.depth"] == 7.0
        # Declare, then emit: the undeclared value is dropped and said so.
        assert "queue.secret" not in sample.extra
        assert "undeclared" in sample.errors["queue"]

    empty = build(tmp_path, ["gauges"], {"gauges": {"also_empty": True}}, directory=plugin_dir)
    status = empty.snapshot().model_dump(mode="json")["plugins"]["gauges"]
    assert status["state"] == "failed"
    assert "declares no metrics" in status["reason"]
    assert "queue" not in empty.agents["sensor"].registry  # type: ignore[attr-defined]


async def test_rules_raise_alerts_through_the_engine(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    write_plugin(
        "rules",
        """
        from watchkeeper.model.alerts import Severity
        from watchkeeper.analysis.checks import Check
        from watchkeeper.plugins import BasePlugin

        def always_warm(sample, settings, level_of, now):
            yield Check(
                rule="always_warm", subject="host", family="test", raw=Severity.WARNING,
                summary="it is warm", evidence={"cpu_count": sample.cpu.count if sample.cpu else 0},
            )

        def broken(sample, settings, level_of, now):
            raise KeyError("nope")

        class Rules(BasePlugin):
            def register(self, system_context):
                system_context.rules.add("always_warm", always_warm)
                system_context.rules.add("broken", broken)
        """,
    )
    orch = build(tmp_path, ["rules"], directory=plugin_dir, analyzer={"for_seconds": 0})
    alerts = orch.bus.subscribe("alert.firing", name="test-alerts")
    async with running(orch):
        message = await alerts.get(timeout=5)
        while message.payload["rule"] != "always_warm":
            message = await alerts.get(timeout=5)
        assert message.payload["summary"] == "it is warm"
        assert message.payload["severity"] == "warning"
        status = orch.snapshot().model_dump(mode="json")["plugins"]["rules"]
        assert status["rules"] == ["always_warm", "broken"]
        assert status["rule_errors"] == {"broken": "KeyError: 'nope'"}
    alerts.close()


async def test_agents_are_started_and_supervised(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    write_plugin(
        "crashy",
        """
        from watchkeeper.agents.base import BaseAgent
        from watchkeeper.plugins import BasePlugin

        class Crashy(BaseAgent):
            kind = "crashy"
            max_consecutive_errors = 1

            async def _perform_check(self):
                raise RuntimeError("always")

        class Steady(BaseAgent):
            async def _perform_check(self):
                pass

        class Agents(BasePlugin):
            def register(self, system_context):
                ctx = system_context.agent_context
                system_context.add_agent(Crashy("crashy", ctx, interval=0.05))
                system_context.add_agent(Steady("steady", ctx, interval=0.05))
        """,
    )
    orch = build(
        tmp_path,
        ["crashy"],
        directory=plugin_dir,
        agents={"restart_backoff_initial": 0.05, "restart_backoff_max": 0.1},
    )
    async with running(orch):
        await eventually(lambda: orch.agents["crashy"].restarts >= 2)
        await eventually(lambda: orch.agents["steady"].checks >= 3)
        snapshot = orch.snapshot().model_dump(mode="json")
        assert snapshot["agents"]["crashy"]["kind"] == "crashy"
        assert "crashed" in (snapshot["agents"]["crashy"]["last_restart_reason"] or "")
        assert snapshot["plugins"]["crashy"]["agents"] == ["crashy", "steady"]
    assert str(orch.agents["steady"].state) == "stopped"


async def test_bus_hooks_and_new_message_types(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    write_plugin(
        "counter",
        """
        from pydantic import BaseModel
        from watchkeeper.plugins import BasePlugin

        class Tick(BaseModel):
            samples: int
            host: str

        class Counter(BasePlugin):
            def register(self, system_context):
                self.ctx = system_context
                self.samples = 0
                system_context.subscribe("metrics.sample", self.on_sample)

            async def on_sample(self, message):
                self.samples += 1
                await self.ctx.publish(
                    "counter.tick", Tick(samples=self.samples, host=message.payload["host"])
                )
        """,
    )
    orch = build(tmp_path, ["counter"], directory=plugin_dir)
    ticks = orch.bus.subscribe("counter.*", name="test-ticks")
    async with running(orch):
        first = await ticks.get(timeout=5)
        second = await ticks.get(timeout=5)
    ticks.close()
    assert first.sender == "plugin:counter"
    assert (first.topic, first.payload["samples"], second.payload["samples"]) == (
        "counter.tick",
        1,
        2,
    )
    assert first.payload["host"]


async def test_a_plugin_proposal_passes_the_policy_and_names_its_proposer(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    write_plugin(
        "proposer",
        """
        from watchkeeper.plugins import BasePlugin

        class Proposer(BasePlugin):
            def register(self, system_context):
                self.ctx = system_context
                system_context.actions.add(self.tidy, risk="safe")
                system_context.subscribe("test.tidy", self.on_request)

            async def tidy(self):
                '''Tidy up.'''
                return "tidied"

            async def on_request(self, message):
                await self.ctx.propose("tidy", reason="asked on the bus")
        """,
    )
    orch = build(tmp_path, ["proposer"], directory=plugin_dir, remediation={"mode": "dry_run"})
    async with running(orch):
        tidy = orch.bus.topics.add(Topic("test.tidy", Empty))
        await orch.bus.publish(tidy, Empty(), sender="test")
        await eventually(lambda: audit_of(orch, "tidy"))
    record = audit_of(orch, "tidy")[-1]
    assert (record.outcome, record.proposer, record.proposed_by) == (
        "dry_run",
        "plugin",
        "proposer",
    )
    assert record.reason == "asked on the bus"


async def test_the_llm_is_offered_plugin_actions(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    write_plugin(
        "offered",
        """
        from plugins.base_plugin import BasePlugin

        class Offered(BasePlugin):
            def register(self, system_context):
                remediator = system_context["orchestrator"].agents.get("remediator")
                remediator.flush_widget_cache = self.flush_widget_cache

            async def flush_widget_cache(self):
                '''Drop the widget cache so it is rebuilt.'''
        """,
    )
    with FakeOllama(models=["mistral"]) as fake:
        orch = build(
            tmp_path,
            ["offered"],
            directory=plugin_dir,
            ollama={"enabled": True, "url": fake.url, "retry_attempts": 1, "timeout": 5},
        )
        analyzer = orch.agents["analyzer"]
        now = time.time()
        alert = Alert(
            id="a1",
            fingerprint=fingerprint_of("cpu_high", "host"),
            rule="cpu_high",
            severity=Severity.WARNING,
            subject="host",
            summary="CPU is busy",
            started_at=now,
            updated_at=now,
        )
        try:
            await analyzer.ask_llm([alert], "analyze_now")  # type: ignore[attr-defined]
        finally:
            advisor = analyzer.advisor()  # type: ignore[attr-defined]
            if advisor is not None:
                await advisor.aclose()
        sent = json.dumps(fake.bodies("/api/chat"))
    assert "flush_widget_cache" in sent
    assert "Drop the widget cache so it is rebuilt." in sent


def test_a_door_to_an_agent_that_is_switched_off_is_a_clear_failure(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    write_plugin("acts", ACTIONS)
    orch = build(
        tmp_path,
        ["acts"],
        {"acts": {"marker": str(tmp_path / "m")}},
        directory=plugin_dir,
        agents={"remediator": {"enabled": False}},
    )
    status = orch.snapshot().model_dump(mode="json")["plugins"]["acts"]
    assert status["state"] == "failed"
    assert status["phase"] == "register"
    assert "no remediator agent (agents.remediator.enabled is false?)" in status["reason"]
