"""Real loopback receivers for the notification tests: HTTP and SMTP, each in a thread.

Both record what arrived; the HTTP one answers from a script of status codes (then its
default), so a test can say "500 twice, then 200".
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import json
import socketserver
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from watchkeeper.model.alerts import Alert, AlertState, Severity, fingerprint_of
from watchkeeper.notify import Notifier

#: Monday 2026-01-05 12:00 UTC; the tests read local time as UTC (see ``utc_local``).
NOON = dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.UTC).timestamp()


def utc_local(ts: float) -> dt.datetime:
    """Quiet hours are local wall time; the tests fix "local" to UTC."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).replace(tzinfo=None)


class Clock:
    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    at: float


@dataclass
class HttpReceiver:
    server: ThreadingHTTPServer
    script: list[int] = field(default_factory=list)
    default: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hook/secret-token"

    def bodies(self) -> list[Any]:
        return [r.body for r in self.requests]

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.requests)} of {count} requests arrived")
            await asyncio.sleep(0.01)
        return list(self.requests)


def handler_for(receiver: HttpReceiver) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            with lock:
                status = receiver.script.pop(0) if receiver.script else receiver.default
                receiver.requests.append(
                    Received(self.path, dict(self.headers), json.loads(raw), time.monotonic())
                )
            reply = b'{"status":"ok"}'
            self.send_response(status)
            for name, value in receiver.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

    return Handler


# -- SMTP -----------------------------------------------------------------------------
@dataclass
class SmtpReceiver:
    server: socketserver.ThreadingTCPServer
    refuse: set[str] = field(default_factory=set)
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    sessions: int = 0

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.messages)} of {count} messages arrived")
            await asyncio.sleep(0.01)
        return list(self.messages)


def smtp_handler(rec: SmtpReceiver) -> type[socketserver.StreamRequestHandler]:
    class Handler(socketserver.StreamRequestHandler):
        """Just enough SMTP: greeting, EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT."""

        def reply(self, line: str) -> None:
            self.wfile.write(line.encode() + b"\r\n")
            self.wfile.flush()

        def handle(self) -> None:
            rec.sessions += 1
            sender = ""
            recipients: list[str] = []
            self.reply("220 test-smtp ready")
            while True:
                line = self.rfile.readline()
                if not line:
                    return
                command = line.decode("ascii", "replace").strip()
                verb = command[:4].upper()
                if verb in ("EHLO", "HELO"):
                    self.reply("250 test-smtp")
                elif verb == "MAIL":
                    sender, recipients = command.split(":", 1)[1].strip(" <>"), []
                    self.reply("250 sender ok")
                elif verb == "RCPT":
                    address = command.split(":", 1)[1].strip(" <>")
                    if address in rec.refuse:
                        self.reply("550 no such mailbox")
                    else:
                        recipients.append(address)
                        self.reply("250 recipient ok")
                elif verb == "DATA":
                    self.reply("354 go ahead")
                    lines = []
                    while True:
                        data = self.rfile.readline()
                        if data in (b".\r\n", b".\n", b""):
                            break
                        lines.append(data[1:] if data.startswith(b"..") else data)
                    message = email.message_from_bytes(b"".join(lines), policy=email.policy.default)
                    assert isinstance(message, EmailMessage)
                    rec.messages.append(message)
                    rec.envelopes.append((sender, recipients))
                    self.reply("250 queued")
                elif verb in ("RSET", "NOOP"):
                    self.reply("250 ok")
                elif verb == "QUIT":
                    self.reply("221 bye")
                    return
                else:
                    self.reply("502 not implemented")

    return Handler


# -- alerts and the notifier ----------------------------------------------------------
def make_alert(
    rule: str = "cpu_high",
    subject: str = "web01",
    *,
    severity: Severity = Severity.WARNING,
    started_at: float = NOON,
    resolved_at: float | None = None,
    escalated: bool = False,
) -> Alert:
    return Alert(
        id=f"{rule}-{subject}",
        fingerprint=fingerprint_of(rule, subject),
        rule=rule,
        severity=severity,
        subject=subject,
        summary=f"{rule} on {subject}: CPU at 97%",
        evidence={"cpu.percent": 97.25},
        state=AlertState.RESOLVED if resolved_at is not None else AlertState.FIRING,
        started_at=started_at,
        updated_at=resolved_at or started_at,
        resolved_at=resolved_at,
        escalated=escalated,
    )


def resolve(alert: Alert, at: float) -> Alert:
    return alert.model_copy(
        update={"state": AlertState.RESOLVED, "resolved_at": at, "updated_at": at}
    )


async def settle(notifier: Notifier, timeout: float = 10.0) -> None:
    """Wait until every channel's queue is empty and nothing is being sent."""
    deadline = time.monotonic() + timeout
    while True:
        stats = notifier.stats()
        if all(c.queued == 0 and not c.sending for c in stats.channels):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"notifier did not settle: {stats}")
        await asyncio.sleep(0.01)
