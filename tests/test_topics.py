"""Every topic watchkeeper publishes is a typed constant, and no front end or agent reads a
bus payload as a loose dict."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from watchkeeper.model.topics import BUILTIN, RESERVED

SRC = Path(__file__).resolve().parents[1] / "src" / "watchkeeper"
_SENDS = {"publish", "request", "_emit"}


def _sources(*parts: str) -> list[Path]:
    roots = [SRC / part for part in parts] if parts else [SRC]
    found: list[Path] = []
    for root in roots:
        found.extend([root] if root.is_file() else sorted(root.rglob("*.py")))
    return found


def _string_topics(path: Path) -> list[str]:
    """Calls in ``path`` that publish on a topic written as a string (not a constant)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in _SENDS or not node.args:
            continue
        first = node.args[0]
        if isinstance(first, ast.JoinedStr) or (
            isinstance(first, ast.Constant) and isinstance(first.value, str)
        ):
            found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    return found


def test_watchkeeper_publishes_only_typed_topic_constants() -> None:
    offenders = [hit for path in _sources() for hit in _string_topics(path)]
    assert offenders == []


@pytest.mark.parametrize("part", ["agents", "web", "cli", "orchestrator.py", "plugins"])
def test_no_bus_payload_is_read_as_a_dict(part: str) -> None:
    offenders = [
        f"{path.relative_to(SRC)}:{number}"
        for path in _sources(part)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "payload.get(" in line
    ]
    assert offenders == []


def test_the_web_feed_reads_models_not_payload_dicts() -> None:
    """``web/feed.py`` words and charts bus messages from their models: it calls no
    ``.get(`` at all (its old payload dicts went by another name than ``payload``, so the
    check above could not see them) and never reads a message's ``.payload``."""
    path = SRC / "web" / "feed.py"
    offenders = [
        f"{path.relative_to(SRC)}:{node.lineno}"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute) and node.attr in ("get", "payload")
    ]
    assert offenders == []


def test_every_builtin_topic_lives_in_a_reserved_namespace() -> None:
    assert {topic.name.partition(".")[0] for topic in BUILTIN} <= RESERVED
    assert all(topic.description for topic in BUILTIN)
