"""FleetAgent: the fleet view's ears, a thin bus adapter (only with ``[fleet] role =
"central"``).

It listens to every host (scope ``"fleet"``) for ``fleet.heartbeat``, ``metrics.sample``,
``alert.*``, ``incident.*``, ``remediation.#`` and ``system.stopped``, and hands each
message, with the host it is about, to the engines:

- :class:`~watchkeeper.fleet.state.FleetState` keeps every host's state
  (``agent.fleet_state``, read by the web view and the CLI);
- :class:`~watchkeeper.fleet.judge.FleetJudge` makes one fleet incident of the same alert
  on many hosts, published on ``fleet.incident.opened`` / ``updated`` / ``resolved``::

    agent = FleetAgent("fleet", ctx)
    agent.fleet_state.hosts(time.time())    # every host, worst first

At start it reads the alerts still firing from the history (the central communicator
records every host's), so a restarted fleet view has them, and their fleet incidents with
the same ids, at once. Per message it does one dictionary update; a sample is kept as its
raw JSON and parsed only when someone opens that host. Updates of open fleet incidents go
out once a check (every second by default), however many hosts joined in between.

Its log keeps to the changes that matter on a fleet: a host lost (silent for
``fleet.lost_after`` or stopped) and back, one line each (one line for many hosts at
once); fleet incidents opened and resolved are the communicator's lines. Each host's own
messages are not logged here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from watchkeeper.agents.base import AgentContext, BaseAgent, CommandError
from watchkeeper.bus import Message
from watchkeeper.config.fleet import FleetSettings
from watchkeeper.fleet.judge import Change, FleetJudge
from watchkeeper.fleet.state import FleetState
from watchkeeper.model.actions import ActionRecord
from watchkeeper.model.alerts import Alert
from watchkeeper.model.fleet import FleetHostState, HostBeat
from watchkeeper.model.incidents import Incident
from watchkeeper.model.topics import FLEET_INCIDENT_TOPICS
from watchkeeper.storage.errors import StorageError

__all__ = ["FleetAgent"]

#: Seconds between prunes of hosts lost for more than a day.
_PRUNE_EVERY = 60.0
#: Hosts named in one "lost" or "back" line; the rest are counted.
_NAMED = 10


class FleetAgent(BaseAgent):
    """Feeds every host's messages to :class:`FleetState` and the fleet judge."""

    kind = "fleet"
    extra_commands = ("fleet", "fleet_host", "fleet_stats")

    def __init__(
        self,
        name: str,
        ctx: AgentContext,
        *,
        interval: float | None = 1.0,
        queue: int = 20_000,
    ) -> None:
        super().__init__(name, ctx, interval=interval)
        fleet = self._fleet_settings()
        self._fleet = fleet
        self.fleet_state = FleetState(fleet)
        self.judge = FleetJudge(fleet)
        self.bad_messages = 0
        self.last_bad: str | None = None
        self._last_prune = ctx.monotonic()
        #: Hosts seen lost (and said so in the log), until they are heard again.
        self.lost: set[str] = set()
        self.on("fleet.heartbeat", self._on_beat, maxsize=queue, scope="fleet")
        self.on("metrics.sample", self._on_sample, maxsize=queue, scope="fleet")
        self.on("alert.*", self._on_alert, maxsize=queue, scope="fleet")
        self.on("incident.*", self._on_incident, maxsize=queue, scope="fleet")
        self.on("remediation.#", self._on_action, maxsize=queue, scope="fleet")
        self.on("system.stopped", self._on_stopped, maxsize=1000, scope="fleet")

    def _fleet_settings(self) -> FleetSettings:
        configured = getattr(self.settings, "fleet", None)
        return configured if isinstance(configured, FleetSettings) else FleetSettings()

    # -- life ---------------------------------------------------------------------------
    async def setup(self) -> None:
        """Start from the alerts still firing in the history (the central communicator
        records every host's), so a restarted fleet view shows them and their fleet
        incidents at once, with the ids they had."""
        storage = self.ctx.storage
        if storage is None or not storage.is_open:
            return
        try:
            firing = await storage.firing_by_host()
        except StorageError as exc:
            self.logger.warning("fleet view starts empty: %s", exc)
            return
        now = self.ctx.clock()
        changes: list[Change] = []
        for host, alert in reversed(firing):  # oldest first, as they fired
            if not host:
                continue
            self.fleet_state.observe_alert(host, alert, "alert.firing", alert.updated_at)
            if self.fleet_state.state_of(host, now) is not None:
                changes += self.judge.observe(host, alert, "alert.firing", now)
        await self._announce(changes)
        # Hosts known only from the history, not heard since: lost already, not news.
        self.lost.update(
            host
            for host in self.fleet_state.host_names()
            if self.fleet_state.state_of(host, now) is FleetHostState.LOST
        )

    async def _perform_check(self) -> None:
        """Follow ``[fleet]`` changes, send the gathered incident updates, prune."""
        fleet = self._fleet_settings()
        if fleet is not self._fleet:
            self._fleet = fleet
            self.fleet_state.configure(fleet)
            self.judge.configure(fleet)
        await self._announce(self.judge.flush(self.ctx.clock()))
        self._lost_and_back(self.ctx.clock())
        mono = self.ctx.monotonic()
        if mono - self._last_prune >= _PRUNE_EVERY:
            self._last_prune = mono
            self.fleet_state.prune(self.ctx.clock())

    def _lost_and_back(self, now: float) -> None:
        """One log line for the hosts lost since the last check, one for those back."""
        state_of = self.fleet_state.state_of
        lost, back = [], []
        for host in self.fleet_state.host_names():
            is_lost = state_of(host, now) is FleetHostState.LOST
            if is_lost and host not in self.lost:
                lost.append(host)
            elif not is_lost and host in self.lost:
                back.append(host)
        self.lost.difference_update(back)
        self.lost.intersection_update(self.fleet_state.host_names())  # pruned ones
        self.lost.update(lost)
        if lost:
            after = self._fleet.lost_after
            self.logger.warning("%s lost (nothing heard for %gs, or stopped)", _hosts(lost), after)
        if back:
            self.logger.info("%s back", _hosts(back))

    async def _announce(self, changes: list[Change]) -> None:
        for kind, incident in changes:
            self.fleet_state.observe_fleet_incident(incident)
            await self.publish(FLEET_INCIDENT_TOPICS[kind], incident)

    def _bad(self, message: Message, exc: ValidationError) -> None:
        self.bad_messages += 1
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "value"
        self.last_bad = f"{message.topic} from {message.host!r}: {where}: {first['msg']}"[:300]
        if self.bad_messages <= 10 or self.bad_messages % 1000 == 0:
            self.logger.warning(
                "ignored a bad message (%d so far): %s", self.bad_messages, self.last_bad
            )

    # -- handlers -----------------------------------------------------------------------
    async def _on_beat(self, message: Message) -> None:
        try:
            beat = message.parse(HostBeat)
        except ValidationError as exc:
            self._bad(message, exc)
            return
        # The subject says who spoke (the server enforces it); the beat's own claim does not.
        self.fleet_state.observe_beat(beat, self.ctx.clock(), host=message.host)

    async def _on_sample(self, message: Message) -> None:
        self.fleet_state.observe_sample(message.host, message.payload, self.ctx.clock())

    async def _on_alert(self, message: Message) -> None:
        try:
            alert = message.parse(Alert)
        except ValidationError as exc:
            self._bad(message, exc)
            return
        now = self.ctx.clock()
        self.fleet_state.observe_alert(message.host, alert, message.topic, now)
        if self.fleet_state.state_of(message.host, now) is None:
            return  # refused (too many hosts, or not a host id)
        await self._announce(self.judge.observe(message.host, alert, message.topic, now))

    async def _on_incident(self, message: Message) -> None:
        try:
            incident = message.parse(Incident)
        except ValidationError as exc:
            self._bad(message, exc)
            return
        self.fleet_state.observe_incident(message.host, incident, self.ctx.clock())

    async def _on_action(self, message: Message) -> None:
        if message.topic in ("remediation.escalated", "remediation.gave_up"):
            return  # they reach the view through the host's alerts
        try:
            record = message.parse(ActionRecord)
        except ValidationError as exc:
            self._bad(message, exc)
            return
        self.fleet_state.observe_action(message.host, record, self.ctx.clock())

    async def _on_stopped(self, message: Message) -> None:
        now = self.ctx.clock()
        self.fleet_state.observe_stopped(message.host, now)
        await self._announce(self.judge.drop_host(message.host, now))

    # -- reads --------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """For the status snapshot: hosts by state, messages, fleet incidents."""
        stats = self.fleet_state.stats(self.ctx.clock()).to_dict()
        return {
            **stats,
            "judge": self.judge.stats(),
            "bad_messages": self.bad_messages,
            "last_bad": self.last_bad,
        }

    async def handle_command(self, command: str, params: Mapping[str, Any]) -> dict[str, Any]:
        now = self.ctx.clock()
        if command == "fleet":
            return {
                "hosts": [row.model_dump(mode="json") for row in self.fleet_state.hosts(now)],
                "incidents": [
                    item.model_dump(mode="json") for item in self.fleet_state.incidents()
                ],
            }
        if command == "fleet_host":
            host = str(params.get("host", ""))[:64]
            view = self.fleet_state.host_view(host, now)
            if view is None:
                raise CommandError(f"no host {host!r} in the fleet view")
            return {"host": view}
        if command == "fleet_stats":
            return {"stats": self.status()}
        raise CommandError(f"agent {self.name!r} has no command {command!r}")


def _hosts(names: list[str]) -> str:
    """``"host web-1"``, ``"3 hosts: a, b, c"``, ``"40 hosts: a, … (and 30 more)"``."""
    if len(names) == 1:
        return f"host {names[0]}"
    shown = ", ".join(names[:_NAMED])
    more = f" (and {len(names) - _NAMED} more)" if len(names) > _NAMED else ""
    return f"{len(names)} hosts: {shown}{more}"
