"""Where Refill may send a webhook: http(s) only, to globally routable addresses only, so it
cannot be aimed at its own network (loopback, private, link-local, cloud metadata,
carrier-grade NAT, multicast, reserved, and the IPv4-mapped or NAT64 forms of these).

At delivery the host is resolved once, every address checked, and the connection made to
that checked address (keeping the Host header and the TLS server name), so a second DNS
answer cannot rebind it. ``REFILL_WEBHOOK_ALLOW_PRIVATE=true`` lifts the address rule
(tests, development).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from refill.errors import ValidationFailed

Resolver = Callable[[str, int], list[str]]


class UrlNotAllowed(ValidationFailed):
    code = "url_not_allowed"


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


# IPv6 forms that carry an IPv4 address in their last 32 bits: NAT64 (well-known and
# local-use prefixes), IPv4-translated, and the deprecated IPv4-compatible form.
_EMBEDDING = tuple(
    ipaddress.ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "::ffff:0:0:0/96", "::/96")
)


def address_allowed(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None:
            return address_allowed(str(embedded))
        if any(ip in network for network in _EMBEDDING):
            return address_allowed(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
    return ip.is_global and not ip.is_multicast


@dataclass(frozen=True, slots=True)
class Rules:
    """What a URL must be: the resolver, and whether private addresses may be used."""

    resolver: Resolver
    allow_private: bool


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    scheme: str
    host: str
    port: int
    addresses: list[str]


def check_url(url: str, *, resolver: Resolver, allow_private: bool) -> Target:
    """The URL's parts and its checked addresses; ``UrlNotAllowed`` (422) otherwise."""
    if any(not c.isprintable() or c.isspace() for c in url):
        raise UrlNotAllowed("the URL must not contain spaces or control characters", field="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a port out of range or not a number, a broken IPv6 literal
        raise UrlNotAllowed(f"the URL is not valid: {exc}", field="url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UrlNotAllowed("the URL must be http:// or https:// with a host", field="url")
    if "@" in parts.netloc:
        raise UrlNotAllowed("the URL must not carry a user or a password", field="url")
    if port == 0:
        raise UrlNotAllowed("the URL's port must be 1 to 65535", field="url")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = resolver(parts.hostname, port)
    except (OSError, UnicodeError):
        raise UrlNotAllowed(f"{parts.hostname} does not resolve", field="url") from None
    if not addresses:
        raise UrlNotAllowed(f"{parts.hostname} does not resolve", field="url")
    if not allow_private:
        refused = [a for a in addresses if not address_allowed(a)]
        if refused:
            raise UrlNotAllowed(
                f"{parts.hostname} resolves to {refused[0]}, which is not a public address",
                field="url",
            )
    return Target(url, parts.scheme, parts.hostname, port, addresses)


class _PinnedBackend(httpcore.SyncBackend):
    """Connects to the checked address whatever host the request names; TLS still uses
    the request's host name (httpcore passes it as the server name)."""

    def __init__(self, address: str) -> None:
        self.address = address

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        return super().connect_tcp(self.address, port, timeout, local_address, socket_options)


@cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every delivery: loading the CA bundle costs milliseconds, and a
    context is safe to share between threads."""
    return httpx.create_ssl_context()


class PinnedTransport(httpx.HTTPTransport):
    def __init__(self, address: str) -> None:
        super().__init__(trust_env=False, retries=0, verify=_tls())
        self._pool = httpcore.ConnectionPool(
            ssl_context=_tls(),
            network_backend=_PinnedBackend(address),
            max_connections=1,
        )


def pinned_client(address: str, timeout: float) -> httpx.Client:
    """A client bound to one checked address: no redirects, no proxies from the
    environment, one timeout for the whole exchange."""
    return httpx.Client(
        transport=PinnedTransport(address),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )
