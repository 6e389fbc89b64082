"""Clients through HTTP CONNECT and SOCKS5 proxies, on real loopback sockets.

The proxies here are small asyncio servers written for the tests: they tunnel
for real (CONNECT, then bytes both ways), can demand Basic credentials, and can
be told to answer 407/403/502, garbage, nothing at all, or to hang up. One test
goes through the ``proxy.py`` package when it is installed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio

import wsline
import wsline.sync
from conftest import HOST, TLS, HTTPMessage, RawPeer, StartServer, client, echo, free_port, parse_head, ws_url
from wsline.aio.client import _retriable
from wsline.protocol.proxy import (
    Proxy,
    TunnelHandshake,
    bypass_proxy,
    parse_proxy,
    proxy_from_environment,
    select_proxy,
)

PROXY_VARS = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "REQUEST_METHOD",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy variables from the outside leak into these tests."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


# ------------------------------------------------------------- a test proxy


@dataclass
class FakeProxy:
    """A CONNECT (or SOCKS5) proxy on 127.0.0.1; see :func:`start_proxy`."""

    port: int
    scheme: str = "http"
    #: Every CONNECT request head (HTTP proxies).
    requests: list[HTTPMessage] = field(default_factory=list)
    #: Every "host:port" a tunnel was opened to.
    tunnels: list[str] = field(default_factory=list)
    #: Connections accepted.
    connections: int = 0
    #: SOCKS5: the (user, password) pairs received.
    socks_credentials: list[tuple[str, str]] = field(default_factory=list)

    def url(self, userinfo: str = "") -> str:
        at = f"{userinfo}@" if userinfo else ""
        return f"{self.scheme}://{at}{HOST}:{self.port}"

    @property
    def request(self) -> HTTPMessage:
        assert self.requests, "the proxy got no CONNECT request"
        return self.requests[-1]


StartProxy = Callable[..., Awaitable[FakeProxy]]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(ConnectionError, OSError):
        if writer.can_write_eof():
            writer.write_eof()


async def _tunnel(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int, reply: bytes
) -> None:
    try:
        up_reader, up_writer = await asyncio.open_connection(host, port)
    except OSError:
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        return
    writer.write(reply)
    await writer.drain()
    try:
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
    finally:
        up_writer.close()


@pytest_asyncio.fixture
async def start_proxy() -> AsyncIterator[StartProxy]:
    """Factory: ``proxy = await start_proxy(auth=None, answer=None, ssl=None, socks=False)``.

    ``auth=("user", "pass")`` demands those Basic (or SOCKS5) credentials.
    ``answer`` replaces the tunnel: raw bytes to send (then hang up), ``"close"``
    to hang up at once, ``"silent"`` to never answer. ``answers`` is a list of
    such answers for the first connections (``None`` for a real tunnel), the
    rest tunnel. ``ssl`` makes it an ``https://`` proxy (TLS to the proxy).
    """
    servers: list[asyncio.Server] = []
    tasks: set[asyncio.Task[Any]] = set()

    async def start(
        *,
        auth: tuple[str, str] | None = None,
        answer: bytes | str | None = None,
        answers: list[bytes | str | None] | None = None,
        ssl: ssl.SSLContext | None = None,
        socks: bool = False,
    ) -> FakeProxy:
        state = FakeProxy(0, "socks5h" if socks else "https" if ssl is not None else "http")
        pending = list(answers or [])

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            state.connections += 1
            this_answer = pending.pop(0) if pending else answer
            try:
                if socks:
                    await _socks_session(state, reader, writer, auth, this_answer)
                else:
                    await _http_session(state, reader, writer, auth, this_answer)
            except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, HOST, 0, ssl=ssl)
        servers.append(server)
        state.port = int(server.sockets[0].getsockname()[1])
        return state

    yield start
    for server in servers:
        server.close()
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=1)


async def _http_session(
    state: FakeProxy,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    auth: tuple[str, str] | None,
    answer: bytes | str | None,
) -> None:
    request = parse_head(await reader.readuntil(b"\r\n\r\n"))
    state.requests.append(request)
    if answer == "silent":
        await asyncio.sleep(30)
        return
    if answer == "close":
        return
    if isinstance(answer, bytes):
        writer.write(answer)
        await writer.drain()
        return
    method, target, _version = request.start_line.split(" ")
    if method != "CONNECT":
        writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
        return
    if auth is not None:
        expected = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        if request.get("Proxy-Authorization") != expected:
            writer.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="tests"\r\nContent-Length: 0\r\n\r\n'
            )
            return
    host, _, port = target.rpartition(":")
    state.tunnels.append(target)
    await _tunnel(reader, writer, host.strip("[]"), int(port), b"HTTP/1.1 200 Connection established\r\n\r\n")


async def _socks_session(
    state: FakeProxy,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    auth: tuple[str, str] | None,
    answer: bytes | str | None,
) -> None:
    version, count = await reader.readexactly(2)
    assert version == 5
    methods = await reader.readexactly(count)
    if auth is None:
        writer.write(b"\x05\x00")
    elif 2 in methods:
        writer.write(b"\x05\x02")
        _, ulen = await reader.readexactly(2)
        user = (await reader.readexactly(ulen)).decode()
        (plen,) = await reader.readexactly(1)
        password = (await reader.readexactly(plen)).decode()
        state.socks_credentials.append((user, password))
        if (user, password) != auth:
            writer.write(b"\x01\x01")
            return
        writer.write(b"\x01\x00")
    else:
        writer.write(b"\x05\xff")
        return
    _ver, _cmd, _rsv, atyp = await reader.readexactly(4)
    if atyp == 1:
        host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
    elif atyp == 4:
        host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
    else:
        (length,) = await reader.readexactly(1)
        host = (await reader.readexactly(length)).decode()
    (port,) = struct.unpack("!H", await reader.readexactly(2))
    state.tunnels.append(f"{host}:{port}")
    if isinstance(answer, bytes):  # a SOCKS reply code
        writer.write(b"\x05" + answer + b"\x00\x01\x00\x00\x00\x00\x00\x00")
        return
    # Bound address as a domain name, to exercise the variable-length reply.
    await _tunnel(reader, writer, host, port, b"\x05\x00\x00\x03\x09localhost\x00\x00")


async def _echo_through(ws: wsline.WebSocket, text: str = "through the proxy") -> None:
    await ws.send(text)
    assert await ws.recv() == text


# ----------------------------------------------------------- asyncio client


@pytest.mark.asyncio
async def test_ws_through_http_proxy(start_server: StartServer, start_proxy: StartProxy) -> None:
    server = await start_server(echo)
    proxy = await start_proxy()
    async with client(ws_url(server), proxy=proxy.url()) as ws:
        await _echo_through(ws)
        await ws.send(b"\x00" * 200_000)
        assert await ws.recv() == b"\x00" * 200_000
    request = proxy.request
    assert request.start_line == f"CONNECT {HOST}:{server.port} HTTP/1.1"
    assert request.get("Host") == f"{HOST}:{server.port}"
    assert request.get("User-Agent") == f"wsline/{wsline.__version__}"
    assert request.get("Proxy-Authorization") is None
    assert proxy.tunnels == [f"{HOST}:{server.port}"]


@pytest.mark.asyncio
async def test_wss_through_http_proxy(start_server: StartServer, start_proxy: StartProxy, tls: TLS) -> None:
    server = await start_server(echo, ssl=tls.server_context)
    proxy = await start_proxy()
    uri = ws_url(server, scheme="wss")
    async with client(uri, ssl=tls.client_context, proxy=proxy.url()) as ws:
        await _echo_through(ws, "TLS end to end ✓")
        ssl_object = ws._transport.get_extra_info("ssl_object")
        assert ssl_object is not None
        assert ssl_object.server_hostname == HOST
    # TLS to the server, by name (SNI + hostname check against the target, not the proxy).
    async with client(uri, ssl=tls.client_context, server_hostname="localhost", proxy=proxy.url()) as ws:
        await _echo_through(ws)
    assert proxy.tunnels == [f"{HOST}:{server.port}"] * 2


@pytest.mark.asyncio
async def test_wss_through_proxy_still_verifies_the_server(
    start_server: StartServer, start_proxy: StartProxy, tls: TLS
) -> None:
    server = await start_server(echo, ssl=tls.server_context)
    proxy = await start_proxy()
    with pytest.raises(wsline.InvalidHandshake) as info:
        await client(ws_url(server, scheme="wss"), proxy=proxy.url())  # default context: CA unknown
    assert not isinstance(info.value, wsline.ProxyError)
    assert "certificate verification failed" in str(info.value)
    assert not _retriable(info.value)


@pytest.mark.asyncio
@pytest.mark.parametrize("scheme", ["ws", "wss"])
async def test_through_https_proxy(
    start_server: StartServer, start_proxy: StartProxy, tls: TLS, scheme: str
) -> None:
    """TLS to the proxy; for wss:// a second TLS session runs inside the first."""
    server = await start_server(echo, ssl=tls.server_context if scheme == "wss" else None)
    proxy = await start_proxy(ssl=tls.server_context)
    assert proxy.url().startswith("https://")
    kwargs: dict[str, Any] = {"ssl": tls.client_context} if scheme == "wss" else {}
    async with client(
        ws_url(server, scheme=scheme), proxy=proxy.url(), proxy_ssl=tls.client_context, **kwargs
    ) as ws:
        await _echo_through(ws)
    assert len(proxy.tunnels) == 1


