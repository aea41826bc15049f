"""The web layer's live view: cached answers, a short chart history, and the event stream.

``LiveHub`` keeps what requests read, so no request collects or re-serialises anything
the agents already have:

- the latest sample as JSON bytes, serialised once per sample however many clients ask;
- the system snapshot as JSON bytes, rebuilt at most once a second;
- a ring of chart points (CPU, memory, disk I/O, network) from ``metrics.sample``, so the
  dashboard has recent history without any storage, kept as columns of numbers
  (:class:`~watchkeeper.web.chart_ring.ChartRing`, a fixed size however long it runs);
- the recent activity, worded once from the bus messages;
- the open incidents as ``incident.*`` last reported them (for when the analyzer's own
  list cannot be read);
- one bus subscription fanned out to every server-sent-events client. Each message is
  turned into a frame once; every client has its own bounded queue that drops its oldest
  frames when the client falls behind, so a slow browser never slows the daemon.

Run it for as long as the server runs (``await hub.run()`` in a task the server owns)::

    hub = LiveHub(orchestrator)
    client = hub.connect()
    frames = await client.next(timeout=15)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from watchkeeper.model.incidents import Incident, IncidentState
from watchkeeper.model.snapshot import HealthScore, SystemSnapshot
from watchkeeper.model.topics import METRICS_SAMPLE
from watchkeeper.web.chart_ring import ChartRing
from watchkeeper.web.feed import SERIES, chart_point, describe, sse_frame
from watchkeeper.web.sources import Sources

if TYPE_CHECKING:
    from watchkeeper.bus import Message
    from watchkeeper.orchestrator import Orchestrator

__all__ = ["EventClient", "LiveHub", "TooManyClients"]

#: Topics the event stream carries, and the event name each becomes.
_EVENT_NAMES = {
    "metrics": "sample",
    "alert": "alert",
    "incident": "incident",
    "analysis": "analysis",
    "remediation": "action",
    "agent": "agent",
    "service": "service",
    "config": "config",
    "health": "health",
    "system": "system",
}


class TooManyClients(RuntimeError):
    """The event stream already has its maximum number of clients."""


class EventClient:
    """One event-stream client: a bounded queue of frames, oldest dropped when full."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.dropped = 0
        self.sent = 0
        self.closed = False
        self._frames: deque[bytes] = deque()
        self._ready = asyncio.Event()

    def offer(self, frame: bytes) -> None:
        if len(self._frames) >= self.maxsize:
            self._frames.popleft()
            self.dropped += 1
        self._frames.append(frame)
        self._ready.set()

    async def next(self, timeout: float) -> list[bytes]:
        """The frames queued so far (waiting up to ``timeout``; empty means a heartbeat
        is due). Raises ``EOFError`` once the hub has closed the stream."""
        if not self._frames and not self.closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
        self._ready.clear()
        if self.closed and not self._frames:
            raise EOFError
        frames = list(self._frames)
        self._frames.clear()
        self.sent += len(frames)
        return frames

    def close(self) -> None:
        self.closed = True
        self._ready.set()


