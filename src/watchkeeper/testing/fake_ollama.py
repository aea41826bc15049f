"""A FAKE Ollama server: Ollama's HTTP protocol on loopback, with canned answers.

For tests, and for people who want to try watchkeeper without installing Ollama. No
model runs: replies are scripted, computed by a function, or a default that satisfies
the requested ``format`` schema. The wire format follows Ollama's API (field names,
NDJSON streaming by default, nanosecond durations, ``done_reason``, ``{"error": ...}``
bodies with Ollama's status codes), so the official client cannot tell the difference,
which is the point.

In a test::

    with FakeOllama(models=["mistral"]) as fake:
        fake.script([Reply(json_obj={...}), Reply(fault="503")])
        advisor = OllamaAdvisor(fake.url, "mistral")
        ...
        assert fake.bodies("/api/chat")[0]["options"]["temperature"] == 0

By hand (prints a "fake" banner to stderr; ``GET /`` still says ``Ollama is running``)::

    python -m watchkeeper.testing.fake_ollama --port 11434 --model mistral

With a REAL model instead of canned replies (the optional extra: ``pip install -e
'.[realmodel]'``; without PATH it serves the Gemma 3 270M file the extra installs, as
``gemma3:270m``; each ``--model`` is another name for it)::

    python -m watchkeeper.testing.fake_ollama --real-model [PATH] --port 11434

In a test, ``FakeOllama(real_model=RealModel(path))``; see
:mod:`watchkeeper.testing._real_model` for what the real mode honours.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from watchkeeper.testing._fake_http import FakeHTTPServer
from watchkeeper.testing._fake_protocol import (
    FAKE_VERSION,
    Fault,
    Reply,
    ReplyFn,
    load_reply_file,
    minimal_instance,
    request_text,
    scenario,
)
from watchkeeper.testing._fake_state import FakeState, RecordedRequest
from watchkeeper.testing._real_model import DEFAULT_NAME, INSTALL_HINT, RealModelUnavailable

if TYPE_CHECKING:
    from watchkeeper.testing._real_model import RealModel

__all__ = [
    "FAKE_VERSION",
    "FakeOllama",
    "Fault",
    "RecordedRequest",
    "Reply",
    "ReplyFn",
    "load_reply_file",
    "main",
    "minimal_instance",
    "request_text",
    "scenario",
]


class FakeOllama:
    """A fake Ollama server in a background thread; see the module docstring.

    Replies to ``/api/chat`` and ``/api/generate`` come from, in order: the scripted
    queue (:meth:`script`, each used once), the reply function (``reply_fn``, e.g.
    :func:`scenario`), ``default_reply``, and finally a canned answer that satisfies the
    request's ``format``. ``latency`` is the default delay before each reply.

    ``models`` defaults to ``["mistral"]``. With ``real_model`` every chat/generate
    request is answered by that model instead (scripts, faults and latency are not used),
    under the model's own name; ``models`` become other names for it.
    The caller owns the model and closes it.
    """

    def __init__(
        self,
        models: Iterable[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        default_reply: Reply | None = None,
        reply_fn: ReplyFn | None = None,
        version: str = FAKE_VERSION,
        log: TextIO | None = None,
        real_model: RealModel | None = None,
    ) -> None:
        self._bind = (host, port)
        self._state = FakeState(
            models if models is not None else (() if real_model is not None else ("mistral",)),
            latency=latency,
            default_reply=default_reply,
            reply_fn=reply_fn,
            version=version,
            log=log,
            real_model=real_model,
        )
        self._server: FakeHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> FakeOllama:
        """Bind and serve in a daemon thread; returns self. Port 0 picks a free port."""
        if self._server is not None:
            raise RuntimeError("fake Ollama server already started")
        self._state.stopping.clear()
        server = FakeHTTPServer(self._bind, self._state)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"fake-ollama:{self.port}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections and wake delayed replies. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        self._state.stopping.set()
        server.shutdown()
        for conn in self._state.open_connections():
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return self._bind[0]

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("fake Ollama server is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL for clients, e.g. ``http://127.0.0.1:40123``."""
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}"

    @property
    def version(self) -> str:
        """What ``GET /api/version`` reports."""
        return self._state.version

    # -- scripting ---------------------------------------------------------------

    @property
    def latency(self) -> float:
        """Default seconds before each reply (a reply's own ``latency`` wins)."""
        return self._state.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self._state.latency = seconds

    def script(self, replies: Iterable[Reply | str | Mapping[str, Any]]) -> None:
        """Queue replies for the next chat/generate requests, each used once, in order.

        A string is shorthand for ``Reply(content=...)``, a mapping for ``Reply(**...)``.
        """
        self._state.enqueue([Reply.coerce(r) for r in replies])

    @property
    def pending(self) -> int:
        """Scripted replies not yet used."""
        return self._state.pending()

    def set_reply_fn(self, reply_fn: ReplyFn | None) -> None:
        """Answer unscripted requests with ``reply_fn(body)`` (``None`` to remove)."""
        self._state.reply_fn = reply_fn

    def add_model(self, name: str) -> None:
        """As if ``ollama pull name`` had run."""
        self._state.add_model(name)

    def remove_model(self, name: str) -> None:
        """As if ``ollama rm name`` had run."""
        self._state.remove_model(name)

    @property
    def models(self) -> list[str]:
        """Pulled models, as Ollama names them (``"mistral:latest"``)."""
        return self._state.model_names()

    # -- inspection ----------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far (a copy), oldest first."""
        return self._state.requests()

    def bodies(self, path: str | None = None) -> list[dict[str, Any]]:
        """Parsed JSON bodies of the requests to ``path`` (all paths if ``None``)."""
        return [r.body for r in self.requests if r.body is not None and path in (None, r.path)]

    def clear_requests(self) -> None:
        self._state.clear_requests()


