"""``watchkeeper fleet`` against real daemons: a central one (``[fleet] role = "central"``,
its own approvals waiting) and the package's ordinary one, which does not keep the view."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_helpers import Daemon, free_port, invoke, one_error_line, write_config


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("central")
    port = free_port()
    config = write_config(tmp, port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    log = (tmp / "daemon.log").open("w")
    argv = [sys.executable, "-m", "watchkeeper", "run", "--config", str(config)]
    argv += ["--interval", "0.5", "--set", "ollama.enabled=false"]
    argv += ["--set", "fleet.role=central", "--set", "bus.host_id=central-1"]
    proc = subprocess.Popen(argv, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"watchkeeper exited: {(tmp / 'daemon.log').read_text()}")
            assert time.monotonic() < deadline, "watchkeeper's API did not come up"
            try:
                if httpx.get(url + "/api/metrics", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        token = (tmp / "data" / "api_token").read_text().strip()
        yield Daemon(url, token, tmp / "data", config, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _pending(central: Daemon) -> list[dict[str, Any]]:
    def found() -> list[dict[str, Any]] | None:
        view = central.api("GET", "/api/fleet/hosts/central-1")
        approvals = view.get("approvals") if isinstance(view, dict) else None
        return approvals or None

    return central.wait_for(found, "an approval in the fleet view")  # type: ignore[no-any-return]


def test_fleet_lists_the_hosts_as_a_table_and_as_json(central: Daemon) -> None:
    central.wait_for(lambda: central.api("GET", "/api/fleet/hosts").get("total"), "a host")
    table = invoke(central, "fleet")
    assert table.exit_code == 0, table.output
    assert "1 hosts: 1 up, 0 stale, 0 lost · central central-1" in table.stdout
    assert "central-1" in table.stdout and "Last seen" in table.stdout
    as_json = invoke(central, "fleet", "--json")
    assert as_json.exit_code == 0
    data = json.loads(as_json.stdout)
    assert data["central"] == "central-1"
    assert [row["host"] for row in data["hosts"]] == ["central-1"]
    assert data["counts"] == {"up": 1, "stale": 0, "lost": 0}
    assert "incidents" in data


def test_fleet_host_shows_one_host_and_refuses_unknown_ones(central: Daemon) -> None:
    pending = _pending(central)
    shown = invoke(central, "fleet", "host", "central-1")
    assert shown.exit_code == 0, shown.output
    assert "Waiting for approval" in shown.stdout
    assert pending[0]["id"] in shown.stdout
    data = json.loads(invoke(central, "fleet", "host", "central-1", "--json").stdout)
    assert data["summary"]["host"] == "central-1"
    unknown = invoke(central, "fleet", "host", "web-9")
    assert unknown.exit_code == 2
    assert one_error_line(unknown) == "watchkeeper: no host 'web-9' in the fleet"
    bad = invoke(central, "fleet", "host", "Not/A Host")
    assert bad.exit_code == 2
    assert "must be 1 to 64 lower-case letters" in one_error_line(bad)


def test_fleet_approve_runs_on_the_host_and_names_the_person(central: Daemon) -> None:
    record = _pending(central)[0]
    done = invoke(central, "fleet", "approve", "central-1", record["id"], "--by", "alice")
    assert done.exit_code == 0, done.output
    assert done.stdout.strip().startswith(f"central-1: {record['id']} ")
    assert "(by alice)" in done.stdout

    def audited() -> bool:
        audit = central.api("GET", "/api/remediation", params={"limit": 200})["audit"]
        return any(
            r["proposed_by"] == "alice" and r["reason"].startswith("approved by alice: ")
            for r in audit
        )

    central.wait_for(audited, "the approval in the audit trail")
    again = invoke(central, "fleet", "approve", "central-1", record["id"])
    assert again.exit_code == 2
    assert "no pending action" in one_error_line(again)


def test_fleet_reject_records_who_said_no(central: Daemon) -> None:
    record = _pending(central)[0]
    done = invoke(central, "fleet", "reject", "central-1", record["id"], "--by", "bob")
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == f"central-1: {record['id']} rejected (by bob)"

    def audited() -> bool:
        audit = central.api("GET", "/api/remediation", params={"limit": 200})["audit"]
        return any(r["id"] == record["id"] and r["detail"] == "rejected by bob" for r in audit)

    central.wait_for(audited, "the rejection in the audit trail")


def test_fleet_approve_needs_the_token(central: Daemon) -> None:
    refused = invoke(central, "fleet", "approve", "central-1", "abc", "--token", "x" * 43)
    assert refused.exit_code == 4
    assert "refused the API token" in one_error_line(refused)


def test_a_daemon_that_is_not_central_says_so_in_one_line(daemon: Daemon) -> None:
    result = invoke(daemon, "fleet")
    assert result.exit_code == 2
    line = one_error_line(result)
    assert "does not keep the fleet view" in line and "ask the central host" in line


def test_no_daemon_is_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    config = tmp_path / "watchkeeper.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    result = invoke(None, "fleet", "--url", url, "--config", str(config))
    assert result.exit_code == 3
    assert f"no watchkeeper answers at {url}" in one_error_line(result)
