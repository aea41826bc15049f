"""A small circuit breaker, so a dead Ollama costs nothing per incident.

Closed: calls go through; ``threshold`` consecutive failures open it. Open: calls are
refused at once (the caller reports the last reason) until ``reset_after`` seconds have
passed on the injected clock. Half-open: exactly one trial call goes through; success
closes the breaker, failure opens it again for another ``reset_after``. A successful
health probe closes it from any state (:meth:`close`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

__all__ = ["BreakerState", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Count consecutive failures; decide whether the next call may go out."""

    def __init__(self, threshold: int, reset_after: float, clock: Callable[[], float]) -> None:
        if threshold < 1:
            raise ValueError(f"breaker threshold must be at least 1, got {threshold}")
        self._threshold = threshold
        self._reset_after = reset_after
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_out = False
        self.last_reason: str | None = None
        self.opened_count = 0

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._trial_out or self._clock() - self._opened_at >= self._reset_after:
            return "half_open"
        return "open"

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def allow(self) -> bool:
        """True if a call may go out now; in half-open state, only the first caller."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial_out:
            self._trial_out = True
            return True
        return False

    def record_success(self) -> None:
        self.close()

    def record_failure(self, reason: str) -> None:
        self.last_reason = reason
        self._failures += 1
        if self._trial_out or (self._opened_at is None and self._failures >= self._threshold):
            self._opened_at = self._clock()
            self.opened_count += 1
        self._trial_out = False

    def abandon(self) -> None:
        """The allowed call ended without a verdict (cancelled): free the trial slot."""
        self._trial_out = False

    def close(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_out = False
