"""Installed plugins: a real (tiny) distribution with an ``entry_points.txt`` in its
``.dist-info``, put on ``sys.path``, found through ``importlib.metadata``. No network."""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from plugin_helpers import build

PACKAGE = """
    from pydantic import BaseModel, ConfigDict
    from watchkeeper.plugins import BasePlugin

    class TinyConfig(BaseModel):
        model_config = ConfigDict(extra="forbid")
        greeting: str = "hi"

    class TinyPlugin(BasePlugin[TinyConfig]):
        config_model = TinyConfig

        def register(self, system_context):
            system_context.actions.add(self.wave, name="{package}_wave", risk="safe")

        async def wave(self):
            '''Wave at the operator.'''
            return self.config.greeting
"""


class Site:
    """A directory on ``sys.path`` holding installed distributions."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.packages: list[str] = []

    def install(self, entry_points: dict[str, str], modules: dict[str, str]) -> str:
        """Write one distribution: its modules and its ``watchkeeper.plugins`` entry
        points (``{name: "module:Class"}``); returns the distribution's name."""
        dist = f"wk-tiny-{uuid.uuid4().hex[:8]}"
        for module, source in modules.items():
            (self.root / f"{module}.py").write_text(textwrap.dedent(source))
            self.packages.append(module)
        info = self.root / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[watchkeeper.plugins]\n{lines}")
        importlib.invalidate_caches()
        return dist


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    root = tmp_path / "site-packages"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    installed = Site(root)
    yield installed
    for module in installed.packages:
        sys.modules.pop(module, None)
    importlib.invalidate_caches()


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def test_an_entry_point_to_a_class_loads_with_its_config(
    tmp_path: Path, site: Site, plugin_dir: Path
) -> None:
    module = unique("wk_tiny")
    dist = site.install(
        {"tiny-plugin": f"{module}:TinyPlugin"}, {module: PACKAGE.format(package=module)}
    )
    orch = build(
        tmp_path, ["tiny-plugin"], {"tiny-plugin": {"greeting": "ahoy"}}, directory=plugin_dir
    )
    status = orch.snapshot().model_dump(mode="json")["plugins"]["tiny-plugin"]
    assert status["state"] == "loaded", status
    assert status["source"] == f"entry point {module}:TinyPlugin ({dist} 0.1)"
    assert status["actions"] == [f"{module}_wave"]
    info = orch.agents["remediator"].registry.get(f"{module}_wave").info  # type: ignore[attr-defined]
    assert (info.source, info.description) == ("tiny-plugin", "Wave at the operator.")


def test_an_entry_point_to_a_module_finds_its_plugin_class(
    tmp_path: Path, site: Site, plugin_dir: Path
) -> None:
    module = unique("wk_tiny")
    site.install({"tinymod": module}, {module: PACKAGE.format(package=module)})
    orch = build(tmp_path, ["tinymod"], directory=plugin_dir)
    assert orch.snapshot().model_dump(mode="json")["plugins"]["tinymod"]["state"] == "loaded"
    assert type(orch.plugins.plugins["tinymod"]).__name__ == "TinyPlugin"


def test_the_plugins_directory_wins_over_an_entry_point_of_the_same_name(
    tmp_path: Path, site: Site, plugin_dir: Path, write_plugin: Callable[[str, str], Path]
) -> None:
    module = unique("wk_tiny")
    site.install({"shadowed": f"{module}:TinyPlugin"}, {module: PACKAGE.format(package=module)})
    local = write_plugin(
        "shadowed",
        """
        from plugins.base_plugin import BasePlugin

        class Local(BasePlugin):
            def register(self, system_context):
                pass
        """,
    )
    orch = build(tmp_path, ["shadowed"], directory=plugin_dir)
    assert orch.snapshot().model_dump(mode="json")["plugins"]["shadowed"]["source"] == str(local)
    assert module not in sys.modules  # the installed one was never imported


def test_entry_points_that_are_not_listed_are_never_imported(
    tmp_path: Path, site: Site, plugin_dir: Path
) -> None:
    marker = tmp_path / "imported"
    listed, unlisted = unique("wk_listed"), unique("wk_unlisted")
    site.install({"listed": f"{listed}:TinyPlugin"}, {listed: PACKAGE.format(package=listed)})
    site.install(
        {"unlisted": f"{unlisted}:Nothing"},
        {unlisted: f"open({str(marker)!r}, 'w').close()\n"},
    )
    orch = build(tmp_path, ["listed"], directory=plugin_dir)
    assert orch.snapshot().model_dump(mode="json")["plugins"]["listed"]["state"] == "loaded"
    assert not marker.exists()
    assert unlisted not in sys.modules


def test_a_broken_installed_plugin_is_reported(
    tmp_path: Path, site: Site, plugin_dir: Path
) -> None:
    broken, odd = unique("wk_broken"), unique("wk_odd")
    site.install(
        {"broken": f"{broken}:TinyPlugin"}, {broken: "raise ImportError('half installed')\n"}
    )
    site.install({"odd": f"{odd}:VALUE"}, {odd: "VALUE = 42\n"})
    orch = build(tmp_path, ["broken", "odd"], directory=plugin_dir)
    status = orch.snapshot().model_dump(mode="json")["plugins"]
    assert status["broken"]["state"] == "failed"
    assert status["broken"]["phase"] == "import"
    assert status["broken"]["reason"] == "ImportError: half installed"
    assert "neither a BasePlugin subclass nor a module" in status["odd"]["reason"]


def test_two_installed_plugins_with_one_name_are_refused(
    tmp_path: Path, site: Site, plugin_dir: Path
) -> None:
    first, second = unique("wk_first"), unique("wk_second")
    site.install({"twin": f"{first}:TinyPlugin"}, {first: PACKAGE.format(package=first)})
    site.install({"twin": f"{second}:TinyPlugin"}, {second: PACKAGE.format(package=second)})
    orch = build(tmp_path, ["twin"], directory=plugin_dir)
    reason = orch.snapshot().model_dump(mode="json")["plugins"]["twin"]["reason"]
    assert "several installed packages offer the plugin 'twin'" in reason
