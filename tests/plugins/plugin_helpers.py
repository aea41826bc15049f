"""Helpers for the plugin tests: real orchestrators on test settings, run for real."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from watchkeeper.bus import InMemoryBus
from watchkeeper.config import Settings, deep_merge
from watchkeeper.live_config import ConfigStore
from watchkeeper.orchestrator import Orchestrator

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "plugins"


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    """Quiet, fast test settings: no LLM, short intervals, data in ``tmp_path``."""
    base = {
        "data_dir": str(tmp_path / "data"),
        "personality": "plain",
        "status_interval": 0.2,
        "agents": {"check_interval": 0.2},
        "ollama": {"enabled": False},
    }
    return Settings.model_validate(deep_merge(base, overrides))


def build(
    tmp_path: Path,
    load: list[str],
    configs: dict[str, dict[str, Any]] | None = None,
    *,
    directory: Path | None = None,
    config_file: Path | None = None,
    **overrides: Any,
) -> Orchestrator:
    """An orchestrator whose configuration loads ``load`` from ``directory``."""
    plugins: dict[str, Any] = {"plugins_to_load": load, "plugin_configs": configs or {}}
    if directory is not None:
        plugins["directory"] = str(directory)
    settings = settings_for(tmp_path, plugins=plugins, **overrides)
    return Orchestrator(ConfigStore(settings, config_file, InMemoryBus()))


@contextlib.asynccontextmanager
async def running(orchestrator: Orchestrator) -> AsyncIterator[Orchestrator]:
    """Run ``orchestrator`` for the duration of the block, then stop it cleanly."""
    stop = asyncio.Event()
    task = asyncio.create_task(orchestrator.run(stop))
    try:
        for _ in range(200):
            if orchestrator.state == "running" and all(
                agent.started_at is not None for agent in orchestrator.agents.values()
            ):
                break
            await asyncio.sleep(0.02)
        yield orchestrator
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def eventually(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Wait until ``check()`` is truthy; return its value or fail after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout:g}s")
        await asyncio.sleep(0.02)
