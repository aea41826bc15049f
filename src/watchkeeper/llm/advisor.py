"""The Ollama advisor: one structured chat call per incident, never an exception.

The AnalyzerAgent owns one advisor and awaits it::

    async with OllamaAdvisor("http://127.0.0.1:11434", "mistral", timeout=60) as advisor:
        health = await advisor.probe()        # cheap; run it on a slow cadence
        result = await advisor.analyze(brief)  # LLMResult: ok + reply, or error
        print(health.status_line, result.error or result.reply.verdict)

Design points, each for a reason:

- The official ``ollama`` package is imported inside the methods that need it: importing
  watchkeeper (and the idle daemon) stays light when the LLM is disabled.
- Non-streamed chat with ``format`` = a schema built for this incident, ``temperature``
  0 and a fixed ``seed`` (repeatable analyses), an explicit ``num_ctx`` (the server's
  default context is small) and ``num_predict`` (a runaway reply is cut, then rejected).
- Transient trouble (connection, timeout, 500/503, dropped connection) is retried with a
  delay; a missing model or an invalid reply is not, since repeating will not help.
- One deadline for the whole call, retries included (:func:`call_deadline`): the client's
  read timeout restarts with every byte, so a server that trickles its answer a byte a
  second would otherwise hold the analysis for as long as it likes. The web API waits
  for the same figure.
- At most ``max_reply_bytes`` (256 KB) of reply are read (:mod:`._transport`); more is an
  invalid reply, like any other unusable answer: not retried, and the rules carry on.
- A circuit breaker turns a dead server into an instant "llm: unavailable (...)" result
  so incidents are handled by rules without waiting; a successful :meth:`probe` closes
  it, so the system picks Ollama up again by itself.

Use one advisor from one event loop, and close it (``aclose`` or ``async with``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from watchkeeper.config.sections import resolve_host
from watchkeeper.llm._breaker import CircuitBreaker
from watchkeeper.llm._errors import Failure, ReplyRefused, classify, model_missing_reason
from watchkeeper.llm.brief import IncidentBrief
from watchkeeper.llm.prompt import (
    PROMPT_TOKEN_BUDGET,
    PROMPT_VERSION,
    build_prompt,
    build_schema,
    fit_brief,
)
from watchkeeper.llm.results import AdvisorStats, LLMHealth, LLMResult
from watchkeeper.llm.schema import ReplyInvalid, validate_reply

if TYPE_CHECKING:
    import httpx
    import ollama

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
        timeout: float = 30,
        retry_attempts: int = 3,
        retry_delay: float = 2,
        num_ctx: int = 4096,
        num_predict: int = 768,
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
        if timeout <= 0 or probe_timeout <= 0:
            raise ValueError("timeouts must be positive")
        self._host = resolve_host(host)
        self._model = model
        self._timeout = float(timeout)
        self._connect_timeout = min(_CONNECT_TIMEOUT, self._timeout)
        self._retry_attempts = retry_attempts
        self._retry_delay = max(0.0, float(retry_delay))
        self._num_ctx = num_ctx
        self._num_predict = num_predict
        self._temperature = temperature
        self._seed = seed
        self._probe_timeout = float(probe_timeout)
        self._max_reply_bytes = max_reply_bytes
        self._deadline = call_deadline(self._timeout, retry_attempts, self._retry_delay)
        self._clock = clock
        self._breaker = CircuitBreaker(breaker_threshold, breaker_reset, clock)
        self._client: ollama.AsyncClient | None = None
        self._http: httpx.AsyncClient | None = None
        self._last_error: str | None = None
        self._stats: dict[str, int] = dict.fromkeys(AdvisorStats.model_fields, 0)

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

    # -- lifecycle ---------------------------------------------------------------

    def _chat_client(self) -> ollama.AsyncClient:
        if self._client is None:
            import httpx
            import ollama

            from watchkeeper.llm._transport import capped_hooks

            self._client = ollama.AsyncClient(
                host=self._host,
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

    async def _chat_once(self, system: str, user: str, schema: dict[str, Any], limit: float) -> Any:
        client = self._chat_client()
        # The client's read timeout is per read; this bounds the whole attempt as well.
        async with asyncio.timeout(max(0.0, limit)):
            return await client.chat(
                model=self._model,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                format=schema,
                options={
                    "temperature": self._temperature,
                    "seed": self._seed,
                    "num_ctx": self._num_ctx,
                    "num_predict": self._num_predict,
                },
                stream=False,
            )

    async def analyze(self, brief: IncidentBrief) -> LLMResult:
        """Ask the model about ``brief``; return an :class:`LLMResult`, never raise."""
        self._chat_client()  # first use imports the client: keep that off the clock
        started = self._clock()
        self._stats["calls"] += 1
        budget = min(PROMPT_TOKEN_BUDGET, self._num_ctx - self._num_predict - _TEMPLATE_SLACK)
        try:
            fitted = fit_brief(brief, max_tokens=max(budget, 256))
            system, user = build_prompt(fitted)
            schema = build_schema(fitted)
        except Exception as exc:  # a bug on our side must not take the analyzer down
            failure = Failure("unexpected", f"cannot build the prompt: {type(exc).__name__}")
            return LLMResult(ok=False, error=self._fail(failure), source=self._model)
        base: dict[str, Any] = {
            "source": self._model,
            "prompt_chars": len(system) + len(user),
            "prompt_version": PROMPT_VERSION,
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
        response: Any = None
        loop = asyncio.get_running_loop()
        deadline_at = loop.time() + self._deadline
        while response is None:
            attempts += 1
            limit = min(_attempt_limit(self._timeout), deadline_at - loop.time())
            try:
                response = await self._chat_once(system, user, schema, limit)
            except ReplyRefused as exc:
                # The server answered, with nothing usable: an invalid reply, not an outage.
                self._breaker.record_success()
                refused = {**base, "attempts": attempts, "latency_s": self._clock() - started}
                return self._invalid(exc.reason, refused)
            except Exception as exc:
                failure = classify(
                    exc,
                    model=self._model,
                    timeout=self._timeout,
                    connect_timeout=self._connect_timeout,
                )
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
        content = response.message.content or ""
        checked = validate_reply(content, response.done_reason or "", fitted)
        outcome: dict[str, Any] = {
            **base,
            "source": response.model or self._model,
            "attempts": attempts,
            "latency_s": self._clock() - started,
            "prompt_tokens": response.prompt_eval_count,
            "completion_tokens": response.eval_count,
        }
        if isinstance(checked, ReplyInvalid):
            return self._invalid(checked.reason, outcome)
        self._stats["ok"] += 1
        self._stats["dropped_recommendations"] += len(checked.dropped)
        return LLMResult(ok=True, reply=checked, **outcome)

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
            **extra,
        )

    async def probe(self) -> LLMHealth:
        """Check that the server answers and has the model; never raises.

        Two cheap calls: ``GET /api/version`` and the client's ``list()`` (``/api/tags``).
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
        self._breaker.close()
        line = f"llm: {self._model} ok ({latency * 1000:.0f} ms)"
        return self._health(True, "available", line, **common)

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
