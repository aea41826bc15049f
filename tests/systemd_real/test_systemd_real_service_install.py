"""``watchkeeper service install`` into a real systemd, and the sandboxed daemon at work.

Inside the private root (watchkeeper.testing.systemd_root, its wheel in /opt/wk) the
command is run as an operator runs it: refused for a non-root user and for a unit it did
not write; then it installs, enables and starts ``watchkeeper.service``. What is asserted
is what the operator sees: ``systemctl``, ``systemd-analyze verify`` and ``security``,
the daemon's API and status file, systemd starting it again after a SIGKILL, and the
sandboxed daemon still doing its job (restarting a killed unit, deleting an old file in a
cleanup directory, renicing a process). ``uninstall`` leaves no unit and keeps the data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from watchkeeper.testing.systemd_root import SystemdRoot, wait_for

WK = "/opt/wk/bin/watchkeeper"
UNIT = "watchkeeper.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT}"
CONFIG_PATH = "/etc/watchkeeper/watchkeeper.toml"
STATE = "/var/lib/watchkeeper"
PORT = 8765
CLEANUP = "/srv/wk-service-cleanup"
DEMO = "wk-svc-demo.service"
# The exposure ``systemd-analyze security`` gives the unit must stay below this (0-10;
# "OK" is below 5, "MEDIUM" below 7). It runs as root with the capabilities its actions need.
MAX_EXPOSURE = 7.0
CONFIG = f"""
data_dir = "{STATE}"
personality = "plain"
status_interval = 0.5

[agents]
check_interval = 1.0

[web]
port = {PORT}

[ollama]
enabled = false

[remediation]
mode = "auto"
healing_cooldown = 1
verify_timeout = 10

[[remediation.cleanup_dirs]]
path = "{CLEANUP}"
older_than_days = 7

