"""A real ``watchkeeper run`` whose process service writes to stderr and dies: its alert
carries those lines (the tail of the captured output), in the API and on the dashboard
in headless Chromium, as text. Approve mode, so nothing is restarted behind the test.
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
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.browser

MARKUP = "<img src=x onerror=alert(1)>"
FATAL = "fatal: cannot open /etc/app.conf: No such file or directory"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(tmp_path: Path) -> Path:
    code = (
        "import sys; print('loading config', flush=True); "
        f"sys.stderr.write({MARKUP!r} + '\\n'); sys.stderr.write({FATAL!r} + '\\n'); "
        "sys.exit(1)"
    )
    path = tmp_path / "wk.toml"
    path.write_text(
        'personality = "plain"\n\n[ollama]\nenabled = false\n\n'
        '[remediation]\nmode = "approve"\n\n'
        f'[[services]]\nname = "app"\nargv = [{sys.executable!r}, "-c", {code!r}]\n'
        "critical = true\nmin_uptime = 0.5\n"
    )
    return path


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[str]:
    port = _port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHKEEPER_", "OLLAMA_"))}
    env["NO_COLOR"] = "1"
    argv = [
        sys.executable, "-m", "watchkeeper", "run", "--config", str(_config(tmp_path)),
        "--data-dir", str(tmp_path / "data"), "--interval", "0.5", "--port", str(port),
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"watchkeeper exited: {proc.communicate()[1][-3000:]}")
            try:
                if httpx.get(f"{url}/api/alerts", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the daemon did not come up in time"
            time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        assert "Traceback" not in err, err[-3000:]


def _down_alert(url: str) -> dict[str, Any] | None:
    firing = httpx.get(f"{url}/api/alerts", timeout=5).json().get("firing", [])
    for alert in firing:
        if alert["rule"] == "service_down" and alert["evidence"].get("journal"):
            return alert  # type: ignore[no-any-return]
    return None


def test_the_dashboard_shows_a_dead_process_services_last_words(
    daemon: str, tmp_path: Path
) -> None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed")
        pytest.skip("chromium is not installed: apt-get install -y chromium")
    from playwright.sync_api import expect, sync_playwright

    deadline = time.monotonic() + 30
    while (alert := _down_alert(daemon)) is None:
        assert time.monotonic() < deadline, "no service_down alert with the journal"
        time.sleep(0.3)
    assert alert["evidence"]["journal"][-2:] == [MARKUP, FATAL]

    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=found, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("dialog", lambda d: problems.append(f"a dialog opened: {d.message}"))
            page.goto(daemon)
            block = page.locator("#alerts li[data-fingerprint] pre.journal").first
            expect(block).to_contain_text(FATAL, timeout=15_000)
            assert MARKUP in (block.text_content() or "")
            assert page.locator("#alerts img").count() == 0  # the line stayed text
        finally:
            browser.close()
    assert problems == []
