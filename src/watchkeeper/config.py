"""Typed, frozen settings with an explicit source order.

Sources, later wins::

    built-in defaults < watchkeeper.toml < WATCHKEEPER_* environment < command-line flags

``OLLAMA_HOST`` sets the Ollama URL the way Ollama's own tools read it, below
``WATCHKEEPER_OLLAMA__URL`` and flags. Load once with :func:`load_settings`; a running
system changes settings only through :class:`ConfigStore.update`, which validates the
whole result before anything takes effect::

    settings = load_settings(config_file="watchkeeper.toml", flags={"web": {"port": 8080}})

Every problem becomes a :class:`ConfigError` whose message names the key and where it
came from, so the command line can print one line and exit with code 2. That includes
input no model should see: nesting deeper than ``datacheck.MAX_DEPTH`` levels and numbers
that are not finite (``inf``, ``nan``, ``1e999``), from any source. Every loop interval
and timeout has a floor (``MIN_INTERVAL``, ``MIN_TIMEOUT``, ``MIN_BACKOFF``) that the
error names. Secrets (``web.token``, the channels' credentials) are secret types from
:mod:`watchkeeper.model.secret`, masked wherever settings are shown.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from watchkeeper.model.datacheck import MAX_DEPTH, data_problem, text_depth
from watchkeeper.model.secret import SecretText
from watchkeeper.notify.settings import NotificationSettings
from watchkeeper.services.spec import ServiceSpec

__all__ = [
    "AgentSettings",
    "AgentsSettings",
    "AnalyzerSettings",
    "CleanupDir",
    "ConfigError",
    "ExpectedPattern",
    "OllamaSettings",
    "PluginSettings",
    "RemediationSettings",
    "ScriptSpec",
    "Settings",
    "StorageSettings",
    "Thresholds",
    "WebSettings",
    "find_config_file",
    "load_settings",
]

ENV_PREFIX = "WATCHKEEPER_"
# Environment variables of ours that are not settings keys.
_ENV_NOT_SETTINGS = {"WATCHKEEPER_CONFIG", "WATCHKEEPER_TOKEN", "WATCHKEEPER_URL"}
DEFAULT_CONFIG_NAME = "watchkeeper.toml"
#: Floors, in seconds. The shortest interval of any loop (agents' checks, the status file,
#: LLM probes): 10 a second at most, so a typo like 1e-6 cannot spin a core.
MIN_INTERVAL = 0.1
#: The shortest timeout or grace period: anything shorter fails before it could succeed.
MIN_TIMEOUT = 0.1
#: The shortest first step of a restart backoff.
MIN_BACKOFF = 0.01


class ConfigError(Exception):
    """A configuration problem, worded for the person who has to fix it."""


class _Section(BaseModel):
    # allow_inf_nan=False: every number must be finite, so it can be written back as TOML
    # and JSON and compared sensibly.
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False
    )


class Thresholds(_Section):
    """Warning and critical levels; every pair must have warning below critical."""

    cpu_warning: float = Field(75.0, ge=0, le=100, description="CPU % that raises eyebrows")
    cpu_critical: float = Field(90.0, ge=0, le=100, description="CPU % that means trouble")
    memory_warning: float = Field(85.0, ge=0, le=100)
    memory_critical: float = Field(95.0, ge=0, le=100)
    disk_warning: float = Field(85.0, ge=0, le=100)
    disk_critical: float = Field(95.0, ge=0, le=100)
    swap_warning: float = Field(50.0, ge=0, le=100)
    swap_critical: float = Field(80.0, ge=0, le=100)
    inode_warning: float = Field(85.0, ge=0, le=100)
    inode_critical: float = Field(95.0, ge=0, le=100)
    load_warning: float = Field(1.5, gt=0, description="1-minute load per core")
    load_critical: float = Field(3.0, gt=0, description="1-minute load per core")

    @model_validator(mode="after")
    def _warning_below_critical(self) -> Thresholds:
        for family in ("cpu", "memory", "disk", "swap", "inode", "load"):
            warning = getattr(self, f"{family}_warning")
            critical = getattr(self, f"{family}_critical")
            if warning >= critical:
                raise ValueError(
                    f"{family}_warning ({warning:g}) must be below {family}_critical ({critical:g})"
                )
        return self


class AgentSettings(_Section):
    """Per-agent overrides; anything left unset follows ``[agents]``."""

    enabled: bool = True
    check_interval: float | None = Field(None, ge=MIN_INTERVAL, le=3600)


class AgentsSettings(_Section):
    check_interval: float = Field(
        5.0, ge=MIN_INTERVAL, le=3600, description="seconds between checks"
    )
    hang_intervals: float = Field(
        3.0, ge=1, description="a check silent for this many intervals counts as hung"
    )
    min_hang_timeout: float = Field(
        10.0, ge=MIN_TIMEOUT, description="never call a check hung sooner"
    )
    restart_backoff_initial: float = Field(1.0, ge=MIN_BACKOFF)
    restart_backoff_max: float = Field(60.0, ge=MIN_BACKOFF)
    sensor: AgentSettings = AgentSettings(check_interval=None)
    analyzer: AgentSettings = AgentSettings()
    remediator: AgentSettings = AgentSettings()
    communicator: AgentSettings = AgentSettings()

    def for_agent(self, name: str) -> AgentSettings:
        return getattr(self, name, None) or AgentSettings()

    def interval_for(self, name: str) -> float:
        own = self.for_agent(name).check_interval
        return own if own is not None else self.check_interval


class CleanupDir(_Section):
    """A directory ``clean_directory`` may delete files in (never outside it)."""

    path: Path
    older_than_days: float = Field(7.0, gt=0)
    larger_than_mb: float | None = Field(None, gt=0)

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        if not value.is_absolute() or ".." in value.parts:
            raise ValueError("must be an absolute path without '..'")
        if value == Path(value.anchor):
            raise ValueError("the root directory cannot be a cleanup directory")
        return value


class ScriptSpec(_Section):
    """A remediation script: argv run without a shell."""

    argv: list[str] = Field(min_length=1)
    timeout: float = Field(60.0, ge=MIN_TIMEOUT, le=3600)
    description: str = ""


class RemediationSettings(_Section):
    mode: Literal["auto", "approve", "dry_run"] = "auto"
    max_concurrent_actions: int = Field(2, ge=1, le=64)
    healing_cooldown: float = Field(60.0, ge=0, description="seconds between attempts per target")
    allow_actions: list[str] = Field(
        default_factory=list, description="run at once in auto mode even when dangerous"
    )
    deny_actions: list[str] = Field(default_factory=list)
    # Never killed or reniced: remote access (OpenSSH's listener and its per-login and
    # auth processes), init, the journal, logins and the system bus that systemctl needs.
    protected_names: list[str] = Field(
        default_factory=lambda: [
            "sshd",
            "sshd-session",
            "sshd-auth",
            "systemd",
            "init",
            "systemd-journald",
            "systemd-logind",
            "dbus-daemon",
            "dbus-broker",
        ]
    )
    min_confidence: float = Field(0.5, ge=0, le=1, description="LLM proposals below are ignored")
    verify_timeout: float = Field(10.0, ge=MIN_TIMEOUT, le=600)
    kill_grace: float = Field(5.0, ge=MIN_TIMEOUT, le=60)
    crash_loop_max_failures: int = Field(5, ge=1)
    crash_loop_window: float = Field(300.0, gt=0)
    crash_loop_backoff_initial: float = Field(0.5, ge=0)
    crash_loop_backoff_max: float = Field(30.0, gt=0)
    crash_loop_stable_after: float = Field(60.0, gt=0)
    giveup_reset_after: float | None = Field(None, gt=0, description="None: a person resets")
    privilege_retry_after: float = Field(3600.0, gt=0)
    pending_max: int = Field(100, ge=1)
    cleanup_dirs: list[CleanupDir] = Field(default_factory=list)
    log_files: list[Path] = Field(default_factory=list)
    rotate_keep: int = Field(5, ge=1, le=100)
    scripts: dict[str, ScriptSpec] = Field(default_factory=dict)

    @field_validator("log_files")
    @classmethod
    def _absolute_logs(cls, value: list[Path]) -> list[Path]:
        for path in value:
            if not path.is_absolute() or ".." in path.parts:
                raise ValueError(f"{path}: log files must be absolute paths without '..'")
        return value


class OllamaSettings(_Section):
    enabled: bool = True
    url: str = "http://localhost:11434"
    model: str = "mistral"
    timeout: float = Field(30.0, ge=MIN_TIMEOUT)
    retry_attempts: int = Field(3, ge=1, le=10)
    retry_delay: float = Field(2.0, ge=0)
    num_ctx: int = Field(4096, ge=512)
    cooldown: float = Field(300.0, ge=0, description="seconds between analyses of one alert")
    hourly_budget: int = Field(30, ge=0, description="most LLM calls per hour")
    probe_interval: float = Field(
        30.0, ge=MIN_INTERVAL, description="seconds between probes while down"
    )

    @field_validator("url")
    @classmethod
    def _url_has_scheme(cls, value: str) -> str:
        # Read exactly as Ollama's own tools read OLLAMA_HOST: a bare host gets http:// and
        # port 11434; an explicit scheme without a port gets 80/443.
        from watchkeeper.llm.results import resolve_host

        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        if "://" in value and not value.lower().startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return resolve_host(value, environ={})


class ExpectedPattern(_Section):
    """A process allowed to run hot: alerts it drives are lowered to ``max_severity``."""

    process: str = Field(min_length=1, description="glob on the process name, any case")
    hours: tuple[int, int] | None = Field(
        None, description="local hours [start, end); wraps past midnight; None = always"
    )
    max_severity: Literal["info", "warning"] = "info"
    note: str = ""

    @field_validator("hours")
    @classmethod
    def _hours_in_range(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not all(0 <= hour <= 24 for hour in value):
            raise ValueError("hours must be between 0 and 24")
        return value


class AnalyzerSettings(_Section):
    for_seconds: float = Field(15.0, ge=0, description="a condition holds this long to fire")
    clear_seconds: float = Field(15.0, ge=0, description="and stays clear this long to resolve")
    clear_margin: float = Field(5.0, ge=0, description="percentage points below a line to clear")
    escalate_after: float = Field(900.0, gt=0, description="a warning firing this long escalates")
    runaway_cpu_percent: float = Field(90.0, gt=0, description="% of one core, one process")
    runaway_for_seconds: float = Field(60.0, ge=0)
    zombie_warning: int = Field(20, ge=1)
    zombie_critical: int = Field(100, ge=1)
    net_errors_warning: float = Field(10.0, gt=0, description="errors+drops per second")
    net_errors_critical: float = Field(100.0, gt=0)
    swap_io_warning: float = Field(1_048_576.0, gt=0, description="swap in+out bytes/s")
    swap_io_critical: float = Field(10_485_760.0, gt=0)
    disk_fill_warning_hours: float = Field(24.0, gt=0)
    disk_fill_critical_hours: float = Field(4.0, gt=0)
    trend_window: float = Field(1800.0, gt=0, description="seconds of history for trends")
    trend_min_points: int = Field(6, ge=3)
    leak_min_bytes_per_hour: float = Field(52_428_800.0, gt=0)
    load_climb_per_hour: float = Field(2.0, gt=0, description="per-core load rise per hour")
    baseline_min_samples: int = Field(120, ge=10)
    baseline_sigma: float = Field(6.0, gt=0, description="robust deviations that are anomalous")
    expected: list[ExpectedPattern] = Field(
        default_factory=lambda: [ExpectedPattern(process="*backup*", hours=(0, 6))]
    )

    @model_validator(mode="after")
    def _pairs(self) -> AnalyzerSettings:
        pairs = [
            ("zombie_warning", "zombie_critical"),
            ("net_errors_warning", "net_errors_critical"),
            ("swap_io_warning", "swap_io_critical"),
        ]
        for low, high in pairs:
            if getattr(self, low) >= getattr(self, high):
                raise ValueError(f"{low} must be below {high}")
        if self.disk_fill_critical_hours >= self.disk_fill_warning_hours:
            raise ValueError("disk_fill_critical_hours must be below disk_fill_warning_hours")
        return self


class WebSettings(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    token: SecretText | None = Field(None, min_length=16, description="secret: shown masked")
    open_reads: bool = Field(True, description="read-only endpoints need no token")
    cors_origins: list[str] = Field(default_factory=list)
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Host names served besides loopback; '*' for any"
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, le=64 * 1_048_576)
    request_timeout: float = Field(
        10.0, ge=0.5, le=300, description="seconds for a connection to send a whole request"
    )
    keep_alive_timeout: int = Field(5, ge=1, le=300, description="idle seconds between requests")
    max_connections: int = Field(256, ge=16, le=10_000)
    max_event_clients: int = Field(64, ge=1, le=1000, description="open /api/events streams")

    @model_validator(mode="after")
    def _streams_leave_room(self) -> WebSettings:
        if self.max_event_clients >= self.max_connections:
            raise ValueError(
                f"max_event_clients ({self.max_event_clients}) must be below max_connections "
                f"({self.max_connections}), or event streams could take every connection"
            )
        return self


class StorageSettings(_Section):
    raw_retention_hours: float = Field(24.0, gt=0)
    aggregate_retention_days: float = Field(30.0, gt=0)
    event_retention_days: float = Field(90.0, gt=0, description="activity, alerts, analyses")
    audit_retention_days: float = Field(365.0, gt=0)
    max_size_mb: float | None = Field(None, gt=0, description="refuse new history past this")


class PluginSettings(_Section):
    directory: Path = Path("plugins")
    plugins_to_load: list[str] = Field(default_factory=list)
    plugin_configs: dict[str, dict[str, Any]] = Field(default_factory=dict)


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


def find_config_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to read: ``explicit``, else ``WATCHKEEPER_CONFIG``, else
    ``./watchkeeper.toml`` when it exists. An explicit path that does not exist is an error."""
    chosen = explicit if explicit is not None else os.environ.get("WATCHKEEPER_CONFIG")
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist or is not a file")
        return path
    default = Path(DEFAULT_CONFIG_NAME)
    return default if default.is_file() else None


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML table in ``path``; every problem, nesting and infinities included, is a
    one-line ``ConfigError`` naming the file."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(
            f"{path}: not valid TOML: nested deeper than {MAX_DEPTH} levels"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML: the file is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    problem = data_problem(data)
    if problem is not None:
        raise ConfigError(f"{path}: {problem}")
    return data


