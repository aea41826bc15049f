"""The fake Ollama's HTTP side: routing, Ollama's status codes, streaming, faults.

Speaks HTTP/1.1 with keep-alive like Ollama: JSON answers carry a Content-Length, streamed
answers are NDJSON in chunked transfer encoding, one object per line. With a real model
(:mod:`watchkeeper.testing._real_model`) chat and generate are answered by it, token by
token as it writes; a client that hangs up stops the generation.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import urlsplit

from watchkeeper.testing._fake_protocol import (
    BUSY_MESSAGE,
    GARBAGE_CONTENT,
    OVERSIZED_BYTES,
    RUNNER_CRASHED,
    STREAM_BROKE,
    TRICKLE_BYTE_S,
    FakeModel,
    Reply,
    default_content,
    durations,
    message_part,
    parse_keep_alive,
    request_text,
)
from watchkeeper.testing._fake_state import FakeState, RecordedRequest

__all__ = ["FakeHTTPServer"]


def _dumps(obj: Any) -> bytes:
    # Compact, like the Go encoder behind Ollama.
    return json.dumps(obj, separators=(",", ":")).encode()


class FakeHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that carries the fake's state for its handlers."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: FakeState) -> None:
        self.state = state
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout) or a fake that is stopping is not an error.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "watchkeeper-fake-ollama"
    sys_version = ""
    timeout = 30  # idle keep-alive connections end on their own
    disable_nagle_algorithm = True  # small writes must not wait for delayed ACKs

    def version_string(self) -> str:
        return self.server_version

    @property
    def fake(self) -> FakeState:
        return cast(FakeHTTPServer, self.server).state

    def setup(self) -> None:
        super().setup()
        self.fake.track(self.connection, open_=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.fake.track(self.connection, open_=False)

    def log_message(self, format: str, *args: Any) -> None:
        self.fake.log_line(f"{self.address_string()} {format % args}")

    # -- plumbing ---------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, _dumps(obj), "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _chunk(self, obj: Any) -> None:
        data = _dumps(obj) + b"\n"
        self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))

    # -- routing ----------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True

    def _route(self) -> None:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        raw = self._read_body() if self.command in ("POST", "DELETE") else b""
        body: Any = None
        parse_error: str | None = None
        if raw.strip():
            try:
                body = json.loads(raw)
            except json.JSONDecodeError as exc:
                parse_error = f"invalid character in request body: {exc.msg} (offset {exc.pos})"
            except UnicodeDecodeError:
                parse_error = "invalid UTF-8 in request body"
        self.fake.record(
            RecordedRequest(
                method=self.command,
                path=path,
                body=body if isinstance(body, dict) else None,
                raw=raw,
                headers={k.lower(): v for k, v in self.headers.items()},
            )
        )
        route = (self.command, path)
        if route in (("GET", "/"), ("HEAD", "/")):
            self._send(200, b"Ollama is running", "text/plain; charset=utf-8")
        elif route in (("GET", "/api/version"), ("HEAD", "/api/version")):
            self._json(200, {"version": self.fake.version})
        elif route in (("GET", "/api/tags"), ("HEAD", "/api/tags")):
            self._json(200, {"models": self.fake.tag_entries()})
        elif route == ("GET", "/api/ps"):
            self._json(200, {"models": self.fake.ps_entries()})
        elif self.command == "POST" and path in ("/api/chat", "/api/generate", "/api/show"):
            if parse_error is not None or not raw.strip():
                self._error(400, parse_error or "missing request body")
            elif not isinstance(body, dict):
                kind = "array" if isinstance(body, list) else type(body).__name__
                self._error(400, f"json: cannot unmarshal {kind} into Go value of type api.Request")
            elif path == "/api/show":
                self._show(body)
            else:
                self._generate("chat" if path == "/api/chat" else "generate", body)
        else:
            self._send(404, b"404 page not found", "text/plain")

    def _show(self, body: dict[str, Any]) -> None:
        name = body.get("model") or body.get("name")
        if not isinstance(name, str) or not name:
            self._error(400, "model is required")
            return
        model = self.fake.find_model(name)
        if model is None:
            self._error(404, f"model '{name}' not found")
            return
        self._json(200, model.show_body(self.fake.modified_at))

    def _invalid(self, endpoint: str, body: dict[str, Any], model: FakeModel) -> str | None:
        fmt = body.get("format")
        if fmt not in (None, "", "json") and not isinstance(fmt, dict):
            return f"invalid format: {json.dumps(fmt)[:40]}"
        if body.get("options") is not None and not isinstance(body.get("options"), dict):
            return "json: cannot unmarshal options into Go value of type map[string]interface {}"
        if endpoint == "chat" and not isinstance(body.get("messages", []), list):
            return "json: cannot unmarshal messages into Go value of type []api.Message"
        think = body.get("think")
        if think not in (None, False) and "thinking" not in model.capabilities:
            return f'"{body["model"]}" does not support thinking'
        return None

    def _generate(self, endpoint: str, body: dict[str, Any]) -> None:
        started = time.monotonic()
        name = body.get("model")
        if not isinstance(name, str) or not name:
            self._error(400, "model is required")
            return
        model = self.fake.find_model(name)
        if model is None:
            self._error(404, f"model '{name}' not found")
            return
        problem = self._invalid(endpoint, body, model)
        if problem is not None:
            self._error(400, problem)
            return
        if self.fake.real_model is not None:
            self._real(endpoint, body, model)
            return
        self.fake.mark_loaded(model, body.get("keep_alive"))
        prompt = request_text(body)
        if not prompt.strip():
            # Ollama answers an empty request by loading the model: done_reason "load".
            final = message_part(endpoint, name, "", done=True)
            self._json(200, {**final, "done_reason": "load"})
            return
        reply = self.fake.next_reply(body)
        latency = reply.latency if reply.latency is not None else self.fake.latency
        if latency > 0 and self.fake.stopping.wait(latency):
            self._drop()
            return
        stream = body.get("stream", True) is not False
        if self._fault(reply, endpoint, name, body, stream):
            return
        content = reply.text()
        if content is None:
            content = default_content(body)
        if reply.fault == "garbage":
            content = GARBAGE_CONTENT
        done_reason = reply.done_reason
        options = body.get("options") or {}
        limit = options.get("num_predict")
        if isinstance(limit, int) and limit > 0 and len(content) > limit * 4:
            content, done_reason = content[: limit * 4], "length"
        counters = durations(prompt, content, time.monotonic() - started)
        if not stream:
            final = message_part(endpoint, name, content, done=True)
            self._json(200, {**final, "done_reason": done_reason, **counters})
            return
        self._start_stream()
        step = reply.chunk_chars
        for start in range(0, len(content), step):
            self._chunk(message_part(endpoint, name, content[start : start + step], done=False))
        final = message_part(endpoint, name, "", done=True)
        self._chunk({**final, "done_reason": done_reason, **counters})
        self.wfile.write(b"0\r\n\r\n")

    def _real(self, endpoint: str, body: dict[str, Any], model: FakeModel) -> None:
        """Answer from the real model: streamed as it is generated, or in one piece."""
        from watchkeeper.testing._real_model import (
            Busy,
            ClientGone,
            InferenceError,
            RunOptions,
        )

        engine = self.fake.real_model
        assert engine is not None
        name = str(body["model"])
        stream = body.get("stream", True) is not False
        try:
            options = RunOptions.from_request(body.get("options"))
            messages, prompt = _conversation(endpoint, body)
            parse_keep_alive(body.get("keep_alive"))
        except ValueError as exc:
            self._error(400, str(exc))
            return
        started = [False]

        def emit(text: str) -> None:
            if not stream:
                return
            if not started[0]:
                started[0] = True
                self._start_stream()
            self._chunk(message_part(endpoint, name, text, done=False))

        try:
            result = engine.run(
                messages,
                prompt=prompt,
                fmt=body.get("format"),
                options=options,
                keep_alive=body.get("keep_alive"),
                emit=emit,
                cancelled=self._client_gone,
            )
        except ValueError as exc:
            self._error(400, str(exc))
            return
        except Busy as exc:
            self._error(503, str(exc))
            return
        except ClientGone:
            self._drop()
            return
        except InferenceError as exc:
            if not started[0]:
                self._error(500, str(exc))
                return
            self._chunk({"error": str(exc)})
            self.wfile.write(b"0\r\n\r\n")
            return
        self.fake.mark_loaded(model, body.get("keep_alive"))
        final = message_part(endpoint, name, "" if stream else result.content, done=True)
        final["done_reason"] = result.done_reason
        if result.done_reason not in ("load", "unload"):
            final.update(result.counters())
        if not started[0] and (not stream or result.done_reason in ("load", "unload")):
            self._json(200, final)  # Ollama answers a load/unload request in one object too
            return
        if not started[0]:
            self._start_stream()
        self._chunk(final)
        self.wfile.write(b"0\r\n\r\n")

    def _client_gone(self) -> bool:
        """True once the client has closed its side (a read would return nothing)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return bool(self.connection.recv(1, socket.MSG_PEEK) == b"")
        except OSError:
            return True

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _fault(
        self, reply: Reply, endpoint: str, name: str, body: dict[str, Any], stream: bool
    ) -> bool:
        """Play ``reply.fault`` if it ends the exchange; True when it did."""
        fault = reply.fault
        if fault == "drop":
            self._drop()
        elif fault == "404":
            self._error(404, reply.error or f"model '{name}' not found")
        elif fault == "503":
            self._error(503, reply.error or BUSY_MESSAGE)
        elif fault == "500" or (fault == "midstream_error" and not stream):
            self._error(500, reply.error or (RUNNER_CRASHED if fault == "500" else STREAM_BROKE))
        elif fault == "garbage_body":
            self._send(200, b"<html><body>502 Bad Gateway</body></html>", "application/json")
        elif fault == "trickle":
            final = message_part(endpoint, name, reply.text() or default_content(body), done=True)
            self._trickle(_dumps({**final, "done_reason": "stop"}))
        elif fault == "oversized":
            self._oversized(endpoint, name)
        elif fault == "midstream_error":
            content = reply.text() or default_content(body)
            self._start_stream()
            partial = content[: max(1, len(content) // 3)]
            self._chunk(message_part(endpoint, name, partial, done=False))
            self._chunk({"error": reply.error or STREAM_BROKE})
            self.wfile.write(b"0\r\n\r\n")
        else:
            return False
        return True

    def _trickle(self, payload: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        for index in range(len(payload)):
            self.wfile.write(payload[index : index + 1])
            self.wfile.flush()
            if self.fake.stopping.wait(TRICKLE_BYTE_S):
                self._drop()
                return

    def _oversized(self, endpoint: str, name: str) -> None:
        head, tail = _dumps(message_part(endpoint, name, "\x00", done=True)).split(b"\\u0000")
        self._start_stream()
        piece = b"x" * 65536
        self.wfile.write(b"%X\r\n%s\r\n" % (len(head), head))
        for _ in range(OVERSIZED_BYTES // len(piece)):
            self.wfile.write(b"%X\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"%X\r\n%s\r\n0\r\n\r\n" % (len(tail), tail))


def _conversation(
    endpoint: str, body: dict[str, Any]
) -> tuple[list[dict[str, Any]] | None, str | None]:
    """The request as messages for the chat template, or a raw prompt (``raw: true``)."""
    if endpoint == "chat":
        messages = []
        for message in body.get("messages") or []:
            if not isinstance(message, dict) or not isinstance(message.get("content", ""), str):
                raise ValueError("each message needs a role and a string content")
            role = message.get("role")
            if role not in ("system", "user", "assistant", "tool"):
                raise ValueError(f"invalid role: {role!r}")
            messages.append({"role": role, "content": message.get("content", "")})
        return messages or None, None
    prompt = body.get("prompt") or ""
    system = body.get("system")
    if not isinstance(prompt, str) or (system is not None and not isinstance(system, str)):
        raise ValueError("prompt and system must be strings")
    if body.get("raw") is True:
        return None, prompt or None
    if not prompt:
        return None, None
    turns = [{"role": "system", "content": system}] if system else []
    return [*turns, {"role": "user", "content": prompt}], None
