"""Building the managers the config asks for, and the registry's duplicate rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from watchkeeper.config.services import ServiceSpec
from watchkeeper.services import (
    DuplicateManagerError,
    ProcessServiceManager,
    ServiceManager,
    ServiceManagerRegistry,
    SystemdServiceManager,
    WindowsServiceManager,
    build_managers,
)


async def test_build_managers_picks_backends_by_spec(tmp_path: Path) -> None:
    specs = [
        ServiceSpec(name="web", argv=["true"]),
        ServiceSpec(name="db", manager="systemd", unit="postgresql"),
        ServiceSpec(name="spooler", manager="windows", unit="Spooler"),
        ServiceSpec(name="worker", argv=["true"]),
    ]
    managers = build_managers(specs, None, log_dir=tmp_path, systemctl=tmp_path / "systemctl")
    try:
        assert set(managers) == {"process", "systemd", "windows"}
        assert isinstance(managers["process"], ProcessServiceManager)
        assert isinstance(managers["systemd"], SystemdServiceManager)
        assert isinstance(managers["windows"], WindowsServiceManager)
        for name, manager in managers.items():
            assert isinstance(manager, ServiceManager) and manager.name == name
        listed = [s.name for s in await managers["process"].list()]
        assert listed == ["web", "worker"]  # config order, only its own services
    finally:
        for manager in managers.values():
            await manager.aclose()


def test_build_managers_builds_only_what_is_used() -> None:
    assert set(build_managers([ServiceSpec(name="web", argv=["true"])])) == {"process"}
    assert build_managers([]) == {}


def test_duplicate_service_names_are_refused() -> None:
    specs = [
        ServiceSpec(name="web", argv=["true"]),
        ServiceSpec(name="web", manager="systemd"),
    ]
    with pytest.raises(ValueError, match="configured twice"):
        build_managers(specs)


def test_invalid_unit_is_refused_at_build_time() -> None:
    with pytest.raises(ValueError, match="invalid systemd unit name"):
        build_managers([ServiceSpec(name="web", manager="systemd", unit="web; reboot")])


def test_registry_refuses_a_second_manager_with_the_same_name() -> None:
    registry = ServiceManagerRegistry()
    first = registry.register(ProcessServiceManager([]))
    with pytest.raises(DuplicateManagerError):
        registry.register(ProcessServiceManager([]))
    assert registry.get("process") is first
    assert "process" in registry and len(registry) == 1 and list(registry) == ["process"]
    with pytest.raises(KeyError):
        registry.get("systemd")


def test_manager_refuses_specs_of_another_backend() -> None:
    with pytest.raises(ValueError, match="for manager 'systemd'"):
        ProcessServiceManager([ServiceSpec(name="db", manager="systemd")])
