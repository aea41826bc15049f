"""One incident, end to end, on a real ``watchkeeper run``: a database dies and the two
services that need it fall over after it; people hear of it once.

Three process-managed services on loopback: ``db`` (the demo service), ``api`` needing
``db`` and ``web`` needing ``api``; the two dependants exit when what they need stops
answering, as a worker that loses its database does. The test SIGKILLs ``db`` and then
finds one incident, rooted in ``db``, with ``api`` and ``web`` as its effects and the
restarts root-first, in ``/api/incidents``, in ``watchkeeper incidents --json`` (a real
CLI process), on the dashboard (real headless Chromium), and as exactly one notice at a
real webhook receiver on loopback. In approve mode nothing restarts on its own: once it
has been seen, a person approves the restarts (the real CLI), root first, and the
incident resolves with one more notice, headed by what people were told at first.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

import watchkeeper.testing.demo_service as demo_service

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]

# A service that serves its port and exits 1 once the port it needs stops answering.
DEPENDANT = """
import socket, sys, threading, time
from http.server import BaseHTTPRequestHandler, HTTPServer
port, needs = int(sys.argv[1]), int(sys.argv[2])
class Ok(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
threading.Thread(target=HTTPServer(("127.0.0.1", port), Ok).serve_forever, daemon=True).start()
while True:
    time.sleep(0.3)
    try:
        socket.create_connection(("127.0.0.1", needs), timeout=0.5).close()
    except OSError:
        sys.stderr.write("lost what it needs; exiting\\n")
        sys.exit(1)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed: apt-get install -y chromium (.ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@dataclass
class Sink:
    """A webhook receiver on loopback: every notice that arrives, in order."""

    server: ThreadingHTTPServer
    notices: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.daemon_threads = True
    found = Sink(server)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            found.notices.append(json.loads(body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield found
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def write_config(tmp_path: Path, web_port: int, hook: str) -> Path:
    py = json.dumps(sys.executable)
    demo = json.dumps(demo_service.__file__)
    dependant = tmp_path / "dependant.py"
    dependant.write_text(DEPENDANT)
    db, api, web = free_port(), free_port(), free_port()
    text = f"""
data_dir = {json.dumps(str(tmp_path / "data"))}
personality = "plain"
status_interval = 0.5

[agents]
check_interval = 0.5

[remediation]
mode = "approve"
healing_cooldown = 0

[analyzer]
flap_window = 60

[ollama]
enabled = false

[web]
port = {web_port}

[notifications]
group_wait = "3s"

[[notifications.channels]]
type = "webhook"
name = "sink"
url = {json.dumps(hook)}

[[services]]
name = "db"
argv = [{py}, "-I", "-S", {demo}, "--port", "{db}"]
critical = true
min_uptime = 0.5
probe = {{ kind = "http", url = "http://127.0.0.1:{db}/" }}

[[services]]
name = "api"
argv = [{py}, {json.dumps(str(dependant))}, "{api}", "{db}"]
depends_on = ["db"]
min_uptime = 0.5
probe = {{ kind = "http", url = "http://127.0.0.1:{api}/" }}

[[services]]
name = "web"
argv = [{py}, {json.dumps(str(dependant))}, "{web}", "{api}"]
depends_on = ["api"]
min_uptime = 0.5
probe = {{ kind = "http", url = "http://127.0.0.1:{web}/" }}
"""
    path = tmp_path / "watchkeeper.toml"
    path.write_text(text)
    return path


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            value = predicate()
            if value:
                return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Daemon:
    url: str
    token: str
    config: Path


@pytest.fixture
def daemon(tmp_path: Path, sink: Sink) -> Iterator[Daemon]:
    port = free_port()
    config = write_config(tmp_path, port, sink.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHKEEPER_", "OLLAMA_"))}
    log = (tmp_path / "daemon.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "watchkeeper", "run", "--config", str(config)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/api/metrics", timeout=2).status_code == 200, 30, "api")
        token = (tmp_path / "data" / "api_token").read_text().strip()
        yield Daemon(url, token, config)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert "Traceback" not in (tmp_path / "daemon.log").read_text()


def services(url: str) -> dict[str, dict[str, Any]]:
    system = httpx.get(f"{url}/api/system", timeout=5).json()
    return {s["name"]: s for s in system["details"]["sensor"]["services"]}


def db_incident(url: str) -> dict[str, Any] | None:
    """The open incident rooted in db's death, once all three services are in it."""
    body = httpx.get(f"{url}/api/incidents", timeout=5).json()
    for incident in body["incidents"]:
        subjects = {m["subject"] for m in incident["members"]}
        if {"service:db", "service:api", "service:web"} <= subjects:
            return dict(incident)
    return None


def cli(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI, as a person's shell would run it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    return subprocess.run(
        [sys.executable, "-m", "watchkeeper", *args, "--config", str(daemon.config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_a_dead_database_is_one_incident_everywhere_and_one_notice(
    daemon: Daemon, sink: Sink, tmp_path: Path
) -> None:
    def all_running() -> bool:
        found = services(daemon.url)
        return all(found.get(n, {}).get("state") == "running" for n in ("db", "api", "web"))

    wait_for(all_running, 30, "db, api and web running")
    os.kill(int(services(daemon.url)["db"]["pid"]), signal.SIGKILL)

    incident = wait_for(lambda: db_incident(daemon.url), 40, "one incident of db, api and web")
    roles = {m["subject"]: m["role"] for m in incident["members"]}
    assert roles == {"service:db": "root", "service:api": "effect", "service:web": "effect"}
    root = next(m for m in incident["members"] if m["fingerprint"] == incident["root"])
    assert (root["rule"], root["subject"]) == ("service_down", "service:db")
    assert incident["severity"] == "critical" and "db" in incident["root_cause"]
    remedies = [(r["action"], r["target"]) for r in incident["remedies"]]
    assert remedies[0] == ("restart_service", "db")  # the root's remedy first

    # The same incident in detail, with the three alerts in full.
    detail = httpx.get(f"{daemon.url}/api/incidents/{incident['id']}", timeout=5).json()
    assert [a["subject"] for a in detail["members"]] == ["service:db", "service:api", "service:web"]

    listing = cli(daemon, "incidents", "--json")
    assert listing.returncode == 0, listing.stderr
    listed = {i["id"]: i for i in json.loads(listing.stdout)["incidents"]}
    assert len(listed[incident["id"]]["members"]) == 3

    # The dashboard: the alerts card shows the incident, its cause and its members.
    from playwright.sync_api import expect, sync_playwright

    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.goto(daemon.url)
            card = page.locator(f'#alerts li.incident[data-incident="{incident["id"]}"]')
            expect(card).to_be_visible(timeout=15_000)
            expect(card.locator(".title")).to_have_text(incident["title"])
            expect(card.locator(".cause")).to_contain_text("Probable cause: service db is down")
            members = card.locator("li.member")
            expect(members).to_have_count(3)
            expect(members.first).to_have_attribute("data-role", "root")
            expect(members.first).to_contain_text("service db is down")
            expect(card.locator(".remedies li").first).to_have_text("restart_service db")
            # Its alerts are beneath it, not listed again on their own.
            for member in incident["members"]:
                rows = page.locator(f'#alerts li[data-fingerprint="{member["fingerprint"]}"]')
                expect(rows).to_have_count(1)
            ARTIFACTS.mkdir(exist_ok=True)
            card.screenshot(path=str(ARTIFACTS / "dashboard-incident.png"))
            page.emulate_media(color_scheme="dark")
            page.set_viewport_size({"width": 390, "height": 844})
            page.wait_for_timeout(300)
            card.scroll_into_view_if_needed()
            card.screenshot(path=str(ARTIFACTS / "dashboard-incident-phone-dark.png"))
        finally:
            browser.close()
    assert not problems, problems

    # People were told once: one notice for the incident, none for its alerts alone.
    time.sleep(5)  # past group_wait and the grace: anything else would be here by now
    key = f"incident:{incident['id']}"
    mine = [n for n in sink.notices if n["key"] == key]
    assert [n["kind"] for n in mine] == ["firing"], [(n["kind"], n["key"]) for n in sink.notices]
    assert "db is down" in mine[0]["title"] and "(3 alerts)" in mine[0]["title"]
    member_keys = {m["fingerprint"] for m in incident["members"]}
    alone = [n for n in sink.notices if n["key"] in member_keys]
    assert alone == [], [n["title"] for n in alone]

    # A person approves the restarts as they are proposed (db's first: the root's).
    approved: list[str] = []
    seen: set[str] = set()

    def heal() -> bool:
        remediation = httpx.get(f"{daemon.url}/api/remediation", timeout=5).json()
        for record in remediation["pending"]:
            if record["action"] == "restart_service" and record["id"] not in seen:
                seen.add(record["id"])
                assert cli(daemon, "approve", record["id"]).returncode == 0
                approved.append(record["target"])
        return all(s["state"] == "running" for s in services(daemon.url).values())

    wait_for(heal, 60, "db, api and web restarted")
    assert approved[0] == "db"

    def resolved() -> list[dict[str, Any]]:
        body = httpx.get(f"{daemon.url}/api/incidents?state=resolved", timeout=5).json()
        return [i for i in body["incidents"] if i["id"] == incident["id"]]

    (done,) = wait_for(resolved, 60, "the incident resolved")
    assert done["state"] == "resolved" and done["resolved_at"] is not None
    # It ended smaller than it began (its alerts left as they cleared); its detail still
    # has all three, each resolved, and the three restarts that healed them.
    after = httpx.get(f"{daemon.url}/api/incidents/{incident['id']}", timeout=5).json()
    assert after["source"] == "storage"
    assert {(a["subject"], a["state"]) for a in after["members"]} == {
        ("service:db", "resolved"),
        ("service:api", "resolved"),
        ("service:web", "resolved"),
    }
    restarted = {r["target"] for r in after["actions"] if r["outcome"] == "succeeded"}
    assert restarted == {"db", "api", "web"}, after["actions"]
    everything = json.loads(cli(daemon, "incidents", "--all", "--json").stdout)
    assert incident["id"] in [i["id"] for i in everything["incidents"]]
    wait_for(lambda: len([n for n in sink.notices if n["key"] == key]) >= 2, 20, "resolved")
    time.sleep(2)
    mine = [n for n in sink.notices if n["key"] == key]
    assert [n["kind"] for n in mine] == ["firing", "resolved"]
    opened_as = mine[0]["title"].removeprefix("INCIDENT ")
    assert mine[1]["title"] == f"RESOLVED {opened_as}"
    assert [n for n in sink.notices if n["key"] in member_keys] == []