@pytest.mark.asyncio
async def test_https_proxy_certificate_is_verified(
    start_server: StartServer, start_proxy: StartProxy, tls: TLS
) -> None:
    server = await start_server(echo)
    proxy = await start_proxy(ssl=tls.server_context)
    with pytest.raises(wsline.ProxyError) as info:
        await client(ws_url(server), proxy=proxy.url())
    assert f"TLS certificate verification failed for proxy {HOST}:{proxy.port}" in str(info.value)
    assert not info.value.retriable


@pytest.mark.asyncio
async def test_https_proxy_that_does_not_speak_tls(start_server: StartServer, raw_server: Any) -> None:
    server = await start_server(echo)

    async def http_answer(peer: RawPeer) -> None:
        await peer.read_exactly(3)
        await peer.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    port = await raw_server(http_answer)
    url = f"https://{HOST}:{port}"
    with pytest.raises(wsline.ProxyError, match=f"TLS handshake with proxy {HOST}:{port} failed") as info:
        await client(ws_url(server), proxy=url)
    assert not info.value.retriable
    with pytest.raises(wsline.ProxyError, match="TLS handshake with proxy"):
        await asyncio.to_thread(_sync_echo, ws_url(server), proxy=url)


@pytest.mark.asyncio
async def test_proxy_credentials_are_sent_percent_decoded(
    start_server: StartServer, start_proxy: StartProxy
) -> None:
    server = await start_server(echo)
    proxy = await start_proxy(auth=("us@er", "p:ss wörd"))
    async with client(ws_url(server), proxy=proxy.url("us%40er:p%3Ass%20w%C3%B6rd")) as ws:
        await _echo_through(ws)
    sent = proxy.request.get("Proxy-Authorization")
    assert sent is not None and sent.startswith("Basic ")
    assert base64.b64decode(sent[6:]).decode() == "us@er:p:ss wörd"


