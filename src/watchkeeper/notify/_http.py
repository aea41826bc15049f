"""Channels that POST JSON: a generic webhook, Slack incoming webhooks, PagerDuty v2.

Each keeps one HTTP client (connection reuse) and is only ever used by one worker at a
time. Error messages name the receiver by scheme, host and port only: webhook URLs often
carry their secret in the path.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from watchkeeper.model.alerts import Severity
from watchkeeper.model.text import NOTIFICATION, clean
from watchkeeper.notify.base import DeliveryError, Notification

if TYPE_CHECKING:
    import httpx

__all__ = ["PagerDutyChannel", "SlackChannel", "WebhookChannel"]

#: 408 and 429 are worth another try; other 4xx answers will not change.
_RETRYABLE_4XX = {408, 425, 429}


def _where(url: str) -> str:
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:  # an HTTP date; the backoff will do
        return None


class _JsonPoster:
    def __init__(self, name: str, url: str, *, timeout: float, headers: dict[str, str]) -> None:
        self.name = name
        self._url = url
        self._where = _where(url)
        self._timeout = timeout
        self._headers = headers
        self._client: httpx.Client | None = None

    def _post(self, payload: dict[str, Any]) -> None:
        import httpx  # only when a network channel is actually used

        if self._client is None:
            self._client = httpx.Client(
                timeout=self._timeout, follow_redirects=False, headers=self._headers
            )
        try:
            response = self._client.post(self._url, json=payload)
        except httpx.HTTPError as exc:
            detail = str(exc).replace(self._url, self._where) or type(exc).__name__
            raise DeliveryError(f"{self._where}: {detail}") from None
        status = response.status_code
        if 200 <= status < 300:
            return
        raise DeliveryError(
            f"{self._where} answered HTTP {status}",
            retryable=status >= 500 or status in _RETRYABLE_4XX,
            retry_after=_retry_after(response.headers.get("retry-after")),
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class WebhookChannel(_JsonPoster):
    """POSTs the whole notice as JSON (``{"version": 1, "kind": ..., "alert": {...}}``)."""

    def __init__(
        self, name: str, url: str, *, timeout: float = 5.0, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(name, url, timeout=timeout, headers=dict(headers or {}))

    def send(self, notice: Notification) -> None:
        self._post({"version": 1, "source": "watchkeeper", **notice.model_dump(mode="json")})


def _slack_escape(text: str) -> str:
    # Slack reads &, < and > as markup; process names and log lines are not to be trusted.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackChannel(_JsonPoster):
    """Slack incoming-webhook messages: a fallback ``text`` and header/section blocks."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        timeout: float = 5.0,
        channel: str | None = None,
        username: str | None = None,
    ) -> None:
        super().__init__(name, url, timeout=timeout, headers={})
        self._channel = channel
        self._username = username

    def payload(self, notice: Notification) -> dict[str, Any]:
        """The JSON body Slack receives for ``notice``."""
        title = _slack_escape(notice.title)
        context = f"{notice.severity.value} · {notice.host} · {notice.key}"
        payload: dict[str, Any] = {
            "text": title,
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": notice.title[:150]}},
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": _slack_escape(notice.body)[:3000]},
                },
                {
                    "type": "context",
                    "elements": [{"type": "mrkdwn", "text": _slack_escape(context)}],
                },
            ],
        }
        if self._channel:
            payload["channel"] = self._channel
        if self._username:
            payload["username"] = self._username
        return payload

    def send(self, notice: Notification) -> None:
        self._post(self.payload(notice))


_PD_SEVERITY = {Severity.INFO: "info", Severity.WARNING: "warning", Severity.CRITICAL: "critical"}


class PagerDutyChannel(_JsonPoster):
    """PagerDuty Events API v2: ``trigger`` with the key as ``dedup_key``, then ``resolve``.

    PagerDuty folds triggers with one dedup key into one incident, so repeats and
    escalations update it instead of opening new ones.
    """

    def __init__(
        self,
        name: str,
        routing_key: str,
        *,
        url: str = "https://events.pagerduty.com/v2/enqueue",
        source: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        super().__init__(name, url, timeout=timeout, headers={})
        self._routing_key = routing_key
        self._source = source

    def payload(self, notice: Notification) -> dict[str, Any]:
        """The event PagerDuty receives for ``notice``."""
        key = notice.key[:255]
        if notice.resolved:
            return {"routing_key": self._routing_key, "event_action": "resolve", "dedup_key": key}
        alert = notice.alert
        stamp = dt.datetime.fromtimestamp(notice.created_at, dt.UTC).isoformat()
        body: dict[str, Any] = {
            "summary": notice.title[:1024],
            "source": self._source or notice.host,
            "severity": _PD_SEVERITY.get(notice.severity, "error"),
            "timestamp": stamp,
            "custom_details": {"kind": notice.kind, "body": notice.body, **notice.details},
        }
        if alert is not None:
            body.update(component=alert.subject, group=alert.rule, **{"class": alert.rule})
            body["custom_details"].update(evidence=alert.evidence, labels=alert.labels)
        incident = notice.incident
        if incident is not None:
            root = next((m for m in incident.members if m.fingerprint == incident.root), None)
            rule = root.rule if root is not None else "incident"
            body.update(component=incident.key, group="incident", **{"class": rule})
            body["custom_details"].update(
                root_cause=clean(incident.root_cause, NOTIFICATION),
                alerts=[clean(f"{m.rule} on {m.subject}", NOTIFICATION) for m in incident.members],
            )
        fleet = notice.fleet_incident
        if fleet is not None:
            body.update(component=fleet.subject, group="fleet", **{"class": fleet.rule})
            firing = [h.host for h in fleet.hosts if h.firing]
            body["custom_details"].update(hosts=firing[:100], host_count=len(firing))
        return {
            "routing_key": self._routing_key,
            "event_action": "trigger",
            "dedup_key": key,
            "client": "watchkeeper",
            "payload": body,
        }

    def send(self, notice: Notification) -> None:
        self._post(self.payload(notice))
