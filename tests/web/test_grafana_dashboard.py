"""docs/grafana/watchkeeper.json against a real daemon's ``/metrics``.

A ``watchkeeper run`` process (the central host of a fleet, watching one service with a
probe, so the service and fleet series exist) is scraped; every PromQL expression of the
dashboard, its panels' and its variables', must name only series that scrape exports, and
every label it groups by, filters on or shows in a legend must be a label of one of those
series. A renamed series or label breaks this test, not the dashboard of whoever imports it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "watchkeeper.json"
SERIES = re.compile(r"\bwatchkeeper_[A-Za-z0-9_]+")
LEGEND_LABEL = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
SELECTOR = re.compile(r"\{([^}]*)\}")
MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
# Labels Prometheus itself adds to every scraped series.
SCRAPE_LABELS = {"job", "instance", "__name__"}
CONFIG = """
personality = "plain"
status_interval = 0.5

[agents]
check_interval = 0.5

[ollama]
enabled = false

[fleet]
role = "central"

[bus]
host_id = "grafana-test"

[[services]]
name = "sleeper"
argv = ["{python}", "-c", "import time; time.sleep(600)"]
probe = {{ kind = "tcp", host = "127.0.0.1", port = 9 }}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Scrape:
    """The series names of one ``/metrics`` answer and the labels seen on each."""

    def __init__(self, text: str) -> None:
        self.names: set[str] = set()
        self.labels: dict[str, set[str]] = {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                self.names.add(line.split()[2])
            elif line and not line.startswith("#"):
                name, _, rest = line.partition("{")
                self.names.add(name.split()[0])
                found = self.labels.setdefault(name.split()[0], set())
                if rest:
                    found.update(m.group(1) for m in re.finditer(r'([A-Za-z_]\w*)="', rest))


@pytest.fixture(scope="module")
def scrape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scrape]:
    root = tmp_path_factory.mktemp("grafana")
    config = root / "watchkeeper.toml"
    config.write_text(CONFIG.format(python=sys.executable), encoding="utf-8")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    argv = [sys.executable, "-m", "watchkeeper", "run", "--config", str(config),
            "--data-dir", str(root / "data"), "--port", str(port)]  # fmt: skip
    proc = subprocess.Popen(
        argv, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        yield Scrape(_wait_for_metrics(f"http://127.0.0.1:{port}/metrics", proc))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


WANTED = ("watchkeeper_cpu_percent", "watchkeeper_service_healthy", "watchkeeper_fleet_hosts")


def _wait_for_metrics(url: str, proc: subprocess.Popen[str]) -> str:
    """The first scrape with host, service (probed) and fleet series."""
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"watchkeeper exited: {proc.communicate()[1][-2000:]}")
        try:
            text = httpx.get(url, timeout=5).text
        except httpx.HTTPError:
            text = ""
        if all(f"{name}{{" in text for name in WANTED):
            return text
        time.sleep(0.3)
    raise AssertionError(f"no full /metrics answer in time; last one:\n{text[-2000:]}")


def _panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from _panels(panel.get("panels", []))


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(where, PromQL, legend) for every panel target and every query variable."""
    found: list[tuple[str, str, str]] = []
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            found.append((panel["title"], target["expr"], target.get("legendFormat", "")))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            found.append((f"variable {variable['name']}", text, ""))
    return found


def labels_used(expr: str, legend: str) -> set[str]:
    """The labels an expression groups by, filters on, or its legend shows."""
    used = set(LEGEND_LABEL.findall(legend))
    for group in GROUPING.findall(expr):
        used.update(word.strip() for word in group.split(",") if word.strip())
    for selector in SELECTOR.findall(expr):
        used.update(MATCHER.findall(selector))
    if expr.startswith("label_values("):
        used.add(expr.rstrip(")").rsplit(",", 1)[-1].strip())
    return used


def problems(dashboard: dict[str, Any], scrape: Scrape) -> list[str]:
    """What in the dashboard does not match the scrape (empty: everything does)."""
    out = []
    for where, expr, legend in queries(dashboard):
        names = set(SERIES.findall(expr))
        if not names:
            out.append(f"{where}: {expr!r} names no watchkeeper series")
        for name in sorted(names - scrape.names):
            out.append(f"{where}: {name} is not exported")
        known = set().union(*(scrape.labels.get(n, set()) for n in names))
        if not any(scrape.labels.get(n) for n in names):
            continue  # no sample to read labels from (a counter nothing has counted yet)
        for label in sorted(labels_used(expr, legend) - known - SCRAPE_LABELS):
            out.append(f"{where}: label {label!r} is on none of {sorted(names)}")
    return out


def test_every_query_names_series_and_labels_the_daemon_exports(scrape: Scrape) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert len(queries(dashboard)) >= 20
    assert problems(dashboard, scrape) == []


def test_a_renamed_series_or_label_is_caught(scrape: Scrape) -> None:
    text = DASHBOARD.read_text(encoding="utf-8")
    renamed = json.loads(text.replace("watchkeeper_disk_percent", "watchkeeper_disk_used_pct"))
    assert any("watchkeeper_disk_used_pct is not exported" in p for p in problems(renamed, scrape))
    relabelled = json.loads(text.replace("{{iface}}", "{{interface}}"))
    assert any("label 'interface'" in p for p in problems(relabelled, scrape))


def test_the_dashboard_covers_what_operators_look_at() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    named = {name for _, expr, _ in queries(dashboard) for name in SERIES.findall(expr)}
    for family in ("cpu", "memory", "disk", "net", "service_up", "service_healthy",
                   "alerts_firing", "actions_total", "fleet_hosts"):  # fmt: skip
        assert any(name.startswith(f"watchkeeper_{family}") for name in named), family
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["host"]["multi"] is True
    host_filtered = [expr for _, expr, _ in queries(dashboard) if 'host=~"$host"' in expr]
    assert len(host_filtered) >= 20
    ids = [panel["id"] for panel in _panels(dashboard["panels"])]
    assert len(ids) == len(set(ids))