@pytest.mark.asyncio
async def test_407_without_credentials(start_server: StartServer, start_proxy: StartProxy) -> None:
    server = await start_server(echo)
    proxy = await start_proxy(auth=("user", "secret"))
    with pytest.raises(wsline.ProxyError) as info:
        await client(ws_url(server), proxy=proxy.url())
    exc = info.value
    assert isinstance(exc, wsline.InvalidHandshake)
    assert exc.status == 407
    assert exc.proxy == f"{HOST}:{proxy.port}"
    assert not exc.retriable and not _retriable(exc)
    text = str(exc)
    assert "requires authentication: 407 proxy authentication required" in text
    assert 'Basic realm="tests"' in text
    assert "http://user:password@host:port" in text


@pytest.mark.asyncio
async def test_407_with_wrong_credentials_hides_the_password(
    start_server: StartServer, start_proxy: StartProxy
) -> None:
    server = await start_server(echo)
    proxy = await start_proxy(auth=("user", "secret"))
    with pytest.raises(wsline.ProxyError) as info:
        await client(ws_url(server), proxy=proxy.url("user:wrong-guess"))
    assert info.value.status == 407
    assert "refused the credentials of 'user'" in str(info.value)
    assert "wrong-guess" not in str(info.value)


ERROR_CASES = [
    (
        b"HTTP/1.1 403 Forbidden\r\n\r\n",
        403,
        False,
        "refused to open a tunnel to 127.0.0.1:{port}: 403 Forbidden",
    ),
    (b"HTTP/1.1 502 Bad Gateway\r\n\r\n", 502, True, "could not reach 127.0.0.1:{port}: 502 Bad Gateway"),
    (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
        503,
        True,
        "answered CONNECT 127.0.0.1:{port} with 503 Service Unavailable",
    ),
    (b"HTTP/1.0 405 Method Not Allowed\r\n\r\n", 405, False, "answered CONNECT 127.0.0.1:{port} with 405"),
    (b"SSH-2.0-OpenSSH_9.6\r\n", None, False, "sent a malformed response to CONNECT (is it an HTTP proxy?)"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", None, False, "sent a malformed response to CONNECT"),
    (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 20_000, None, False, "response head larger than 16 KiB"),
    (b"HTTP/1.1 200 OK\r\n\r\nsurprise", None, False, "sent data through the tunnel before the request"),
    ("close", None, True, "closed the connection before answering CONNECT to 127.0.0.1:{port}"),
    (b"HTTP/1.1 200 OK\r\n", None, True, "closed the connection after 17 bytes before answering CONNECT"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("answer", "status", "retriable", "message"), ERROR_CASES)
async def test_proxy_errors(
    start_server: StartServer,
    start_proxy: StartProxy,
    answer: bytes | str,
    status: int | None,
    retriable: bool,
    message: str,
) -> None:
    server = await start_server(echo)
    proxy = await start_proxy(answer=answer)
    with pytest.raises(wsline.ProxyError) as info:
        await client(ws_url(server), proxy=proxy.url())
    exc = info.value
    assert str(exc).startswith(f"proxy {HOST}:{proxy.port} ")
    assert message.format(port=server.port) in str(exc)
    assert exc.status == status
    assert exc.retriable is retriable
    assert _retriable(exc) is retriable


@pytest.mark.asyncio
async def test_proxy_that_never_answers_times_out(start_server: StartServer, start_proxy: StartProxy) -> None:
    server = await start_server(echo)
    proxy = await start_proxy(answer="silent")
    with pytest.raises(TimeoutError) as info:
        await client(ws_url(server), proxy=proxy.url(), open_timeout=0.3)
    assert f"via proxy http://{HOST}:{proxy.port} timed out after 0.3 s" in str(info.value)
    assert _retriable(info.value)


@pytest.mark.asyncio
async def test_unreachable_proxy() -> None:
    port = free_port()
    with pytest.raises(wsline.ProxyError) as info:
        await client(f"ws://{HOST}:9/", proxy=f"http://{HOST}:{port}")
    assert str(info.value).startswith(f"cannot reach proxy {HOST}:{port}: ")
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert info.value.retriable and info.value.status is None


@pytest.mark.asyncio
async def test_server_behind_the_proxy_refuses_the_upgrade(
    start_server: StartServer, start_proxy: StartProxy
) -> None:
    """Past the tunnel, the server's own answers are reported as without a proxy."""
    server = await start_server(echo, origins=["https://ok.example"])
    proxy = await start_proxy()
    with pytest.raises(wsline.InvalidStatus) as info:
        await client(ws_url(server), proxy=proxy.url(), origin="https://evil.example")
    assert not isinstance(info.value, wsline.ProxyError)
    assert info.value.status == 403


# ------------------------------------------------------------------ environment


@pytest.mark.asyncio
async def test_http_proxy_env_for_ws(
    start_server: StartServer, start_proxy: StartProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await start_server(echo)
    proxy = await start_proxy()
    monkeypatch.setenv("https_proxy", f"http://{HOST}:{free_port()}")  # for wss:// only
    monkeypatch.setenv("http_proxy", proxy.url())
    async with client(ws_url(server)) as ws:
        await _echo_through(ws)
    assert proxy.tunnels == [f"{HOST}:{server.port}"]


@pytest.mark.asyncio
async def test_https_proxy_env_for_wss(
    start_server: StartServer, start_proxy: StartProxy, tls: TLS, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await start_server(echo, ssl=tls.server_context)
    proxy = await start_proxy()
    monkeypatch.setenv("http_proxy", f"http://{HOST}:{free_port()}")  # for ws:// only
    monkeypatch.setenv("HTTPS_PROXY", proxy.url())
    async with client(ws_url(server, scheme="wss"), ssl=tls.client_context) as ws:
        await _echo_through(ws)
    assert len(proxy.tunnels) == 1


@pytest.mark.asyncio
async def test_lowercase_env_wins_and_all_proxy_is_the_fallback(
    start_server: StartServer, start_proxy: StartProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await start_server(echo)
    first, second = await start_proxy(), await start_proxy()
    monkeypatch.setenv("HTTP_PROXY", f"http://{HOST}:{free_port()}")
    monkeypatch.setenv("http_proxy", first.url())
    monkeypatch.setenv("all_proxy", second.url())
    async with client(ws_url(server)) as ws:
        await _echo_through(ws)
    monkeypatch.delenv("http_proxy")
    monkeypatch.delenv("HTTP_PROXY")
    async with client(ws_url(server)) as ws:
        await _echo_through(ws)
    assert (len(first.tunnels), len(second.tunnels)) == (1, 1)


@pytest.mark.asyncio
@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "127.0.0.0/8", "*", "example.com, 127.0.0.1:{port}"])
async def test_no_proxy_bypasses_the_proxy(
    start_server: StartServer, start_proxy: StartProxy, monkeypatch: pytest.MonkeyPatch, no_proxy: str
) -> None:
    server = await start_server(echo)
    proxy = await start_proxy()
    monkeypatch.setenv("http_proxy", proxy.url())
    monkeypatch.setenv("NO_PROXY", no_proxy.format(port=server.port))
    async with client(ws_url(server)) as ws:
        await _echo_through(ws)
    assert proxy.connections == 0


@pytest.mark.asyncio
async def test_no_proxy_with_another_port_does_not_bypass(
    start_server: StartServer, start_proxy: StartProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await start_server(echo)
    proxy = await start_proxy()
    monkeypatch.setenv("http_proxy", proxy.url())
    monkeypatch.setenv("no_proxy", f"127.0.0.1:{server.port + 1}")
    async with client(ws_url(server)) as ws:
        await _echo_through(ws)
    assert proxy.connections == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("setting", [None, False])
async def test_proxy_none_or_false_ignores_the_environment(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch, setting: bool | None
) -> None:
    server = await start_server(echo)
    monkeypatch.setenv("http_proxy", f"http://{HOST}:{free_port()}")  # would fail
    monkeypatch.setenv("all_proxy", f"http://{HOST}:{free_port()}")
    async with client(ws_url(server), proxy=setting) as ws:
        await _echo_through(ws)
    assert client(ws_url(server), proxy=setting).proxy is None


@pytest.mark.asyncio
async def test_an_explicit_proxy_ignores_no_proxy(
    start_server: StartServer, start_proxy: StartProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await start_server(echo)
    proxy = await start_proxy()
    monkeypatch.setenv("no_proxy", "*")
    async with client(ws_url(server), proxy=proxy.url()) as ws:
        await _echo_through(ws)
    assert proxy.connections == 1


def test_sock_disables_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")
    assert wsline.connect("ws://example.com/").proxy == parse_proxy("http://proxy.invalid:3128")
    with socket.socket() as sock:
        assert wsline.connect("ws://example.com/", sock=sock).proxy is None


def test_bad_proxy_url_fails_at_once() -> None:
    with pytest.raises(ValueError, match="unsupported proxy scheme 'ftp'"):
        wsline.connect("ws://example.com/", proxy="ftp://proxy:21")
    with pytest.raises(ValueError, match="unsupported proxy scheme"):
        wsline.sync.connect("ws://example.com/", proxy="gopher://proxy")


# ---------------------------------------------------------------- reconnection


@pytest.mark.asyncio
async def test_reconnecting_goes_through_the_proxy(
    start_server: StartServer, start_proxy: StartProxy
) -> None:
    served: list[int] = []

    async def greet(ws: wsline.WebSocket) -> None:
        served.append(1)
        await ws.send(f"hello {len(served)}")
        await ws.close()

    server = await start_server(greet)
    # The first two attempts meet a proxy that cannot reach the server.
    bad_gateway = b"HTTP/1.1 502 Bad Gateway\r\n\r\n"
    proxy = await start_proxy(answers=[bad_gateway, "close"])
    got: list[str] = []
    connector = client(ws_url(server), proxy=proxy.url(), backoff_initial=0.01, backoff_max=0.05)
    async with asyncio.timeout(10):
        async for ws in connector:
            with contextlib.suppress(wsline.ConnectionClosed):
                async for message in ws:
                    got.append(str(message))
            if len(got) == 3:
                break
    assert got == ["hello 1", "hello 2", "hello 3"]
    assert proxy.connections == 5
    assert proxy.tunnels == [f"{HOST}:{server.port}"] * 3


@pytest.mark.asyncio
async def test_reconnecting_raises_a_407_at_once(start_server: StartServer, start_proxy: StartProxy) -> None:
    server = await start_server(echo)
    proxy = await start_proxy(auth=("user", "secret"))
    with pytest.raises(wsline.ProxyError) as info:
        async with asyncio.timeout(5):
            async for _ws in client(ws_url(server), proxy=proxy.url(), backoff_initial=0.01):
                pytest.fail("connected without credentials")
    assert info.value.status == 407
    assert proxy.connections == 1


# ------------------------------------------------------------------------ SOCKS5


@pytest.mark.asyncio
async def test_ws_through_socks5h(start_server: StartServer, start_proxy: StartProxy) -> None:
    server = await start_server(echo)
    proxy = await start_proxy(socks=True)
    async with client(f"ws://localhost:{server.port}/", proxy=proxy.url()) as ws:
        await _echo_through(ws)
    assert proxy.tunnels == [f"localhost:{server.port}"]  # the proxy resolves the name


@pytest.mark.asyncio
async def test_wss_through_socks5_with_credentials(
    start_server: StartServer, start_proxy: StartProxy, tls: TLS
) -> None:
    server = await start_server(echo, ssl=tls.server_context)
    proxy = await start_proxy(socks=True, auth=("sock", "pw"))
    url = proxy.url("sock:pw").replace("socks5h://", "socks5://")
    async with client(f"wss://localhost:{server.port}/", ssl=tls.client_context, proxy=url) as ws:
        await _echo_through(ws)
    assert proxy.socks_credentials == [("sock", "pw")]
    host = proxy.tunnels[0].rpartition(":")[0]
    ipaddress.ip_address(host)  # socks5://: the client resolved the name


@pytest.mark.asyncio
async def test_socks5_errors(start_server: StartServer, start_proxy: StartProxy, raw_server: Any) -> None:
    server = await start_server(echo)
    needs_auth = await start_proxy(socks=True, auth=("sock", "pw"))
    with pytest.raises(wsline.ProxyError, match="requires authentication") as info:
        await client(ws_url(server), proxy=needs_auth.url())
    assert not info.value.retriable
    with pytest.raises(wsline.ProxyError, match="refused the credentials of 'sock'"):
        await client(ws_url(server), proxy=needs_auth.url("sock:nope"))
    refused = await start_proxy(socks=True, answer=b"\x05")
    with pytest.raises(wsline.ProxyError, match=r"connection refused \(SOCKS5 reply 5\)") as info:
        await client(ws_url(server), proxy=refused.url())
    assert info.value.retriable
    not_allowed = await start_proxy(socks=True, answer=b"\x02")
    with pytest.raises(wsline.ProxyError, match="not allowed by ruleset") as info:
        await client(ws_url(server), proxy=not_allowed.url())
    assert not info.value.retriable

    async def http_answer(peer: RawPeer) -> None:
        await peer.read_exactly(3)
        await peer.send(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    not_socks = await raw_server(http_answer)
    with pytest.raises(wsline.ProxyError, match=r"is not a SOCKS5 proxy \(it answered version 72\)"):
        await client(ws_url(server), proxy=f"socks5://{HOST}:{not_socks}")


# -------------------------------------------------------------- blocking client


def _sync_echo(uri: str, text: str = "blocking, proxied", **kwargs: Any) -> None:
    with wsline.sync.connect(uri, **{"open_timeout": 2, "close_timeout": 0.5, **kwargs}) as ws:
        ws.send(text)
        assert ws.recv(timeout=2) == text


@pytest.mark.asyncio
async def test_sync_client_through_proxies(
    start_server: StartServer, start_proxy: StartProxy, tls: TLS
) -> None:
    plain = await start_server(echo)
    secure = await start_server(echo, ssl=tls.server_context)
    proxy = await start_proxy(auth=("user", "pw"))
    url = proxy.url("user:pw")
    await asyncio.to_thread(_sync_echo, ws_url(plain), proxy=url)
    await asyncio.to_thread(_sync_echo, ws_url(secure, scheme="wss"), proxy=url, ssl=tls.client_context)
    assert proxy.tunnels == [f"{HOST}:{plain.port}", f"{HOST}:{secure.port}"]
    assert proxy.request.get("User-Agent") == f"wsline/{wsline.__version__}"
    https_proxy = await start_proxy(ssl=tls.server_context)
    await asyncio.to_thread(_sync_echo, ws_url(plain), proxy=https_proxy.url(), proxy_ssl=tls.client_context)
    socks = await start_proxy(socks=True)
    await asyncio.to_thread(_sync_echo, f"ws://localhost:{plain.port}/", proxy=socks.url())
    assert len(https_proxy.tunnels) == len(socks.tunnels) == 1
    with pytest.raises(ValueError, match="TLS inside TLS"):
        wsline.sync.connect(ws_url(secure, scheme="wss"), proxy=https_proxy.url())


@pytest.mark.asyncio
async def test_sync_client_proxy_errors(start_server: StartServer, start_proxy: StartProxy) -> None:
    server = await start_server(echo)
    proxy = await start_proxy(auth=("user", "pw"))
    with pytest.raises(wsline.ProxyError, match="requires authentication: 407") as info:
        await asyncio.to_thread(_sync_echo, ws_url(server), proxy=proxy.url())
    assert info.value.status == 407
    for answer, message in [
        (b"HTTP/1.1 502 Bad Gateway\r\n\r\n", "could not reach"),
        (b"garbage\r\n\r\n", "malformed response"),
        ("close", "closed the connection before answering CONNECT"),
    ]:
        bad = await start_proxy(answer=answer)
        with pytest.raises(wsline.ProxyError, match=message):
            await asyncio.to_thread(_sync_echo, ws_url(server), proxy=bad.url())
    silent = await start_proxy(answer="silent")
    with pytest.raises(TimeoutError, match="via proxy"):
        await asyncio.to_thread(_sync_echo, ws_url(server), proxy=silent.url(), open_timeout=0.3)
    with pytest.raises(wsline.ProxyError, match="cannot reach proxy"):
        await asyncio.to_thread(_sync_echo, ws_url(server), proxy=f"http://{HOST}:{free_port()}")


@pytest.mark.asyncio
async def test_sync_client_environment(
    start_server: StartServer, start_proxy: StartProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await start_server(echo)
    proxy = await start_proxy()
    monkeypatch.setenv("http_proxy", proxy.url())
    await asyncio.to_thread(_sync_echo, ws_url(server))
    await asyncio.to_thread(_sync_echo, ws_url(server), proxy=None)
    monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")
    await asyncio.to_thread(_sync_echo, ws_url(server))
    assert proxy.connections == 1


# ------------------------------------------------------------- proxy.py package


@pytest.mark.asyncio
async def test_through_the_proxy_py_package(start_server: StartServer, tls: TLS) -> None:
    proxy_py = pytest.importorskip("proxy")
    server = await start_server(echo)
    secure = await start_server(echo, ssl=tls.server_context)
    port = free_port()
    args = ["--hostname", HOST, "--port", str(port), "--num-workers", "1", "--num-acceptors", "1"]
    args += ["--basic-auth", "user:pw", "--log-level", "WARNING"]
    with proxy_py.Proxy(args):
        async with client(ws_url(server), proxy=f"http://user:pw@{HOST}:{port}") as ws:
            await _echo_through(ws)
        url = ws_url(secure, scheme="wss")
        async with client(url, ssl=tls.client_context, proxy=f"http://user:pw@{HOST}:{port}") as ws:
            await _echo_through(ws)
        with pytest.raises(wsline.ProxyError) as info:
            await client(ws_url(server), proxy=f"http://{HOST}:{port}")
        assert info.value.status == 407


# -------------------------------------------------------------- sans-I/O parts


def test_parse_proxy() -> None:
    assert parse_proxy("http://proxy.example:3128") == Proxy("http", "proxy.example", 3128)
    assert parse_proxy("proxy.example:8080") == Proxy("http", "proxy.example", 8080)
    assert parse_proxy("http://proxy.example").port == 80
    assert parse_proxy("https://proxy.example/").port == 443
    assert parse_proxy("socks5h://[::1]").port == 1080
    assert parse_proxy("HTTP://Proxy.Example:1").host == "proxy.example"
    auth = parse_proxy("http://a%20b:c%3Ad@proxy:1")
    assert (auth.username, auth.password) == ("a b", "c:d")
    assert parse_proxy("http://only@proxy:1").password == ""
    assert str(auth) == "http://a b:***@proxy:1"
    assert "c:d" not in repr(auth)
    assert parse_proxy("http://[::1]:3128").address == "[::1]:3128"
    for bad, why in [
        ("ftp://proxy", "unsupported proxy scheme"),
        ("http://", "no host"),
        ("http://proxy:99999", "invalid proxy URL"),
        ("http://proxy:1/path", "no path"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_proxy(bad)
    with pytest.raises(ValueError) as info:
        parse_proxy("ftp://user:secret@proxy")
    assert "secret" not in str(info.value)


def test_proxy_from_environment() -> None:
    env = {"http_proxy": "h", "HTTP_PROXY": "H", "https_proxy": "", "HTTPS_PROXY": "S", "ALL_PROXY": "A"}
    assert proxy_from_environment(False, env) == "h"
    assert proxy_from_environment(True, env) == "S"  # an empty value counts as unset
    assert proxy_from_environment(False, {"HTTP_PROXY": "H"}) == "H"
    assert proxy_from_environment(False, {"ALL_PROXY": "A", "all_proxy": "a"}) == "a"
    assert proxy_from_environment(True, {"http_proxy": "h"}) is None
    # CGI: HTTP_PROXY may come from a request header; ignored as urllib does.
    assert proxy_from_environment(False, {"HTTP_PROXY": "H", "REQUEST_METHOD": "GET"}) is None
    assert proxy_from_environment(False, {}) is None


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "bypass"),
    [
        ("example.com", 80, "example.com", True),
        ("api.example.com", 80, "example.com", True),
        ("api.example.com", 80, ".example.com", True),
        ("api.example.com", 80, "*.example.com", True),
        ("example.com", 80, ".example.com", True),
        ("notexample.com", 80, "example.com", False),
        ("example.com.", 80, "EXAMPLE.COM", True),
        ("example.org", 80, "example.com, other.net", False),
        ("other.net", 443, "example.com other.net", True),
        ("anything", 1, "*", True),
        ("example.com", 8080, "example.com:8080", True),
        ("example.com", 80, "example.com:8080", False),
        ("10.1.2.3", 80, "10.0.0.0/8", True),
        ("11.1.2.3", 80, "10.0.0.0/8", False),
        ("192.168.1.5", 80, "192.168.1.5", True),
        ("::1", 80, "::1", True),
        ("::1", 443, "[::1]:443", True),
        ("::1", 80, "[::1]:443", False),
        ("[2001:db8::7]", 80, "2001:db8::/32", True),
        ("example.com", 80, "10.0.0.0/8, bad/cidr", False),
        ("example.com", 80, "", False),
    ],
)
def test_bypass_proxy(host: str, port: int, no_proxy: str, bypass: bool) -> None:
    assert bypass_proxy(host, port, no_proxy) is bypass


def test_select_proxy() -> None:
    env = {"https_proxy": "http://p:1", "no_proxy": "internal"}
    assert select_proxy(True, "example.com", 443, True, env) == Proxy("http", "p", 1)
    assert select_proxy(True, "api.internal", 443, True, env) is None
    assert select_proxy(True, "example.com", 80, False, env) is None
    assert select_proxy(None, "example.com", 443, True, env) is None
    assert select_proxy(False, "example.com", 443, True, env) is None
    assert select_proxy("socks5://s", "api.internal", 443, True, env) == Proxy("socks5", "s", 1080)
    with pytest.raises(TypeError):
        select_proxy(1, "example.com", 443, True, env)  # type: ignore[arg-type]


def test_tunnel_handshake_http() -> None:
    handshake = TunnelHandshake(parse_proxy("http://u:p@proxy:1"), "::1", 443, "agent/1")
    assert handshake.data_to_send() == (
        b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n"
        b"Proxy-Authorization: Basic dTpw\r\nUser-Agent: agent/1\r\n\r\n"
    )
    assert handshake.data_to_send() == b""
    # The answer may come in pieces; extra headers are fine.
    assert not handshake.receive_data(b"HTTP/1.1 200 Connection established\r\n")
    assert not handshake.receive_data(b"Via: 1.1 proxy\r\n\r")
    assert handshake.receive_data(b"\n")
    assert handshake.status == 200 and handshake.headers.get("Via") == "1.1 proxy"
    assert handshake.extra == b""
    handshake.receive_eof()  # nothing to report once open
    with pytest.raises(ValueError, match="CR or LF"):
        TunnelHandshake(parse_proxy("http://proxy:1"), "example.com", 443, "evil\r\nX: 1")


def test_tunnel_handshake_socks5_in_pieces() -> None:
    handshake = TunnelHandshake(parse_proxy("socks5h://u:pw@proxy"), "example.com", 443)
    assert handshake.data_to_send() == b"\x05\x02\x00\x02"
    assert not handshake.receive_data(b"\x05")
    assert not handshake.receive_data(b"\x02")
    assert handshake.data_to_send() == b"\x01\x01u\x02pw"
    assert not handshake.receive_data(b"\x01\x00")
    assert handshake.data_to_send() == b"\x05\x01\x00\x03\x0bexample.com\x01\xbb"
    reply = b"\x05\x00\x00\x04" + bytes(16) + b"\x00\x00"
    assert not handshake.receive_data(reply[:10])
    assert handshake.receive_data(reply[10:] + b"early")
    assert handshake.extra == b"early"
    with pytest.raises(ValueError, match="needs an IP address"):
        TunnelHandshake(parse_proxy("socks5://proxy"), "example.com", 443)
    ip = TunnelHandshake(parse_proxy("socks5://proxy"), "10.0.0.1", 80)
    assert ip.data_to_send() == b"\x05\x01\x00"
    ip.receive_data(b"\x05\x00")
    assert ip.data_to_send() == b"\x05\x01\x00\x01\x0a\x00\x00\x01\x00\x50"


def test_retriable_proxy_errors() -> None:
    assert _retriable(wsline.ProxyError("x", status=502, retriable=True))
    assert not _retriable(wsline.ProxyError("x", status=407))
    assert issubclass(wsline.ProxyError, wsline.InvalidHandshake)


def test_through_proxies_on_uvloop(tls: TLS) -> None:
    """uvloop's transports: set_protocol after CONNECT, start_tls (TLS inside TLS too)."""
    uvloop = pytest.importorskip("uvloop")

    async def main() -> list[str]:
        got = []
        server = await wsline.serve(echo, HOST, 0, ssl=tls.server_context)
        plain = await wsline.serve(echo, HOST, 0)
        state = FakeProxy(0)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
                await _http_session(state, reader, writer, None, None)
            writer.close()

        proxy = await asyncio.start_server(handle, HOST, 0)
        tls_proxy = await asyncio.start_server(handle, HOST, 0, ssl=tls.server_context)
        proxy_port = proxy.sockets[0].getsockname()[1]
        tls_proxy_port = tls_proxy.sockets[0].getsockname()[1]
        try:
            for uri, proxy_url in [
                (ws_url(plain), f"http://{HOST}:{proxy_port}"),
                (ws_url(server, scheme="wss"), f"http://{HOST}:{proxy_port}"),
                (ws_url(server, scheme="wss"), f"https://{HOST}:{tls_proxy_port}"),
            ]:
                kwargs = {"ssl": tls.client_context} if uri.startswith("wss") else {}
                async with client(uri, proxy=proxy_url, proxy_ssl=tls.client_context, **kwargs) as ws:
                    await ws.send(uri)
                    got.append(str(await ws.recv()))
        finally:
            for closing in (proxy, tls_proxy):
                closing.close()
            await server.close()
            await plain.close()
        assert len(state.tunnels) == 3
        return got

    uris = uvloop.run(main())
    assert [uri.split(":")[0] for uri in uris] == ["ws", "wss", "wss"]
