"""How fast this server runs this model, learned from the calls it answered.

Ollama's final reply carries ``prompt_eval_count``/``prompt_eval_duration`` (reading the
prompt), ``eval_count``/``eval_duration`` (writing the answer) and ``load_duration``
(loading the weights), all in integer nanoseconds. The advisor feeds every finished call
to :meth:`SpeedLearner.observe` and asks :meth:`SpeedLearner.attempt_deadline` how long
the next call may take::

    learner = SpeedLearner(ceiling=180, idle=30)
    learner.observe(final_part)                       # after each answered call
    limit = learner.attempt_deadline(prompt_tokens=900, max_tokens=384)

The deadline, once anything is known, is twice the expected time plus 5 s, never below
the idle timeout and never above the ceiling (``ollama.timeout``)::

    expected = load + prompt_tokens / prompt_rate + max_tokens / eval_rate

``load`` is the last load seen when the model had to be loaded (a server that unloaded
the model pays it again); ``max_tokens`` is ``num_predict``, the most the answer may be.
Until a call has been measured the ceiling is the deadline: a CPU host's first answer
(load, a cold prompt cache) is its slowest. Rates are smoothed (half old, half new) so one
odd call does not swing the next deadline.
"""

from __future__ import annotations

from typing import Any

from watchkeeper.llm.results import ModelSpeed

__all__ = ["SpeedLearner"]

_NS = 1e9
_MARGIN = 2.0
_SLACK_S = 5.0
_MIN_TOKENS = 4  # fewer tokens than this measure the clock, not the model


def _rate(count: Any, duration_ns: Any) -> float | None:
    if not isinstance(count, int) or not isinstance(duration_ns, int):
        return None
    if count < _MIN_TOKENS or duration_ns <= 0:
        return None
    return count / (duration_ns / _NS)


def _blend(old: float | None, new: float | None) -> float | None:
    if new is None:
        return old
    return new if old is None else (old + new) / 2


class SpeedLearner:
    """Learned prompt and generation rates (tokens/s) and load time for one model."""

    def __init__(self, *, ceiling: float, idle: float) -> None:
        self.ceiling = ceiling
        self.idle = idle
        self._prompt_tps: float | None = None
        self._eval_tps: float | None = None
        self._load_s: float | None = None
        self._calls = 0

    def observe(self, final: Any) -> None:
        """Learn from the last part of a reply (anything with Ollama's counter fields)."""
        prompt = _rate(
            getattr(final, "prompt_eval_count", None), getattr(final, "prompt_eval_duration", None)
        )
        written = _rate(getattr(final, "eval_count", None), getattr(final, "eval_duration", None))
        load = getattr(final, "load_duration", None)
        if prompt is None and written is None:
            return
        self._prompt_tps = _blend(self._prompt_tps, prompt)
        self._eval_tps = _blend(self._eval_tps, written)
        if isinstance(load, int) and load > 0:
            # Only a real load (the model was not resident) is worth remembering.
            seconds = load / _NS
            if seconds >= 0.5 or self._load_s is None:
                self._load_s = seconds
        self._calls += 1

    def forget(self) -> None:
        """Another model or server: what was learned no longer applies."""
        self._prompt_tps = self._eval_tps = self._load_s = None
        self._calls = 0

    @property
    def speed(self) -> ModelSpeed:
        return ModelSpeed(
            prompt_tokens_per_s=None if self._prompt_tps is None else round(self._prompt_tps, 1),
            tokens_per_s=None if self._eval_tps is None else round(self._eval_tps, 1),
            load_s=None if self._load_s is None else round(self._load_s, 2),
            calls=self._calls,
        )

    def expected_s(self, *, prompt_tokens: int, max_tokens: int) -> float | None:
        """Seconds a call should take at the learned rates; None before any call."""
        if self._eval_tps is None:
            return None
        reading = prompt_tokens / self._prompt_tps if self._prompt_tps else 0.0
        return (self._load_s or 0.0) + reading + max_tokens / self._eval_tps

    def attempt_deadline(self, *, prompt_tokens: int, max_tokens: int) -> float:
        """Seconds one attempt may take in all (see the module docstring)."""
        expected = self.expected_s(prompt_tokens=prompt_tokens, max_tokens=max_tokens)
        if expected is None:
            return self.ceiling
        sized = _MARGIN * expected + _SLACK_S
        return min(self.ceiling, max(self.idle, sized))
