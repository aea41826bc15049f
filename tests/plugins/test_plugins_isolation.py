"""A plugin that fails (import, config, register, start, while running, stop) is reported
and disabled, what it registered is taken back, and the rest of the system keeps running."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from plugin_helpers import build, eventually, running
from pydantic import BaseModel

from watchkeeper.bus import Message, Topic


class Poke(BaseModel):
    n: int


# Registers one of everything, then fails wherever FAIL_AT says (a module constant the
# tests rewrite per plugin file).
EVERYTHING = """
    import asyncio
    from plugins.base_plugin import BasePlugin
    from watchkeeper.agents.base import BaseAgent
    from watchkeeper.model.metrics import MetricSpec

    FAIL_AT = {fail_at!r}
    MARKER = {marker!r}

    class Gauge:
        name = "{name}_gauge"
        metrics = (MetricSpec(name="{name}.value", unit="count", description="A test value."),)

        def collect(self):
            return {{"{name}.value": 1.0}}

    class Idle(BaseAgent):
        async def _perform_check(self):
            pass

    class Everything(BasePlugin):
        def register(self, system_context):
            remediator = system_context["orchestrator"].agents.get("remediator")
            remediator.{name}_fix = self.fix
            system_context.collectors.register(Gauge())
            system_context.add_agent(Idle("{name}_agent", system_context.agent_context))
            system_context.subscribe("test.poke", self.on_poke)
            if FAIL_AT == "register":
                raise RuntimeError("register went wrong")

        async def fix(self):
            return True

        async def start(self):
            if FAIL_AT == "start":
                raise RuntimeError("start went wrong")
            if FAIL_AT == "start_hangs":
                await asyncio.sleep(30)

        async def on_poke(self, message):
            self.pokes = getattr(self, "pokes", []) + [message.payload["n"]]
            if FAIL_AT == "running":
                raise ValueError("handler went wrong")

        async def stop(self):
            with open(MARKER, "a") as marker:
                marker.write("stopped\\n")
            if FAIL_AT == "stop_hangs":
                await asyncio.sleep(30)
