"""One analysis state per host, for a central analyzer (``[fleet] role = "central"``).

A central analyzer analyses every host that runs no analyzer of its own. Each such host
gets its own :class:`HostAnalysis` (its own ``AnalysisEngine``: levels, trends, baselines,
alerts, incidents), created at its first sample and dropped when the host has been silent
for long, so two hosts' samples never mix::

    hosts = HostAnalyses(settings, rules=rules, own="central-1", data_dir=data_dir)
    hosts.learn(beat)                          # the host's heartbeat: does it analyse itself?
    state = hosts.get("web-1", now)            # None when that host is not ours to analyse

Which hosts are served is learnt from their heartbeats (``HostBeat.agents``): a host is
analysed here only once its heartbeat has been heard and names no analyzer, so a host
that analyses itself is never analysed twice. Baselines are kept per host in
``<data_dir>/fleet-baselines/<host>.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watchkeeper.analysis.engine import AnalysisEngine
from watchkeeper.analysis.rules import RuleRegistry
from watchkeeper.config.fleet import check_host_id
from watchkeeper.model.fleet import HostBeat
from watchkeeper.model.metrics import MetricsSample

if TYPE_CHECKING:
    from watchkeeper.config import Settings

__all__ = ["MAX_HOSTS", "STALE_EVENT_S", "HostAnalyses", "HostAnalysis"]

log = logging.getLogger("watchkeeper.agent.analyzer")

#: Hosts one central analyzer serves at most; more are refused and counted.
MAX_HOSTS = 10_000
#: Heartbeats remembered at most (hosts that analyse themselves included).
_MAX_KNOWN = 4 * MAX_HOSTS
_BASELINE_DIR = "fleet-baselines"
#: An event this much older than its host's newest sample is a replay, not news.
STALE_EVENT_S = 10.0


@dataclass
class HostAnalysis:
    """What a central analyzer knows of one host it analyses."""

    host: str
    engine: AnalysisEngine
    last_seen: float
    latest_sample: MetricsSample | None = None
    samples: int = 0
    #: Open incident id -> the severity rank last announced (for the LLM's "worse").
    incident_rank: dict[str, int] = field(default_factory=dict)

    def stale(self, at: float) -> bool:
        """Whether an event of that host's at ``at`` (its clock) is older than its newest
        sample by more than ``STALE_EVENT_S``: a stream replaying what a central missed
        (its analyzer restarted), which the newer samples' service states already cover."""
        sample = self.latest_sample
        return sample is not None and at < sample.timestamp - STALE_EVENT_S

    def critical(self, service: str) -> bool:
        """Whether ``service`` is critical on that host, from its latest sample."""
        sample = self.latest_sample
        if sample is None:
            return False
        return any(s.name == service and s.critical for s in sample.services)


