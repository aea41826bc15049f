"""bench/bench_fleet.py at a tiny size: a real nats-server, a real central watchkeeper
and the simulator, and the figures a reader of docs/benchmarks.md is shown are there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from watchkeeper.testing.nats_server import require_nats

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_fleet.py"


@pytest.mark.slow
def test_bench_fleet_measures_a_small_fleet_end_to_end(tmp_path: Path) -> None:
    require_nats()
    out = tmp_path / "fleet_scale.json"
    run = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--sizes",
            "12",
            "--warmup",
            "8",
            "--window",
            "12",
            "--alerts-per-min",
            "40",
            "--leaf-window",
            "5",
            "--leaf-settle",
            "5",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    (size,) = result["sizes"]
    assert size["hosts"] == 12 and size["fleet_view"] == "ok" and size["kept_up"], size
    assert size["hosts_in_fleet_view"] == 13  # twelve simulated hosts and the central
    sim = size["simulator"]
    assert sim["errors"] == 0 and sim["samples"] > 0 and sim["acked"] == sim["events"]
    # 12 hosts: 2.4 samples and 1.2 heartbeats a second at least reach the server.
    assert size["server_messages_in_per_s"] >= 3.6
    for process in ("nats_server", "central_watchkeeper"):
        assert size[process]["cpu_percent_of_one_core"] > 0
        assert size[process]["rss_mb"] > 5
    latency = size["alert_to_view"]
    assert latency["alerts_timed"] >= 2 and latency["alerts_missed"] == 0, latency
    assert 0 < latency["p50_s"] <= latency["p99_s"] < 5
    storage = size["stream_storage"]
    assert storage["WK_TELEMETRY"]["bytes_per_host_per_day"] > 0
    assert storage["WK_EVENTS"]["messages_in_window"] > 0
    leaf = result["leaf"]
    assert leaf["nats"]["cpu_percent_of_one_core"] > 0
    assert leaf["memory"]["cpu_percent_of_one_core"] > 0
    assert "overhead_percent" in leaf
    section = out.with_suffix(".md").read_text()
    assert section.startswith("## Fleet scale") and "| 12 |" in section
