"""``Announcer``: what people are told, through a notifier that follows the settings.

It decides which events become notices (an incident's opening, rise in severity and
resolution, which stand for the alerts in it; a lone alert's firing, escalation and
resolution; a failed, timed-out, given-up or pending remediation; an agent in a crash
loop) and keeps one :class:`~watchkeeper.notify.Notifier` in step with
``[notifications]``: a live change of the settings or the channels applies from the next
notice on, without a restart::

    announcer = Announcer(lambda: settings.notifications, clock=time.time)
    await announcer.start()
    await announcer.incident("opened", incident)
    await announcer.alert(alert, "firing", fired=True)   # silent: told through its incident
    await announcer.aclose()
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from watchkeeper.config.notifications import NotificationSettings
from watchkeeper.model.actions import ActionRecord
from watchkeeper.model.alerts import Alert, Severity
from watchkeeper.model.fleet import FleetIncident
from watchkeeper.model.incidents import Incident
from watchkeeper.model.text import NOTIFICATION, clean
from watchkeeper.notify.activity import ActionLine
from watchkeeper.notify.base import ChannelRegistry, NotificationChannel
from watchkeeper.notify.channels import build_channels
from watchkeeper.notify.dispatcher import Notifier, OnGiveUp, OnNotified
from watchkeeper.notify.phrases import FAILED_OUTCOMES

__all__ = ["Announcer"]

Channels = ChannelRegistry | list[NotificationChannel]


class Announcer:
    """Tells people; ``settings`` is read at each use, ``channels`` (when given) replace
    the configured ones (tests, plugins).

    ``on_notified`` runs for each notice that goes out (to remember it across restarts),
    ``on_give_up`` when a channel gives up on one; ``incident_link`` gives an incident's
    page on the dashboard for its notices.
    """

    def __init__(
        self,
        settings: Callable[[], NotificationSettings],
        *,
        channels: Channels | None = None,
        clock: Callable[[], float] = time.time,
        on_notified: OnNotified | None = None,
        on_give_up: OnGiveUp | None = None,
        incident_link: Callable[[str], str | None] | None = None,
    ) -> None:
        self._settings = settings
        self._incident_link = incident_link
        self._channels = channels
        self._clock = clock
        self._on_notified = on_notified
        self._on_give_up = on_give_up
        self._notifier: Notifier | None = None

    @property
    def notifier(self) -> Notifier:
        """The notifier, reconfigured first when ``[notifications]`` changed."""
        settings = self._settings()
        if self._notifier is None:
            channels = self._channels if self._channels is not None else build_channels(settings)
            self._notifier = Notifier(
                settings,
                channels,
                clock=self._clock,
                on_notified=self._on_notified,
                on_give_up=self._on_give_up,
                incident_link=self._incident_link,
            )
        elif self._notifier.settings != settings:
            rebuilt = (
                self._channels is None and self._notifier.settings.channels != settings.channels
            )
            self._notifier.reconfigure(settings, build_channels(settings) if rebuilt else None)
        return self._notifier

    async def start(self) -> None:
        await self.notifier.start()

    async def aclose(self) -> None:
        """Stop the workers and close the channels (only when the notifier was made)."""
        if self._notifier is not None:
            await self._notifier.aclose()
            self._notifier.close_channels()

    async def pump(self) -> None:
        """Send what grouping or quiet hours held back and is now due."""
        await self.notifier.pump()

    async def alert(
        self,
        alert: Alert,
        step: str | None,
        *,
        fired: bool,
        notified_at: float | None = None,
        host: str | None = None,
    ) -> None:
        """An alert's ``step`` (``resolved``, ``escalated``, ...; None when it is the same
        alert again); ``fired`` when it came as ``alert.firing``, which grouping may
        repeat; ``notified_at``: when people were last told about it before a restart;
        ``host``: another host's alert, told by a central host with that host named."""
        if step == "resolved":
            await self.notifier.alert_resolved(alert, host=host)
        elif step == "escalated":
            await self.notifier.alert_escalated(alert, host=host)
        elif fired:
            await self.notifier.alert_firing(alert, notified_at=notified_at, host=host)

    async def fleet_incident(
        self, kind: str, incident: FleetIncident, *, notified_at: float | None = None
    ) -> None:
        """``fleet.incident.<kind>``: people hear once of the same alert on many hosts;
        ``notified_at``: when they were told of it before a restart."""
        await self.notifier.fleet_incident(kind, incident, notified_at=notified_at)

    async def incident(
        self, kind: str, incident: Incident, *, notified_at: float | None = None
    ) -> None:
        """``incident.<kind>``: people hear of the incident once, not of each alert in it;
        ``notified_at``: when they were last told of this trouble before a restart."""
        await self.notifier.incident(kind, incident, notified_at=notified_at)

    async def action(
        self, record: ActionRecord, outcome: str, line: ActionLine, *, host: str | None = None
    ) -> None:
        """A remediation that failed, timed out, gave up or waits for a person (on
        ``host``, another host, named first)."""
        if outcome not in FAILED_OUTCOMES and outcome != "pending":
            return
        where = "" if host is None else f"{clean(host, NOTIFICATION, 64)}: "
        details: dict[str, Any] = {"record": record.model_dump(mode="json")}
        if host is not None:
            details["host"] = host
        await self.notifier.event(
            f"{'' if host is None else host + '/'}remediation:{record.action}:"
            f"{record.target}:{outcome}",
            Severity.WARNING if line.severity == "warning" else Severity.INFO,
            f"{where}{line.plain}",
            f"{where}{line.plain}\nReason: {clean(record.reason, NOTIFICATION, 500)}",
            details=details,
            remote=host is not None,
        )

    async def crash_loop(self, agent: str, restarts: int, reason: str) -> None:
        """An agent restarted ``restarts`` times in a short while."""
        await self.notifier.event(
            f"agent:{agent}:crash-loop",
            Severity.WARNING,
            f"agent {agent} restarted {restarts} times in a short while ({reason})",
        )

    async def test(self, severity: Severity) -> dict[str, Any]:
        """A test notice at ``severity``: whether it was queued and the channels routed."""
        queued = await self.notifier.event(
            f"test:{self._clock()}", severity, f"test notice ({severity.value})"
        )
        return {"queued": queued, "channels": sorted(self.notifier.route(severity))}
