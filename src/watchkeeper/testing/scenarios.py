"""Analyzer scenarios: a host situation described in a file, played through the analyzer.

A scenario file (JSON) gives a base host, timed changes and what must come out::

    {"name": "runaway process", "steps": 30, "interval": 5,
     "base": {"cpu": 20, "memory": 40},
     "changes": [{"from": 0, "set": {"cpu": 97}}],
     "processes": [{"pid": 4242, "name": "spinner", "cpu": 99, "rss_mb": 20}],
     "expect": {"verdict": "critical", "alerts": [{"rule": "runaway_process"}],
                "allowed_actions": ["renice_process", "kill_process"],
                "forbidden_actions": ["restart_service"]}}

Every field is described in docs/scenarios.md. ``build_samples`` turns a scenario into
real ``MetricsSample`` values (``timeline`` adds the service events between them);
``play_rules`` runs them through the ``AnalysisEngine`` and replays each firing alert's
proposal through the real policy gate against the scenario's own processes and services;
``score`` checks the outcome against ``expect`` and ``summarise_rules`` gives the set's
figures. The same scenarios run through the LLM path with ``play_llm`` (against the fake
Ollama in tests, or a real one)::

    python -m watchkeeper.testing.scenarios --rules [DIR] [--json]   # the rule path
    python -m watchkeeper.testing.scenarios [--ollama URL] [DIR]      # the LLM path

How each path is scored, and every field of the format: docs/scenarios.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from watchkeeper.testing._scenario_format import (
    Expect,
    ExpectedAlert,
    ProcSpec,
    Scenario,
    ScenarioError,
    ServiceSpecLite,
    load_scenarios,
    scenario_settings,
    start_time,
)
from watchkeeper.testing._scenario_gate import Replayed
from watchkeeper.testing._scenario_llm import (
    LLMScore,
    play_llm,
    score_llm,
    scripted_model,
    summarise,
)
from watchkeeper.testing._scenario_play import play_rules, score_rules
from watchkeeper.testing._scenario_samples import build_samples, timeline
from watchkeeper.testing._scenario_score import Outcome, Score, score, summarise_rules

__all__ = [
    "Expect",
    "ExpectedAlert",
    "LLMScore",
    "Outcome",
    "ProcSpec",
    "Replayed",
    "Scenario",
    "ScenarioError",
    "Score",
    "ServiceSpecLite",
    "build_samples",
    "load_scenarios",
    "main",
    "play_llm",
    "play_rules",
    "scenario_settings",
    "score",
    "score_llm",
    "score_rules",
    "scripted_model",
    "start_time",
    "summarise",
    "summarise_rules",
    "timeline",
]


async def _main_async(
    directory: Path, url: str | None, model: str, timeout: float
) -> dict[str, Any]:
    from watchkeeper.llm import OllamaAdvisor

    scenarios = load_scenarios(directory)
    scores: list[LLMScore] = []
    fake = None
    if url is None:
        from watchkeeper.testing.fake_ollama import FakeOllama

        fake = FakeOllama(models=[model])
        fake.start()
        url = fake.url
    try:
        for scenario in scenarios:
            if fake is not None:
                fake.set_reply_fn(scripted_model(scenario))
            async with OllamaAdvisor(url, model, timeout=timeout, retry_delay=0.5) as advisor:
                try:
                    outcome, analyses = await play_llm(scenario, advisor)
                except (ValueError, TypeError, KeyError, IndexError) as exc:
                    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    raise ScenarioError(f"{scenario.path}: cannot be played: {first}") from None
            scores.append(score_llm(scenario, analyses, outcome))
    finally:
        if fake is not None:
            fake.stop()
    return {
        "model": model,
        "server": "fake" if fake else url,
        "summary": summarise(scores),
        "scenarios": [s.model_dump() for s in scores],
    }


def _print_rules(result: dict[str, Any]) -> None:
    for entry in result["scenarios"]:
        mark = "PASS" if entry["passed"] else "FAIL"
        print(f"{mark}  {entry['path'] or entry['scenario']}: {entry['scenario']}")
        for problem in entry["problems"]:
            print(f"        - {problem}")
    summary = result["summary"]
    print()
    print(f"scenarios passed       {summary['passed']}/{summary['scenarios']}")
    for key in (
        "verdict_accuracy",
        "expected_rule_recall",
        "action_precision",
        "forbidden_executions",
        "forbidden_proposals",
    ):
        value = summary[key]
        print(f"{key:<22} {'n/a' if value is None else value}")


def main(argv: list[str] | None = None) -> int:
    """``python -m watchkeeper.testing.scenarios [--rules] [--json] [--ollama URL] [DIR]``.

    Exit status 1 when anything forbidden would have run (or, on the LLM path, was
    proposed), 2 for a directory or scenario file that cannot be read."""
    import argparse
    import asyncio

    parser = argparse.ArgumentParser(
        prog="python -m watchkeeper.testing.scenarios",
        description="Score the analyzer scenarios: the LLM path (default) or the rule path.",
    )
    parser.add_argument("directory", nargs="?", default="tests/scenarios", type=Path)
    parser.add_argument("--rules", action="store_true", help="score the rule path only")
    parser.add_argument("--json", action="store_true", help="with --rules: print JSON")
    parser.add_argument("--ollama", help="a real Ollama URL; without it a scripted fake answers")
    parser.add_argument("--model", default="mistral")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        parser.error(f"{args.directory} is not a directory of scenario files")
    try:
        if args.rules:
            result = score_rules(args.directory)
            if args.json:
                print(json.dumps(result, indent=2))
            else:
                _print_rules(result)
            return 1 if result["summary"]["forbidden_executions"] else 0
        result = asyncio.run(_main_async(args.directory, args.ollama, args.model, args.timeout))
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    summary = result["summary"]
    return 0 if summary["forbidden_actions"] == 0 and not summary["forbidden_executions"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
