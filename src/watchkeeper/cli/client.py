"""Talking to a running watchkeeper over its HTTP API, with errors a person can act on.

Every CLI command that reads or changes the running system goes through
:class:`ApiClient`; nothing in the CLI reaches into the daemon another way::

    endpoint = resolve_endpoint(url=None, token=None, settings=settings)
    with ApiClient(endpoint) as api:
        system = api.get("/api/system")
        reply = api.command("health_check", "all")

Where things come from:

- the URL: ``--url``, else ``$WATCHKEEPER_URL``, else ``http://<web.host>:<web.port>`` from
  the configuration (a wildcard host such as ``0.0.0.0`` becomes loopback);
- the token: ``--token``, else ``$WATCHKEEPER_TOKEN``, else ``web.token``, else
  ``<data_dir>/api_token`` when this user can read it. The last two are this machine's own
  secrets, so they are sent only to ``localhost``, a literal loopback address
  (``127.0.0.0/8``, ``[::1]``) or the configured address, never to a name that merely
  looks local (``127.0.0.1.example.net`` is whatever its DNS says); an explicit token is
  sent wherever it is told to go.

Every failure becomes an :class:`ApiError`: one line that says what to do, and the exit
code the command should end with (see :data:`EXIT_CODES`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel

from watchkeeper.model.secret import secret_value
from watchkeeper.web.hosts import is_loopback_host

if TYPE_CHECKING:
    from watchkeeper.config import Settings

M = TypeVar("M", bound=BaseModel)

__all__ = [
    "EXIT_CODES",
    "ApiClient",
    "ApiError",
    "CommandResult",
    "Endpoint",
    "Event",
    "default_url",
    "is_loopback_url",
    "resolve_endpoint",
]

#: What each non-zero exit code of an API command means (documented in docs/cli.md).
EXIT_CODES = {
    1: "the request was taken, but an agent refused it, failed or did not answer in time",
    2: "bad input: unknown command, target, id or parameter, or an invalid value",
    3: "no watchkeeper answers at the URL, or what answers is not watchkeeper",
    4: "the API token is missing or wrong",
    5: "watchkeeper cannot answer that now: no sample yet, no history storage, or stopping",
}


class ApiError(Exception):
    """A failure worth one line: ``message`` says what happened and what to do."""

    def __init__(self, message: str, exit_code: int = 2, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.status = status


@dataclass(frozen=True)
class Endpoint:
    """Where the API is and how to prove who we are.

    ``url_explicit`` is False when the URL came from the configuration's defaults (the CLI
    may then start a system of its own); ``token_source`` names where the token came from,
    for error messages, and ``token_problem`` why none could be read.
    """

    url: str
    token: str | None = None
    token_source: str = "none"
    token_problem: str | None = None
    url_explicit: bool = True


@dataclass(frozen=True)
class CommandResult:
    """The answer to ``POST /api/command``: ``ok`` is False when an agent refused (409)
    or did not answer in time (504); ``body`` is the API's JSON as sent."""

    ok: bool
    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class Event:
    """One server-sent event from ``/api/events``: its name and its decoded JSON data."""

    event: str
    data: Any


