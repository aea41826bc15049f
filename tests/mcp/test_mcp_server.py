"""The MCP server on a real ``watchkeeper run``, through the SDK's own client.

One daemon (auto mode: a rule's restart would run at once) serves the module. Its tools
are called over stdio (``stdio_client`` launching ``watchkeeper mcp``) and over streamable
HTTP against ``/mcp``; their answers are compared with the REST API's. ``propose_action``
must leave a pending approval and change nothing; no token is refused; hostile arguments
get a clear tool error and the daemon keeps running; the token appears in no answer.
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
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, Implementation, TextContent

from mcp import ClientSession
from watchkeeper.mcp_server.tools import TOOL_NAMES

pytestmark = pytest.mark.e2e

CLIENT = Implementation(name="wk-test-assistant", version="1.2")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Daemon:
    api: str
    token: str
    config: Path
    demo_port: int
    tmp: Path

    def rest(self, path: str, **params: Any) -> Any:
        headers = {"authorization": f"Bearer {self.token}"}
        return httpx.get(self.api + path, params=params, headers=headers, timeout=10).json()


def write_config(tmp: Path, api: int, demo: int) -> Path:
    py = json.dumps(sys.executable)
    text = f"""
data_dir = {json.dumps(str(tmp / "data"))}
personality = "plain"
status_interval = 0.5

[web]
port = {api}

[agents]
check_interval = 1.0

[remediation]
mode = "auto"
healing_cooldown = 1
crash_loop_backoff_initial = 0.2
crash_loop_backoff_max = 1.0
crash_loop_max_failures = 3

[ollama]
enabled = false

[[services]]
name = "demo"
argv = [{py}, "-m", "http.server", "{demo}", "--bind", "127.0.0.1"]
min_uptime = 0.5
probe = {{ kind = "http", url = "http://127.0.0.1:{demo}/", expect_status = 200 }}

