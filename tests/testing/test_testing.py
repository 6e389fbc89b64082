"""wsline.testing.TestClient: every kind of application, the error paths, HTTP routes, and each fault.

These run wsline's real server and client code with no socket (the point of
the toolkit); what they assert is what a client on the network would see.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

import pytest

import wsline
from conftest import collect_garbage
from wsline.http import Router, json_response, text_response
from wsline.testing import (
    FaultTransport,
    TestClient,
    TransportPair,
    WebSocketConnect,
    open_connection,
    open_websocket,
    pair_of,
    stream_server,
)

#: Fast options for both ends: no background pings, short closing handshakes.
FAST: dict[str, Any] = {"ping_interval": None, "close_timeout": 0.5}


async def echo(ws: wsline.WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


def make_router() -> Router:
    router = Router()

    @router.get("/health")
    def health(request: wsline.Request) -> wsline.Response:
        return text_response("ok", headers={"X-Check": "1"})

    @router.get("/users/{name}")
    def user(request: wsline.Request, name: str) -> wsline.Response:
        return json_response({"name": name, "q": request.query.get("q")})

    @router.post("/echo")
    async def echo_body(request: wsline.Request) -> wsline.Response:
        return text_response(request.body, status=201)

    @router.get("/boom")
    def boom(request: wsline.Request) -> wsline.Response:
        raise RuntimeError("route failed")

    @router.websocket("/ws/{room}")
    async def room(ws: wsline.WebSocket, room: str) -> None:
        await ws.send(f"welcome to {room}")
        await echo(ws)

    return router


def assert_no_loop_errors(loop_errors: list[dict[str, Any]]) -> None:
    collect_garbage()
    assert loop_errors == [], loop_errors


# ------------------------------------------------------------------ handlers


async def test_a_handler_text_binary_and_the_real_objects_on_both_ends(loop_errors) -> None:
    seen: list[wsline.WebSocket] = []

    async def handler(ws: wsline.WebSocket) -> None:
        seen.append(ws)
        await echo(ws)

    async with TestClient(handler, **FAST) as client:
        assert isinstance(client.server, wsline.Server)
        async with client.websocket("/chat?room=a", **FAST) as ws:
            assert isinstance(ws, wsline.WebSocket) and ws.is_client
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01")
            assert await ws.recv() == b"\x00\x01"
            await ws.send(["frag", "mented"])
            assert await ws.recv() == "fragmented"
            server_ws = seen[0]
            assert not server_ws.is_client
            assert server_ws.request.path == "/chat" and server_ws.request.query == {"room": "a"}
            assert server_ws.request.host == "testserver"
            assert server_ws in client.server.connections
            assert isinstance(pair_of(ws).client, FaultTransport)
        assert ws.close_code == 1000
    assert_no_loop_errors(loop_errors)


async def test_subprotocols_headers_origin_and_compression_are_negotiated() -> None:
    requests: list[wsline.Request] = []

    async def handler(ws: wsline.WebSocket) -> None:
        requests.append(ws.request)
        await ws.send(ws.subprotocol or "none")
        await echo(ws)

    async with TestClient(handler, subprotocols=["chat.v2", "chat.v1"], **FAST) as client:
        async with client.websocket(
            "/",
            subprotocols=["chat.v1", "chat.v2"],
            headers={"Authorization": "Bearer t"},
            origin="https://a",
        ) as ws:
            assert ws.subprotocol == "chat.v2"  # the server's preference
            assert await ws.recv() == "chat.v2"
            assert "permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
            await ws.send("x" * 10000)
            assert await ws.recv() == "x" * 10000
        async with client.websocket("/", compression=None) as ws:
            assert ws.subprotocol is None
            assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
    assert requests[0].headers["Authorization"] == "Bearer t"
    assert requests[0].origin == "https://a"


async def test_a_handler_that_raises_closes_with_1011_and_is_raised_when_the_client_exits() -> None:
    async def handler(ws: wsline.WebSocket) -> None:
        await ws.recv()
        raise ValueError("handler bug")

    with pytest.raises(ValueError, match="handler bug"):
        async with TestClient(handler, **FAST) as client:
            async with client.websocket("/") as ws:
                await ws.send("go")
                with pytest.raises(wsline.ConnectionClosedError) as info:
                    await ws.recv()
                assert info.value.code == 1011
                assert ws.close_reason == "internal error"


async def test_the_first_of_several_handler_errors_is_raised() -> None:
    async def handler(ws: wsline.WebSocket) -> None:
        raise ValueError(ws.request.path)

    with pytest.raises(ValueError, match="/first") as info:
        async with TestClient(handler, **FAST) as client:
            for path in ("/first", "/second"):
                async with client.websocket(path) as ws:
                    await ws.wait_closed()
    if sys.version_info >= (3, 11):
        assert "1 more left in server.errors" in info.value.__notes__[0]


async def test_server_errors_read_by_the_test_are_not_raised_again() -> None:
    async def handler(ws: wsline.WebSocket) -> None:
        raise KeyError("read me")

    async with TestClient(handler, **FAST) as client:
        async with client.websocket("/") as ws:
            with pytest.raises(wsline.ConnectionClosedError):
                await ws.recv()
        error, info = await asyncio.wait_for(client.server.errors.get(), 1)
        assert isinstance(error, KeyError) and info.path == "/"


async def test_raise_server_exceptions_false_leaves_them_in_server_errors() -> None:
    async def handler(ws: wsline.WebSocket) -> None:
        raise KeyError("left there")

    client = TestClient(handler, raise_server_exceptions=False, **FAST)
    async with client:
        async with client.websocket("/") as ws:
            await ws.wait_closed()
        assert ws.close_code == 1011
    assert len(client.server.errors) == 1


async def test_an_exception_of_the_test_is_not_hidden_by_a_handler_exception() -> None:
    async def handler(ws: wsline.WebSocket) -> None:
        raise KeyError("handler")

    with pytest.raises(AssertionError, match="the test's own"):
        async with TestClient(handler, **FAST) as client:
            async with client.websocket("/") as ws:
                await ws.wait_closed()
            raise AssertionError("the test's own")


async def test_a_listener_subclass() -> None:
    events: list[str] = []

    class Upper(wsline.Listener):
        def on_open(self) -> None:
            events.append("open " + self.ws.request.path)

        def on_message(self, message: wsline.Data) -> None:
            assert isinstance(message, str)
            self.ws.send_nowait(message.upper())

        def on_close(self, exc: wsline.ConnectionClosed) -> None:
            events.append(f"close {exc.code}")

    async with TestClient(Upper, **FAST) as client:
        async with client.websocket("/up") as ws:
            await ws.send("shout")
            assert await ws.recv() == "SHOUT"
        await asyncio.sleep(0.01)
    assert events == ["open /up", "close 1000"]


async def test_the_server_closes_open_connections_with_1001_when_the_client_exits() -> None:
    async with TestClient(echo, **FAST) as client:
        ws = await client.websocket("/")
        assert isinstance(client.websocket("/"), WebSocketConnect)
    assert ws.close_code == 1001
    assert ws.state is wsline.State.CLOSED


# ------------------------------------------------------------------ refusals


async def test_a_refused_handshake_raises_invalid_status_with_status_headers_and_body() -> None:
    def gate(request: wsline.Request) -> wsline.Response | None:
        if request.headers.get("Authorization") != "Bearer good":
            return wsline.Response(
                401, headers=wsline.Headers([("WWW-Authenticate", "Bearer")]), body=b"who are you?\n"
            )
        return None

    async with TestClient(echo, process_request=gate, **FAST) as client:
        with pytest.raises(wsline.InvalidStatus) as info:
            async with client.websocket("/"):
                pass
        assert info.value.status == 401
        assert info.value.body == b"who are you?\n"
        assert ("WWW-Authenticate", "Bearer") in info.value.headers
        async with client.websocket("/", headers={"Authorization": "Bearer good"}) as ws:
            await ws.send("in")
            assert await ws.recv() == "in"


async def test_origins_refuse_with_403() -> None:
    async with TestClient(echo, origins=["https://good.example"], **FAST) as client:
        with pytest.raises(wsline.InvalidStatus) as info:
            await client.websocket("/", origin="https://evil.example")
        assert info.value.status == 403
        assert b"not allowed" in info.value.body
        ws = await client.websocket("/", origin="https://good.example")
        await ws.close()


async def test_max_connections_per_client_uses_the_client_address() -> None:
    async with TestClient(echo, max_connections_per_client=1, **FAST) as client:
        first = await client.websocket("/")
        with pytest.raises(wsline.InvalidStatus) as info:
            await client.websocket("/")
        assert info.value.status == 429
        other = await client.websocket("/", pair=client.pair(client_address=("10.0.0.2", 1234)))
        assert (await asyncio.gather(first.close(), other.close())) == [None, None]


async def test_the_client_address_is_the_request_remote_address() -> None:
    addresses: list[Any] = []

    async def handler(ws: wsline.WebSocket) -> None:
        addresses.append((ws.request.remote_address, ws.remote_address))

    async with TestClient(handler, client_address=("192.0.2.7", 4321), **FAST) as client:
        async with client.websocket("/") as ws:
            await ws.wait_closed()
    assert addresses == [(("192.0.2.7", 4321), ("192.0.2.7", 4321))]


# ------------------------------------------------------------------ routers and HTTP


async def test_a_router_http_routes_and_websocket_routes() -> None:
    async with TestClient(make_router(), **FAST) as client:
        response = await client.get("/health")
        assert (response.status, response.reason, response.body) == (200, "OK", b"ok")
        assert response.headers["X-Check"] == "1"
        assert response.headers["Content-Type"].startswith("text/plain")
        assert response.headers["Server"].startswith("wsline/")
        response = await client.get("/users/ada?q=1")
        assert json.loads(response.body) == {"name": "ada", "q": "1"}
        response = await client.post("/echo", b"posted body")
        assert (response.status, response.body) == (201, b"posted body")
        response = await client.head("/health")
        assert response.status == 200 and response.body == b""
        assert response.headers["Content-Length"] == "2"
        response = await client.request("PUT", "/health")
        assert response.status == 405 and "GET" in response.headers["Allow"]
        assert (await client.get("/nowhere")).status == 404
        assert (await client.get("/ws/lobby")).status == 426
        async with client.websocket("/ws/lobby") as ws:
            assert await ws.recv() == "welcome to lobby"
            await ws.send("hi")
            assert await ws.recv() == "hi"
        with pytest.raises(wsline.InvalidStatus) as info:
            await client.websocket("/elsewhere")
        assert info.value.status == 404 and b"no WebSocket route" in info.value.body


async def test_an_http_route_that_raises_is_500_and_raised_at_exit() -> None:
    with pytest.raises(RuntimeError, match="route failed"):
        async with TestClient(make_router(), **FAST) as client:
            response = await client.get("/boom")
            assert response.status == 500
            assert response.body == b"internal server error\n"


async def test_http_handler_option_and_request_headers() -> None:
    def page(request: wsline.Request) -> wsline.Response:
        return json_response({"ua": request.headers.get("User-Agent"), "host": request.host})

    async with TestClient(echo, http_handler=page, base_url="ws://app.example:8080", **FAST) as client:
        response = await client.get("/", headers=[("User-Agent", "tests")])
        assert json.loads(response.body) == {"ua": "tests", "host": "app.example:8080"}
        response = await client.get("/", headers={"Host": "other"})
        assert json.loads(response.body)["host"] == "other"
        with pytest.raises(ValueError):
            await client.get("/", headers={"X-Bad": "a\r\nInjected: 1"})


async def test_a_request_the_server_refuses_gets_its_4xx() -> None:
    async with TestClient(make_router(), max_body_size=10, **FAST) as client:
        response = await client.post("/echo", b"x" * 100)
        assert response.status == 413
        response = await client.request("GET", "/health", headers={"Content-Length": "1, 2"}, body=b"x")
        assert response.status == 400


async def test_an_http_request_that_gets_no_answer_times_out() -> None:
    release = asyncio.Event()

    async def slow(request: wsline.Request) -> wsline.Response:
        await release.wait()
        return text_response("late")

    async with TestClient(echo, http_handler=slow, **FAST) as client:
        with pytest.raises(TimeoutError):
            await client.get("/", timeout=0.1)
        release.set()


async def test_an_http_connection_cut_before_the_answer_is_a_connection_error() -> None:
    async with TestClient(make_router(), **FAST) as client:
        pair = client.pair()
        pair.server_to_client.cut_after(bytes=10)
        with pytest.raises(ConnectionError, match="before a whole response"):
            await client.get("/health", pair=pair)


# ------------------------------------------------------------------ ASGI


async def raw_asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["started"] = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                LIFESPAN.append("shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        if scope["path"] == "/fail":
            raise RuntimeError("asgi http failed")
        state = scope.get("state", {}).get("started")  # no lifespan state under Router.mount
        body = json.dumps({"path": scope["path"], "state": state}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"json")]})
        await send({"type": "http.response.body", "body": body})
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept", "subprotocol": (scope["subprotocols"] or [None])[0]})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") == "fail":
                raise RuntimeError("asgi app failed")
            await send({"type": "websocket.send", "text": "asgi:" + message["text"]})


LIFESPAN: list[str] = []


async def test_a_raw_asgi_application_with_its_lifespan() -> None:
    LIFESPAN.clear()
    async with TestClient(raw_asgi_app, **FAST) as client:
        assert client.asgi
        response = await client.get("/items")
        assert json.loads(response.body) == {"path": "/items", "state": True}
        async with client.websocket("/ws", subprotocols=["p1"]) as ws:
            assert ws.subprotocol == "p1"
            await ws.send("hi")
            assert await ws.recv() == "asgi:hi"
        assert LIFESPAN == []
    assert LIFESPAN == ["shutdown"]


async def test_an_asgi_application_that_raises_closes_with_1011_or_answers_500() -> None:
    with pytest.raises(RuntimeError, match="asgi http failed"):
        async with TestClient(raw_asgi_app, lifespan="off", **FAST) as client:
            async with client.websocket("/ws") as ws:
                await ws.send("fail")
                with pytest.raises(wsline.ConnectionClosedError) as info:
                    await ws.recv()
                assert info.value.code == 1011
            response = await client.get("/fail")
            assert response.status == 500


async def test_starlette_websocket_and_http_and_denial() -> None:
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse(f"hello {request.query_params.get('name', 'nobody')}")

    async def chat(websocket: WebSocket) -> None:
        if websocket.headers.get("x-token") != "ok":
            await websocket.close(code=1008)  # before accept: a 403 denial
            return
        await websocket.accept()
        async for text in websocket.iter_text():
            await websocket.send_text(text[::-1])

    app = Starlette(routes=[Route("/", home), WebSocketRoute("/chat", chat)])
    async with TestClient(app, **FAST) as client:
        response = await client.get("/?name=ada")
        assert (response.status, response.body) == (200, b"hello ada")
        async with client.websocket("/chat", headers={"X-Token": "ok"}) as ws:
            await ws.send("abc")
            assert await ws.recv() == "cba"
        with pytest.raises(wsline.InvalidStatus) as info:
            await client.websocket("/chat")
        assert info.value.status == 403


async def test_asgi_options_are_checked_and_the_kind_can_be_forced() -> None:
    with pytest.raises(ValueError, match="root_path"):
        TestClient(raw_asgi_app, root_path="no-slash")
    with pytest.raises(TypeError):
        TestClient(raw_asgi_app, subprotocols=["x"])  # not an option of wsline.asgi.serve

    async def ambiguous(*args: Any) -> None:
        await raw_asgi_app(*args)

    assert not TestClient(ambiguous).asgi
    async with TestClient(ambiguous, asgi=True, lifespan="off") as client:
        assert json.loads((await client.get("/forced")).body)["path"] == "/forced"

    async def three_args_handler(ws: Any, a: Any = None, b: Any = None) -> None:
        await echo(ws)

    assert not TestClient(three_args_handler).asgi
    assert not TestClient(make_router()).asgi


async def test_a_mounted_asgi_application_under_a_router() -> None:
    router = make_router()
    router.mount("/api", raw_asgi_app)
    async with TestClient(router, **FAST) as client:
        response = await client.get("/api/items")
        assert json.loads(response.body)["path"] == "/api/items"
        assert (await client.get("/health")).body == b"ok"


# ------------------------------------------------------------------ options and misuse


async def test_options_are_checked_by_serve_and_connect_themselves() -> None:
    with pytest.raises(ValueError, match="max_size"):
        TestClient(echo, max_size=-1)
    with pytest.raises(TypeError):
        TestClient(echo, no_such_option=1)
    with pytest.raises(TypeError, match="no meaning without sockets"):
        TestClient(echo, port=8000)
    with pytest.raises(TypeError, match="async def"):
        TestClient(lambda ws: None)
    with pytest.raises(ValueError):
        TestClient(echo, base_url="https://x/path")
    client = TestClient(echo)
    with pytest.raises(RuntimeError, match="not started"):
        client.server  # noqa: B018
    async with client:
        with pytest.raises(ValueError, match="subprotocol"):
            client.websocket("/", subprotocols=["bad name"])
        with pytest.raises(TypeError, match="no meaning without sockets"):
            client.websocket("/", proxy="http://p:1")
        with pytest.raises(ValueError):
            client.websocket("relative")
        with pytest.raises(RuntimeError, match="started already"):
            await client.start()
    with pytest.raises(LookupError):
        async with wsline.serve(echo, "127.0.0.1", 0) as server:
            async with wsline.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                pair_of(ws)


async def test_limits_apply_as_on_a_socket() -> None:
    async with TestClient(echo, max_size=1000, **FAST) as client:
        async with client.websocket("/") as ws:
            await ws.send("x" * 2000)
            with pytest.raises(wsline.ConnectionClosedError) as info:
                await ws.recv()
            assert info.value.code == 1009


async def test_open_timeout_of_the_server_408_through_a_raw_connection() -> None:
    async with TestClient(echo, open_timeout=0.2, **FAST) as client:
        reader, writer = await client.open_connection()
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never the blank line
        start = time.monotonic()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        assert head.startswith(b"HTTP/1.1 408 ")
        assert 0.15 <= time.monotonic() - start < 1
        assert await asyncio.wait_for(reader.read(), 1)  # the body, then EOF
        assert isinstance(writer.transport, FaultTransport)


async def test_open_timeout_of_the_client() -> None:
    async with TestClient(echo, **FAST) as client:
        conn = client.websocket("/", open_timeout=0.1)
        conn.pair.server_to_client.stall()  # the 101 never comes
        with pytest.raises(wsline.OpenTimeout):
            await conn


# ------------------------------------------------------------------ faults through the client


async def test_delay_shows_in_the_round_trip_time() -> None:
    async with TestClient(echo, **FAST) as client:
        async with client.websocket("/") as ws:
            pair = pair_of(ws)
            pair.client_to_server.delay(0.05)
            pair.server_to_client.delay(0.05)
            rtt = await ws.ping()
            assert 0.1 <= rtt < 0.5
            start = time.monotonic()
            await ws.send("slow")
            assert await ws.recv() == "slow"
            assert time.monotonic() - start >= 0.1


async def test_drop_the_clients_close_frame_is_lost_the_server_never_knows(loop_errors) -> None:
    conns: list[wsline.WebSocket] = []

    async def handler(ws: wsline.WebSocket) -> None:
        conns.append(ws)
        await echo(ws)

    async with TestClient(handler, **FAST) as client:
        async with client.websocket("/", **FAST) as ws:
            await ws.send("before")
            assert await ws.recv() == "before"
            pair_of(ws).client_to_server.drop_after(0)
            start = time.monotonic()
        # The close frame went nowhere: close_timeout, then abort (1006).
        assert ws.close_code == 1006
        assert 0.4 <= time.monotonic() - start < 1.5
        # Its FIN was lost too: without keepalive the server still thinks it is open.
        assert conns[0].open and conns[0] in client.server.connections
    assert conns[0].close_code == 1006  # the exit's close (1001) timed out too
    assert_no_loop_errors(loop_errors)


async def test_slow_reader_backpressure_on_the_server_then_everything_arrives() -> None:
    chunk = os.urandom(16 * 1024)
    conns: list[wsline.WebSocket] = []

    async def streamer(ws: wsline.WebSocket) -> None:
        conns.append(ws)
        for _ in range(64):
            await ws.send(chunk)
        await ws.send("done")

    paused = 0
    buffered = 0
    async with TestClient(streamer, write_limit=16 * 1024, **FAST) as client:
        conn = client.websocket("/", max_size=None)
        conn.pair.server_to_client.slow_reader(4096)
        async with conn as ws:
            received: list[wsline.Data] = []
            while len(received) < 65:
                received.append(await ws.recv())
                paused += conns[0].writing_paused  # the server's send() waits meanwhile
                buffered = max(buffered, conn.pair.server.get_write_buffer_size())
    assert received[-1] == "done"
    assert all(message == chunk for message in received[:-1])
    assert paused > 10, "the server was never held back by the slow reader"
    assert buffered <= 16 * 1024 + 2 * len(chunk)


async def test_half_open_client_the_server_keepalive_gives_up() -> None:
    ended: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def handler(ws: wsline.WebSocket) -> None:
        try:
            await echo(ws)
        except wsline.ConnectionClosed as exc:
            ended.set_result(exc)

    async with TestClient(handler, ping_interval=0.1, ping_timeout=0.2, close_timeout=0.3) as client:
        ws = await client.websocket("/", **FAST)
        pair_of(ws).half_open("client")
        exc = await asyncio.wait_for(ended, 3)
        assert isinstance(exc, wsline.KeepaliveTimeout) and exc.code == 1006
        assert ws.open  # the vanished client never heard of it
        ws.abort()


async def test_cut_in_the_middle_of_a_frame_both_sides_see_1006() -> None:
    ended: asyncio.Future[wsline.ConnectionClosed] = asyncio.get_running_loop().create_future()

    async def handler(ws: wsline.WebSocket) -> None:
        try:
            await echo(ws)
        except wsline.ConnectionClosed as exc:
            ended.set_result(exc)

    async with TestClient(handler, compression=None, **FAST) as client:
        async with client.websocket("/", compression=None) as ws:
            pair = pair_of(ws)
            before = pair.client_to_server.delivered  # the handshake's bytes
            pair.client_to_server.cut_after(bytes=100)
            await ws.send(b"z" * 1000)  # the frame is cut after its header and 92 bytes
            with pytest.raises(wsline.ConnectionClosedError) as info:
                await ws.recv()
            assert info.value.code == 1006
        exc = await asyncio.wait_for(ended, 1)
        assert isinstance(exc, wsline.ConnectionClosedError) and exc.code == 1006
        assert pair.client_to_server.delivered - before == 100


async def test_reset_in_the_middle_of_a_fragmented_message() -> None:
    ended: asyncio.Future[wsline.ConnectionClosed] = asyncio.get_running_loop().create_future()

    async def handler(ws: wsline.WebSocket) -> None:
        try:
            await echo(ws)
        except wsline.ConnectionClosed as exc:
            ended.set_result(exc)

    async with TestClient(handler, **FAST) as client:
        async with client.websocket("/") as ws:
            pair = pair_of(ws)

            async def pieces() -> Any:
                yield "first "
                await asyncio.sleep(0.01)
                pair.reset()
                await asyncio.sleep(0.01)
                yield "never"

            with pytest.raises(wsline.ConnectionClosedError) as info:
                await ws.send(pieces())
            assert info.value.code == 1006
        assert (await asyncio.wait_for(ended, 1)).code == 1006
        assert pair.closed


async def test_faults_can_be_set_before_the_handshake() -> None:
    async with TestClient(echo, **FAST) as client:
        conn = client.websocket("/")
        conn.pair.client_to_server.cut_after(bytes=20)  # in the middle of the request head
        with pytest.raises(wsline.InvalidHandshake, match="closed the connection"):
            await conn


# ------------------------------------------------------------------ the pieces


async def test_open_websocket_against_a_raw_stream_server() -> None:
    """A wsline client and a hand-driven server that answers the handshake wrongly."""

    async def bad_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: wrong\r\n\r\n"
        )

    with pytest.raises(wsline.InvalidHandshake, match="Sec-WebSocket-Accept"):
        await open_websocket(stream_server(bad_server), "ws://raw/", **FAST)
    with pytest.raises(ValueError, match="TLS"):
        await open_websocket(stream_server(bad_server), "wss://raw/")


async def test_open_connection_and_open_websocket_on_a_server_protocol_and_a_pair_of_your_own() -> None:
    async with TestClient(echo, **FAST) as client:
        pair = TransportPair(window=1024)
        ws = await open_websocket(client.server_protocol(), "ws://testserver/x", pair=pair, **FAST)
        assert pair_of(ws) is pair
        await ws.send("own pair")
        assert await ws.recv() == "own pair"
        await ws.close()
        reader, writer = await open_connection(client.server_protocol())
        writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n"), 1)).startswith(b"HTTP/1.1 426")
        writer.close()
