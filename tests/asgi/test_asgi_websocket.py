"""``wsline.asgi.scope`` and ``wsline.asgi.websocket.ASGIWebSocket`` on their own.

The session runs here under the smallest host there can be (a
:class:`~wsline.aio.connection.ProtocolBase` that reads the request with
``RequestParser`` and forwards what the session's documentation asks), which
is how wsline's ASGI server and the uvicorn protocol use it; raw clients send
bytes no well-behaved client sends (frames in the same write as the request,
frames before the 101).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from conftest import HOST, MASK, OpenRaw, eventually
from wsline.aio.connection import ProtocolBase
from wsline.asgi import scope as asgi_scope
from wsline.asgi.websocket import ASGIWebSocket, WslineExtension
from wsline.protocol import frames
from wsline.protocol.http11 import EndOfMessage, Limits, Request, RequestParser, parse_request
from wsline.protocol.server import ServerHandshake, ServerOptions

REQUEST = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def request(head: bytes) -> Request:
    return parse_request(head)


# ------------------------------------------------------------------ scope helpers


def test_addresses() -> None:
    assert asgi_scope.client_address(("10.0.0.1", 5000)) == ("10.0.0.1", 5000)
    assert asgi_scope.client_address(("::1", 5000, 0, 0)) == ("::1", 5000)
    assert asgi_scope.client_address("") is None  # a Unix socket's peer
    assert asgi_scope.client_address(None) is None
    assert asgi_scope.server_address(("::", 80, 0, 0)) == ("::", 80)
    assert asgi_scope.server_address("/run/app.sock") == ("/run/app.sock", None)
    assert asgi_scope.server_address(b"\x00abstract") == ("\x00abstract", None)
    assert asgi_scope.server_address("") is None
    assert asgi_scope.server_address(None) is None


def test_schemes_and_versions() -> None:
    assert asgi_scope.scheme_for("websocket", False) == "ws"
    assert asgi_scope.scheme_for("websocket", True) == "wss"
    assert asgi_scope.scheme_for("http", False) == "http"
    assert asgi_scope.scheme_for("http", True) == "https"
    with pytest.raises(ValueError):
        asgi_scope.scheme_for("lifespan", False)  # type: ignore[arg-type]
    assert asgi_scope.http_version(request(b"GET / HTTP/1.0\r\n\r\n")) == "1.0"


def test_paths_and_root_path() -> None:
    req = request(b"GET /a%2Fb/%E2%82%AC%zz?q=%20&x HTTP/1.1\r\nHost: h\r\n\r\n")
    scope = asgi_scope.http_scope(req, scheme="http", client=None, server=None)
    assert scope["path"] == "/a/b/€%zz"  # decoded; a bad escape stays as it is
    assert scope["raw_path"] == b"/a%2Fb/%E2%82%AC%zz"
    assert scope["query_string"] == b"q=%20&x"
    assert scope["method"] == "GET" and scope["type"] == "http"
    mounted = asgi_scope.http_scope(req, scheme="http", client=None, server=None, root_path="/my app")
    assert mounted["root_path"] == "/my app"
    assert mounted["path"] == "/my app/a/b/€%zz"
    assert mounted["raw_path"] == b"/my%20app/a%2Fb/%E2%82%AC%zz"
    absolute = request(b"GET http://example.com:8080/p?y=1 HTTP/1.1\r\nHost: other\r\n\r\n")
    scope = asgi_scope.http_scope(absolute, scheme="http", client=None, server=None)
    assert (scope["path"], scope["query_string"]) == ("/p", b"y=1")
    assert dict(scope["headers"])[b"host"] == b"example.com:8080"
    star = request(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")
    assert asgi_scope.http_scope(star, scheme="http", client=None, server=None)["path"] == "*"


def test_headers_state_and_extensions() -> None:
    req = request(b"GET / HTTP/1.1\r\nHost: h\r\nX-Latin: caf\xe9\r\nX-Twice: 1\r\nx-twice: 2\r\n\r\n")
    state = {"db": object()}
    extensions = {"websocket.http.response": {}}
    kwargs: dict[str, Any] = {"scheme": "ws", "client": None, "server": None}
    one = asgi_scope.websocket_scope(req, state=state, extensions=extensions, **kwargs)
    two = asgi_scope.websocket_scope(req, state=state, extensions=extensions, **kwargs)
    assert one["headers"] == [
        (b"host", b"h"),
        (b"x-latin", b"caf\xe9"),
        (b"x-twice", b"1"),
        (b"x-twice", b"2"),
    ]
    assert one["state"] == state and one["state"] is not state and one["state"]["db"] is state["db"]
    one["state"]["mine"] = 1
    assert "mine" not in two["state"] and "mine" not in state
    one["extensions"]["added"] = {}
    assert "added" not in two["extensions"] and "added" not in extensions
    assert one["subprotocols"] == []
    no_state = asgi_scope.websocket_scope(req, scheme="ws", client=None, server=None)
    assert "state" not in no_state and no_state["extensions"] == {}
    assert no_state["asgi"] == {"version": "3.0", "spec_version": "2.4"}


def test_offered_subprotocols_never_raise() -> None:
    good = request(
        b"GET / HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Protocol: a, b\r\nSec-WebSocket-Protocol: c\r\n\r\n"
    )
    assert asgi_scope.offered_subprotocols(good) == ["a", "b", "c"]
    bad = request(b"GET / HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Protocol: a, b c\r\n\r\n")
    assert asgi_scope.offered_subprotocols(bad) == ["a", "b c"]


# ------------------------------------------------------------------ a minimal host

App = Callable[..., Any]


class Host(ProtocolBase):
    """What a host does: parse the request, start the session, forward three calls."""

    def __init__(self, app: App, handshake: ServerHandshake, sessions: list[ASGIWebSocket]) -> None:
        self.app = app
        self.handshake = handshake
        self.sessions = sessions
        self.parser = RequestParser(Limits())
        self.request: Request | None = None
        self.session: ASGIWebSocket | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def handshake_data(self, data: memoryview) -> None:
        if self.session is not None:
            self.session.data_received(data)
            return
        self.parser.feed(data)
        if self.request is None:
            event = self.parser.next_event()
            if not isinstance(event, Request):
                return
            self.request = event
        if not isinstance(self.parser.next_event(), EndOfMessage):
            return
        scope = asgi_scope.websocket_scope(
            self.request,
            scheme="ws",
            client=asgi_scope.client_address(self.transport.get_extra_info("peername")),  # type: ignore[union-attr]
            server=None,
            extensions={"websocket.http.response": {}},
        )
        self.session = ASGIWebSocket(
            self.app,
            scope,
            self.request,
            self,
            self.handshake,
            trailing_data=self.parser.trailing_data(),
            default_headers=[(b"server", b"host/1")],
        )
        self.sessions.append(self.session)
        asyncio.get_running_loop().create_task(self.session.run())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is not None:
            self.session.connection_lost(exc)
        super().connection_lost(exc)


@pytest_asyncio.fixture
async def host() -> AsyncIterator[Callable[..., Any]]:
    servers: list[asyncio.Server] = []

    async def start(app: App, **options: Any) -> tuple[int, list[ASGIWebSocket]]:
        handshake = ServerHandshake(ServerOptions(ping_interval=None, close_timeout=1, **options))
        sessions: list[ASGIWebSocket] = []
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Host(app, handshake, sessions), HOST, 0)
        servers.append(server)
        return server.sockets[0].getsockname()[1], sessions

    yield start
    for server in servers:
        server.close()


def text_frame(text: str) -> bytes:
    return frames.build_frame(1, text.encode(), fin=True, mask=MASK)


def echo_app(delay: float = 0.0) -> App:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await asyncio.sleep(delay)
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})

    return app


async def test_frames_in_the_request_write_are_kept(host: Any, raw_client: OpenRaw) -> None:
    port, _sessions = await host(echo_app())
    peer = await raw_client(port)
    await peer.send(REQUEST + text_frame("one") + text_frame("two"))
    response = await peer.read_response()
    assert response.status == 101 and response.get("server") == "host/1"
    assert (await peer.read_frame()).payload == b"one"
    assert (await peer.read_frame()).payload == b"two"


async def test_frames_before_the_accept_wait_for_it(host: Any, raw_client: OpenRaw) -> None:
    port, sessions = await host(echo_app(delay=0.2))
    peer = await raw_client(port)
    await peer.send(REQUEST)
    await eventually(lambda: sessions)
    for i in range(50):
        await peer.send(text_frame(f"early {i}"))
    assert (await peer.read_response()).status == 101
    for i in range(50):
        assert (await peer.read_frame()).payload == f"early {i}".encode()


async def test_early_data_limit_pauses_reading(host: Any, raw_client: OpenRaw) -> None:
    gate = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await gate.wait()
        await send({"type": "websocket.accept"})
        count = 0
        while (await receive())["type"] == "websocket.receive":
            count += 1
            if count == 40:
                await send({"type": "websocket.send", "text": "all 40"})

    port, sessions = await host(app, max_queue=None)
    peer = await raw_client(port)
    await peer.send(REQUEST)
    await eventually(lambda: sessions)
    big = frames.build_frame(2, b"x" * 4000, fin=True, mask=MASK)
    peer.writer.write(big * 40)  # 160 KB before the 101: reading pauses past 64 KiB
    await asyncio.sleep(0.2)
    gate.set()
    assert (await peer.read_response()).status == 101
    assert (await peer.read_frame()).payload == b"all 40"


async def test_shutdown_before_and_after_accept(host: Any, raw_client: OpenRaw) -> None:
    seen: list[Any] = []
    accept = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await accept.wait()
        try:
            await send({"type": "websocket.accept"})
        except OSError as exc:
            seen.append(type(exc).__name__)
            return
        seen.append(await receive())

    port, sessions = await host(app)
    early = await raw_client(port)
    await early.send(REQUEST)
    await eventually(lambda: len(sessions) == 1)
    sessions[0].shutdown()
    response = await early.read_response()
    assert response.status == 503 and response.get("Retry-After") == "1"
    late = await raw_client(port)
    await late.send(REQUEST)
    await eventually(lambda: len(sessions) == 2)
    accept.set()
    assert (await late.read_response()).status == 101
    await eventually(lambda: sessions[1].websocket is not None)
    sessions[1].shutdown()
    assert await late.read_close() == (1012, "service restart")
    await late.send_close(1012)
    await eventually(lambda: len(seen) == 2)
    assert seen[0] == "ClientDisconnected"  # it was told 503 before it accepted
    assert seen[1] == {"type": "websocket.disconnect", "code": 1012, "reason": ""}


async def test_no_denial_extension_no_denial(host: Any, raw_client: OpenRaw) -> None:
    errors: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        del scope["extensions"]["websocket.http.response"]
        await receive()
        try:
            await send({"type": "websocket.http.response.start", "status": 401})
        except RuntimeError as exc:
            errors.append(str(exc))
        await send({"type": "websocket.close"})

    port, _sessions = await host(app)
    peer = await raw_client(port)
    await peer.send(REQUEST)
    assert (await peer.read_response()).status == 403
    assert "did not offer" in errors[0]


def test_extension_is_a_mapping() -> None:
    handshake = ServerHandshake(ServerOptions())

    class FakeProtocol(ProtocolBase):
        transport = object()  # type: ignore[assignment]

    scope: dict[str, Any] = {"extensions": {}}
    session = ASGIWebSocket(echo_app(), scope, request(REQUEST), FakeProtocol(), handshake)
    ext = scope["extensions"]["wsline"]
    assert isinstance(ext, WslineExtension)
    assert list(ext) == list(WslineExtension._KEYS) and len(ext) == len(WslineExtension._KEYS)
    assert ext["websocket"]() is None and ext.websocket() is None
    assert ext["latency"]() is None and ext["backlog"]() == 0
    assert ext["hub"] is ext.hub
    with pytest.raises(KeyError):
        ext["recv"]
    assert "wsline" in repr(ext) and "connecting" in repr(session)
    with pytest.raises(ValueError):
        ASGIWebSocket(echo_app(), {}, request(REQUEST), ProtocolBase(), handshake)
