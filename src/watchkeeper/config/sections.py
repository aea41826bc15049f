"""The sections of ``watchkeeper.toml`` other than notifications and services, one
frozen model each, with the floors every interval and timeout is held to.

Each section is a field of :class:`~watchkeeper.config.settings.Settings`; read them from
there rather than building one on its own::

    settings.thresholds.cpu_critical  # 90.0
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from watchkeeper.model.secret import SecretText

__all__ = [
    "DEFAULT_OLLAMA_HOST",
    "MIN_BACKOFF",
    "MIN_INTERVAL",
    "MIN_TIMEOUT",
    "AgentSettings",
    "AgentsSettings",
    "AnalyzerSettings",
    "CleanupDir",
    "ExpectedPattern",
    "OllamaSettings",
    "PluginSettings",
    "RemediationSettings",
    "ScriptSpec",
    "StorageSettings",
    "Thresholds",
    "WebSettings",
    "incident_path",
    "resolve_host",
]

#: Floors, in seconds. The shortest interval of any loop (agents' checks, the status file,
#: LLM probes): 10 a second at most, so a typo like 1e-6 cannot spin a core.
MIN_INTERVAL = 0.1
#: The shortest timeout or grace period: anything shorter fails before it could succeed.
MIN_TIMEOUT = 0.1
#: The shortest first step of a restart backoff.
MIN_BACKOFF = 0.01


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
    llm_autonomy: Literal["corroborated", "safe", "none", "any"] = Field(
        "corroborated", description="which LLM proposals may run without a person"
    )
    never_auto: list[str] = Field(
        default_factory=lambda: ["drop_caches"],
        description="actions that always wait for a person, whoever proposes them",
    )
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


DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"


def resolve_host(host: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The base URL the official client will use for ``host``.

    Same rules as the client: the argument, else ``OLLAMA_HOST``, else
    ``http://127.0.0.1:11434``; a bare host gets ``http://`` and port 11434, an explicit
    scheme without a port gets 80/443. ``resolve_host("10.0.0.5")`` ->
    ``"http://10.0.0.5:11434"``.
    """
    env = os.environ if environ is None else environ
    raw = (host or env.get("OLLAMA_HOST") or "").strip()
    if not raw:
        return DEFAULT_OLLAMA_HOST
    scheme, has_scheme, _ = raw.partition("://")
    default_port = 11434
    if has_scheme:
        default_port = 443 if scheme.lower() == "https" else 80
    else:
        raw = f"http://{raw}"
    parts = urlsplit(raw)
    hostname = parts.hostname or "127.0.0.1"
    if ":" in hostname:
        hostname = f"[{hostname}]"
    try:
        port = parts.port or default_port
    except ValueError:
        port = default_port
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{hostname}:{port}{path}"


class OllamaSettings(_Section):
    enabled: bool = True
    url: str = "http://localhost:11434"
    model: str = "mistral"
    timeout: float = Field(
        120.0, ge=MIN_TIMEOUT, description="the most one attempt may take (CPU models: minutes)"
    )
    idle_timeout: float = Field(
        30.0, ge=MIN_TIMEOUT, description="give up when the reply stops for this long"
    )
    retry_attempts: int = Field(3, ge=1, le=10)
    retry_delay: float = Field(2.0, ge=0)
    num_ctx: int = Field(4096, ge=512, description="fitted to the model's own context")
    num_predict: int = Field(384, ge=64, le=8192, description="most tokens in one answer")
    keep_alive: str = Field(
        "30m", pattern=r"^-?[0-9]+[smh]?$", description="how long the model stays loaded"
    )
    explanations: bool = Field(False, description="ask for per-finding explanations too")
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
    baseline_accept_after: float = Field(
        21600.0, ge=0, description="seconds a level shift lasts before it is normal; 0 = never"
    )
    window_seconds: float = Field(
        120.0, gt=0, description="intermittent conditions are judged over this window"
    )
    window_fire_share: float = Field(
        0.5, gt=0, le=1, description="share of the window above the line that fires"
    )
    window_clear_share: float = Field(
        0.2, ge=0, lt=1, description="and the share under which it clears again"
    )
    flap_window: float = Field(600.0, gt=0, description="seconds in which state changes count")
    flap_changes: int = Field(3, ge=2, description="this many changes in the window: flapping")
    stuck_starting_seconds: float = Field(
        120.0, gt=0, description="a service still starting after this long is stuck"
    )
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
        if self.window_clear_share >= self.window_fire_share:
            raise ValueError("window_clear_share must be below window_fire_share")
        if self.disk_fill_critical_hours >= self.disk_fill_warning_hours:
            raise ValueError("disk_fill_critical_hours must be below disk_fill_warning_hours")
        return self


#: The longest ``web.public_url`` accepted: it is repeated in every notice's link.
_PUBLIC_URL_MAX = 512
#: Binds that listen everywhere: no one browses to them, so links name the machine.
_WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})


def incident_path(incident_id: str) -> str:
    """The incident page's path on the dashboard: ``/incidents/<id>``."""
    return f"/incidents/{quote(incident_id, safe='')}"


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
    public_url: str | None = Field(
        None,
        max_length=_PUBLIC_URL_MAX,
        description="the dashboard's address as people reach it (links in notifications);"
        " default: derived from host and port",
    )

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, url: str | None) -> str | None:
        """An http(s) address with a host and nothing after its path: links are built on it."""
        if url is None:
            return None
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"public_url {url!r} must be an http:// or https:// address")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("public_url takes no query, fragment or user name")
        return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")

    def dashboard_url(self) -> str | None:
        """Where people reach the dashboard: ``public_url`` when set, else the address the
        web binds to (a wildcard bind reads as this machine's name). None when there is no
        dashboard or its port is chosen at start (port 0)."""
        if self.public_url:
            return self.public_url
        if not self.enabled or self.port == 0:
            return None
        host = self.host
        if host in _WILDCARD_BINDS:
            host = socket.gethostname()
        elif ":" in host:
            host = f"[{host}]"  # an IPv6 literal
        return f"http://{host}:{self.port}"

    def incident_url(self, incident_id: str) -> str | None:
        """The incident page of ``incident_id`` at :meth:`dashboard_url`, or None."""
        base = self.dashboard_url()
        return None if base is None else f"{base}{incident_path(incident_id)}"

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