class HostAnalyses:
    """Every remote host's analysis state, bounded by ``max_hosts``.

    ``forget_after`` seconds without a sample or heartbeat drops a host's state (its
    baselines are saved first); it starts afresh when the host returns.
    """

    def __init__(
        self,
        settings: Callable[[], Settings],
        *,
        own: str,
        rules: RuleRegistry | None = None,
        data_dir: Path | None = None,
        max_hosts: int = MAX_HOSTS,
        forget_after: float | None = None,
    ) -> None:
        self._settings = settings
        self._rules = rules
        self.own = own
        self.max_hosts = max_hosts
        self._dir = data_dir / _BASELINE_DIR if data_dir is not None else None
        self._forget_after = forget_after
        self.hosts: dict[str, HostAnalysis] = {}
        #: host -> (runs its own analyzer, when its beat was heard)
        self._beats: dict[str, tuple[bool, float]] = {}
        self.refused = 0  # samples from hosts past the cap
        self.ignored = 0  # samples from hosts that analyse themselves or are not known yet

    @property
    def forget_after(self) -> float:
        if self._forget_after is not None:
            return self._forget_after
        return 10 * self._settings().fleet.lost_after

    # -- who is ours ----------------------------------------------------------------------
    def learn(self, beat: HostBeat, now: float) -> None:
        """Take a host's heartbeat: it is analysed here only while it names no analyzer."""
        if beat.host == self.own:
            return
        own_analyzer = "analyzer" in beat.agents
        if beat.host not in self._beats and len(self._beats) >= _MAX_KNOWN:
            return
        self._beats[beat.host] = (own_analyzer, now)
        if own_analyzer and beat.host in self.hosts:
            log.debug("host %s runs its own analyzer now; no longer analysed here", beat.host)
            self.drop(beat.host)
        elif beat.host in self.hosts:
            self.hosts[beat.host].last_seen = now

    def serves(self, host: str) -> bool:
        """Whether ``host``'s samples are analysed here."""
        known = self._beats.get(host)
        return host != self.own and known is not None and not known[0]

    def get(self, host: str, now: float) -> HostAnalysis | None:
        """The analysis state of ``host``, created on first use; None when the host is not
        served here (its own analyzer, not heard yet, a bad id, past the cap)."""
        state = self.hosts.get(host)
        if state is not None:
            state.last_seen = now
            return state
        if not self.serves(host):
            self.ignored += 1
            return None
        try:
            check_host_id(host)
        except ValueError:
            self.ignored += 1
            return None
        if len(self.hosts) >= self.max_hosts:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warning(
                    "analysing %d hosts already (the most one analyzer serves); "
                    "host %s is not analysed (%d samples refused so far)",
                    self.max_hosts,
                    host,
                    self.refused,
                )
            return None
        engine = AnalysisEngine(self._settings, rules=self._rules)
        self._load_baselines(host, engine)
        state = HostAnalysis(host=host, engine=engine, last_seen=now)
        self.hosts[host] = state
        log.debug("analysing host %s here (it runs no analyzer of its own)", host)
        return state

    def drop(self, host: str) -> None:
        state = self.hosts.pop(host, None)
        if state is not None:
            self.save(state)

    def forget_silent(self, now: float) -> list[str]:
        """Drop the hosts silent for ``forget_after`` seconds; their ids."""
        limit = self.forget_after
        gone = [h for h, s in self.hosts.items() if now - s.last_seen > limit]
        for host in gone:
            log.debug("host %s silent for %.0fs: its analysis state is dropped", host, limit)
            self.drop(host)
        for host in [h for h, (_, at) in self._beats.items() if now - at > limit]:
            if host not in self.hosts:
                del self._beats[host]
        return gone

    # -- baselines ------------------------------------------------------------------------
    def _path(self, host: str) -> Path | None:
        return self._dir / f"{host}.json" if self._dir is not None else None

    def _load_baselines(self, host: str, engine: AnalysisEngine) -> None:
        path = self._path(host)
        if path is None:
            return
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("cannot read the baselines of host %s: %s", host, exc)
            return
        with contextlib.suppress(Exception):
            engine.baselines.load_state(state)

    def save(self, state: HostAnalysis) -> None:
        """Write one host's baselines when they changed."""
        path = self._path(state.host)
        if path is None or not state.engine.baselines.dirty:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = path.with_suffix(".tmp")
            temp.write_text(json.dumps(state.engine.baselines.to_state()), encoding="utf-8")
            os.replace(temp, path)
            state.engine.baselines.dirty = False
        except OSError as exc:
            log.warning("cannot save the baselines of host %s: %s", state.host, exc)

    def save_all(self) -> None:
        for state in list(self.hosts.values()):
            self.save(state)

    def status(self) -> dict[str, Any]:
        """For the analyzer's status: how many hosts are analysed here, and their counts."""
        return {
            "hosts": len(self.hosts),
            "max_hosts": self.max_hosts,
            "self_analysing": sum(1 for own, _ in self._beats.values() if own),
            "refused_samples": self.refused,
            "ignored_samples": self.ignored,
            "firing": sum(len(s.engine.firing()) for s in self.hosts.values()),
            "incidents": sum(len(s.engine.incidents_open()) for s in self.hosts.values()),
        }
