"""TLS (with a throwaway trustme CA) and interoperability with the ``websockets`` library."""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

import wsline
from conftest import HOST, client, echo, ws_url

pytestmark = pytest.mark.asyncio

MiB = 1024 * 1024

websockets = pytest.importorskip("websockets")
from websockets.asyncio.client import connect as wsconnect  # noqa: E402
from websockets.asyncio.server import serve as wsserve  # noqa: E402
from websockets.exceptions import ConnectionClosed as WsConnectionClosed  # noqa: E402
from websockets.exceptions import InvalidStatus as WsInvalidStatus  # noqa: E402

# The websockets client would honour *_proxy environment variables: never here.
WS_CLIENT = {"proxy": None, "ping_interval": None, "close_timeout": 0.5, "open_timeout": 2}
WS_SERVER = {"ping_interval": None, "close_timeout": 0.5}


# ----------------------------------------------------------------------- TLS


async def test_wss_echo_with_trusted_ca(start_server, tls):
    server = await start_server(echo, ssl=tls.server_context)
    async with client(ws_url(server, "/secure", scheme="wss"), ssl=tls.client_context) as ws:
        await ws.send("over TLS ✓")
        assert await ws.recv() == "over TLS ✓"
        await ws.send(os.urandom(100_000))
        reply = await ws.recv()
        assert isinstance(reply, bytes)
        assert len(reply) == 100_000
        ssl_object = ws._transport.get_extra_info("ssl_object")
        assert ssl_object is not None
        assert ssl_object.version() in ("TLSv1.2", "TLSv1.3")


async def test_wss_hostname_localhost(start_server, tls):
    """Certificate checked against a name (SNI + hostname verification) via server_hostname."""
    server = await start_server(echo, ssl=tls.server_context)
    async with client(
        ws_url(server, scheme="wss"), ssl=tls.client_context, server_hostname="localhost"
    ) as ws:
        await ws.send("named")
        assert await ws.recv() == "named"


async def test_wss_close_codes_over_tls(start_server, tls):
    async def handler(ws):
        await ws.recv()
        await ws.close(4003, "tls bye")

    server = await start_server(handler, ssl=tls.server_context)
    async with client(ws_url(server, scheme="wss"), ssl=tls.client_context) as ws:
        await ws.send("go")
        with pytest.raises(wsline.ConnectionClosedError) as info:
            await ws.recv()
        assert (info.value.code, info.value.reason) == (4003, "tls bye")


async def test_wss_default_context_rejects_untrusted_certificate(start_server, tls):
    server = await start_server(echo, ssl=tls.server_context)
    with pytest.raises((wsline.InvalidHandshake, ssl.SSLError)) as info:
        await client(ws_url(server, scheme="wss"))
    text = str(info.value).lower()
    assert "certificate" in text or "verify" in text
    # The server survives the failed TLS handshake.
    async with client(ws_url(server, scheme="wss"), ssl=tls.client_context) as ws:
        await ws.send("still serving")
        assert await ws.recv() == "still serving"


async def test_wss_wrong_hostname_is_rejected(start_server, tls):
    server = await start_server(echo, ssl=tls.server_context)
    with pytest.raises((wsline.InvalidHandshake, ssl.SSLError)) as info:
        await client(ws_url(server, scheme="wss"), ssl=tls.client_context, server_hostname="wrong.example")
    text = str(info.value).lower()
    assert "certificate" in text or "hostname" in text or "verify" in text


async def test_plain_ws_client_against_tls_server_fails(start_server, tls):
    server = await start_server(echo, ssl=tls.server_context)
    with pytest.raises((wsline.InvalidHandshake, OSError, TimeoutError)):
        await client(ws_url(server), open_timeout=1)


async def test_ssl_argument_with_ws_scheme_is_refused(tls):
    with pytest.raises(ValueError):
        wsline.connect(f"ws://{HOST}:1/", ssl=tls.client_context)


async def test_websockets_client_over_tls(start_server, tls):
    server = await start_server(echo, ssl=tls.server_context)
    async with wsconnect(ws_url(server, scheme="wss"), ssl=tls.client_context, **WS_CLIENT) as ws:
        await ws.send("interop over TLS")
        assert await ws.recv() == "interop over TLS"


