"""``Notifier``: routes notices by severity and delivers them without ever blocking.

Each channel has its own bounded queue and worker task; the blocking ``send`` runs in a
thread, failures are retried with exponential backoff and given up after
``retries.attempts`` tries, and every outcome is counted in :meth:`Notifier.stats`. A dead
endpoint only ever delays its own queue::

    notifier = Notifier(settings.notifications, build_channels(settings.notifications))
    await notifier.start()
    await notifier.incident("opened", incident)   # returns at once; delivery happens behind
    await notifier.alert_firing(alert)       # silent while the alert is in an open incident
    await notifier.fleet_incident("opened", fleet_incident)   # a central host: many hosts
    await notifier.alert_firing(alert, host="web-1")   # another host's: silent once in it
    notifier.reconfigure(new_settings, build_channels(new_settings))   # live, no restart
    await notifier.aclose()
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from watchkeeper.config.notifications import NotificationSettings
from watchkeeper.model.alerts import SEVERITY_RANK, Alert, Severity
from watchkeeper.model.fleet import FleetIncident
from watchkeeper.model.incidents import Incident, IncidentState
from watchkeeper.model.text import NOTIFICATION, clean
from watchkeeper.notify._grouping import (
    AlertGrouper,
    FleetBook,
    IncidentBook,
    Outgoing,
    group_key,
)
from watchkeeper.notify._lanes import ChannelStats, Lane, NotifierStats, close_quietly
from watchkeeper.notify.base import ChannelRegistry, Notification, NotificationChannel
from watchkeeper.notify.compose import (
    alert_notice,
    event_notice,
    fleet_incident_notice,
    incident_notice,
)

__all__ = ["ChannelStats", "Notifier", "NotifierStats"]

#: How much of another host's id a notice's title shows.
_HOST_SHOWN = 64

log = logging.getLogger("watchkeeper.notify")

OnNotified = Callable[[Notification], Awaitable[None]]
OnGiveUp = Callable[[str, Notification, str], Awaitable[None]]


class Notifier:
    """Groups, routes and delivers notices. ``on_notified`` is awaited for each alert or
    incident notice that goes out (the agent remembers it in storage); ``on_give_up``
    when a channel gives up on a notice. ``expect_incidents``: the alerts come grouped
    into incidents (the analyzer's do), so a lone alert's first notice waits a moment
    for its incident rather than going out on its own. ``incident_link`` gives an
    incident's page on the dashboard (None: no link), read at each notice."""

    def __init__(
        self,
        settings: NotificationSettings,
        channels: ChannelRegistry | Iterable[NotificationChannel],
        *,
        host: str | None = None,
        clock: Callable[[], float] = time.time,
        local_time: Callable[[float], dt.datetime] = dt.datetime.fromtimestamp,
        on_notified: OnNotified | None = None,
        on_give_up: OnGiveUp | None = None,
        expect_incidents: bool = False,
        incident_link: Callable[[str], str | None] | None = None,
    ) -> None:
        self.settings = settings
        self._incident_link = incident_link
        registry = channels if isinstance(channels, ChannelRegistry) else ChannelRegistry(channels)
        self.host = host or socket.gethostname()
        self._clock = clock
        self._lanes = {ch.name: Lane(ch, settings.queue_size) for ch in registry}
        self.grouper = AlertGrouper(settings, self.route, local_time=local_time)
        self.incidents = IncidentBook(expected=expect_incidents)
        self.fleet = FleetBook()
        self.absorbed = 0
        self._on_notified = on_notified
        self._on_give_up = on_give_up
        self._events: dict[str, float] = {}
        self._held_events: deque[Notification] = deque(maxlen=settings.queue_size)
        self._tick = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._retired: list[NotificationChannel] = []
        self._executor: ThreadPoolExecutor | None = None
        self._threads = 0

    # -- routing ------------------------------------------------------------------------
    def route(self, severity: Severity) -> frozenset[str]:
        """The channels a notice of ``severity`` goes to."""
        rank = SEVERITY_RANK[severity]
        return frozenset(
            name
            for name in self._lanes
            if rank >= SEVERITY_RANK[Severity(self.settings.min_severity(name))]
        )

    # -- life ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Start one worker per channel and the timer; call ``aclose`` to stop them."""
        if self._tasks:
            return
        self._executor = self._new_executor()
        for lane in self._lanes.values():
            self._start_worker(lane)
        self._tasks.append(asyncio.create_task(self._timer(), name="notify:timer"))

    def _new_executor(self) -> ThreadPoolExecutor:
        # One thread per channel: a slow endpoint never holds up another channel's sends.
        self._threads = max(1, len(self._lanes))
        return ThreadPoolExecutor(self._threads, thread_name_prefix="watchkeeper-notify")

    def _start_worker(self, lane: Lane) -> None:
        task = asyncio.create_task(self._work(lane), name=f"notify:{lane.channel.name}")
        self._workers[lane.channel.name] = task
        self._tasks.append(task)

    def reconfigure(
        self,
        settings: NotificationSettings,
        channels: ChannelRegistry | Iterable[NotificationChannel] | None = None,
    ) -> None:
        """Apply changed settings (and, when given, a new set of channels) while running.

        A channel that keeps its name keeps its queue and counters and sends with the new
        channel from its next attempt on; a channel no longer configured stops (what it
        still had queued is counted as dropped); a new one starts at once."""
        self.settings = settings
        self.grouper.settings = settings
        if channels is not None:
            self._replace_channels(channels, settings.queue_size)
        for lane in self._lanes.values():
            lane.size = settings.queue_size
        self._tick.set()

    def _replace_channels(
        self, channels: ChannelRegistry | Iterable[NotificationChannel], size: int
    ) -> None:
        wanted = {channel.name: channel for channel in channels}
        for name in [name for name in self._lanes if name not in wanted]:
            lane = self._lanes.pop(name)
            lane.dropped += len(lane.queue)
            self._retire(lane.channel, busy=lane.sending)
            task = self._workers.pop(name, None)
            if task is not None:
                task.cancel()
                self._tasks.remove(task)
        for name, channel in wanted.items():
            kept = self._lanes.get(name)
            if kept is None:
                self._lanes[name] = fresh = Lane(channel, size)
                if self._tasks:
                    self._start_worker(fresh)
            elif kept.channel is not channel:
                self._retire(kept.channel, busy=kept.sending)
                kept.channel = channel
        if self._executor is not None and self._threads < len(self._lanes):
            old, self._executor = self._executor, self._new_executor()
            old.shutdown(wait=False)

    def _retire(self, channel: NotificationChannel, *, busy: bool) -> None:
        """Close a channel that is no longer used; one in the middle of a send is closed
        with the others at shutdown instead."""
        if busy:
            self._retired.append(channel)
            return
        close_quietly(channel)

    async def aclose(self) -> None:
        """Stop the workers (queued notices stay queued for the next ``start``)."""
        tasks, self._tasks = self._tasks, []
        self._workers.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._executor is not None:
            # A send stuck in a thread finishes on its own timeout; do not wait for it.
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def close_channels(self) -> None:
        """Release the channels' connections (for the final shutdown)."""
        retired, self._retired = self._retired, []
        for channel in [*retired, *(lane.channel for lane in self._lanes.values())]:
            close_quietly(channel)

    # -- input --------------------------------------------------------------------------
    async def alert_firing(
        self, alert: Alert, *, notified_at: float | None = None, host: str | None = None
    ) -> None:
        """An ``alert.firing`` message: new, seen again, or with a new severity. Silent
        while the alert belongs to an open incident or fleet incident: people hear of it
        through that. ``host``: another host's alert (a central host), named in its notice."""
        if not self.settings.enabled:
            return
        if self._absorb(alert, host):
            return
        wait = max(self.incidents.wait_for(alert), self.fleet.wait_for(alert))
        outgoing = self.grouper.on_firing(alert, self._clock(), notified_at, wait=wait, host=host)
        await self._emit(outgoing)
        self._tick.set()

    async def alert_escalated(self, alert: Alert, *, host: str | None = None) -> None:
        """An escalated alert; inside an open incident, the incident is escalated (once);
        inside a fleet incident it says nothing (the fleet incident tells a rise)."""
        if not self.settings.enabled:
            return
        if self.fleet.holding(alert.id) is not None:
            self._absorb(alert, host)
            return
        incident = self.incidents.holding(IncidentBook.member_key(alert, host))
        self._absorb(alert, host)
        item: Alert | Incident = alert if incident is None else incident
        await self._emit(self.grouper.on_escalated(item, self._clock(), host=host))

    async def alert_resolved(self, alert: Alert, *, host: str | None = None) -> None:
        """An alert ended. Inside an open incident it says nothing, unless people were
        told of it alone before it joined: then its resolved notice closes that."""
        if self.settings.enabled:
            self._absorb(alert, host)
            await self._emit(self.grouper.on_resolved(alert, self._clock(), host=host))

    async def fleet_incident(
        self, kind: str, incident: FleetIncident, *, notified_at: float | None = None
    ) -> None:
        """``fleet.incident.opened``, ``.updated`` or ``.resolved`` (a central host): one
        notice when it opens, one when its severity rises, one when it resolves; the
        hosts' own alerts in it are told through it, not one by one (those told before it
        formed keep only their resolved notice). ``notified_at``: when people were told
        of it before the fleet view restarted."""
        if not self.settings.enabled:
            return
        resolved = kind == "resolved" or incident.state == "resolved"
        for alert_id in self.fleet.update(incident, resolved=resolved):
            if self.grouper.absorb_alert(alert_id):
                self.absorbed += 1
        # Another host's incident made only of alerts in fleet incidents is told by them.
        for key, alert_ids in self.incidents.remote_firing():
            if self.fleet.holds_all(alert_ids) and self.grouper.absorb(key):
                self.absorbed += 1
        now = self._clock()
        if resolved:
            await self._emit(self.grouper.on_resolved(incident, now))
        else:
            await self._emit(self.grouper.on_firing(incident, now, notified_at))
        self._tick.set()

    async def incident(
        self,
        kind: str,
        incident: Incident,
        *,
        notified_at: float | None = None,
        host: str | None = None,
    ) -> None:
        """``incident.opened``, ``.updated`` or ``.resolved``: one notice when it opens
        (after ``group_wait``; an incident over by then is a flap and says nothing), one
        when its severity rises, one when it resolves, repeats after ``repeat_interval``;
        its alerts are told through it. ``notified_at``: when people were last told about
        this trouble before a restart. ``host``: another host's incident (a central host),
        named in its notices; its alerts are told through it as this host's are."""
        if not self.settings.enabled:
            return
        resolved = kind == "resolved" or incident.state is IncidentState.RESOLVED
        for member in self.incidents.update(incident, resolved=resolved, host=host):
            if self.grouper.absorb(member):
                self.absorbed += 1
        now = self._clock()
        if resolved:
            await self._emit(self.grouper.on_resolved(incident, now, host=host))
        elif host is not None and self.fleet.holds_all(
            [m.alert_id for m in incident.members if m.firing]
        ):
            # Another host's incident made only of alerts in fleet incidents: told by them.
            if self.grouper.absorb(group_key(incident, host)):
                self.absorbed += 1
        else:
            wait = 0.0 if host is None else self.fleet.wait_for_incident(incident)
            outgoing = self.grouper.on_firing(incident, now, notified_at, wait=wait, host=host)
            await self._emit(outgoing)
        self._tick.set()

    def _absorb(self, alert: Alert, host: str | None = None) -> bool:
        """True when the alert is told through its open incident or fleet incident (its
        own group, if one was waiting, is dropped)."""
        member = IncidentBook.member_key(alert, host)
        if self.fleet.holding(alert.id) is None and self.incidents.holding(member) is None:
            return False
        self.grouper.absorb(group_key(alert, host))
        self.absorbed += 1
        return True

    async def event(
        self,
        key: str,
        severity: Severity,
        title: str,
        body: str = "",
        *,
        details: dict[str, Any] | None = None,
        remote: bool = False,
    ) -> bool:
        """A one-off notice (``remote``: about another host). The same ``key`` is not sent
        again within the repeat interval; quiet hours hold or drop it unless critical.
        Returns whether it was queued now."""
        if not self.settings.enabled:
            return False
        now = self._clock()
        last = self._events.get(key)
        if last is not None and now - last < self.settings.repeat_interval:
            self.grouper.suppressed += 1
            return False
        self._events[key] = now
        notice = event_notice(
            key, severity, title, body or title, host=self.host, now=now, details=details
        )
        if remote:
            notice = notice.model_copy(update={"remote": True})
        if severity is not Severity.CRITICAL and self.grouper.quiet(now):
            hours = self.settings.quiet_hours
            if hours is not None and hours.mode == "hold":
                self._held_events.append(notice)
            else:
                self.grouper.dropped_quiet += 1
            return False
        self._enqueue(notice, self.route(severity))
        return True

    async def pump(self) -> int:
        """Send whatever is due now (first notices, repeats, what quiet hours held);
        returns how many notices were queued. The timer calls it; so may anyone."""
        now = self._clock()
        count = await self._emit(self.grouper.due(now))
        if self._held_events and not self.grouper.quiet(now):
            while self._held_events:
                notice = self._held_events.popleft()
                self._enqueue(notice, self.route(notice.severity))
                count += 1
        horizon = now - self.settings.repeat_interval
        for key in [k for k, at in self._events.items() if at < horizon]:
            del self._events[key]
        return count

    async def _emit(self, outgoing: list[Outgoing]) -> int:
        now = self._clock()
        for item in outgoing:
            subject = item.item
            if isinstance(subject, FleetIncident):
                told_fleet = item.told if isinstance(item.told, FleetIncident) else None
                notice = fleet_incident_notice(
                    subject, item.kind, host=self.host, now=now, told=told_fleet
                )
            elif isinstance(subject, Incident):
                told = item.told if isinstance(item.told, Incident) else None
                link = self._incident_link(subject.id) if self._incident_link else None
                notice = incident_notice(
                    subject, item.kind, host=self.host, now=now, told=told, link=link
                )
                if item.host is not None:
                    notice = _on_host(notice, item.host)
            else:
                notice = alert_notice(
                    subject,
                    item.kind,
                    host=item.host or self.host,
                    now=now,
                    name_host=item.host is not None,
                )
                if item.host is not None:
                    notice = notice.model_copy(update={"remote": True})
            self._enqueue(notice, item.channels)
            if self._on_notified is not None and not notice.resolved:
                try:
                    await self._on_notified(notice)
                except Exception:  # remembering is a nicety; sending is what matters
                    log.exception("on_notified failed for %s", notice.key)
        return len(outgoing)

    def _enqueue(self, notice: Notification, channels: Iterable[str]) -> None:
        for name in channels:
            lane = self._lanes.get(name)
            if lane is not None:
                lane.put(notice)

    # -- delivery -----------------------------------------------------------------------
    async def _timer(self) -> None:
        while True:
            now = self._clock()
            due = self.grouper.next_due(now)
            # At least every 30 s: quiet hours end and held notices go out without a push.
            wait = 30.0 if due is None else min(30.0, max(0.05, due - now))
            self._tick.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tick.wait(), wait)
            await self.pump()

    async def _work(self, lane: Lane) -> None:
        while True:
            while not lane.queue:
                lane.wake.clear()
                await lane.wake.wait()
            notice = lane.queue.popleft()
            lane.sending = True
            try:
                await self._deliver(lane, notice)
            finally:
                lane.sending = False

    async def _deliver(self, lane: Lane, notice: Notification) -> None:
        retries = self.settings.retries
        loop = asyncio.get_running_loop()
        name = lane.channel.name
        for attempt in range(1, retries.attempts + 1):
            try:
                await loop.run_in_executor(self._executor, lane.channel.send, notice)
            except Exception as exc:
                error = str(exc) or type(exc).__name__
                lane.last_error, lane.last_error_at = error, self._clock()
                retryable = getattr(exc, "retryable", True)
                if not retryable or attempt >= retries.attempts:
                    lane.failed += 1
                    tries = f"{attempt} attempt{'s' if attempt > 1 else ''}"
                    log.warning(
                        "notify: %s gave up on %s after %s: %s", name, notice.key, tries, error
                    )
                    if self._on_give_up is not None:
                        with contextlib.suppress(Exception):
                            await self._on_give_up(name, notice, error)
                    return
                lane.retries += 1
                delay = retries.delay(attempt)
                asked = getattr(exc, "retry_after", None)
                if isinstance(asked, int | float):
                    delay = min(max(delay, float(asked)), max(retries.backoff_max, delay))
                log.debug(
                    "notify: %s attempt %d failed (%s); retry in %.2fs", name, attempt, error, delay
                )
                await asyncio.sleep(delay)
            else:
                lane.sent += 1
                lane.last_sent_at = self._clock()
                return

    # -- looking at it ------------------------------------------------------------------
    def stats(self) -> NotifierStats:
        now = self._clock()
        return NotifierStats(
            enabled=self.settings.enabled,
            channels=[
                ChannelStats(
                    name=name,
                    min_severity=self.settings.min_severity(name),
                    sent=lane.sent,
                    failed=lane.failed,
                    retries=lane.retries,
                    dropped=lane.dropped,
                    queued=len(lane.queue),
                    sending=lane.sending,
                    last_error=lane.last_error,
                    last_error_at=lane.last_error_at,
                    last_sent_at=lane.last_sent_at,
                )
                for name, lane in self._lanes.items()
            ],
            firing_groups=self.grouper.firing,
            suppressed=self.grouper.suppressed,
            flapped=self.grouper.flapped,
            held=self.grouper.held(now) + len(self._held_events),
            dropped_quiet=self.grouper.dropped_quiet,
            incidents_open=len(self.incidents) + len(self.fleet),
            absorbed=self.absorbed,
        )


def _on_host(notice: Notification, host: str) -> Notification:
    """Another host's incident notice (a central host tells it): its title begins with
    that host, its body names it and its key carries it (``<host>/incident:<id>``)."""
    where = clean(host, NOTIFICATION, _HOST_SHOWN)
    return notice.model_copy(
        update={
            "title": f"{where}: {notice.title}",
            "body": f"Host: {where}\n{notice.body}",
            "key": f"{host}/{notice.key}",
            "host": host,
            "remote": True,
        }
    )
