"""Where the web layer finds the fleet view: the central host's fleet agent's state.

Only a host with ``[fleet] role = "central"`` runs the fleet agent; elsewhere, and while
it is not running, :func:`fleet_view` is None and the fleet routes and series say so::

    state = fleet_view(orchestrator)
    rows = state.hosts(time.time()) if state is not None else []
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["FleetView", "fleet_view"]


@runtime_checkable
class FleetView(Protocol):
    """What the web reads of the fleet state (``watchkeeper.fleet.state.FleetState``)."""

    def hosts(self, now: float) -> list[Any]: ...
    def host_view(self, host: str, now: float) -> dict[str, Any] | None: ...
    def incidents(self) -> list[Any]: ...
    def incident(self, incident_id: str) -> Any: ...


def fleet_view(orchestrator: Any) -> FleetView | None:
    """The fleet agent's state when this host keeps the fleet view, else None."""
    if orchestrator.settings.fleet.role != "central":
        return None
    agent = orchestrator.agents.get("fleet")
    if agent is None:
        return None
    for attr in ("state", "fleet_state", "fleet"):
        value = getattr(agent, attr, None)
        if isinstance(value, FleetView):
            return value
    return None