# --------------------------------- websockets client -> wsline server


@pytest_asyncio.fixture
async def big_echo_server(start_server) -> wsline.Server:
    return await start_server(echo, max_size=2 * MiB)


async def _exercise_websockets_client(server, compression):
    async with wsconnect(ws_url(server), compression=compression, max_size=2 * MiB, **WS_CLIENT) as ws:
        negotiated = ws.response.headers.get("Sec-WebSocket-Extensions")
        await ws.send("text from websockets ✓")
        reply = await ws.recv()
        assert reply == "text from websockets ✓"
        assert isinstance(reply, str)

        await ws.send(b"\x00\xffbinary")
        reply = await ws.recv()
        assert reply == b"\x00\xffbinary"
        assert isinstance(reply, bytes)

        big = os.urandom(MiB)
        await ws.send(big)
        assert await ws.recv() == big

        compressible = "abc" * (MiB // 3)
        await ws.send(compressible)
        assert await ws.recv() == compressible

        await ws.send(["frag", "mented"])
        assert await ws.recv() == "fragmented"

        await ws.send("")
        assert await ws.recv() == ""

        rtt = await (await ws.ping())
        assert rtt >= 0
        return negotiated


async def test_websockets_client_against_wsline_server_no_compression(big_echo_server):
    negotiated = await _exercise_websockets_client(big_echo_server, None)
    assert negotiated is None


async def test_websockets_client_against_wsline_server_with_permessage_deflate(big_echo_server):
    negotiated = await _exercise_websockets_client(big_echo_server, "deflate")
    assert negotiated is not None
    assert negotiated.startswith("permessage-deflate")


async def test_websockets_client_sees_wsline_close_code(start_server):
    async def handler(ws):
        await ws.recv()
        await ws.close(4005, "from wsline")

    server = await start_server(handler)
    async with wsconnect(ws_url(server), **WS_CLIENT) as ws:
        await ws.send("go")
        with pytest.raises(WsConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (4005, "from wsline")


async def test_wsline_server_sees_websockets_close_code(start_server):
    seen: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handler(ws):
        try:
            await ws.recv()
        except wsline.ConnectionClosed as exc:
            seen.set_result(exc)

    server = await start_server(handler)
    async with wsconnect(ws_url(server), **WS_CLIENT) as ws:
        await ws.close(4006, "from websockets")
    exc = await asyncio.wait_for(seen, 1)
    assert (exc.code, exc.reason, exc.initiator) == (4006, "from websockets", "remote")


async def test_websockets_client_subprotocol_and_rejection(start_server):
    server = await start_server(echo, subprotocols=["v2", "v1"], origins=["https://ok.example"])
    async with wsconnect(
        ws_url(server), subprotocols=["v1", "v2"], origin="https://ok.example", **WS_CLIENT
    ) as ws:
        assert ws.subprotocol == "v2"
    with pytest.raises(WsInvalidStatus) as info:
        async with wsconnect(ws_url(server), origin="https://bad.example", **WS_CLIENT):
            pass
    assert info.value.response.status_code == 403


# --------------------------------- wsline client -> websockets server


@pytest_asyncio.fixture
async def ws_server_factory() -> AsyncIterator:
    servers = []

    async def start(handler, **kwargs):
        server = await wsserve(handler, HOST, 0, **{**WS_SERVER, **kwargs})
        servers.append(server)
        return server, server.sockets[0].getsockname()[1]

    yield start
    for server in servers:
        server.close()
        await asyncio.wait_for(server.wait_closed(), 2)


async def _ws_echo(ws):
    try:
        async for message in ws:
            await ws.send(message)
    except WsConnectionClosed:
        pass


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_wsline_client_against_websockets_server(ws_server_factory, compression):
    _server, port = await ws_server_factory(_ws_echo, compression=compression, max_size=2 * MiB)
    async with client(f"ws://{HOST}:{port}/", compression=compression, max_size=2 * MiB) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
        if compression is None:
            assert extensions is None
        await ws.send("text from wsline ✓")
        reply = await ws.recv()
        assert reply == "text from wsline ✓"
        assert isinstance(reply, str)
        await ws.send(bytearray(b"\x01\x02\x03"))
        assert await ws.recv() == b"\x01\x02\x03"
        big = os.urandom(MiB)
        await ws.send(big)
        assert await ws.recv() == big
        compressible = "xyz" * (MiB // 3)
        await ws.send(compressible)
        assert await ws.recv() == compressible
        await ws.send([b"frag", b"mented"])
        assert await ws.recv() == b"fragmented"
        assert await ws.ping() >= 0


async def test_websockets_server_speaks_first_and_pushes(ws_server_factory):
    async def handler(ws):
        await ws.send("hello from websockets")
        for i in range(3):
            await ws.send(bytes([i]))
        await ws.recv()

    _server, port = await ws_server_factory(handler)
    async with client(f"ws://{HOST}:{port}/") as ws:
        assert await ws.recv(timeout=1) == "hello from websockets"
        assert [await ws.recv(timeout=1) for _ in range(3)] == [b"\x00", b"\x01", b"\x02"]


async def test_close_code_from_websockets_server_reaches_wsline_client(ws_server_factory):
    async def handler(ws):
        await ws.recv()
        await ws.close(4001, "bye from websockets")

    _server, port = await ws_server_factory(handler)
    async with client(f"ws://{HOST}:{port}/") as ws:
        await ws.send("go")
        with pytest.raises(wsline.ConnectionClosedError) as info:
            await ws.recv(timeout=1)
        assert (info.value.code, info.value.reason, info.value.initiator) == (
            4001,
            "bye from websockets",
            "remote",
        )
        await asyncio.wait_for(ws.wait_closed(), 1)
        assert ws.close_code == 4001


async def test_normal_close_from_websockets_server(ws_server_factory):
    async def handler(ws):
        await ws.send("only")

    _server, port = await ws_server_factory(handler)
    async with client(f"ws://{HOST}:{port}/") as ws:
        assert [m async for m in ws] == ["only"]
        assert ws.close_code == 1000


async def test_close_code_from_wsline_client_reaches_websockets_server(ws_server_factory):
    seen: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handler(ws):
        try:
            await ws.recv()
        except WsConnectionClosed as exc:
            seen.set_result((exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else None))

    _server, port = await ws_server_factory(handler)
    ws = await client(f"ws://{HOST}:{port}/")
    await ws.close(4002, "bye from wsline")
    assert await asyncio.wait_for(seen, 1) == (4002, "bye from wsline")
    assert ws.close_code == 4002
    assert ws.state is wsline.State.CLOSED


async def test_wsline_client_subprotocol_with_websockets_server(ws_server_factory):
    seen: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handler(ws):
        seen.set_result((ws.subprotocol, ws.request.path, ws.request.headers.get("X-Token")))
        await ws.wait_closed()

    _server, port = await ws_server_factory(handler, subprotocols=["b", "a"])
    async with client(f"ws://{HOST}:{port}/path?x=1", subprotocols=["a"], headers={"X-Token": "t"}) as ws:
        assert ws.subprotocol == "a"
        assert await asyncio.wait_for(seen, 1) == ("a", "/path?x=1", "t")


async def test_websockets_server_rejection_reaches_wsline_client(ws_server_factory):
    def process_request(connection, request):
        return connection.respond(401, "no entry\n")

    _server, port = await ws_server_factory(_ws_echo, process_request=process_request)
    with pytest.raises(wsline.InvalidStatus) as info:
        await client(f"ws://{HOST}:{port}/")
    assert info.value.status == 401
    assert b"no entry" in info.value.body
    assert "expected 101, got 401" in str(info.value)


async def test_wsline_client_over_tls_against_websockets_server(ws_server_factory, tls):
    _server, port = await ws_server_factory(_ws_echo, ssl=tls.server_context)
    async with client(f"wss://{HOST}:{port}/", ssl=tls.client_context) as ws:
        await ws.send("wss interop")
        assert await ws.recv() == "wss interop"