def _host_for_url(host: str) -> str:
    if host in ("", "0.0.0.0"):  # a wildcard bind is reached on loopback
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def default_url(settings: Settings) -> str:
    """The configured web server's address as a URL this machine can reach."""
    return f"http://{_host_for_url(settings.web.host)}:{settings.web.port}"


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` surely points at this machine: ``localhost`` or a literal
    loopback address, never a name that only starts like one."""
    return is_loopback_host(urlsplit(url).hostname or "")


def _normalise(url: str) -> str:
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(f"--url {url!r} is not an http(s) address like http://127.0.0.1:8000")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ApiError(f"--url {url!r} has an invalid port") from None
    return url.rstrip("/")


def _read_token_file(path: Path) -> tuple[str | None, str | None]:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None, f"{path} does not exist (has watchkeeper run with this data dir?)"
    except PermissionError:
        return None, f"{path} is not readable by this user"
    except OSError as exc:
        return None, f"{path} cannot be read: {exc.strerror or exc}"
    return (token or None), (None if token else f"{path} is empty")


def resolve_endpoint(
    *,
    url: str | None,
    token: str | None,
    settings: Settings,
    environ: Mapping[str, str] | None = None,
) -> Endpoint:
    """Work out the URL and the token from flags, environment and configuration."""
    env = os.environ if environ is None else environ
    configured = default_url(settings)
    explicit = url or env.get("WATCHKEEPER_URL") or None
    base = _normalise(explicit) if explicit else configured
    if token:
        return Endpoint(base, token, "--token", None, bool(explicit))
    if env.get("WATCHKEEPER_TOKEN"):
        return Endpoint(base, env["WATCHKEEPER_TOKEN"], "WATCHKEEPER_TOKEN", None, bool(explicit))
    if not (is_loopback_url(base) or base == configured):
        # The local secrets stay local: a remote URL needs --token or WATCHKEEPER_TOKEN.
        remote = (
            f"the local token is not sent to {base}: it is not this machine by its address "
            "(only localhost and loopback addresses are)"
        )
        return Endpoint(base, None, "none", remote, bool(explicit))
    if settings.web.token:
        token = secret_value(settings.web.token)
        return Endpoint(base, token, "web.token", None, bool(explicit))
    path = Path(settings.data_dir) / "api_token"
    found, problem = _read_token_file(path)
    if found:
        return Endpoint(base, found, str(path), None, bool(explicit))
    return Endpoint(base, None, "none", problem, bool(explicit))


def _server_message(response: httpx.Response) -> str:
    """The API's own words for an error: ``message`` (422 summaries), else ``detail``."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if isinstance(body, dict):
        problem = _Problem.model_validate(body)
        for value in (problem.message, problem.detail):
            if isinstance(value, str) and value:
                return value
        if isinstance(problem.detail, list):
            return "; ".join(_issue_text(item) for item in problem.detail if item)
    return str(body)[:200]


class _Problem(BaseModel):
    """An error answer, read leniently (it may come from a server that is not watchkeeper):
    ``{"detail": "..."}``, FastAPI's ``{"detail": [{"msg": ...}, ...]}`` or ``message``."""

    message: Any = None
    detail: Any = None


def _issue_text(item: Any) -> str:
    return str(item["msg"]) if isinstance(item, dict) and "msg" in item else str(item)


def _names_something(response: httpx.Response) -> bool:
    """Whether a 404 is watchkeeper's "no such agent/metric" (JSON that says what is
    missing) rather than a server without that route at all."""
    try:
        body = response.json()
    except ValueError:
        return False
    detail = _Problem.model_validate(body).detail if isinstance(body, dict) else None
    return isinstance(detail, str) and detail != "Not Found"


class ApiClient:
    """A small synchronous client for watchkeeper's API (see the module docstring).

    ``transport`` lets tests and the in-process mode hand in their own httpx transport.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint
        headers = {"accept": "application/json", "user-agent": "watchkeeper-cli"}
        if endpoint.token:
            headers["authorization"] = f"Bearer {endpoint.token}"
        self._http = httpx.Client(
            base_url=endpoint.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
            transport=transport,
            follow_redirects=False,
            trust_env=False,  # a proxy from the environment must not see the token
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def url(self) -> str:
        return self.endpoint.url

    # -- errors -----------------------------------------------------------------------------
    def unreachable(self) -> ApiError:
        if self.endpoint.token is None and not is_loopback_url(self.url):
            # Say it now: once the name resolves, the next error would be a 401.
            return ApiError(
                f"no watchkeeper answers at {self.url} (check --url); a daemon on another "
                "machine also needs its token with --token or WATCHKEEPER_TOKEN, since "
                "the local token is sent only to localhost or a loopback address",
                3,
            )
        return ApiError(
            f"no watchkeeper answers at {self.url} (start it with `watchkeeper run`, "
            "or pass --url)",
            3,
        )

    def _auth_error(self, response: httpx.Response) -> ApiError:
        if self.endpoint.token is None:
            why = f" ({self.endpoint.token_problem})" if self.endpoint.token_problem else ""
            return ApiError(
                f"{self.url} needs the API token and none was found{why}: pass --token, set "
                "WATCHKEEPER_TOKEN, or run as a user who can read <data_dir>/api_token",
                4,
                401,
            )
        return ApiError(
            f"{self.url} refused the API token from {self.endpoint.token_source}: use the "
            "daemon's token (its <data_dir>/api_token, or web.token) with --token or "
            "WATCHKEEPER_TOKEN",
            4,
            401,
        )

    def _error_for(self, response: httpx.Response, path: str) -> ApiError:
        status = response.status_code
        if status == 401:
            return self._auth_error(response)
        if "json" not in response.headers.get("content-type", ""):
            return ApiError(
                f"{self.url} answered {path} with HTTP {status} and no JSON: it is not "
                "watchkeeper's API; check --url",
                3,
                status,
            )
        message = _server_message(response)
        if status in (400, 404, 422):
            return ApiError(message, 2, status)
        if status == 403:
            return ApiError(f"{self.url} refused {path}: {message}", 4, status)
        if status == 503:  # watchkeeper's own words: no sample yet, no storage, stopping
            return ApiError(message, 5, status)
        return ApiError(f"{self.url} answered {path} with HTTP {status}: {message}", 3, status)

    def _decode(self, response: httpx.Response, path: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                f"{self.url} answered {path} (HTTP {response.status_code}) with something "
                "other than JSON: it is not watchkeeper's API; check --url",
                3,
                response.status_code,
            ) from None

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise self.unreachable() from None
        except httpx.TimeoutException:
            raise ApiError(
                f"{self.url} did not answer {path} in time; is watchkeeper overloaded? "
                "(try again, or raise --timeout)",
                3,
            ) from None
        except httpx.HTTPError as exc:
            raise ApiError(f"talking to {self.url} failed: {exc}", 3) from None

    # -- requests -------------------------------------------------------------------------
    def get(self, path: str, **params: Any) -> Any:
        """``GET path`` → the decoded JSON; raises :class:`ApiError` on any failure."""
        query = {key: value for key, value in params.items() if value is not None}
        response = self._send("GET", path, params=query)
        if response.status_code >= 400:
            if response.status_code == 404 and not _names_something(response):
                # No such route (rather than "no such agent"): some other server.
                raise ApiError(
                    f"{self.url} has no {path}: it is not watchkeeper's API (or an older "
                    "one); check --url",
                    3,
                    404,
                )
            raise self._error_for(response, path)
        return self._decode(response, path)

    def get_optional(self, path: str, **params: Any) -> Any | None:
        """Like :meth:`get`, but None when the API answers 503 (nothing to show yet)."""
        try:
            return self.get(path, **params)
        except ApiError as exc:
            if exc.status == 503:
                return None
            raise

    def read(self, path: str, model: type[M], **params: Any) -> M:
        """``GET path`` read with its response model: ``api.read("/api/system",
        SystemSnapshot)``. Raises :class:`ApiError` on any failure."""
        return model.model_validate(self.get(path, **params))

    def read_optional(self, path: str, model: type[M], **params: Any) -> M | None:
        """Like :meth:`read`, but None when the API answers 503 (nothing to show yet)."""
        data = self.get_optional(path, **params)
        return None if data is None else model.model_validate(data)

    def healthy(self) -> bool:
        """Whether a watchkeeper answers at all (``/api/health?probe=live``)."""
        try:
            response = self._http.get("/api/health", params={"probe": "live"})
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def command(
        self, name: str, target: str, params: Mapping[str, Any] | None = None
    ) -> CommandResult:
        """``POST /api/command``. Unknown command, target or bad params raise
        :class:`ApiError` (exit 2); an agent that refused gives ``ok=False``."""
        body = {"command": name, "target": target, "params": dict(params or {})}
        # Remediation actions may take up to a minute on the server side.
        timeout = 75.0 if name in ("run_action", "approve") else None
        extra: dict[str, Any] = {"timeout": timeout} if timeout else {}
        response = self._send("POST", "/api/command", json=body, **extra)
        if response.status_code in (200, 409, 504):
            data = self._decode(response, "/api/command")
            if isinstance(data, dict) and "replies" in data:
                return CommandResult(bool(data.get("ok")), response.status_code, data)
        raise self._error_for(response, "/api/command")

    def patch_config(self, changes: Mapping[str, Any], *, persist: bool = False) -> Any:
        """``PATCH /api/config`` with dotted keys; a refused key raises (exit 2)."""
        response = self._send(
            "PATCH", "/api/config", json={"changes": dict(changes), "persist": persist}
        )
        if response.status_code >= 400:
            raise self._error_for(response, "/api/config")
        return self._decode(response, "/api/config")

    def events(self, *, read_timeout: float = 45.0) -> Iterator[Event]:
        """Follow ``/api/events`` until the server ends it (or the caller stops)."""
        timeout = httpx.Timeout(10.0, read=read_timeout)
        try:
            with self._http.stream("GET", "/api/events", timeout=timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._error_for(response, "/api/events")
                yield from _parse_sse(response.iter_lines())
        except httpx.ConnectError:
            raise self.unreachable() from None
        except httpx.TimeoutException:
            raise ApiError(f"{self.url} went silent: no event or heartbeat in time", 3) from None
        except httpx.HTTPError as exc:
            raise ApiError(f"the event stream from {self.url} broke: {exc}", 3) from None


def _parse_sse(lines: Iterator[str]) -> Iterator[Event]:
    """Server-sent events → :class:`Event` values (comments and ``retry`` skipped)."""
    name = "message"
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                text = "\n".join(data)
                try:
                    payload: Any = json.loads(text)
                except ValueError:
                    payload = text
                yield Event(name, payload)
            name, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
