"""Happy paths and API of the asyncio server and client, on real loopback sockets."""

from __future__ import annotations

import array
import asyncio
import logging
import os
import socket
import time
from collections.abc import AsyncIterator

import pytest

import wsline
from conftest import HOST, client, echo, ws_url
from wsline import State
from wsline.protocol import frames
from wsline.protocol.handshake import Headers

pytestmark = pytest.mark.asyncio

MiB = 1024 * 1024


async def wait_for_condition(predicate, timeout: float = 1.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


# ---------------------------------------------------------------------- echo


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_echo_text_and_binary_types(start_server, compression):
    server = await start_server(echo, compression=compression)
    async with client(ws_url(server), compression=compression) as ws:
        await ws.send("héllo wörld ✓")
        reply = await ws.recv()
        assert reply == "héllo wörld ✓"
        assert type(reply) is str

        for payload in (b"\x00\x01\xff" * 20, bytearray(b"bytearray!"), memoryview(b"memoryview bytes")):
            await ws.send(payload)
            reply = await ws.recv()
            assert type(reply) is bytes
            assert reply == bytes(payload)


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_memoryview_with_multibyte_items_sent_as_raw_bytes(start_server, compression):
    """A memoryview over ints/floats goes out as its bytes, whichever side sends it."""
    data = array.array("i", range(40))
    floats = array.array("d", [0.5, 1.5, -2.25])

    async def handler(ws):
        await ws.send(memoryview(floats))
        await echo(ws)

    server = await start_server(handler, compression=compression)
    async with client(ws_url(server), compression=compression) as ws:
        assert await ws.recv() == floats.tobytes()
        await ws.send(memoryview(data))
        assert await ws.recv() == data.tobytes()
        await ws.send([memoryview(data), memoryview(floats)])
        assert await ws.recv() == data.tobytes() + floats.tobytes()


async def test_echo_memoryview_slice(echo_server):
    data = memoryview(bytes(range(256)))[10:50]
    async with client(ws_url(echo_server)) as ws:
        await ws.send(data)
        assert await ws.recv() == bytes(range(10, 50))


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_empty_messages(start_server, compression):
    server = await start_server(echo, compression=compression)
    async with client(ws_url(server), compression=compression) as ws:
        await ws.send("")
        assert await ws.recv() == ""
        await ws.send(b"")
        reply = await ws.recv()
        assert reply == b""
        assert type(reply) is bytes
        # Forced compression of an empty message.
        await ws.send(b"", compress=True)
        assert await ws.recv() == b""
        await ws.send("after")
        assert await ws.recv() == "after"


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_one_mebibyte_messages(start_server, compression):
    server = await start_server(echo, compression=compression, max_size=2 * MiB)
    binary = os.urandom(MiB)
    text = "0123456789abcdef" * (MiB // 16)
    async with client(ws_url(server), compression=compression, max_size=2 * MiB) as ws:
        await ws.send(binary)
        assert await ws.recv() == binary
        await ws.send(text)
        assert await ws.recv() == text


async def test_many_small_messages_in_order(echo_server):
    async with client(ws_url(echo_server)) as ws:
        for i in range(200):
            await ws.send(f"m{i}")
        got = [await ws.recv() for _ in range(200)]
    assert got == [f"m{i}" for i in range(200)]


# ------------------------------------------------------------- fragmentation


async def test_fragmented_send_from_list(echo_server):
    async with client(ws_url(echo_server)) as ws:
        await ws.send(["frag", "ment", "ed ✓"])
        assert await ws.recv() == "fragmented ✓"
        await ws.send([b"ab", bytearray(b"cd"), memoryview(b"ef")])
        reply = await ws.recv()
        assert reply == b"abcdef"
        assert type(reply) is bytes


async def test_fragmented_send_from_async_generator(echo_server):
    async def pieces() -> AsyncIterator[bytes]:
        for i in range(5):
            await asyncio.sleep(0.01)
            yield bytes([i]) * 3

    async def text_pieces() -> AsyncIterator[str]:
        for part in ("one ", "two ", "three"):
            await asyncio.sleep(0)
            yield part

    async with client(ws_url(echo_server)) as ws:
        await ws.send(pieces())
        assert await ws.recv() == b"\x00\x00\x00\x01\x01\x01\x02\x02\x02\x03\x03\x03\x04\x04\x04"
        await ws.send(text_pieces())
        assert await ws.recv() == "one two three"


async def test_fragments_are_really_fragments_on_the_wire(raw_server):
    """A list is sent as several frames (first TEXT, then CONT, last with FIN)."""
    got: asyncio.Future[list] = asyncio.get_running_loop().create_future()

    async def server(peer):
        await peer.accept()
        frames_seen = [await peer.read_frame() for _ in range(3)]
        got.set_result(frames_seen)
        await peer.read_close()
        await peer.send_close(1000)

    port = await raw_server(server)
    async with client(f"ws://{HOST}:{port}/", compression=None) as ws:
        await ws.send(["a", "b", "c"])
        seen = await asyncio.wait_for(got, 2)
    assert [(f.opcode, f.fin, f.payload, f.masked) for f in seen] == [
        (1, False, b"a", True),
        (0, False, b"b", True),
        (0, True, b"c", True),
    ]


async def test_concurrent_send_waits_for_fragmented_message(echo_server):
    """A whole message sent while a fragmented one is in flight does not interleave."""
    gate = asyncio.Event()

    async def slow() -> AsyncIterator[str]:
        yield "first-"
        await gate.wait()
        yield "second"

    async with client(ws_url(echo_server)) as ws:
        frag = asyncio.ensure_future(ws.send(slow()))
        await asyncio.sleep(0.02)
        other = asyncio.ensure_future(ws.send("other"))
        await asyncio.sleep(0.02)
        gate.set()
        await asyncio.wait_for(asyncio.gather(frag, other), 2)
        assert await ws.recv() == "first-second"
        assert await ws.recv() == "other"


# -------------------------------------------------------------- iteration


async def test_async_for_ends_cleanly_on_normal_close_server_side(start_server):
    received: list = []
    done = asyncio.Event()

    async def handler(ws):
        async for message in ws:
            received.append(message)
        done.set()

    server = await start_server(handler)
    async with client(ws_url(server)) as ws:
        await ws.send("a")
        await ws.send(b"b")
        await ws.send("c")
    await asyncio.wait_for(done.wait(), 2)
    assert received == ["a", b"b", "c"]


async def test_async_for_ends_cleanly_on_normal_close_client_side(start_server):
    async def handler(ws):
        for i in range(5):
            await ws.send(str(i))
        # returning closes with 1000

    server = await start_server(handler)
    async with client(ws_url(server)) as ws:
        got = [message async for message in ws]
        assert got == ["0", "1", "2", "3", "4"]
        assert ws.close_code == 1000


async def test_async_for_ends_on_1001(start_server):
    async def handler(ws):
        await ws.send("bye")
        await ws.close(1001, "going away")

    server = await start_server(handler)
    async with client(ws_url(server)) as ws:
        got = [message async for message in ws]
    assert got == ["bye"]
    assert ws.close_code == 1001


# ---------------------------------------------------------------- timeouts


async def test_recv_timeout_then_connection_still_usable(echo_server):
    async with client(ws_url(echo_server)) as ws:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            await ws.recv(timeout=0.1)
        elapsed = time.monotonic() - start
        assert 0.08 <= elapsed < 1.0
        assert ws.open
        assert ws.state is State.OPEN
        await ws.send("still here")
        assert await ws.recv(timeout=1) == "still here"
        # A timeout again, and then once more a normal exchange.
        with pytest.raises(asyncio.TimeoutError):
            await ws.recv(timeout=0.05)
        await ws.send(b"again")
        assert await ws.recv() == b"again"


async def test_recv_timeout_zero_with_queued_message(echo_server):
    async with client(ws_url(echo_server)) as ws:
        await ws.send("x")
        await asyncio.sleep(0.1)  # the echo is queued by now
        assert await ws.recv(timeout=0) == "x"


async def test_concurrent_recv_is_refused(echo_server):
    async with client(ws_url(echo_server)) as ws:
        first = asyncio.ensure_future(ws.recv())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError):
            await ws.recv()
        await ws.send("for the first")
        assert await asyncio.wait_for(first, 1) == "for the first"


# -------------------------------------------------------------------- ping


async def test_ping_resolves_with_rtt(echo_server):
    async with client(ws_url(echo_server)) as ws:
        rtt = await asyncio.wait_for(ws.ping(), 1)
        assert isinstance(rtt, float)
        assert 0 <= rtt < 1
        assert ws.latency == pytest.approx(rtt)
        rtt2 = await asyncio.wait_for(ws.ping("custom payload"), 1)
        assert isinstance(rtt2, float)
        rtt3 = await asyncio.wait_for(ws.ping(b"\x00\x01"), 1)
        assert rtt3 >= 0


async def test_server_side_ping(start_server):
    rtts: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def handler(ws):
        rtts.set_result(await ws.ping())
        await ws.recv()

    server = await start_server(handler)
    async with client(ws_url(server)):
        rtt = await asyncio.wait_for(rtts, 1)
    assert isinstance(rtt, float)
    assert rtt >= 0


async def test_several_pings_in_flight(echo_server):
    async with client(ws_url(echo_server)) as ws:
        waiters = [ws.ping() for _ in range(5)]
        rtts = await asyncio.wait_for(asyncio.gather(*waiters), 1)
        assert all(isinstance(r, float) and r >= 0 for r in rtts)


# ------------------------------------------------------------------ guarded


async def test_guarded_calls_while_open(echo_server):
    async with client(ws_url(echo_server)) as ws:
        assert await ws.send_guarded("guarded") is True
        assert await ws.recv_guarded() == ("guarded", True)
        assert await ws.send_guarded(b"bin") is True
        assert await ws.recv_guarded(timeout=1) == (b"bin", True)
        # A timeout is reported as failure too, without raising.
        assert await ws.recv_guarded(timeout=0.05) == (None, False)
        assert ws.open


async def test_guarded_calls_after_peer_closed(start_server):
    async def handler(ws):
        await ws.close(1000, "done")

    server = await start_server(handler)
    async with client(ws_url(server)) as ws:
        assert await ws.recv_guarded(timeout=1) == (None, False)
        await asyncio.wait_for(ws.wait_closed(), 1)
        assert await ws.send_guarded("too late") is False
        assert await ws.send_guarded(b"too late") is False
        assert await ws.recv_guarded() == (None, False)
        assert ws.close_code == 1000
        assert ws.close_reason == "done"


async def test_guarded_calls_after_peer_reset(start_server):
    async def handler(ws):
        ws.abort()

    server = await start_server(handler)
    async with client(ws_url(server)) as ws:
        assert await ws.recv_guarded(timeout=1) == (None, False)
        assert await ws.send_guarded("x") is False
        assert ws.close_code == 1006


# ------------------------------------------------------------------- close


async def test_close_code_and_reason_reach_the_server(start_server):
    seen: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handler(ws):
        try:
            await ws.recv()
        except wsline.ConnectionClosed as exc:
            seen.set_result((exc, ws.close_code, ws.close_reason))

    server = await start_server(handler)
    async with client(ws_url(server)) as ws:
        await ws.close(4000, "custom bye ✓")
        assert ws.state is State.CLOSED
        # The server echoes the code (RFC 6455 5.5.1).
        assert ws.close_code == 4000
        assert ws.close_reason == "custom bye ✓"
    exc, code, reason = await asyncio.wait_for(seen, 1)
    assert isinstance(exc, wsline.ConnectionClosedError)
    assert (exc.code, exc.reason, exc.initiator) == (4000, "custom bye ✓", "remote")
    assert (code, reason) == (4000, "custom bye ✓")


@pytest.mark.parametrize("code", [1000, 1001])
async def test_normal_close_raises_connection_closed_ok(start_server, code):
    seen: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handler(ws):
        try:
            await ws.recv()
        except wsline.ConnectionClosed as exc:
            seen.set_result(exc)

    server = await start_server(handler)
    ws = await client(ws_url(server))
    await ws.close(code, "reason")
    exc = await asyncio.wait_for(seen, 1)
    assert type(exc) is wsline.ConnectionClosedOK
    assert (exc.code, exc.reason, exc.initiator) == (code, "reason", "remote")

    # The closing side sees ConnectionClosedOK too, initiated locally.
    with pytest.raises(wsline.ConnectionClosedOK) as info:
        await ws.recv()
    assert info.value.code == code
    assert info.value.initiator == "local"
    with pytest.raises(wsline.ConnectionClosedOK):
        await ws.send("after close")


async def test_abnormal_close_code_raises_connection_closed_error(start_server):
    async def handler(ws):
        await ws.close(4321, "app error")

    server = await start_server(handler)
    async with client(ws_url(server)) as ws:
        with pytest.raises(wsline.ConnectionClosedError) as info:
            await ws.recv()
        assert not isinstance(info.value, wsline.ConnectionClosedOK)
        assert (info.value.code, info.value.reason, info.value.initiator) == (4321, "app error", "remote")
        assert "4321" in str(info.value)
        # async for propagates ConnectionClosedError (it only swallows OK closes).
        with pytest.raises(wsline.ConnectionClosedError):
            async for _ in ws:
                pass


async def test_close_rejects_invalid_arguments_and_stays_open(echo_server):
    async with client(ws_url(echo_server)) as ws:
        for args in [(1005,), (1006,), (999,), (1000, "r" * 124)]:
            with pytest.raises(ValueError):
                await ws.close(*args)
            assert ws.open
        await ws.send("still open")
        assert await ws.recv() == "still open"


async def test_close_is_idempotent(echo_server):
    ws = await client(ws_url(echo_server))
    await ws.close()
    await ws.close()
    await ws.close(4000)
    assert ws.close_code == 1000
    assert ws.state is State.CLOSED


# -------------------------------------------------------- request attributes


async def test_request_attributes_on_the_server(start_server):
    seen: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handler(ws):
        seen.set_result(ws.request)
        await ws.recv()

    server = await start_server(handler)
    url = ws_url(server, "/chat/r%C3%A9sum%C3%A9?room=42&name=a%20b&flag=&room=43")
    async with client(url, origin="https://app.example", headers={"X-Token": "secret-123"}) as ws:
        request = await asyncio.wait_for(seen, 1)
        assert ws.request.path == "/chat/résumé"
    assert request.method == "GET"
    assert request.path == "/chat/résumé"
    assert request.query == {"room": "42", "name": "a b", "flag": ""}
    assert request.query_string == "room=42&name=a%20b&flag=&room=43"
    assert request.origin == "https://app.example"
    assert request.headers["X-Token"] == "secret-123"
    assert request.headers.get("x-token") == "secret-123"  # case-insensitive
    assert request.headers["Host"] == f"{HOST}:{server.port}"
    assert request.headers["Sec-WebSocket-Version"] == "13"


async def test_no_origin_when_client_passes_none(start_server):
    seen: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handler(ws):
        seen.set_result(ws.request.origin)

    server = await start_server(handler)
    async with client(ws_url(server)):
        assert await asyncio.wait_for(seen, 1) is None


async def test_headers_as_list_of_pairs(start_server):
    seen: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handler(ws):
        seen.set_result(ws.request.headers.get_all("X-Multi"))

    server = await start_server(handler)
    async with client(ws_url(server), headers=[("X-Multi", "1"), ("X-Multi", "2")]):
        assert await asyncio.wait_for(seen, 1) == ["1", "2"]


# ------------------------------------------------------------- subprotocols


async def _negotiated(start_server, server_kwargs, client_protocols):
    seen: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handler(ws):
        seen.set_result(ws.subprotocol)
        await ws.recv()

    server = await start_server(handler, **server_kwargs)
    async with client(ws_url(server), subprotocols=client_protocols) as ws:
        server_side = await asyncio.wait_for(seen, 1)
        return server_side, ws.subprotocol, ws.response.headers.get_all("Sec-WebSocket-Protocol")


async def test_subprotocol_server_preference_wins(start_server):
    server_side, client_side, header = await _negotiated(
        start_server, {"subprotocols": ["chat.v2", "chat.v1"]}, ["chat.v1", "chat.v2"]
    )
    assert server_side == client_side == "chat.v2"
    assert header == ["chat.v2"]


async def test_subprotocol_first_common_one(start_server):
    server_side, client_side, _ = await _negotiated(
        start_server, {"subprotocols": ["x", "chat.v1"]}, ["chat.v2", "chat.v1"]
    )
    assert server_side == client_side == "chat.v1"


async def test_subprotocol_client_offered_none(start_server):
    server_side, client_side, header = await _negotiated(start_server, {"subprotocols": ["chat.v1"]}, None)
    assert server_side is None
    assert client_side is None
    assert header == []


async def test_subprotocol_no_match(start_server):
    server_side, client_side, header = await _negotiated(
        start_server, {"subprotocols": ["chat.v1"]}, ["other", "another"]
    )
    assert server_side is None
    assert client_side is None
    assert header == []


async def test_subprotocol_server_has_none_configured(start_server):
    server_side, client_side, _ = await _negotiated(start_server, {}, ["chat.v1"])
    assert server_side is None
    assert client_side is None


async def test_select_subprotocol_callback(start_server):
    calls = []

    def select(request, offered):
        calls.append((request.path, list(offered)))
        return offered[-1]

    server_side, client_side, _ = await _negotiated(
        start_server, {"select_subprotocol": select, "subprotocols": ["a"]}, ["a", "b", "c"]
    )
    assert server_side == client_side == "c"
    assert calls == [("/", ["a", "b", "c"])]


async def test_select_subprotocol_callback_returning_none(start_server):
    server_side, client_side, _ = await _negotiated(
        start_server, {"select_subprotocol": lambda request, offered: None}, ["a"]
    )
    assert server_side is None
    assert client_side is None


async def test_client_rejects_subprotocol_it_did_not_offer(raw_server):
    async def server(peer):
        await peer.accept([("Sec-WebSocket-Protocol", "evil")])
        await peer.read_eof()

    port = await raw_server(server)
    with pytest.raises(wsline.NegotiationError) as info:
        await client(f"ws://{HOST}:{port}/", subprotocols=["good"])
    assert isinstance(info.value, wsline.InvalidHandshake)
    assert "evil" in str(info.value)

    # Also when it offered no subprotocol at all.
    with pytest.raises(wsline.InvalidHandshake):
        await client(f"ws://{HOST}:{port}/")


# ------------------------------------------------------ addresses and state


async def test_remote_and_local_addresses(start_server):
    seen: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handler(ws):
        seen.set_result((ws.remote_address, ws.local_address))
        await ws.recv()

    server = await start_server(handler)
    async with client(ws_url(server)) as ws:
        server_remote, server_local = await asyncio.wait_for(seen, 1)
        assert ws.remote_address[:2] == (HOST, server.port)
        assert server_local[:2] == (HOST, server.port)
        assert server_remote[:2] == ws.local_address[:2]
        assert server_remote[0] == HOST
    assert server.port in server.ports


async def test_state_transitions(start_server):
    seen: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handler(ws):
        before = (ws.state, ws.open)
        try:
            await ws.recv()
        except wsline.ConnectionClosedOK:
            pass
        seen.set_result((before, ws.state))

    server = await start_server(handler)
    ws = await client(ws_url(server))
    assert ws.state is State.OPEN
    assert ws.open
    assert ws.is_client
    assert ws.close_code is None
    assert ws.close_reason == ""
    closer = asyncio.ensure_future(ws.close())
    await asyncio.sleep(0)  # the close frame is out; no reply yet
    assert ws.state is State.CLOSING
    assert not ws.open
    await asyncio.wait_for(closer, 2)
    assert ws.state is State.CLOSED
    assert not ws.open
    assert ws.close_code == 1000
    (server_before, server_after) = await asyncio.wait_for(seen, 1)
    assert server_before == (State.OPEN, True)
    assert server_after in (State.CLOSED, State.CLOSING)


async def test_repr_and_ids(echo_server):
    async with client(ws_url(echo_server)) as ws:
        text = repr(ws)
        assert "client" in text
        assert "OPEN" in text
        assert ws.id


# ------------------------------------------------------- server speaks first


async def test_server_sends_first(start_server):
    async def handler(ws):
        await ws.send("welcome")
        await ws.send(b"\x01\x02")
        await ws.recv()

    server = await start_server(handler)
    async with client(ws_url(server)) as ws:
        assert await ws.recv(timeout=1) == "welcome"
        assert await ws.recv(timeout=1) == b"\x01\x02"


async def test_first_frame_in_same_segment_as_101(raw_server):
    """The 101 and the first frames arrive in one TCP write; nothing is lost."""
    tail = frames.build_frame(1, b"hello in the 101 segment") + frames.build_frame(2, b"\xffbin")

    async def server(peer):
        await peer.accept(tail=tail)
        frame = await peer.read_frame()
        await peer.send_frame(frame.opcode, frame.payload)
        await peer.read_close()
        await peer.send_close(1000)

    port = await raw_server(server)
    async with client(f"ws://{HOST}:{port}/", compression=None) as ws:
        assert await ws.recv(timeout=1) == "hello in the 101 segment"
        assert await ws.recv(timeout=1) == b"\xffbin"
        await ws.send("reply")
        assert await ws.recv(timeout=1) == "reply"


async def test_close_frame_in_same_segment_as_101(raw_server):
    tail = frames.build_frame(1, b"last words") + frames.build_frame(
        8, frames.build_close_payload(1000, "bye")
    )

    async def server(peer):
        await peer.accept(tail=tail)
        await peer.read_close()

    port = await raw_server(server)
    async with client(f"ws://{HOST}:{port}/", compression=None) as ws:
        assert await ws.recv(timeout=1) == "last words"
        with pytest.raises(wsline.ConnectionClosedOK) as info:
            await ws.recv(timeout=1)
        assert (info.value.code, info.value.reason) == (1000, "bye")


async def test_101_close_frame_and_fin_together(raw_server):
    """The server accepts, fails the connection with 1008 and hangs up, all at once."""
    tail = frames.build_frame(8, frames.build_close_payload(1008, "policy"))

    async def server(peer):
        await peer.accept(tail=tail)
        peer.writer.write_eof()

    port = await raw_server(server)
    ws = await client(f"ws://{HOST}:{port}/", compression=None)
    with pytest.raises(wsline.ConnectionClosedError) as info:
        await ws.recv(timeout=1)
    assert (info.value.code, info.value.reason) == (1008, "policy")
    await asyncio.wait_for(ws.wait_closed(), 1)
    assert ws.close_code == 1008


async def test_client_data_right_after_handshake_request(start_server, raw_client):
    """Frames pipelined behind the upgrade request (same write) are parsed after the handshake."""
    import base64

    from wsline.protocol.handshake import accept_key

    server = await start_server(echo, compression=None)
    peer = await raw_client(server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET / HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    await peer.send(request + peer.frame(1, b"pipelined"))
    response = await peer.read_response()
    assert response.status == 101
    assert response.get("Sec-WebSocket-Accept") == accept_key(key)
    frame = await peer.read_frame()
    assert (frame.opcode, frame.payload, frame.masked) == (1, b"pipelined", False)
    await peer.send_close(1000)
    assert await peer.read_close() == (1000, "")


# --------------------------------------------------------------- TCP_NODELAY


def _nodelay(ws) -> int:
    sock = ws._transport.get_extra_info("socket")
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


async def test_tcp_nodelay_on_both_sides(start_server):
    seen: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handler(ws):
        seen.set_result(_nodelay(ws))
        await ws.recv()

    server = await start_server(handler)
    async with client(ws_url(server)) as ws:
        assert _nodelay(ws) != 0
        assert await asyncio.wait_for(seen, 1) != 0


# ------------------------------------------------------------ server close


async def test_server_close_sends_1001_and_waits_for_handlers(start_server):
    handler_done = asyncio.Event()
    handler_saw: list = []

    async def handler(ws):
        try:
            async for message in ws:
                await ws.send(message)
        finally:
            handler_saw.append(ws.close_code)
            handler_done.set()

    server = await start_server(handler)
    port = server.port
    clients = [await client(ws_url(server)) for _ in range(3)]
    for ws in clients:
        await ws.send("ping")
        assert await ws.recv() == "ping"
    assert len(server.connections) == 3

    start = time.monotonic()
    await asyncio.wait_for(server.close(), 2)
    assert time.monotonic() - start < 1.5
    assert handler_done.is_set()
    assert len(handler_saw) == 3
    assert not server.connections
    for ws in clients:
        with pytest.raises(wsline.ConnectionClosedOK) as info:
            await ws.recv()
        assert info.value.code == 1001
        assert info.value.reason == "server shutting down"
        assert info.value.initiator == "remote"
        await asyncio.wait_for(ws.wait_closed(), 1)
        assert ws.state is State.CLOSED

    # No more connections are accepted.
    with pytest.raises(OSError):
        await client(f"ws://{HOST}:{port}/")


async def test_server_close_waits_for_handler_cleanup(start_server):
    steps: list[str] = []

    async def handler(ws):
        try:
            await ws.recv()
        except wsline.ConnectionClosed:
            await asyncio.sleep(0.2)  # cleanup after the connection closed
            steps.append("cleanup done")

    server = await start_server(handler)
    ws = await client(ws_url(server))
    await asyncio.wait_for(server.close(timeout=1), 2)
    assert steps == ["cleanup done"]
    await ws.wait_closed()


async def test_server_close_cancels_stuck_handlers(start_server):
    outcome: list[str] = []
    stuck = asyncio.Event()

    async def handler(ws):
        try:
            await ws.recv()
        except wsline.ConnectionClosed:
            try:
                stuck.set()
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                outcome.append("cancelled")
                raise

    server = await start_server(handler)
    ws = await client(ws_url(server))
    start = time.monotonic()
    await asyncio.wait_for(server.close(timeout=0.3), 2)
    assert time.monotonic() - start < 1.5
    try:
        assert stuck.is_set()
        assert outcome == ["cancelled"], "the handler is still running after Server.close() returned"
    finally:
        # Do not leave the stuck handler behind for the rest of the session.
        for task in asyncio.all_tasks():
            if "_ServerProtocol._run" in repr(task.get_coro()):
                task.cancel()
        await ws.wait_closed()


async def test_server_close_with_custom_code(start_server):
    server = await start_server(echo)
    ws = await client(ws_url(server))
    await asyncio.wait_for(server.close(1012, "restarting"), 2)
    with pytest.raises(wsline.ConnectionClosedError) as info:
        await ws.recv()
    assert (info.value.code, info.value.reason) == (1012, "restarting")


async def test_serve_as_awaitable_and_wait_closed(start_server):
    server = await wsline.serve(echo, HOST, 0, ping_interval=None, close_timeout=0.5)
    try:
        async with client(ws_url(server)) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
    finally:
        await server.close()
    await asyncio.wait_for(server.wait_closed(), 1)
    # A second close is a no-op.
    await asyncio.wait_for(server.close(), 1)


async def test_handler_returning_closes_with_1000(start_server):
    async def handler(ws):
        await ws.send("only message")

    server = await start_server(handler)
    async with client(ws_url(server)) as ws:
        assert await ws.recv() == "only message"
        with pytest.raises(wsline.ConnectionClosedOK) as info:
            await ws.recv()
        assert info.value.code == 1000
        assert info.value.initiator == "remote"
        await asyncio.wait_for(ws.wait_closed(), 1)
        assert ws.close_code == 1000


# ------------------------------------------------------------ handler errors


async def test_handler_exception_closes_1011_reports_and_logs(start_server, caplog):
    caplog.set_level(logging.DEBUG, logger="wsline")
    boom = ValueError("boom in handler")

    async def handler(ws):
        await ws.recv()
        raise boom

    server = await start_server(handler)
    async with client(ws_url(server, "/boom?x=1")) as ws:
        local_port = ws.local_address[1]
        await ws.send("trigger")
        with pytest.raises(wsline.ConnectionClosedError) as info:
            await ws.recv()
        assert info.value.code == 1011
        assert info.value.reason == "internal error"

    error, conn = await asyncio.wait_for(server.errors.get(), 1)
    assert error is boom
    assert isinstance(conn, wsline.ConnectionInfo)
    assert conn.path == "/boom"
    assert conn.remote_address[:2] == (HOST, local_port)
    assert conn.id
    assert len(server.errors) == 0
    assert server.errors.dropped == 0

    failures = [r for r in caplog.records if r.name.startswith("wsline") and r.levelno >= logging.ERROR]
    assert failures, caplog.text
    assert any(r.exc_info and r.exc_info[1] is boom for r in failures)
    assert "boom in handler" in caplog.text


async def test_error_channel_async_iteration_ends_after_close(start_server):
    async def handler(ws):
        raise RuntimeError(f"failed {ws.request.path}")

    server = await start_server(handler)
    for path in ("/one", "/two"):
        async with client(ws_url(server, path)) as ws:
            with pytest.raises(wsline.ConnectionClosedError):
                await ws.recv()
    await server.close()
    items = [(str(error), info.path) async for error, info in server.errors]
    assert sorted(items) == [("failed /one", "/one"), ("failed /two", "/two")]


async def test_error_channel_is_bounded(start_server):
    async def handler(ws):
        raise ValueError(ws.request.path)

    server = await start_server(handler, errors_maxlen=2)
    for i in range(5):
        async with client(ws_url(server, f"/{i}")) as ws:
            with pytest.raises(wsline.ConnectionClosedError) as info:
                await ws.recv()
            assert info.value.code == 1011
    await wait_for_condition(lambda: len(server.errors) + server.errors.dropped == 5, what="5 errors")
    assert len(server.errors) == 2
    assert server.errors.dropped == 3
    # The oldest were dropped.
    first = server.errors.get_nowait()
    second = server.errors.get_nowait()
    assert first is not None and second is not None
    assert [str(first.error), str(second.error)] == ["/3", "/4"]
    assert server.errors.get_nowait() is None


# ------------------------------------------------------------ HTTP answers


@pytest.mark.parametrize("with_length", [True, False])
async def test_process_request_response_becomes_invalid_status(start_server, with_length):
    body = b"token required\n"
    headers = [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")]
    if with_length:
        headers.append(("Content-Length", str(len(body))))

    def process_request(request):
        if request.headers.get("Authorization") != "Bearer good":
            return wsline.Response(401, headers=Headers(headers), body=body)
        return None

    server = await start_server(echo, process_request=process_request)
    with pytest.raises(wsline.InvalidStatus) as info:
        await client(ws_url(server))
    err = info.value
    assert err.status == 401
    assert err.body == body
    assert "expected 101, got 401" in str(err)
    assert "token required" in str(err)
    assert ("WWW-Authenticate", "Bearer") in err.headers

    # The right token goes through.
    async with client(ws_url(server), headers={"Authorization": "Bearer good"}) as ws:
        await ws.send("in")
        assert await ws.recv() == "in"


async def test_async_process_request(start_server):
    async def process_request(request):
        await asyncio.sleep(0.01)
        if request.path == "/forbidden":
            return wsline.Response(403, headers=Headers([("Content-Length", "4")]), body=b"nope")
        return None

    server = await start_server(echo, process_request=process_request)
    with pytest.raises(wsline.InvalidStatus) as info:
        await client(ws_url(server, "/forbidden"))
    assert info.value.status == 403
    assert info.value.body == b"nope"
    async with client(ws_url(server, "/fine")) as ws:
        await ws.send("ok")
        assert await ws.recv() == "ok"


async def test_process_request_serves_plain_http(start_server, raw_client):
    def process_request(request):
        if not request.is_upgrade:
            page = b"<h1>hi</h1>"
            return wsline.Response(
                200,
                headers=Headers([("Content-Type", "text/html"), ("Content-Length", str(len(page)))]),
                body=page,
            )
        return None

    server = await start_server(echo, process_request=process_request)
    peer = await raw_client(server.port)
    # HTTP/1.1 may keep the connection alive; "Connection: close" asks the server to hang up.
    await peer.send(f"GET /index.html HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
    response = await peer.read_response()
    assert response.status == 200
    assert response.body == b"<h1>hi</h1>"
    assert await peer.read_eof() == b""

    # The WebSocket endpoint still works next to the page.
    async with client(ws_url(server)) as ws:
        await ws.send("ws too")
        assert await ws.recv() == "ws too"


async def test_plain_http_get_gets_426(echo_server, raw_client):
    peer = await raw_client(echo_server.port)
    await peer.send(f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    response = await peer.read_response()
    assert response.status == 426
    assert (response.get("Upgrade") or "").lower() == "websocket"
    assert response.body
    assert await peer.read_eof() == b""


async def test_origin_allow_list(start_server):
    server = await start_server(echo, origins=["https://ok.example"])
    with pytest.raises(wsline.InvalidStatus) as info:
        await client(ws_url(server), origin="https://evil.example")
    assert info.value.status == 403
    assert "expected 101, got 403" in str(info.value)
    assert b"evil.example" in info.value.body

    # No Origin at all is refused too, unless None is listed.
    with pytest.raises(wsline.InvalidStatus) as info:
        await client(ws_url(server))
    assert info.value.status == 403

    async with client(ws_url(server), origin="https://ok.example") as ws:
        await ws.send("allowed")
        assert await ws.recv() == "allowed"


async def test_origin_allow_list_with_none(start_server):
    server = await start_server(echo, origins=[None, "https://ok.example"])
    async with client(ws_url(server)) as ws:
        await ws.send("no origin is fine")
        assert await ws.recv() == "no origin is fine"


# ------------------------------------------------------------- backpressure


async def test_write_backpressure_send_blocks_when_peer_does_not_read(start_server, raw_client):
    blocked: asyncio.Future = asyncio.get_running_loop().create_future()
    chunk = os.urandom(64 * 1024)
    write_limit = 16 * 1024

    async def handler(ws):
        sent = 0
        for _ in range(2000):  # at most 128 MiB: far beyond any kernel buffer
            try:
                await asyncio.wait_for(ws.send(chunk), 0.5)
            except (asyncio.TimeoutError, TimeoutError):
                blocked.set_result((sent, ws._transport.get_write_buffer_size()))
                ws.abort()
                return
            sent += 1
        blocked.set_result((sent, None))

    server = await start_server(handler, compression=None, write_limit=write_limit)
    peer = await raw_client(server.port, rcvbuf=4096)
    await peer.handshake()
    # ... and never reads again.
    sent, buffered = await asyncio.wait_for(blocked, 5)
    assert buffered is not None, f"send never blocked after {sent} messages"
    assert sent < 2000
    # The user-space buffer stays bounded: the high-water mark plus about one message.
    assert buffered <= write_limit + 2 * len(chunk)


async def test_write_backpressure_on_the_client(raw_server):
    stop = asyncio.Event()

    async def server(peer):
        await peer.accept()
        await stop.wait()  # never reads

    port = await raw_server(server)
    ws = await client(f"ws://{HOST}:{port}/", compression=None, write_limit=8 * 1024)
    chunk = os.urandom(64 * 1024)
    blocked = False
    for _ in range(2000):
        try:
            await asyncio.wait_for(ws.send(chunk), 0.5)
        except (asyncio.TimeoutError, TimeoutError):
            blocked = True
            break
    assert blocked
    assert ws._transport.get_write_buffer_size() <= 8 * 1024 + 2 * len(chunk)
    ws.abort()
    stop.set()
    await asyncio.wait_for(ws.wait_closed(), 1)


async def test_read_backpressure_pauses_and_resumes(start_server):
    reading = asyncio.Event()
    received: list[bytes] = []
    conn: asyncio.Future = asyncio.get_running_loop().create_future()
    count = 200
    chunk = b"x" * (64 * 1024)

    async def handler(ws):
        conn.set_result(ws)
        await reading.wait()
        for _ in range(count):
            received.append(await ws.recv())
        await ws.send("all read")
        await ws.recv_guarded()

    server = await start_server(handler, compression=None, max_queue=2)
    async with client(ws_url(server), compression=None) as ws:
        server_ws = await asyncio.wait_for(conn, 1)

        async def flood():
            for i in range(count):
                await ws.send(chunk[:-4] + i.to_bytes(4, "big"))

        sender = asyncio.ensure_future(flood())
        await wait_for_condition(lambda: server_ws._reading_paused, what="server to pause reading")
        # The server stopped reading: its queue stays small and the sender stalls.
        await asyncio.sleep(0.3)
        assert server_ws._reading_paused
        assert len(server_ws._messages) < 20
        assert not sender.done(), "the sender should stall while the server does not read"

        reading.set()
        await asyncio.wait_for(sender, 5)
        assert await ws.recv(timeout=5) == "all read"
        assert not server_ws._reading_paused
    assert len(received) == count
    assert [int.from_bytes(m[-4:], "big") for m in received] == list(range(count))


async def test_read_backpressure_on_the_client(start_server):
    count = 100
    go = asyncio.Event()

    async def handler(ws):
        for i in range(count):
            await ws.send(b"y" * 60000 + i.to_bytes(4, "big"))
        await go.wait()
        await ws.recv_guarded()

    server = await start_server(handler, compression=None)
    async with client(ws_url(server), compression=None, max_queue=4) as ws:
        await wait_for_condition(lambda: ws._reading_paused, what="client to pause reading")
        await asyncio.sleep(0.1)
        assert len(ws._messages) < 20
        got = [await ws.recv(timeout=2) for _ in range(count)]
        assert not ws._reading_paused
        go.set()
    assert [int.from_bytes(m[-4:], "big") for m in got] == list(range(count))


async def test_read_backpressure_with_messages_pipelined_behind_the_request(start_server, raw_client):
    import base64

    conn: asyncio.Future = asyncio.get_running_loop().create_future()
    release = asyncio.Event()

    async def handler(ws):
        conn.set_result(ws)
        await release.wait()

    server = await start_server(handler, compression=None, max_queue=2)
    peer = await raw_client(server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    upgrade = (
        f"GET / HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    await peer.send(upgrade + b"".join(peer.frame(1, b"early %d" % i) for i in range(3)))
    server_ws = await asyncio.wait_for(conn, 1)
    chunk = peer.frame(2, b"z" * 60000)

    async def flood():
        for _ in range(200):
            await peer.send(chunk)

    flooder = asyncio.ensure_future(flood())
    try:
        await asyncio.sleep(0.3)
        assert server_ws._reading_paused
        # Bounded like in test_read_backpressure_pauses_and_resumes, not 200 messages deep.
        assert len(server_ws._messages) < 20
        assert server_ws._transport.is_reading() is False
    finally:
        flooder.cancel()
        release.set()
        peer.abort()


async def test_read_backpressure_with_messages_in_the_101_segment(raw_server):
    stop = asyncio.Event()

    async def server(peer):
        await peer.accept(tail=b"".join(frames.build_frame(1, b"early %d" % i) for i in range(3)))
        chunk = frames.build_frame(2, b"z" * 60000)
        for _ in range(200):
            peer.writer.write(chunk)  # buffered by asyncio if the client stops reading
        await stop.wait()

    port = await raw_server(server)
    ws = await client(f"ws://{HOST}:{port}/", compression=None, max_queue=2)
    try:
        await asyncio.sleep(0.3)
        assert ws._reading_paused
        assert len(ws._messages) < 20
        assert ws._transport.is_reading() is False
    finally:
        stop.set()
        ws.abort()


# ------------------------------------------------- keepalive, pings, close callbacks


async def test_keepalive_ping_answered_by_the_pong_to_a_later_ping(raw_server):
    """A peer may answer only the latest of several pings (RFC 6455 5.5.3): that answers the keepalive too."""
    keepalive_seen = asyncio.Event()

    async def server(peer):
        await peer.accept()
        first = await peer.read_frame()
        assert first.opcode == 9
        keepalive_seen.set()  # not answered
        while True:
            frame = await peer.read_frame(timeout=5)
            if frame.opcode == 9:
                await peer.send_frame(10, frame.payload)  # from here on, every ping is answered
            elif frame.opcode == 8:
                return

    port = await raw_server(server)
    ws = await client(f"ws://{HOST}:{port}/", compression=None, ping_interval=0.3, ping_timeout=0.6)
    try:
        await asyncio.wait_for(keepalive_seen.wait(), 2)
        assert ws.latency is None
        rtt = await asyncio.wait_for(ws.ping(b"later"), 2)
        assert ws.latency == pytest.approx(rtt)
        assert len(ws._pings) == 0  # the keepalive ping was answered along with it
        await asyncio.sleep(0.9)  # past the first keepalive ping's timeout
        assert ws.state is State.OPEN
    finally:
        await ws.close()


async def test_several_pings_answered_by_the_last_pong(raw_server):
    async def server(peer):
        await peer.accept()
        payloads = [(await peer.read_frame()).payload for _ in range(3)]
        await peer.send_frame(10, payloads[-1])
        await peer.read_close()

    port = await raw_server(server)
    ws = await client(f"ws://{HOST}:{port}/", compression=None, ping_interval=None)
    try:
        pings = [ws.ping(), ws.ping(b"two"), ws.ping("three")]
        rtts = await asyncio.wait_for(asyncio.gather(*pings), 2)
        assert rtts[0] >= rtts[1] >= rtts[2] == ws.latency
        with pytest.raises(ValueError, match="125"):
            ws.ping(b"x" * 126)
    finally:
        await ws.close()


async def test_add_close_callback(start_server):
    conn: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handler(ws):
        conn.set_result(ws)
        await ws.wait_closed()

    server = await start_server(handler)
    called: list[object] = []
    async with client(ws_url(server)) as ws:
        server_ws = await asyncio.wait_for(conn, 1)
        server_ws.add_close_callback(called.append)
        ws.add_close_callback(called.append)
        await asyncio.sleep(0.01)
        assert called == []
    await asyncio.wait_for(server_ws.wait_closed(), 1)
    await wait_for_condition(lambda: len(called) == 2, what="both callbacks")
    assert set(map(id, called)) == {id(ws), id(server_ws)}
    late: list[object] = []
    ws.add_close_callback(late.append)  # closed already: called soon
    await wait_for_condition(lambda: late == [ws], what="the late callback")


async def test_backlog_is_zero_when_idle(echo_server):
    async with client(ws_url(echo_server), compression=None) as ws:
        assert ws.backlog == 0
        ws.send_nowait(b"a" * 10)
        ws.send_nowait(b"b" * 10)  # the second frame of a pass is corked
        assert ws.backlog == 16  # header, mask and payload
        assert await ws.recv() == b"a" * 10 and await ws.recv() == b"b" * 10
        assert ws.backlog == 0


async def test_pong_accepts_str_and_bytes(raw_server):
    got: asyncio.Future = asyncio.get_running_loop().create_future()

    async def server(peer):
        await peer.accept()
        got.set_result([(await peer.read_frame()).payload for _ in range(2)])
        await peer.read_close()

    port = await raw_server(server)
    ws = await client(f"ws://{HOST}:{port}/", compression=None, ping_interval=None)
    try:
        await ws.pong("hé")
        await ws.pong(bytearray(b"b"))
        assert await asyncio.wait_for(got, 2) == ["hé".encode(), b"b"]
    finally:
        await ws.close()
