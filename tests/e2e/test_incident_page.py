"""The incident page in a real browser, on a real ``watchkeeper run`` with a real incident.

A process-managed demo service, ``db``, writes a log line shaped like markup when it
starts; the test SIGKILLs it. The daemon (approve mode, a fake Ollama on loopback whose
answer also carries markup) opens an incident, asks the model about it, tells a real
webhook receiver on loopback once, with the page's address in the notice, and waits for
a person. Headless Chromium opens the link from the notice while the incident is open: the
page shows the alert in the timeline, the log line and the model's words as text, and the
restart waiting for a person. A person approves it (the API, with the token); without a
reload the page shows the restart run, verified, and the incident resolved. An unknown id
is the 404 page. Screenshots go to ``test-artifacts/``.
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
from watchkeeper.testing.fake_ollama import FakeOllama, Reply

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
#: What db logs as it starts: markup that would run if it were ever read as HTML.
HOSTILE_LOG = "<img src=x onerror=window.pwned=1> db <b>starting</b>"
#: The model's reasoning, with markup of its own (within the schema's bounds).
HOSTILE_REASON = "db was killed <script>window.pwned=2</script>; restart it"

# db: say the hostile line on stderr, then become the demo service (same pid, same pipe).
LOGGING_DEMO = """
import os, sys
sys.stderr.write(sys.argv[1] + "\\n")
sys.stderr.flush()
os.execv(sys.executable, [sys.executable, "-I", "-S", sys.argv[2], "--port", sys.argv[3]])
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


@pytest.fixture
def fake_llm() -> Iterator[FakeOllama]:
    def answer(body: dict[str, Any]) -> Reply:
        return Reply(
            json_obj={
                "verdict": "critical",
                "summary": HOSTILE_REASON,
                "findings": [{"id": "E1", "explanation": HOSTILE_REASON}],
                "recommended_actions": [],
            }
        )

    with FakeOllama(models=["mistral"]) as fake:
        fake.set_reply_fn(answer)
        yield fake


@dataclass
class Daemon:
    url: str
    token: str


def write_config(tmp_path: Path, web_port: int, hook: str, llm: str) -> Path:
    script = tmp_path / "logging_demo.py"
    script.write_text(LOGGING_DEMO)
    argv = [sys.executable, str(script), HOSTILE_LOG, demo_service.__file__, str(free_port())]
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
flap_window = 5

[ollama]
url = {json.dumps(llm)}
model = "mistral"

[web]
port = {web_port}

[notifications]
group_wait = "1s"

[[notifications.channels]]
type = "webhook"
name = "sink"
url = {json.dumps(hook)}

[[services]]
name = "db"
argv = {json.dumps(argv)}
critical = true
min_uptime = 0.5
probe = {{ kind = "http", url = "http://127.0.0.1:{argv[-1]}/" }}
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


@pytest.fixture
def daemon(tmp_path: Path, sink: Sink, fake_llm: FakeOllama) -> Iterator[Daemon]:
    port = free_port()
    config = write_config(tmp_path, port, sink.url, fake_llm.url)
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
        yield Daemon(url, token)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert "Traceback" not in (tmp_path / "daemon.log").read_text()


def db(url: str) -> dict[str, Any]:
    system = httpx.get(f"{url}/api/system", timeout=5).json()
    found = {s["name"]: s for s in system["details"]["sensor"]["services"]}
    return dict(found.get("db", {}))


def db_incident(url: str) -> dict[str, Any] | None:
    body = httpx.get(f"{url}/api/incidents", timeout=5).json()
    for incident in body["incidents"]:
        if any(m["subject"] == "service:db" for m in incident["members"]):
            return dict(incident)
    return None


