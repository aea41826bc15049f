"""The fleet page in a real browser (Debian's chromium driven by Playwright) on a real
central watchkeeper whose fleet agent hears heartbeats, alerts and approvals about other
hosts on its bus, as a network backend delivers them.

It checks what a person sees: every host with its state (a host that stops beating turns
stale, then lost, and is flagged), host text shown as text, a host's own view, approving
one of the central host's own actions (it runs), and approving an action on a host that
does not answer (the page says so). Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from web_helpers import LiveServer

from watchkeeper.model.actions import ActionOutcome, ActionRecord
from watchkeeper.model.alerts import Alert, Severity, SuggestedAction, fingerprint_of
from watchkeeper.model.fleet import HostBeat
from watchkeeper.model.topics import ALERT_FIRING, FLEET_HEARTBEAT, REMEDIATION_OUTCOMES

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
MARKUP = "<img src=x onerror=alert(1)>"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed: apt-get install -y chromium (.ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture
def sleeper() -> Iterator[psutil.Process]:
    proc = subprocess.Popen(["sleep", "120"])
    try:
        yield psutil.Process(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def _beat(host: str, **fields: object) -> HostBeat:
    values: dict[str, object] = {"host": host, "sent_at": time.time(), "interval": 0.5}
    return HostBeat.model_validate({**values, **fields})


def _renice_alert(proc: psutil.Process) -> Alert:
    now = time.time()
    subject = f"process:{proc.pid}"
    return Alert(
        id="browser-cpu",
        fingerprint=fingerprint_of("cpu_hog", subject),
        rule="cpu_hog",
        severity=Severity.WARNING,
        subject=subject,
        summary="busy",
        started_at=now,
        updated_at=now,
        suggested_actions=[
            SuggestedAction(
                action="renice_process",
                target=str(proc.pid),
                target_kind="process",
                params={"create_time": proc.create_time(), "name": proc.name()},
            )
        ],
    )


def test_fleet_page_hosts_host_view_and_approvals(tmp_path: Path, sleeper: psutil.Process) -> None:
    from playwright.sync_api import expect, sync_playwright

    flags = {
        "fleet": {"role": "central", "heartbeat_interval": 0.5, "stale_after": 3, "lost_after": 10},
        "bus": {"host_id": "central-1", "request_timeout": 0.5},
    }
    with LiveServer(tmp_path / "central", flags=flags) as central:
        assert central.orchestrator is not None
        bus = central.orchestrator.bus
        now = time.time()
        web_alert = Alert(
            id="w1",
            fingerprint=fingerprint_of("disk_usage", "disk:/var/log"),
            rule="disk_usage",
            severity=Severity.WARNING,
            subject="disk:/var/log",
            summary=f"{MARKUP} /var/log is 91% full",
            started_at=now,
            updated_at=now,
        )
        waiting = ActionRecord(
            id="w2pending01",
            action="restart_service",
            target="nginx",
            target_kind="service",
            proposer="rule",
            reason="nginx is down",
            outcome=ActionOutcome.PENDING,
            created_at=now,
        )
        stop = threading.Event()

        async def web2_says() -> None:
            beat = _beat("web-2", name=MARKUP, status="degraded", score=61.0, firing=1)
            await bus.publish(FLEET_HEARTBEAT, beat, sender="x", host="web-2")
            await bus.publish(ALERT_FIRING, web_alert, sender="x", host="web-2")
            await bus.publish(REMEDIATION_OUTCOMES["pending"], waiting, sender="x", host="web-2")

        def web2_lives() -> None:
            while not stop.is_set():
                central.call(web2_says)
                stop.wait(0.5)

        def wait_for_fleet_agent() -> None:
            fleet = central.orchestrator.agents["fleet"] if central.orchestrator else None
            central.wait_for(lambda: str(getattr(fleet, "state", "")) == "running", what="fleet")

        wait_for_fleet_agent()
        beating = threading.Thread(target=web2_lives, daemon=True)
        beating.start()
        alert = _renice_alert(sleeper)
        central.call(lambda: bus.publish(ALERT_FIRING, alert, sender="analyzer"))

        ARTIFACTS.mkdir(exist_ok=True)
        problems: list[str] = []
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
                page.on("dialog", lambda d: problems.append(f"a dialog opened: {d.message}"))
                page.on(
                    "console",
                    lambda m: problems.append(m.text) if m.type in ("error", "warning") else None,
                )
                page.goto(central.url + "/fleet")
                expect(page.locator("#live")).to_have_text("live", timeout=10_000)
                expect(page.locator("#central")).to_have_text("central-1")
                web = page.locator('#hosts tr[data-host="web-2"]')
                expect(web).to_be_visible(timeout=10_000)
                expect(web.locator(".host-name")).to_have_text(MARKUP)
                assert page.locator("#hosts img, #hosts script").count() == 0
                expect(web.locator("td").nth(1)).to_have_text("up")
                expect(web.locator("td").nth(6)).to_have_text("1")  # one approval waiting
                # db-3 beats once: up, stale after 3 s, lost after 10 s, flagged in its row.
                db = _beat("db-3", status="healthy", score=99.0)
                central.call(lambda: bus.publish(FLEET_HEARTBEAT, db, sender="x", host="db-3"))
                db_row = page.locator('#hosts tr[data-host="db-3"]')
                expect(db_row).to_have_attribute("data-state", "up", timeout=10_000)
                expect(db_row).to_have_attribute("data-state", "stale", timeout=10_000)
                expect(db_row).to_have_attribute("data-state", "lost", timeout=15_000)
                expect(db_row.locator(".seen")).to_contain_text("s ago")
                # Worst first: the lost host heads the table.
                expect(page.locator("#hosts tr").first).to_have_attribute("data-host", "db-3")
                expect(page.locator("#fleet-counts")).to_contain_text("1 lost")
                page.screenshot(path=str(ARTIFACTS / "fleet-hosts.png"), full_page=True)

                # web-2's own view: its alert as text, its approval, and no answer from it.
                web.locator("td.seen").click()  # anywhere on the row
                expect(page.locator("#crumb")).to_have_text(" › web-2")
                expect(page.locator("#host-view")).to_be_visible()
                expect(page.locator("#fleet-list")).to_be_hidden()
                expect(page.locator("#host-alerts .summary")).to_have_text(
                    f"{MARKUP} /var/log is 91% full"
                )
                assert page.locator("#host-view img:not([alt=''])").count() == 0
                approve = page.locator('#host-pending button[data-id="w2pending01"]').first
                approve.click()
                expect(page.locator("#action-result")).to_contain_text("Paste the API token")
                expect(page.locator("#token-input")).to_be_focused()  # the box opened itself
                page.locator("#token-input").fill(central.token)
                page.get_by_role("button", name="Use token").click()
                expect(page.locator("#token-summary")).to_have_text("✓ token set")
                approve.click()
                expect(page.locator("#action-result")).to_have_text(
                    "host web-2 did not answer within 0.5 s", timeout=10_000
                )
                page.screenshot(path=str(ARTIFACTS / "fleet-host-web-2.png"), full_page=True)

                # The central host's own approval runs there and is audited.
                page.goto(central.url + "/fleet#host=central-1")
                expect(page.locator('#host-pending li[data-id="w2pending01"]')).to_have_count(0)
                mine = page.locator("#host-pending li", has_text="renice_process")
                button = mine.locator("button.approve").first
                expect(button).to_be_visible(timeout=15_000)
                # Its own sample, as the fleet view keeps it: metrics and top processes.
                expect(page.locator("#host-metrics tr", has_text="Memory")).to_be_visible()
                expect(page.locator("#host-procs tr td.num").first).to_be_visible()
                page.screenshot(path=str(ARTIFACTS / "fleet-host-central-1.png"), full_page=True)
                button.click()
                expect(page.locator("#action-result")).to_contain_text(
                    "(by dashboard)", timeout=10_000
                )
                central.wait_for(lambda: sleeper.nice() == 10, what="the renice")
                actions = page.locator("#host-actions tr", has_text="renice_process")
                expect(actions.first).to_be_visible(timeout=10_000)
                # The host's own dashboard says who approved it.
                page.goto(central.url + "/")
                row = page.locator("#audit tr", has_text="by dashboard").first
                expect(row).to_contain_text("renice_process", timeout=15_000)
                browser.close()
        finally:
            stop.set()
            beating.join(5)
        # The one failed request is the approval web-2 never answered: the page said so.
        assert [p for p in problems if "status of 504" not in p] == []


def test_fleet_page_on_a_host_that_is_not_central(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with LiveServer(tmp_path, flags={"bus": {"host_id": "web-2"}}) as plain:
        problems: list[str] = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.goto(plain.url + "/fleet")
            expect(page.locator("#problem")).to_have_text(
                "this watchkeeper (host web-2) does not keep the fleet view: "
                'its [fleet] role is "host"; ask the central host',
                timeout=10_000,
            )
            expect(page.locator("#live")).to_have_text("no fleet view here")
            browser.close()
        assert problems == []
