"""Every topic of watchkeeper's bus, each a typed constant with its model.

Publish with the constant and the model, read with the constant::

    await bus.publish(METRICS_SAMPLE, sample, sender="sensor")
    sample = METRICS_SAMPLE.read(message)            # a MetricsSample

Subscriptions take patterns as before (``alert.*``, ``remediation.#``, ``#``); each
message still carries the model of its own topic. ``BUILTIN`` holds them all; a bus starts
with a copy and a plugin adds its own (``heartbeat.beat``) outside the namespaces below.

=========================  ====================  ==========================================
topic                      model                 published by
=========================  ====================  ==========================================
metrics.sample             MetricsSample         sensor, every interval
alert.firing/resolved/     Alert                 analyzer (remediator for give-ups)
escalated
analysis.result            AnalysisResult        analyzer (rules or LLM)
incident.opened/updated/   Incident              analyzer: correlated alerts as one problem
resolved
analysis.llm_status        LlmStatus             analyzer, when the LLM comes or goes
remediation.<outcome>      ActionRecord          remediator: started, pending, succeeded,
                                                 failed, refused, rejected, dry_run,
                                                 timed_out
remediation.escalated      Escalation            remediator, nothing left to try
remediation.gave_up        GaveUp                remediator, a target failed too often
service.<kind>             ServiceEvent          service managers: started, exited,
                                                 healthy, unhealthy, stopped
health.changed             HealthChange          communicator
agent.restarted            AgentRestart          supervisor
agent.<state>              AgentStateChange      plugins and future agents
config.changed             ConfigChange          live configuration
system.started/stopped     SystemStarted/...     orchestrator
command.<agent>, .all      Command → AgentReply  web, CLI, plugins (request/reply)
fleet.heartbeat            HostBeat              every host in a fleet (NATS bus)
fleet.incident.opened/     FleetIncident         the fleet view: one alert on many hosts
updated/resolved
=========================  ====================  ==========================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from watchkeeper.model.actions import ActionRecord
from watchkeeper.model.alerts import Alert
from watchkeeper.model.analysis import AnalysisResult
from watchkeeper.model.envelope import Topic, TopicRegistry, UnknownTopic, WrongPayload
from watchkeeper.model.events import (
    AgentReply,
    AgentRestart,
    AgentStateChange,
    Command,
    ConfigChange,
    Escalation,
    GaveUp,
    HealthChange,
    LlmStatus,
    SystemStarted,
    SystemStopped,
)
from watchkeeper.model.fleet import FleetIncident, HostBeat
from watchkeeper.model.incidents import Incident
from watchkeeper.model.metrics import MetricsSample
from watchkeeper.model.services import ServiceEvent

__all__ = [
    "AGENT_RESTARTED",
    "AGENT_STATE",
    "ALERT_ESCALATED",
    "ALERT_FIRING",
    "ALERT_RESOLVED",
    "ALERT_TOPICS",
    "ANALYSIS_LLM_STATUS",
    "ANALYSIS_RESULT",
    "BUILTIN",
    "COMMAND",
    "COMMAND_ALL",
    "CONFIG_CHANGED",
    "FLEET_HEARTBEAT",
    "FLEET_INCIDENT_OPENED",
    "FLEET_INCIDENT_RESOLVED",
    "FLEET_INCIDENT_TOPICS",
    "FLEET_INCIDENT_UPDATED",
    "HEALTH_CHANGED",
    "INCIDENT_OPENED",
    "INCIDENT_RESOLVED",
    "INCIDENT_TOPICS",
    "INCIDENT_UPDATED",
    "METRICS_SAMPLE",
    "REMEDIATION_ESCALATED",
    "REMEDIATION_GAVE_UP",
    "REMEDIATION_OUTCOMES",
    "RESERVED",
    "SERVICE_TOPICS",
    "SYSTEM_STARTED",
    "SYSTEM_STOPPED",
    "Topic",
    "adopt",
    "command_for",
]

METRICS_SAMPLE: Topic[MetricsSample] = Topic(
    "metrics.sample", MetricsSample, "one sample of the host's metrics"
)

ALERT_FIRING: Topic[Alert] = Topic("alert.firing", Alert, "an alert started or changed")
ALERT_RESOLVED: Topic[Alert] = Topic("alert.resolved", Alert, "an alert ended")
ALERT_ESCALATED: Topic[Alert] = Topic("alert.escalated", Alert, "a remedy failed; louder")
ALERT_TOPICS: Mapping[str, Topic[Alert]] = {
    "firing": ALERT_FIRING,
    "resolved": ALERT_RESOLVED,
    "escalated": ALERT_ESCALATED,
}
"""The alert topic of each transition kind (``ALERT_TOPICS[transition.kind]``)."""

ANALYSIS_RESULT: Topic[AnalysisResult] = Topic(
    "analysis.result", AnalysisResult, "an analysis, by the rules or the LLM"
)
ANALYSIS_LLM_STATUS: Topic[LlmStatus] = Topic(
    "analysis.llm_status", LlmStatus, "the LLM came or went"
)

INCIDENT_OPENED: Topic[Incident] = Topic("incident.opened", Incident, "an incident began")
INCIDENT_UPDATED: Topic[Incident] = Topic(
    "incident.updated", Incident, "an incident changed: members, severity or root cause"
)
INCIDENT_RESOLVED: Topic[Incident] = Topic("incident.resolved", Incident, "an incident ended")
INCIDENT_TOPICS: Mapping[str, Topic[Incident]] = {
    "opened": INCIDENT_OPENED,
    "updated": INCIDENT_UPDATED,
    "resolved": INCIDENT_RESOLVED,
}
"""The incident topic of each change (``INCIDENT_TOPICS["opened"]``)."""

_OUTCOMES = ("pending", "succeeded", "failed", "refused", "rejected", "dry_run", "timed_out")
REMEDIATION_OUTCOMES: Mapping[str, Topic[ActionRecord]] = {
    "running": Topic("remediation.started", ActionRecord, "an action started"),
    **{
        outcome: Topic(f"remediation.{outcome}", ActionRecord, f"an action ended: {outcome}")
        for outcome in _OUTCOMES
    },
}
"""The topic of each action outcome (``REMEDIATION_OUTCOMES[record.outcome.value]``);
``running`` goes out as ``remediation.started``."""
REMEDIATION_ESCALATED: Topic[Escalation] = Topic(
    "remediation.escalated", Escalation, "nothing left to try; a person must look"
)
REMEDIATION_GAVE_UP: Topic[GaveUp] = Topic(
    "remediation.gave_up", GaveUp, "a target failed too often; attempts stop for a while"
)

SERVICE_TOPICS: Mapping[str, Topic[ServiceEvent]] = {
    kind: Topic(f"service.{kind}", ServiceEvent, f"a service {kind}")
    for kind in ("started", "exited", "healthy", "unhealthy", "stopped")
}
"""The topic of each service event kind (``SERVICE_TOPICS[event.kind]``)."""

HEALTH_CHANGED: Topic[HealthChange] = Topic(
    "health.changed", HealthChange, "the system's health status or band changed"
)
AGENT_RESTARTED: Topic[AgentRestart] = Topic(
    "agent.restarted", AgentRestart, "the supervisor restarted an agent"
)
AGENT_STATE: Topic[AgentStateChange] = Topic(
    "agent.*", AgentStateChange, "an agent changed state (plugins, future agents)"
)
CONFIG_CHANGED: Topic[ConfigChange] = Topic(
    "config.changed", ConfigChange, "the configuration in force changed"
)
SYSTEM_STARTED: Topic[SystemStarted] = Topic("system.started", SystemStarted, "the daemon is up")
SYSTEM_STOPPED: Topic[SystemStopped] = Topic("system.stopped", SystemStopped, "the daemon stopped")
COMMAND: Topic[Command] = Topic(
    "command.*", Command, "a command for one agent (request/reply)", reply=AgentReply
)
COMMAND_ALL: Topic[Command] = COMMAND.at("all")
FLEET_HEARTBEAT: Topic[HostBeat] = Topic(
    "fleet.heartbeat", HostBeat, "a host's account of itself (fleet mode)"
)
FLEET_INCIDENT_OPENED: Topic[FleetIncident] = Topic(
    "fleet.incident.opened", FleetIncident, "the same alert on many hosts"
)
FLEET_INCIDENT_UPDATED: Topic[FleetIncident] = Topic(
    "fleet.incident.updated", FleetIncident, "a fleet incident gained or lost hosts"
)
FLEET_INCIDENT_RESOLVED: Topic[FleetIncident] = Topic(
    "fleet.incident.resolved", FleetIncident, "a fleet incident ended"
)
FLEET_INCIDENT_TOPICS: Mapping[str, Topic[FleetIncident]] = {
    "opened": FLEET_INCIDENT_OPENED,
    "updated": FLEET_INCIDENT_UPDATED,
    "resolved": FLEET_INCIDENT_RESOLVED,
}


def command_for(agent: str) -> Topic[Command]:
    """The command topic of one agent: ``command_for("sensor")`` is ``command.sensor``."""
    return COMMAND.at(agent)


def _all() -> list[Topic[Any]]:
    return [
        METRICS_SAMPLE,
        *ALERT_TOPICS.values(),
        ANALYSIS_RESULT,
        ANALYSIS_LLM_STATUS,
        *INCIDENT_TOPICS.values(),
        *REMEDIATION_OUTCOMES.values(),
        REMEDIATION_ESCALATED,
        REMEDIATION_GAVE_UP,
        *SERVICE_TOPICS.values(),
        HEALTH_CHANGED,
        AGENT_RESTARTED,
        AGENT_STATE,
        CONFIG_CHANGED,
        SYSTEM_STARTED,
        SYSTEM_STOPPED,
        COMMAND,
        FLEET_HEARTBEAT,
        *FLEET_INCIDENT_TOPICS.values(),
    ]


BUILTIN = TopicRegistry(_all())
"""watchkeeper's own topics; ``InMemoryBus()`` starts with a copy."""

RESERVED = frozenset(topic.name.partition(".")[0] for topic in BUILTIN) | {"_reply"}
"""First words only watchkeeper's own topics use; a plugin's topics go elsewhere."""


def adopt(registry: TopicRegistry, name: str, value: BaseModel) -> Topic[Any]:
    """The topic ``name`` on ``registry``, declared with ``value``'s model if new.

    This is how a plugin's own topics (``heartbeat.beat``) come to exist: the first publish
    declares them. Names under watchkeeper's namespaces (``alert``, ``command``, …) are
    never declared this way; an unknown one there is refused.
    """
    found = registry.get(name)
    if found is not None:
        return found
    if name.partition(".")[0] in RESERVED:
        raise UnknownTopic(f"topic {name!r} is not one of watchkeeper's topics")
    if not isinstance(value, BaseModel):
        raise WrongPayload(
            f"topic {name!r}: a payload is a pydantic model, not {type(value).__name__}"
        )
    return registry.add(Topic(name, type(value), "declared by its first publish"))
