"""Actions waiting for a person: what ``approve`` mode and dangerous actions leave behind.

The pipeline parks a request here when the policy says "approve", and takes it out again
when a person answers or its alert resolves::

    approvals.park(request, record)
    request, record = approvals.take(request_id)      # PendingNotFound when unknown
"""

from __future__ import annotations

from watchkeeper.model.actions import ActionRecord, ActionRequest
from watchkeeper.remediation.policy import Policy

__all__ = ["Approvals", "PendingNotFound"]


class PendingNotFound(KeyError):
    """No action awaiting approval has that id."""


class Approvals:
    """Requests awaiting a person, by request id; one per action and target."""

    def __init__(self) -> None:
        self._waiting: dict[str, tuple[ActionRequest, ActionRecord]] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def records(self) -> list[ActionRecord]:
        """The waiting requests' records, oldest first (for the web, the CLI, the status)."""
        return [record for _, record in self._waiting.values()]

    def holds_same(self, request: ActionRequest) -> bool:
        """Whether the same action on the same target already waits for a person."""
        key = Policy.key(request)
        return any(Policy.key(waiting) == key for waiting, _ in self._waiting.values())

    def park(self, request: ActionRequest, record: ActionRecord) -> None:
        self._waiting[request.id] = (request, record)

    def take(self, request_id: str) -> tuple[ActionRequest, ActionRecord]:
        """The request and its record, no longer waiting; ``PendingNotFound`` if unknown."""
        entry = self._waiting.pop(request_id, None)
        if entry is None:
            raise PendingNotFound(request_id)
        return entry

    def take_for_alert(self, fingerprint: str) -> list[ActionRecord]:
        """Every record waiting on behalf of the alert ``fingerprint``, taken out."""
        ids = [rid for rid, (req, _) in self._waiting.items() if req.fingerprint == fingerprint]
        return [self._waiting.pop(rid)[1] for rid in ids]