[[services]]
name = "broken"
argv = [{py}, "-c", "import sys; sys.exit(3)"]
min_uptime = 1.0
"""
    path = tmp / "watchkeeper.toml"
    path.write_text(text)
    return path


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            value = predicate()
            if value:
                return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("mcp")
    api, demo = free_port(), free_port()
    config = write_config(tmp, api, demo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "watchkeeper", "run", "--config", str(config)],
        cwd=tmp,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{api}"
        wait_for(lambda: httpx.get(url + "/api/health", timeout=1).status_code == 200, 30, "web")
        token = (tmp / "data" / "api_token").read_text().strip()
        found = Daemon(url, token, config, demo, tmp)
        wait_for(lambda: found.rest("/api/metrics/names", prefix="cpu")["names"], 30, "history")
        wait_for(lambda: found.rest("/api/alerts")["firing"], 30, "an alert (broken service)")
        yield found
        assert proc.poll() is None, "the daemon died during the tests"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        assert "Traceback" not in err, err[-3000:]


@contextlib.asynccontextmanager
async def over_stdio(daemon: Daemon, *extra: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "watchkeeper", "mcp", "--config", str(daemon.config), *extra],
        env=clean_env(),
        cwd=str(daemon.tmp),
    )
    with open(os.devnull, "w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write, client_info=CLIENT) as session,
        ):
            await session.initialize()
            yield session


@contextlib.asynccontextmanager
async def over_http(daemon: Daemon, token: str | None) -> AsyncIterator[ClientSession]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(daemon.api + "/mcp", http_client=http) as (read, write),
        ClientSession(read, write, client_info=CLIENT) as session,
    ):
        await session.initialize()
        yield session


def text_of(result: CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, TextContent))


async def answer(session: ClientSession, tool: str, **arguments: Any) -> Any:
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, f"{tool}: {text_of(result)}"
    return json.loads(text_of(result))


async def refusal(session: ClientSession, tool: str, **arguments: Any) -> str:
    result = await session.call_tool(tool, arguments)
    assert result.is_error, f"{tool} should have failed: {text_of(result)[:300]}"
    text = text_of(result)
    assert "Traceback" not in text and len(text) < 2000, text
    return text


@contextlib.asynccontextmanager
async def session_over(daemon: Daemon, transport: str) -> AsyncIterator[ClientSession]:
    if transport == "stdio":
        async with over_stdio(daemon) as session:
            yield session
    else:
        async with over_http(daemon, daemon.token) as session:
            yield session


TRANSPORTS = ["stdio", "http"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_every_read_tool_answers_what_the_rest_api_says(
    daemon: Daemon, transport: str
) -> None:
    async with session_over(daemon, transport) as session:
        listed = await session.list_tools()
        assert [t.name for t in listed.tools] == list(TOOL_NAMES)
        assert all(t.description and len(t.description) > 40 for t in listed.tools)

        status = await answer(session, "status")
        assert status["state"] == daemon.rest("/api/system")["state"] == "running"
        agents = await answer(session, "agents")
        assert sorted(agents) == sorted(daemon.rest("/api/agents"))

        now = await answer(session, "metrics_now", flat=True)
        assert set(now["metrics"]) >= {"cpu.percent", "memory.percent"}
        assert "cpu" in await answer(session, "metrics_now")

        names = await answer(session, "metric_names", prefix="cpu")
        assert names == daemon.rest("/api/metrics/names", prefix="cpu")
        end = time.time() - 2  # a fixed window: the same points both ways
        history = await answer(session, "metric_history", metric="cpu.percent", range="5m", end=end)
        rest = daemon.rest("/api/metrics/history", metric="cpu.percent", range="5m", end=end)
        assert history == rest and history["points"]

        alerts = await answer(session, "alerts", range="1h")
        rest_alerts = daemon.rest("/api/alerts", range="1h")
        assert [a["id"] for a in alerts["firing"]] == [a["id"] for a in rest_alerts["firing"]]
        assert alerts["history"] is not None

        incidents = await answer(session, "incidents", state="all")
        rest_incidents = daemon.rest("/api/incidents", state="all")
        assert [i["id"] for i in incidents["incidents"]] == [
            i["id"] for i in rest_incidents["incidents"]
        ]
        if incidents["incidents"]:
            first = incidents["incidents"][0]["id"]
            one = await answer(session, "incident", incident_id=first)
            assert one["incident"]["id"] == first if "incident" in one else one["id"] == first

        analysis = await answer(session, "analysis", history=5)
        rest_analysis = daemon.rest("/api/analysis", history=5)
        assert analysis["analyzer"] is True and set(analysis) == set(rest_analysis)

        audit = await answer(session, "remediation_audit", limit=100)
        rest_audit = daemon.rest("/api/remediation", limit=100)
        assert audit["mode"] == rest_audit["mode"] == "auto" and "actions" not in audit
        assert {r["id"] for r in audit["audit"]} <= {r["id"] for r in rest_audit["audit"]} | {
            r["id"] for r in daemon.rest("/api/remediation", limit=100)["audit"]
        }
        actions = await answer(session, "list_actions")
        assert actions["actions"] == rest_audit["actions"]

        alert = rest_alerts["firing"][0]
        explained = await answer(session, "explain_alert", alert=alert["id"])
        assert explained["alert"]["id"] == alert["id"]
        by_fingerprint = await answer(session, "explain_alert", alert=alert["fingerprint"])
        assert by_fingerprint["alert"]["fingerprint"] == alert["fingerprint"]
        assert set(explained) == {"alert", "explanation", "analyses", "incident", "actions"}


def demo_pid(daemon: Daemon) -> int | None:
    services = daemon.rest("/api/system")["details"]["sensor"]["services"]
    return next((s["pid"] for s in services if s["name"] == "demo" and s["pid"]), None)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_proposal_waits_for_a_person_and_nothing_runs(
    daemon: Daemon, transport: str
) -> None:
    before = wait_for(lambda: demo_pid(daemon), 20, "the demo service's pid")
    async with session_over(daemon, transport) as session:
        record = await answer(
            session,
            "propose_action",
            action="restart_service",
            target="demo",
            reason="the assistant thinks demo is slow",
            requested_by="alice",
        )
    assert record["outcome"] == "pending" and record["proposer"] == "mcp"
    assert record["proposed_by"] == "mcp client wk-test-assistant 1.2 for alice" or (
        transport == "http" and record["proposed_by"] == "mcp client unnamed for alice"
    )
    pending = daemon.rest("/api/remediation")["pending"]
    assert record["id"] in [p["id"] for p in pending]
    mine = next(p for p in pending if p["id"] == record["id"])
    assert mine["proposer"] == "mcp" and "MCP client" in mine["detail"]
    time.sleep(2)  # auto mode: a rule's restart would have run by now
    assert demo_pid(daemon) == before
    ran = [
        r
        for r in daemon.rest("/api/remediation", limit=1000)["audit"]
        if r["target"] == "demo" and r["outcome"] in ("running", "succeeded", "failed")
    ]
    assert ran == []
    # Tidy up for the other transport: a person rejects it.
    body = {"command": "reject", "target": "remediator", "params": {"id": record["id"]}}
    headers = {"authorization": f"Bearer {daemon.token}"}
    assert httpx.post(daemon.api + "/api/command", json=body, headers=headers).status_code == 200


async def test_mcp_over_http_needs_the_token(daemon: Daemon) -> None:
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "x", "version": "1"},
        },
    }
    accept = {"accept": "application/json, text/event-stream"}
    for headers in ({}, {"authorization": "Bearer wrong-token-of-some-length"}):
        post = httpx.post(daemon.api + "/mcp", json=init, headers={**accept, **headers})
        assert post.status_code == 401 and "token" in post.json()["detail"]
        got = httpx.get(daemon.api + "/mcp", headers={**accept, **headers})
        assert got.status_code == 401
    ok = httpx.post(
        daemon.api + "/mcp",
        json=init,
        headers={**accept, "authorization": f"Bearer {daemon.token}"},
    )
    assert ok.status_code == 200, ok.text
    with pytest.raises(Exception):  # noqa: B017 - the SDK's own error for a 401
        async with over_http(daemon, None) as session:
            await session.list_tools()
    proposals = httpx.post(daemon.api + "/api/mcp/proposals", json={"action": "noop"})
    assert proposals.status_code == 401


async def test_stdio_with_a_wrong_token_says_so(daemon: Daemon) -> None:
    # Reads follow the REST API (open unless web.open_reads is false); a proposal is a
    # change, so it needs the right token.
    async with over_stdio(daemon, "--token", "not-the-token-at-all") as session:
        text = await refusal(session, "propose_action", action="restart_service", reason="x")
    assert "refused the API token" in text


async def test_stdio_with_no_daemon_says_how_to_start_one(daemon: Daemon) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    async with over_stdio(daemon, "--url", nobody, "--token", daemon.token) as session:
        text = await refusal(session, "status")
        assert "no watchkeeper answers" in text and "watchkeeper run" in text
        assert daemon.token not in text
        assert [t.name for t in (await session.list_tools()).tools] == list(TOOL_NAMES)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_hostile_input_is_a_clear_error_and_the_daemon_keeps_running(
    daemon: Daemon, transport: str
) -> None:
    huge = "A" * 200_000
    async with session_over(daemon, transport) as session:
        cases: list[tuple[str, dict[str, Any], str]] = [
            ("propose_action", {"action": "rm_rf", "reason": "x"}, "unknown action"),
            ("propose_action", {"action": "restart_service", "target": huge, "reason": "x"}, ""),
            ("propose_action", {"action": "x" * 5000, "reason": "x"}, ""),
            (
                "propose_action",
                {"action": "clean_directory", "target": "/tmp/../etc", "reason": "x"},
                "'..'",
            ),
            (
                "propose_action",
                {"action": "clean_directory", "target": "/etc", "reason": "x"},
                "refused",
            ),
            (
                "propose_action",
                {"action": "restart_service", "target": "demo\x00; rm -rf /", "reason": "x"},
                "control characters",
            ),
            (
                "propose_action",
                {
                    "action": "restart_service",
                    "target": "demo",
                    "reason": "x",
                    "params": {"a": [1]},
                },
                "parameter",
            ),
            ("metric_history", {"metric": "../../etc/passwd"}, "not a metric name"),
            ("metric_history", {"metric": "cpu.nonexistent_metric"}, "no stored metric"),
            ("metric_history", {"metric": "cpu.percent", "range": "999d"}, "between"),
            ("metric_history", {"metric": "cpu.percent", "range": "soon"}, "not a duration"),
            ("metric_history", {"metric": huge}, ""),
            ("incident", {"incident_id": "../../api/system"}, "not an id"),
            ("explain_alert", {"alert": "no-such-alert"}, "no alert"),
            ("alerts", {"limit": 10**9}, ""),
            ("alerts", {"range": "-5m"}, "not a duration"),
        ]
        for tool, arguments, words in cases:
            text = await refusal(session, tool, **arguments)
            assert words in text, (tool, text)
        # Still serving, and nothing waits for approval from all that.
        assert (await answer(session, "status"))["state"] == "running"
    assert httpx.get(daemon.api + "/api/health", timeout=5).status_code == 200
    remediation = daemon.rest("/api/remediation", limit=1000)
    assert remediation["pending"] == []
    # What the gate refused, it audited, as the client's.
    refused = [r for r in remediation["audit"] if r["target"] == "/etc"]
    assert refused and refused[-1]["outcome"] == "refused" and refused[-1]["proposer"] == "mcp"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_no_answer_holds_a_secret(daemon: Daemon, transport: str) -> None:
    seen: list[str] = []
    async with session_over(daemon, transport) as session:
        for tool in TOOL_NAMES:
            arguments: dict[str, Any] = {}
            if tool == "metric_history":
                arguments = {"metric": "cpu.percent"}
            elif tool == "incident":
                arguments = {"incident_id": "none"}
            elif tool == "explain_alert":
                arguments = {"alert": daemon.rest("/api/alerts")["firing"][0]["id"]}
            elif tool == "propose_action":
                arguments = {"action": "no_such", "reason": "x"}
            seen.append(text_of(await session.call_tool(tool, arguments)))
    assert len(seen) == len(TOOL_NAMES)
    assert all(daemon.token not in text for text in seen)
