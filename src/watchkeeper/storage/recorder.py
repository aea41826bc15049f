"""``Recorder``: what the team hears, kept in the one history ``Storage`` it is given.

The orchestrator creates, opens and closes the storage; the recorder only writes to it
while it is open, retries opening it (at most once per ``retry_every`` seconds) while it
is not, and runs roll-up and retention once per ``maintenance_interval``. Nothing it does
raises: a storage that is closed or failing makes every call a cheap no-op::

    recorder = Recorder(storage, monotonic=time.monotonic)
    await recorder.upkeep(lambda: RetentionPolicy.from_settings(settings.storage))
    await recorder.sample(sample)
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any

from watchkeeper.model.actions import ActionRecord
from watchkeeper.model.alerts import Alert
from watchkeeper.model.events import HealthPoint
from watchkeeper.model.incidents import Incident
from watchkeeper.model.metrics import MetricsSample
from watchkeeper.storage.errors import StorageError
from watchkeeper.storage.facade import Storage
from watchkeeper.storage.models import ActivityEntry, AgentEvent, RetentionPolicy

__all__ = ["Recorder"]


class Recorder:
    """Writes history to an injected :class:`Storage`; never creates or closes one.

    ``on_open_failed`` is told the reason in words each time an open fails (the agent
    logs it in its personality).
    """

    def __init__(
        self,
        storage: Storage,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        maintenance_interval: float = 60.0,
        retry_every: float = 60.0,
        on_open_failed: Callable[[StorageError], None] | None = None,
    ) -> None:
        self.storage = storage
        self.maintenance_interval = maintenance_interval
        self.retry_every = retry_every
        self._monotonic = monotonic
        self._on_open_failed = on_open_failed
        self._next_open = 0.0
        self._last_maintenance: float | None = None

    @property
    def open_error(self) -> str | None:
        """Why the storage could not be opened, or None while it is open."""
        return None if self.storage.is_open else self.storage.open_error

    # -- upkeep -------------------------------------------------------------------------
    async def ensure_open(self) -> None:
        """Open the storage when nobody has tried yet (the orchestrator usually has); after
        a failed try, the next one waits for :meth:`upkeep` a period later."""
        if self.storage.is_open:
            return
        if self.storage.open_error is None:
            await self._open()
        else:
            self._next_open = self._monotonic() + self.retry_every

    async def _open(self) -> None:
        self._next_open = self._monotonic() + self.retry_every
        try:
            await self.storage.open()
        except StorageError as exc:
            if self._on_open_failed is not None:
                self._on_open_failed(exc)

    async def upkeep(self, policy: Callable[[], RetentionPolicy]) -> None:
        """Call often: retries a closed storage when due, else maintains once a period
        with the retention ``policy()`` returns then (read only when it is due)."""
        now = self._monotonic()
        if not self.storage.is_open:
            if now >= self._next_open:
                await self._open()
            return
        last = self._last_maintenance
        if last is None or now - last >= self.maintenance_interval:
            self._last_maintenance = now
            await self.storage.maintain(policy())

    # -- writes ---------------------------------------------------------------------------
    async def sample(self, sample: MetricsSample) -> None:
        """Keep one sample's flat metrics."""
        if self.storage.is_open:
            await self.storage.write_sample(sample.timestamp, sample.flat())

    async def alert(
        self,
        alert: Alert,
        kind: str,
        at: float,
        *,
        host: str = "",
        message_id: str | None = None,
    ) -> None:
        """Keep one step (``firing``, ``changed``, ``escalated``, ``resolved``) of an alert
        about ``host``; the same ``message_id`` twice is kept once."""
        if self.storage.is_open:
            await self.storage.record_alert(alert, kind, at=at, host=host, message_id=message_id)

    async def incident(self, incident: Incident, *, host: str | None = None) -> None:
        """Keep an incident as ``incident.opened/updated/resolved`` reported it."""
        if self.storage.is_open:
            await self.storage.record_incident(incident, host=host)

    async def incident_notified(self, incident_id: str, at: float) -> None:
        """Remember that people were told about an incident, across restarts."""
        if self.storage.is_open:
            await self.storage.mark_incident_notified(incident_id, at)

    async def incident_last_notified(self, key: str, host: str | None = None) -> float | None:
        """When people were last told about a still-open incident about ``key``."""
        if not self.storage.is_open:
            return None
        with contextlib.suppress(StorageError):
            return await self.storage.incident_last_notified(key, host)
        return None

    async def action(self, record: ActionRecord, *, host: str = "") -> None:
        """Add or move on one entry of the audit trail (about ``host``)."""
        if self.storage.is_open:
            await self.storage.record_action(record, host=host)

    async def fleet_notified(self, incident_id: str, at: float | None) -> None:
        """Remember when people were told of a fleet incident (None: it is over)."""
        if self.storage.is_open:
            await self.storage.mark_fleet_notified(incident_id, at)

    async def fleet_last_notified(self, incident_id: str) -> float | None:
        """When people were told of a fleet incident before a restart; None when unknown."""
        if not self.storage.is_open:
            return None
        with contextlib.suppress(StorageError):
            return await self.storage.fleet_last_notified(incident_id)
        return None

    async def claim(self, host: str) -> None:
        """File the rows kept before hosts were recorded under ``host`` (this daemon's)."""
        if self.storage.is_open and host:
            await self.storage.claim_rows(host)

    async def agent_event(self, event: AgentEvent) -> None:
        """Keep an agent's (or the system's) start, stop, restart or state change."""
        if self.storage.is_open:
            await self.storage.record_agent_event(event)

    async def analysis(self, data: Mapping[str, Any], at: float) -> None:
        """Keep an analysis as it was published."""
        if self.storage.is_open:
            await self.storage.record_analysis(data, at)

    async def activity(self, entry: ActivityEntry) -> None:
        """Keep one line of the activity log."""
        if self.storage.is_open:
            await self.storage.log_activity(entry)

    async def health(self, record: HealthPoint) -> None:
        """Keep a change of the health timeline."""
        if self.storage.is_open:
            await self.storage.record_health(record)

    async def notified(self, fingerprint: str, at: float, host: str | None = None) -> None:
        """Remember that people were told about an alert (on ``host``), across restarts."""
        if self.storage.is_open:
            await self.storage.mark_notified(fingerprint, at, host)

    async def last_notified(self, fingerprint: str, host: str | None = None) -> float | None:
        """When people were last told about a still-firing alert; None when unknown."""
        if not self.storage.is_open:
            return None
        with contextlib.suppress(StorageError):
            return await self.storage.last_notified(fingerprint, host)
        return None
