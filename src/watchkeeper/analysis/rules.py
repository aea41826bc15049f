"""The rule registry: analysis rules beyond the built-in checks, by name.

The orchestrator builds one registry, hands it to the analyzer's engine and to the plugin
host; plugins add to it, the engine runs it on every sample::

    rules = RuleRegistry()
    rules.add("open_files", open_files_rule)      # a taken name is an error
    engine = AnalysisEngine(store, rules=rules)

A rule is ``rule(sample, settings, level_of, now)`` and yields ``Check`` values, which then
get the built-in checks' hysteresis, deduplication and escalation. A rule that raises is
noted in :attr:`RuleRegistry.errors` and skipped for that sample; it never stops analysis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from watchkeeper.analysis.checks import Check
from watchkeeper.config import Settings
from watchkeeper.model.alerts import Severity
from watchkeeper.model.metrics import MetricsSample

__all__ = ["DuplicateRuleError", "LevelOf", "RuleFn", "RuleRegistry"]

#: ``level_of(rule, subject)``: the level an alert of that rule and subject is at now.
LevelOf = Callable[[str, str], Severity | None]
RuleFn = Callable[[MetricsSample, Settings, LevelOf, float], Iterable[Check]]


class DuplicateRuleError(ValueError):
    """A rule of that name is already registered."""


class RuleRegistry:
    """Named analysis rules; see the module docstring."""

    def __init__(self) -> None:
        self._rules: dict[str, RuleFn] = {}
        #: The last error of each rule that raised, by rule name.
        self.errors: dict[str, str] = {}

    def add(self, name: str, rule: RuleFn) -> None:
        """Register ``rule`` as ``name``; raise ``DuplicateRuleError`` when it is taken."""
        if name in self._rules:
            raise DuplicateRuleError(f"an analysis rule named {name!r} is already registered")
        self._rules[name] = rule

    def remove(self, name: str) -> None:
        """Take ``name`` out (and forget its error); an unknown name is ignored."""
        self._rules.pop(name, None)
        self.errors.pop(name, None)

    def names(self) -> list[str]:
        return list(self._rules)

    def __contains__(self, name: object) -> bool:
        return name in self._rules

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._rules))

    def __len__(self) -> int:
        return len(self._rules)

    def run(
        self, sample: MetricsSample, settings: Settings, level_of: LevelOf, now: float
    ) -> list[Check]:
        """Every rule's checks for ``sample``; a rule that raises is noted and skipped."""
        checks: list[Check] = []
        for name, rule in list(self._rules.items()):
            try:
                checks.extend(rule(sample, settings, level_of, now))
            except Exception as exc:  # a broken rule is reported, never fatal
                self.errors[name] = f"{type(exc).__name__}: {exc}"
        return checks
