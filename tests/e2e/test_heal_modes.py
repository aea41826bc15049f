"""Approve and dry-run modes on a real ``watchkeeper run``, driven through its HTTP API:
in approve mode a killed service stays down until a person approves the restart; in
dry-run mode the audit says what would have happened and nothing changes."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_heal import answers, free_port, running, service_pid, wait_for, write_config


@pytest.fixture
def daemon(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    port, api = free_port(), free_port()
    config = write_config(tmp_path, port, mode=request.param, broken=False)
    with running(tmp_path, config, "--port", str(api)):
        yield port, api, tmp_path


def remediation(api: int) -> dict[str, Any]:
    return httpx.get(f"http://127.0.0.1:{api}/api/remediation", timeout=5).json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("daemon", ["approve"], indirect=True)
def test_approve_mode_waits_for_a_person(daemon: tuple[int, int, Path]) -> None:
    port, api, tmp_path = daemon
    wait_for(lambda: answers(port), 20, "the demo service")
    pid = wait_for(lambda: service_pid(tmp_path, "demo"), 20, "its pid")
    os.kill(pid, signal.SIGKILL)
    pending = wait_for(lambda: remediation(api)["pending"], 15, "a pending restart")
    assert pending[0]["action"] == "restart_service" and pending[0]["target"] == "demo"
    assert not answers(port)  # nobody approved: still down
    token = (tmp_path / "data" / "api_token").read_text().strip()
    url = f"http://127.0.0.1:{api}/api/command"
    body = {"command": "approve", "target": "remediator", "params": {"id": pending[0]["id"]}}
    assert httpx.post(url, json=body, timeout=5).status_code == 401  # no token, no change
    reply = httpx.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=15)
    assert reply.status_code == 200, reply.text
    wait_for(lambda: answers(port), 15, "the approved restart")
    audit = wait_for(
        lambda: [r for r in remediation(api)["audit"] if r["outcome"] == "succeeded"],
        15,
        "the success in the audit",
    )
    assert audit[0]["proposer"] == "user" and audit[0]["reason"].startswith("approved")


@pytest.mark.parametrize("daemon", ["dry_run"], indirect=True)
def test_dry_run_changes_nothing(daemon: tuple[int, int, Path]) -> None:
    port, api, tmp_path = daemon
    wait_for(lambda: answers(port), 20, "the demo service")
    pid = wait_for(lambda: service_pid(tmp_path, "demo"), 20, "its pid")
    os.kill(pid, signal.SIGKILL)
    dry = wait_for(
        lambda: [r for r in remediation(api)["audit"] if r["outcome"] == "dry_run"],
        15,
        "a dry-run record",
    )
    assert dry[0]["detail"] == "would restart service demo"
    # The next samples still show it down: nothing restarted it.
    wait_for(lambda: service_pid(tmp_path, "demo") is None, 5, "the sample to show it down")
    time.sleep(2)
    assert not answers(port)
    assert service_pid(tmp_path, "demo") is None
    assert not [r for r in remediation(api)["audit"] if r["outcome"] == "succeeded"]
