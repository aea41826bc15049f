"""CommunicatorAgent: the team's memory and mouthpiece.

It listens to everything worth remembering (``metrics.sample``, ``alert.#``,
``remediation.#``, ``agent.#``, ``service.#``, ``analysis.result``,
``analysis.llm_status``, ``config.changed``, ``system.#``), keeps it in
:class:`~watchkeeper.storage.Storage`, writes one activity line per notable event in the
chosen personality, keeps the health timeline, publishes ``health.changed``, and tells
people through the notification channels::

    agent = CommunicatorAgent("communicator", ctx, storage=storage)
    agent.latest_health.score          # 0-100, with agent.latest_health.reasons

The web and the CLI query history through ``agent.storage`` (the same ``Storage`` object
the orchestrator passes in). Storage I/O runs in storage's own threads and notices are
sent by the notifier's workers, so a full disk or a dead webhook never blocks the loop;
a storage that cannot be opened is retried every minute while everything else runs.

Health: a 0-100 score from firing alerts by severity, unwell agents and critical services
that are down (the formula is on :meth:`HealthTracker.evaluate` and in
``docs/notifications.md``); ``health.changed`` goes out when the status or the score band
(90+, 70+, 40+, below) changes.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Mapping
from typing import Any

from watchkeeper.agents._health import HealthTracker, score_band
from watchkeeper.agents.base import AgentContext, BaseAgent, CommandError
from watchkeeper.analysis.alerts import Alert, AlertState, Severity
from watchkeeper.bus import Message
from watchkeeper.metrics import MetricsSample
from watchkeeper.notify import ChannelRegistry, NotificationChannel, Notifier, build_channels
from watchkeeper.notify.base import Notification
from watchkeeper.notify.compose import clean
from watchkeeper.notify.phrases import (
    FAILED_OUTCOMES,
    action_facts,
    alert_facts,
    analysis_facts,
    service_facts,
    speak,
)
from watchkeeper.notify.settings import NotificationSettings
from watchkeeper.personality import say
from watchkeeper.remediation.records import ActionRecord
from watchkeeper.services.base import ServiceEvent
from watchkeeper.storage import (
    ActivityEntry,
    AgentEvent,
    HealthRecord,
    RetentionPolicy,
    Storage,
    StorageError,
)
from watchkeeper.storage.models import ActivitySeverity
from watchkeeper.supervisor import AgentRestart

__all__ = ["CommunicatorAgent", "HealthTracker", "score_band"]

_SAMPLE_FIELDS = frozenset(MetricsSample.model_fields)
_LEVELS = {"warning": logging.WARNING, "critical": logging.ERROR}
_UP_STATES = {"running", "starting"}
_ALERT_SEVERITY: dict[Severity, ActivitySeverity] = {
    Severity.INFO: "info",
    Severity.WARNING: "warning",
    Severity.CRITICAL: "critical",
}
_HEALTH_SEVERITY: dict[str, ActivitySeverity] = {
    "healthy": "info",
    "degraded": "warning",
    "critical": "critical",
}


class CommunicatorAgent(BaseAgent):
    """Stores history, keeps the health timeline, logs activity and notifies people."""

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
        self._owns_storage = storage is None
        self.storage = storage or Storage.in_data_dir(ctx.data_dir, clock=ctx.clock)
        self._channels = channels
        self._notifier: Notifier | None = None
        self.tracker = HealthTracker()
        self._timeline: deque[HealthRecord] = deque(maxlen=500)
        self._current = HealthRecord(ts=ctx.clock(), status="healthy", score=100)
        self._last_maintenance: float | None = None
        self._next_open = 0.0
        self.storage_error: str | None = None
        self.on("metrics.sample", self._on_sample, maxsize=50)
        self.on("alert.#", self._on_alert)
        self.on("remediation.#", self._on_remediation)
        self.on("agent.#", self._on_agent)
        self.on("service.#", self._on_service)
        self.on("analysis.result", self._on_analysis)
        self.on("analysis.llm_status", self._on_llm_status)
        self.on("config.changed", self._on_config, maxsize=100)
        self.on("system.#", self._on_system, maxsize=100)

    # -- what others read ---------------------------------------------------------------
    @property
    def latest_health(self) -> HealthRecord:
        """The health right now: status, 0-100 score and the reasons for it."""
        return self._current

    @property
    def health_timeline(self) -> list[HealthRecord]:
        """Health changes since start, oldest first (the last 500; storage has more)."""
        return list(self._timeline)

    @property
    def notifier(self) -> Notifier:
        """The notifier, following ``[notifications]`` as it is now: a live change of the
        settings or the channels applies from the next notice on, without a restart."""
        configured = getattr(self.settings, "notifications", None)
        settings = configured if isinstance(configured, NotificationSettings) else None
        settings = settings or NotificationSettings()
        if self._notifier is None:
            channels = self._channels if self._channels is not None else build_channels(settings)
            self._notifier = Notifier(
                settings,
                channels,
                clock=self.ctx.clock,
                on_notified=self._notified,
                on_give_up=self._gave_up,
            )
        elif self._notifier.settings != settings:
            rebuilt = (
                self._channels is None and self._notifier.settings.channels != settings.channels
            )
            self._notifier.reconfigure(settings, build_channels(settings) if rebuilt else None)
        return self._notifier

    # -- life ---------------------------------------------------------------------------
    async def setup(self) -> None:
        if not self.storage.is_open:
            await self._open_storage()
        await self.notifier.start()
        if not self._timeline:
            self._timeline.append(self._current)

    async def teardown(self) -> None:
        if self._notifier is not None:
            await self._notifier.aclose()
            self._notifier.close_channels()
        if self._owns_storage:
            await self.storage.close()

    async def _open_storage(self) -> None:
        self._next_open = self.ctx.monotonic() + self.maintenance_interval
        try:
            await self.storage.open()
        except StorageError as exc:
            self.storage_error = str(exc)
            self.logger.error("%s", self._say("storage_failed", error=exc))
        else:
            self.storage_error = None

    async def _perform_check(self) -> None:
        """Cheap: send what is due, re-evaluate health, and once a minute maintain."""
        await self.notifier.pump()
        await self._health_changed()
        now = self.ctx.monotonic()
        if not self.storage.is_open:
            if now >= self._next_open:
                await self._open_storage()
            return
        last = self._last_maintenance
        if last is None or now - last >= self.maintenance_interval:
            self._last_maintenance = now
            policy = RetentionPolicy.from_settings(self.settings.storage)
            await self.storage.maintain(policy)

    # -- helpers ------------------------------------------------------------------------
    def _say(self, event: str, **facts: Any) -> str:
        return speak(event, self.settings.personality, **facts)

    async def _activity(
        self,
        message: Message | None,
        text: str,
        *,
        kind: str | None = None,
        severity: ActivitySeverity = "info",
        agent: str | None = None,
        subject: str | None = None,
        logged: bool = False,
    ) -> None:
        """Log one line (unless ``logged`` elsewhere already) and keep it in the activity log.

        ``kind`` defaults to the message's topic, ``agent`` to its sender."""
        if not logged:
            self.logger.log(_LEVELS.get(severity, logging.INFO), "%s", text)
        entry = ActivityEntry(
            ts=message.timestamp if message is not None else self.ctx.clock(),
            agent=agent or (message.sender if message is not None else self.name),
            kind=kind or (message.topic if message is not None else "activity"),
            severity=severity,
            message=text,
            subject=subject,
        )
        if self.storage.is_open:
            await self.storage.log_activity(entry)

    async def _health_changed(self) -> None:
        record = self.tracker.evaluate(self.ctx.clock())
        self._current = record
        previous = self._timeline[-1] if self._timeline else None
        if previous is not None and (
            previous.status == record.status
            and score_band(previous.score) == score_band(record.score)
        ):
            return
        self._timeline.append(record)
        payload = record.model_dump(mode="json")
        payload["band"] = score_band(record.score)
        payload["previous"] = previous.model_dump(mode="json") if previous else None
        await self.publish("health.changed", payload)
        if self.storage.is_open:
            await self.storage.record_health(record)
        reasons = "; ".join(record.reasons)
        event = "health_changed" if reasons else "health_ok"
        severity = _HEALTH_SEVERITY[record.status]
        text = self._say(event, status=record.status, score=record.score, reasons=reasons)
        await self._activity(None, text, kind="health.changed", severity=severity)

    async def _notified(self, notice: Notification) -> None:
        if notice.alert is not None and self.storage.is_open:
            await self.storage.mark_notified(notice.key, notice.created_at)

    async def _gave_up(self, channel: str, notice: Notification, error: str) -> None:
        text = self._say("notify_gave_up", channel=channel, key=notice.key, error=error)
        await self._activity(None, text, kind="notify.failed", severity="warning", subject=channel)

    # -- handlers -----------------------------------------------------------------------
    async def _on_sample(self, message: Message) -> None:
        payload = message.payload
        sample = MetricsSample.model_validate(
            {key: value for key, value in payload.items() if key in _SAMPLE_FIELDS}
        )
        if self.storage.is_open:
            await self.storage.write_sample(sample.timestamp, sample.flat())
        services = payload.get("services")
        if isinstance(services, list) and self.tracker.services(services):
            await self._health_changed()

    async def _on_alert(self, message: Message) -> None:
        alert = message.parse(Alert)
        suffix = message.topic.partition(".")[2]
        previous = self.tracker.alerts.get(alert.fingerprint)
        kind: str | None = suffix
        if suffix == "resolved" or alert.state is AlertState.RESOLVED:
            kind = "resolved"
        elif suffix == "firing" and previous is not None:
            # The same alert again: only a severity change is a step in its life.
            kind = "changed" if previous.severity != alert.severity else None
        self.tracker.alert(alert)
        if kind is not None:
            if self.storage.is_open:
                await self.storage.record_alert(alert, kind, at=message.timestamp)
            line, facts = alert_facts(alert, kind, message.timestamp)
            severity = "info" if kind == "resolved" else _ALERT_SEVERITY[alert.severity]
            text = self._say(line, **facts)
            await self._activity(message, text, severity=severity, subject=alert.subject)
        if kind == "resolved":
            await self.notifier.alert_resolved(alert)
        elif kind == "escalated":
            await self.notifier.alert_escalated(alert)
        elif suffix == "firing":
            told = None
            if previous is None and self.storage.is_open:
                with contextlib.suppress(StorageError):
                    told = await self.storage.last_notified(alert.fingerprint)
            await self.notifier.alert_firing(alert, notified_at=told)
        await self._health_changed()

    async def _on_remediation(self, message: Message) -> None:
        record = message.parse(ActionRecord)
        if self.storage.is_open:
            await self.storage.record_action(record)
        suffix = message.topic.partition(".")[2]
        outcome = suffix if suffix == "gave_up" else record.outcome.value
        line, severity, facts = action_facts(record, outcome)
        text = self._say(line, **facts)
        await self._activity(message, text, severity=severity, subject=record.target)
        if outcome in FAILED_OUTCOMES or outcome == "pending":
            plain = speak(line, "plain", **facts)
            await self.notifier.event(
                f"remediation:{record.action}:{record.target}:{outcome}",
                Severity.WARNING if severity == "warning" else Severity.INFO,
                plain,
                f"{plain}\nReason: {clean(record.reason, 500)}",
                details={"record": record.model_dump(mode="json")},
            )

    async def _on_agent(self, message: Message) -> None:
        suffix = message.topic.partition(".")[2]
        now = self.ctx.clock()
        if suffix == "restarted":
            restart = message.parse(AgentRestart)
            agent, detail = restart.agent, restart.reason
            recent = self.tracker.agent_restarted(agent, now)
            text = self._say(
                "agent_restarted", agent=agent, reason=detail, restarts=restart.restarts
            )
            if recent >= self.tracker.crash_loop:
                await self.notifier.event(
                    f"agent:{agent}:crash-loop",
                    Severity.WARNING,
                    f"agent {agent} restarted {recent} times in a short while ({detail})",
                )
        else:  # agent.<state> from plugins or future agents: {"agent": ..., "state": ...}
            payload = message.payload
            agent = str(payload.get("agent") or payload.get("name") or message.sender)
            state = payload.get("state")
            self.tracker.agent_state(agent, str(state) if state else suffix)
            detail = clean(str(payload.get("reason") or payload.get("detail") or ""), 200)
            extra = f": {detail}" if detail else ""
            text = self._say("agent_event", agent=agent, kind=suffix, detail=extra)
        if self.storage.is_open:
            event = AgentEvent(
                ts=now, agent=agent, kind=suffix, detail=detail, data=message.payload
            )
            await self.storage.record_agent_event(event)
        severity: ActivitySeverity = "info"
        if suffix in ("restarted", "failed", "degraded"):
            severity = "warning"
        # The supervisor logs restarts itself; keep them out of the log twice.
        await self._activity(
            message, text, severity=severity, agent=agent, logged=suffix == "restarted"
        )
        await self._health_changed()

    async def _on_service(self, message: Message) -> None:
        event = message.parse(ServiceEvent)
        line, severity, facts = service_facts(event)
        text = self._say(line, **facts)
        await self._activity(message, text, severity=severity, subject=event.name)
        if self.tracker.service_event(event):
            await self._health_changed()

    async def _on_llm_status(self, message: Message) -> None:
        status = clean(str(message.payload.get("status", "")), 160)
        severity: ActivitySeverity = "info" if message.payload.get("ok") else "warning"
        # The analyzer logs it already; keep it in the searchable activity only.
        await self._activity(message, status, severity=severity, subject="llm", logged=True)

    async def _on_analysis(self, message: Message) -> None:
        data = message.payload
        if self.storage.is_open:
            await self.storage.record_analysis(data, message.timestamp)
        facts = analysis_facts(data)
        if data.get("source", "rules") == "rules":
            phrase = "analysis_fallback" if data.get("fallback_reason") else "analysis_rules"
            facts["reason"] = clean(str(data.get("fallback_reason") or ""), 120)
        else:
            phrase = "analysis"
        text = self._say(phrase, **facts)
        subject = data.get("alert_id") or data.get("fingerprint")
        await self._activity(message, text, subject=str(subject) if subject else None)

    async def _on_config(self, message: Message) -> None:
        self.notifier  # noqa: B018 -- follows a change of [notifications] at once
        data = message.payload
        changes = data.get("changes")
        keys = ", ".join(sorted(changes)) if isinstance(changes, Mapping) else "?"
        text = say(
            "config_changed", self.settings.personality, actor=data.get("actor", "?"), keys=keys
        )
        await self._activity(message, text)

    async def _on_system(self, message: Message) -> None:
        suffix = message.topic.partition(".")[2]
        version = message.payload.get("version", "?")
        if suffix == "started":
            text = self._say("system_started", version=version)
        elif suffix == "stopped":
            text = self._say("system_stopped")
        else:
            text = self._say("system_event", kind=suffix)
        if self.storage.is_open:
            event = AgentEvent(
                ts=message.timestamp, agent="system", kind=suffix, data=message.payload
            )
            await self.storage.record_agent_event(event)
        await self._activity(message, text, agent="system", logged=True)

    # -- commands -----------------------------------------------------------------------
    async def handle_command(self, command: str, params: Mapping[str, Any]) -> dict[str, Any]:
        if command == "health":
            timeline = [record.model_dump(mode="json") for record in self.health_timeline[-20:]]
            return {"health": self._current.model_dump(mode="json"), "timeline": timeline}
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
            queued = await self.notifier.event(
                f"test:{self.ctx.clock()}", severity, f"test notice ({severity.value})"
            )
            return {"queued": queued, "channels": sorted(self.notifier.route(severity))}
        raise CommandError(f"agent {self.name!r} has no command {command!r}")
