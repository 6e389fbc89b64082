"""uvicorn with ``--ws wsline.asgi.uvicorn:WebSocketProtocol``: real uvicorn, Starlette, FastAPI.

uvicorn runs in this test's event loop (``uvicorn.Server(Config(...)).serve()``
on port 0) for most tests, with both of its HTTP protocols (``h11`` and
``httptools``); the clients are wsline's and the websockets library's, and raw
sockets where a test needs to see frames. The command line (``--workers``,
``--ws-max-size``, signals) runs as a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import websockets
from fastapi import FastAPI
from fastapi import WebSocket as FastAPIWebSocket
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect as websockets_connect

import wsline
from conftest import HOST, OpenRaw, eventually, free_port
from wsline.asgi.uvicorn import WebSocketProtocol, server_options
from wsline.asgi.websocket import ClientDisconnected

HTTP = ["h11", "httptools"]
WS = "wsline.asgi.uvicorn:WebSocketProtocol"
REPO = Path(__file__).resolve().parents[2]

Scope = dict[str, Any]


@dataclass
class Served:
    server: uvicorn.Server
    port: int

    def url(self, path: str = "/ws") -> str:
        return f"ws://{HOST}:{self.port}{path}"


@contextlib.asynccontextmanager
async def serving(app: Any, http: str = "h11", **options: Any) -> AsyncIterator[Served]:
    """uvicorn on 127.0.0.1, a free port, in this loop, with wsline's WebSocket protocol."""
    options.setdefault("lifespan", "off")
    options.setdefault("host", HOST)
    config = uvicorn.Config(app, port=0, ws=WebSocketProtocol, http=http, log_config=None, **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started or task.done(), timeout=10, what="uvicorn started")
    if task.done():
        task.result()
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Served(server, port)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


def client(url: str, **kwargs: Any) -> wsline.connect:
    kwargs.setdefault("ping_interval", None)
    kwargs.setdefault("close_timeout", 2)
    return wsline.connect(url, **kwargs)


def starlette(endpoint: Any, path: str = "/ws", **kwargs: Any) -> Starlette:
    return Starlette(routes=[WebSocketRoute(path, endpoint)], **kwargs)


async def starlette_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        await websocket.send(
            {"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")}
        )


class Peer:
    """wsline's client or the websockets library's, behind one small interface."""

    def __init__(self, kind: str, ws: Any) -> None:
        self.kind = kind
        self.ws = ws

    async def send(self, message: str | bytes) -> None:
        await self.ws.send(message)

    async def recv(self) -> str | bytes:
        return await asyncio.wait_for(self.ws.recv(), 5)  # type: ignore[no-any-return]

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code, reason)

    async def closed(self) -> tuple[int | None, str | None]:
        """Wait for the server's close; (code, reason) it sent."""
        with contextlib.suppress(wsline.ConnectionClosed, websockets.ConnectionClosed):
            while True:
                await self.recv()
        if self.kind == "wsline":
            return self.ws.close_code, self.ws.close_reason
        return self.ws.close_code, self.ws.close_reason

    @property
    def subprotocol(self) -> str | None:
        return self.ws.subprotocol  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def peer(kind: str, url: str, **kwargs: Any) -> AsyncIterator[Peer]:
    if kind == "wsline":
        async with client(url, **kwargs) as ws:
            yield Peer(kind, ws)
    else:
        async with websockets_connect(url, ping_interval=None, close_timeout=2, **kwargs) as ws:
            yield Peer(kind, ws)


# ------------------------------------------------------------------ the scope


