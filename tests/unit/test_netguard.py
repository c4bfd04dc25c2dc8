"""Where a webhook may go: public http(s) addresses only, and the connection goes to the
address that was checked, whatever a second DNS answer or the environment would say."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from refill.errors import ValidationFailed
from refill.notify.netguard import (
    PinnedTransport,
    Resolver,
    UrlNotAllowed,
    address_allowed,
    check_url,
    pinned_client,
)

PUBLIC = "93.184.216.34"


def resolving_to(*addresses: str) -> Resolver:
    def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


def unresolvable(host: str, port: int) -> list[str]:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def bad_idna(host: str, port: int) -> list[str]:
    raise UnicodeError("label too long")


# --- addresses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("127.0.0.1", id="loopback"),
        pytest.param("127.1.2.3", id="loopback-range"),
        pytest.param("10.0.0.1", id="private-10"),
        pytest.param("172.16.5.4", id="private-172"),
        pytest.param("192.168.1.1", id="private-192"),
        pytest.param("169.254.169.254", id="cloud-metadata"),
        pytest.param("100.64.0.1", id="carrier-grade-nat"),
        pytest.param("0.0.0.0", id="unspecified"),  # noqa: S104  (an address refused, not bound)
        pytest.param("224.0.0.1", id="multicast"),
        pytest.param("255.255.255.255", id="broadcast"),
        pytest.param("198.18.0.1", id="benchmarking"),
        pytest.param("192.0.2.1", id="documentation"),
        pytest.param("::1", id="ipv6-loopback"),
        pytest.param("::", id="ipv6-unspecified"),
        pytest.param("fe80::1", id="ipv6-link-local"),
        pytest.param("fc00::1", id="ipv6-unique-local"),
        pytest.param("ff02::1", id="ipv6-multicast"),
        pytest.param("2001:db8::1", id="ipv6-documentation"),
        pytest.param("::ffff:127.0.0.1", id="mapped-loopback"),
        pytest.param("::ffff:10.0.0.1", id="mapped-private"),
        pytest.param("::ffff:169.254.169.254", id="mapped-metadata"),
        pytest.param("64:ff9b::7f00:1", id="nat64-loopback"),
        pytest.param("64:ff9b::a9fe:a9fe", id="nat64-metadata"),
        pytest.param("2002:7f00:1::", id="6to4-loopback"),
        pytest.param("2002:a00:1::", id="6to4-private"),
        pytest.param("64:ff9b:1::a00:7", id="local-nat64-private"),
        pytest.param("::ffff:0:7f00:1", id="ipv4-translated-loopback"),
        pytest.param("::127.0.0.1", id="ipv4-compatible-loopback"),
    ],
)
def test_addresses_of_the_own_network_are_refused(address: str) -> None:
    assert address_allowed(address) is False


@pytest.mark.parametrize(
    "address",
    [
        pytest.param(PUBLIC, id="public-ipv4"),
        pytest.param("8.8.8.8", id="public-resolver"),
        pytest.param("2606:4700:4700::1111", id="public-ipv6"),
        pytest.param("::ffff:8.8.8.8", id="mapped-public"),
        pytest.param("64:ff9b::808:808", id="nat64-public"),
        pytest.param("2002:808:808::", id="6to4-public"),
    ],
)
def test_globally_routable_addresses_are_allowed(address: str) -> None:
    assert address_allowed(address) is True


# --- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "resolver", "reason"),
    [
        pytest.param("ftp://hooks.example.com/x", resolving_to(PUBLIC), "http://", id="ftp"),
        pytest.param("file:///etc/passwd", resolving_to(PUBLIC), "http://", id="file"),
        pytest.param("https:///x", resolving_to(PUBLIC), "with a host", id="no-host"),
        pytest.param("hooks.example.com/x", resolving_to(PUBLIC), "http://", id="no-scheme"),
        pytest.param(
            "https://user:password@hooks.example.com/x",
            resolving_to(PUBLIC),
            "user or a password",
            id="user-and-password",
        ),
        pytest.param(
            "https://user@hooks.example.com/x",
            resolving_to(PUBLIC),
            "user or a password",
            id="user-only",
        ),
        pytest.param(
            "https://hooks.example.com/x", unresolvable, "does not resolve", id="resolver-raises"
        ),
        pytest.param(
            "https://hooks.example.com/x", bad_idna, "does not resolve", id="resolver-unicode"
        ),
        pytest.param(
            "https://hooks.example.com/x", resolving_to(), "does not resolve", id="no-address"
        ),
        pytest.param(
            "https://hooks.example.com/x",
            resolving_to("127.0.0.1"),
            "127.0.0.1, which is not a public address",
            id="loopback",
        ),
        pytest.param(
            "https://hooks.example.com/x",
            resolving_to(PUBLIC, "10.0.0.1"),
            "10.0.0.1, which is not a public address",
            id="one-of-several-private",
        ),
        pytest.param(
            "https://hooks.example.com/x",
            resolving_to("169.254.169.254", "8.8.8.8"),
            "169.254.169.254",
            id="metadata-first-of-several",
        ),
    ],
)
def test_check_url_refuses_with_url_not_allowed_naming_the_reason(
    url: str, resolver: Resolver, reason: str
) -> None:
    with pytest.raises(UrlNotAllowed) as caught:
        check_url(url, resolver=resolver, allow_private=False)
    error = caught.value
    assert isinstance(error, ValidationFailed)
    assert error.code == "url_not_allowed"
    assert error.status == 422
    assert error.extra["field"] == "url"
    assert reason in error.message


@pytest.mark.parametrize(
    ("url", "port"),
    [
        pytest.param("https://hooks.example.com/x", 443, id="https-default"),
        pytest.param("http://hooks.example.com/x", 80, id="http-default"),
        pytest.param("https://hooks.example.com:8443/x", 8443, id="explicit"),
        pytest.param("HTTPS://Hooks.Example.com/x", 443, id="upper-case"),
    ],
)
def test_check_url_accepts_a_public_host_and_resolves_it_at_its_port(url: str, port: int) -> None:
    asked: list[tuple[str, int]] = []

    def resolver(host: str, at: int) -> list[str]:
        asked.append((host, at))
        return [PUBLIC, "2606:4700:4700::1111"]

    target = check_url(url, resolver=resolver, allow_private=False)
    assert asked == [("hooks.example.com", port)]
    assert target.url == url
    assert target.scheme == url.split(":", 1)[0].lower()
    assert target.host == "hooks.example.com"
    assert target.port == port
    assert target.addresses == [PUBLIC, "2606:4700:4700::1111"]


def test_allow_private_accepts_a_loopback_resolution() -> None:
    target = check_url(
        "http://localhost:8080/hook", resolver=resolving_to("127.0.0.1"), allow_private=True
    )
    assert (target.host, target.port, target.addresses) == ("localhost", 8080, ["127.0.0.1"])


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("ftp://localhost/x", id="scheme"),
        pytest.param("http://u:p@localhost/x", id="credentials"),
    ],
)
def test_allow_private_lifts_only_the_address_rule(url: str) -> None:
    with pytest.raises(UrlNotAllowed):
        check_url(url, resolver=resolving_to("127.0.0.1"), allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://hooks.example.com:99999/x", id="port-out-of-range"),
        pytest.param("https://hooks.example.com:abc/x", id="port-not-a-number"),
        pytest.param("https://hooks.example.com:0/x", id="port-zero"),
        pytest.param("https://[::1/x", id="broken-ipv6-literal"),
        pytest.param("https://@hooks.example.com/x", id="empty-user"),
    ],
)
def test_a_url_that_cannot_be_parsed_safely_is_refused_as_not_allowed(url: str) -> None:
    with pytest.raises(UrlNotAllowed):
        check_url(url, resolver=resolving_to(PUBLIC), allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://hooks.example.com/\tx", id="tab"),
        pytest.param("https://hooks.example.com/x\n", id="newline"),
        pytest.param("https://hooks.exa\rmple.com/x", id="carriage-return-in-host"),
    ],
)
def test_a_url_with_a_control_character_is_refused(url: str) -> None:
    with pytest.raises(UrlNotAllowed):
        check_url(url, resolver=resolving_to(PUBLIC), allow_private=False)


# --- the pinned client ----------------------------------------------------------------------


@dataclass
class Seen:
    hosts: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


@dataclass
class LocalServer:
    port: int
    seen: Seen


@pytest.fixture
def local_server() -> Iterator[LocalServer]:
    """An HTTP server on 127.0.0.1: 200 on /, a 302 to /elsewhere on /redirect."""
    seen = Seen()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.hosts.append(self.headers.get("Host", ""))
            seen.paths.append(self.path)
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = b"reached"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LocalServer(server.server_address[1], seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_pinned_client_connects_to_the_checked_address_and_keeps_the_host(
    local_server: LocalServer,
) -> None:
    host = f"some-name.invalid:{local_server.port}"
    with pinned_client("127.0.0.1", 2.0) as client:
        response = client.get(f"http://{host}/")
    assert response.status_code == 200
    assert response.text == "reached"
    assert local_server.seen.hosts == [host]


def test_the_pinned_client_does_not_follow_a_redirect(local_server: LocalServer) -> None:
    with pinned_client("127.0.0.1", 2.0) as client:
        response = client.get(f"http://some-name.invalid:{local_server.port}/redirect")
    assert response.status_code == 302
    assert response.headers["location"] == "/elsewhere"
    assert local_server.seen.paths == ["/redirect"]


@pytest.mark.parametrize(
    "variable",
    [
        pytest.param("HTTP_PROXY", id="http-proxy"),
        pytest.param("HTTPS_PROXY", id="https-proxy"),
        pytest.param("ALL_PROXY", id="all-proxy"),
        pytest.param("http_proxy", id="lower-case-http-proxy"),
    ],
)
def test_the_pinned_client_ignores_proxy_variables(
    local_server: LocalServer, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, "http://127.0.0.1:9")
    host = f"some-name.invalid:{local_server.port}"
    with pinned_client("127.0.0.1", 2.0) as client:
        response = client.get(f"http://{host}/")
    assert response.status_code == 200
    assert local_server.seen.hosts == [host]


def test_every_proxy_variable_at_once_is_ignored(
    local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pinned_client("127.0.0.1", 2.0) as client:
        response = client.get(f"http://some-name.invalid:{local_server.port}/")
    assert response.status_code == 200


def test_the_pinned_transport_alone_pins_the_connection(local_server: LocalServer) -> None:
    with httpx.Client(transport=PinnedTransport("127.0.0.1"), timeout=2.0) as client:
        response = client.get(f"http://elsewhere.invalid:{local_server.port}/")
    assert response.status_code == 200
    assert local_server.seen.hosts == [f"elsewhere.invalid:{local_server.port}"]


def test_tls_to_the_pinned_address_names_the_requested_host() -> None:
    """The ClientHello reaching the pinned address carries the URL's host as its server
    name (SNI), so certificates are checked against the name, not the address."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(5)
    port = listener.getsockname()[1]
    hello: list[bytes] = []

    def accept_one() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            hello.append(conn.recv(65536))

    thread = threading.Thread(target=accept_one, daemon=True)
    thread.start()
    try:
        with pinned_client("127.0.0.1", 2.0) as client, pytest.raises(httpx.HTTPError):
            client.get(f"https://tls-name.invalid:{port}/")
        thread.join(timeout=5)
    finally:
        listener.close()
    assert hello
    assert b"tls-name.invalid" in hello[0]
