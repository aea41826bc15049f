"""SensorAgent: the eyes and ears.

Every tick it turns the host into one ``MetricsSample`` (collection runs on the sensor's
own one-thread pool, so a slow ``/proc`` never stalls the event loop and nothing else
that needs a thread, such as actions waiting out a long grace, can delay sampling), adds
the state of every watched service, and publishes it on ``metrics.sample``. Service
changes do not wait for a tick: managers report them the moment they happen and they go
out on ``service.<kind>`` (``service.exited``, ``service.started``...).

Other agents and the web read ``sensor.latest`` rather than asking for a fresh sample, so
no request ever triggers collection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from watchkeeper.agents.base import AgentContext, BaseAgent, CommandError
from watchkeeper.model.topics import METRICS_SAMPLE

if TYPE_CHECKING:
    from watchkeeper.collectors import CollectorRegistry, Sampler
    from watchkeeper.model.metrics import MetricsSample

__all__ = ["SensorAgent"]

log = logging.getLogger("watchkeeper.agent.sensor")


class SensorAgent(BaseAgent):
    """Samples the host every interval and publishes ``metrics.sample``."""

    kind = "sensor"
    extra_commands = ("sample_now",)

    def __init__(
        self,
        name: str,
        ctx: AgentContext,
        *,
        collectors: CollectorRegistry | None = None,
        interval: float | None = None,
    ) -> None:
        super().__init__(name, ctx, interval=interval)
        self._registry = collectors
        self._sampler: Sampler | None = None
        self.latest: MetricsSample | None = None
        self.latest_comment: str | None = None
        self._last_mood: str | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: asyncio.Future[MetricsSample] | None = None
        # Health probes of running services, one at a time per service, each every
        # ``probe_every`` seconds: service name -> (when next due, the probe running now).
        self._probe_due: dict[str, float] = {}
        self._probing: dict[str, asyncio.Task[None]] = {}

    @property
    def registry(self) -> CollectorRegistry:
        """The collectors this sensor samples: the orchestrator's registry when it passed
        one (``collectors=``), else the built-in collectors, made on first use."""
        if self._registry is None:
            from watchkeeper.collectors import build_default_registry

            self._registry = build_default_registry(top_n=self.settings.top_processes)
        return self._registry

    async def setup(self) -> None:
        if self._sampler is None:
            from watchkeeper.collectors import Sampler

            # Kept across restarts so rates continue from the last sample.
            self._sampler = Sampler(self.registry, top_n=self.settings.top_processes)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="watchkeeper-sampler")

    async def teardown(self) -> None:
        probing, self._probing = self._probing, {}
        for task in probing.values():
            task.cancel()
        pool, self._pool, self._inflight = self._pool, None, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    async def _sample(self) -> MetricsSample:
        """One sample from the sampler thread. A sample still being taken (a collector
        stuck past the check timeout) is awaited again rather than queued behind, so at
        most one is ever in flight."""
        assert self._sampler is not None
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="watchkeeper-sampler")
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.wrap_future(self._pool.submit(self._sampler.sample))
        return await asyncio.shield(self._inflight)

    async def _service_statuses(self) -> list[Any]:
        statuses: list[Any] = []
        for manager in self.ctx.services.values():
            try:
                statuses.extend(await manager.list())
            except Exception as exc:  # one broken backend must not hide the others
                log.warning("service manager %s failed: %s", getattr(manager, "name", "?"), exc)
        return statuses

    def _start_due_probes(self, statuses: list[Any]) -> None:
        """Start the health probe of each running service whose probe is due.

        Every backend reports whether a service runs; only its probe says whether it
        works. Probes run in the background (one per service at a time, bounded by the
        probe's own timeout), so a slow one never delays a tick; the manager keeps the
        verdict, shows it on the service's status and emits ``service.healthy`` or
        ``service.unhealthy`` when it changes."""
        specs = {spec.name: spec for spec in self.settings.services}
        now = self.ctx.monotonic()
        for status in statuses:
            spec = specs.get(status.name)
            if spec is None or spec.probe is None or str(status.state) != "running":
                self._probe_due.pop(status.name, None)
                continue
            running = self._probing.get(spec.name)
            if (running is not None and not running.done()) or now < self._probe_due.get(
                spec.name, 0.0
            ):
                continue
            manager = self.ctx.services.get(spec.manager)
            if manager is None:
                continue
            self._probe_due[spec.name] = now + spec.probe_every
            self._probing[spec.name] = asyncio.create_task(
                self._probe(manager, spec.name), name=f"probe {spec.name}"
            )

    @staticmethod
    async def _probe(manager: Any, name: str) -> None:
        try:
            await manager.probe(name)
        except Exception as exc:  # a failing backend is logged, the next tick tries again
            log.warning("probing service %s failed: %s", name, exc)

    async def _perform_check(self) -> None:
        sample = await self._sample()
        services = await self._service_statuses()
        self._start_due_probes(services)
        if services:
            sample = sample.model_copy(update={"services": services})
        self.latest = sample
        self._comment(sample)
        await self.publish(METRICS_SAMPLE, sample)
        if sample.errors:
            log.debug("partial sample: %s", sample.errors)

    def _comment(self, sample: MetricsSample) -> None:
        from watchkeeper.commentary import comment, mood

        settings = self.settings
        line = comment(sample, settings.personality, thresholds=settings.thresholds)
        self.latest_comment = line
        if line is None:
            return
        # Say it when the mood changes, not every tick: the log is for events.
        current = mood(sample, settings.thresholds)
        if current != self._last_mood:
            self._last_mood = current
            log.info("%s", line)

    def status(self) -> dict[str, Any]:
        """For the status file and the API: how fresh the view is and what is missing."""
        latest = self.latest
        return {
            "sampled_at": latest.timestamp if latest else None,
            "partial": dict(latest.errors) if latest else {},
            "services": [
                {"name": s.name, "state": str(s.state), "pid": s.pid, "healthy": s.healthy}
                for s in (latest.services if latest else [])
            ],
            "comment": self.latest_comment,
        }

    async def handle_command(self, command: str, params: Mapping[str, Any]) -> dict[str, Any]:
        if command == "sample_now":
            await self.check_once()
            latest = self.latest
            return {"sample": latest.model_dump(mode="json") if latest else None}
        raise CommandError(f"agent {self.name!r} has no command {command!r}")
