"""The registries belong to the wiring: the orchestrator builds one of each and injects the
same object into the agents, the web and the plugin hosts; what a plugin adds, in either
style, goes through its host and is taken back with it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from plugin_helpers import build

import watchkeeper.plugins
from watchkeeper.agents.analyzer import AnalyzerAgent
from watchkeeper.agents.remediator import RemediatorAgent
from watchkeeper.agents.sensor import SensorAgent
from watchkeeper.analysis.rules import DuplicateRuleError, RuleRegistry
from watchkeeper.config import Settings
from watchkeeper.model.metrics import MetricsSample


def test_each_registry_is_built_once_and_injected(tmp_path: Path) -> None:
    orch = build(tmp_path, [])
    sensor, analyzer = orch.agents["sensor"], orch.agents["analyzer"]
    remediator = orch.agents["remediator"]
    assert isinstance(sensor, SensorAgent)
    assert isinstance(analyzer, AnalyzerAgent)
    assert isinstance(remediator, RemediatorAgent)
    registries = orch.registries
    assert sensor.registry is registries.collectors
    assert analyzer.engine.rules is registries.rules
    assert remediator.registry is registries.actions
    assert orch.ctx.services is registries.services
    assert "kill_process" in registries.actions


def test_without_a_remediator_the_web_still_lists_the_declared_actions(tmp_path: Path) -> None:
    orch = build(tmp_path, [], agents={"remediator": {"enabled": False}})
    assert orch.unused_registries() == {"actions"}
    assert "restart_service" in {info.name for info in orch.registries.actions.infos()}


BRIEF_EVERYTHING = """
from plugins.base_plugin import BasePlugin
from watchkeeper.plugins import BaseAgent, MetricSpec

FAIL = {fail!r}


class Gauge:
    name = "brief_gauge"
    metrics = (MetricSpec(name="brief.value", unit="count", description="A test value."),)

    def collect(self):
        return {{"brief.value": 1.0}}


class Idle(BaseAgent):
    async def _perform_check(self):
        pass


class Brief(BasePlugin):
    def register(self, system_context):
        orchestrator = system_context["orchestrator"]
        orchestrator.agents.get("sensor").registry.register(Gauge())
        orchestrator.add_agent(Idle("brief_agent", orchestrator.ctx))
        orchestrator.agents.get("remediator").brief_fix = self.brief_fix
        if FAIL:
            raise RuntimeError("register went wrong")

    async def brief_fix(self):
        return True
"""


def test_brief_style_registrations_are_the_plugins_and_are_taken_back(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    write_plugin("brief", BRIEF_EVERYTHING.format(fail=False))
    orch = build(tmp_path, ["brief"], directory=plugin_dir)
    status = orch.snapshot().model_dump(mode="json")["plugins"]["brief"]
    assert (status["collectors"], status["agents"], status["actions"]) == (
        ["brief_gauge"],
        ["brief_agent"],
        ["brief_fix"],
    )
    assert "brief_gauge" in orch.registries.collectors

    write_plugin("brief", BRIEF_EVERYTHING.format(fail=True))
    failed = build(tmp_path, ["brief"], directory=plugin_dir)
    status = failed.snapshot().model_dump(mode="json")["plugins"]["brief"]
    assert status["state"] == "failed"
    assert "brief_gauge" not in failed.registries.collectors
    assert "brief_fix" not in failed.registries.actions
    assert "brief_agent" not in failed.agents
    assert not hasattr(failed.agents["remediator"], "brief_fix")


def test_the_public_face_names_only_what_it_has() -> None:
    for name in watchkeeper.plugins.__all__:
        assert getattr(watchkeeper.plugins, name) is not None, name
    assert {"PluginHost", "PluginContext", "BasePlugin", "BaseAgent", "MetricSpec"} <= set(
        watchkeeper.plugins.__all__
    )


def _rule(checks: list[Any]) -> Any:
    def rule(sample: MetricsSample, settings: Settings, level_of: Any, now: float) -> list[Any]:
        return checks

    return rule


def test_the_rule_registry_refuses_a_taken_name_and_notes_a_broken_rule() -> None:
    rules = RuleRegistry()
    rules.add("quiet", _rule([]))
    with pytest.raises(DuplicateRuleError, match="'quiet' is already registered"):
        rules.add("quiet", _rule([]))

    def broken(sample: MetricsSample, settings: Settings, level_of: Any, now: float) -> list[Any]:
        raise KeyError("nope")

    rules.add("broken", broken)
    sample = MetricsSample(timestamp=1.0, host="test")
    assert rules.run(sample, Settings(), lambda rule, subject: None, 1.0) == []
    assert rules.errors == {"broken": "KeyError: 'nope'"}
    rules.remove("broken")
    assert (rules.names(), rules.errors) == (["quiet"], {})
