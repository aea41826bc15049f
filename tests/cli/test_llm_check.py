"""``watchkeeper llm check``: the real CLI, as a subprocess, against the fake Ollama on
loopback in its normal mode and its fault modes. Asserts on what a person sees (the
lines, the exit code) and on what the server received."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from watchkeeper.testing.fake_ollama import FakeOllama, Reply

GOOD = {
    "verdict": "critical",
    "summary": "web is down and stress-ng pins a core",
    "recommended_actions": [
        {
            "action": "restart_service",
            "target": "S1",
            "reason": "web failed",
            "evidence": ["E1"],
            "confidence": "high",
        }
    ],
}


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(models=["gemma3:270m"]) as server:
        yield server


def check(url: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHKEEPER_", "OLLAMA_"))}
    env["NO_COLOR"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "watchkeeper", "llm", "check", "--url", url, *extra],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # no watchkeeper.toml here: the defaults, as on a fresh host
        env=env,
    )


def lines(out: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in out.splitlines():
        label, _, rest = line.partition(":")
        found.setdefault(label.strip(), rest.strip())
    return found


def test_a_working_model_is_reported_with_its_figures(fake: FakeOllama, tmp_path: Path) -> None:
    fake.script([Reply(json_obj=GOOD)])
    done = check(fake.url, tmp_path, "--model", "gemma3:270m")
    assert done.returncode == 0, done.stdout + done.stderr
    seen = lines(done.stdout)
    assert seen["server"] == f"{fake.url} reachable (Ollama {fake.version})"
    assert seen["model"] == "gemma3:270m present; context 32768 tokens, num_ctx 4096"
    assert seen["reply"].startswith("schema-valid in ")
    assert "tokens/s" in seen["tokens"] and "completion " in seen["tokens"]
    assert seen["verdict"] == "critical (the rules agree)"
    assert seen["proposes"] == "restart_service on service web (confidence 0.9)"
    assert seen["result"].startswith("ok")
    (body,) = fake.bodies("/api/chat")
    assert body["stream"] is True and body["keep_alive"] == "30m"
    assert body["options"]["num_ctx"] == 4096
    assert "anyOf" in body["format"]["properties"]["recommended_actions"]["items"]


def test_json_report_says_the_model_disagrees_with_the_rules(
    fake: FakeOllama, tmp_path: Path
) -> None:
    fake.script([Reply(json_obj={**GOOD, "verdict": "healthy"})])
    done = check(fake.url, tmp_path, "--model", "gemma3:270m", "--json")
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    assert report["valid"] is True and report["exit_code"] == 0
    assert (report["verdict"], report["expected_verdict"]) == ("healthy", "critical")
    fake.script([Reply(json_obj={**GOOD, "verdict": "healthy"})])
    text = check(fake.url, tmp_path, "--model", "gemma3:270m").stdout
    assert lines(text)["verdict"] == "healthy (the rules say critical)"
    assert report["context_length"] == 32768
    assert isinstance(report["latency_s"], float) and isinstance(report["tokens_per_s"], float)
    assert report["completion_tokens"] > 0


def test_a_server_that_is_down_is_exit_3_in_one_clear_report(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    done = check(url, tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    seen = lines(done.stdout)
    assert seen["server"] == f"{url} NOT reachable"
    assert seen["problem"] == "unavailable (connection refused)"
    assert "Traceback" not in done.stdout + done.stderr


def test_a_model_that_is_not_pulled_is_exit_4_and_says_how_to_fix(
    fake: FakeOllama, tmp_path: Path
) -> None:
    done = check(fake.url, tmp_path, "--model", "mistral")
    assert done.returncode == 4, done.stdout
    seen = lines(done.stdout)
    assert seen["model"].startswith("mistral NOT pulled")
    assert seen["result"] == "pull it first: ollama pull mistral"
    assert fake.bodies("/api/chat") == []  # nothing was asked of a model that is not there


@pytest.mark.parametrize(
    ("reply", "extra", "problem"),
    [
        (Reply(fault="garbage"), (), "not JSON"),
        (
            Reply(content='{"verdict": "critical", "summary": "web is do', done_reason="length"),
            (),
            "cut at the token limit, done_reason=length",
        ),
        (Reply(json_obj=GOOD, latency=4), ("--set", "ollama.timeout=1"), "timeout after 1s"),
        (Reply(json_obj=GOOD, fault="trickle"), ("--set", "ollama.timeout=2"), "timeout after"),
        (Reply(fault="404"), (), "model 'gemma3:270m' not found"),
        (Reply(fault="503"), (), "unavailable (server busy)"),
    ],
    ids=["garbage", "cut", "slow", "trickle", "404-on-chat", "busy"],
)
def test_an_unusable_reply_is_reported_with_why(
    fake: FakeOllama, tmp_path: Path, reply: Reply, extra: tuple[str, ...], problem: str
) -> None:
    fake.script([reply])
    done = check(fake.url, tmp_path, "--model", "gemma3:270m", *extra)
    expected_code = 4 if "not found" in problem else 1
    assert done.returncode == expected_code, done.stdout + done.stderr
    seen = lines(done.stdout)
    if expected_code == 1:
        assert seen["reply"].startswith("NOT usable after "), seen
        assert problem in seen["reply"], seen
        assert seen["result"].startswith("the model answered, but nothing usable")
    else:
        assert problem in seen["problem"], seen
    assert "Traceback" not in done.stdout + done.stderr
    assert len(fake.bodies("/api/chat")) == 1  # one attempt: the first answer is the answer


def test_a_bad_flag_is_one_line_and_exit_2(fake: FakeOllama, tmp_path: Path) -> None:
    done = check(fake.url, tmp_path, "--set", "ollama.timeout=-5")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("watchkeeper: config error") and "timeout" in line
