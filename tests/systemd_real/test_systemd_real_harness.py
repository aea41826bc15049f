"""The harness's own edges: where it finds the mirror and its cache, and how it says no.

A machine that cannot boot the private systemd gets one clear reason: a skip, or a
failure when ``WATCHKEEPER_REQUIRE_SYSTEMD=1`` (CI), never a traceback from deep inside.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from watchkeeper.testing.systemd_root import (
    SystemdUnavailable,
    cache_dir,
    debian_mirror,
    host_mounts_under,
)

PROJECT = Path(__file__).resolve().parents[2]
HEAL_TEST = (
    "tests/systemd_real/test_systemd_real_heal.py"
    "::test_sigkilled_unit_is_restarted_through_the_gate"
)
# The first thing found missing: root, then the tools.
MISSING = (
    "debootstrap is not installed (apt-get install debootstrap)"
    if os.geteuid() == 0
    else "booting a private systemd needs root on Linux"
)


def test_the_mirror_is_read_from_apts_own_sources(tmp_path: Path) -> None:
    deb822 = tmp_path / "debian.sources"
    deb822.write_text(
        "Types: deb\nURIs: http://security.example.org/debian-security\n"
        "Suites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example.org/debian\nSuites: bookworm\n"
    )
    assert debian_mirror([deb822]) == "http://mirror.example.org/debian"
    one_line = tmp_path / "sources.list"
    one_line.write_text(
        "# a comment\ndeb http://security.example.org/debian-security bookworm-security main\n"
        "deb [signed-by=/usr/share/keyrings/k.gpg] http://ftp.example.net/debian bookworm main\n"
    )
    assert debian_mirror([tmp_path / "missing", one_line]) == "http://ftp.example.net/debian"
    with pytest.raises(SystemdUnavailable, match="no Debian mirror found in"):
        debian_mirror([tmp_path / "missing"])


def test_the_cache_folder_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHKEEPER_SYSTEMD_ROOT", str(tmp_path / "roots"))
    assert cache_dir() == (tmp_path / "roots").resolve()
    monkeypatch.setenv("WATCHKEEPER_SYSTEMD_ROOT", str(tmp_path / "my roots"))
    with pytest.raises(SystemdUnavailable, match="must not contain spaces"):
        cache_dir()


def test_host_mounts_are_read_from_proc() -> None:
    assert "/proc" in host_mounts_under(Path("/proc"))
    assert host_mounts_under(Path("/proc/no-such-folder")) == []


def run_heal_test_without_tools(tmp_path: Path, require: bool) -> subprocess.CompletedProcess[str]:
    """The heal test in a fresh pytest whose PATH holds no debootstrap (nor anything)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env["PATH"] = str(tmp_path)
    if require:
        env["WATCHKEEPER_REQUIRE_SYSTEMD"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rsf", "-p", "no:cacheprovider", HEAL_TEST],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_missing_tool_skips_with_its_name(tmp_path: Path) -> None:
    done = run_heal_test_without_tools(tmp_path, require=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 skipped" in done.stdout
    assert MISSING in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_a_missing_tool_fails_when_ci_requires_systemd(tmp_path: Path) -> None:
    done = run_heal_test_without_tools(tmp_path, require=True)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 error" in done.stdout or "1 failed" in done.stdout, done.stdout
    assert f"WATCHKEEPER_REQUIRE_SYSTEMD=1 but {MISSING}" in done.stdout
