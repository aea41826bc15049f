"""The schema compiles to a decoding grammar, the way Ollama uses ``format``.

Ollama turns the request's JSON schema into a llama.cpp grammar; a schema the converter
cannot take is a request the server refuses (or, in some builds, ignores). llama.cpp's
own converter is in ``llama_cpp.LlamaGrammar.from_json_schema``; every shape of schema
the advisor sends must get through it. Needs the ``realmodel`` extra; skipped with the
install hint without it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from watchkeeper.llm import BriefAction, IncidentBrief, build_schema
from watchkeeper.llm.check import canned_brief

llama_cpp = pytest.importorskip(
    "llama_cpp",
    reason="llama-cpp-python is not installed: pip install -e '.[realmodel]' "
    "(builds llama.cpp from source, about 6 minutes)",
)

MakeBrief = Callable[..., IncidentBrief]


def _shapes(make_brief: MakeBrief, actions: list[BriefAction]) -> dict[str, dict[str, Any]]:
    return {
        "several actions": build_schema(make_brief()),
        "with explanations": build_schema(make_brief(), explanations=True),
        "one action": build_schema(make_brief(actions=actions[:1])),
        "no findings": build_schema(make_brief(findings=[]), explanations=True),
        "no targets": build_schema(make_brief(processes=[], services=[], paths=[])),
        "llm check": build_schema(canned_brief()),
    }


def test_every_schema_shape_compiles_to_a_grammar(
    make_brief: MakeBrief, actions: list[BriefAction]
) -> None:
    for name, schema in _shapes(make_brief, actions).items():
        grammar = llama_cpp.LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        assert grammar is not None, name