@pytest.mark.parametrize("http", HTTP)
async def test_scope_fields(http: str) -> None:
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            scope["state"]["shared"] = "lifespan"
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        scopes.append(scope)
        assert await receive() == {"type": "websocket.connect"}
        scope["state"]["mine"] = len(scopes)  # the copy is this connection's own
        await send({"type": "websocket.accept"})
        message = await receive()
        assert message["type"] == "websocket.disconnect"

    async with serving(app, http, lifespan="on") as served:
        url = served.url("/caf%C3%A9/a%20b?x=1&y=%20z")
        async with client(url, subprotocols=["one", "two"], headers={"X-Custom": "Yes"}) as ws:
            local = ws.local_address
        async with client(served.url("/plain")):
            pass
        await eventually(lambda: len(scopes) == 2)
    scope = scopes[0]
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/café/a b"
    assert scope["raw_path"] == b"/caf%C3%A9/a%20b"
    assert scope["query_string"] == b"x=1&y=%20z"
    assert scope["root_path"] == ""
    assert scope["client"] == (local[0], local[1])
    assert scope["server"] == (HOST, served.port)
    assert scope["subprotocols"] == ["one", "two"]
    headers = dict(scope["headers"])
    assert all(name == name.lower() and isinstance(name, bytes) for name, _ in scope["headers"])
    assert headers[b"x-custom"] == b"Yes"
    assert headers[b"host"] == f"{HOST}:{served.port}".encode()
    assert headers[b"sec-websocket-protocol"] == b"one, two"
    assert scope["state"] == {"shared": "lifespan", "mine": 1}
    assert scopes[1]["state"] == {"shared": "lifespan", "mine": 2}
    assert scopes[1]["query_string"] == b"" and scopes[1]["path"] == "/plain"
    assert "websocket.http.response" in scope["extensions"]
    ext = scope["extensions"]["wsline"]
    assert ext["version"] == wsline.__version__
    assert set(ext) >= {"websocket", "latency", "ping", "publish", "join", "broadcast"}


async def test_scope_ipv6() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")  # pragma: no cover
    scopes: list[Scope] = []

    async def endpoint(websocket: WebSocket) -> None:
        scopes.append(websocket.scope)
        await websocket.accept()
        await websocket.close()

    try:
        cm = serving(starlette(endpoint), host="::1")
        served = await cm.__aenter__()
    except OSError:  # pragma: no cover - a machine without ::1
        pytest.skip("cannot listen on ::1")
    try:
        async with client(f"ws://[::1]:{served.port}/ws") as ws:
            with contextlib.suppress(wsline.ConnectionClosed):
                await ws.recv()
            local = ws.local_address
    finally:
        await cm.__aexit__(None, None, None)
    assert scopes[0]["client"] == ("::1", local[1])
    assert scopes[0]["server"] == ("::1", served.port)


@pytest.mark.parametrize("http", HTTP)
async def test_root_path(http: str) -> None:
    scopes: list[Scope] = []

    async def endpoint(websocket: WebSocket) -> None:
        scopes.append(dict(websocket.scope))
        await websocket.accept()
        await websocket.send_text(websocket.url.path)
        await websocket.close()

    async with serving(starlette(endpoint), http, root_path="/api") as served:
        async with client(served.url("/ws")) as ws:  # a proxy stripped /api
            assert await ws.recv() == "/api/ws"
    assert scopes[0]["root_path"] == "/api"
    assert scopes[0]["path"] == "/api/ws"
    assert scopes[0]["raw_path"] == b"/api/ws"


@pytest.mark.parametrize("http", HTTP)
async def test_proxy_headers(http: str) -> None:
    scopes: list[Scope] = []

    async def endpoint(websocket: WebSocket) -> None:
        scopes.append(websocket.scope)
        await websocket.accept()
        await websocket.close()

    headers = {"X-Forwarded-For": "203.0.113.7, 127.0.0.1", "X-Forwarded-Proto": "https"}
    async with serving(
        starlette(endpoint), http, proxy_headers=True, forwarded_allow_ips="127.0.0.1"
    ) as served:
        async with client(served.url(), headers=headers) as ws:
            with contextlib.suppress(wsline.ConnectionClosed):
                await ws.recv()
        async with client(served.url()) as ws:  # no headers: the socket's address
            with contextlib.suppress(wsline.ConnectionClosed):
                await ws.recv()
            local = ws.local_address
    async with serving(starlette(endpoint), http, proxy_headers=False) as served:
        async with client(served.url(), headers=headers) as ws:
            with contextlib.suppress(wsline.ConnectionClosed):
                await ws.recv()
    assert scopes[0]["client"][0] == "203.0.113.7"
    assert scopes[0]["scheme"] == "wss"
    assert scopes[1]["client"] == (local[0], local[1]) and scopes[1]["scheme"] == "ws"
    assert scopes[2]["client"][0] == HOST and scopes[2]["scheme"] == "ws"  # not trusted when off


