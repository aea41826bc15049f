"""Finding and loading plugins: by name only, from the plugins directory (anywhere, with or
without base_plugin.py), with their own validated config section, reported in the status."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from plugin_helpers import build

from watchkeeper.plugins import BasePlugin

SIMPLE = """
    from plugins.base_plugin import BasePlugin

    class Simple(BasePlugin):
        def register(self, system_context):
            self.seen = sorted(system_context)
"""


def test_a_listed_plugin_loads_from_a_directory_without_base_plugin_py(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    path = write_plugin("simple", SIMPLE)
    assert not (plugin_dir / "base_plugin.py").exists()
    orch = build(tmp_path, ["simple"], directory=plugin_dir)
    status = orch.snapshot().model_dump(mode="json")["plugins"]["simple"]
    assert status["state"] == "loaded", status
    assert status["source"] == str(path)
    plugin = orch.plugins.plugins["simple"]
    assert isinstance(plugin, BasePlugin)  # the brief's import path is watchkeeper's class
    assert plugin.name == "simple"
    assert plugin.get_config() == {}
    assert cast(Any, plugin).seen == ["config", "message_bus", "orchestrator", "plugin_name"]


def test_only_listed_plugins_are_imported(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    marker = tmp_path / "imported"
    write_plugin("simple", SIMPLE)
    write_plugin("bystander", f"open({str(marker)!r}, 'w').close()\n")
    orch = build(tmp_path, ["simple"], directory=plugin_dir)
    assert list(orch.snapshot().model_dump(mode="json")["plugins"]) == ["simple"]
    assert not marker.exists()


def test_the_directory_defaults_to_plugins_beside_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "etc"
    (conf_dir / "plugins").mkdir(parents=True)
    (conf_dir / "plugins" / "simple.py").write_text(SIMPLE.replace("\n    ", "\n"))
    config_file = conf_dir / "watchkeeper.toml"
    config_file.write_text("")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    orch = build(tmp_path, ["simple"], config_file=config_file)
    assert orch.plugins.directory == conf_dir / "plugins"
    assert orch.snapshot().model_dump(mode="json")["plugins"]["simple"]["state"] == "loaded"


def test_without_a_config_file_the_directory_is_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_plugin: Callable[[str, str], Path]
) -> None:
    write_plugin("simple", SIMPLE)  # into tmp_path / "plugins"
    monkeypatch.chdir(tmp_path)
    orch = build(tmp_path, ["simple"])
    assert orch.plugins.directory == tmp_path / "plugins"
    assert orch.snapshot().model_dump(mode="json")["plugins"]["simple"]["state"] == "loaded"


def test_a_declared_config_model_validates_the_section(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    write_plugin(
        "typed",
        """
        from pydantic import BaseModel, ConfigDict, Field
        from watchkeeper.plugins import BasePlugin

        class TypedConfig(BaseModel):
            model_config = ConfigDict(extra="forbid")
            limit: int = Field(10, ge=1)

        class Typed(BasePlugin[TypedConfig]):
            config_model = TypedConfig

            def register(self, system_context):
                self.limit_seen = self.config.limit
        """,
    )
    orch = build(tmp_path, ["typed"], {"typed": {"limit": "42"}}, directory=plugin_dir)
    plugin = orch.plugins.plugins["typed"]
    assert plugin.limit_seen == 42
    assert type(plugin.get_config()).__name__ == "TypedConfig"


def test_enabled_false_skips_the_plugin_without_importing_it(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    marker = tmp_path / "imported"
    write_plugin("off", f"open({str(marker)!r}, 'w').close()\n" + SIMPLE.replace("\n    ", "\n"))
    orch = build(tmp_path, ["off"], {"off": {"enabled": False}}, directory=plugin_dir)
    assert orch.snapshot().model_dump(mode="json")["plugins"]["off"]["state"] == "disabled"
    assert not marker.exists()
    assert "off" not in orch.plugins.plugins


def test_a_module_with_two_plugin_classes_must_name_one(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    two = """
        from watchkeeper.plugins import BasePlugin

        class First(BasePlugin):
            def register(self, system_context):
                pass

        class Second(First):
            pass
        """
    write_plugin("two", two)
    write_plugin("chosen", textwrap.dedent(two) + "\nplugin_class = Second\n")
    orch = build(tmp_path, ["two", "chosen"], directory=plugin_dir)
    status = orch.snapshot().model_dump(mode="json")["plugins"]
    assert status["two"]["state"] == "failed"
    assert status["two"]["phase"] == "import"
    assert "several plugins (First, Second)" in status["two"]["reason"]
    assert type(orch.plugins.plugins["chosen"]).__name__ == "Second"


def test_plugins_with_their_own_init_get_their_config_either_way(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    write_plugin(
        "no_args",
        """
        from plugins.base_plugin import BasePlugin

        class NoArgs(BasePlugin):
            def __init__(self):
                self.ready = True

            def register(self, system_context):
                pass
        """,
    )
    write_plugin(
        "with_config",
        """
        from plugins.base_plugin import BasePlugin

        class WithConfig(BasePlugin):
            def __init__(self, config):
                super().__init__(config)
                self.threshold = config["threshold"]

            def register(self, system_context):
                pass
        """,
    )
    configs = {"no_args": {"a": 1}, "with_config": {"threshold": 3}}
    orch = build(tmp_path, ["no_args", "with_config"], configs, directory=plugin_dir)
    plugins = orch.plugins.plugins
    assert plugins["no_args"].ready and plugins["no_args"].get_config() == {"a": 1}
    assert plugins["with_config"].threshold == 3
    assert plugins["with_config"].name == "with_config"


def test_a_plugin_package_with_relative_imports_loads(tmp_path: Path, plugin_dir: Path) -> None:
    package = plugin_dir / "bundle"
    package.mkdir()
    (package / "helpers.py").write_text("GREETING = 'hello'\n")
    (package / "__init__.py").write_text(
        "from plugins.base_plugin import BasePlugin\n"
        "from .helpers import GREETING\n\n"
        "class Bundle(BasePlugin):\n"
        "    def register(self, system_context):\n"
        "        self.greeting = GREETING\n"
    )
    orch = build(tmp_path, ["bundle"], directory=plugin_dir)
    assert orch.plugins.plugins["bundle"].greeting == "hello"


def test_a_missing_plugin_is_reported_and_the_others_load(
    tmp_path: Path, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    write_plugin("simple", SIMPLE)
    orch = build(tmp_path, ["ghost", "simple", "simple"], directory=plugin_dir)
    status = orch.snapshot().model_dump(mode="json")["plugins"]
    assert list(status) == ["ghost", "simple"]  # listed twice, loaded once
    assert status["ghost"]["state"] == "failed"
    assert status["ghost"]["phase"] == "import"
    assert "no plugin named 'ghost'" in status["ghost"]["reason"]
    assert "watchkeeper.plugins" in status["ghost"]["reason"]
    assert status["simple"]["state"] == "loaded"


def test_names_that_are_not_module_names_never_reach_the_file_system(
    tmp_path: Path, plugin_dir: Path
) -> None:
    outside = tmp_path / "evil.py"
    outside.write_text(SIMPLE.replace("\n    ", "\n"))
    orch = build(tmp_path, ["../evil"], directory=plugin_dir)
    status = orch.snapshot().model_dump(mode="json")["plugins"]["../evil"]
    assert status["state"] == "failed"
    assert "no plugin named" in status["reason"]


def test_no_plugins_configured_means_an_empty_status(tmp_path: Path) -> None:
    orch = build(tmp_path, [])
    assert orch.snapshot().model_dump(mode="json")["plugins"] == {}
