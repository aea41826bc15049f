"""The ``[bus]`` and ``[fleet]`` sections: one host on the in-memory bus (the default), or
many hosts on NATS JetStream.

::

    [bus]
    backend = "nats"
    servers = ["nats://10.0.0.5:4222"]
    host_id = "web-1"                       # else the machine id
    user = "web-1"
    password = "..."                         # or nkey_seed_file / creds_file

    [fleet]
    role = "central"                         # this host keeps the fleet view

A host id names the host in every subject (``wk.<host>.<topic>``), so it is one NATS
subject token: lower-case letters, digits, ``-`` and ``_``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from watchkeeper.model.secret import SecretText

__all__ = [
    "HOST_ID_PATTERN",
    "BusSettings",
    "FleetSettings",
    "check_host_id",
    "machine_host_id",
]

#: One NATS subject token: no dots, no wildcards, no spaces.
HOST_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_HOST_ID = re.compile(HOST_ID_PATTERN)
_MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))


def check_host_id(value: str) -> str:
    """``value`` if it can name a host in a subject; ``ValueError`` otherwise."""
    if not _HOST_ID.match(value):
        raise ValueError(
            f"host id {value[:80]!r} must be 1 to 64 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return value


def machine_host_id(files: tuple[Path, ...] = _MACHINE_ID_FILES) -> str:
    """This machine's id (``/etc/machine-id``), else its host name made subject-safe."""
    for path in files:
        try:
            text = path.read_text(encoding="ascii", errors="replace").strip().lower()
        except OSError:
            continue
        if _HOST_ID.match(text):
            return text
    import socket

    name = re.sub(r"[^a-z0-9_-]+", "-", socket.gethostname().lower()).strip("-_")
    return (name or "host")[:64]


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False
    )


class BusSettings(_Section):
    """Which bus the agents talk on, and for NATS how to reach and log in to it."""

    backend: Literal["memory", "nats"] = "memory"
    servers: list[str] = Field(
        default_factory=lambda: ["nats://127.0.0.1:4222"],
        min_length=1,
        description="NATS server URLs (nats:// or tls://)",
    )
    host_id: str | None = Field(
        None, description="this host's id in subjects; empty: the machine id"
    )
    subject_prefix: str = Field("wk", pattern=r"^[a-zA-Z0-9_-]{1,32}$")
    user: str | None = Field(None, max_length=256)
    password: SecretText | None = Field(None, description="secret: shown masked")
    token: SecretText | None = Field(None, description="secret: shown masked")
    nkey_seed_file: Path | None = None
    creds_file: Path | None = None
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    connect_timeout: float = Field(2.0, ge=0.1, le=60)
    reconnect_wait: float = Field(1.0, ge=0.1, le=60)
    request_timeout: float = Field(5.0, ge=0.1, le=300)
    outbox_max_mb: int = Field(64, ge=1, le=10_240, description="local outbox bound")
    events_max_age_hours: float = Field(
        168.0, gt=0, le=24 * 366, description="how long JetStream keeps events"
    )
    telemetry_max_age_minutes: float = Field(
        60.0, gt=0, le=24 * 60 * 31, description="how long JetStream keeps samples"
    )
    stream_replicas: int = Field(1, ge=1, le=5)

    @field_validator("host_id")
    @classmethod
    def _host_id(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        return check_host_id(value)

    @field_validator("servers")
    @classmethod
    def _servers(cls, value: list[str]) -> list[str]:
        for url in value:
            if not re.match(r"^(nats|tls|ws|wss)://[^\s/]+(:\d+)?/?$", url):
                raise ValueError(f"server {url[:120]!r} is not a nats://host:port URL")
        return value

    @model_validator(mode="after")
    def _one_login(self) -> BusSettings:
        ways = [
            name
            for name, value in (
                ("user", self.user),
                ("token", self.token),
                ("nkey_seed_file", self.nkey_seed_file),
                ("creds_file", self.creds_file),
            )
            if value is not None
        ]
        if len(ways) > 1:
            raise ValueError(f"give one way to log in to NATS, not {' and '.join(ways)}")
        if (self.password is None) != (self.user is None):
            raise ValueError("bus.user and bus.password go together")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("bus.tls_cert_file and bus.tls_key_file go together")
        return self

    def resolved_host_id(self) -> str:
        """The host id in force: the configured one, else the machine's."""
        return self.host_id or machine_host_id()


class FleetSettings(_Section):
    """What this host does in a fleet (only with ``bus.backend = "nats"``).

    ``role = "central"``: this host keeps the fleet view (every host's state, fleet
    incidents, approvals for any host); its analyzer also analyses the hosts that run no
    analyzer of their own, and its communicator records every host's history and tells
    people of fleet incidents and of the hosts that do not tell people themselves.

    ``notify = "central"`` on a host: its communicator records but tells no one of its
    alerts and incidents; the central host does (its heartbeat says so).
    """

    role: Literal["host", "central"] = "host"
    display_name: str | None = Field(
        None, max_length=120, description="shown in the fleet view; default: the host name"
    )
    labels: dict[str, str] = Field(default_factory=dict, max_length=32)
    heartbeat_interval: float = Field(10.0, ge=0.5, le=3600)
    stale_after: float = Field(30.0, ge=1, le=86_400, description="no heartbeat: stale")
    lost_after: float = Field(120.0, ge=1, le=7 * 86_400, description="no heartbeat: lost")
    incident_min_hosts: int = Field(
        3, ge=2, le=100_000, description="hosts with the same alert that make a fleet incident"
    )
    incident_window: float = Field(
        900.0, ge=10, le=86_400, description="seconds within which those alerts count together"
    )
    notify: Literal["own", "central"] = Field(
        "own",
        description="who tells people of this host's own alerts and incidents: this host "
        "(own), or the central host (central: this host records them and tells no one)",
    )
    fallback_analyzer_after: float = Field(
        30.0,
        ge=0,
        le=86_400,
        description="a host without its own analyzer analyses with its rules after this "
        "long cut off from the server (0: never)",
    )

    @model_validator(mode="after")
    def _order(self) -> FleetSettings:
        if self.lost_after <= self.stale_after:
            raise ValueError("fleet.lost_after must be longer than fleet.stale_after")
        if self.stale_after < self.heartbeat_interval * 2:
            raise ValueError("fleet.stale_after must be at least two heartbeat intervals")
        return self
