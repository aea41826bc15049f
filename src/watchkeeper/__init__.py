"""watchkeeper: a team of agents that watches a host, reasons about what it sees with a
local LLM served by Ollama, and heals what it safely can.

The public face is small: the version, the settings loader, the bus and the agent base
class. Everything else is reached through the orchestrator and its registries.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
