"""The bus across machines: NATS with JetStream, on top of the in-memory bus.

Local delivery stays :class:`~watchkeeper.bus.memory.InMemoryBus`'s: this host's agents
get this host's messages at once, with or without the server. Everything published here
also travels on NATS, on ``<prefix>.<host>.<topic>`` (:mod:`watchkeeper.bus.subjects`),
as the message's JSON envelope with the header ``Nats-Msg-Id: <message id>``:

- events (alerts, incidents, actions, services) go to the ``WK_EVENTS`` stream and are
  written first to the local :class:`~watchkeeper.bus.outbox.Outbox`; a row leaves it
  once JetStream acknowledged it, so a host cut off from the server keeps every event
  and sends them in order, with the same ids, when the server is back (JetStream's
  de-duplication window makes a resend count once);
- telemetry (samples, heartbeats) is published without waiting for an ack into the
  ``WK_TELEMETRY`` stream, and only while connected: a newer sample replaces a missed one
  (sent once, never resent, so without ``Nats-Msg-Id``: JetStream keeps no ids for it);
- commands asked with ``request(..., host=H)`` go to host H over NATS request/reply.

Subscriptions receive other hosts' messages too: a local-scope one what others publish
about this host (the central analyzer's alerts, a fleet view's commands), a fleet-scope
one every host's (events through a JetStream durable consumer, so a central that was down
catches up), a host-id scope that host's. What arrives is untrusted: a message that does
not parse, or whose ``host`` differs from its subject's host, is dropped and counted. A
sample's envelope is checked on arrival and its payload (most of its bytes) when a reader
first parses it: a central hears every host's sample every few seconds and the fleet view
keeps them unread until someone opens that host. A sample that does not parse is refused
to that reader (``ValidationError``) and counted as malformed then.

``start()`` connects in the background (the host works alone until the server answers,
and reconnects forever); ``stop()`` sends what it can within a few seconds and closes::

    bus = make_bus(settings)                 # [bus] backend = "nats"
    view = bus.subscribe("alert.*", name="fleet-view", scope="fleet")
    await bus.start()
    await bus.wait_connected(10)             # tests: connected, subscriptions in place
    reply = await bus.request(COMMAND.at("remediator"), command, sender="view", host="web-1")
    await bus.flush(5)                       # tests: every event acknowledged
    await bus.stop()

``status()`` says whether it is connected, what waits in the outbox, what was dropped
and why (malformed, another host's id, refused by the server, too big), and the last
error, with no secret in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import sqlite3
import ssl
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    StorageType,
    StreamConfig,
)
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import from_json, to_json

from watchkeeper.bus.memory import (
    FLEET,
    LOCAL,
    REPLY_PREFIX,
    InMemoryBus,
    RequestTimeout,
    Subscription,
)
from watchkeeper.bus.outbox import EVENT, Outbox
from watchkeeper.bus.subjects import (
    EVENTS_STREAM,
    TELEMETRY_STREAM,
    is_telemetry,
    parse_subject,
    subject,
    subject_pattern,
)
from watchkeeper.config.fleet import BusSettings, check_host_id
from watchkeeper.model.envelope import Topic, TopicRegistry, topic_matches
from watchkeeper.model.message import Message
from watchkeeper.model.secret import MASK, masked_url, secret_value
from watchkeeper.model.text import LOG_LINE, clean

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription as NatsSubscription
    from nats.js.client import JetStreamContext

__all__ = ["INSTANCE_HEADER", "MSG_ID_HEADER", "NatsBus"]

T = TypeVar("T", bound=BaseModel)
M = TypeVar("M", bound=BaseModel)
log = logging.getLogger(__name__)

MSG_ID_HEADER = "Nats-Msg-Id"
#: Names the process that published a message, so its own messages are not delivered twice.
INSTANCE_HEADER = "Wk-Instance"
#: JetStream recognises a resent event by its id for this long (capped by the events'
#: max age). Only the event in flight when a host was cut off is ever resent; the
#: receiving side's own id memory catches a later resend too.
EVENTS_DEDUPE_SECONDS = 6 * 3600.0
_SEEN_IDS = 20_000
_REPLY_ROUTES = 4_096
_DRAIN_BATCH = 256
_WINDOW = 64
_CONSUMER_CHECK_SECONDS = 30.0
_PING_INTERVAL_S = 10
_STOP_DRAIN_SECONDS = 3.0
_DENIED_FOR = 60.0
_DENIED = re.compile(r'permissions violation for (publish|subscription) to "([^"]+)"', re.I)
#: Errors that explain a failure (a refused login, a bad certificate) stay the last error
#: for this long against the plain connection errors that follow them.
_TELLING = re.compile(r"authori[sz]ation|permission|certificate|ssl|tls", re.I)
_KEEP_TELLING = 10.0
#: What the status says of the expected refusals.
_EXPECTED_WHY = "this host's login may not use the JetStream API (the central manages the streams)"
_DURABLE_BAD = re.compile(r"[^A-Za-z0-9_-]+")
#: Topics whose payload is checked by its model when first read, not on arrival: large,
#: frequent, and mostly kept unread (a sample is ~10 kB of JSON and ~0.2 ms to check).
PARSED_WHEN_READ = frozenset({"metrics.sample"})


class _AnyReply(BaseModel):
    """The reply to a request on a topic that declares no reply model: any JSON object."""

    model_config = ConfigDict(extra="allow")


class _ParsedWhenRead(Message):
    """A message from NATS whose envelope was checked on arrival and whose payload is
    checked by its topic's model when first read (``value`` or ``parse``). A payload that
    does not parse raises ``ValidationError`` to that reader and is reported once
    through ``refused``."""

    __slots__ = ("_model", "_refused")

    _model: type[BaseModel]
    _refused: Callable[[Message, ValidationError], None] | None

    @classmethod
    def of(
        cls,
        data: dict[str, Any],
        model: type[BaseModel],
        refused: Callable[[Message, ValidationError], None],
    ) -> _ParsedWhenRead:
        message = cls.from_dict(data)
        assert isinstance(message, cls)
        message._model = model
        message._refused = refused
        return message

    def _refuse(self, error: ValidationError) -> None:
        refused, self._refused = self._refused, None
        if refused is not None:
            refused(self, error)

    @property
    def value(self) -> BaseModel:
        if self._value is None:
            try:
                self._value = self._model.model_validate(self.payload)
            except ValidationError as error:
                self._refuse(error)
                raise
        return self._value

    def parse(self, model: type[M]) -> M:
        try:
            return super().parse(model)
        except ValidationError as error:
            self._refuse(error)
            raise


class _Remote:
    """One NATS interest: a subject filter (and for a fleet scope, a durable consumer)
    shared by every local subscription with the same pattern, scope and name."""

    def __init__(self, filter_subject: str, durable: str | None) -> None:
        self.filter_subject = filter_subject
        self.durable = durable
        self.refs = 0
        self.core: NatsSubscription | None = None
        self.pull_task: asyncio.Task[None] | None = None
        #: True while the durable consumer carries the events (core carries telemetry).
        self.events_via_stream = False
        self.opened = asyncio.Event()


def _retrieved(task: asyncio.Task[Any]) -> None:
    """Mark a send's failure as seen: the drain decides what it means (or has moved on)."""
    if not task.cancelled():
        task.exception()


