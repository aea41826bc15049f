"""Service config models: what the ``[[services]]`` tables may and may not say."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from pydantic import ValidationError

from watchkeeper.config.services import (
    CommandProbe,
    HttpProbe,
    ServiceSpec,
    TcpProbe,
    validate_service_name,
)

CONFIG = """
[[services]]
name = "web"
argv = ["python", "-m", "http.server", "8080"]
critical = true
env = { PYTHONUNBUFFERED = "1" }
probe = { kind = "http", url = "http://127.0.0.1:8080/", expect_status = 204 }

[[services]]
name = "db"
manager = "systemd"
unit = "postgresql@16-main"
probe = { kind = "tcp", port = 5432 }

[[services]]
name = "legacy"
pidfile = "/run/legacy.pid"
probe = { kind = "command", argv = ["legacy-check", "--quick"], timeout = 2 }
"""


def test_specs_from_a_toml_config() -> None:
    web, db, legacy = (ServiceSpec.model_validate(t) for t in tomllib.loads(CONFIG)["services"])
    assert web.manager == "process" and web.critical and web.env == {"PYTHONUNBUFFERED": "1"}
    assert isinstance(web.probe, HttpProbe) and web.probe.expect_status == 204
    assert web.probe.timeout == 2.0
    assert (web.start_timeout, web.stop_timeout, web.min_uptime) == (10, 10, 1.0)
    assert isinstance(db.probe, TcpProbe) and db.probe.host == "127.0.0.1"
    assert db.target == "postgresql@16-main" and web.target == "web"
    assert isinstance(legacy.probe, CommandProbe) and legacy.argv is None
    assert str(legacy.pidfile) == "/run/legacy.pid"


@pytest.mark.parametrize("name", ["web", "nginx.service", "getty@tty1", "a", "A_b-c.d", "x" * 64])
def test_good_names(name: str) -> None:
    assert validate_service_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "-rf", "a b", "a/b", "x" * 65, "..", "naïve", "web;id", "wеb", "web\n"]
)
def test_bad_names(name: str) -> None:
    with pytest.raises(ValueError):
        validate_service_name(name)
    with pytest.raises(ValidationError):
        ServiceSpec(name=name, argv=["true"])


@pytest.mark.parametrize(
    "fields",
    [
        {},  # a process service needs argv or a pidfile
        {"argv": []},
        {"argv": [""]},
        {"argv": ["a\x00b"]},
        {"argv": ["true"], "unit": "x"},  # unit is for systemd/windows
        {"manager": "systemd", "argv": ["true"]},  # argv is for process services
        {"manager": "systemd", "env": {"A": "1"}},
        {"manager": "launchd"},
        {"argv": ["true"], "env": {"BAD-NAME": "1"}},
        {"argv": ["true"], "stop_timeout": 0},
        {"argv": ["true"], "min_uptime": -1},
        {"argv": ["true"], "restart": "always"},  # unknown keys are errors
        {"argv": ["true"], "probe": {"kind": "smtp", "port": 25}},
        {"argv": ["true"], "probe": {"port": 25}},  # the probe kind must be said
        {"argv": ["true"], "probe": {"kind": "tcp", "port": 70000}},
        {"argv": ["true"], "probe": {"kind": "http", "url": "file:///etc/passwd"}},
        {"argv": ["true"], "probe": {"kind": "http", "url": "http://x/\nInjected: 1"}},
        {"argv": ["true"], "probe": {"kind": "command", "argv": []}},
        {"argv": ["true"], "probe": {"kind": "command", "argv": ["x"], "shell": True}},
    ],
)
def test_invalid_specs_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ServiceSpec.model_validate({"name": "svc", **fields})


def test_specs_are_frozen() -> None:
    spec = ServiceSpec(name="web", argv=["true"])
    with pytest.raises(ValidationError):
        spec.name = "other"  # type: ignore[misc]