[[services]]
name = "svcdemo"
manager = "systemd"
unit = "{DEMO}"
critical = true
min_uptime = 0.5
"""


def wk(root: SystemdRoot, *args: str, user: str | None = None) -> Any:
    argv = [WK, *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    return root.run(argv, check=False, timeout=120)


def api(root: SystemdRoot, path: str) -> Any:
    code = (
        "import json, sys, urllib.request\n"
        "try:\n"
        f"    r = urllib.request.urlopen('http://127.0.0.1:{PORT}' + sys.argv[1], timeout=10)\n"
        "    sys.stdout.write(r.read().decode())\n"
        "except Exception as exc:\n"
        "    sys.exit(f'no answer: {exc}')\n"
    )
    done = root.run(["/usr/bin/python3", "-c", code, path], check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


def main_pid(root: SystemdRoot) -> int:
    return int(root.show(UNIT, "MainPID")["MainPID"])


@pytest.fixture(scope="module")
def installed(systemd_root: SystemdRoot) -> Iterator[SystemdRoot]:
    root = systemd_root
    root.write_unit(DEMO, "[Service]\nExecStart=/bin/sleep infinity\nRestart=no\n")
    root.systemctl("start", DEMO)
    root.write_file(CONFIG_PATH, CONFIG)
    root.run(["mkdir", "-p", CLEANUP])
    try:
        yield root
    finally:
        wk(root, "service", "uninstall", "--purge")
        root.systemctl("stop", DEMO, check=False)
        root.run(["rm", "-rf", "/etc/watchkeeper", CLEANUP, STATE], check=False)


def test_install_is_refused_to_a_user_who_is_not_root(installed: SystemdRoot) -> None:
    done = wk(installed, "service", "install", "--config", CONFIG_PATH, user="65534")
    assert done.returncode == 2
    assert done.stderr == "watchkeeper: installing a system service needs root: run it with sudo\n"
    assert not installed.path(UNIT_PATH).exists()


def test_a_unit_it_did_not_write_is_left_alone_unless_forced(installed: SystemdRoot) -> None:
    foreign = "[Service]\nExecStart=/bin/sleep infinity\n"
    installed.write_file(UNIT_PATH, foreign)
    try:
        done = wk(installed, "service", "install", "--config", CONFIG_PATH)
        assert done.returncode == 2
        assert done.stderr == (
            f"watchkeeper: {UNIT_PATH} exists and was not written by watchkeeper; "
            "--force replaces it\n"
        )
        assert installed.path(UNIT_PATH).read_text() == foreign
        status = wk(installed, "service", "status")
        assert f"installed: yes ({UNIT_PATH}, NOT written by watchkeeper)" in status.stdout
        refused = wk(installed, "service", "uninstall")
        assert refused.returncode == 2 and "--force removes it" in refused.stderr
    finally:
        installed.path(UNIT_PATH).unlink()
        installed.systemctl("daemon-reload")


def test_install_enables_and_starts_a_verified_unit(installed: SystemdRoot) -> None:
    done = wk(installed, "service", "install", "--config", CONFIG_PATH)
    assert done.returncode == 0, done.stderr + installed.run(["journalctl", "-u", UNIT]).stdout
    assert f"installed {UNIT}: enabled and active" in done.stdout
    assert installed.systemctl("is-enabled", UNIT).stdout.strip() == "enabled"
    assert installed.systemctl("is-active", UNIT).stdout.strip() == "active"
    # verify also loads what the unit names (dbus.service, network.target); only what it
    # says of this unit counts here.
    verify = installed.run(["systemd-analyze", "verify", UNIT_PATH], check=False)
    said = verify.stdout + verify.stderr
    assert [line for line in said.splitlines() if "watchkeeper" in line] == [], said
    print(f"\nsystemd-analyze verify {UNIT_PATH}: exit {verify.returncode} {said.strip()!r}")
    props = installed.show(UNIT, "Restart", "NoNewPrivileges", "ProtectSystem", "PrivateTmp")
    assert props == {"Restart": "on-failure", "NoNewPrivileges": "yes",
                     "ProtectSystem": "strict", "PrivateTmp": "yes"}  # fmt: skip
    health = wait_for(lambda: api(installed, "/api/health"), 60, "the service's API")
    assert health["ready"] is True
    system = wait_for(lambda: api(installed, "/api/system"), 30, "/api/system")
    assert system["state"] == "running"
    status = installed.path(f"{STATE}/system_status.json")
    assert wait_for(status.is_file, 30, "its status file in the state directory")
    lines = wk(installed, "service", "status").stdout.splitlines()
    assert lines == [f"installed: yes ({UNIT_PATH}, written by watchkeeper)",
                     "enabled: enabled", "active: active"]  # fmt: skip


def test_systemd_analyze_security_rates_the_sandbox(installed: SystemdRoot) -> None:
    done = installed.run(["systemd-analyze", "security", "--no-pager", UNIT], check=False)
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", done.stdout)
    assert match, done.stdout[-2000:] + done.stderr
    exposure = float(match.group(1))
    print(f"\nsystemd-analyze security {UNIT}: {exposure} {match.group(2)}")
    assert exposure < MAX_EXPOSURE


def test_a_killed_daemon_is_started_again_by_systemd(installed: SystemdRoot) -> None:
    first = main_pid(installed)
    assert first > 0
    installed.run(["kill", "-KILL", str(first)])

    def restarted() -> bool:
        pid = main_pid(installed)
        active = installed.systemctl("is-active", UNIT, check=False).stdout.strip()
        return pid not in (0, first) and active == "active"

    wait_for(restarted, 30, "systemd to start watchkeeper again")  # RestartSec=5
    assert int(installed.show(UNIT, "NRestarts")["NRestarts"]) >= 1
    assert wait_for(lambda: api(installed, "/api/health"), 60, "the API after the restart")


def test_the_sandboxed_daemon_still_restarts_units_cleans_and_renices(
    installed: SystemdRoot,
) -> None:
    wait_for(lambda: api(installed, "/api/health"), 60, "the service's API")
    # A file a month old in the cleanup directory, deleted by a person's request.
    old = f"{CLEANUP}/old.log"
    installed.run(["sh", "-c", f"head -c 4096 /dev/zero > {old} && touch -d '30 days ago' {old}"])
    done = wk(
        installed, "command", "run_action", "--target", "remediator", "--config", CONFIG_PATH,
        "--param", "action=clean_directory", "--param", f"target={CLEANUP}",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: not installed.path(old).exists(), 30, "the old file to be deleted")
    # A watched unit killed: the daemon, inside its sandbox, has systemd start it again.
    before = int(installed.show(DEMO, "MainPID")["MainPID"])
    installed.run(["kill", "-KILL", str(before)])

    def healed() -> bool:
        pid = int(installed.show(DEMO, "MainPID")["MainPID"])
        return pid not in (0, before)

    wait_for(healed, 60, f"watchkeeper.service to restart {DEMO}")
    # Another user's process reniced (CAP_SYS_NICE kept, nothing else needed).
    installed.run(["systemd-run", "--unit=wk-svc-nice", "--uid=65534", "/bin/sleep", "infinity"])
    pid = int(
        wait_for(
            lambda: (
                installed.show("wk-svc-nice", "MainPID")["MainPID"] != "0"
                and installed.show("wk-svc-nice", "MainPID")["MainPID"]
            ),
            10,
            "sleep",
        )
    )
    try:
        done = wk(
            installed, "command", "run_action", "--target", "remediator", "--config", CONFIG_PATH,
            "--param", "action=renice_process", "--param", f"target={pid}",
            "--param", "params.niceness:=12",
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr

        def niceness() -> int:
            fields = installed.path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return int(fields[16])  # field 19 of stat: the nice value

        wait_for(lambda: niceness() == 12, 30, "the process to be reniced to 12")
    finally:
        installed.systemctl("stop", "wk-svc-nice", check=False)


def test_uninstall_leaves_no_unit_and_keeps_the_data(installed: SystemdRoot) -> None:
    done = wk(installed, "service", "uninstall")
    assert done.returncode == 0, done.stderr
    assert f"removed {UNIT}" in done.stdout
    assert f"its data stays in {STATE}" in done.stdout
    assert not installed.path(UNIT_PATH).exists()
    assert installed.systemctl("cat", UNIT, check=False).returncode != 0
    assert installed.systemctl("is-active", UNIT, check=False).stdout.strip() == "inactive"
    assert installed.path(f"{STATE}/api_token").is_file()
    again = wk(installed, "service", "uninstall")
    assert again.returncode == 2
    assert again.stderr == f"watchkeeper: {UNIT} is not installed (no {UNIT_PATH})\n"
    assert wk(installed, "service", "status").stdout.splitlines()[0] == (
        f"installed: no ({UNIT_PATH} does not exist)"
    )


def test_uninstall_purge_deletes_the_data_too(installed: SystemdRoot) -> None:
    done = wk(installed, "service", "install", "--config", CONFIG_PATH)
    assert done.returncode == 0, done.stderr
    purged = wk(installed, "service", "uninstall", "--purge")
    assert purged.returncode == 0, purged.stderr
    assert f"deleted its data in {STATE}" in purged.stdout
    assert not installed.path(UNIT_PATH).exists()
    assert not installed.path(STATE).exists()
    assert installed.path(CONFIG_PATH).is_file()  # the operator's config is never deleted