def _durable_name(host: str, name: str, pattern: str) -> str:
    digest = hashlib.sha1(pattern.encode()).hexdigest()[:10]
    base = _DURABLE_BAD.sub("_", f"wk_{host}_{name}")[:80]
    return f"{base}_{digest}"


class NatsBus(InMemoryBus):
    """The NATS JetStream backend; see the module docstring.

    ``data_dir`` holds the outbox (``outbox.sqlite3``); ``topics`` is the registry the bus
    accepts (watchkeeper's own by default), and the streams take every topic in it.
    """

    def __init__(
        self,
        settings: BusSettings,
        *,
        host: str,
        data_dir: Path,
        topics: TopicRegistry | None = None,
    ) -> None:
        super().__init__(host=host, topics=topics)
        self.settings = settings
        self.prefix = settings.subject_prefix
        self.data_dir = data_dir
        self.instance = uuid.uuid4().hex
        self.last_error: str | None = None
        self._telling_since = -_KEEP_TELLING
        self._logged: set[str] = set()
        self._outbox = self._open_outbox()
        self._outbox_closed = False
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._connected = False
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connect_task: asyncio.Task[None] | None = None
        self._send_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._remotes: dict[tuple[str, str | None], _Remote] = {}
        self._sub_remote: dict[Subscription, tuple[str, str | None]] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._reply_routes: OrderedDict[str, str] = OrderedDict()
        self._denied: dict[str, float] = {}
        self.streams = "unknown"
        self._api_denied_at = -1.0
        self._set_up = False
        self.counts: dict[str, int] = {
            "events_sent": 0,
            "events_duplicate": 0,
            "telemetry_sent": 0,
            "telemetry_unsent": 0,
            "received": 0,
            "malformed": 0,
            "mismatched": 0,
            "duplicates": 0,
            "refused": 0,
            "expected_refusals": 0,
            "unstored": 0,
            "oversized": 0,
            "outbox_failed": 0,
        }

    def _open_outbox(self) -> Outbox:
        """The outbox in ``data_dir``; an unreadable file is kept aside and a new one made
        (the daemon starts either way, and says so)."""
        path = self.data_dir / "outbox.sqlite3"
        limit = self.settings.outbox_max_mb << 20
        try:
            return Outbox(path, max_bytes=limit)
        except sqlite3.DatabaseError as error:
            aside = path.with_name(f"{path.name}.unreadable-{int(time.time())}")
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    Path(f"{path}{suffix}").rename(f"{aside}{suffix}")
            self._note("outbox", f"{path.name} was unreadable ({error}); kept as {aside.name}")
            return Outbox(path, max_bytes=limit)

    # -- state ------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        nc = self._nc
        return self._connected and nc is not None and nc.is_connected

    @property
    def outbox(self) -> Outbox:
        return self._outbox

    def _scrub(self, text: str) -> str:
        for url in self.settings.servers:
            text = text.replace(url, masked_url(url))
        for secret in (self.settings.password, self.settings.token):
            plain = secret_value(secret)
            if plain:
                text = text.replace(plain, MASK)
        return clean(text, LOG_LINE, 300)

    def _note(self, what: str, error: BaseException | str) -> None:
        text = error if isinstance(error, str) else (str(error) or type(error).__name__)
        now = time.monotonic()
        if what in ("connect", "connection") and now - self._telling_since < _KEEP_TELLING:
            return  # the refused login says more than the reset that follows it
        if _TELLING.search(text):
            self._telling_since = now
        self.last_error = self._scrub(f"{what}: {text}")
        if what not in self._logged:
            self._logged.add(what)
            log.warning("nats bus (%s): %s", self.host, self.last_error)

    def status(self) -> dict[str, object]:
        box = self._outbox
        return {
            "backend": "nats",
            "host": self.host,
            "connected": self.connected,
            "servers": [masked_url(url) for url in self.settings.servers],
            "streams": self.streams,
            "outbox": {"count": len(box), "bytes": box.size, "max_bytes": box.max_bytes},
            # The server refusing what this login may not do by design (a host's JetStream
            # API calls): expected, not an attack; real refusals are dropped.refused.
            "expected_refusals": {
                "jetstream_api": self.counts["expected_refusals"],
                "why": _EXPECTED_WHY if self.counts["expected_refusals"] else "",
            },
            "dropped": {
                "outbox_events": box.dropped.get(EVENT, 0),
                "outbox_telemetry": box.dropped.get("telemetry", 0),
                "malformed": self.counts["malformed"],
                "mismatched": self.counts["mismatched"],
                "refused": self.counts["refused"],
                "telemetry_unsent": self.counts["telemetry_unsent"],
                "oversized": self.counts["oversized"],
                "outbox_failed": self.counts["outbox_failed"],
            },
            "published": {
                "events": self.counts["events_sent"],
                "telemetry": self.counts["telemetry_sent"],
                "duplicate_acks": self.counts["events_duplicate"],
                "unstored": self.counts["unstored"],
            },
            "received": self.counts["received"],
            "duplicates_received": self.counts["duplicates"],
            "last_error": self.last_error,
        }

    # -- life -------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect in the background; returns at once (the host works alone until then)."""
        if self._connect_task is not None:
            return
        self._closing = False
        if self._outbox_closed:
            self._outbox = self._open_outbox()
            self._outbox_closed = False
        self._connect_task = asyncio.create_task(self._connect_loop())
        self._send_task = asyncio.create_task(self._send_loop())

    async def wait_connected(self, timeout: float = 10.0) -> bool:
        """Wait until connected and every subscription's NATS side is in place."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (
                self.connected
                and self._set_up
                and all(r.opened.is_set() for r in self._remotes.values())
            ):
                nc = self._nc
                if nc is not None:
                    with contextlib.suppress(Exception):
                        await nc.flush(timeout=max(1, int(deadline - time.monotonic())))
                return True
            await asyncio.sleep(0.02)
        return False

    async def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the outbox is empty (every event acknowledged); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not len(self._outbox):
                return True
            self._wake.set()
            await asyncio.sleep(0.02)
        return not len(self._outbox)

    async def stop(self) -> None:
        """Send what can be sent within a few seconds, then disconnect."""
        if self.connected and len(self._outbox):
            await self.flush(_STOP_DRAIN_SECONDS)
        self._closing = True
        tasks = [t for t in (self._connect_task, self._send_task) if t is not None]
        tasks += list(self._tasks)
        tasks += [r.pull_task for r in self._remotes.values() if r.pull_task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._connect_task = self._send_task = None
        self._set_up = False
        self._tasks.clear()
        nc, self._nc, self._js = self._nc, None, None
        self._connected = False
        for remote in self._remotes.values():
            remote.core = None
            remote.pull_task = None
            remote.events_via_stream = False
            remote.opened.clear()
        if nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 3.0)
        self._outbox.close()
        self._outbox_closed = True

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _connect_options(self) -> dict[str, Any]:
        s = self.settings
        options: dict[str, Any] = {
            "servers": list(s.servers),
            "name": f"watchkeeper {self.host}",
            "connect_timeout": s.connect_timeout,
            "reconnect_time_wait": s.reconnect_wait,
            "max_reconnect_attempts": -1,
            # A link that goes silent (a cut cable, a dropped route) sends no error: pings
            # find it within about 30 s, so the host knows it is alone and says so.
            "ping_interval": _PING_INTERVAL_S,
            "max_outstanding_pings": 2,
            "allow_reconnect": True,
            "no_echo": True,
            "inbox_prefix": f"_INBOX_{self.host}",
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
            "closed_cb": self._on_closed,
        }
        if s.user is not None:
            options["user"] = s.user
            options["password"] = secret_value(s.password)
        if s.token is not None:
            options["token"] = secret_value(s.token)
        if s.nkey_seed_file is not None or s.creds_file is not None:
            import importlib.util

            if importlib.util.find_spec("nkeys") is None:
                raise RuntimeError(
                    "an nkey or creds login needs the Python package nkeys (pip install nkeys)"
                )
        if s.nkey_seed_file is not None:
            options["nkeys_seed"] = str(s.nkey_seed_file)
        if s.creds_file is not None:
            options["user_credentials"] = str(s.creds_file)
        uses_tls = any(url.startswith(("tls://", "wss://")) for url in s.servers)
        if uses_tls or s.tls_ca_file is not None or s.tls_cert_file is not None:
            context = ssl.create_default_context(
                cafile=str(s.tls_ca_file) if s.tls_ca_file is not None else None
            )
            if s.tls_cert_file is not None and s.tls_key_file is not None:
                context.load_cert_chain(str(s.tls_cert_file), str(s.tls_key_file))
            options["tls"] = context
        return options

    async def _connect_loop(self) -> None:
        while not self._closing:
            try:
                options = self._connect_options()
                nc = await nats.connect(**options)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the server away, a bad login, a bad TLS file
                self._note("connect", error)
                await asyncio.sleep(self.settings.reconnect_wait)
                continue
            self._nc = nc
            self._js = nc.jetstream(timeout=self.settings.request_timeout)
            self._connected = True
            # Plain subscriptions first: a host login that may not manage streams waits
            # for those checks to be refused, and must not miss what is said about it
            # meanwhile. Durable consumers need the streams, so they come after.
            remotes = list(self._remotes.values())
            for remote in remotes:
                if remote.durable is None:
                    await self._open_remote(remote)
            await self._ensure_streams()
            for remote in remotes:
                if remote.durable is not None:
                    await self._open_remote(remote)
            self._set_up = True
            self._wake.set()
            return

    async def _on_error(self, error: Exception) -> None:
        text = str(error)
        found = _DENIED.search(text)
        if found is not None:
            denied = found.group(2).lower()  # the client reports the subject lower-cased
            if denied.startswith("$js."):
                # A host user may not manage streams or consumers: expected, not an error,
                # and counted apart from the real refusals (another host's subject).
                self._api_denied_at = time.monotonic()
                self.counts["expected_refusals"] += 1
                log.debug("nats bus (%s): %s", self.host, text)
                return
            if len(self._denied) > 1024:
                self._denied.clear()
            self._denied[denied] = time.monotonic()
            if found.group(1).lower() == "publish":
                self.counts["refused"] += 1
            self._note("permission", text.removeprefix("nats: "))
            return
        self._note("connection", error)

    async def _on_disconnected(self) -> None:
        self._connected = False

    async def _on_reconnected(self) -> None:
        self._connected = True
        self._spawn(self._after_reconnect())
        self._wake.set()

    async def _after_reconnect(self) -> None:
        """A server that came back may have lost its store (a new machine, a wiped disk):
        make the streams and this bus's durable consumers again where they are missing."""
        await self._ensure_streams()
        js = self._js
        if js is None:
            return
        for remote in list(self._remotes.values()):
            if remote.durable is None or remote.pull_task is None:
                continue
            if not await self._consumer_gone(remote):
                continue
            psub = await self._pull_subscription(remote)
            if psub is not None:
                remote.pull_task.cancel()
                remote.pull_task = asyncio.get_running_loop().create_task(
                    self._pull_loop(remote, psub)
                )
        self._wake.set()

    async def _on_closed(self) -> None:
        self._connected = False

    async def _api(self, call: Any, timeout: float) -> Any:
        """Await one JetStream API call; ``PermissionError`` as soon as the server refuses
        this login the API (a host user may not manage streams or consumers)."""
        began = time.monotonic()
        task = asyncio.ensure_future(call)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=0.05)
                if done:
                    return task.result()
                if self._api_denied_at >= began:
                    raise PermissionError("this login may not use the JetStream API")
                if time.monotonic() - began > timeout:
                    raise TimeoutError("the JetStream API did not answer")
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    # -- streams ----------------------------------------------------------------------
    def _stream_subjects(self) -> tuple[list[str], list[str]]:
        """The events and telemetry streams' subjects, from the topic registry; request
        topics (those with a reply model) travel on core NATS only."""
        events: list[str] = []
        telemetry: list[str] = []
        topics = [t for t in self._topics if t.reply is None]
        families = [t.name for t in topics if t.is_family]
        for topic in topics:
            name = topic.name
            if not topic.is_family and any(topic_matches(f, name) for f in families):
                continue
            target = telemetry if is_telemetry(name) else events
            target.append(subject_pattern(self.prefix, FLEET, name))
        return sorted(set(events)), sorted(set(telemetry))

    async def _ensure_streams(self) -> None:
        js = self._js
        if js is None:
            return
        s = self.settings
        events, telemetry = self._stream_subjects()
        events_age = s.events_max_age_hours * 3600.0
        telemetry_age = s.telemetry_max_age_minutes * 60.0
        wanted = (
            (EVENTS_STREAM, events, events_age, min(events_age, EVENTS_DEDUPE_SECONDS)),
            (TELEMETRY_STREAM, telemetry, telemetry_age, min(telemetry_age, 120.0)),
        )
        timeout = max(1.0, s.connect_timeout)
        result = "ready"
        for name, subjects, max_age, dedupe in wanted:
            config = StreamConfig(
                name=name,
                subjects=subjects,
                storage=StorageType.FILE,
                max_age=max_age,
                num_replicas=s.stream_replicas,
                duplicate_window=dedupe,
            )
            try:
                try:
                    info = await self._api(js.stream_info(name), timeout)
                except nats.js.errors.NotFoundError:
                    await self._api(js.add_stream(config), timeout)
                    continue
                have = info.config
                subjects_now = set(have.subjects or [])
                if not set(subjects) <= subjects_now or (
                    have.max_age,
                    have.duplicate_window,
                    have.num_replicas,
                ) != (max_age, dedupe, s.stream_replicas):
                    config.subjects = sorted(subjects_now | set(subjects))
                    await self._api(js.update_stream(config), timeout)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a host user may not manage streams: the central does
                result = "not managed here"
                log.debug("stream %s not created or updated here: %s", name, error)
        self.streams = result

    # -- publishing -------------------------------------------------------------------
    def _headers(self, message_id: str) -> dict[str, str]:
        return {MSG_ID_HEADER: message_id, INSTANCE_HEADER: self.instance}

    def _is_request_topic(self, name: str) -> bool:
        topic = self._topics.get(name)
        return topic is not None and topic.reply is not None

    @staticmethod
    def _body(message: Message) -> bytes:
        # pydantic-core writes the same compact JSON as json.dumps, about 7 times faster.
        return to_json(message.to_dict())

    async def publish(
        self,
        topic: Topic[T] | str,
        value: T,
        *,
        sender: str,
        correlation_id: str | None = None,
        reply_to: str | None = None,
        host: str | None = None,
    ) -> Message:
        message = await super().publish(
            topic,
            value,
            sender=sender,
            correlation_id=correlation_id,
            reply_to=reply_to,
            host=host,
        )
        await self._forward(message)
        return message

    async def _forward(self, message: Message) -> None:
        name = message.topic
        if name.startswith(REPLY_PREFIX):
            return
        target = subject(self.prefix, message.host or self.host, name)
        body = self._body(message)
        if is_telemetry(name) or self._is_request_topic(name):
            nc = self._nc
            if nc is None or not self.connected:
                if is_telemetry(name):
                    self.counts["telemetry_unsent"] += 1
                return
            # Telemetry is sent once and never resent, so it carries no message id for
            # JetStream to remember (a fleet's samples would fill its de-duplication
            # window: 5,000 hosts at 5 s are 180,000 ids in two minutes).
            headers = (
                {INSTANCE_HEADER: self.instance}
                if is_telemetry(name)
                else self._headers(message.id)
            )
            try:
                await nc.publish(target, body, headers=headers)
                self.counts["telemetry_sent"] += 1
            except Exception as error:
                self.counts["telemetry_unsent"] += 1
                self._note("publish", error)
            return
        try:
            self._outbox.put(message.id, target, body, EVENT)
        except sqlite3.Error as error:  # a full or failing disk: local delivery went on
            self.counts["outbox_failed"] += 1
            self._note("outbox", error)
            return
        self._wake.set()

    def _is_denied(self, subject_name: str) -> bool:
        key = subject_name.lower()
        when = self._denied.get(key)
        if when is None:
            return False
        if time.monotonic() - when > _DENIED_FOR:
            del self._denied[key]
            return False
        return True

    async def _send_loop(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.reconnect_wait)
            self._wake.clear()
            try:
                await self._drain()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # never let the sender die
                self._note("outbox", error)

    def _send_event(self, subject_name: str, body: bytes, message_id: str) -> asyncio.Task[Any]:
        """Start publishing one event to JetStream (its ack is the task's result)."""
        js = self._js
        assert js is not None
        task = asyncio.get_running_loop().create_task(
            js.publish(subject_name, body, headers=self._headers(message_id))
        )
        task.add_done_callback(_retrieved)
        return task

    async def _await_ack(self, task: asyncio.Task[Any], subject_name: str) -> None:
        """Wait for one event's ack: ``PermissionError`` when the server refused the
        subject, ``TimeoutError`` after the request timeout, else JetStream's error."""
        deadline = time.monotonic() + self.settings.request_timeout
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=0.05)
                if done:
                    ack = task.result()
                    if ack.duplicate:
                        self.counts["events_duplicate"] += 1
                    return
                if self._is_denied(subject_name):
                    raise PermissionError(subject_name)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no ack for {subject_name}")
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def _publish_acked(self, subject_name: str, body: bytes, message_id: str) -> None:
        await self._await_ack(self._send_event(subject_name, body, message_id), subject_name)

    async def _drain(self) -> None:
        """Send the outbox in order, ``_WINDOW`` events in flight at a time (one
        connection keeps them in order); a row goes once its ack is in."""
        box = self._outbox
        while self.connected and len(box) and not self._closing:
            rows = box.peek(_WINDOW)
            tasks: list[asyncio.Task[Any] | None] = []
            for row in rows:
                denied = self._is_denied(row.subject)
                tasks.append(None if denied else self._send_event(row.subject, row.body, row.id))
            acked: int | None = None
            stop = False
            try:
                for row, task in zip(rows, tasks, strict=True):
                    if task is None:
                        box.remove(row.seq)
                        continue
                    try:
                        await self._await_ack(task, row.subject)
                    except PermissionError:
                        box.remove(row.seq)
                        continue
                    except nats.errors.MaxPayloadError:
                        box.remove(row.seq)
                        self._drop(
                            "oversized", f"an event of {len(row.body)} bytes on {row.subject}"
                        )
                        self._note("publish", f"{row.subject}: larger than the server takes")
                        continue
                    except nats.js.errors.NoStreamResponseError:
                        if not await self._stream_missing_subject(row.subject, row.body, row.id):
                            stop = True
                            break
                        box.remove(row.seq)
                        continue
                    except Exception as error:  # cut off mid-send: retry later, same ids
                        self._note("publish", error)
                        stop = True
                        break
                    acked = row.seq
                    self.counts["events_sent"] += 1
            finally:
                for task in tasks:
                    if task is not None and not task.done():
                        task.cancel()
                if acked is not None:
                    box.remove_through(acked)
            if stop:
                return

    async def _stream_missing_subject(self, subject_name: str, body: bytes, mid: str) -> bool:
        """No stream took ``subject_name``. When the events stream exists (a topic added
        after it was made), send the message live on core NATS, counted as unstored, and
        return True; when there is no stream yet (the central has not made it), keep the
        outbox waiting and return False."""
        js, nc = self._js, self._nc
        if js is None or nc is None:
            return False
        await self._ensure_streams()
        try:
            await self._publish_acked(subject_name, body, mid)
            return True
        except nats.js.errors.NoStreamResponseError:
            pass
        try:
            await self._api(js.stream_info(EVENTS_STREAM), self.settings.connect_timeout)
        except Exception as error:
            self._note("publish", f"no JetStream stream {EVENTS_STREAM} yet ({error})")
            return False
        await nc.publish(subject_name, body, headers=self._headers(mid))
        self.counts["unstored"] += 1
        self._note("publish", f"no stream takes {subject_name}: sent live, not stored")
        return True

    # -- subscribing ------------------------------------------------------------------
    def subscribe(
        self, pattern: str, *, name: str, maxsize: int = 1000, scope: str = LOCAL
    ) -> Subscription:
        if scope not in (LOCAL, FLEET):
            check_host_id(scope)  # a host id is one subject token: no wildcards, no dots
        sub = super().subscribe(pattern, name=name, maxsize=maxsize, scope=scope)
        filter_subject = subject_pattern(self.prefix, sub.scope, pattern)
        durable = None
        if sub.scope == FLEET and self._may_match_events(pattern):
            durable = _durable_name(self.host, name, pattern)
        key = (filter_subject, durable)
        remote = self._remotes.get(key)
        if remote is None:
            remote = self._remotes[key] = _Remote(filter_subject, durable)
            if self._nc is not None:
                with contextlib.suppress(RuntimeError):
                    self._spawn(self._open_remote(remote))
        remote.refs += 1
        self._sub_remote[sub] = key
        return sub

    def _may_match_events(self, pattern: str) -> bool:
        for topic in self._topics:
            if topic.reply is not None:
                continue
            sample = topic.name.replace("*", "x")
            if not is_telemetry(sample) and topic_matches(pattern, sample):
                return True
        return False

    def _remove(self, sub: Subscription) -> None:
        super()._remove(sub)
        key = self._sub_remote.pop(sub, None)
        if key is None:
            return
        remote = self._remotes.get(key)
        if remote is None:
            return
        remote.refs -= 1
        if remote.refs <= 0:
            del self._remotes[key]
            with contextlib.suppress(RuntimeError):
                self._spawn(self._close_remote(remote))

    async def _close_remote(self, remote: _Remote) -> None:
        if remote.pull_task is not None:
            remote.pull_task.cancel()
        core, remote.core = remote.core, None
        if core is not None:
            with contextlib.suppress(Exception):
                await core.unsubscribe()

    async def _open_remote(self, remote: _Remote) -> None:
        nc = self._nc
        if nc is None or remote.opened.is_set():
            return
        try:

            async def on_core(msg: Msg) -> None:
                if remote.events_via_stream:
                    parsed = parse_subject(self.prefix, msg.subject)
                    if parsed is not None and not is_telemetry(parsed[1]):
                        return
                self._receive(msg, core=True)

            remote.core = await nc.subscribe(remote.filter_subject, cb=on_core)
            if remote.durable is not None and self._js is not None:
                psub = await self._pull_subscription(remote)
                if psub is not None:
                    remote.events_via_stream = True
                    remote.pull_task = asyncio.get_running_loop().create_task(
                        self._pull_loop(remote, psub)
                    )
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._note("subscribe", error)
        finally:
            remote.opened.set()

    async def _pull_subscription(self, remote: _Remote) -> Any:
        js = self._js
        if js is None or remote.durable is None:
            return None
        config = ConsumerConfig(
            durable_name=remote.durable,
            deliver_policy=DeliverPolicy.NEW,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30.0,
            max_ack_pending=20_000,
            filter_subject=remote.filter_subject,
        )
        try:
            return await self._api(
                js.pull_subscribe(
                    remote.filter_subject,
                    durable=remote.durable,
                    stream=EVENTS_STREAM,
                    config=config,
                ),
                max(1.0, self.settings.request_timeout),
            )
        except asyncio.CancelledError:
            raise
        except Exception as error:  # no stream yet, or this login may not make consumers
            self._note("consumer", error)
            return None

    async def _consumer_gone(self, remote: _Remote) -> bool:
        js = self._js
        if js is None or remote.durable is None:
            return False
        try:
            await self._api(
                js.consumer_info(EVENTS_STREAM, remote.durable),
                max(1.0, self.settings.connect_timeout),
            )
        except nats.js.errors.NotFoundError:
            return True
        except asyncio.CancelledError:
            raise
        except Exception:
            return False
        return False

    async def _pull_loop(self, remote: _Remote, psub: Any) -> None:
        failures = 0
        quiet_since = time.monotonic()
        while not self._closing:
            if not self.connected:
                await asyncio.sleep(0.1)
                continue
            try:
                msgs = await psub.fetch(batch=_DRAIN_BATCH, timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):
                failures = 0
                if time.monotonic() - quiet_since > _CONSUMER_CHECK_SECONDS:
                    # Quiet for long: make sure the consumer was not deleted meanwhile.
                    quiet_since = time.monotonic()
                    if await self._consumer_gone(remote):
                        again = await self._pull_subscription(remote)
                        if again is not None:
                            psub = again
                continue
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the consumer lost with the server's store: remake it
                failures += 1
                self._note("consumer", error)
                await asyncio.sleep(min(5.0, self.settings.reconnect_wait * failures))
                again = await self._pull_subscription(remote)
                if again is not None:
                    psub = again
                continue
            failures = 0
            quiet_since = time.monotonic()
            for msg in msgs:
                self._receive(msg, core=False)
                with contextlib.suppress(Exception):
                    await msg.ack()
            nc = self._nc
            if nc is not None:
                # One round trip per batch: the acks are in before more is fetched, so a
                # central that crashes sees at most this batch again (its ids, not counted).
                with contextlib.suppress(Exception):
                    await nc.flush(timeout=max(1, int(self.settings.request_timeout)))

    def _drop(self, kind: str, why: str) -> None:
        self.counts[kind] += 1
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning(
                "nats bus (%s): dropped a message (%s; counted, logged once): %s",
                self.host,
                kind,
                clean(why, LOG_LINE),
            )

    def _refused(self, message: Message, error: ValidationError) -> None:
        """A payload checked when read did not parse: counted as malformed, logged once."""
        errors = error.errors()
        where = ".".join(str(part) for part in errors[0]["loc"]) if errors else ""
        self._drop("malformed", f"{message.topic} from {message.host[:64]!r}: {where or 'payload'}")

    def _receive(self, msg: Msg, *, core: bool) -> None:
        """Check one message from NATS and deliver it locally (untrusted input)."""
        headers = msg.headers or {}
        if headers.get(INSTANCE_HEADER) == self.instance:
            return
        where = parse_subject(self.prefix, msg.subject)
        try:
            data = from_json(msg.data)
            if not isinstance(data, dict) or where is None:
                raise ValueError("not an envelope")
            topic = self._topics.resolve(str(data["topic"]))
            message: Message
            if topic.name in PARSED_WHEN_READ:
                if not isinstance(data.get("payload"), dict):
                    raise ValueError("the payload is not an object")
                message = _ParsedWhenRead.of(data, topic.model, self._refused)
            else:
                message = Message.from_dict(data, topic.model)
        except Exception as error:
            self._drop("malformed", f"{type(error).__name__} on {msg.subject[:120]!r}")
            return
        if message.host != where[0] or message.topic != where[1]:
            self._drop("mismatched", f"host {message.host[:64]!r} on {msg.subject[:120]!r}")
            return
        if message.id in self._seen:
            self.counts["duplicates"] += 1
            return
        self._seen[message.id] = None
        if len(self._seen) > _SEEN_IDS:
            self._seen.popitem(last=False)
        if core and msg.reply and message.reply_to:
            self._reply_routes[message.id] = msg.reply
            if len(self._reply_routes) > _REPLY_ROUTES:
                self._reply_routes.popitem(last=False)
        self.counts["received"] += 1
        self.deliver(message)

    # -- request / reply --------------------------------------------------------------
    async def request(
        self,
        topic: Topic[T] | str,
        value: T,
        *,
        sender: str,
        timeout: float = 5.0,
        host: str | None = None,
    ) -> Message:
        """Ask and wait for the first reply; a request to another host (``host=``) goes
        over NATS and raises ``RequestTimeout`` naming the host when none answers."""
        target = self.host if host is None else host
        name = self._topics.check(topic, value).name
        nc = self._nc
        if target == self.host and not self.connected:
            return await super().request(topic, value, sender=sender, timeout=timeout, host=host)
        if target != self.host and (nc is None or not self.connected):
            raise RequestTimeout(
                f"no reply from host {target!r} on {name!r}: not connected to the NATS server"
            )
        assert nc is not None
        correlation_id = uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Message] = loop.create_future()
        self._pending[correlation_id] = future
        message = Message(
            topic=name,
            sender=sender,
            value=value,
            correlation_id=correlation_id,
            reply_to=REPLY_PREFIX + correlation_id,
            host=target,
            origin=self.host,
        )

        declared = self._topics.resolve(name).reply
        reply_model = declared if declared is not None else _AnyReply

        async def on_reply(msg: Msg) -> None:
            try:
                data = json.loads(msg.data)
                if not isinstance(data, dict) or data.get("correlation_id") != correlation_id:
                    return
                if data.get("topic") != REPLY_PREFIX + correlation_id:
                    return
                reply = Message.from_dict(data, reply_model)
            except Exception:
                self._drop("malformed", "a reply that does not parse")
                return
            if not future.done():
                future.set_result(reply)

        inbox = nc.new_inbox()
        reply_sub = await nc.subscribe(inbox, cb=on_reply)
        try:
            self.deliver(message)
            await nc.publish(
                subject(self.prefix, target, name),
                self._body(message),
                reply=inbox,
                headers=self._headers(message.id),
            )
            try:
                return await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise RequestTimeout(
                    f"no reply from host {target!r} on {name!r} within {timeout:g}s"
                ) from None
        finally:
            self._pending.pop(correlation_id, None)
            with contextlib.suppress(Exception):
                await reply_sub.unsubscribe()

    async def reply(self, request: Message, value: BaseModel, *, sender: str) -> Message | None:
        """Answer ``request``: over NATS when it came from NATS, else locally."""
        route = self._reply_routes.pop(request.id, None)
        if route is None:
            if request.origin and request.origin != self.host:
                return None  # came from another host without a way back (a stream replay)
            return await super().reply(request, value, sender=sender)
        message = self._reply_message(request, value, sender=sender)
        if message is None:
            return None
        nc = self._nc
        if nc is None or not self.connected:
            self._note("reply", "not connected: the reply is lost (the asker will time out)")
            return message
        try:
            await nc.publish(route, self._body(message), headers=self._headers(message.id))
        except Exception as error:
            self._note("reply", error)
        return message
