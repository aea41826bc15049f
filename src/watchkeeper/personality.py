"""Words for the log: plain, or with a dry wit that never hides the facts.

``say(event, personality, **facts)`` picks the line for ``event``; the witty variant
carries the same facts as the plain one, so a person skimming either learns the same::

    log.info(say("agent_restart", "witty", agent="sensor", reason="hung", backoff=2))
"""

from __future__ import annotations

import zlib
from typing import Any

__all__ = ["PHRASES", "say"]

# Each event: (plain, [witty variants]). Witty lines are chosen by a stable hash of the facts,
# so the same event does not flicker between lines in one run and tests can read them.
PHRASES: dict[str, tuple[str, list[str]]] = {
    "system_start": (
        "watchkeeper {version} starting: {agents} agent(s), data in {data_dir}",
        [
            "🛡️  watchkeeper {version} on watch: {agents} agent(s), notes in {data_dir}",
            "🛡️  watchkeeper {version} clocking in with {agents} agent(s); paperwork in {data_dir}",
        ],
    ),
    "system_stop": (
        "watchkeeper stopped after {uptime:.0f}s",
        [
            "👋 watchkeeper off watch after {uptime:.0f}s. Lights off, logs flushed.",
            "👋 Shift over after {uptime:.0f}s. Everything written down.",
        ],
    ),
    "agent_restart": (
        "agent {agent} restarted ({reason}); next attempt after {backoff:.1f}s",
        [
            "🔁 {agent} fell over ({reason}). Back on its feet in {backoff:.1f}s.",
            "🔁 Restarting {agent} ({reason}); giving it {backoff:.1f}s to compose itself.",
        ],
    ),
    "config_changed": (
        "configuration changed by {actor}: {keys}",
        [
            "🛠️  {actor} retuned {keys}. Noted, applied, no restart needed.",
            "🛠️  New settings from {actor}: {keys}. Adjusting on the fly.",
        ],
    ),
    "web_ready": (
        "dashboard on {url}",
        [
            "🌐 Dashboard is up at {url}. Come and have a look.",
            "🌐 Open {url} for the view from the bridge.",
        ],
    ),
}


def say(event: str, personality: str, **facts: Any) -> str:
    """The line for ``event`` in the given ``personality`` (``witty`` or ``plain``)."""
    plain, witty = PHRASES[event]
    if personality != "witty" or not witty:
        return plain.format(**facts)
    pick = zlib.crc32(repr(sorted(facts.items())).encode()) % len(witty)
    return witty[pick].format(**facts)
