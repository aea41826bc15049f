"""CommunicatorAgent: the team's memory and mouthpiece, as a thin bus adapter.

It listens to everything worth remembering (``metrics.sample``, ``alert.#``,
``incident.#``, ``remediation.#``, ``agent.#``, ``service.#``, ``analysis.result``,
``analysis.llm_status``, ``config.changed``, ``system.#``) and hands each message to the
engines that own the concerns:

- recording: :class:`~watchkeeper.storage.recorder.Recorder` keeps history in the one
  :class:`~watchkeeper.storage.Storage` the orchestrator opened and injected;
- health: :class:`~watchkeeper.notify.health.HealthTimeline` scores it and says when it
  changed, which goes out as ``health.changed``;
- activity text: :class:`~watchkeeper.notify.activity.ActivityLines` words one line per
  notable event in the chosen personality, logged and kept in the activity log;
- notification: :class:`~watchkeeper.notify.announcer.Announcer` tells people, once per
  incident rather than once per alert in it.

On a host with ``[fleet] role = "central"`` it also hears every other host's alerts,
incidents and remediation records (scope ``"fleet"``): it records them with their host,
so the history of any host is kept centrally. Who tells people of what, so that a person
gets one message per alert:

- the central host tells of fleet incidents (``fleet.incident.*``: the same alert on many
  hosts, once rather than once per host);
- a host tells of its own alerts, incidents and actions, unless ``[fleet] notify =
  "central"`` (or it runs no communicator, or its notifications are off): its heartbeat
  says whether it does (``notifies``), and the central host tells, with the host named,
  of the hosts that do not (and of a host it has not heard a heartbeat from yet, rather
  than no one). A host's incident is one notice, its alerts told through it.

The same message twice (a host catching up after a restart) is recorded once::

    agent = CommunicatorAgent("communicator", ctx, storage=orchestrator.storage)
    agent.latest_health.score          # 0-100, with agent.latest_health.reasons

Storage I/O runs in storage's own threads and notices are sent by the notifier's workers,
so a full disk or a dead webhook never blocks the loop; a storage that cannot be opened is
retried every minute while everything else runs. The agent never closes the storage: its
owner does.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from watchkeeper.agents.base import AgentContext, BaseAgent, CommandError
from watchkeeper.bus import Message
from watchkeeper.config.notifications import NotificationSettings
from watchkeeper.model.actions import ActionRecord
from watchkeeper.model.alerts import Alert, AlertState, Severity
from watchkeeper.model.events import (
    AgentRestart,
    AgentStateChange,
    ConfigChange,
    HealthPoint,
    LlmStatus,
    SystemStarted,
)
from watchkeeper.model.fleet import FleetIncident, HostBeat
from watchkeeper.model.incidents import Incident
from watchkeeper.model.metrics import MetricsSample
from watchkeeper.model.services import ServiceEvent
from watchkeeper.model.text import NOTIFICATION, clean
from watchkeeper.model.topics import HEALTH_CHANGED
from watchkeeper.notify import ChannelRegistry, NotificationChannel, Notifier
from watchkeeper.notify.activity import ActivityLines, Line
from watchkeeper.notify.announcer import Announcer
from watchkeeper.notify.base import Notification
from watchkeeper.notify.health import HealthTimeline, HealthTracker
from watchkeeper.storage import ActivityEntry, AgentEvent, RetentionPolicy, Storage
from watchkeeper.storage.errors import StorageError
from watchkeeper.storage.recorder import Recorder

__all__ = ["CommunicatorAgent"]

_LEVELS = {"warning": logging.WARNING, "critical": logging.ERROR}
#: Other hosts' firing alerts remembered (for their steps), at most; the oldest go first.
_REMOTE_ALERTS = 50_000
#: Hosts whose heartbeat said whether they tell people themselves, at most.
_REMOTE_HOSTS = 100_000


class CommunicatorAgent(BaseAgent):
    """Stores history, keeps the health timeline, logs activity and notifies people.

    ``storage`` defaults to ``ctx.storage``; one of them is required. ``channels``
    replace the configured notification channels.
    """

    kind = "communicator"
    extra_commands = ("health", "notify_test", "stats")
    #: Seconds between roll-up/retention passes, and between tries to open storage.
    maintenance_interval = 60.0

    def __init__(
        self,
        name: str,
        ctx: AgentContext,
        *,
        storage: Storage | None = None,
        channels: ChannelRegistry | list[NotificationChannel] | None = None,
        interval: float | None = None,
    ) -> None:
        super().__init__(name, ctx, interval=interval)
        storage = storage if storage is not None else ctx.storage
        if storage is None:
            raise ValueError("the communicator records into the orchestrator's storage")
        self.storage: Storage = storage
        self.recorder = Recorder(
            storage,
            monotonic=ctx.monotonic,
            maintenance_interval=self.maintenance_interval,
            retry_every=self.maintenance_interval,
            on_open_failed=self._storage_failed,
        )
        self.timeline = HealthTimeline(HealthTracker(), clock=ctx.clock)
        self.lines = ActivityLines(lambda: self.settings.personality)
        self.announcer = Announcer(
            self._notification_settings,
            channels=channels,
            clock=ctx.clock,
            on_notified=self._notified,
            on_give_up=self._gave_up,
            incident_link=lambda incident_id: self.settings.web.incident_url(incident_id),
        )
        self.on("metrics.sample", self._on_sample, maxsize=50)
        self._incident_severity: dict[str, Severity] = {}
        fleet = getattr(self.settings, "fleet", None)
        #: A central host records and tells of every host's alerts, incidents and actions.
        self.central = getattr(fleet, "role", "host") == "central"
        scope, size = ("fleet", 20_000) if self.central else ("local", 1000)
        self._remote_alerts: dict[tuple[str, str], Severity] = {}
        #: host -> it tells people of its own alerts itself (from its heartbeat)
        self._self_notifying: dict[str, bool] = {}
        self.on("alert.#", self._on_alert, maxsize=size, scope=scope)
        self.on("incident.#", self._on_incident, maxsize=size, scope=scope)
        self.on("remediation.#", self._on_remediation, maxsize=size, scope=scope)
        if self.central:
            self.on("fleet.incident.*", self._on_fleet_incident, maxsize=1000)
            self.on("fleet.heartbeat", self._on_beat, maxsize=size, scope="fleet")
        self.on("agent.#", self._on_agent)
        self.on("service.#", self._on_service)
        self.on("analysis.result", self._on_analysis)
        self.on("analysis.llm_status", self._on_llm_status)
        self.on("config.changed", self._on_config, maxsize=100)
        self.on("system.#", self._on_system, maxsize=100)

    # -- what others read ---------------------------------------------------------------
    @property
    def tracker(self) -> HealthTracker:
        """What the health score is computed from."""
        return self.timeline.tracker

    @property
    def latest_health(self) -> HealthPoint:
        """The health right now: status, 0-100 score and the reasons for it."""
        return self.timeline.current

    @property
    def health_timeline(self) -> list[HealthPoint]:
        """Health changes since start, oldest first (the last 500; storage has more)."""
        return self.timeline.records()

    @property
    def notifier(self) -> Notifier:
        """The notifier, following ``[notifications]`` as it is now."""
        return self.announcer.notifier

    @property
    def storage_error(self) -> str | None:
        """Why the history storage could not be opened, or None while it is open."""
        return self.recorder.open_error

    def _notification_settings(self) -> NotificationSettings:
        configured = getattr(self.settings, "notifications", None)
        return configured if isinstance(configured, NotificationSettings) else _DEFAULT

    @property
    def tells_own(self) -> bool:
        """Whether this host tells people of its own alerts, incidents and actions: not
        when it is a host of a fleet whose ``[fleet] notify`` is ``"central"``."""
        if self.central:
            return True
        bus = getattr(self.settings, "bus", None)
        fleet = getattr(self.settings, "fleet", None)
        deferring = getattr(fleet, "notify", "own") == "central"
        return not (deferring and getattr(bus, "backend", "memory") == "nats")

    @property
    def notifies(self) -> bool:
        """What this host's heartbeat says: it tells people of its own alerts itself
        (notifications on, a channel, and not left to the central host)."""
        settings = self._notification_settings()
        return self.tells_own and settings.enabled and bool(settings.channels)

    def tells_for(self, host: str) -> bool:
        """Whether this (central) host tells people of ``host``'s own alerts, incidents
        and actions: unless its heartbeat said it tells them itself."""
        return not self._self_notifying.get(host, False)

    # -- life ---------------------------------------------------------------------------
    @property
    def _local(self) -> str:
        return self.ctx.bus.host

    def _remote(self, message: Message) -> str | None:
        """The other host a message is about, or None for this host's own."""
        host = message.host
        return None if not host or host == self._local else host

    async def setup(self) -> None:
        await self.recorder.ensure_open()
        await self.recorder.claim(self._local)
        await self.announcer.start()
        self.timeline.begin()

    async def teardown(self) -> None:
        await self.announcer.aclose()

    async def _perform_check(self) -> None:
        """Cheap: send what is due, re-evaluate health, and once a minute maintain."""
        await self.announcer.pump()
        await self._health_changed()
        await self.recorder.upkeep(self._retention)

    # -- the engines' results -------------------------------------------------------------
    def _retention(self) -> RetentionPolicy:
        return RetentionPolicy.from_settings(self.settings.storage)

    def _storage_failed(self, exc: StorageError) -> None:
        self.logger.error("%s", self.lines.say("storage_failed", error=exc))

    async def _activity(
        self,
        message: Message | None,
        line: Line,
        *,
        kind: str | None = None,
        agent: str | None = None,
        logged: bool = False,
    ) -> None:
        """Log ``line`` (unless ``logged`` elsewhere already) and keep it in the activity
        log; ``kind`` defaults to the message's topic, ``agent`` to its sender."""
        if not logged:
            self.logger.log(_LEVELS.get(line.severity, logging.INFO), "%s", line.text)
        entry = ActivityEntry(
            ts=message.timestamp if message is not None else self.ctx.clock(),
            agent=agent or (message.sender if message is not None else self.name),
            kind=kind or (message.topic if message is not None else "activity"),
            severity=line.severity,
            message=line.text,
            subject=line.subject,
        )
        await self.recorder.activity(entry)

    async def _health_changed(self) -> None:
        change = self.timeline.update()
        if change is None:
            return
        await self.publish(HEALTH_CHANGED, change)
        await self.recorder.health(change)
        await self._activity(None, self.lines.health(change), kind="health.changed")

    async def _notified(self, notice: Notification) -> None:
        if notice.fleet_incident is not None:
            await self.recorder.fleet_notified(notice.fleet_incident.id, notice.created_at)
        elif notice.incident is not None:
            await self.recorder.incident_notified(notice.incident.id, notice.created_at)
        elif notice.alert is not None:
            # Another host's alert is told under "<host>/<fingerprint>", with its host.
            remote = notice.key != notice.alert.fingerprint
            host = notice.host if remote else (self._local or None)
            await self.recorder.notified(notice.alert.fingerprint, notice.created_at, host)

    async def _gave_up(self, channel: str, notice: Notification, error: str) -> None:
        line = self.lines.gave_up(channel, notice.key, error)
        await self._activity(None, line, kind="notify.failed")

    # -- handlers -----------------------------------------------------------------------
    async def _on_sample(self, message: Message) -> None:
        sample = message.parse(MetricsSample)
        await self.recorder.sample(sample)
        if self.tracker.services(sample.services):
            await self._health_changed()

    async def _on_alert(self, message: Message) -> None:
        alert = message.parse(Alert)
        suffix = message.topic.partition(".")[2]
        remote = self._remote(message)
        if remote is not None:
            await self._on_remote_alert(message, alert, suffix, remote)
            return
        previous = self.tracker.alerts.get(alert.fingerprint)
        step: str | None = suffix
        if suffix == "resolved" or alert.state is AlertState.RESOLVED:
            step = "resolved"
        elif suffix == "firing" and previous is not None:
            # The same alert again: only a severity change is a step in its life.
            step = "changed" if previous.severity != alert.severity else None
        self.tracker.alert(alert)
        if step is not None:
            await self.recorder.alert(
                alert, step, message.timestamp, host=self._local, message_id=message.id
            )
            await self._activity(message, self.lines.alert(alert, step, message.timestamp))
        told = None
        if suffix == "firing" and previous is None and step not in ("resolved", "escalated"):
            told = await self.recorder.last_notified(alert.fingerprint, self._local or None)
        if self.tells_own:
            await self.announcer.alert(alert, step, fired=suffix == "firing", notified_at=told)
        await self._health_changed()

    async def _on_remote_alert(
        self, message: Message, alert: Alert, suffix: str, host: str
    ) -> None:
        """Another host's alert (a central host): recorded with its host and told with the
        host named; it leaves this host's health alone."""
        key = (host, alert.id)
        previous = self._remote_alerts.pop(key, None)
        step: str | None = suffix
        if suffix == "resolved" or alert.state is AlertState.RESOLVED:
            step = "resolved"
        else:
            if suffix == "firing" and previous is not None:
                step = "changed" if previous != alert.severity else None
            self._remote_alerts[key] = alert.severity
            if len(self._remote_alerts) > _REMOTE_ALERTS:
                del self._remote_alerts[next(iter(self._remote_alerts))]
        if step is not None:
            await self.recorder.alert(
                alert, step, message.timestamp, host=host, message_id=message.id
            )
            line = self.lines.alert(alert, step, message.timestamp)
            # In the searchable activity with its host; not in this host's log (a fleet of
            # a thousand would drown it).
            await self._activity(message, _on_host(line, host), logged=True)
        if not self.tells_for(host):
            return  # that host tells people itself
        told = None
        if suffix == "firing" and previous is None and step == "firing":
            told = await self.recorder.last_notified(alert.fingerprint, host)
        await self.announcer.alert(
            alert, step, fired=suffix == "firing", notified_at=told, host=host
        )

    async def _on_fleet_incident(self, message: Message) -> None:
        incident = message.parse(FleetIncident)
        kind = message.topic.rpartition(".")[2]
        if kind != "updated":
            self.logger.info("fleet incident %s: %s", kind, clean(incident.title, NOTIFICATION))
        told = None
        if kind != "resolved":  # its id is the same after a restart of either side
            told = await self.recorder.fleet_last_notified(incident.id)
        await self.announcer.fleet_incident(kind, incident, notified_at=told)
        if kind == "resolved":
            await self.recorder.fleet_notified(incident.id, None)

    async def _on_incident(self, message: Message) -> None:
        incident = message.parse(Incident)
        kind = message.topic.partition(".")[2]
        remote = self._remote(message)
        if remote is not None:
            await self._on_remote_incident(incident, kind, remote)
            return
        told = None
        if kind == "opened" and self.tells_own:
            told = await self.recorder.incident_last_notified(incident.key)
        await self.recorder.incident(incident, host=self._local)
        # The activity log hears of an update only when the incident's severity moved.
        before = self._incident_severity.pop(incident.id, None)
        if kind != "resolved":
            if len(self._incident_severity) >= 1000:  # incidents a restart left unresolved
                self._incident_severity.clear()
            self._incident_severity[incident.id] = incident.severity
        if kind != "updated" or before not in (None, incident.severity):
            await self._activity(message, self.lines.incident(incident, kind, message.timestamp))
        if self.tells_own:
            await self.announcer.incident(kind, incident, notified_at=told)

    async def _on_remote_incident(self, incident: Incident, kind: str, host: str) -> None:
        """Another host's incident (a central host): kept in that host's history and, when
        that host does not tell people itself, told once with the host named (its alerts
        through it); an update tells nothing new unless its severity rose."""
        told = None
        tells = self.tells_for(host)
        if kind == "opened" and tells:
            told = await self.recorder.incident_last_notified(incident.key, host)
        await self.recorder.incident(incident, host=host)
        if tells:
            await self.notifier.incident(kind, incident, notified_at=told, host=host)

    async def _on_remediation(self, message: Message) -> None:
        record = message.value
        if not isinstance(record, ActionRecord):
            return  # remediation.escalated and .gave_up reach people through their alerts
        remote = self._remote(message)
        await self.recorder.action(record, host=remote or self._local)
        suffix = message.topic.partition(".")[2]
        outcome = suffix if suffix == "gave_up" else record.outcome.value
        line = self.lines.action(record, outcome)
        if remote is None:
            await self._activity(message, line)
        else:
            await self._activity(message, _on_host(line, remote), logged=True)
        tells = self.tells_own if remote is None else self.tells_for(remote)
        if tells:
            await self.announcer.action(record, outcome, line, host=remote)

    async def _on_beat(self, message: Message) -> None:
        """A host's heartbeat (a central host): whether it tells people itself."""
        host = self._remote(message)
        if host is None:
            return
        notifies = message.parse(HostBeat).notifies is True
        if host not in self._self_notifying and len(self._self_notifying) >= _REMOTE_HOSTS:
            del self._self_notifying[next(iter(self._self_notifying))]
        before = self._self_notifying.get(host)
        self._self_notifying[host] = notifies
        if before is not None and before != notifies:
            who = "the host itself" if notifies else "this central host"
            self.logger.debug("host %s: its alerts are told by %s now", host, who)

    async def _on_agent(self, message: Message) -> None:
        suffix = message.topic.partition(".")[2]
        now = self.ctx.clock()
        if suffix == "restarted":
            restart = message.parse(AgentRestart)
            agent, detail = restart.agent, restart.reason
            recent = self.tracker.agent_restarted(agent, now)
            line = self.lines.restart(agent, detail, restart.restarts)
            if recent >= self.tracker.crash_loop:
                await self.announcer.crash_loop(agent, recent, detail)
        else:  # agent.<state> from plugins or future agents: {"agent": ..., "state": ...}
            agent, state, detail = _agent_event(message, suffix)
            self.tracker.agent_state(agent, state)
            line = self.lines.agent_event(agent, suffix, detail)
        event = AgentEvent(ts=now, agent=agent, kind=suffix, detail=detail, data=message.payload)
        await self.recorder.agent_event(event)
        # The supervisor logs restarts itself; keep them out of the log twice.
        await self._activity(message, line, agent=agent, logged=suffix == "restarted")
        await self._health_changed()

    async def _on_service(self, message: Message) -> None:
        event = message.parse(ServiceEvent)
        await self._activity(message, self.lines.service(event))
        if self.tracker.service_event(event):
            await self._health_changed()

    async def _on_llm_status(self, message: Message) -> None:
        status = message.parse(LlmStatus)
        line = self.lines.llm_status(status.status, status.ok)
        # The analyzer logs it already; keep it in the searchable activity only.
        await self._activity(message, line, logged=True)

    async def _on_analysis(self, message: Message) -> None:
        await self.recorder.analysis(message.payload, message.timestamp)
        await self._activity(message, self.lines.analysis(message.payload))

    async def _on_config(self, message: Message) -> None:
        self.notifier  # noqa: B018 -- follows a change of [notifications] at once
        change = message.parse(ConfigChange)
        line = self.lines.config_changed(change.actor, change.changes)
        await self._activity(message, line)

    async def _on_system(self, message: Message) -> None:
        suffix = message.topic.partition(".")[2]
        started = message.value
        version = started.version if isinstance(started, SystemStarted) else "?"
        line = self.lines.system(suffix, version)
        event = AgentEvent(ts=message.timestamp, agent="system", kind=suffix, data=message.payload)
        await self.recorder.agent_event(event)
        await self._activity(message, line, agent="system", logged=True)

    # -- commands -----------------------------------------------------------------------
    async def handle_command(self, command: str, params: Mapping[str, Any]) -> dict[str, Any]:
        if command == "health":
            timeline = [record.model_dump(mode="json") for record in self.health_timeline[-20:]]
            return {"health": self.latest_health.model_dump(mode="json"), "timeline": timeline}
        if command == "stats":
            return {
                "storage": self.storage.stats().model_dump(mode="json"),
                "notifier": self.notifier.stats().model_dump(mode="json"),
            }
        if command == "notify_test":
            try:
                severity = Severity(str(params.get("severity", "info")))
            except ValueError:
                raise CommandError("severity must be info, warning or critical") from None
            return await self.announcer.test(severity)
        raise CommandError(f"agent {self.name!r} has no command {command!r}")


_DEFAULT = NotificationSettings()


def _on_host(line: Line, host: str) -> Line:
    """``line`` about another host: its text begins with that host."""
    return dataclasses.replace(line, text=f"{clean(host, NOTIFICATION, 64)}: {line.text}")


def _agent_event(message: Message, kind: str) -> tuple[str, str, str]:
    """(agent, state, cleaned detail) of an ``agent.<kind>`` message from a plugin."""
    event = message.parse(AgentStateChange)
    detail = clean(event.detail, NOTIFICATION, 200)
    return event.agent or message.sender, event.state or kind, detail
