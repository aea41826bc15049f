"""The model never lowers what the rules found, in a real ``watchkeeper run``.

The daemon watches this host with thresholds that make a memory alert fire at once
(critical: memory is surely above 2 %), and asks the fake Ollama, whose "model" insists
the host is healthy. What a user sees: the analysis is critical, the model's opinion is
kept and named as such, and its latency, tokens and tokens/s are in ``/api/analysis`` and
in the Prometheus metrics.
"""

from __future__ import annotations

import contextlib
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

from watchkeeper.testing.fake_ollama import FakeOllama, Reply
from watchkeeper.testing.overrides import QUIET_BUT_MEMORY

HEALTHY = {
    "verdict": "healthy",
    "summary": "everything looks fine to me",
    "recommended_actions": [],
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _until(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
            last = check()
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:g}s (last: {last!r})")


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(["gemma3:270m"]) as server:
        server.set_reply_fn(lambda body: Reply(json_obj=HEALTHY))
        yield server


@pytest.fixture
def daemon(tmp_path: Path, fake: FakeOllama) -> Iterator[str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHKEEPER_", "OLLAMA"))}
    argv = [sys.executable, "-m", "watchkeeper", "run", "--data-dir", str(tmp_path / "data")]
    argv += ["--port", str(port), "--interval", "0.5"]
    settings = (
        *QUIET_BUT_MEMORY,
        "ollama.enabled=true",
        f'ollama.url="{fake.url}"',
        'ollama.model="gemma3:270m"',
    )
    for item in settings:
        argv += ["--set", item]
    with (tmp_path / "stderr.txt").open("wb") as err:
        proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        url = f"http://127.0.0.1:{port}"
        _until("the daemon answers", lambda: httpx.get(url + "/api/health", timeout=5))
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_a_model_that_says_healthy_cannot_lower_a_critical_verdict(
    daemon: str, fake: FakeOllama
) -> None:
    def answered() -> dict[str, Any] | None:
        got: dict[str, Any] | None = httpx.get(daemon + "/api/analysis", timeout=5).json()[
            "latest_llm"
        ]
        return got

    analysis = _until("the model's analysis", answered)
    assert analysis["source"].startswith("gemma3:270m")
    assert analysis["verdict"] == "critical"  # the rules' floor
    assert analysis["model_verdict"] == "healthy"  # the model's opinion, kept
    assert analysis["rules_verdict"] == "critical"
    assert analysis["summary"] == "everything looks fine to me"
    assert analysis["latency_s"] > 0
    assert analysis["completion_tokens"] > 0 and analysis["tokens_per_s"] > 0

    (body, *_) = fake.bodies("/api/chat")
    assert body["stream"] is True and body["keep_alive"] == "30m"
    assert body["options"]["num_predict"] == 384

    metrics = httpx.get(daemon + "/metrics", timeout=5).text
    for name in ("latency_seconds", "completion_tokens", "tokens_per_second"):
        assert f"watchkeeper_llm_last_{name} " in metrics, name
