"""The Ollama advisor: one structured chat call per incident, never an exception.

The AnalyzerAgent owns one advisor and awaits it::

    async with OllamaAdvisor("http://127.0.0.1:11434", "mistral", timeout=120) as advisor:
        health = await advisor.probe()        # cheap; run it on a slow cadence
        result = await advisor.analyze(brief)  # LLMResult: ok + reply, or error
        print(health.status_line, result.error or result.reply.verdict)

Design points, each for a reason:

- The official ``ollama`` package is imported inside the methods that need it: importing
  watchkeeper (and the idle daemon) stays light when the LLM is disabled.
- Chat with ``format`` = a schema built for this incident, ``temperature`` 0 and a fixed
  ``seed`` (repeatable analyses), an explicit ``num_ctx`` (the server's default context
  is small; fitted to the model's own, read from ``/api/show`` by :meth:`probe`) and
  ``num_predict`` (a runaway reply is cut, then rejected), and ``keep_alive`` so the
  model stays loaded between incidents. The system message is the same bytes on every
  call (only the user message varies), so the server reuses its prompt cache.
- The reply is **streamed**: a CPU model writes for tens of seconds, and a silent server
  is told from a slow one by the gap between parts. An attempt ends when no part came for
  ``idle_timeout`` seconds, or at its deadline: ``timeout`` until the model's speed is
  known, then sized from the rates Ollama reports (:mod:`._speed`), never above
  ``timeout``. A server that trickles a byte a second never completes a part, so it
  meets the deadline however slowly it sends.
- Transient trouble (connection, timeout, 500/503, dropped connection) is retried with a
  delay; a missing model or an invalid reply is not, since repeating will not help.
- One deadline for the whole call, retries included (:func:`call_deadline`), which the
  web API waits for as well.
- At most ``max_reply_bytes`` (256 KB) of reply are read (:mod:`._transport`); more is an
  invalid reply, like any other unusable answer: not retried, and the rules carry on.
- A circuit breaker turns a dead server into an instant "llm: unavailable (...)" result
  so incidents are handled by rules without waiting; a successful :meth:`probe` closes
  it, so the system picks Ollama up again by itself.

Use one advisor from one event loop, and close it (``aclose`` or ``async with``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from watchkeeper.config.sections import resolve_host
from watchkeeper.llm._breaker import CircuitBreaker
from watchkeeper.llm._errors import (
    Failure,
    ReplyRefused,
    classify,
    model_missing_reason,
    seconds,
)
from watchkeeper.llm._speed import SpeedLearner
from watchkeeper.llm.brief import IncidentBrief
from watchkeeper.llm.prompt import (
    PROMPT_TOKEN_BUDGET,
    PROMPT_VERSION,
    build_prompt,
    build_schema,
    estimate_tokens,
    fit_brief,
    system_prompt,
)
from watchkeeper.llm.results import AdvisorStats, LLMHealth, LLMResult, ModelSpeed
from watchkeeper.llm.schema import ReplyInvalid, validate_reply

if TYPE_CHECKING:
    import httpx
    import ollama

    from watchkeeper.config import OllamaSettings

__all__ = ["MAX_DEADLINE_S", "MAX_REPLY_BYTES", "OllamaAdvisor", "call_deadline"]

_CONNECT_TIMEOUT = 2.0
#: The most one analysis may take, retries included, whatever the settings say.
MAX_DEADLINE_S = 300.0
#: The most reply read from the server; a valid answer is a few KB.
MAX_REPLY_BYTES = 256 * 1024
# Headroom in num_ctx for the chat template around our messages.
_TEMPLATE_SLACK = 64


def _attempt_limit(timeout: float) -> float:
    # The client's timeouts are per read and per connect; this bounds one whole attempt.
    return timeout + min(_CONNECT_TIMEOUT, timeout) + 1


def call_deadline(timeout: float, retry_attempts: int, retry_delay: float) -> float:
    """Seconds one :meth:`OllamaAdvisor.analyze` may take at most, retries included:
    every attempt bounded whole, the delays between them, and never more than
    ``MAX_DEADLINE_S``. Whoever waits for an analysis (the web API) waits this long."""
    attempts = max(1, retry_attempts)
    total = attempts * _attempt_limit(timeout) + (attempts - 1) * max(0.0, retry_delay)
    return min(MAX_DEADLINE_S, total)


def _context_length(info: Any) -> int | None:
    """``<architecture>.context_length`` from ``/api/show``'s ``model_info``, if given."""
    if not isinstance(info, dict):
        return None
    for key, value in info.items():
        if str(key).endswith(".context_length") and isinstance(value, int) and value > 0:
            return value
    return None