# -- command line ---------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m watchkeeper.testing.fake_ollama",
        description="watchkeeper's FAKE Ollama server: Ollama's API with canned replies, "
        "for trying watchkeeper without a model. No model runs.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=11434, help="port (default 11434)")
    parser.add_argument(
        "--model", action="append", default=None, help="a model to pretend is pulled (repeat)"
    )
    parser.add_argument(
        "--reply-file",
        default=None,
        help="JSON lines of replies; lines with a 'when' substring answer matching prompts, "
        "the others are used once each, in order",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    real = parser.add_argument_group(
        "real model", f"answer with a real GGUF model instead (needs: {INSTALL_HINT})"
    )
    real.add_argument(
        "--real-model",
        nargs="?",
        const="",
        default=None,
        metavar="PATH",
        help="serve this GGUF file (default: the Gemma 3 270M file of the realmodel extra)",
    )
    real.add_argument(
        "--name", default=DEFAULT_NAME, help=f"its model name (default {DEFAULT_NAME})"
    )
    real.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads (default: physical cores - 1, at least 1)",
    )
    real.add_argument("--preload", action="store_true", help="load the model before serving")
    real.add_argument(
        "--stats-file", default=None, help="append one JSON line per answer (counters, text)"
    )
    return parser.parse_args(argv)


def _open_real_model(args: argparse.Namespace) -> tuple[RealModel | None, TextIO | None]:
    """The real model the arguments ask for (``None`` without ``--real-model``)."""
    from watchkeeper.testing._real_model import RealModel, default_model_path

    if args.real_model is None:
        return None, None
    path = Path(args.real_model) if args.real_model else default_model_path()
    stats = open(args.stats_file, "a", encoding="utf-8") if args.stats_file else None  # noqa: SIM115
    try:
        model = RealModel(
            path,
            name=args.name,
            threads=args.threads,
            preload=args.preload,
            stats=stats,
            log=None if args.quiet else sys.stderr,
        )
    except BaseException:
        if stats is not None:
            stats.close()
        raise
    return model, stats


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fake until Ctrl-C or SIGTERM; returns the process exit status."""
    args = _parse_args(argv)
    queued: list[Reply] = []
    rules: list[Reply] = []
    if args.reply_file:
        try:
            queued, rules = load_reply_file(args.reply_file)
        except (OSError, ValueError) as exc:
            print(f"fake-ollama: cannot read reply file: {exc}", file=sys.stderr)
            return 2
    try:
        real, stats = _open_real_model(args)
    except (RealModelUnavailable, OSError) as exc:
        print(f"fake-ollama: {exc}", file=sys.stderr)
        return 2
    try:
        return _serve(args, queued, rules, real)
    finally:
        if real is not None:
            real.close()
        if stats is not None:
            stats.close()


def _serve(
    args: argparse.Namespace, queued: list[Reply], rules: list[Reply], real: RealModel | None
) -> int:
    fake = FakeOllama(
        args.model,
        host=args.host,
        port=args.port,
        latency=args.latency,
        reply_fn=scenario(rules) if rules else None,
        log=None if args.quiet else sys.stderr,
        real_model=real,
    )
    fake.script(queued)
    try:
        fake.start()
    except OSError as exc:
        print(f"fake-ollama: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    if real is None:
        kind = "(no model runs; replies are canned)"
        extra = f"  scripted replies: {len(queued)}, scenario rules: {len(rules)}\n"
    else:
        kind = "with a REAL model (llama.cpp)"
        extra = f"  model file: {real.path} ({real.threads} threads)\n"
    print(
        f"watchkeeper FAKE Ollama server {kind}\n"
        f"  listening on {fake.url}\n"
        f"  models: {', '.join(fake.models)}\n"
        f"{extra}"
        "  Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
    done = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        fake.stop()
        print("fake-ollama: stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
