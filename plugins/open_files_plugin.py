"""Sample metric plugin: how many file handles the whole system has open.

When a host runs out of file handles, everything fails at once in confusing ways ("too many
open files" from a web server, a database that cannot open its journal). The kernel counts
them in ``/proc/sys/fs/file-nr``: one short read per sample, no process walk. This plugin
declares three metrics, collects them with the sensor, and adds an analysis rule that
warns before the limit is reached::

    [plugins]
    plugins_to_load = ["open_files_plugin"]

    [plugins.plugin_configs.open_files_plugin]
    warning_percent = 80
    critical_percent = 95

On systems without ``/proc`` (macOS, Windows) the collector reports nothing and the rule
stays quiet. It uses the typed doors of ``system_context`` (``collectors``, ``rules``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from plugins.base_plugin import BasePlugin, PluginContext
from pydantic import BaseModel, ConfigDict, Field, model_validator

from watchkeeper.analysis.alerts import Severity
from watchkeeper.analysis.checks import Check
from watchkeeper.analysis.levels import raw_level
from watchkeeper.config import Settings
from watchkeeper.metrics import MetricSpec, MetricsSample

__all__ = ["OpenFilesCollector", "OpenFilesConfig", "OpenFilesPlugin", "open_files_rule"]

# Above this the kernel means "no limit" (file-max is LONG_MAX on some systems); a
# percentage of it says nothing.
_UNLIMITED = 2**62


class OpenFilesConfig(BaseModel):
    """``plugin_configs.open_files_plugin``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warning_percent: float = Field(80.0, gt=0, le=100)
    critical_percent: float = Field(95.0, gt=0, le=100)
    source: Path = Path("/proc/sys/fs/file-nr")

    @model_validator(mode="after")
    def _warning_below_critical(self) -> OpenFilesConfig:
        if self.warning_percent >= self.critical_percent:
            raise ValueError("warning_percent must be below critical_percent")
        return self


class OpenFilesCollector:
    """Reads ``file-nr`` (allocated, free, maximum) into ``files.*`` metrics."""

    name = "open_files"
    metrics = (
        MetricSpec(name="files.open", unit="count", description="File handles open system-wide."),
        MetricSpec(
            name="files.max", unit="count", description="The kernel's limit on file handles."
        ),
        MetricSpec(
            name="files.percent",
            unit="percent",
            description="Open file handles as a share of the limit (absent when unlimited).",
        ),
    )

    def __init__(self, source: Path = Path("/proc/sys/fs/file-nr")) -> None:
        self.source = source

    def collect(self) -> dict[str, float] | None:
        try:
            text = self.source.read_text()
        except FileNotFoundError:
            return None  # no /proc here: the sample simply lacks these metrics
        allocated, free, maximum = (int(word) for word in text.split()[:3])
        in_use = max(allocated - free, 0)
        values = {"files.open": float(in_use), "files.max": float(maximum)}
        if 0 < maximum < _UNLIMITED:
            values["files.percent"] = round(100.0 * in_use / maximum, 3)
        return values


def open_files_rule(
    config: OpenFilesConfig,
) -> Callable[
    [MetricsSample, Settings, Callable[[str, str], Severity | None], float], Iterable[Check]
]:
    """The analysis rule: warning / critical when the share of handles in use is high."""

    def rule(
        sample: MetricsSample,
        settings: Settings,
        level_of: Callable[[str, str], Severity | None],
        now: float,
    ) -> list[Check]:
        percent = sample.extra.get("files.percent")
        if percent is None:
            return []
        level = raw_level(
            percent,
            config.warning_percent,
            config.critical_percent,
            margin=settings.analyzer.clear_margin,
            current=level_of("open_files", "host"),
        )
        open_now = sample.extra.get("files.open", 0.0)
        limit = sample.extra.get("files.max", 0.0)
        return [
            Check(
                rule="open_files",
                subject="host",
                family="files",
                raw=level,
                summary=(
                    f"{percent:.0f}% of the system's file handles are open "
                    f"({open_now:.0f} of {limit:.0f})"
                ),
                evidence={"percent": percent, "open": open_now, "max": limit},
            )
        ]

    return rule


class OpenFilesPlugin(BasePlugin[OpenFilesConfig]):
    config_model = OpenFilesConfig

    def register(self, system_context: PluginContext) -> None:
        system_context.collectors.register(OpenFilesCollector(self.config.source))
        if system_context.analyzer is not None:  # the metrics are useful on their own too
            system_context.rules.add("open_files", open_files_rule(self.config))
