"""The charts' time ranges in a real browser (Debian's chromium driven by Playwright) on a
real watchkeeper whose database holds a month with two outages: each range redraws the
chart from storage, an outage is drawn as a break in the line, live streams again after.
Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from web_helpers import LiveServer, wait_for_samples

from watchkeeper.testing.history_seed import seed_month

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
#: Range button -> (its API range, whether a seeded outage lies inside it). The day-long
#: outage ten days ago is inside 30 days; the quarter hour forty minutes ago inside 24
#: hours and 1 hour (at 7 days it is lost in half-hour buckets that still hold values).
RANGES = {
    "15 min": ("15m", False),
    "1 h": ("1h", True),
    "24 h": ("24h", True),
    "7 d": ("7d", False),
    "30 d": ("30d", True),
}


def runs(body: dict[str, Any], key: str) -> int:
    """How many unbroken pieces a series has in an API answer (null breaks it), counted
    over the buckets whose middle lies in the range, as the chart draws them."""
    pieces, inside = 0, False
    half = body["step"] / 2
    for ts, value in zip(body["ts"], body["series"][key]["avg"], strict=True):
        if value is None or ts + half < body["start"]:
            inside = False
        elif not inside:
            pieces, inside = pieces + 1, True
    return pieces


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed: apt-get install -y chromium (.ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def test_each_range_redraws_the_chart_with_outages_as_gaps(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    seed_month(tmp_path / "data", time.time())
    ARTIFACTS.mkdir(exist_ok=True)
    with LiveServer(tmp_path) as live, sync_playwright() as pw:
        wait_for_samples(live, 3)
        browser = pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(live.url)
            cpu = page.locator("#chart-cpu")
            card = page.locator(".chart-card", has=cpu)
            expect(cpu).to_have_attribute("data-range", "live", timeout=10_000)
            expect(card.get_by_role("button", name="live")).to_have_attribute(
                "aria-pressed", "true"
            )

            for button, (range_, outage) in RANGES.items():
                draws = int(cpu.get_attribute("data-draws") or "0")
                card.get_by_role("button", name=button, exact=True).click()
                expect(cpu).to_have_attribute("data-range", button, timeout=10_000)
                page.wait_for_function(
                    "([el, n]) => Number(el.dataset.draws) > n", arg=[cpu.element_handle(), draws]
                )
                points = int(cpu.get_attribute("data-points") or "0")
                assert 90 <= points <= 361, (button, points)
                segments = json.loads(cpu.get_attribute("data-segments") or "{}")
                with live.client() as http:
                    params = {"range": range_, "series": "cpu"}
                    body = http.get("/api/metrics/history/chart", params=params).json()
                # The line breaks exactly where the API says nothing was stored. (The
                # seconds between seeding and the server's first sample are one more
                # break, seen in 5-second buckets.)
                assert segments == {"cpu": runs(body, "cpu")}, (button, segments)
                if outage:
                    assert segments["cpu"] >= 2, (button, segments)
                expect(card.get_by_role("button", name=button, exact=True)).to_have_attribute(
                    "aria-pressed", "true"
                )
                if button in ("1 h", "30 d"):
                    page.locator(".grid").screenshot(
                        path=str(ARTIFACTS / f"history-{button.replace(' ', '')}.png")
                    )

            # Another chart keeps its own range; memory's 30 days also break at the outage.
            memory = page.locator("#chart-memory")
            mem_card = page.locator(".chart-card", has=memory)
            mem_card.get_by_role("button", name="30 d", exact=True).click()
            expect(memory).to_have_attribute("data-range", "30 d", timeout=10_000)
            mem_segments = json.loads(memory.get_attribute("data-segments") or "{}")
            assert mem_segments["memory"] == 2, mem_segments
            assert cpu.get_attribute("data-range") == "30 d"
            page.screenshot(path=str(ARTIFACTS / "history-dashboard.png"), full_page=True)

            # Back to live: the ring streams again and redraws as samples arrive.
            card.get_by_role("button", name="live").click()
            expect(cpu).to_have_attribute("data-range", "live", timeout=10_000)
            draws = int(cpu.get_attribute("data-draws") or "0")
            page.wait_for_function(
                "([el, n]) => Number(el.dataset.draws) > n + 2",
                arg=[cpu.element_handle(), draws],
                timeout=10_000,
            )
            assert errors == []
        finally:
            browser.close()
