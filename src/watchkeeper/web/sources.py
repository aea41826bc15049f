"""Where the web layer reads its state: the orchestrator's agents and storage, typed.

Any agent may be absent (disabled in config, not written yet, a plugin replaced it), so
each accessor returns ``None`` rather than raising, and every route says what is missing.
The Protocols name exactly what the web relies on, so an agent that grows new methods
changes nothing here. History is the orchestrator's one ``Storage``, used directly (its
queries are declared once, on ``SyncStorage``)::

    view = Sources(orchestrator)
    sample = view.latest_sample()          # MetricsSample | None, never collected here
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from pydantic import BaseModel

if TYPE_CHECKING:
    from watchkeeper.agents.base import BaseAgent
    from watchkeeper.model.alerts import Alert
    from watchkeeper.model.analysis import AnalysisResult
    from watchkeeper.model.events import HealthPoint
    from watchkeeper.model.incidents import Incident
    from watchkeeper.model.metrics import MetricsSample
    from watchkeeper.orchestrator import Orchestrator
    from watchkeeper.storage import Storage

__all__ = [
    "AnalyzerView",
    "CommunicatorView",
    "RemediatorView",
    "Sources",
    "jsonable",
]


class _Engine(Protocol):
    def firing(self) -> list[Alert]: ...


@runtime_checkable
class AnalyzerView(Protocol):
    engine: _Engine
    latest_analysis: AnalysisResult | None
    latest_llm_analysis: AnalysisResult | None
    llm_status: str
    llm_available: bool


@runtime_checkable
class RemediatorView(Protocol):
    def actions(self) -> Sequence[Any]: ...
    def pending(self) -> Sequence[Any]: ...
    def audit(self, limit: int = 100, target: str | None = None) -> Sequence[Any]: ...
    def success_rates(self) -> Any: ...
    def given_up(self) -> Sequence[Any]: ...


@runtime_checkable
class CommunicatorView(Protocol):
    @property
    def latest_health(self) -> HealthPoint: ...


def jsonable(value: Any) -> Any:
    """Pydantic models, dataclasses, mappings and sequences as plain JSON data."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return jsonable(dataclasses.asdict(value))
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


class Sources:
    """Typed, absence-tolerant access to what the agents keep."""

    def __init__(self, orchestrator: Orchestrator) -> None:
        self.orchestrator = orchestrator

    def agent(self, name: str) -> BaseAgent | None:
        return self.orchestrator.agents.get(name)

    def latest_sample(self) -> MetricsSample | None:
        sensor = self.agent("sensor")
        latest = getattr(sensor, "latest", None)
        return cast("MetricsSample | None", latest)

    def analyzer(self) -> AnalyzerView | None:
        agent = self.agent("analyzer")
        return agent if isinstance(agent, AnalyzerView) else None

    def remediator(self) -> RemediatorView | None:
        agent = self.agent("remediator")
        return agent if isinstance(agent, RemediatorView) else None

    def communicator(self) -> CommunicatorView | None:
        agent = self.agent("communicator")
        return agent if isinstance(agent, CommunicatorView) else None

    def storage(self) -> Storage | None:
        """The orchestrator's history database when it is open, else None: its queries
        are the ones declared on ``SyncStorage`` (``await storage.alerts(limit=10)``)."""
        storage = self.orchestrator.storage
        return storage if storage.is_open else None

    def storage_problem(self) -> str:
        """Why there is no history, in words for an API client."""
        storage = self.orchestrator.storage
        error = storage.stats().last_error or storage.open_error
        return f"history is unavailable: storage is not open ({error or 'not opened yet'})"

    def firing(self) -> list[Alert]:
        analyzer = self.analyzer()
        return list(analyzer.engine.firing()) if analyzer is not None else []

    def open_incidents(self) -> list[Incident] | None:
        """The analyzer's open incidents (worst first), or None when there is no
        analyzer or its engine does not group alerts into incidents."""
        analyzer = self.analyzer()
        reader = getattr(analyzer.engine, "incidents_open", None) if analyzer else None
        return list(reader()) if callable(reader) else None

    def health(self) -> dict[str, Any] | None:
        """The communicator's latest health (status, score, reasons), or None."""
        communicator = self.communicator()
        if communicator is None:
            return None
        return communicator.latest_health.model_dump(mode="json")
