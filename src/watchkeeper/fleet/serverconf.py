"""An example nats-server configuration for a fleet: JetStream, one account, one user per host.

Each host logs in as its host id and may publish only under its own subjects
(``wk.<host>.>``) and subscribe only to them and to its own reply inbox
(``_INBOX_<host>.>``); it may answer a request it received (``allow_responses``) and
nothing else. The central user may publish and subscribe everything under the prefix and
manage the JetStream streams and consumers (``$JS.>``)::

    text = render_server_config(["web-1", "db-1"], "central", passwords={...})
    Path("/etc/nats/fleet.conf").write_text(text)

Passwords are written as given (nats-server accepts plain passwords and bcrypt hashes,
``$2a$...``, in the same field); a user without one gets a random password, written into
the file, to be copied into that host's ``[bus] password``.
"""

from __future__ import annotations

import re
import secrets

from watchkeeper.config.fleet import check_host_id

__all__ = ["central_permissions", "host_permissions", "render_server_config"]

_PREFIX = re.compile(r"^[a-zA-Z0-9_-]{1,32}$")
#: Printable ASCII without the quote and the backslash: safe inside a quoted config string.
_PASSWORD = re.compile(r"^[\x20-\x21\x23-\x5b\x5d-\x7e]{8,256}$")
_STORE_DIR = re.compile(r'^/[^\x00-\x1f"\\]{0,4095}$')
_ADDRESS = re.compile(r"^[0-9a-zA-Z.:_-]{1,253}$")


def host_permissions(host: str, *, prefix: str = "wk") -> dict[str, list[str]]:
    """What ``host`` may publish and subscribe to: its own subjects and inbox only.

    JetStream's publish acks come back on the host's inbox, so publishing events needs
    nothing under ``$JS``; a host cannot create consumers (that would let it read every
    host's stream)."""
    own = f"{prefix}.{host}.>"
    return {"publish": [own], "subscribe": [own, f"_INBOX_{host}.>"]}


def central_permissions(central: str, *, prefix: str = "wk") -> dict[str, list[str]]:
    """What the central may do: everything under the prefix, the JetStream API, its inbox."""
    return {
        "publish": [f"{prefix}.>", "$JS.>"],
        "subscribe": [f"{prefix}.>", f"_INBOX_{central}.>"],
    }


def _check(hosts: list[str], central: str, prefix: str) -> None:
    if not _PREFIX.match(prefix):
        raise ValueError(f"subject prefix {prefix[:40]!r} must be 1 to 32 letters, digits, - or _")
    check_host_id(central)
    seen: set[str] = set()
    for host in hosts:
        check_host_id(host)
        if host in seen:
            raise ValueError(f"host {host!r} is listed twice")
        if host == central:
            raise ValueError(f"{host!r} is the central; list it once, as the central")
        seen.add(host)


def _password(user: str, passwords: dict[str, str]) -> str:
    value = passwords.get(user)
    if value is None:
        return secrets.token_urlsafe(18)
    if not _PASSWORD.match(value):
        raise ValueError(
            f'the password of {user!r} must be 8 to 256 printable ASCII characters without " or \\'
        )
    return value


def _user_entry(user: str, password: str, perms: dict[str, list[str]], *, responses: bool) -> str:
    def quoted(items: list[str]) -> str:
        return ", ".join(f'"{item}"' for item in items)

    lines = [
        "      {",
        f'        user: "{user}"',
        f'        password: "{password}"',
        "        permissions: {",
        f"          publish: {{ allow: [{quoted(perms['publish'])}] }}",
        f"          subscribe: {{ allow: [{quoted(perms['subscribe'])}] }}",
    ]
    if responses:
        lines.append('          allow_responses: { max: 1, expires: "1m" }')
    lines += ["        }", "      }"]
    return "\n".join(lines)


def render_server_config(
    hosts: list[str],
    central: str,
    *,
    prefix: str = "wk",
    passwords: dict[str, str] | None = None,
    port: int = 4222,
    store_dir: str = "/var/lib/nats",
    address: str = "0.0.0.0",
) -> str:
    """The text of a nats-server configuration for ``hosts`` and ``central``.

    Raises ``ValueError`` naming the bad value for an invalid host id, a host listed twice
    or as the central, a prefix that is not one subject token, a password nats-server could
    not read back, a port outside 1-65535 or a store dir that is not an absolute path."""
    _check(hosts, central, prefix)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} must be between 1 and 65535")
    if not _STORE_DIR.match(store_dir):
        raise ValueError(f"store dir {store_dir[:80]!r} must be an absolute path")
    if not _ADDRESS.match(address):
        raise ValueError(f"listen address {address[:80]!r} is not a host name or IP address")
    given = dict(passwords or {})
    unknown = sorted(set(given) - {central, *hosts})
    if unknown:
        raise ValueError(f"passwords given for users not in the fleet: {', '.join(unknown)}")
    users = [
        _user_entry(
            central,
            _password(central, given),
            central_permissions(central, prefix=prefix),
            responses=False,
        )
    ]
    users += [
        _user_entry(
            host, _password(host, given), host_permissions(host, prefix=prefix), responses=True
        )
        for host in hosts
    ]
    listen = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    head = [
        "# nats-server configuration for a watchkeeper fleet (watchkeeper fleet server-config).",
        f"# Central: {central}; hosts: {', '.join(hosts) or '(none)'}.",
        f"# Each host publishes only under {prefix}.<host>.> and receives only its own",
        "# subjects and inbox; the central reads and writes every host's and manages JetStream.",
        "# Passwords are plain text here: keep this file readable by the nats user only",
        "# (nats-server also accepts bcrypt hashes, $2a$..., in the password field).",
        "",
        f"listen: {listen}",
        "max_payload: 1MB",
        "",
        "jetstream {",
        f'  store_dir: "{store_dir}"',
        "}",
        "",
        "accounts {",
        "  WATCHKEEPER {",
        "    jetstream: enabled",
        "    users: [",
    ]
    tail = ["    ]", "  }", "}", ""]
    return "\n".join([*head, "\n".join(users), *tail])
