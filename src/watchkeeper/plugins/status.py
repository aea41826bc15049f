"""What the status file, the API and the CLI show about each plugin."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel

__all__ = ["Phase", "PluginState", "PluginStatus"]

Phase = Literal["import", "config", "register", "start", "running"]


class PluginState(StrEnum):
    LOADED = "loaded"  # registered; started too once the system runs
    FAILED = "failed"  # failed at ``phase`` for ``reason``; disabled
    DISABLED = "disabled"  # switched off with ``enabled = false`` in its config section


class PluginStatus(BaseModel):
    """One plugin as the status file, the API and the CLI show it."""

    name: str
    state: PluginState
    source: str | None = None
    phase: Phase | None = None
    reason: str | None = None
    started: bool = False
    actions: list[str] = []
    collectors: list[str] = []
    rules: list[str] = []
    agents: list[str] = []
    subscriptions: list[str] = []
    rule_errors: dict[str, str] = {}
    stop_error: str | None = None
