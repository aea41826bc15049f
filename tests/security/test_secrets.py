"""Secrets never leave a running watchkeeper, yet the channels still use them.

One real ``watchkeeper run`` is configured with a unique canary string in every
secret-bearing setting: a webhook's ``Authorization`` header, the userinfo and query key
of its URL, a Slack webhook URL, a PagerDuty routing key, an SMTP password and
``web.token``. The canaries are then looked for, as an attacker without the token would
look, in every GET endpoint the app declares (taken from its OpenAPI document, so new
routes are covered without touching this file), the dashboard pages, the live event
stream (``/api/events``) across a configuration change, the bus history with payloads,
the status file, the log files and the CLI's ``config show`` and ``config remote``.

Meanwhile the configuration must stay usable: a PATCH with a Slack channel present is
applied; the masked configuration read from ``GET /api/config`` can be sent back and the
channels still deliver with the real secrets (a loopback receiver records what arrived);
a new channel added by PATCH is used at once.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from config_daemon import ConfigDaemon, Receiver, clean_env, run_cli


def _canary(label: str) -> str:
    return f"canary{label}{secrets.token_hex(8)}"


CANARIES = {
    "header": _canary("hdr"),
    "url_user": _canary("usr"),
    "url_password": _canary("pwd"),
    "url_query": _canary("qry"),
    "slack": _canary("slk"),
    "pagerduty": _canary("pgd"),
    "smtp": _canary("smtp"),
    "web_token": _canary("tok"),
}


def _channels(receiver: Receiver) -> list[dict[str, Any]]:
    host = f"127.0.0.1:{receiver.port}"
    c = CANARIES
    return [
        {"type": "log", "name": "log"},
        {
            "type": "webhook",
            "name": "hook",
            "url": f"http://{host}/hook?key={c['url_query']}",
            "headers": {"Authorization": f"Bearer {c['header']}"},
        },
        {
            "type": "webhook",
            "name": "basic",
            "url": f"http://{c['url_user']}:{c['url_password']}@{host}/basic",
        },
        {"type": "slack", "name": "slack", "url": f"http://{host}/slack/{c['slack']}"},
        {
            "type": "pagerduty",
            "name": "pd",
            "routing_key": c["pagerduty"],
            "url": f"http://{host}/pd",
        },
        {
            "type": "email",
            "name": "mail",
            "host": "127.0.0.1",
            "port": 9,
            "username": "watchkeeper",
            "password": c["smtp"],
            "sender": "watchkeeper@example.invalid",
            "recipients": ["ops@example.invalid"],
            "timeout": 1,
        },
    ]


class EventTap:
    """Reads ``/api/events`` in a thread and keeps every byte it got."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.data = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        try:
            with httpx.stream("GET", self.url + "/api/events", timeout=5) as reply:
                for chunk in reply.iter_raw():
                    self.data.extend(chunk)
                    if self._stop.is_set():
                        return
        except httpx.HTTPError:
            return

    def __enter__(self) -> EventTap:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def wait_for(self, text: bytes, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.data:
                return
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never appeared on /api/events")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[ConfigDaemon]:
    root = tmp_path_factory.mktemp("secrets")
    settings = {
        "web": {"token": CANARIES["web_token"]},
        "notifications": {
            "group_wait": 0,
            "route": {"mail": "critical"},
            "retries": {"attempts": 1},
            "channels": _channels(receiver),
        },
    }
    with ConfigDaemon(root, settings) as running:
        yield running


@pytest.fixture(scope="module")
def exercised(daemon: ConfigDaemon, receiver: Receiver) -> dict[str, bytes]:
    """Everything an outsider can read, gathered after the configuration was changed
    (so config.changed went out) and notices were sent: name -> content."""
    seen: dict[str, bytes] = {}
    with EventTap(daemon.url) as tap:
        # Whether these succeed is for the tests below; here they only make traffic.
        seen["PATCH thresholds"] = daemon.patch({"thresholds.cpu_warning": 70}).content
        shown = httpx.get(daemon.url + "/api/config", timeout=10).json()["settings"]
        seen["PATCH round trip"] = daemon.patch({"notifications": shown["notifications"]}).content
        with contextlib.suppress(AssertionError):
            tap.wait_for(b"config.changed", timeout=5)
        seen["notify_test"] = daemon.command("notify_test", "communicator").content
        with contextlib.suppress(AssertionError):
            receiver.wait_for("/hook", timeout=10)
        time.sleep(1.5)  # a heartbeat or two more on the stream
    seen["GET /api/events"] = bytes(tap.data)
    seen.update(_every_get(daemon))
    seen["status file"] = (daemon.data_dir / "system_status.json").read_bytes()
    for path in sorted(daemon.data_dir.glob("agent_system.*")):
        seen[f"log {path.name}"] = path.read_bytes()
    seen["daemon output"] = daemon.output().encode()
    for args in (["config", "show"], ["config", "show", "--json"]):
        done = run_cli(*args, "--config", str(daemon.config), cwd=daemon.root)
        assert done.returncode == 0, done.stderr
        seen[" ".join(args)] = (done.stdout + done.stderr).encode()
    env = clean_env(WATCHKEEPER_TOKEN=daemon.token())
    for args in (["config", "remote"], ["config", "remote", "--json"]):
        done = run_cli(*args, "--url", daemon.url, cwd=daemon.root, env=env)
        assert done.returncode == 0, done.stderr
        seen[" ".join(args)] = (done.stdout + done.stderr).encode()
    return seen


def _fill(name: str, where: str, path: str) -> str:
    values = {
        "name": "communicator",
        "metric": "cpu.percent",
        "incident_id": "no-such-incident",
        "host": "no-such-host",
        "id": "no-such-id",
    }
    if name not in values:
        raise AssertionError(f"{path}: give the secrets test a value for {where} {name!r}")
    return values[name]


def _every_get(daemon: ConfigDaemon) -> dict[str, bytes]:
    """Every GET route in the OpenAPI document (plus the pages left out of it), with
    every boolean query parameter turned on (``payload=true`` and the like)."""
    schema = httpx.get(daemon.url + "/openapi.json", timeout=10).json()
    got: dict[str, bytes] = {"GET /openapi.json": json.dumps(schema).encode()}
    targets: list[tuple[str, dict[str, str]]] = [("/", {}), ("/docs", {}), ("/metrics", {})]
    for path, operations in schema["paths"].items():
        get = operations.get("get")
        if get is None or path == "/api/events":
            continue
        url, query = path, {}
        for param in get.get("parameters", []):
            kind, name = param["in"], param["name"]
            if kind == "path":
                url = url.replace("{" + name + "}", _fill(name, "path parameter", path))
            elif param.get("schema", {}).get("type") == "boolean":
                query[name] = "true"
            elif param.get("required"):
                query[name] = _fill(name, "query parameter", path)
            elif name == "limit":
                query[name] = str(param.get("schema", {}).get("maximum", 100))
        targets.append((url, query))
    assert any(url == "/api/bus" for url, _ in targets), "the OpenAPI document lost /api/bus"
    for url, query in targets:
        reply = httpx.get(daemon.url + url, params=query, timeout=15)
        assert reply.status_code < 500, f"GET {url}: {reply.status_code} {reply.text[:300]}"
        got[f"GET {url}?{query}"] = reply.content
    return got


@pytest.mark.parametrize("label", sorted(CANARIES))
def test_no_secret_is_readable_anywhere(exercised: dict[str, bytes], label: str) -> None:
    canary = CANARIES[label].encode()
    leaks = [where for where, content in exercised.items() if canary in content]
    assert leaks == [], f"the {label} secret is readable in: {leaks}"


def test_the_bus_history_with_payloads_was_searched(exercised: dict[str, bytes]) -> None:
    # The search above is only worth something if it saw the config.changed payloads.
    bus = next(v for k, v in exercised.items() if k.startswith("GET /api/bus?"))
    topics = [m["topic"] for m in json.loads(bus)["recent"] if "payload" in m]
    assert "config.changed" in topics


def test_every_secret_setting_shows_the_same_fixed_mask(daemon: ConfigDaemon) -> None:
    settings = httpx.get(daemon.url + "/api/config", timeout=10).json()["settings"]
    channels = {c["name"]: c for c in settings["notifications"]["channels"]}
    assert settings["web"]["token"] == "********"
    assert channels["hook"]["headers"] == "********"
    port = daemon.settings["notifications"]["channels"][1]["url"].split(":")[2].split("/")[0]
    assert channels["hook"]["url"] == f"http://127.0.0.1:{port}/hook?********"
    assert channels["basic"]["url"] == f"http://********@127.0.0.1:{port}/basic"
    assert channels["slack"]["url"] == "********"
    assert channels["pd"]["routing_key"] == "********"
    assert channels["mail"]["password"] == "********"


def test_channels_deliver_with_the_real_secrets_after_the_mask_went_back(
    exercised: dict[str, bytes], receiver: Receiver
) -> None:
    c = CANARIES
    hook = receiver.wait_for("/hook")[-1]
    assert hook.path == f"/hook?key={c['url_query']}"
    assert hook.headers["Authorization"] == f"Bearer {c['header']}"
    slack = receiver.wait_for("/slack/")[-1]
    assert slack.path == f"/slack/{c['slack']}"
    pagerduty = receiver.wait_for("/pd")[-1]
    assert json.loads(pagerduty.body)["routing_key"] == c["pagerduty"]


def test_webhook_userinfo_still_authenticates(
    exercised: dict[str, bytes], receiver: Receiver
) -> None:
    # The URL's userinfo is sent as Basic auth, as the operator configured it.
    request = receiver.wait_for("/basic")[-1]
    basic = base64.b64encode(f"{CANARIES['url_user']}:{CANARIES['url_password']}".encode())
    assert request.headers["Authorization"] == f"Basic {basic.decode()}"


def test_a_patch_with_slack_configured_is_applied(daemon: ConfigDaemon) -> None:
    reply = daemon.patch({"thresholds.cpu_warning": 66})
    assert reply.status_code == 200, reply.text
    shown = httpx.get(daemon.url + "/api/config", timeout=10).json()["settings"]
    assert shown["thresholds"]["cpu_warning"] == 66


def test_sending_the_mask_for_a_new_channel_is_refused(daemon: ConfigDaemon) -> None:
    shown = httpx.get(daemon.url + "/api/config", timeout=10).json()["settings"]
    channels = shown["notifications"]["channels"]
    fresh = {"type": "slack", "name": "other-slack", "url": "********"}
    reply = daemon.patch({"notifications.channels": [*channels, fresh]})
    assert reply.status_code == 422
    assert "mask" in reply.text


def test_a_new_channel_is_used_without_a_restart(
    exercised: dict[str, bytes], daemon: ConfigDaemon, receiver: Receiver
) -> None:
    shown = httpx.get(daemon.url + "/api/config", timeout=10).json()["settings"]
    channels = shown["notifications"]["channels"]
    added = {"type": "webhook", "name": "added", "url": f"{receiver.url}/added"}
    reply = daemon.patch({"notifications.channels": [*channels, added]})
    assert reply.status_code == 200, reply.text
    assert daemon.command("notify_test", "communicator").status_code == 200
    assert receiver.wait_for("/added")
    # The channels that were there keep their real secrets through the change.
    before = len(receiver.to("/pd"))
    assert daemon.command("notify_test", "communicator", severity="warning").status_code == 200
    pagerduty = receiver.wait_for("/pd", before + 1)[-1]
    assert json.loads(pagerduty.body)["routing_key"] == CANARIES["pagerduty"]


def test_a_persisted_change_keeps_the_real_secrets_in_the_file(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = {
        "notifications": {"group_wait": 0, "channels": _channels(receiver)[:4]},
    }
    with ConfigDaemon(tmp_path, settings) as daemon:
        shown = httpx.get(daemon.url + "/api/config", timeout=10).json()["settings"]
        reply = daemon.patch({"notifications": shown["notifications"]}, persist=True)
        assert reply.status_code == 200, reply.text
        assert CANARIES["slack"].encode() not in reply.content
    text = daemon.config.read_text(encoding="utf-8")
    assert CANARIES["slack"] in text and CANARIES["header"] in text
    assert "********" not in text
