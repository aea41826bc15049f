"""Ollama's wire format, as the fake server speaks it: replies, models, response bodies.

Kept apart from the HTTP plumbing in :mod:`watchkeeper.testing.fake_ollama` so the rules
(field names, nanosecond durations, error texts) are readable in one place.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast, get_args

__all__ = [
    "BUSY_MESSAGE",
    "DEFAULT_KEEP_ALIVE_S",
    "FAKE_VERSION",
    "FakeModel",
    "Fault",
    "Reply",
    "ReplyFn",
    "load_reply_file",
    "minimal_instance",
    "parse_keep_alive",
    "request_text",
    "scenario",
]

FAKE_VERSION = "0.9.0-fake"
BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
RUNNER_CRASHED = "llama runner process has terminated: exit status 2"
STREAM_BROKE = "an error was encountered while running the model: unexpected EOF"
GARBAGE_CONTENT = "Sure! Here is my analysis of the host: {verdict: healthy, summary: fine"
FAKE_TEXT = "This is watchkeeper's fake Ollama server: no model ran, this reply is canned."
FAKE_STRING = "fake reply: no model ran"

Fault = Literal[
    "500",
    "404",
    "503",
    "garbage",
    "garbage_body",
    "drop",
    "midstream_error",
    "trickle",
    "oversized",
]
#: Seconds between bytes of a ``trickle`` reply: the answer arrives at 1 byte/s.
TRICKLE_BYTE_S = 1.0
#: Bytes of message content in an ``oversized`` reply.
OVERSIZED_BYTES = 60 * 1024 * 1024
_FAULTS: frozenset[str] = frozenset(get_args(Fault))
_THINKING_FAMILIES = ("qwen3", "deepseek-r1", "gpt-oss", "magistral")


@dataclass(frozen=True)
class Reply:
    """One scripted answer (or failure) of the fake "model".

    Content: ``content`` (text) or ``json_obj`` (serialised to the JSON string a model
    would produce); neither means "the default reply". ``done_reason`` is reported as is
    (``"length"`` to simulate a cut reply). ``latency`` seconds pass before the response
    starts (``None``: the server's default). ``fault``:

    - ``"500"``, ``"404"``, ``"503"``: that status with Ollama's ``{"error": ...}`` body;
    - ``"garbage"``: a normal response whose content is not JSON;
    - ``"garbage_body"``: status 200 with a body that is not JSON at all;
    - ``"drop"``: the connection is closed without any response;
    - ``"midstream_error"``: streamed, a partial content line and then an
      ``{"error": ...}`` line, still status 200; non-streamed, a 500;
    - ``"trickle"``: the normal answer, one byte every ``TRICKLE_BYTE_S`` seconds (a
      read timeout never fires, since every byte restarts it);
    - ``"oversized"``: status 200 and a valid answer whose content is
      ``OVERSIZED_BYTES`` long, sent chunked without a length, so only counting helps.

    ``error`` overrides the error text of a fault. ``when`` is only used by
    :func:`scenario`: a case-insensitive substring of the request's text.
    """

    content: str | None = None
    json_obj: Any = None
    done_reason: str = "stop"
    latency: float | None = None
    fault: Fault | None = None
    error: str | None = None
    when: str | None = None
    chunk_chars: int = 12
    """Characters per streamed content line."""

    def __post_init__(self) -> None:
        if self.fault is not None and self.fault not in _FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; expected one of {sorted(_FAULTS)}")
        if self.content is not None and self.json_obj is not None:
            raise ValueError("give content or json_obj, not both")
        if self.chunk_chars < 1:
            raise ValueError("chunk_chars must be at least 1")

    @classmethod
    def coerce(cls, value: Reply | str | Mapping[str, Any]) -> Reply:
        """``"text"`` -> ``Reply(content="text")``; a mapping -> its fields."""
        if isinstance(value, Reply):
            return value
        if isinstance(value, str):
            return cls(content=value)
        known = {f.name for f in fields(cls)}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown reply field(s): {', '.join(sorted(unknown))}")
        return cls(**dict(value))

    def text(self) -> str | None:
        """The message content this reply stands for, if it fixes one."""
        if self.json_obj is not None:
            return json.dumps(self.json_obj)
        return self.content


ReplyFn = Callable[[dict[str, Any]], "Reply | str | Mapping[str, Any] | None"]
"""Answers a request body (dict) with a reply; ``None`` falls back to the default."""


@dataclass(frozen=True)
class FakeModel:
    """One pulled model, with the metadata ``/api/tags`` and ``/api/show`` report.

    :meth:`from_name` invents plausible metadata from a name; a real model (see
    :mod:`watchkeeper.testing._real_model`) fills the optional fields from its GGUF file.
    """

    name: str
    family: str
    parameter_size: str
    capabilities: tuple[str, ...]
    quantization_level: str = "Q4_0"
    context_length: int = 32768
    size_bytes: int | None = None
    digest_hex: str | None = None
    parameter_count: int | None = None
    template: str = "[INST] {{ .System }} {{ .Prompt }} [/INST]"
    parameters: str = 'stop "[INST]"\nstop "[/INST]"'
    modelfile: str | None = None

    @classmethod
    def from_name(cls, raw: str) -> FakeModel:
        name = raw if ":" in raw.rsplit("/", 1)[-1] else f"{raw}:latest"
        base, _, tag = name.rpartition(":")
        family_match = re.match(r"[a-z]+", base.rsplit("/", 1)[-1].lower())
        size_match = re.search(r"(\d+(?:\.\d+)?)b\b", tag.lower())
        caps: tuple[str, ...] = ("completion", "tools")
        if any(base.endswith(f) for f in _THINKING_FAMILIES):
            caps = (*caps, "thinking")
        return cls(
            name=name,
            family=family_match.group(0) if family_match else "llama",
            parameter_size=f"{size_match.group(1)}B" if size_match else "7.2B",
            capabilities=caps,
        )

    def matches(self, requested: str) -> bool:
        wanted = requested if ":" in requested.rsplit("/", 1)[-1] else f"{requested}:latest"
        return wanted == self.name

    @property
    def digest(self) -> str:
        return self.digest_hex or hashlib.sha256(self.name.encode()).hexdigest()

    @property
    def size(self) -> int:
        if self.size_bytes is not None:
            return self.size_bytes
        # About 0.58 bytes per parameter at Q4_0; only needs to look plausible.
        return int(float(self.parameter_size.rstrip("B")) * 580_000_000)

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }

    def tag_entry(self, modified_at: str) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.name,
            "modified_at": modified_at,
            "size": self.size,
            "digest": self.digest,
            "details": self.details(),
        }

    def show_body(self, modified_at: str) -> dict[str, Any]:
        return {
            "modelfile": self.modelfile
            or f"# watchkeeper fake Ollama: no weights behind {self.name}\n",
            "parameters": self.parameters,
            "template": self.template,
            "details": self.details(),
            "model_info": {
                "general.architecture": self.family,
                "general.parameter_count": self.parameter_count or self.size * 2,
                f"{self.family}.context_length": self.context_length,
            },
            "capabilities": list(self.capabilities),
            "modified_at": modified_at,
        }


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
DEFAULT_KEEP_ALIVE_S = 300.0
"""Ollama keeps a model loaded 5 minutes after a request unless told otherwise."""


def parse_keep_alive(value: Any) -> float | None:
    """Ollama's ``keep_alive``: seconds to stay loaded after the request; ``None`` = forever.

    A number is seconds, a string is a Go duration (``"5m"``, ``"1h30m"``, ``"-1s"``), a
    negative value means "stay loaded", ``0`` means "unload after this request" and a
    missing value the 5-minute default. Anything else raises ``ValueError``.
    """
    if value is None or value == "":
        return DEFAULT_KEEP_ALIVE_S
    if isinstance(value, bool):
        raise ValueError(f"invalid keep_alive: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        sign = -1.0 if text.startswith("-") else 1.0
        body = text.lstrip("+-")
        if re.fullmatch(r"\d+(?:\.\d+)?", body):
            seconds = sign * float(body)
        else:
            parts = _DURATION_PART.findall(body)
            if not parts or "".join(n + u for n, u in parts) != body:
                raise ValueError(f"time: invalid duration {value!r}")
            seconds = sign * sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    else:
        raise ValueError(f"invalid keep_alive: {value!r}")
    return None if seconds < 0 else seconds


def estimate_tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4) if text else 0


def request_text(body: Mapping[str, Any]) -> str:
    """All the text a model would read: messages' contents, or system + prompt."""
    parts: list[str] = []
    messages = body.get("messages")
    if isinstance(messages, list):
        parts.extend(str(m.get("content", "")) for m in messages if isinstance(m, dict))
    for key in ("system", "prompt"):
        if isinstance(body.get(key), str):
            parts.append(body[key])
    return "\n".join(parts)


def minimal_instance(schema: Any, root: Any = None, depth: int = 0) -> Any:
    """A small value that satisfies ``schema`` (the fake's default structured reply).

    Handles what structured-output schemas use: ``type``, ``enum``/``const`` (first
    value), ``anyOf``/``oneOf`` (first branch), ``properties``/``required``,
    ``minItems``, numeric bounds and local ``$ref`` to ``#/$defs/...``.
    """
    root = schema if root is None else root
    if depth > 20 or not isinstance(schema, dict):
        return None
    if "$ref" in schema and isinstance(root, dict):
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return minimal_instance(root.get("$defs", {}).get(name), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return minimal_instance(schema[key][0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {
            name: minimal_instance(props.get(name, {}), root, depth + 1)
            for name in schema.get("required", [])
        }
    if kind == "array":
        item = minimal_instance(schema.get("items", {}), root, depth + 1)
        return [item] * int(schema.get("minItems", 0))
    if kind in ("number", "integer"):
        low, high = schema.get("minimum"), schema.get("maximum")
        value = (low + high) / 2 if low is not None and high is not None else (low or high or 0)
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return FAKE_STRING.ljust(int(schema.get("minLength", 0)), ".")


def default_content(body: Mapping[str, Any]) -> str:
    """What the fake answers when nothing is scripted: valid for the requested format."""
    fmt = body.get("format")
    if isinstance(fmt, dict):
        return json.dumps(minimal_instance(fmt))
    if fmt == "json":
        return json.dumps({"note": FAKE_STRING})
    return FAKE_TEXT


def scenario(rules: Iterable[Reply]) -> ReplyFn:
    """A reply function answering with the first rule whose ``when`` occurs in the
    request text (``when=None`` matches anything); rules are reused, not consumed."""
    frozen = list(rules)

    def answer(body: dict[str, Any]) -> Reply | None:
        text = request_text(body).lower()
        for rule in frozen:
            if rule.when is None or rule.when.lower() in text:
                return rule
        return None

    return answer


def load_reply_file(path: str | Path) -> tuple[list[Reply], list[Reply]]:
    """Read JSON lines of replies: ``(queued, rules)``.

    Lines with a ``when`` key become :func:`scenario` rules; the others are queued and
    used once each, in order. Blank lines and lines starting with ``#`` are skipped.
    """
    queued: list[Reply] = []
    rules: list[Reply] = []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("each line must be a JSON object")
            reply = Reply.coerce(cast(dict[str, Any], data))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: {exc}") from exc
        (rules if reply.when is not None else queued).append(reply)
    return queued, rules


def durations(prompt: str, content: str, elapsed_s: float) -> dict[str, int]:
    """Ollama's counters: token counts and integer nanosecond durations."""
    prompt_tokens = estimate_tokens(prompt)
    eval_tokens = estimate_tokens(content)
    load_ns = 1_500_000
    prompt_ns = 150_000 * prompt_tokens
    eval_ns = 4_000_000 * eval_tokens
    total_ns = max(int(elapsed_s * 1e9), load_ns + prompt_ns + eval_ns)
    return {
        "total_duration": total_ns,
        "load_duration": load_ns,
        "prompt_eval_count": prompt_tokens,
        "prompt_eval_duration": prompt_ns,
        "eval_count": eval_tokens,
        "eval_duration": eval_ns,
    }


def message_part(endpoint: str, model: str, text: str, *, done: bool) -> dict[str, Any]:
    """One response object (a stream line or the start of a final answer)."""
    part: dict[str, Any] = {"model": model, "created_at": now_rfc3339()}
    if endpoint == "chat":
        part["message"] = {"role": "assistant", "content": text}
    else:
        part["response"] = text
    part["done"] = done
    return part