def _env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    """Our environment variables as nested keys, to name them in error messages."""
    layer: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in _ENV_NOT_SETTINGS:
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        node = layer
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[parts[-1]] = value
    return layer


def _check_env_names(environ: Mapping[str, str]) -> None:
    """A misspelt WATCHKEEPER_ variable is a mistake worth stopping for; so is a value
    nested too deeply for anyone to mean it (pydantic-settings decodes it as JSON)."""
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in _ENV_NOT_SETTINGS:
            continue
        if text_depth(value) > MAX_DEPTH:
            raise ConfigError(f"environment variable {name}: nested deeper than {MAX_DEPTH} levels")
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        model: Any = Settings
        for part in parts:
            fields = getattr(model, "model_fields", None)
            if fields is None:
                break  # a dict or list field: its contents are validated by its type
            if part not in fields:
                raise ConfigError(f"environment variable {name}: unknown key {'.'.join(parts)!r}")
            model = fields[part].annotation
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                break


def _has_key(layer: Mapping[str, Any], loc: tuple[Any, ...]) -> bool:
    node: Any = layer
    for part in loc:
        in_table = isinstance(node, Mapping) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if in_table or in_list:
            node = node[part]
        else:
            return False
    return True


def _origin(loc: tuple[Any, ...], layers: list[tuple[str, Mapping[str, Any]]]) -> str:
    # Look for the exact key first, then for its parents (a section-level check).
    for depth in range(len(loc), 0, -1):
        for label, layer in layers:
            if _has_key(layer, loc[:depth]):
                return label
    return "built-in defaults"


