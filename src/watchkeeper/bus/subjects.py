"""How bus topics become NATS subjects, and back.

A message about host ``web-1`` on topic ``alert.firing`` travels on subject
``wk.web-1.alert.firing`` (the prefix is ``[bus] subject_prefix``). Topic patterns map
word for word: ``*`` stays ``*`` and ``#`` (any number of trailing words) becomes NATS's
``>``; a scope of ``"fleet"`` puts ``*`` in the host's place::

    subject("wk", "web-1", "alert.firing")        # 'wk.web-1.alert.firing'
    subject_pattern("wk", "fleet", "alert.#")     # 'wk.*.alert.>'
    parse_subject("wk", "wk.web-1.alert.firing")  # ('web-1', 'alert.firing')

Telemetry (samples, heartbeats) and events (alerts, incidents, actions, services,
commands' outcomes) go to different JetStream streams: events are kept for days and
queued in the local outbox while the server is away; telemetry is kept for an hour and a
newer sample replaces a missed one.
"""

from __future__ import annotations

from watchkeeper.model.envelope import topic_matches

__all__ = [
    "EVENTS_STREAM",
    "TELEMETRY_PATTERNS",
    "TELEMETRY_STREAM",
    "is_telemetry",
    "parse_subject",
    "subject",
    "subject_pattern",
]

EVENTS_STREAM = "WK_EVENTS"
TELEMETRY_STREAM = "WK_TELEMETRY"
#: Topics whose newest message supersedes the older ones: not queued while disconnected.
TELEMETRY_PATTERNS = ("metrics.sample", "fleet.heartbeat", "analysis.llm_status")


def is_telemetry(topic: str) -> bool:
    """True for the topics kept briefly and never queued in the outbox."""
    return any(topic_matches(pattern, topic) for pattern in TELEMETRY_PATTERNS)


def subject(prefix: str, host: str, topic: str) -> str:
    """The NATS subject of ``topic`` about ``host``."""
    return f"{prefix}.{host}.{topic}"


def subject_pattern(prefix: str, scope: str, pattern: str) -> str:
    """The NATS subject filter for a bus ``pattern`` within ``scope`` ("fleet" or a host)."""
    host = "*" if scope == "fleet" else scope
    words = [">" if word == "#" else word for word in pattern.split(".")]
    return ".".join([prefix, host, *words])


def parse_subject(prefix: str, value: str) -> tuple[str, str] | None:
    """``(host, topic)`` of a subject under ``prefix``; None for any other subject."""
    head, _, rest = value.partition(".")
    if head != prefix:
        return None
    host, _, topic = rest.partition(".")
    if not host or not topic:
        return None
    return host, topic
