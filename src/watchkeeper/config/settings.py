"""The whole settings model and where its values come from.

:class:`Settings` is built by :func:`~watchkeeper.config.loading.build_settings`, which hands
it the file and ``OLLAMA_HOST`` layers; flags and the environment come in through
pydantic-settings, in the order of ``settings_customise_sources``::

    settings = Settings()  # defaults and WATCHKEEPER_* variables only
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from watchkeeper.config.fleet import BusSettings, FleetSettings
from watchkeeper.config.notifications import NotificationSettings
from watchkeeper.config.sections import (
    MIN_INTERVAL,
    AgentsSettings,
    AnalyzerSettings,
    OllamaSettings,
    PluginSettings,
    RemediationSettings,
    StorageSettings,
    Thresholds,
    WebSettings,
)
from watchkeeper.config.services import ServiceSpec
from watchkeeper.model.datacheck import data_problem

__all__ = [
    "ENV_PREFIX",
    "Settings",
]

ENV_PREFIX = "WATCHKEEPER_"


class Settings(BaseSettings):
    """Everything watchkeeper can be told. Frozen: change it through ``ConfigStore``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        validate_default=True,
        allow_inf_nan=False,
    )

    data_dir: Path = Path("debug_output")
    personality: Literal["witty", "plain"] = "witty"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    status_interval: float = Field(
        5.0, ge=MIN_INTERVAL, description="seconds between status file writes"
    )
    top_processes: int = Field(10, ge=1, le=100)
    thresholds: Thresholds = Thresholds()
    agents: AgentsSettings = AgentsSettings()
    analyzer: AnalyzerSettings = AnalyzerSettings()
    remediation: RemediationSettings = RemediationSettings()
    ollama: OllamaSettings = OllamaSettings()
    web: WebSettings = WebSettings()
    storage: StorageSettings = StorageSettings()
    plugins: PluginSettings = PluginSettings()
    notifications: NotificationSettings = NotificationSettings()
    bus: BusSettings = BusSettings()
    fleet: FleetSettings = FleetSettings()
    services: list[ServiceSpec] = Field(default_factory=list)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _finite_everywhere(self) -> Settings:
        # Typed numbers are checked by allow_inf_nan; this covers the free-form tables
        # (plugin_configs) and the models of other modules, once for the whole model.
        problem = data_problem(self.model_dump(mode="python"))
        if problem is not None:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _unique_services(self) -> Settings:
        seen: set[str] = set()
        for spec in self.services:
            if spec.name in seen:
                raise ValueError(f"service {spec.name!r} is defined twice")
            seen.add(spec.name)
        for spec in self.services:
            for needed in spec.depends_on:
                if needed == spec.name:
                    raise ValueError(f"service {spec.name!r} cannot depend on itself")
                if needed not in seen:
                    raise ValueError(
                        f"service {spec.name!r} depends on {needed!r}, which is not configured"
                    )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # First wins inside pydantic-settings: flags, then environment, then OLLAMA_HOST,
        # then the file. Defaults come from the fields themselves.
        return (
            init_settings,
            env_settings,
            _DictSource(settings_cls, _CURRENT_LAYERS.get("ollama_host", {})),
            _DictSource(settings_cls, _CURRENT_LAYERS.get("file", {})),
        )


class _DictSource(PydanticBaseSettingsSource):
    """A settings source that hands over a mapping loaded elsewhere."""

    def __init__(self, settings_cls: type[BaseSettings], data: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = dict(data)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


# Layers for the settings being built right now. Settings construction is synchronous and
# happens at start-up or inside ConfigStore.update, never concurrently with itself.
_CURRENT_LAYERS: dict[str, dict[str, Any]] = {}
