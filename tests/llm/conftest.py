"""Fixtures for the LLM tests: a real fake-Ollama server on loopback and sample briefs.

Everything goes through real sockets and the official ``ollama`` client; the only
"model" is the fake server's script.
"""

from __future__ import annotations

import copy
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from watchkeeper.llm import (
    BriefAction,
    BriefFinding,
    BriefPath,
    BriefProcess,
    BriefService,
    IncidentBrief,
    OllamaAdvisor,
)
from watchkeeper.testing.fake_ollama import FakeOllama

ACTIONS = [
    BriefAction(
        name="kill_process", description="Send SIGTERM", target_kind="process", risk="moderate"
    ),
    BriefAction(
        name="restart_service", description="Restart a unit", target_kind="service", risk="safe"
    ),
    BriefAction(
        name="clean_dir", description="Delete old files", target_kind="path", risk="dangerous"
    ),
    BriefAction(name="notify_admin", description="Page a human", target_kind="none", risk="safe"),
]


def _make_brief(process_label: str = "stress-ng", **overrides: Any) -> IncidentBrief:
    """A small incident: a CPU hog and a failed service."""
    fields: dict[str, Any] = {
        "host": {"cpu_percent": 97.5, "mem_percent": 41.0, "load1": 3.2},
        "findings": [
            BriefFinding(
                id="E1",
                severity="critical",
                subject="cpu",
                summary="CPU above 95% for 5 minutes",
                evidence={"cpu_percent": 97.5, "top_process": process_label},
            ),
            BriefFinding(
                id="E2",
                severity="warning",
                subject="nginx",
                summary="service failed 2 minutes ago",
                evidence={"restarts": 3.0},
            ),
        ],
        "processes": [
            BriefProcess(id="P1", label=process_label, cpu_percent=96.0, rss_mb=12, age_s=320),
            BriefProcess(id="P2", label="python3", cpu_percent=1.5, rss_mb=80, age_s=9000),
        ],
        "services": [BriefService(id="S1", label="nginx", state="failed")],
        "paths": [BriefPath(id="D1", label="/var/tmp")],
        "actions": ACTIONS,
    }
    fields.update(overrides)
    return IncidentBrief(**fields)


_VALID_REPLY: dict[str, Any] = {
    "verdict": "degraded",
    "summary": "stress-ng is using all the CPU and nginx has failed.",
    "findings": [{"id": "E1", "explanation": "stress-ng is a load generator"}],
    "recommended_actions": [
        {
            "action": "kill_process",
            "target": "P1",
            "reason": "it pins the CPU",
            "evidence": ["E1"],
            "confidence": 0.8,
        },
        {
            "action": "restart_service",
            "target": "S1",
            "reason": "nginx is down",
            "evidence": ["E2"],
            "confidence": 0.7,
        },
    ],
}


def _fast_advisor(url: str, model: str = "mistral", **overrides: Any) -> OllamaAdvisor:
    settings: dict[str, Any] = {"timeout": 5, "retry_attempts": 3, "retry_delay": 0.01}
    settings.update(overrides)
    return OllamaAdvisor(url, model, **settings)


@pytest.fixture
def make_brief() -> Callable[..., IncidentBrief]:
    """Factory: ``make_brief(process_label=..., **field_overrides)``."""
    return _make_brief


@pytest.fixture
def actions() -> list[BriefAction]:
    return list(ACTIONS)


@pytest.fixture
def valid_reply() -> dict[str, Any]:
    """A reply that passes validation for ``make_brief()`` (a fresh copy per test)."""
    return copy.deepcopy(_VALID_REPLY)


@pytest.fixture
def advisor_for() -> Callable[..., OllamaAdvisor]:
    """Factory: ``advisor_for(url, model="mistral", **overrides)`` with test-sized timeouts
    and retry delays; tests close it with ``async with``."""
    return _fast_advisor


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(models=["mistral"]) as server:
        yield server


@pytest.fixture
def dead_url() -> str:
    """A loopback URL where nothing listens (the port was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