class _Stalled(Exception):
    """No part of the streamed reply came in time (idle) or the attempt ran out."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Answer:
    """A streamed reply put back together: its text and its last (counting) part."""

    def __init__(self, content: str, final: Any) -> None:
        self.content = content
        self.final = final

    @property
    def done_reason(self) -> str:
        return str(getattr(self.final, "done_reason", "") or "")

    @property
    def model(self) -> str | None:
        return getattr(self.final, "model", None)


def _same_model(wanted: str, available: str) -> bool:
    # "mistral" means "mistral:latest" to Ollama; compare with the tag made explicit.
    def full(name: str) -> str:
        return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"

    return full(wanted.strip().lower()) == full(available.strip().lower())


class OllamaAdvisor:
    """Ask a local model to explain an incident and pick among registered actions."""

    def __init__(
        self,
        host: str,
        model: str,
        *,
        timeout: float = 120,
        idle_timeout: float = 30,
        retry_attempts: int = 3,
        retry_delay: float = 2,
        num_ctx: int = 4096,
        num_predict: int = 384,
        keep_alive: str | float = "30m",
        explanations: bool = False,
        temperature: float = 0,
        seed: int = 42,
        breaker_threshold: int = 3,
        breaker_reset: float = 60,
        probe_timeout: float = 5,
        max_reply_bytes: int = MAX_REPLY_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if retry_attempts < 1:
            raise ValueError(f"retry_attempts must be at least 1, got {retry_attempts}")
        if timeout <= 0 or probe_timeout <= 0 or idle_timeout <= 0:
            raise ValueError("timeouts must be positive")
        self._host = resolve_host(host)
        self._model = model
        self._timeout = float(timeout)
        self._idle = min(float(idle_timeout), self._timeout)
        self._connect_timeout = min(_CONNECT_TIMEOUT, self._timeout)
        self._retry_attempts = retry_attempts
        self._retry_delay = max(0.0, float(retry_delay))
        self._num_ctx = num_ctx
        self._num_predict = num_predict
        self._keep_alive = keep_alive
        self._explanations = explanations
        self._temperature = temperature
        self._seed = seed
        self._probe_timeout = float(probe_timeout)
        self._max_reply_bytes = max_reply_bytes
        self._deadline = call_deadline(self._timeout, retry_attempts, self._retry_delay)
        self._clock = clock
        self._breaker = CircuitBreaker(breaker_threshold, breaker_reset, clock)
        self._speed = SpeedLearner(ceiling=self._timeout, idle=self._idle)
        self._context_length: int | None = None
        self._client: ollama.AsyncClient | None = None
        self._http: httpx.AsyncClient | None = None
        self._last_error: str | None = None
        self._stats: dict[str, int] = dict.fromkeys(AdvisorStats.model_fields, 0)

    @classmethod
    def from_settings(
        cls, settings: OllamaSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> OllamaAdvisor:
        """The advisor the ``[ollama]`` settings describe."""
        return cls(
            settings.url,
            settings.model,
            timeout=settings.timeout,
            idle_timeout=settings.idle_timeout,
            retry_attempts=settings.retry_attempts,
            retry_delay=settings.retry_delay,
            num_ctx=settings.num_ctx,
            num_predict=settings.num_predict,
            keep_alive=settings.keep_alive,
            explanations=settings.explanations,
            clock=clock,
        )

    @staticmethod
    def settings_key(settings: OllamaSettings) -> tuple[object, ...]:
        """What an advisor is built from: when it changes, build a new one."""
        return (
            settings.url,
            settings.model,
            settings.timeout,
            settings.idle_timeout,
            settings.retry_attempts,
            settings.retry_delay,
            settings.num_ctx,
            settings.num_predict,
            settings.keep_alive,
            settings.explanations,
        )

    # -- public read-only state -------------------------------------------------

    @property
    def host(self) -> str:
        """The resolved base URL, e.g. ``"http://127.0.0.1:11434"``."""
        return self._host

    @property
    def model(self) -> str:
        return self._model

    @property
    def breaker_state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"``."""
        return self._breaker.state

    @property
    def deadline(self) -> float:
        """Seconds :meth:`analyze` takes at most (see :func:`call_deadline`)."""
        return self._deadline

    @property
    def last_error(self) -> str | None:
        return self._last_error

    @property
    def stats(self) -> AdvisorStats:
        return AdvisorStats(**{**self._stats, "breaker_opened": self._breaker.opened_count})

    @property
    def speed(self) -> ModelSpeed:
        """What the advisor learned of the model's speed from the calls it answered."""
        return self._speed.speed

    @property
    def context_length(self) -> int | None:
        """The model's own context window, once :meth:`probe` has read it."""
        return self._context_length

    @property
    def num_ctx(self) -> int:
        """The context asked for: the setting, never more than the model's own."""
        if self._context_length is None:
            return self._num_ctx
        return min(self._num_ctx, self._context_length)

    @property
    def num_predict(self) -> int:
        # A model with a tiny context still needs room for the prompt.
        return max(64, min(self._num_predict, self.num_ctx // 3))

    @property
    def system_prompt(self) -> str:
        """The system message of every call: the same bytes whatever the incident."""
        return system_prompt(explanations=self._explanations)

    # -- lifecycle ---------------------------------------------------------------

    def _chat_client(self) -> ollama.AsyncClient:
        if self._client is None:
            import httpx
            import ollama

            from watchkeeper.llm._transport import capped_hooks

            self._client = ollama.AsyncClient(
                host=self._host,
                # The read timeout only backs up the stream's own idle and total limits.
                timeout=httpx.Timeout(self._timeout, connect=self._connect_timeout),
                event_hooks=capped_hooks(self._max_reply_bytes),
            )
        return self._client

    def _http_client(self) -> httpx.AsyncClient:
        if self._http is None:
            import httpx

            from watchkeeper.llm._transport import capped_hooks

            self._http = httpx.AsyncClient(
                base_url=self._host,
                timeout=httpx.Timeout(self._probe_timeout, connect=self._connect_timeout),
                event_hooks=capped_hooks(self._max_reply_bytes),
            )
        return self._http

    async def aclose(self) -> None:
        """Close the HTTP connections; the advisor may be used again afterwards."""
        client, self._client = self._client, None
        http, self._http = self._http, None
        if client is not None:
            await client.close()  # type: ignore[no-untyped-call]
        if http is not None:
            await http.aclose()

    async def __aenter__(self) -> OllamaAdvisor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- analysis ----------------------------------------------------------------

    def _fail(self, failure: Failure) -> str:
        self._last_error = failure.message
        return failure.message

    async def _chat_once(
        self, system: str, user: str, schema: dict[str, Any], limit: float
    ) -> _Answer:
        """One streamed attempt, within ``limit`` seconds in all and ``idle`` between parts."""
        client = self._chat_client()
        loop = asyncio.get_running_loop()
        end = loop.time() + max(0.0, limit)
        pieces: list[str] = []
        final: Any = None
        stream: Any = None
        try:
            async with asyncio.timeout_at(end):
                stream = await client.chat(
                    model=self._model,
                    messages=[
                        {"role": "system", "content": system},
                        {"role": "user", "content": user},
                    ],
                    format=schema,
                    options={
                        "temperature": self._temperature,
                        "seed": self._seed,
                        "num_ctx": self.num_ctx,
                        "num_predict": self.num_predict,
                    },
                    stream=True,
                    keep_alive=self._keep_alive,
                )
            started = False
            while final is None:
                # Before the first part the server reads the prompt (and may load the
                # model): only the attempt's deadline applies. After it, parts come
                # every few tokens; a gap longer than the idle timeout is a stall.
                wait_until = min(end, loop.time() + self._idle) if started else end
                try:
                    async with asyncio.timeout_at(wait_until):
                        part = await anext(stream)
                except StopAsyncIteration:
                    raise _Stalled("reply ended before it was done") from None
                except TimeoutError:
                    if wait_until < end:
                        raise _Stalled(f"no token for {seconds(self._idle)}") from None
                    raise _Stalled(f"timeout after {seconds(round(limit, 1))}") from None
                started = True
                pieces.append(part.message.content or "" if part.message else "")
                if part.done:
                    final = part
        except TimeoutError:
            raise _Stalled(f"timeout after {seconds(round(limit, 1))}") from None
        finally:
            # Done or not, the response is closed here, not whenever it is collected.
            if stream is not None:
                with contextlib.suppress(Exception):
                    await stream.aclose()
        return _Answer("".join(pieces), final)

    def _budget(self) -> int:
        room = self.num_ctx - self.num_predict - _TEMPLATE_SLACK
        return max(min(PROMPT_TOKEN_BUDGET, room), 256)

    async def analyze(self, brief: IncidentBrief) -> LLMResult:
        """Ask the model about ``brief``; return an :class:`LLMResult`, never raise."""
        self._chat_client()  # first use imports the client: keep that off the clock
        started = self._clock()
        self._stats["calls"] += 1
        try:
            fitted = fit_brief(brief, max_tokens=self._budget())
            system, user = build_prompt(fitted, explanations=self._explanations)
            schema = build_schema(fitted, explanations=self._explanations)
        except Exception as exc:  # a bug on our side must not take the analyzer down
            failure = Failure("unexpected", f"cannot build the prompt: {type(exc).__name__}")
            return LLMResult(ok=False, error=self._fail(failure), source=self._model)
        base: dict[str, Any] = {
            "source": self._model,
            "prompt_chars": len(system) + len(user),
            "prompt_version": PROMPT_VERSION,
            "num_ctx": self.num_ctx,
        }
        if not self._breaker.allow():
            self._stats["refused_by_breaker"] += 1
            reason = self._breaker.last_reason or "circuit open"
            return LLMResult(ok=False, error=f"llm: unavailable ({reason})", **base)

        try:
            return await self._call(started, fitted, system, user, schema, base)
        except BaseException:
            # Cancelled mid-call (shutdown, a caller's timeout): no verdict on the server,
            # but a half-open trial slot must not stay taken forever.
            self._breaker.abandon()
            raise

    def _attempt_deadline(self, system: str, user: str) -> float:
        prompt_tokens = estimate_tokens(system) + estimate_tokens(user)
        learned = self._speed.attempt_deadline(
            prompt_tokens=prompt_tokens, max_tokens=self.num_predict
        )
        return min(learned, self._timeout)

    async def _call(
        self,
        started: float,
        fitted: IncidentBrief,
        system: str,
        user: str,
        schema: dict[str, Any],
        base: dict[str, Any],
    ) -> LLMResult:
        attempts = 0
        answer: _Answer | None = None
        loop = asyncio.get_running_loop()
        deadline_at = loop.time() + self._deadline
        attempt_limit = self._attempt_deadline(system, user)
        base = {**base, "deadline_s": round(attempt_limit, 1)}
        while answer is None:
            attempts += 1
            limit = min(attempt_limit, deadline_at - loop.time())
            try:
                answer = await self._chat_once(system, user, schema, limit)
            except ReplyRefused as exc:
                # The server answered, with nothing usable: an invalid reply, not an outage.
                self._breaker.record_success()
                refused = {**base, "attempts": attempts, "latency_s": self._clock() - started}
                return self._invalid(exc.reason, refused)
            except Exception as exc:
                failure = self._classify(exc)
                time_left = deadline_at - loop.time() - self._retry_delay > 0
                if failure.retryable and attempts < self._retry_attempts and time_left:
                    self._stats["retries"] += 1
                    await asyncio.sleep(self._retry_delay)
                    continue
                self._stats["failures"] += 1
                self._breaker.record_failure(failure.reason)
                return LLMResult(
                    ok=False,
                    error=self._fail(failure),
                    attempts=attempts,
                    latency_s=self._clock() - started,
                    **base,
                )

        # The server answered: it is available, whatever the quality of the answer.
        self._breaker.record_success()
        final = answer.final
        self._speed.observe(final)
        checked = validate_reply(answer.content, answer.done_reason, fitted)
        eval_count = getattr(final, "eval_count", None)
        eval_ns = getattr(final, "eval_duration", None)
        rate = (
            round(eval_count / (eval_ns / 1e9), 1)
            if isinstance(eval_count, int) and isinstance(eval_ns, int) and eval_ns > 0
            else None
        )
        outcome: dict[str, Any] = {
            **base,
            "source": answer.model or self._model,
            "attempts": attempts,
            "latency_s": self._clock() - started,
            "prompt_tokens": getattr(final, "prompt_eval_count", None),
            "completion_tokens": eval_count,
            "tokens_per_s": rate,
        }
        if isinstance(checked, ReplyInvalid):
            return self._invalid(checked.reason, outcome)
        self._stats["ok"] += 1
        self._stats["dropped_recommendations"] += len(checked.dropped)
        return LLMResult(ok=True, reply=checked, **outcome)

    def _classify(self, exc: Exception) -> Failure:
        if isinstance(exc, _Stalled):
            if exc.reason.startswith("reply ended"):
                return Failure("protocol", exc.reason)
            return Failure("timeout", exc.reason)
        return classify(
            exc, model=self._model, timeout=self._timeout, connect_timeout=self._connect_timeout
        )

    def _invalid(self, reason: str, outcome: dict[str, Any]) -> LLMResult:
        self._stats["invalid_replies"] += 1
        self._last_error = f"llm: invalid reply ({reason})"
        return LLMResult(ok=False, error=self._last_error, invalid_reason=reason, **outcome)

    # -- health ------------------------------------------------------------------

    def _health(self, ok: bool, state: str, line: str, **extra: Any) -> LLMHealth:
        return LLMHealth(
            ok=ok,
            state=state,
            status_line=line,
            model=self._model,
            host=self._host,
            last_error=self._last_error,
            breaker=self._breaker.state,
            context_length=self._context_length,
            num_ctx=self.num_ctx,
            speed=self._speed.speed,
            **extra,
        )

    async def probe(self) -> LLMHealth:
        """Check that the server answers and has the model; never raises.

        Cheap calls: ``GET /api/version``, the client's ``list()`` (``/api/tags``) and,
        once per advisor, ``show()`` (``/api/show``) for the model's context length.
        Success closes the circuit breaker.
        """
        http, client = self._http_client(), self._chat_client()  # imports stay off the clock
        started = self._clock()
        try:
            async with asyncio.timeout(self._probe_timeout + self._connect_timeout):
                response = await http.get("/api/version")
                response.raise_for_status()
                body = response.json()
                version = body.get("version") if isinstance(body, dict) else None
                listing = await client.list()
        except Exception as exc:
            failure = classify(
                self._as_client_error(exc),
                model=self._model,
                timeout=self._probe_timeout,
                connect_timeout=self._connect_timeout,
            )
            message = self._fail(failure)
            state = message.removeprefix("llm: ")
            return self._health(False, state, message)
        latency = self._clock() - started
        names = [m.model for m in listing.models if m.model]
        common = {"latency_s": latency, "server_version": version, "models": names}
        if not any(_same_model(self._model, name) for name in names):
            reason = model_missing_reason(self._model)
            self._last_error = f"llm: {reason}"
            return self._health(False, reason, self._last_error, **common)
        if self._context_length is None:
            await self._read_context(client)
        self._breaker.close()
        line = f"llm: {self._model} ok ({latency * 1000:.0f} ms)"
        return self._health(True, "available", line, **common)

    async def _read_context(self, client: ollama.AsyncClient) -> None:
        # Not knowing it is no failure: the configured num_ctx is used as it is.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._probe_timeout + self._connect_timeout):
                shown = await client.show(self._model)
            self._context_length = _context_length(shown.modelinfo)

    @staticmethod
    def _as_client_error(exc: Exception) -> BaseException:
        """Give raw httpx errors from the version call the client's exception types."""
        import httpx
        import ollama

        if isinstance(exc, httpx.HTTPStatusError):
            return ollama.ResponseError(exc.response.text, exc.response.status_code)
        if isinstance(exc, httpx.ConnectError):
            return ConnectionError(str(exc))
        return exc
