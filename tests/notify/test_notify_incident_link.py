"""Notices about an incident link its page on the dashboard.

On a real ``watchkeeper run`` with ``web.public_url`` set, a killed service opens an
incident; the mail that a real SMTP server on loopback receives names the page, and that
link, fetched as a person's browser would, is the incident's page. Without a daemon, an
announcer with real webhook and Slack channels shows that every channel carries the link,
and that a notice says nothing of a page when the dashboard's address is unknown.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from notify_helpers import NOON, Clock, HttpReceiver, SmtpReceiver

import watchkeeper.testing.demo_service as demo_service
from watchkeeper.config import WebSettings
from watchkeeper.config.notifications import NotificationSettings, RetrySettings
from watchkeeper.model.alerts import Severity
from watchkeeper.model.incidents import Incident, IncidentMember
from watchkeeper.notify import NotificationChannel, SlackChannel, WebhookChannel
from watchkeeper.notify.announcer import Announcer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            value = predicate()
            if value:
                return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def daemon(tmp_path: Path, smtp: SmtpReceiver) -> Iterator[str]:
    """A real daemon whose notices go by mail; its dashboard's public address is
    ``http://localhost:<port>/`` (so the link is not the loopback address it binds)."""
    port, db = free_port(), free_port()
    argv = [sys.executable, "-I", "-S", demo_service.__file__, "--port", str(db)]
    config = tmp_path / "watchkeeper.toml"
    config.write_text(f"""
data_dir = {json.dumps(str(tmp_path / "data"))}
personality = "plain"

[agents]
check_interval = 0.5

[remediation]
mode = "approve"

[ollama]
enabled = false

[web]
port = {port}
public_url = "http://localhost:{port}/"

[notifications]
group_wait = "1s"

[[notifications.channels]]
type = "email"
name = "mail"
host = "127.0.0.1"
port = {smtp.port}
sender = "watchkeeper@example.org"
recipients = ["oncall@example.org"]

[[services]]
name = "db"
argv = {json.dumps(argv)}
critical = true
min_uptime = 0.5
probe = {{ kind = "http", url = "http://127.0.0.1:{db}/" }}
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHKEEPER_", "OLLAMA_"))}
    log = (tmp_path / "daemon.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "watchkeeper", "run", "--config", str(config)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/api/metrics", timeout=2).status_code == 200, 30, "api")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert "Traceback" not in (tmp_path / "daemon.log").read_text()


@pytest.mark.e2e
@pytest.mark.slow
def test_the_mailed_link_opens_the_incident_page(daemon: str, smtp: SmtpReceiver) -> None:
    def db() -> dict[str, Any]:
        system = httpx.get(f"{daemon}/api/system", timeout=5).json()
        return next(s for s in system["details"]["sensor"]["services"] if s["name"] == "db")

    wait_for(lambda: db()["state"] == "running", 30, "db running")
    os.kill(int(db()["pid"]), signal.SIGKILL)

    def mailed() -> list[str]:
        bodies = [m.get_content() for m in smtp.messages if "INCIDENT" in str(m["Subject"])]
        return [str(b) for b in bodies]

    (body,) = wait_for(mailed, 40, "the incident's mail")[:1]
    (link,) = [line.removeprefix("Details: ") for line in body.splitlines() if "Details:" in line]
    incidents = httpx.get(f"{daemon}/api/incidents", timeout=5).json()["incidents"]
    (incident,) = [i for i in incidents if i["url"] == link]
    assert link == f"{daemon.replace('127.0.0.1', 'localhost')}/incidents/{incident['id']}"
    page = httpx.get(link, timeout=5)  # as a browser would: Host: localhost:<port>
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f'data-incident="{incident["id"]}"' in page.text
    assert "db is down" in page.text


def _incident() -> Incident:
    member = IncidentMember(
        alert_id="a1",
        fingerprint="f1",
        rule="service_down",
        subject="service:db",
        severity=Severity.CRITICAL,
        summary="service db is down",
        role="root",
    )
    return Incident(
        id="inc-42",
        key="service:db",
        title="db is down",
        severity=Severity.CRITICAL,
        root="f1",
        root_cause="service db is down",
        members=[member],
        opened_at=NOON,
        updated_at=NOON,
    )


async def _announce(receiver: HttpReceiver, web: WebSettings) -> list[Any]:
    channels: list[NotificationChannel] = [
        WebhookChannel("hook", receiver.url),
        SlackChannel("chat", receiver.url.replace("/hook/", "/slack/")),
    ]
    settings = NotificationSettings(group_wait=0, retries=RetrySettings(attempts=1))
    clock = Clock()
    announcer = Announcer(
        lambda: settings, channels=channels, clock=clock, incident_link=web.incident_url
    )
    await announcer.start()
    try:
        await announcer.incident("opened", _incident())
        clock.advance(1)
        await announcer.pump()
        await receiver.wait_for(2)
    finally:
        await announcer.aclose()
    return sorted(receiver.bodies(), key=lambda body: "blocks" in body)


async def test_every_channel_carries_the_link(receiver: HttpReceiver) -> None:
    web = WebSettings(public_url="https://watch.example.org/ops/")
    hook, slack = await _announce(receiver, web)
    link = "https://watch.example.org/ops/incidents/inc-42"
    assert hook["details"]["url"] == link
    assert hook["body"].splitlines()[-1] == f"Details: {link}"
    assert f"Details: {link}" in slack["blocks"][1]["text"]["text"]


async def test_no_link_when_the_dashboard_address_is_unknown(receiver: HttpReceiver) -> None:
    hook, _ = await _announce(receiver, WebSettings(port=0))  # its port is chosen at start
    assert "url" not in hook["details"]
    assert "Details:" not in hook["body"]
