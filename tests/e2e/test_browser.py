"""The dashboard in a real browser: headless Chromium (Debian's ``chromium``, driven by
Playwright with ``executable_path``) on a real ``watchkeeper run``.

The daemon runs with thresholds low enough that alerts fire, a fake Ollama on loopback
that answers like a model, and approve mode (nothing is ever executed). A process named
like markup sits in the top-memory list to prove that host strings stay text. The test
sees values change live, uses the token to run actions, and saves screenshots in
``test-artifacts/`` (light and dark, desktop and phone).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from watchkeeper.testing.fake_ollama import FakeOllama, Reply

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MARKUP_NAME = "<img src=x>"  # fits the kernel's 15-character process name
MARKUP_CMDLINE = "<img src=x onerror=alert(1)><script>alert(2)</script>"
# Within the schema's bound on a model's explanation (llm.prompt.MAX_REASON_CHARS).
LLM_REASONING = "Memory crossed the low test threshold; watching is right."


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed: apt-get install -y chromium (.ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs it: missing there is a failure
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def markup_process() -> Iterator[int]:
    """A process whose name and command line look like HTML, holding enough memory to be
    in the top-memory list."""
    code = (
        "import ctypes, sys, time\n"
        "ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)\n"
        "block = b'x' * (700 * 1024 * 1024)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, MARKUP_NAME, MARKUP_CMDLINE])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def fake_llm() -> Iterator[FakeOllama]:
    answer = Reply(
        json_obj={
            "verdict": "degraded",
            "summary": "Memory alert from a test threshold; the host itself is fine.",
            "findings": [{"id": "E1", "explanation": LLM_REASONING}],
            "recommended_actions": [],
        }
    )
    with FakeOllama(models=["mistral"], default_reply=answer) as fake:
        yield fake


@pytest.fixture
def daemon(tmp_path: Path, fake_llm: FakeOllama) -> Iterator[tuple[str, str]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHKEEPER_", "OLLAMA_"))}
    env["NO_COLOR"] = "1"
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "watchkeeper",
            "run",
            "--data-dir",
            str(data),
            "--interval",
            "0.5",
            "--port",
            str(port),
            "--mode",
            "approve",
            "--set",
            f"ollama.url={fake_llm.url}",
            "--set",
            "thresholds.memory_warning=1",
            "--set",
            "thresholds.memory_critical=99",
            "--set",
            "analyzer.for_seconds=0",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"watchkeeper exited: {proc.communicate()[1][-3000:]}")
            try:
                if httpx.get(f"{url}/api/metrics", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the dashboard did not come up in time")
            time.sleep(0.2)
        yield url, (data / "api_token").read_text().strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        assert "Traceback" not in err, err[-3000:]


def test_dashboard_live_actions_and_screenshots(
    daemon: tuple[str, str], markup_process: int, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, token = daemon
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=chromium(),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1280, "height": 900},
            color_scheme="light",
        )
        try:
            page = context.new_page()
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("dialog", lambda d: problems.append(f"a dialog opened: {d.message}"))
            page.on(
                "console",
                lambda m: problems.append(m.text) if m.type in ("error", "warning") else None,
            )
            page.goto(url)

            # Live: the stream connects and the sample time moves on by itself.
            expect(page.locator("#live")).to_have_text("live", timeout=10_000)
            sampled = page.locator("#sampled")
            expect(sampled).not_to_have_text("–", timeout=10_000)
            first = sampled.text_content()
            expect(sampled).not_to_have_text(first or "", timeout=10_000)
            expect(page.locator("#agents [data-agent=sensor] .pill")).to_have_text("running")
            expect(page.locator("#alerts li[data-fingerprint]").first).to_be_visible(timeout=15_000)

            # Host strings are text, never markup.
            page.locator(".tab[data-sort=memory]").click()
            cell = page.locator("#procs td", has_text=MARKUP_NAME).first
            expect(cell).to_be_visible(timeout=15_000)
            assert cell.text_content() == MARKUP_NAME
            assert page.locator("#procs img, #procs script").count() == 0
            assert page.locator("#procs td", has_text="onerror=alert(1)").count() >= 1

            # Without the token, an action says what is missing; a wrong one is refused.
            page.get_by_role("button", name="Health check").click()
            expect(page.locator("#action-result")).to_contain_text("Paste the API token")
            page.locator("#token-input").fill("not-the-token")
            page.get_by_role("button", name="Use token").click()
            page.get_by_role("button", name="Health check").click()
            expect(page.locator("#action-result")).to_contain_text("refused (401)")

            page.locator("#token-summary").click()
            page.locator("#token-input").fill(token)
            page.get_by_role("button", name="Use token").click()
            expect(page.locator("#token-summary")).to_have_text("✓ token set")
            page.get_by_role("button", name="Health check").click()
            result = page.locator("#action-result")
            expect(result).to_contain_text("health_check: ", timeout=10_000)
            expect(result).to_have_attribute("data-ok", "true")
            expect(result).to_contain_text("sensor running")

            page.get_by_role("button", name="Analyze now").click()
            expect(result).to_contain_text("analyze_now: analyzer", timeout=20_000)
            expect(page.locator("#analysis blockquote").first).to_have_text(
                LLM_REASONING, timeout=20_000
            )
            expect(page.locator("#llm-status")).to_contain_text("mistral")
            # The token never lands in the page itself.
            assert token not in page.content()

            page.screenshot(path=str(ARTIFACTS / "dashboard-light.png"), full_page=True)
            page.emulate_media(color_scheme="dark")
            page.wait_for_timeout(300)
            page.screenshot(path=str(ARTIFACTS / "dashboard-dark.png"), full_page=True)
            page.locator("#theme").click()  # auto -> light, whatever the system says
            expect(page.locator("html")).to_have_attribute("data-theme", "light")
            page.set_viewport_size({"width": 390, "height": 844})
            page.wait_for_timeout(300)
            page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"))
            page.locator("#theme").click()
            expect(page.locator("html")).to_have_attribute("data-theme", "dark")
            page.wait_for_timeout(300)
            page.screenshot(path=str(ARTIFACTS / "dashboard-phone-dark.png"), full_page=True)
        finally:
            context.close()
    unexpected = [p for p in problems if "401" not in p]  # the wrong token, on purpose
    assert not unexpected, unexpected