class LiveHub:
    """See the module docstring. All methods run on the event loop's thread."""

    def __init__(
        self,
        orchestrator: Orchestrator,
        *,
        history_points: int = 720,
        activity_size: int = 200,
        client_queue: int = 100,
        max_clients: int = 64,
        heartbeat: float = 15.0,
        status_every: float = 5.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.orchestrator = orchestrator
        self.sources = Sources(orchestrator)
        self.heartbeat = heartbeat
        self.status_every = status_every
        self.client_queue = client_queue
        self.max_clients = max_clients
        self._clock = clock
        self._monotonic = monotonic
        self._points = ChartRing(history_points, SERIES)
        self._activity: deque[dict[str, Any]] = deque(maxlen=activity_size)
        self._clients: set[EventClient] = set()
        self._incidents: dict[str, Incident] = {}
        self.max_incidents = 500
        self.action_counts: dict[str, int] = {}
        self.frames_built = 0
        self.messages_seen = 0
        self._metrics_key: tuple[int, float] | None = None
        self._metrics_body: bytes | None = None
        self._system_at = -1e18
        self._system_body = b""
        self._agent_marks: dict[str, tuple[str, int]] = {}
        self._last_status = -1e18
        self._closed = False

    # -- cached answers -------------------------------------------------------------------
    def metrics_body(self) -> bytes | None:
        """The latest sample as JSON, serialised once per sample; None before the first."""
        sample = self.sources.latest_sample()
        if sample is None:
            return None
        key = (id(sample), sample.timestamp)
        if key != self._metrics_key:
            self._metrics_body = sample.model_dump_json().encode()
            self._metrics_key = key
        return self._metrics_body

    def system(self) -> SystemSnapshot:
        """The orchestrator's snapshot plus the health score."""
        health = HealthScore.model_validate(self.health())
        return self.orchestrator.snapshot().model_copy(update={"health": health})

    def system_body(self, max_age: float = 1.0) -> bytes:
        now = self._monotonic()
        if now - self._system_at >= max_age or not self._system_body:
            snapshot = self.system()
            self._system_body = snapshot.model_dump_json(exclude_unset=True, fallback=str).encode()
            self._system_at = now
        return self._system_body

    def health(self) -> dict[str, Any]:
        """Status, 0-100 score and reasons: the communicator's, or the same formula over
        what the web can see when the communicator is off."""
        health = self.sources.health()
        if health is not None:
            health.setdefault("source", "communicator")
            return health
        from watchkeeper.notify.health import HealthTracker

        tracker = HealthTracker()
        for alert in self.sources.firing():
            tracker.alert(alert)
        for name, agent in self.orchestrator.agents.items():
            tracker.agent_state(name, str(agent.state))
        record = tracker.evaluate(self._clock()).model_dump(mode="json")
        record["source"] = "web"
        return record

    def points(self) -> list[dict[str, Any]]:
        """The chart history, oldest first: one dict per point."""
        return self._points.points()

    def columns(self) -> dict[str, list[float | None]]:
        """The chart history as columns (``ts`` and each of ``SERIES``), oldest first."""
        return self._points.columns()

    def activity(self, limit: int = 100) -> list[dict[str, Any]]:
        """Recent activity, newest first."""
        items = list(self._activity)[-limit:]
        items.reverse()
        return items

    def open_incidents(self) -> list[Incident]:
        """The incidents open as their last ``incident.*`` message said, newest first."""
        return sorted(self._incidents.values(), key=lambda i: i.opened_at, reverse=True)

    def _track_incident(self, value: Any) -> None:
        if not isinstance(value, Incident):
            return
        if value.state is IncidentState.RESOLVED:
            self._incidents.pop(value.id, None)
            return
        self._incidents[value.id] = value
        if len(self._incidents) > self.max_incidents:  # bounded: drop the oldest opened
            oldest = min(self._incidents.values(), key=lambda i: i.updated_at)
            del self._incidents[oldest.id]

    def stats(self) -> dict[str, Any]:
        return {
            "clients": len(self._clients),
            "dropped": sum(client.dropped for client in self._clients),
            "frames_built": self.frames_built,
            "messages_seen": self.messages_seen,
            "points": len(self._points),
        }

    # -- clients --------------------------------------------------------------------------
    def connect(self) -> EventClient:
        """A new event-stream client, primed with the current status."""
        if self._closed:
            raise TooManyClients("the server is shutting down")
        if len(self._clients) >= self.max_clients:
            raise TooManyClients(
                f"the event stream already has its {self.max_clients} clients "
                "(web.max_event_clients)"
            )
        client = EventClient(self.client_queue)
        client.offer(b"retry: 3000\n\n")
        client.offer(sse_frame("status", self._status_payload()))
        self._clients.add(client)
        return client

    def disconnect(self, client: EventClient) -> None:
        client.close()
        self._clients.discard(client)

    def close(self) -> None:
        """End every stream (the server is stopping)."""
        self._closed = True
        for client in list(self._clients):
            self.disconnect(client)

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def _broadcast(self, frame: bytes) -> None:
        self.frames_built += 1
        for client in self._clients:
            client.offer(frame)

    # -- the loop -------------------------------------------------------------------------
    def _status_payload(self) -> dict[str, Any]:
        orch = self.orchestrator
        return {
            "state": orch.state,
            "started_at": orch.started_at,
            "uptime_s": round(self._clock() - orch.started_at, 1) if orch.started_at else 0.0,
            "health": self.health(),
            "agents": {name: a.health().model_dump(mode="json") for name, a in orch.agents.items()},
        }

    def _agents_changed(self) -> bool:
        marks = {name: (str(a.state), a.restarts) for name, a in self.orchestrator.agents.items()}
        changed = marks != self._agent_marks
        self._agent_marks = marks
        return changed

    def tick(self) -> None:
        """Push a status event when an agent changed state, or every ``status_every``."""
        now = self._monotonic()
        changed = self._agents_changed()
        if self._clients and (changed or now - self._last_status >= self.status_every):
            self._last_status = now
            self._broadcast(sse_frame("status", self._status_payload()))

    def handle(self, message: Message) -> None:
        """Take one bus message: update the caches, the feed and the clients."""
        family = message.topic.partition(".")[0]
        event = _EVENT_NAMES.get(family)
        if event is None:
            return
        self.messages_seen += 1
        extra: dict[str, Any] = {}
        if event == "sample":
            point = chart_point(METRICS_SAMPLE.read(message))
            self._points.append(point)
            extra["point"] = point
        else:
            if event == "action":
                outcome = message.topic.partition(".")[2] or "unknown"
                self.action_counts[outcome] = self.action_counts.get(outcome, 0) + 1
            elif event == "incident":
                self._track_incident(message.value)
            line = describe(message.topic, message.value)
            if line is not None:
                severity, text, subject = line
                item = {
                    "ts": message.timestamp,
                    "kind": message.topic,
                    "agent": message.sender,
                    "severity": severity,
                    "message": text,
                    "subject": subject,
                }
                self._activity.append(item)
                extra["activity"] = item
        if self._clients:
            data = {
                "topic": message.topic,
                "ts": message.timestamp,
                "data": message.payload,
                **extra,
            }
            self._broadcast(sse_frame(event, data))

    def seed(self) -> None:
        """Start the chart from the sensor's latest sample, if there is one."""
        sample = self.sources.latest_sample()
        if sample is not None and not len(self._points):
            self._points.append(chart_point(sample))

    async def run(self) -> None:
        """Follow the bus until cancelled."""
        self.seed()
        sub = self.orchestrator.bus.subscribe("#", name="web:live", maxsize=1000)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._ticker())
                async for message in sub:
                    self.handle(message)
                    if self._clients:
                        self.tick()
        finally:
            sub.close()
            self.close()

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.tick()
