"""Secret-bearing settings: one fixed mask wherever they are shown, the real value only
where it is used.

Every setting that carries a credential is one of these types: ``SecretText`` (a token,
a password, a routing key, a Slack webhook URL), ``SecretHeaders`` (a webhook's HTTP
headers, secret as a whole) and ``SecretURL`` (a webhook URL, whose userinfo and query
string are secret). Serialising a model shows :data:`MASK` in their place, in JSON and
Python mode alike; only a dump with :data:`REVEAL` as its context (writing the config file
back, validating a change) carries the real values::

    settings.model_dump(mode="json")                   # secrets masked: safe to show
    settings.model_dump(mode="json", context=REVEAL)   # real values: never show this

The mask itself is never a valid secret, so a masked dump cannot be loaded by mistake;
``ConfigStore`` puts the stored value back where a change sends the mask unchanged
(:func:`restore_masked`), which lets a dashboard round-trip the configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    Secret,
    SecretStr,
    SerializationInfo,
)

__all__ = [
    "MASK",
    "REVEAL",
    "SecretHeaders",
    "SecretText",
    "SecretURL",
    "restore_masked",
    "reveal",
    "secret_value",
]

#: What every secret looks like when shown. Fixed: it says nothing about the value.
MASK = "********"
#: The serialisation context that shows real values (for writing the config file only).
REVEAL: dict[str, Any] = {"reveal_secrets": True}
_MASK_REFUSED = "is the mask of a secret, not a secret: send the real value or leave the key out"


def _revealing(info: SerializationInfo) -> bool:
    context = info.context
    return isinstance(context, Mapping) and bool(context.get("reveal_secrets"))


def secret_value(value: SecretStr | str | None) -> str | None:
    """The plain text of a secret setting (``None`` stays ``None``)."""
    if value is None or isinstance(value, str):
        return value
    return value.get_secret_value()


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr | Secret):
        return value.get_secret_value()
    return value


def _refuse_mask(value: Any) -> Any:
    """Before validation: the mask sent where a new secret belongs is a mistake."""
    if _plain(value) == MASK:
        raise ValueError(_MASK_REFUSED)
    return value


def _dump_text(value: SecretStr | str, info: SerializationInfo) -> str:
    text = str(_plain(value))
    return text if _revealing(info) or not text else MASK


SecretText = Annotated[SecretStr, BeforeValidator(_refuse_mask), PlainSerializer(_dump_text)]


def _dump_headers(value: Secret[dict[str, str]] | dict[str, str], info: SerializationInfo) -> Any:
    headers = _plain(value)
    return dict(headers) if _revealing(info) or not headers else MASK


#: A webhook's HTTP headers (``Authorization`` and the like), masked as a whole.
SecretHeaders = Annotated[
    Secret[dict[str, str]],
    BeforeValidator(_refuse_mask),
    PlainSerializer(_dump_headers),
    Field(validate_default=True),
]


def masked_url(url: str) -> str:
    """``url`` with its userinfo, query string and fragment replaced by the mask."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = MASK if parts.query else ""
    fragment = MASK if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def _http_url(value: SecretStr) -> SecretStr:
    text = value.get_secret_value().strip()
    if not text.lower().startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    if MASK in text:
        raise ValueError(f"the URL {_MASK_REFUSED}")
    return SecretStr(text)


def _dump_url(value: SecretStr | str, info: SerializationInfo) -> str:
    text = str(_plain(value))
    return text if _revealing(info) else masked_url(text)


#: A webhook URL: scheme, host and path are shown; userinfo and query are secret.
SecretURL = Annotated[SecretStr, AfterValidator(_http_url), PlainSerializer(_dump_url)]


def reveal(model: Any) -> Any:
    """``model`` (a pydantic model) as JSON data with the real secrets: never show it."""
    return model.model_dump(mode="json", context=REVEAL)


def restore_masked(new: Any, shown: Any, stored: Any) -> Any:
    """``new`` with every value that equals what is shown of a secret (``shown``, the
    masked dump) replaced by the stored secret (``stored``, the revealed dump).

    Only positions where ``shown`` differs from ``stored`` hold secrets, so nothing else
    is touched. Lists of tables with a ``name`` (notification channels) are matched by
    name, so a reordered or extended list keeps each channel's secrets."""
    if shown == stored:
        return new
    if new == shown:
        return stored
    if isinstance(new, Mapping) and isinstance(shown, Mapping) and isinstance(stored, Mapping):
        return {
            key: restore_masked(value, shown.get(key), stored.get(key))
            if key in shown and key in stored
            else value
            for key, value in new.items()
        }
    if isinstance(new, list) and isinstance(shown, list) and isinstance(stored, list):
        return [_restore_item(index, item, shown, stored) for index, item in enumerate(new)]
    return new


def _restore_item(index: int, item: Any, shown: list[Any], stored: list[Any]) -> Any:
    name = item.get("name") if isinstance(item, Mapping) else None
    if name is not None:
        for before_shown, before_stored in zip(shown, stored, strict=True):
            if isinstance(before_shown, Mapping) and before_shown.get("name") == name:
                return restore_masked(item, before_shown, before_stored)
        return item
    if index < len(shown) and index < len(stored):
        return restore_masked(item, shown[index], stored[index])
    return item