def _describe(exc: ValidationError, layers: list[tuple[str, Mapping[str, Any]]]) -> str:
    lines = []
    for error in exc.errors():
        loc = tuple(part for part in error["loc"] if part not in ("function-after",))
        message = error["msg"].removeprefix("Value error, ")
        if not loc:
            loc, message = _key_in_message(message)
        key = ".".join(str(part) for part in loc) or "(top level)"
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "missing":
            message = "is required"
        lines.append(f"{key}: {message} (in {_origin(loc, layers)})")
    return "; ".join(lines)


def _key_in_message(message: str) -> tuple[tuple[Any, ...], str]:
    """A whole-model check names its key first (``"plugins.x: ..."``): use it as the key."""
    head, sep, rest = message.partition(": ")
    parts = head.split(".")
    if not sep or parts[0] not in Settings.model_fields:
        return (), message
    return tuple(int(part) if part.isdigit() else part for part in parts), rest


def _check_layers(layers: list[tuple[str, Mapping[str, Any]]]) -> None:
    for label, layer in layers:
        problem = data_problem(layer)
        if problem is not None:
            raise ConfigError(f"{problem} (in {label})")


def build_settings(
    file_data: Mapping[str, Any],
    *,
    file_label: str,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Validate the layered sources into one ``Settings``; raise ``ConfigError``.

    The environment is read from ``os.environ`` by pydantic-settings itself."""
    flags = flags or {}
    environ = os.environ
    layers: list[tuple[str, Mapping[str, Any]]] = [
        ("command-line flags", flags),
        ("environment", _env_layer(environ)),
    ]
    ollama_host = environ.get("OLLAMA_HOST")
    host_layer = {"ollama": {"url": ollama_host}} if ollama_host else {}
    if host_layer:
        layers.append(("environment OLLAMA_HOST", host_layer))
    layers.append((file_label, file_data))
    _check_env_names(environ)
    _check_layers(layers)
    _CURRENT_LAYERS.clear()
    _CURRENT_LAYERS.update(file=dict(file_data), ollama_host=host_layer)
    try:
        return Settings(**dict(flags))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, layers)) from None
    except RecursionError:  # a last guard: the checks above should have caught it
        raise ConfigError(f"configuration nested deeper than {MAX_DEPTH} levels") from None
    finally:
        _CURRENT_LAYERS.clear()


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    *,
    flags: Mapping[str, Any] | None = None,
) -> tuple[Settings, Path | None]:
    """Load settings from every source; return them with the file that was read."""
    path = find_config_file(config_file)
    data = read_toml(path) if path else {}
    label = str(path) if path else "built-in defaults"
    return build_settings(data, file_label=label, flags=flags), path


def deep_merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` laid over it, recursing into tables."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def dotted_to_nested(changes: Mapping[str, Any]) -> dict[str, Any]:
    """``{"thresholds.cpu_warning": 80}`` → ``{"thresholds": {"cpu_warning": 80}}``."""
    nested: dict[str, Any] = {}
    for dotted, value in changes.items():
        parts = [part for part in str(dotted).split(".") if part]
        if not parts:
            raise ConfigError(f"empty key in {dotted!r}")
        node = nested
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{dotted}: conflicts with another change")
            node = child
        node[parts[-1]] = value
    return nested
