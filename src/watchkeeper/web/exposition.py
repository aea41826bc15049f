"""Prometheus exposition: host metrics, alert states, action counts, watchkeeper's health.

Every series carries a ``host`` label, this host's id (``[bus] host_id``, else the
machine's), so the series of many hosts can share one Prometheus. On the central host
(``[fleet] role = "central"``) the ``watchkeeper_fleet_*`` series describe every host of
the fleet, each with that host's id as its ``host`` label: its state (up, stale, lost),
health score, firing alerts, open incidents, pending approvals and the age of its newest
message. Host ids are subject tokens; display names never become labels.

``WatchkeeperCollector`` is a prometheus-client ``Collector`` that reads the latest
snapshot when scraped (never collecting anything itself). Host metrics are named from the
same declarations the collectors emit under: the spec ``disk.{mount}.percent`` becomes
``watchkeeper_disk_percent{mount="/"}``, its description the HELP line. It lives in a
registry of its own, made when the app is built, never the global default one::

    registry = build_registry(hub)
    text = generate_latest(registry) + fleet_exposition(orchestrator)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Sample

from watchkeeper import __version__
from watchkeeper.model.fleet import FleetHostState
from watchkeeper.model.metrics import SERVICE_METRIC_SPECS, MetricSpec
from watchkeeper.web.fleet_view import fleet_view

if TYPE_CHECKING:
    from watchkeeper.web.live import LiveHub

__all__ = [
    "HostLabelled",
    "SpecIndex",
    "WatchkeeperCollector",
    "build_registry",
    "fleet_exposition",
    "prometheus_name",
]

_PREFIX = "watchkeeper_"
_BAD = re.compile(r"[^a-zA-Z0-9_]")
_PLACEHOLDER = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_ALIVE = {"running", "paused", "degraded", "starting"}
_MAX_ALERT_SERIES = 200
#: Hosts given per-host fleet series; a bigger fleet shows its worst hosts and the counts.
_MAX_FLEET_SERIES = 10_000


def prometheus_name(spec_name: str) -> tuple[str, tuple[str, ...]]:
    """``"disk.{mount}.percent"`` → ``("watchkeeper_disk_percent", ("mount",))``."""
    words: list[str] = []
    labels: list[str] = []
    for part in spec_name.split("."):
        match = _PLACEHOLDER.match(part)
        if match:
            labels.append(match.group(1))
        else:
            words.append(_BAD.sub("_", part))
    return _PREFIX + "_".join(words), tuple(labels)


@dataclass(frozen=True)
class _Family:
    name: str
    labels: tuple[str, ...]
    help: str


class SpecIndex:
    """Maps flat metric keys to (family, label values) through the declared specs."""

    def __init__(self, specs: Iterable[MetricSpec]) -> None:
        self.families: dict[str, _Family] = {}
        self._exact: dict[str, _Family] = {}
        patterns: list[tuple[int, re.Pattern[str], _Family]] = []
        for spec in specs:
            name, labels = prometheus_name(spec.name)
            family = self.families.get(name)
            if family is None:
                family = _Family(name, labels, f"{spec.description} ({spec.unit})")
                self.families[name] = family
            elif family.labels != labels:
                continue  # two specs would share a name with different labels: keep the first
            if not spec.is_pattern:
                self._exact[spec.name] = family
                continue
            regex = ""
            literal = 0
            for index, part in enumerate(spec.name.split(".")):
                sep = r"\." if index else ""
                match = _PLACEHOLDER.match(part)
                if match:
                    regex += f"{sep}(?P<{match.group(1)}>.+)"
                else:
                    regex += sep + re.escape(part)
                    literal += len(part)
            patterns.append((literal, re.compile(regex), family))
        # The most specific pattern (most literal text) wins when two could match.
        patterns.sort(key=lambda item: -item[0])
        self._patterns = patterns
        self._memo: dict[str, tuple[_Family, tuple[str, ...]] | None] = {}

    def lookup(self, key: str) -> tuple[_Family, tuple[str, ...]] | None:
        if key in self._memo:
            return self._memo[key]
        found: tuple[_Family, tuple[str, ...]] | None = None
        family = self._exact.get(key)
        if family is not None:
            found = (family, ())
        else:
            for _, regex, family in self._patterns:
                match = regex.fullmatch(key)
                if match:
                    found = (family, tuple(match.group(label) for label in family.labels))
                    break
        if len(self._memo) > 20_000:  # keys churn only with mounts/interfaces: stay bounded
            self._memo.clear()
        self._memo[key] = found
        return found


class WatchkeeperCollector(Collector):
    """Reads the hub's view at scrape time; see the module docstring."""

    def __init__(self, hub: LiveHub) -> None:
        self.hub = hub
        self._index: SpecIndex | None = None

    def _spec_index(self) -> SpecIndex:
        if self._index is None:
            orchestrator = self.hub.orchestrator
            sampled = "collectors" not in orchestrator.unused_registries()
            specs = list(orchestrator.registries.collectors.metric_specs()) if sampled else []
            self._index = SpecIndex([*specs, *SERVICE_METRIC_SPECS])
        return self._index

    def collect(self) -> Iterator[Metric]:
        yield from self._host()
        yield from self._agents()
        yield from self._alerts()
        yield from self._actions()
        yield from self._self()

    def _host(self) -> Iterator[Metric]:
        sample = self.hub.sources.latest_sample()
        if sample is None:
            return
        index = self._spec_index()
        families: dict[str, GaugeMetricFamily] = {}
        for key, value in sample.flat().items():
            found = index.lookup(key)
            if found is None:
                continue
            family, labels = found
            metric = families.get(family.name)
            if metric is None:
                metric = GaugeMetricFamily(family.name, family.help, labels=family.labels)
                families[family.name] = metric
            metric.add_metric(labels, value)
        yield from families.values()
        yield GaugeMetricFamily(
            "watchkeeper_sample_timestamp_seconds",
            "When the latest sample was taken (unix time)",
            value=sample.timestamp,
        )

    def _agents(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("watchkeeper_agent_up", "1 while the agent runs", labels=["agent"])
        state = GaugeMetricFamily(
            "watchkeeper_agent_state",
            "The agent's state (1 for the current one)",
            labels=["agent", "state"],
        )
        checks = CounterMetricFamily("watchkeeper_agent_checks", "Checks run", labels=["agent"])
        errors = CounterMetricFamily("watchkeeper_agent_errors", "Checks failed", labels=["agent"])
        restarts = CounterMetricFamily(
            "watchkeeper_agent_restarts", "Restarts by the supervisor", labels=["agent"]
        )
        duration = GaugeMetricFamily(
            "watchkeeper_agent_check_duration_seconds",
            "How long the last check took",
            labels=["agent"],
        )
        for name, agent in self.hub.orchestrator.agents.items():
            current = str(agent.state)
            up.add_metric([name], 1.0 if current in _ALIVE else 0.0)
            state.add_metric([name, current], 1.0)
            checks.add_metric([name], agent.checks)
            errors.add_metric([name], agent.errors)
            restarts.add_metric([name], agent.restarts)
            if agent.last_duration_ms is not None:
                duration.add_metric([name], agent.last_duration_ms / 1000)
        yield from (up, state, checks, errors, restarts, duration)

    def _alerts(self) -> Iterator[Metric]:
        firing = self.hub.sources.firing()
        counts = GaugeMetricFamily(
            "watchkeeper_alerts_firing", "Firing alerts by severity", labels=["severity"]
        )
        per = {"info": 0, "warning": 0, "critical": 0}
        each = GaugeMetricFamily(
            "watchkeeper_alert_firing",
            "1 for each firing alert",
            labels=["rule", "subject", "severity"],
        )
        for alert in firing[:_MAX_ALERT_SERIES]:
            each.add_metric([alert.rule, alert.subject, alert.severity.value], 1.0)
        for alert in firing:
            per[alert.severity.value] = per.get(alert.severity.value, 0) + 1
        for severity, count in per.items():
            counts.add_metric([severity], count)
        yield counts
        yield each
        open_now = self.hub.sources.open_incidents()
        if open_now is None:
            open_now = self.hub.open_incidents()
        incidents = GaugeMetricFamily(
            "watchkeeper_incidents_open", "Open incidents by severity", labels=["severity"]
        )
        flapping = 0
        by_severity = {"info": 0, "warning": 0, "critical": 0}
        for incident in open_now:
            by_severity[incident.severity.value] += 1
            flapping += 1 if incident.flapping else 0
        for severity, count in by_severity.items():
            incidents.add_metric([severity], count)
        yield incidents
        yield GaugeMetricFamily(
            "watchkeeper_incidents_flapping", "Open incidents that are flapping", value=flapping
        )
        health = self.hub.health()
        yield GaugeMetricFamily(
            "watchkeeper_health_score", "The health score, 0-100", value=health.get("score", 0)
        )
        status = GaugeMetricFamily(
            "watchkeeper_health_status",
            "The health status (1 for the current one)",
            labels=["status"],
        )
        for name in ("healthy", "degraded", "critical"):
            status.add_metric([name], 1.0 if health.get("status") == name else 0.0)
        yield status

    def _actions(self) -> Iterator[Metric]:
        actions = CounterMetricFamily(
            "watchkeeper_actions",
            "Remediation records seen since start, by outcome",
            labels=["outcome"],
        )
        for outcome, count in sorted(self.hub.action_counts.items()):
            actions.add_metric([outcome], count)
        yield actions
        remediator = self.hub.sources.remediator()
        if remediator is not None:
            yield GaugeMetricFamily(
                "watchkeeper_actions_pending",
                "Actions waiting for approval",
                value=len(remediator.pending()),
            )

    def _self(self) -> Iterator[Metric]:
        orch = self.hub.orchestrator
        info = GaugeMetricFamily("watchkeeper_info", "watchkeeper's version", labels=["version"])
        info.add_metric([__version__], 1.0)
        yield info
        started = orch.started_at
        uptime = orch.clock() - started if started else 0.0
        yield GaugeMetricFamily("watchkeeper_uptime_seconds", "Time since start", value=uptime)
        bus = orch.bus.stats()
        for name, value, text in (
            ("published", bus.published, "Messages published on the bus"),
            ("delivered", bus.delivered, "Messages delivered to subscribers"),
            ("dropped", bus.dropped, "Messages dropped by subscribers that fell behind"),
        ):
            yield CounterMetricFamily(f"watchkeeper_bus_{name}", text, value=value)
        analyzer = self.hub.sources.analyzer()
        if analyzer is not None:
            yield GaugeMetricFamily(
                "watchkeeper_llm_available",
                "1 while the local LLM answers",
                value=1.0 if analyzer.llm_available else 0.0,
            )
            # The model's last answer: what an analysis costs on this host.
            last = analyzer.latest_llm_analysis
            for name, text, figure in (
                ("latency_seconds", "Seconds the last model analysis took", "latency_s"),
                (
                    "completion_tokens",
                    "Tokens the model wrote in its last analysis",
                    "completion_tokens",
                ),
                (
                    "tokens_per_second",
                    "The model's writing speed in its last analysis",
                    "tokens_per_s",
                ),
            ):
                measured = getattr(last, figure, None) if last is not None else None
                if measured is not None:
                    yield GaugeMetricFamily(
                        f"watchkeeper_llm_last_{name}", text, value=float(measured)
                    )
        yield GaugeMetricFamily(
            "watchkeeper_event_stream_clients",
            "Open dashboard event streams",
            value=self.hub.client_count,
        )


_FLEET_PER_HOST = (
    ("health_score", "A host's health score, 0-100", "score"),
    ("alerts_firing", "A host's firing alerts", "firing"),
    ("incidents_open", "A host's open incidents", "incidents"),
    ("actions_pending", "A host's actions waiting for approval", "pending_approvals"),
    ("last_seen_age_seconds", "Seconds since the fleet view last heard from a host", "age_s"),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def fleet_exposition(orchestrator: Any) -> bytes:
    """The ``watchkeeper_fleet_*`` series in the text format, empty unless this host keeps
    the fleet view. Written directly rather than through prometheus-client, which spends
    about 15 us a series: at 5,000 hosts that is 45,000 series, more than half a second
    with the event loop held. Host ids are subject tokens; they are escaped all the same."""
    state = fleet_view(orchestrator)
    if state is None:
        return b""
    now = orchestrator.clock()
    rows = state.hosts(now)
    central = _label(str(orchestrator.bus.host))
    hosts = [(_label(str(row.host)), row) for row in rows[:_MAX_FLEET_SERIES]]
    out: list[str] = []

    def family(name: str, text: str) -> None:
        out.append(f"# HELP {name} {text}\n# TYPE {name} gauge\n")

    counts = {s.value: 0 for s in FleetHostState}
    for row in rows:
        counts[str(row.state)] = counts.get(str(row.state), 0) + 1
    family("watchkeeper_fleet_hosts", "Hosts of the fleet by state")
    for name, count in counts.items():
        out.append(f'watchkeeper_fleet_hosts{{host="{central}",state="{name}"}} {float(count)!r}\n')
    name = "watchkeeper_fleet_host_state"
    family(name, "A host's state as the fleet view sees it (1 for the current one)")
    for host, row in hosts:
        for each in FleetHostState:
            on = "1.0" if row.state == each else "0.0"
            out.append(f'{name}{{host="{host}",state="{each.value}"}} {on}\n')
    for suffix, text, attr in _FLEET_PER_HOST:
        name = f"watchkeeper_fleet_host_{suffix}"
        family(name, text)
        for host, row in hosts:
            value = getattr(row, attr)
            if value is not None:
                out.append(f'{name}{{host="{host}"}} {float(value)!r}\n')
    fleet_open = sum(1 for item in state.incidents() if getattr(item, "state", "") == "open")
    family("watchkeeper_fleet_incidents_open", "Fleet incidents open (one problem on many hosts)")
    out.append(f'watchkeeper_fleet_incidents_open{{host="{central}"}} {float(fleet_open)!r}\n')
    return "".join(out).encode()


class HostLabelled(Collector):
    """Another collector's series, each with ``host="<id>"`` added where it has none (the
    fleet series name their own host)."""

    def __init__(self, inner: Collector, host: str) -> None:
        self.inner = inner
        self.host = host

    def collect(self) -> Iterator[Metric]:
        for metric in self.inner.collect():
            metric.samples = [
                sample
                if "host" in sample.labels
                else Sample(
                    sample.name,
                    {"host": self.host, **sample.labels},
                    sample.value,
                    sample.timestamp,
                    sample.exemplar,
                )
                for sample in metric.samples
            ]
            yield metric


def build_registry(hub: LiveHub) -> CollectorRegistry:
    """A fresh registry with watchkeeper's collector and this process's own CPU/memory,
    every series labelled with this host's id."""
    from prometheus_client import ProcessCollector

    host = str(hub.orchestrator.bus.host)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HostLabelled(WatchkeeperCollector(hub), host))
    process = ProcessCollector(namespace="watchkeeper", registry=None)
    registry.register(HostLabelled(process, host))
    return registry
