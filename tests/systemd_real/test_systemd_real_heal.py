"""watchkeeper against a real systemd: a killed unit healed, a broken one given up on.

One ``watchkeeper run`` runs inside the private root as a systemd unit itself, watching
units these tests define (``manager = "systemd"``). What is asserted is what a user of
that host sees: ``systemctl show`` of the units, watchkeeper's status file, its machine
log and its web API (on the root's own loopback).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from watchkeeper.testing.systemd_root import SystemdRoot, WatchkeeperInRoot, wait_for

HTTP = "/usr/bin/python3 -m http.server {port} --bind 127.0.0.1 --directory /srv"
UNITS = {
    "wk-demo.service": f"[Service]\nExecStart={HTTP.format(port=8081)}\nRestart=no\n",
    "wk-probed.service": f"[Service]\nExecStart={HTTP.format(port=8082)}\nRestart=no\n",
    "wk-broken.service": "[Service]\nExecStart=/bin/false\nRestart=no\n",
}

CONFIG = """
personality = "plain"
status_interval = 0.2

[agents]
check_interval = 1.0

[remediation]
mode = "auto"
healing_cooldown = 1
crash_loop_backoff_initial = 0.2
crash_loop_backoff_max = 1.0
crash_loop_max_failures = 3
crash_loop_window = 60
verify_timeout = 10

[ollama]
enabled = false

[[services]]
name = "demo"
manager = "systemd"
unit = "wk-demo.service"
critical = true
min_uptime = 0.5

[[services]]
name = "probed"
manager = "systemd"
unit = "wk-probed"
probe = { kind = "http", url = "http://127.0.0.1:8082/", expect_status = 200 }

[[services]]
name = "broken"
manager = "systemd"
unit = "wk-broken.service"
min_uptime = 1.0
"""


@pytest.fixture(scope="module")
def wk(systemd_root: SystemdRoot) -> Iterator[WatchkeeperInRoot]:
    for name, text in UNITS.items():
        systemd_root.write_unit(name, text)
    systemd_root.run(["mkdir", "-p", "/srv"])
    systemd_root.systemctl("start", "wk-demo.service", "wk-probed.service")
    handle = systemd_root.start_watchkeeper(CONFIG, name="heal", port=8000)
    try:
        wait_for(lambda: len(services(handle)) == 3, 60, "watchkeeper to list the 3 units")
        yield handle
    finally:
        handle.stop()
        systemd_root.systemctl("stop", *UNITS, check=False)


def services(wk: WatchkeeperInRoot) -> dict[str, dict[str, Any]]:
    listed = wk.status().get("details", {}).get("sensor", {}).get("services", [])
    return {s["name"]: s for s in listed}


def records(wk: WatchkeeperInRoot, action: str, target: str) -> list[dict[str, Any]]:
    """The remediator's recent audit records of ``action`` on ``target``."""
    recent = wk.status().get("details", {}).get("remediator", {}).get("recent", [])
    return [r for r in recent if r["action"] == action and r["target"] == target]


def answers(root: SystemdRoot, port: int) -> bool:
    code = (
        "import urllib.request\n"
        f"urllib.request.urlopen('http://127.0.0.1:{port}/', timeout=2).read()\n"
    )
    return root.python(code, check=False).returncode == 0


def main_pid(root: SystemdRoot, unit: str) -> int:
    props = root.show(unit, "MainPID", "ActiveState")
    return int(props["MainPID"]) if props["ActiveState"] == "active" else 0


def test_sigkilled_unit_is_restarted_through_the_gate(
    systemd_root: SystemdRoot, wk: WatchkeeperInRoot
) -> None:
    root = systemd_root
    old = wait_for(lambda: main_pid(root, "wk-demo.service"), 20, "wk-demo to run")
    assert answers(root, 8081)
    root.systemctl("kill", "--signal=KILL", "wk-demo.service")
    wait_for(lambda: main_pid(root, "wk-demo.service") != old, 10, "systemd to see the kill")
    new = wait_for(
        lambda: (p := main_pid(root, "wk-demo.service")) and p != old and p,
        30,
        "wk-demo to be active again with a new MainPID",
    )
    assert new != old
    wait_for(lambda: answers(root, 8081), 10, "wk-demo to answer again")
    # systemd did not restart it (Restart=no): watchkeeper did, through its policy gate.
    assert root.show("wk-demo.service", "NRestarts")["NRestarts"] == "0"
    done = wait_for(
        lambda: [r for r in records(wk, "restart_service", "demo") if r["outcome"] == "succeeded"],
        20,
        "a verified restart of demo in the audit",
    )
    assert done[0]["proposer"] == "rule"
    logged = [r["message"] for r in wk.records()]
    assert any(m.startswith("running restart_service on demo") for m in logged)
    assert wk.active()


def test_a_healed_unit_with_a_probe_is_verified_healthy(
    systemd_root: SystemdRoot, wk: WatchkeeperInRoot
) -> None:
    root = systemd_root
    old = wait_for(lambda: main_pid(root, "wk-probed.service"), 20, "wk-probed to run")
    root.systemctl("kill", "--signal=KILL", "wk-probed.service")
    wait_for(
        lambda: (p := main_pid(root, "wk-probed.service")) and p != old,
        30,
        "wk-probed to be active again",
    )
    wait_for(lambda: answers(root, 8082), 10, "wk-probed to answer again")
    outcomes = wait_for(
        lambda: [r["outcome"] for r in records(wk, "restart_service", "probed")],
        20,
        "the restart of probed in the audit",
    )
    assert outcomes[0] == "succeeded", outcomes
    assert services(wk)["probed"]["healthy"] is True


def test_a_unit_that_fails_at_once_is_given_up_on(
    systemd_root: SystemdRoot, wk: WatchkeeperInRoot
) -> None:
    systemd_root.systemctl("start", "wk-broken.service", check=False)
    given_up = wait_for(
        lambda: (
            "broken" in wk.status().get("details", {}).get("remediator", {}).get("given_up", [])
        ),
        60,
        "the give-up on wk-broken",
    )
    assert given_up
    tries = records(wk, "restart_service", "broken")
    assert len(tries) >= 2, tries  # retried before giving up
    assert all(r["outcome"] != "succeeded" for r in tries)
    gave_up = [r for r in wk.records() if "gave up restarting broken" in r["message"]]
    assert gave_up and gave_up[0]["level"] == "ERROR"
    assert systemd_root.show("wk-broken.service", "ActiveState")["ActiveState"] == "failed"