"""


def write_everything(
    write_plugin: Callable[[str, str], Path], tmp_path: Path, name: str, fail_at: str | None
) -> Path:
    marker = tmp_path / f"{name}.stopped"
    write_plugin(name, EVERYTHING.format(name=name, fail_at=fail_at, marker=str(marker)))
    return marker


def nothing_of(orch: object, name: str) -> None:
    """Assert that nothing ``name`` registered is left in the system."""
    agents = orch.agents  # type: ignore[attr-defined]
    remediator = agents["remediator"]
    assert f"{name}_fix" not in remediator.registry
    assert not hasattr(remediator, f"{name}_fix")
    assert f"{name}_gauge" not in agents["sensor"].registry
    subscribers = {s.name for s in orch.bus.stats().subscribers}  # type: ignore[attr-defined]
    assert f"plugin:{name}:test.poke" not in subscribers


def test_an_import_error_is_reported_and_the_others_load(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    write_plugin("broken", "import no_such_module_anywhere\n")
    write_plugin("syntax", "def oops(:\n")
    write_plugin("exits", "import sys\nsys.exit(3)\n")
    write_everything(write_plugin, tmp_path, "good", None)
    orch = build(tmp_path, ["broken", "syntax", "exits", "good"], directory=plugin_dir)
    status = orch.snapshot().model_dump(mode="json")["plugins"]
    for name, why in (
        ("broken", "ModuleNotFoundError"),
        ("syntax", "SyntaxError"),
        ("exits", "SystemExit"),
    ):
        assert status[name]["state"] == "failed"
        assert status[name]["phase"] == "import"
        assert why in status[name]["reason"]
    assert status["good"]["state"] == "loaded"
    assert "good_fix" in orch.agents["remediator"].registry


def test_a_config_that_does_not_fit_the_model_fails_before_register(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    marker = tmp_path / "registered"
    write_plugin(
        "strict",
        f"""
        from pydantic import BaseModel, ConfigDict, Field
        from plugins.base_plugin import BasePlugin

        class StrictConfig(BaseModel):
            model_config = ConfigDict(extra="forbid")
            limit: int = Field(10, ge=1)

        class Strict(BasePlugin):
            config_model = StrictConfig

            def register(self, system_context):
                open({str(marker)!r}, "w").close()
        """,
    )
    orch = build(
        tmp_path, ["strict"], {"strict": {"limit": 0, "colour": "red"}}, directory=plugin_dir
    )
    status = orch.snapshot().model_dump(mode="json")["plugins"]["strict"]
    assert status["state"] == "failed"
    assert status["phase"] == "config"
    assert "limit: Input should be greater than or equal to 1" in status["reason"]
    assert "colour: Extra inputs are not permitted" in status["reason"]
    assert not marker.exists()
    bad_toggle = build(tmp_path, ["strict"], {"strict": {"enabled": "no"}}, directory=plugin_dir)
    assert (
        "enabled must be true or false"
        in bad_toggle.snapshot().model_dump(mode="json")["plugins"]["strict"]["reason"]
    )


def test_a_register_error_takes_back_what_was_registered_before_it(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    write_everything(write_plugin, tmp_path, "bad", "register")
    write_everything(write_plugin, tmp_path, "good", None)
    orch = build(tmp_path, ["bad", "good"], directory=plugin_dir)
    status = orch.snapshot().model_dump(mode="json")["plugins"]
    assert status["bad"]["state"] == "failed"
    assert status["bad"]["phase"] == "register"
    assert status["bad"]["reason"] == "RuntimeError: register went wrong"
    assert status["bad"]["actions"] == [] and status["bad"]["collectors"] == []
    nothing_of(orch, "bad")
    assert "bad_agent" not in orch.agents
    assert status["good"]["actions"] == ["good_fix"]
    assert status["good"]["collectors"] == ["good_gauge"]
    assert status["good"]["agents"] == ["good_agent"]
    assert status["good"]["subscriptions"] == ["test.poke"]


async def test_a_start_error_disables_the_plugin_before_its_agent_runs(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    bad_stopped = write_everything(write_plugin, tmp_path, "bad", "start")
    write_everything(write_plugin, tmp_path, "good", None)
    orch = build(tmp_path, ["bad", "good"], directory=plugin_dir)
    assert "bad_fix" in orch.agents["remediator"].registry  # registered fine at first
    async with running(orch):
        status = orch.snapshot().model_dump(mode="json")["plugins"]
        assert status["bad"]["state"] == "failed"
        assert status["bad"]["phase"] == "start"
        assert "start went wrong" in status["bad"]["reason"]
        nothing_of(orch, "bad")
        assert "bad_agent" not in orch.agents
        assert bad_stopped.read_text() == "stopped\n"  # stop() is owed once start was tried
        await eventually(lambda: orch.agents["good_agent"].checks >= 1)
        assert orch.snapshot().model_dump(mode="json")["status"] == "healthy"
    assert status["good"]["started"] is True


async def test_a_start_that_hangs_is_cut_off(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    write_everything(write_plugin, tmp_path, "slow", "start_hangs")
    source = (plugin_dir / "slow.py").read_text()
    (plugin_dir / "slow.py").write_text(
        source.replace(
            "class Everything(BasePlugin):",
            "class Everything(BasePlugin):\n    start_timeout = 0.3\n",
        )
    )
    orch = build(tmp_path, ["slow"], directory=plugin_dir)
    began = time.monotonic()
    async with running(orch):
        assert time.monotonic() - began < 10
        status = orch.snapshot().model_dump(mode="json")["plugins"]["slow"]
        assert status["state"] == "failed"
        assert status["reason"] == "start() took longer than 0.3s"
        nothing_of(orch, "slow")


async def test_an_error_while_running_disables_only_that_plugin(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    bad_stopped = write_everything(write_plugin, tmp_path, "bad", "running")
    write_everything(write_plugin, tmp_path, "good", None)
    orch = build(tmp_path, ["bad", "good"], directory=plugin_dir)
    async with running(orch):
        poke = orch.bus.topics.add(Topic("test.poke", Poke))
        await orch.bus.publish(poke, Poke(n=1), sender="test")
        status = await eventually(
            lambda: (
                (s := orch.snapshot().model_dump(mode="json")["plugins"])["bad"]["state"]
                == "failed"
                and s
            )
        )
        assert status["bad"]["phase"] == "running"
        assert (
            "handler for 'test.poke' raised ValueError: handler went wrong"
            in (status["bad"]["reason"])
        )
        nothing_of(orch, "bad")
        # Its agent cannot leave the supervisor, so it is paused.
        await eventually(lambda: str(orch.agents["bad_agent"].state) == "paused")
        assert bad_stopped.read_text() == "stopped\n"
        # The good plugin still hears the bus and still has its action.
        await orch.bus.publish(poke, Poke(n=2), sender="test")
        good = orch.plugins.plugins["good"]
        await eventually(lambda: getattr(good, "pokes", None) == [1, 2])
        assert "bad" not in orch.plugins.plugins
        assert status["good"]["state"] == "loaded"
        assert "good_fix" in orch.agents["remediator"].registry
        assert str(orch.agents["good_agent"].state) == "running"


async def test_a_stop_that_hangs_does_not_hold_up_shutdown(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    stopped = write_everything(write_plugin, tmp_path, "sticky", "stop_hangs")
    source = (plugin_dir / "sticky.py").read_text()
    (plugin_dir / "sticky.py").write_text(
        source.replace(
            "class Everything(BasePlugin):",
            "class Everything(BasePlugin):\n    stop_timeout = 0.3\n",
        )
    )
    orch = build(tmp_path, ["sticky"], directory=plugin_dir)
    async with running(orch):
        began = time.monotonic()
    assert time.monotonic() - began < 5
    assert stopped.read_text() == "stopped\n"
    assert (
        orch.snapshot().model_dump(mode="json")["plugins"]["sticky"]["stop_error"]
        == "stop() took longer than 0.3s"
    )


async def test_the_system_status_stays_healthy_with_failed_plugins(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    write_plugin("broken", "raise RuntimeError('no')\n")
    orch = build(tmp_path, ["broken"], directory=plugin_dir)
    async with running(orch):
        await eventually(lambda: orch.agents["sensor"].checks >= 2)
        snapshot = orch.snapshot().model_dump(mode="json")
        assert snapshot["status"] == "healthy"
        assert snapshot["plugins"]["broken"]["state"] == "failed"
        reply = await orch.agents["sensor"].execute_command(
            Message(topic="command.sensor", sender="test", payload={"command": "health_check"})
        )
        assert reply["ok"] is True
    await asyncio.sleep(0)
