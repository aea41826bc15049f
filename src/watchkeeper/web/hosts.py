"""Which host names are this machine's own, and which ``Host:`` headers the server answers.

Two questions with one root: a *name* can be made to point anywhere by whoever controls
its DNS, a loopback *literal* cannot. So only ``localhost`` and literal loopback
addresses (``127.0.0.0/8``, ``::1``) count as this machine, never a name that merely
starts like one (``127.0.0.1.example.net``, ``localhost.example.net``)::

    is_loopback_host("127.0.0.9")            # True
    is_loopback_host("127.0.0.1.example")    # False
    policy = HostPolicy.for_bind("127.0.0.1", ["watchkeeper.lan"])
    policy.allows("localhost:8000")          # True
    policy.allows("rebind.example:8000")     # False

The CLI uses the first to decide where the local API token may be sent; the web
server's host check (:class:`~watchkeeper.web.guards.HostGuard`) uses the second against
DNS rebinding: a page on a foreign site whose name is re-pointed at 127.0.0.1 reaches
the port, but its requests still carry the foreign name in ``Host:``.

Pure functions, no third-party imports: cheap for the CLI to load.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ANY_HOST", "HostPolicy", "host_name", "is_loopback_host"]

#: The ``web.allowed_hosts`` entry that turns the check off (behind a proxy that checks).
ANY_HOST = "*"
_LOCALHOST = "localhost"
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})


def _literal(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return None


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or a literal address, IPv6 with or without brackets)
    surely means this machine: ``localhost`` or a literal loopback address."""
    name = host.strip().lower().removesuffix(".")
    if name == _LOCALHOST:
        return True
    address = _literal(name)
    return address is not None and address.is_loopback


def host_name(header: str) -> str | None:
    """The host part of a ``Host:`` header value (lower case, port and brackets gone,
    one trailing dot dropped), or None when it is not a well-formed host[:port]."""
    value = header.strip().lower()
    if value.startswith("["):
        inside, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not _is_port(rest)):
            return None
        return inside if _literal(inside) is not None else None
    name, colon, port = value.partition(":")
    if colon and not _is_port(":" + port):
        return None
    if not name or any(ch.isspace() or ch in "/@?#\\" for ch in name):
        return None
    return name.removesuffix(".")


def _canonical(name: str) -> str:
    """A configured name or address as :meth:`HostPolicy.allows` compares it."""
    value = name.strip().lower().removesuffix(".").strip("[]")
    address = _literal(value)
    return str(address) if address is not None else value


def _is_port(text: str) -> bool:
    digits = text.removeprefix(":")
    return text.startswith(":") and digits.isdigit() and len(digits) <= 5


@dataclass(frozen=True)
class HostPolicy:
    """The host names a server answers to. ``names`` are exact (lower case);
    ``any_literal`` also admits every IP literal (a wildcard bind: DNS rebinding needs
    a name, so an address typed by the client is never one); ``everything`` is the
    ``"*"`` opt-out."""

    names: frozenset[str]
    any_literal: bool = False
    everything: bool = False

    @classmethod
    def for_bind(cls, bind_host: str, configured: Iterable[str] = ()) -> HostPolicy:
        """The policy of a server bound to ``bind_host``: loopback names and literals
        always (a request through an SSH tunnel says ``localhost``); the bound address
        itself when it is not loopback; every literal on a wildcard bind; and the
        configured names."""
        extra = {_canonical(entry) for entry in configured}
        everything = ANY_HOST in extra
        extra.discard(ANY_HOST)
        names = {_LOCALHOST, *extra}
        bind = _canonical(bind_host)
        if bind not in _WILDCARDS:
            names.add(bind)
        return cls(frozenset(names), any_literal=bind in _WILDCARDS, everything=everything)

    def allows(self, header: str) -> bool:
        """Whether a request with this ``Host:`` value may be served."""
        if self.everything:
            return True
        name = host_name(header)
        if name is None:
            return False
        if name in self.names:
            return True
        address = _literal(name)
        if address is None:
            return False
        return self.any_literal or address.is_loopback or str(address) in self.names