def test_the_incident_page_from_the_notice_link_to_the_resolution(
    daemon: Daemon, sink: Sink
) -> None:
    wait_for(lambda: db(daemon.url).get("state") == "running", 30, "db running")
    os.kill(int(db(daemon.url)["pid"]), signal.SIGKILL)
    incident = wait_for(lambda: db_incident(daemon.url), 40, "the incident of db")
    page_url = f"{daemon.url}/incidents/{incident['id']}"
    assert incident["url"] == page_url  # web.public_url unset, loopback bind: loopback

    # The notice links the page.
    key = f"incident:{incident['id']}"
    wait_for(lambda: any(n["key"] == key for n in sink.notices), 30, "the incident's notice")
    notice = next(n for n in sink.notices if n["key"] == key)
    assert notice["details"]["url"] == page_url
    assert f"Details: {page_url}" in notice["body"].splitlines()

    # The model has spoken and the restart waits for a person before the browser looks.
    def analysed() -> bool:
        detail = httpx.get(f"{daemon.url}/api/incidents/{incident['id']}", timeout=5).json()
        llm = [a for a in detail["analyses"] if a["source"] != "rules"]
        waiting = [d for d in detail["decisions"] if d["verdict"] == "approve"]
        return bool(llm and waiting)

    wait_for(analysed, 40, "the model's analysis and a restart waiting for approval")

    from playwright.sync_api import ConsoleMessage, expect, sync_playwright

    problems: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.on("pageerror", lambda exc: problems.append(str(exc)))

            def console(message: ConsoleMessage) -> None:
                if message.type == "error":
                    problems.append(message.text)

            page.on("console", console)
            page.goto(notice["details"]["url"])
            expect(page.locator("#incident-title")).to_have_text(incident["title"])
            expect(page.locator("#incident-state")).to_have_text("open")
            expect(page.locator("#live")).to_have_text("live", timeout=10_000)
            fired = page.locator('#timeline li.step[data-kind="firing"]')
            expect(fired.first).to_contain_text("service:db")
            expect(page.locator('#timeline li.step[data-kind="opened"]')).to_have_count(1)
            # The log line and the model's words are text, not markup.
            root = page.locator('#members li.member[data-role="root"]')
            expect(root.locator("pre.log")).to_contain_text(HOSTILE_LOG)
            llm = page.locator('#analyses article[data-source="llm"]').first
            expect(llm.locator(".reasoning")).to_contain_text("db was killed <script>")
            expect(llm.locator(".explanations")).to_contain_text(HOSTILE_REASON)
            waiting = page.locator('#actions tr.decision[data-verdict="approve"]').first
            expect(waiting).to_contain_text("restart_service db")
            expect(waiting.locator(".verdict")).to_have_text("wait for a person")
            expect(waiting.locator(".check")).to_have_text("waiting")
            page.screenshot(path=str(ARTIFACTS / "incident-page-open.png"), full_page=True)

            # The dashboard's incidents list links the same page.
            dash = browser.new_page(viewport={"width": 1280, "height": 1000})
            dash.on("pageerror", lambda exc: problems.append(str(exc)))
            dash.goto(daemon.url)
            link = dash.locator(f'#alerts li.incident[data-incident="{incident["id"]}"] a')
            expect(link).to_have_attribute("href", f"/incidents/{incident['id']}")
            link.click()
            expect(dash.locator("#incident-title")).to_have_text(incident["title"])
            assert dash.url == page_url
            dash.close()

            # A person approves; the open page follows without a reload.
            pending = httpx.get(f"{daemon.url}/api/remediation", timeout=5).json()["pending"]
            (record,) = [r for r in pending if r["action"] == "restart_service"]
            approved = httpx.post(
                f"{daemon.url}/api/command",
                json={"target": "remediator", "command": "approve", "params": {"id": record["id"]}},
                headers={"Authorization": f"Bearer {daemon.token}"},
                timeout=60,
            )
            assert approved.status_code == 200, approved.text
            expect(page.locator("#incident-state")).to_have_text("resolved", timeout=60_000)
            expect(page.locator("#resolution")).to_contain_text("Resolved at")
            expect(page.locator("#cause")).to_contain_text("Probable cause: service db is down")
            expect(page.locator("#live")).to_have_text("resolved")
            expect(page.locator('#timeline li.step[data-kind="closed"]')).to_have_count(1)
            expect(page.locator('#timeline li.step[data-kind="resolved"]').first).to_contain_text(
                "service:db"
            )
            healed = page.locator(f'#actions tr.decision[data-id="{record["id"]}"]')
            expect(healed.locator(".verdict")).to_have_text("wait for a person")
            expect(healed.locator(".outcome")).to_have_text("succeeded")
            expect(healed.locator(".check")).to_have_text("verified")
            expect(healed.locator(".why")).to_contain_text("waiting for a person; approved by")
            expect(healed.locator(".by")).to_have_text("rule (service_down)")
            assert page.evaluate("window.pwned") is None
            assert page.locator("#members img, #analyses img, #analyses script").count() == 0
            page.screenshot(path=str(ARTIFACTS / "incident-page.png"), full_page=True)
            page.emulate_media(color_scheme="dark")
            page.set_viewport_size({"width": 390, "height": 844})
            page.wait_for_timeout(300)
            page.screenshot(path=str(ARTIFACTS / "incident-page-phone-dark.png"), full_page=True)

            # A resolved incident is read from storage, and is the same page after a reload.
            page.reload()
            expect(page.locator("#incident-state")).to_have_text("resolved")
            expect(healed.locator(".check")).to_have_text("verified")

            # An unknown id (its 404 is the one console error Chromium may log from here).
            assert not problems, problems
            page.remove_listener("console", console)
            missing = page.goto(f"{daemon.url}/incidents/no-such-incident")
            assert missing is not None and missing.status == 404
            expect(page.locator("h1")).to_have_text("No such incident")
            expect(page.locator("#missing-id")).to_have_text("no-such-incident")
            page.set_viewport_size({"width": 1280, "height": 700})
            page.emulate_media(color_scheme="light")
            page.screenshot(path=str(ARTIFACTS / "incident-page-404.png"))
        finally:
            browser.close()
    assert not problems, problems
