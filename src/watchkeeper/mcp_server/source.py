"""Where the MCP tools read from: the daemon's HTTP API, over the network or in-process.

One small interface, :class:`Source`, with two methods (``get`` and ``post``) on API paths;
:class:`ApiSource` implements it with httpx, either against a URL (``watchkeeper mcp``
over stdio, talking to the running daemon) or against the web app itself through an ASGI
transport (``/mcp`` inside the daemon)::

    source = ApiSource("http://127.0.0.1:8000", token)                 # another process
    source = ApiSource(IN_PROCESS_URL, token, transport=ASGITransport(app))  # in-process

Every failure becomes a :class:`SourceError` whose message a person (or an assistant) can
act on; the token never appears in one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import httpx

__all__ = ["IN_PROCESS_URL", "ApiSource", "Source", "SourceError"]

#: The base URL of in-process calls: loopback, which the web's ``Host:`` check always admits.
IN_PROCESS_URL = "http://127.0.0.1"
_DETAIL_MAX = 500
_TIMEOUT = 15.0


class SourceError(Exception):
    """The daemon could not answer, or refused: ``str(error)`` says why, in one line."""


class Source(Protocol):
    """What the tools read and send: JSON from an API path, or a JSON body to one."""

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any: ...

    async def post(self, path: str, body: Mapping[str, Any]) -> Any: ...


def _detail(response: httpx.Response) -> str:
    """The API's own words for an error (``detail``, or FastAPI's list of problems)."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, dict):
        detail = detail.get("detail")
    if isinstance(detail, list):
        detail = "; ".join(
            str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in detail
        )
    return str(detail or f"HTTP {response.status_code}")[:_DETAIL_MAX]


class ApiSource:
    """A :class:`Source` over watchkeeper's HTTP API (see the module docstring)."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = _TIMEOUT,
    ) -> None:
        headers = {"accept": "application/json", "user-agent": "watchkeeper-mcp"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self.url = url.rstrip("/")
        self._in_process = transport is not None
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
            transport=transport,
            follow_redirects=False,
            trust_env=False,  # a proxy from the environment must not see the token
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        return await self._send("GET", path, params=query)

    async def post(self, path: str, body: Mapping[str, Any]) -> Any:
        return await self._send("POST", path, json=dict(body))

    async def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise SourceError(
                f"no watchkeeper answers at {self.url}: start it with `watchkeeper run` "
                "(or point `watchkeeper mcp --url` at it)"
            ) from None
        except httpx.TimeoutException:
            raise SourceError(f"watchkeeper at {self.url} did not answer {path} in time") from None
        except httpx.HTTPError as exc:
            raise SourceError(f"talking to watchkeeper at {self.url} failed: {exc}") from None
        if response.status_code == 401:
            raise SourceError(
                "watchkeeper refused the API token: give `watchkeeper mcp` the daemon's token "
                "(--token, WATCHKEEPER_TOKEN, or run it as a user who can read "
                "<data_dir>/api_token)"
            )
        if response.status_code >= 400:
            raise SourceError(_detail(response))
        try:
            return response.json()
        except ValueError:
            raise SourceError(
                f"{self.url} answered {path} with something other than JSON: is it watchkeeper?"
            ) from None
