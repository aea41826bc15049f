"""The analyzer's costs: rule-path time per sample, and how often it asks the LLM.

- Rule path: ``AnalysisEngine.observe`` on real samples of this machine (thresholds,
  trends, baselines), median and p95.
- LLM calls in a simulated hour of a healthy host at a 5 s interval (must be 0), and in an
  hour with a persistent incident: calls in all, and the most calls for one fingerprint in
  any cooldown window (must be 1). The "model" is the fake Ollama on loopback.

    python bench/bench_analysis.py        # writes bench/results/analysis.json
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, percentile, write_result
from watchkeeper.analysis.engine import AnalysisEngine
from watchkeeper.collectors import Sampler, build_default_registry
from watchkeeper.config import Settings
from watchkeeper.llm import OllamaAdvisor
from watchkeeper.testing.fake_ollama import FakeOllama
from watchkeeper.testing.scenarios import Scenario, play_llm, scripted_model

HOUR_STEPS = 720  # 5 s samples


def rule_path_ms() -> dict[str, float]:
    sampler = Sampler(build_default_registry())
    samples = []
    for _ in range(20):
        samples.append(sampler.sample())
        time.sleep(0.05)
    settings = Settings.model_validate({})
    engine = AnalysisEngine(lambda: settings)
    timings = []
    now = time.time()
    for step in range(2000):
        sample = samples[step % len(samples)]
        start = time.perf_counter()
        engine.observe(sample, now + step * 5)
        timings.append((time.perf_counter() - start) * 1000)
    timings = timings[100:]  # after warm-up
    return {
        "median_ms": round(statistics.median(timings), 4),
        "p95_ms": round(percentile(timings, 0.95), 4),
        "flat_metrics_per_sample": len(samples[-1].flat()),
    }


HEALTHY = {
    "name": "steady hour",
    "steps": HOUR_STEPS,
    "alternate": {"cpu": [12, 18, 25, 15]},
    "processes": [{"pid": 900, "name": "nginx", "cpu": 3, "rss_mb": 40}],
    "expect": {"verdict": "healthy"},
    "llm": {"verdict": "healthy"},
}
INCIDENT = {
    "name": "incident hour",
    "steps": HOUR_STEPS,
    "changes": [{"from": 600, "set": {"cpu": 96}}],
    "processes": [{"pid": 4242, "name": "spinner", "cpu": 99, "rss_mb": 20, "start": 600}],
    "services": [
        {"name": "web", "critical": True, "pid": 900, "until": 1200},
        {"name": "web", "critical": True, "state": "failed", "from": 1200},
    ],
    "expect": {"verdict": "critical"},
    "llm": {
        "verdict": "critical",
        "actions": [{"action": "restart_service", "target": "service:web"}],
    },
}


async def llm_calls(data: dict[str, object]) -> dict[str, object]:
    scenario = Scenario.model_validate(data)
    with FakeOllama(models=["mistral"]) as fake:
        fake.set_reply_fn(scripted_model(scenario))
        async with OllamaAdvisor(fake.url, "mistral", timeout=10) as advisor:
            _, analyses = await play_llm(scenario, advisor)
    calls = [r for r, _ in analyses if not r.cached]
    cooldown = Settings.model_validate({}).ollama.cooldown
    worst = 0
    for result in calls:
        for fp in result.fingerprints:
            window = [
                r
                for r in calls
                if fp in r.fingerprints and result.at <= r.at < result.at + cooldown
            ]
            worst = max(worst, len(window))
    fingerprints = {fp for r in calls for fp in r.fingerprints}
    return {
        "simulated_seconds": scenario.steps * scenario.interval,
        "llm_calls": len(calls),
        "fingerprints": len(fingerprints),
        "max_calls_per_fingerprint_per_cooldown": worst,
        "cooldown_s": cooldown,
    }


def main() -> dict[str, object]:
    return {
        "benchmark": "analysis",
        "machine": machine_info(),
        "rule_path": rule_path_ms(),
        "steady_hour": asyncio.run(llm_calls(HEALTHY)),
        "incident_hour": asyncio.run(llm_calls(INCIDENT)),
    }


if __name__ == "__main__":
    result = main()
    path = write_result("analysis", result)
    print(json.dumps(result, indent=2))
    print(f"written to {path}")