# ------------------------------------------------------------------ the opening handshake


@pytest.mark.parametrize("http", HTTP)
async def test_accept_with_subprotocol_and_headers(http: str) -> None:
    async def endpoint(websocket: WebSocket) -> None:
        offered = websocket.scope["subprotocols"]
        await websocket.accept(
            subprotocol=offered[-1], headers=[(b"x-session", b"abc"), (b"server", b"mine")]
        )
        await websocket.send_text(websocket.scope["extensions"]["wsline"]["websocket"]().subprotocol)
        await websocket.close()

    async with serving(starlette(endpoint), http) as served:
        async with client(served.url(), subprotocols=["first", "second"]) as ws:
            assert ws.subprotocol == "second"
            assert await ws.recv() == "second"
            headers = ws.response.headers
            assert headers.get("x-session") == "abc"
            assert headers.get_all("Server") == ["mine"]  # the application's replaces uvicorn's
            assert headers.get("date")
        async with websockets_connect(served.url(), subprotocols=["first", "second"]) as ws2:
            assert ws2.subprotocol == "second"


@pytest.mark.parametrize("http", HTTP)
async def test_default_headers_in_the_101(http: str) -> None:
    async with serving(starlette(starlette_echo), http, headers=[("X-Deployment", "blue")]) as served:
        async with client(served.url()) as ws:
            assert ws.response.headers.get("server") == "uvicorn"
            assert ws.response.headers.get("x-deployment") == "blue"
            assert ws.response.headers.get("date")
            assert ws.subprotocol is None


async def test_subprotocol_not_offered_is_500(caplog: pytest.LogCaptureFixture) -> None:
    errors: list[BaseException] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        try:
            await send({"type": "websocket.accept", "subprotocol": "other"})
        except RuntimeError as exc:
            errors.append(exc)

    async with serving(app) as served:
        with pytest.raises(wsline.InvalidStatus) as info:
            async with client(served.url(), subprotocols=["mine"]):
                pass
    assert info.value.status == 500
    assert "'websocket.accept'" in str(errors[0]) and "other" in str(errors[0])


