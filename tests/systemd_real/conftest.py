"""One real systemd for the tests in this folder, booted in a private root.

``systemd_root`` boots it once per session (see watchkeeper.testing.systemd_root) and
halts it at the end; the tests define their own units in it, so unit and watchkeeper
names must differ between modules. Before the boot a canary file is written in the
host's temp folder, dated a month back; after the stop it must still be there, with no
process of the root's namespace left and no mount of it in the host's /proc/mounts.

Without root, debootstrap, unshare or the Debian mirror the tests skip with the reason;
with ``WATCHKEEPER_REQUIRE_SYSTEMD=1`` (CI) they fail instead.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from watchkeeper.testing.systemd_root import (
    SystemdRoot,
    SystemdUnavailable,
    cache_dir,
    host_mounts_under,
)

MONTH = 30 * 24 * 3600


def unavailable(reason: str) -> None:
    """Skip with the reason, or fail when CI requires a real systemd."""
    if os.environ.get("WATCHKEEPER_REQUIRE_SYSTEMD") == "1":
        pytest.fail(f"WATCHKEEPER_REQUIRE_SYSTEMD=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def write_canary() -> tuple[Path, str]:
    """A file in the host's temp folder that any /tmp clean-up would delete."""
    text = secrets.token_hex(16)
    fd, name = tempfile.mkstemp(prefix="wk-systemd-canary-")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    old = time.time() - MONTH  # older than any tmpfiles age limit
    os.utime(name, (old, old))
    return Path(name), text


def boot() -> SystemdRoot:
    try:
        return SystemdRoot.boot()
    except SystemdUnavailable as exc:
        unavailable(str(exc))
        raise  # not reached


@pytest.fixture(scope="session")
def systemd_root() -> Iterator[SystemdRoot]:
    canary, text = write_canary()
    try:
        root = boot()
        try:
            yield root
        finally:
            root.stop()
        assert root.leftover_pids() == []
        assert host_mounts_under(cache_dir()) == []
        assert canary.read_text() == text, "the host's /tmp was touched"
    finally:
        canary.unlink(missing_ok=True)
