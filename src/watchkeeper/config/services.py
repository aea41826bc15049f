"""What a ``[[services]]`` table in the config file may say.

Each table becomes one frozen :class:`ServiceSpec`; unknown keys are errors, so a typo in
the config file is reported instead of silently ignored::

    [[services]]
    name = "web"
    argv = ["python", "-m", "http.server", "8080"]
    critical = true
    probe = { kind = "http", url = "http://127.0.0.1:8080/", expect_status = 200 }

Which fields apply depends on ``manager``: ``argv``/``cwd``/``env``/``pidfile`` describe a
program watchkeeper runs itself (``"process"``); ``unit`` names a systemd unit or a Windows
service when it differs from ``name``. Backends validate ``unit`` further (strict regex)
before it is ever passed to a program.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "CommandProbe",
    "HttpProbe",
    "ManagerKind",
    "ProbeSpec",
    "ServiceSpec",
    "TcpProbe",
    "validate_service_name",
]

ManagerKind = Literal["process", "systemd", "windows"]

# ASCII only, spelled out: ``\w`` and ``\d`` would also accept look-alike Unicode letters.
_SERVICE_NAME_RE = re.compile(r"[A-Za-z0-9_.@][A-Za-z0-9_.@-]{0,63}")
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_MAX_TIMEOUT = 3600.0


def validate_service_name(name: str) -> str:
    """Return ``name`` if it is a valid service name, else raise ``ValueError``.

    Names are 1-64 characters of ``[A-Za-z0-9_.@-]`` with no leading ``-`` (so a name can
    never be read as a command-line option) and not made only of dots (so it can never be
    read as a directory). They appear in log file names, events and the web UI.
    """
    if not _SERVICE_NAME_RE.fullmatch(name):
        raise ValueError(
            f"invalid service name {name!r}: use 1-64 characters of A-Z a-z 0-9 _ . @ - "
            "and do not start with '-'"
        )
    if set(name) == {"."}:
        raise ValueError(f"invalid service name {name!r}: a name cannot be only dots")
    return name


def _check_argv(argv: list[str], what: str) -> list[str]:
    if not argv or not argv[0]:
        raise ValueError(f"{what} must name a program as its first element")
    if any("\x00" in arg for arg in argv):
        raise ValueError(f"{what} must not contain NUL characters")
    return argv


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TcpProbe(_Frozen):
    """Healthy when a TCP connection to ``host:port`` opens within ``timeout`` seconds."""

    kind: Literal["tcp"] = "tcp"
    host: str = Field(default="127.0.0.1", min_length=1, max_length=253)
    port: int = Field(ge=1, le=65535)
    timeout: float = Field(default=1.0, gt=0, le=_MAX_TIMEOUT)


class HttpProbe(_Frozen):
    """Healthy when ``GET url`` answers ``expect_status`` within ``timeout`` seconds.

    Redirects are not followed: a 301 is what the service said, so it is what is compared.
    """

    kind: Literal["http"] = "http"
    url: str = Field(min_length=1, max_length=2048)
    expect_status: int = Field(default=200, ge=100, le=599)
    timeout: float = Field(default=2.0, gt=0, le=_MAX_TIMEOUT)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"probe url must be http:// or https:// with a host, got {url!r}")
        if any(ch.isspace() or ord(ch) < 32 for ch in url):
            raise ValueError("probe url must not contain whitespace or control characters")
        return url


class CommandProbe(_Frozen):
    """Healthy when ``argv`` exits with status 0 within ``timeout`` seconds.

    ``argv`` is run directly, never through a shell; on timeout the probe's whole process
    group is killed.
    """

    kind: Literal["command"] = "command"
    argv: list[str] = Field(min_length=1, max_length=256)
    timeout: float = Field(default=5.0, gt=0, le=_MAX_TIMEOUT)

    @field_validator("argv")
    @classmethod
    def _argv(cls, argv: list[str]) -> list[str]:
        return _check_argv(argv, "probe argv")


ProbeSpec = Annotated[TcpProbe | HttpProbe | CommandProbe, Field(discriminator="kind")]
"""One of the probe kinds, chosen by its ``kind`` key (``"tcp"``, ``"http"``, ``"command"``)."""


class ServiceSpec(_Frozen):
    """One service watchkeeper watches, as the config file describes it.

    ``min_uptime``: a service that dies sooner than this after being started counts as a
    failed start (the remediator uses it to spot crash loops). ``critical`` marks services
    whose loss the analyzer treats as an incident rather than a warning.

    >>> ServiceSpec(name="web", argv=["python", "-m", "http.server"]).manager
    'process'
    """

    name: str
    manager: ManagerKind = "process"
    critical: bool = False
    argv: list[str] | None = Field(default=None, max_length=4096)
    cwd: Path | None = None
    env: dict[str, str] = Field(default_factory=dict)
    pidfile: Path | None = None
    probe: ProbeSpec | None = None
    probe_every: float = Field(
        default=30.0,
        ge=1.0,
        le=_MAX_TIMEOUT,
        description="while the service runs, its probe is run again this often (seconds)",
    )
    start_timeout: float = Field(default=10.0, gt=0, le=_MAX_TIMEOUT)
    stop_timeout: float = Field(default=10.0, gt=0, le=_MAX_TIMEOUT)
    min_uptime: float = Field(default=1.0, ge=0, le=_MAX_TIMEOUT)
    unit: str | None = Field(default=None, min_length=1, max_length=256)
    watch: Literal["auto", "dbus", "poll"] = Field(
        default="auto",
        description="systemd only: how changes are seen; auto uses D-Bus events when the "
        "system bus answers and polls otherwise",
    )
    depends_on: list[str] = Field(
        default_factory=list, max_length=64, description="services this one needs to work"
    )
    paths: list[Path] = Field(
        default_factory=list,
        max_length=64,
        description="where it keeps data or logs: a full filesystem there explains its failure",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        return validate_service_name(name)

    @field_validator("argv")
    @classmethod
    def _argv(cls, argv: list[str] | None) -> list[str] | None:
        return None if argv is None else _check_argv(argv, "argv")

    @field_validator("env")
    @classmethod
    def _env(cls, env: dict[str, str]) -> dict[str, str]:
        for key, value in env.items():
            if not _ENV_KEY_RE.fullmatch(key):
                raise ValueError(f"invalid environment variable name {key!r}")
            if "\x00" in value:
                raise ValueError(f"environment variable {key} must not contain NUL")
        return env

    @field_validator("depends_on")
    @classmethod
    def _depends_on(cls, names: list[str]) -> list[str]:
        return [validate_service_name(name) for name in names]

    @field_validator("paths")
    @classmethod
    def _paths(cls, paths: list[Path]) -> list[Path]:
        for path in paths:
            if not path.is_absolute():
                raise ValueError(f"paths: {str(path)!r} must be absolute")
        return paths

    @field_validator("unit")
    @classmethod
    def _unit(cls, unit: str | None) -> str | None:
        if unit is not None and any(ord(ch) < 32 or ord(ch) == 127 for ch in unit):
            raise ValueError("unit must not contain control characters")
        return unit

    @model_validator(mode="after")
    def _fields_fit_manager(self) -> ServiceSpec:
        if self.manager == "process":
            if self.argv is None and self.pidfile is None:
                raise ValueError(
                    f"service {self.name}: a process service needs argv (to start it) "
                    "or pidfile (to watch a process started elsewhere)"
                )
            if self.unit is not None:
                raise ValueError(f"service {self.name}: unit applies only to systemd/windows")
        else:
            own = [f for f in ("argv", "cwd", "pidfile") if getattr(self, f) is not None]
            if self.env:
                own.append("env")
            if own:
                raise ValueError(
                    f"service {self.name}: {', '.join(own)} apply only to manager='process'; "
                    f"a {self.manager} service is started by its own service manager"
                )
        if self.watch != "auto" and self.manager != "systemd":
            raise ValueError(f"service {self.name}: watch applies only to manager='systemd'")
        return self

    @property
    def target(self) -> str:
        """The name the backend knows the service by: ``unit`` if given, else ``name``."""
        return self.unit if self.unit is not None else self.name
