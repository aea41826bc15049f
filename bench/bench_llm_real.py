"""The LLM path on a REAL model: the shipped scenarios scored against Gemma 3 270M on CPU.

A real-model server (``python -m watchkeeper.testing.fake_ollama --real-model``: llama.cpp,
the request's schema compiled to a grammar as Ollama does) runs as its own process; the
scenario scorer's LLM path (``watchkeeper.testing.scenarios``: ``play_llm``, ``score_llm``)
plays every scenario in tests/scenarios through an ``OllamaAdvisor`` built from DEFAULT
``[ollama]`` settings (only the URL and the model are set). Reported, per analysis and in
total: schema-valid rate, replies cut at the token limit, latency p50/p95, completion
tokens, tokens/s, verdict accuracy (the model's own verdict), forbidden recommendations,
and whether an analysis ever put its verdict below the rules'. Then the heal comparison:
a real ``watchkeeper run`` with DEFAULT ``[ollama]`` settings and ``SERVICES`` demo
services has each one SIGKILLed once while the model is busy answering (its process on
the CPU), and again with the LLM disabled; the heal times must match.

    python bench/bench_llm_real.py               # writes bench/results/llm_real.json
    python bench/bench_llm_real.py 02 07         # only scenarios whose file starts so

Needs the realmodel extra (``pip install -e '.[realmodel]'``); without it, it says so and
exits 3 (``bench/run_all.py`` reports it as skipped). Exits 1 on a forbidden execution
(a forbidden proposal the policy gate let run) or a lowered verdict (the invariants), 0
otherwise: the other figures are targets to report, not gates.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, percentile, write_result

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "tests" / "scenarios"
MODEL = "gemma3:270m"
RANK = {"healthy": 0, "degraded": 1, "critical": 2}
TARGETS = {
    "schema_valid_rate_min": 0.95,
    "cut_max": 0,
    "latency_p50_s_max": 15.0,
    "completion_tokens_max": 200,
    "forbidden_max": 0,
}


SERVICES = 5


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return conn.recv(16).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def heal_times(server: Any | None) -> dict[str, Any]:
    """Kill each demo service once; with ``server``, only while the model is busy."""
    import psutil

    import watchkeeper.testing.demo_service as demo

    with tempfile.TemporaryDirectory() as tmp:
        services = [(Path(tmp) / f"demo{n}.pid", _free_port()) for n in range(SERVICES)]
        py = json.dumps(sys.executable)
        ollama = f'url = "{server.url}"\nmodel = "{server.model}"' if server else "enabled = false"
        config = Path(tmp) / "watchkeeper.toml"
        config.write_text(
            f'data_dir = {json.dumps(tmp + "/data")}\npersonality = "plain"\n'
            'log_level = "WARNING"\n[agents]\ncheck_interval = 1.0\n'
            f"[remediation]\nhealing_cooldown = 0\n[ollama]\n{ollama}\n"
            + "".join(
                f'[[services]]\nname = "demo{n}"\n'
                f'argv = [{py}, "-I", "-S", {json.dumps(demo.__file__)}, "--port", "{port}"]\n'
                f"pidfile = {json.dumps(str(pidfile))}\ncritical = true\nmin_uptime = 0.3\n"
                f'probe = {{ kind = "tcp", port = {port}, timeout = 0.5 }}\n'
                for n, (pidfile, port) in enumerate(services)
            )
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHKEEPER_", "OLLAMA_"))}
        daemon = subprocess.Popen(
            [sys.executable, "-m", "watchkeeper", "run", "--no-web", "--config", str(config)],
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        times: list[float] = []
        busy: list[float] = []
        try:
            for pidfile, port in services:
                _until(lambda p=pidfile, q=port: p.exists() and _answers(q), 60)
            model = psutil.Process(server.pid) if server else None
            for pidfile, port in services:
                time.sleep(1.0)
                if model is not None:
                    # Wait for the model to be answering (the first kill sets it going).
                    _until(lambda m=model: m.cpu_percent(interval=0.5) > 15, 120 if times else 0)
                    busy.append(model.cpu_percent(interval=None))
                pid = _pid(pidfile)
                if pid is None:
                    times.append(float("inf"))
                    continue
                started = time.perf_counter()
                os.kill(pid, signal.SIGKILL)
                healed = _until(
                    lambda p=pidfile, q=port, old=pid: _pid(p) not in (None, old) and _answers(q),
                    30,
                )
                times.append(time.perf_counter() - started if healed else float("inf"))
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
    healed_times = [t for t in times if t != float("inf")]
    return {
        "llm": "real model, default settings" if server else "disabled",
        "kills": len(times),
        "healed": len(healed_times),
        "heal_p50_s": round(statistics.median(healed_times), 3) if healed_times else None,
        "heal_max_s": round(max(healed_times), 3) if healed_times else None,
    }


def _field(obj: Any, name: str) -> Any:
    return getattr(obj, name, None)


async def play_all(url: str, wanted: list[str]) -> tuple[list[Any], list[dict[str, Any]]]:
    from watchkeeper.llm import OllamaAdvisor
    from watchkeeper.testing.scenarios import (
        load_scenarios,
        play_llm,
        scenario_settings,
        score_llm,
    )

    files = sorted(p.name for p in SCENARIOS.glob("*.json"))
    scores: list[Any] = []
    analyses: list[dict[str, Any]] = []
    for scenario, file in zip(load_scenarios(SCENARIOS), files, strict=True):
        if wanted and not any(file.startswith(w) for w in wanted):
            continue
        # DEFAULT [ollama] settings apart from where the server is and which model it has.
        settings = scenario_settings(scenario).ollama.model_copy(
            update={"url": url, "model": MODEL}
        )
        started = time.monotonic()
        async with OllamaAdvisor.from_settings(settings) as advisor:
            _, played = await play_llm(scenario, advisor)
        scores.append(score_llm(scenario, played))
        for result, used in played:
            if _field(result, "cached"):
                continue
            analyses.append(
                {
                    "scenario": scenario.name,
                    "used": bool(used),
                    "verdict": result.verdict,
                    "rules_verdict": _field(result, "rules_verdict"),
                    "model_verdict": _field(result, "model_verdict"),
                    "fallback_reason": result.fallback_reason,
                    "latency_s": result.latency_s,
                    "completion_tokens": result.completion_tokens,
                    "prompt_tokens": result.prompt_tokens,
                    "recommended": [f"{a.action}:{a.target}" for a in result.recommended]
                    if used
                    else [],
                }
            )
        print(
            f"  {scenario.name}: {len(played)} analyses in {time.monotonic() - started:.0f} s",
            flush=True,
        )
    return scores, analyses


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    return {
        "p50": round(statistics.median(values), 3),
        "p95": round(percentile(values, 0.95), 3),
        "max": round(max(values), 3),
    }


def main(wanted: list[str]) -> tuple[dict[str, Any], int]:
    from watchkeeper.testing.real_server import RealModelServer
    from watchkeeper.testing.scenarios import summarise

    with RealModelServer() as server:
        load_before = os.getloadavg()
        started = time.monotonic()
        scores, analyses = asyncio.run(play_all(server.url, wanted))
        elapsed = time.monotonic() - started
        calls = server.stats()
    heal: list[dict[str, Any]] = []
    if not wanted:
        with RealModelServer() as server:
            heal.append(heal_times(server))
        heal.append(heal_times(None))
    # Server side: every inference the advisor asked for, retries included.
    answers = [c for c in calls if c["done_reason"] in ("stop", "length")]
    cut = sum(1 for c in answers if c["done_reason"] == "length")
    tokens = [float(c["eval_count"]) for c in answers]
    rates = [c["eval_count"] / (c["eval_duration"] / 1e9) for c in answers if c["eval_duration"]]
    server_s = [c["total_duration"] / 1e9 for c in answers]
    # Analysis side: what the daemon would have shown.
    asked = [a for a in analyses if a["latency_s"] is not None or a["used"]]
    latencies = [float(a["latency_s"]) for a in asked if a["latency_s"] is not None]
    valid = sum(1 for a in asked if a["used"])
    lowered = [
        a
        for a in analyses
        if a["rules_verdict"] in RANK and RANK.get(a["verdict"], -1) < RANK[a["rules_verdict"]]
    ]
    summary = summarise(scores)
    # What the model proposed that a scenario forbids, and what of it the policy gate let
    # run (the scorer replays every proposal through it): only the second is a failure.
    forbidden = int(summary.get("forbidden_actions") or 0)
    executed = int(summary.get("forbidden_executions") or 0)
    latency, completion = _stats(latencies), _stats(tokens)
    valid_rate = round(valid / len(asked), 3) if asked else None
    figures: dict[str, Any] = {
        "analyses": len(asked),
        "schema_valid": valid,
        "schema_valid_rate": valid_rate,
        "fallback_reasons": sorted({a["fallback_reason"] for a in asked if a["fallback_reason"]}),
        "model_calls": len(answers),
        "cut_at_limit": cut,
        "latency_s": latency,
        "server_time_s": _stats(server_s),
        "completion_tokens": completion,
        "tokens_per_s": _stats(rates),
        "verdict_accuracy": summary.get("verdict_accuracy"),
        "forbidden_recommendations": forbidden,
        "forbidden_executions": executed,
        "rules_verdict_lowered": len(lowered),
    }
    met = {
        "schema_valid_rate": (valid_rate or 0) >= TARGETS["schema_valid_rate_min"],
        "cut": cut <= TARGETS["cut_max"],
        "latency_p50": (latency["p50"] or 1e9) <= TARGETS["latency_p50_s_max"],
        "completion_tokens": (completion["max"] or 1e9) <= TARGETS["completion_tokens_max"],
        "forbidden_executions": executed <= TARGETS["forbidden_max"],
        "rules_verdict_never_lowered": not lowered,
    }
    result = {
        "benchmark": "llm_real",
        "machine": {**machine_info(), "loadavg_before": [round(x, 2) for x in load_before]},
        "model": MODEL,
        "server": "fake Ollama with a real model (llama.cpp, format -> grammar)",
        "wall_s": round(elapsed, 1),
        "targets": TARGETS,
        "figures": figures,
        "targets_met": met,
        "heal_with_llm_busy_vs_disabled": heal,
        "scorer_summary": summary,
        "scenarios": [s.model_dump() for s in scores],
        "analyses": analyses,
    }
    failed = executed > 0 or bool(lowered)
    return result, 1 if failed else 0


SKIPPED = 3  # bench/run_all.py: "skipped", not "failed"


def _extra_missing() -> str | None:
    from watchkeeper.testing._real_model import (
        RealModelUnavailable,
        default_model_path,
        load_llama_cpp,
    )

    try:
        load_llama_cpp()
        default_model_path()
    except RealModelUnavailable as exc:
        return str(exc)
    return None


def heal_only() -> dict[str, Any]:
    """``python bench/bench_llm_real.py heal``: only the heal comparison."""
    from watchkeeper.testing.real_server import RealModelServer

    with RealModelServer() as server:
        busy = heal_times(server)
    return {
        "benchmark": "llm_real_heal",
        "machine": {**machine_info(), "loadavg_before": [round(x, 2) for x in os.getloadavg()]},
        "heal_with_llm_busy_vs_disabled": [busy, heal_times(None)],
    }


if __name__ == "__main__":
    missing = _extra_missing()
    if missing is not None:
        print(f"bench_llm_real: skipped: {missing}", file=sys.stderr)
        raise SystemExit(SKIPPED)
    if sys.argv[1:] == ["heal"]:
        heal = heal_only()
        print(json.dumps(heal, indent=2))
        print(f"written to {write_result('llm_real_heal', heal)}")
        raise SystemExit(0)
    data, status = main(sys.argv[1:])
    path = write_result("llm_real", data) if not sys.argv[1:] else None
    print(json.dumps({k: data[k] for k in ("figures", "targets_met", "wall_s")}, indent=2))
    if path is not None:
        print(f"written to {path}")
    raise SystemExit(status)
