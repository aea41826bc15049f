"""A boot of the private systemd leaves the host as it found it.

systemd empties ``/tmp`` when it boots and cleans it by age later: both happen here, and
a month-old canary in the host's temp folder must survive them. A unit that ignores
SIGTERM and would hold the halt up forever must not keep processes alive either: the
harness ends PID 1 with SIGKILL, and the namespace, its mounts and its cgroup go with it.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from pathlib import Path

import pytest

from watchkeeper.testing.systemd_root import (
    SystemdRoot,
    SystemdUnavailable,
    cache_dir,
    host_mounts_under,
    wait_for,
)

MONTH = 30 * 24 * 3600


def test_a_boot_and_its_stop_leave_nothing_behind() -> None:
    fd, name = tempfile.mkstemp(prefix="wk-systemd-canary-")
    canary, text = Path(name), secrets.token_hex(16)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.utime(canary, (time.time() - MONTH, time.time() - MONTH))
    marker = f"/tmp/wk-inside-{secrets.token_hex(8)}"
    try:
        try:
            root = SystemdRoot.boot()
        except SystemdUnavailable as exc:
            if os.environ.get("WATCHKEEPER_REQUIRE_SYSTEMD") == "1":
                pytest.fail(f"WATCHKEEPER_REQUIRE_SYSTEMD=1 but {exc}", pytrace=False)
            pytest.skip(str(exc))
        try:
            assert root.run(["stat", "-f", "-c", "%T", "/tmp"]).stdout.strip() == "tmpfs"
            root.run(["touch", marker])
            assert not Path(marker).exists(), "the root's /tmp is the host's"
            # The age-based clean-up of /tmp, as the daily timer runs it.
            root.systemctl("start", "systemd-tmpfiles-clean.service")
            assert canary.read_text() == text
            root.write_unit(
                "wk-stubborn.service",
                "[Service]\nExecStart=/bin/sh -c 'trap \"\" TERM; while :; do sleep 1; done'\n"
                "TimeoutStopSec=infinity\nKillMode=mixed\n",
            )
            root.systemctl("start", "wk-stubborn.service")
            wait_for(
                lambda: root.show("wk-stubborn.service", "ActiveState")["ActiveState"] == "active",
                10,
                "the stubborn unit to run",
            )
            assert len(root.leftover_pids()) >= 4  # systemd, journald, dbus, the unit, ...
            assert host_mounts_under(cache_dir()) == []  # its mounts are its own
        finally:
            started = time.monotonic()
            root.stop(timeout=5)
            took = time.monotonic() - started
        assert root.leftover_pids() == []
        assert took < 15, f"stopping took {took:.1f} s"
        assert host_mounts_under(cache_dir()) == []
        assert not root.cgroup.exists()
        assert not root.instance.exists()
        assert canary.read_text() == text, "the host's /tmp was touched"
        assert not Path(marker).exists()
    finally:
        canary.unlink(missing_ok=True)