@pytest.mark.parametrize("http", HTTP)
async def test_invalid_handshake_answered_by_wsline(http: str, raw_client: OpenRaw) -> None:
    ran: list[Scope] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:  # pragma: no cover - must not run
        ran.append(scope)

    async with serving(app, http) as served:
        peer = await raw_client(served.port)
        await peer.send(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"
        )
        response = await peer.read_response()
        assert response.status == 426
        assert response.get("Sec-WebSocket-Version") == "13"
        assert response.get("server") == "uvicorn"
        await peer.read_eof()
        peer2 = await raw_client(served.port)
        await peer2.send(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert (await peer2.read_response()).status == 400
    assert ran == []


# ------------------------------------------------------------------ messages


@pytest.mark.parametrize("kind", ["wsline", "websockets"])
@pytest.mark.parametrize("http", HTTP)
async def test_text_and_bytes_both_ways(http: str, kind: str) -> None:
    async with serving(starlette(starlette_echo), http) as served:
        async with peer(kind, served.url()) as ws:
            for message in ["hello", "", "é" * 5000, b"\x00\x01", b"", os.urandom(200_000)]:
                await ws.send(message)
                echoed = await ws.recv()
                assert type(echoed) is type(message) and echoed == message


@pytest.mark.parametrize("kind", ["wsline", "websockets"])
@pytest.mark.parametrize("http", HTTP)
async def test_server_closes_with_code_and_reason(http: str, kind: str) -> None:
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.close(code=4000 + len(text), reason=f"bye {text}")

    async with serving(starlette(endpoint), http) as served:
        async with peer(kind, served.url()) as ws:
            await ws.send("abc")
            assert await ws.closed() == (4003, "bye abc")


@pytest.mark.parametrize("kind", ["wsline", "websockets"])
@pytest.mark.parametrize("http", HTTP)
async def test_client_closes_disconnect_code_and_reason(http: str, kind: str) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        seen.append(await receive())
        seen.append(await receive())  # again: the same disconnect, no hang
        with pytest.raises(OSError):
            await send({"type": "websocket.send", "text": "too late"})

    async with serving(app, http) as served:
        async with peer(kind, served.url()) as ws:
            await ws.close(4321, "ciao")
        await eventually(lambda: len(seen) == 2)
    assert seen[0] == {"type": "websocket.disconnect", "code": 4321, "reason": "ciao"}
    assert seen[1] == seen[0]


async def test_disconnect_without_code_and_abnormal(raw_client: OpenRaw) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        seen.append(await receive())

    async with serving(app) as served:
        peer1 = await raw_client(served.port)
        await peer1.handshake("/ws")
        await peer1.send_frame(8, b"")  # a close frame without a code
        assert await peer1.read_close() == (1005, "")
        peer2 = await raw_client(served.port)
        await peer2.handshake("/ws")
        peer2.abort()  # no close frame at all
        await eventually(lambda: len(seen) == 2)
    assert {"type": "websocket.disconnect", "code": 1005, "reason": ""} in seen
    assert {"type": "websocket.disconnect", "code": 1006, "reason": ""} in seen


@pytest.mark.parametrize("http", HTTP)
async def test_app_returns_after_accept_closes_1000(http: str) -> None:
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("done")

    async with serving(starlette(endpoint), http) as served:
        async with peer("websockets", served.url()) as ws:
            assert await ws.recv() == "done"
            assert await ws.closed() == (1000, "")


# ------------------------------------------------------------------ failures and refusals


@pytest.mark.parametrize("http", HTTP)
async def test_exception_before_accept_is_500(http: str, caplog: pytest.LogCaptureFixture) -> None:
    async def endpoint(websocket: WebSocket) -> None:
        raise ValueError("boom before accept")

    caplog.set_level(logging.INFO, logger="uvicorn.error")
    async with serving(starlette(endpoint), http) as served:
        with pytest.raises(wsline.InvalidStatus) as info:
            async with client(served.url()):
                pass
    assert info.value.status == 500
    assert any("Exception in ASGI application" in r.getMessage() and r.exc_info for r in caplog.records)


@pytest.mark.parametrize("http", HTTP)
async def test_exception_after_accept_is_1011(http: str, caplog: pytest.LogCaptureFixture) -> None:
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()
        raise ValueError("boom after accept")

    caplog.set_level(logging.INFO, logger="uvicorn.error")
    async with serving(starlette(endpoint), http) as served:
        async with peer("wsline", served.url()) as ws:
            await ws.send("go")
            code, _reason = await ws.closed()
    assert code == 1011
    assert any("Exception in ASGI application" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("http", HTTP)
async def test_refusals_are_403(http: str, caplog: pytest.LogCaptureFixture) -> None:
    async def close_first(websocket: WebSocket) -> None:
        await websocket.close(code=1008)

    async def just_return(websocket: WebSocket) -> None:
        return

    app = Starlette(routes=[WebSocketRoute("/close", close_first), WebSocketRoute("/return", just_return)])
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    async with serving(app, http) as served:
        for path in ("/close", "/return", "/nowhere"):  # Starlette closes unknown routes before accepting
            with pytest.raises(wsline.InvalidStatus) as info:
                async with client(served.url(path)):
                    pass
            assert info.value.status == 403, path
    lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.error"]
    assert any(line.endswith('"WebSocket /close" 403') for line in lines), lines


@pytest.mark.parametrize("http", HTTP)
async def test_denial_response(http: str, caplog: pytest.LogCaptureFixture) -> None:
    async def starlette_denial(websocket: WebSocket) -> None:
        await websocket.send_denial_response(
            Response("no token", status_code=401, headers={"x-why": "token"})
        )

    async def raw_denial(scope: Scope, receive: Any, send: Any) -> None:
        if scope["path"] != "/raw":
            await starlette_app(scope, receive, send)
            return
        await receive()
        await send({"type": "websocket.http.response.start", "status": 418, "headers": [(b"x-a", b"1")]})
        await send({"type": "websocket.http.response.body", "body": b"I'm ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"a teapot"})
        assert (await receive())["type"] == "websocket.disconnect"
        with pytest.raises(RuntimeError, match="after the WebSocket was closed"):
            await send({"type": "websocket.accept"})

    starlette_app = starlette(starlette_denial)
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    async with serving(raw_denial, http) as served:
        with pytest.raises(wsline.InvalidStatus) as info:
            async with client(served.url()):
                pass
        assert info.value.status == 401
        assert info.value.body == b"no token"
        headers = {name.lower(): value for name, value in info.value.headers}
        assert headers["x-why"] == "token"
        assert headers["server"] == "uvicorn"
        with pytest.raises(wsline.InvalidStatus) as info:
            async with client(served.url("/raw")):
                pass
        assert info.value.status == 418
        assert info.value.body == b"I'm a teapot"
        headers = {name.lower(): value for name, value in info.value.headers}
        assert headers["x-a"] == "1"
        assert headers["content-length"] == "12"
    lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.error"]
    assert any(line.endswith('"WebSocket /raw" 418') for line in lines), lines


async def test_messages_are_checked() -> None:
    errors: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        for bad in (
            {"type": "websocket.send", "text": "early"},
            {"type": "http.response.start", "status": 200},
            {"type": "websocket.accept", "headers": [(b"bad name", b"x")]},
            {"type": "websocket.accept", "headers": [(b"x-ok", b"bad\r\nvalue")]},
            {"type": "websocket.accept", "headers": [("str", "str")]},
            {"type": "websocket.accept", "headers": [(b"sec-websocket-accept", b"x")]},
            {"type": "websocket.http.response.start", "status": 101},
        ):
            try:
                await send(bad)
            except (RuntimeError, TypeError) as exc:
                errors.append(str(exc))
        await send({"type": "websocket.accept"})
        for bad in (
            {"type": "websocket.accept"},
            {"type": "websocket.send", "text": "a", "bytes": b"b"},
            {"type": "websocket.send"},
            {"type": "websocket.send", "text": b"bytes"},
            {"type": "websocket.send", "bytes": "text"},
            {"type": "websocket.close", "code": 1005},
            {"type": "websocket.http.response.body", "body": b""},
        ):
            try:
                await send(bad)
            except (RuntimeError, TypeError) as exc:
                errors.append(str(exc))
        await send({"type": "websocket.send", "text": "still open"})
        await send({"type": "websocket.close", "code": 1000})
        try:
            await send({"type": "websocket.send", "text": "after close"})
        except RuntimeError as exc:
            errors.append(str(exc))
        await send({"type": "websocket.close"})  # closing again does nothing

    async with serving(app) as served:
        async with client(served.url()) as ws:
            assert await ws.recv() == "still open"
            with pytest.raises(wsline.ConnectionClosed):
                await ws.recv()
    assert len(errors) == 15, errors
    assert "'websocket.send'" in errors[0]
    assert "'http.response.start'" in errors[1]
    assert "invalid header name" in errors[2]
    assert "invalid character" in errors[3]
    assert "must be bytes" in errors[4]
    assert "handshake's own" in errors[5]
    assert "invalid HTTP status code 101" in errors[6]
    assert "'websocket.accept'" in errors[7]
    assert "exactly one" in errors[8]
    assert "needs 'bytes' or 'text'" in errors[9]
    assert "'text' must be str" in errors[10]
    assert "'bytes' must be bytes" in errors[11]
    assert "1005" in errors[12]
    assert "'websocket.http.response.body'" in errors[13]
    assert "after the WebSocket was closed" in errors[14]


@pytest.mark.parametrize("http", HTTP)
async def test_client_gone_before_accept(http: str, raw_client: OpenRaw) -> None:
    seen: list[Any] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        seen.append(await receive())
        seen.append(await receive())  # waits: nothing comes before the accept... but the disconnect
        try:
            await send({"type": "websocket.accept"})
        except OSError as exc:
            seen.append(exc)

    async with serving(app, http) as served:
        peer = await raw_client(served.port)
        await peer.send(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await eventually(lambda: len(seen) == 1)
        peer.abort()
        await eventually(lambda: len(seen) == 3)
    assert seen[0] == {"type": "websocket.connect"}
    assert seen[1] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}
    assert isinstance(seen[2], ClientDisconnected)


@pytest.mark.parametrize("http", HTTP)
async def test_send_after_client_left_raises_oserror(http: str) -> None:
    outcome: list[Any] = []
    left = asyncio.Event()

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await left.wait()
        await asyncio.sleep(0.05)
        try:
            await websocket.send_text("anyone?")
        except WebSocketDisconnect as exc:  # Starlette turns the OSError into this
            outcome.append(exc.code)

    async with serving(starlette(endpoint), http) as served:
        async with client(served.url()):
            pass
        left.set()
        await eventually(lambda: outcome)
    assert outcome == [1006]


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize("http", HTTP)
async def test_ws_max_size_1009(http: str) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        seen.append(await receive())
        seen.append(await receive())

    async with serving(app, http, ws_max_size=1000) as served:
        async with peer("wsline", served.url()) as ws:
            await ws.send(b"x" * 1000)
            await ws.send(b"x" * 1001)
            code, _reason = await ws.closed()
        await eventually(lambda: len(seen) == 2)
    assert code == 1009
    assert seen[0] == {"type": "websocket.receive", "bytes": b"x" * 1000}
    assert seen[1]["type"] == "websocket.disconnect" and seen[1]["code"] == 1009


def test_server_options_from_config() -> None:
    config = uvicorn.Config(
        lambda: None,
        ws_max_size=1234,
        ws_max_queue=7,
        ws_ping_interval=0,
        ws_ping_timeout=None,
        ws_per_message_deflate=False,
    )
    options = server_options(config)
    assert (options.max_size, options.max_queue) == (1234, 7)
    assert options.ping_interval is None and options.ping_timeout is None
    assert options.deflate is None
    defaults = server_options(uvicorn.Config(lambda: None))
    assert (defaults.max_size, defaults.max_queue) == (16 * 1024 * 1024, 32)
    assert (defaults.ping_interval, defaults.ping_timeout) == (20.0, 20.0)
    assert defaults.deflate is not None and defaults.deflate.server_max_window_bits == 12


async def test_keepalive_pings_and_timeout(raw_client: OpenRaw) -> None:
    latencies: list[Any] = []

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        ext = websocket.scope["extensions"]["wsline"]
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                latencies.append(message["code"])
                return
            latencies.append(ext["latency"]())
            await websocket.send_text("ok")

    async with serving(starlette(endpoint), ws_ping_interval=0.1, ws_ping_timeout=0.3) as served:
        async with client(served.url()) as ws:  # wsline's client answers pings
            await asyncio.sleep(0.35)
            await ws.send("latency?")
            assert await ws.recv() == "ok"
        assert isinstance(latencies[0], float) and 0 <= latencies[0] < 1.0
        peer = await raw_client(served.port)  # this one never answers
        await peer.handshake("/ws")
        frame = await peer.read_frame(timeout=2)
        assert frame.opcode == 9  # a ping
        start = time.monotonic()
        assert await peer.read_close(timeout=3) == (1011, "keepalive ping timeout")
        assert time.monotonic() - start < 2
        await eventually(lambda: len(latencies) == 3)
    assert latencies[2] == 1006  # no close frame came back


async def test_per_message_deflate_and_compress_flag(raw_client: OpenRaw) -> None:
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("a" * 1000)
        await websocket.send({"type": "websocket.send", "text": "b" * 1000, "wsline.compress": False})
        await websocket.close()

    offer = [("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")]
    async with serving(starlette(endpoint)) as served:
        peer = await raw_client(served.port)
        response = await peer.handshake("/ws", offer)
        assert "permessage-deflate" in (response.get("Sec-WebSocket-Extensions") or "")
        first, second = await peer.read_frame(), await peer.read_frame()
        assert first.rsv1 and len(first.payload) < 100
        assert not second.rsv1 and second.payload == b"b" * 1000
    async with serving(starlette(endpoint), ws_per_message_deflate=False) as served:
        peer = await raw_client(served.port)
        response = await peer.handshake("/ws", offer)
        assert response.get("Sec-WebSocket-Extensions") is None
        assert not (await peer.read_frame()).rsv1


async def test_backpressure_send_waits(raw_client: OpenRaw) -> None:
    sent: list[int] = []
    backlogs: list[int] = []

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        ext = websocket.scope["extensions"]["wsline"]
        chunk = b"x" * 65536
        with contextlib.suppress(WebSocketDisconnect):
            for i in range(400):  # 25 MiB: far more than the socket buffers hold
                await websocket.send_bytes(chunk)
                sent.append(i)
                backlogs.append(ext["backlog"]())

    async with serving(starlette(endpoint)) as served:
        peer = await raw_client(served.port, rcvbuf=65536)
        await peer.handshake("/ws")
        await eventually(lambda: len(sent) > 5)
        await asyncio.sleep(0.5)
        stalled = len(sent)
        await asyncio.sleep(0.3)
        assert len(sent) == stalled < 400  # send() waits while the client does not read
        assert max(backlogs) <= 2 * 65536 + 65536 + 16
        peer.abort()


# ------------------------------------------------------------------ the wsline extension


async def test_extension_rooms_and_ping() -> None:
    results: list[Any] = []

    async def endpoint(websocket: WebSocket) -> None:
        ext = websocket.scope["extensions"]["wsline"]
        assert ext["websocket"]() is None and ext["latency"]() is None
        with pytest.raises(RuntimeError):
            await ext["join"]("room")
        await websocket.accept()
        room = websocket.query_params["room"]
        await ext["join"](room)
        results.append(await ext["ping"]())
        async for text in websocket.iter_text():
            results.append(await ext["publish"](room, text, exclude_self=True))

    async with serving(starlette(endpoint)) as served:
        async with (
            client(served.url("/ws?room=a")) as a1,
            client(served.url("/ws?room=a")) as a2,
            client(served.url("/ws?room=b")) as b1,
        ):
            await eventually(lambda: len(results) == 3)
            await a1.send("to room a")
            assert await a2.recv() == "to room a"
            await b1.send("to room b")
            with pytest.raises(TimeoutError):
                await a1.recv(timeout=0.2)
    assert all(isinstance(rtt, float) for rtt in results[:3])
    assert results[3] == wsline.BroadcastResult(sent=1)
    assert results[4] == wsline.BroadcastResult()  # alone in room b


async def test_extension_broadcast_to_kept_connections() -> None:
    members: list[wsline.WebSocket] = []

    async def endpoint(websocket: WebSocket) -> None:
        ext = websocket.scope["extensions"]["wsline"]
        await websocket.accept()
        members.append(ext["websocket"]())
        async for text in websocket.iter_text():
            ext["broadcast"](members, text)

    async with serving(starlette(endpoint)) as served:
        async with client(served.url()) as c1, client(served.url()) as c2:
            await eventually(lambda: len(members) == 2)
            await c1.send("all")
            assert await c1.recv() == "all" and await c2.recv() == "all"


# ------------------------------------------------------------------ shutdown and logs


@pytest.mark.parametrize("http", HTTP)
async def test_graceful_shutdown_1012(http: str) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        seen.append(await receive())

    async with serving(app, http) as served:
        async with client(served.url()) as ws:
            await eventually(lambda: served.server.server_state.connections)
            served.server.should_exit = True
            with pytest.raises(wsline.ConnectionClosed):
                await ws.recv(timeout=5)
            assert (ws.close_code, ws.close_reason) == (1012, "service restart")
        await eventually(lambda: seen)
    assert seen[0]["type"] == "websocket.disconnect" and seen[0]["code"] == 1012


async def test_graceful_shutdown_timeout_cancels_the_app() -> None:
    cancelled: list[bool] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            await asyncio.sleep(60)  # never reads: deaf to the disconnect
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async with serving(app, timeout_graceful_shutdown=0.5) as served:
        async with client(served.url()) as ws:
            await eventually(lambda: served.server.server_state.connections)
            start = time.monotonic()
            served.server.should_exit = True
            with pytest.raises(wsline.ConnectionClosed):
                await ws.recv(timeout=5)
            assert ws.close_code == 1012
    assert cancelled == [True]
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("http", HTTP)
async def test_access_log_lines(http: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    async with serving(starlette(starlette_echo), http) as served:
        async with client(served.url("/ws?token=1")) as ws:
            local = ws.local_address
    lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.error"]
    assert f'{local[0]}:{local[1]} - "WebSocket /ws?token=1" [accepted]' in lines


# ------------------------------------------------------------------ FastAPI


async def test_fastapi_app() -> None:
    app = FastAPI()

    @app.websocket("/items/{item_id}")
    async def item(websocket: FastAPIWebSocket, item_id: int, q: str | None = None) -> None:
        await websocket.accept()
        data = await websocket.receive_json()
        await websocket.send_json({"item": item_id, "q": q, "got": data})
        await websocket.close(code=1000, reason="done")

    for http in HTTP:
        async with serving(app, http) as served:
            async with client(served.url("/items/7?q=x")) as ws:
                await ws.send('{"a": 1}')
                assert await ws.recv() == '{"item":7,"q":"x","got":{"a":1}}'
                with pytest.raises(wsline.ConnectionClosed):
                    await ws.recv()
                assert (ws.close_code, ws.close_reason) == (1000, "done")
            with pytest.raises(wsline.InvalidStatus) as info:  # a validation error: closed before accept
                async with client(served.url("/items/nope")):
                    pass
            assert info.value.status == 403


# ------------------------------------------------------------------ the command line


APP_MODULE = """
import os
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute


async def endpoint(websocket):
    await websocket.accept()
    await websocket.send_text(str(os.getpid()))
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        await websocket.send_bytes(message.get("bytes") or message.get("text", "").encode())


app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
"""


@contextlib.contextmanager
def uvicorn_cli(tmp_path: Path, *args: str) -> Any:
    (tmp_path / "cli_app.py").write_text(textwrap.dedent(APP_MODULE))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    log = (tmp_path / "uvicorn.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "cli_app:app",
            "--app-dir",
            str(tmp_path),
            "--host",
            HOST,
            "--port",
            str(port),
            "--ws",
            WS,
            *args,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"uvicorn did not start:\n{(tmp_path / 'uvicorn.log').read_text()}")
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield proc, port, tmp_path / "uvicorn.log"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.mark.timeout(60)
async def test_cli_workers_and_settings(tmp_path: Path) -> None:
    with uvicorn_cli(
        tmp_path, "--workers", "2", "--http", "httptools", "--ws-max-size", "100", "--ws-ping-interval", "0"
    ) as (proc, port, log):
        pids: set[str] = set()
        deadline = time.monotonic() + 20
        while len(pids) < 2 and time.monotonic() < deadline:
            async with client(f"ws://{HOST}:{port}/ws") as ws:
                pids.add(str(await ws.recv()))
                await ws.send(b"x" * 100)
                assert await ws.recv() == b"x" * 100
                await ws.send(b"x" * 101)  # --ws-max-size 100
                with pytest.raises(wsline.ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 1009
        assert len(pids) == 2, pids  # two worker processes answered
        os.killpg(proc.pid, signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
    text = log.read_text()
    assert '"WebSocket /ws" [accepted]' in text
    assert "Traceback" not in text


@pytest.mark.timeout(60)
@pytest.mark.parametrize("http", HTTP)
async def test_cli_sigterm_closes_1012(tmp_path: Path, http: str) -> None:
    with uvicorn_cli(tmp_path, "--http", http, "--timeout-graceful-shutdown", "5") as (proc, port, log):
        async with client(f"ws://{HOST}:{port}/ws") as ws:
            assert (await ws.recv()).isdigit()  # type: ignore[union-attr]
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(wsline.ConnectionClosed):
                await ws.recv(timeout=10)
            assert (ws.close_code, ws.close_reason) == (1012, "service restart")
        # uvicorn re-raises the signal it caught once it has shut down cleanly.
        assert await asyncio.to_thread(proc.wait, 20) in (0, -signal.SIGTERM)
    text = log.read_text()
    assert "Finished server process" in text
    assert "Traceback" not in text
