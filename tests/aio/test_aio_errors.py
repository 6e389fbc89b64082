"""Error paths of the asyncio server and client, provoked by raw peers on real sockets."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
import zlib

import pytest

import wsline
from conftest import HOST, MASK, RawPeer, client, collect_garbage, echo, eventually, free_port, ws_url
from wsline.protocol import frames

pytestmark = pytest.mark.asyncio

NEVER_RETRIEVED = ("never retrieved", "Task was destroyed", "Unhandled exception")


def assert_no_unhandled(loop_errors, caplog) -> None:
    collect_garbage()
    assert loop_errors == [], loop_errors
    bad = [r for r in caplog.records if any(s in r.getMessage() for s in NEVER_RETRIEVED)]
    assert bad == [], [r.getMessage() for r in bad]


def set_bits(frame: bytes, bits: int) -> bytes:
    return bytes([frame[0] | bits]) + frame[1:]


# ------------------------------------------------------ protocol violations


def _c(payload: bytes, fin: bool = True, rsv1: bool = False, mask: bytes | None = MASK) -> bytes:
    return frames.build_frame(1, payload, fin=fin, rsv1=rsv1, mask=mask)


def _f(opcode: int, payload: bytes = b"", fin: bool = True, mask: bytes | None = MASK) -> bytes:
    return frames.build_frame(opcode, payload, fin=fin, mask=mask)


PROTOCOL_ERRORS = {
    "rsv1 without extension": _c(b"x", rsv1=True),
    "rsv2 set": set_bits(_c(b"x"), 0x20),
    "rsv3 set": set_bits(_c(b"x"), 0x10),
    "fragmented ping": _f(9, b"p", fin=False),
    "fragmented close": _f(8, b"\x03\xe8", fin=False),
    "ping payload 126 bytes": _f(9, b"p" * 126),
    "close payload 126 bytes": _f(8, b"\x03\xe8" + b"r" * 124),
    "continuation without start": _f(0, b"orphan"),
    "new message inside fragmented one": _c(b"first", fin=False) + _c(b"second"),
    "binary inside fragmented text": _c(b"first", fin=False) + _f(2, b"second"),
    "close with 1-byte payload": _f(8, b"\x03"),
    "close code 1005 on the wire": _f(8, (1005).to_bytes(2, "big")),
    "close code 1006 on the wire": _f(8, (1006).to_bytes(2, "big")),
    "close code 999": _f(8, (999).to_bytes(2, "big")),
    "close code 1004": _f(8, (1004).to_bytes(2, "big")),
    "close code 5000": _f(8, (5000).to_bytes(2, "big")),
    "length with most significant bit": bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 63) + MASK,
}


async def connect_raw(raw_client, server) -> RawPeer:
    peer = await raw_client(server.port)
    await peer.handshake()
    return peer


@pytest.mark.parametrize("data", PROTOCOL_ERRORS.values(), ids=PROTOCOL_ERRORS.keys())
async def test_malformed_frames_close_1002(start_server, raw_client, data):
    server = await start_server(echo, compression=None)
    peer = await connect_raw(raw_client, server)
    await peer.send(data)
    code, reason = await peer.read_close()
    assert code == 1002
    assert reason
    # The server closes the TCP connection right after failing it.
    assert await peer.read_eof() == b""


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
async def test_reserved_opcode_closes_1002(start_server, raw_client, opcode):
    server = await start_server(echo, compression=None)
    peer = await connect_raw(raw_client, server)
    await peer.send_frame(opcode, b"data")
    code, reason = await peer.read_close()
    assert code == 1002
    assert "opcode" in reason


@pytest.mark.parametrize("opcode", [1, 2, 9, 8])
async def test_unmasked_client_frame_closes_1002(start_server, raw_client, opcode):
    server = await start_server(echo, compression=None)
    peer = await connect_raw(raw_client, server)
    payload = frames.build_close_payload(1000) if opcode == 8 else b"hello"
    await peer.send_frame(opcode, payload, mask=None)
    code, reason = await peer.read_close()
    assert code == 1002
    assert "mask" in reason


async def test_handler_sees_protocol_error(start_server, raw_client):
    seen: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handler(ws):
        try:
            await ws.recv()
        except wsline.ConnectionClosed as exc:
            await ws.wait_closed()  # close_code is set once the connection is closed
            seen.set_result((exc, ws.close_code))

    server = await start_server(handler, compression=None)
    peer = await connect_raw(raw_client, server)
    await peer.send_frame(1, b"x", mask=None)
    assert (await peer.read_close())[0] == 1002
    exc, close_code = await asyncio.wait_for(seen, 1)
    assert type(exc) is wsline.ConnectionClosedError
    assert exc.code == 1002
    assert exc.initiator == "local"
    assert close_code == 1002


async def test_messages_before_bad_frame_are_delivered_first(start_server, raw_client):
    server = await start_server(echo, compression=None)
    peer = await connect_raw(raw_client, server)
    await peer.send(peer.frame(1, b"before") + peer.frame(2, b"also before") + peer.frame(3, b"bad"))
    first = await peer.read_frame()
    second = await peer.read_frame()
    assert (first.opcode, first.payload) == (1, b"before")
    assert (second.opcode, second.payload) == (2, b"also before")
    assert (await peer.read_close())[0] == 1002


INVALID_UTF8 = {
    "single frame": _c(b"abc\xff"),
    "overlong encoding": _c(b"\xc0\xaf"),
    "surrogate": _c(b"\xed\xa0\x80"),
    "truncated at end": _c(b"ok\xe2\x82"),
    "in second fragment": _c(b"ok", fin=False) + _f(0, b"\xc3\x28"),
    "truncated across last fragment": _c(b"ok", fin=False) + _f(0, b"\xe2\x82"),
    "close reason": _f(8, (1000).to_bytes(2, "big") + b"\xff\xfe"),
}


@pytest.mark.parametrize("data", INVALID_UTF8.values(), ids=INVALID_UTF8.keys())
async def test_invalid_utf8_closes_1007(start_server, raw_client, data):
    server = await start_server(echo, compression=None)
    peer = await connect_raw(raw_client, server)
    await peer.send(data)
    code, _ = await peer.read_close()
    assert code == 1007


async def test_invalid_utf8_detected_before_message_ends(start_server, raw_client):
    """An invalid first fragment fails at once; the server does not wait for the rest."""
    server = await start_server(echo, compression=None)
    peer = await connect_raw(raw_client, server)
    await peer.send_frame(1, b"ok \xff and more", fin=False)
    code, _ = await peer.read_close(timeout=1)
    assert code == 1007


async def test_valid_utf8_split_across_fragments(start_server, raw_client):
    server = await start_server(echo, compression=None)
    peer = await connect_raw(raw_client, server)
    data = "€✓".encode()  # split in the middle of a code point
    await peer.send(
        peer.frame(1, data[:2], fin=False) + peer.frame(0, data[2:4], fin=False) + peer.frame(0, data[4:])
    )
    frame = await peer.read_frame()
    assert (frame.opcode, frame.payload.decode()) == (1, "€✓")


async def test_oversize_message_closes_1009(start_server, raw_client):
    seen: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handler(ws):
        try:
            await ws.recv()
        except wsline.ConnectionClosed as exc:
            seen.set_result(exc)

    server = await start_server(handler, compression=None, max_size=1000)
    peer = await connect_raw(raw_client, server)
    await peer.send_frame(2, b"z" * 2000)
    code, _ = await peer.read_close()
    assert code == 1009
    exc = await asyncio.wait_for(seen, 1)
    assert isinstance(exc, wsline.ConnectionClosedError)
    assert exc.code == 1009


async def test_message_at_max_size_is_fine(start_server, raw_client):
    server = await start_server(echo, compression=None, max_size=1000)
    peer = await connect_raw(raw_client, server)
    await peer.send_frame(2, b"z" * 1000)
    frame = await peer.read_frame()
    assert frame.payload == b"z" * 1000


async def test_oversize_announced_in_header_fails_without_waiting_for_payload(start_server, raw_client):
    server = await start_server(echo, compression=None, max_size=1000)
    peer = await connect_raw(raw_client, server)
    # Only the header of a 10**9-byte frame: the server must not wait for the payload.
    await peer.send(bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 10**9) + MASK)
    start = time.monotonic()
    code, _ = await peer.read_close(timeout=1)
    assert code == 1009
    assert time.monotonic() - start < 1


async def test_oversize_fragmented_message_closes_1009(start_server, raw_client):
    server = await start_server(echo, compression=None, max_size=1000)
    peer = await connect_raw(raw_client, server)
    await peer.send(peer.frame(2, b"a" * 600, fin=False) + peer.frame(0, b"b" * 600))
    code, _ = await peer.read_close()
    assert code == 1009


async def test_compressed_bomb_closes_1009(start_server, raw_client):
    """A small compressed frame that inflates past max_size is stopped (permessage-deflate)."""
    server = await start_server(echo, max_size=10_000)
    peer = await raw_client(server.port)
    response = await peer.handshake(headers=[("Sec-WebSocket-Extensions", "permessage-deflate")])
    if "permessage-deflate" not in (response.get("Sec-WebSocket-Extensions") or ""):
        pytest.skip("the server did not accept permessage-deflate")
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = compressor.compress(b"\x00" * 10_000_000) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert bomb.endswith(b"\x00\x00\xff\xff")
    bomb = bomb[:-4]
    assert len(bomb) < 20_000
    await peer.send_frame(2, bomb, rsv1=True)
    code, _ = await peer.read_close()
    assert code == 1009


# ------------------------------------------------------------ bad handshakes


def request(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


GOOD = [
    f"Host: {HOST}",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
]


def without(name: str) -> list[str]:
    return [line for line in GOOD if not line.lower().startswith(name.lower() + ":")]


BAD_REQUESTS = {
    "missing key": (request(["GET / HTTP/1.1", *without("Sec-WebSocket-Key")]), 400),
    "short key": (
        request(["GET / HTTP/1.1", *without("Sec-WebSocket-Key"), "Sec-WebSocket-Key: c2hvcnQ="]),
        400,
    ),
    "two keys": (request(["GET / HTTP/1.1", *GOOD, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]), 400),
    "missing host": (request(["GET / HTTP/1.1", *without("Host")]), 400),
    "connection without upgrade": (
        request(["GET / HTTP/1.1", *without("Connection"), "Connection: keep-alive"]),
        400,
    ),
    "bad version": (
        request(["GET / HTTP/1.1", *without("Sec-WebSocket-Version"), "Sec-WebSocket-Version: 8"]),
        426,
    ),
    "missing version": (request(["GET / HTTP/1.1", *without("Sec-WebSocket-Version")]), 426),
    "POST": (request(["POST / HTTP/1.1", *GOOD]), 405),
    "HTTP/1.0": (request(["GET / HTTP/1.0", *GOOD]), 505),
    "HTTP/2.0": (request(["GET / HTTP/2.0", *GOOD]), 505),
    "malformed request line": (request(["GARBAGE", *GOOD]), 400),
    "request line with two spaces": (request(["GET  / HTTP/1.1", *GOOD]), 400),
    "malformed header line": (request(["GET / HTTP/1.1", *GOOD, "no colon here"]), 400),
    "obsolete line folding": (request(["GET / HTTP/1.1", *GOOD, "X-A: 1", " folded"]), 400),
    "bad subprotocol token": (request(["GET / HTTP/1.1", *GOOD, "Sec-WebSocket-Protocol: a b"]), 400),
}


@pytest.mark.parametrize("data,status", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
async def test_bad_handshake_status(echo_server, raw_client, data, status):
    peer = await raw_client(echo_server.port)
    await peer.send(data)
    response = await peer.read_response()
    assert response.status == status, response
    assert response.start_line.startswith("HTTP/1.1 ")
    assert response.body
    assert (response.get("Connection") or "").lower() == "close"
    assert await peer.read_eof() == b""


async def test_bad_version_advertises_13(echo_server, raw_client):
    peer = await raw_client(echo_server.port)
    await peer.send(
        request(["GET / HTTP/1.1", *without("Sec-WebSocket-Version"), "Sec-WebSocket-Version: 12"])
    )
    response = await peer.read_response()
    assert response.status == 426
    assert response.get("Sec-WebSocket-Version") == "13"


async def test_post_advertises_allow_get(echo_server, raw_client):
    peer = await raw_client(echo_server.port)
    await peer.send(request(["POST /x HTTP/1.1", *GOOD]))
    response = await peer.read_response()
    assert response.status == 405
    assert response.get("Allow") == "GET"


async def test_header_too_large_431(start_server, raw_client):
    server = await start_server(echo, max_header_size=1024)
    peer = await raw_client(server.port)
    await peer.send(request(["GET / HTTP/1.1", *GOOD, "X-Big: " + "b" * 2000]))
    response = await peer.read_response()
    assert response.status == 431


async def test_header_too_large_without_end_431(start_server, raw_client):
    """A head that grows past the limit is refused before its end arrives."""
    server = await start_server(echo, max_header_size=1024)
    peer = await raw_client(server.port)
    await peer.send(b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 3000)
    response = await peer.read_response()
    assert response.status == 431


async def test_header_just_under_limit_is_fine(start_server, raw_client):
    server = await start_server(echo, max_header_size=1024)
    peer = await raw_client(server.port)
    await peer.handshake(headers=[("X-Pad", "p" * 600)])


async def test_too_many_header_lines_431(echo_server, raw_client):
    peer = await raw_client(echo_server.port)
    await peer.send(request(["GET / HTTP/1.1", *GOOD, *(f"X-{i}: v" for i in range(200))]))
    response = await peer.read_response()
    assert response.status == 431


async def test_select_subprotocol_choosing_unoffered_is_500(start_server):
    server = await start_server(echo, select_subprotocol=lambda request, offered: "not-offered")
    with pytest.raises(wsline.InvalidStatus) as info:
        await client(ws_url(server), subprotocols=["a"])
    assert info.value.status == 500


async def test_process_request_raising_is_reported(start_server):
    def process_request(request):
        raise KeyError("broken hook")

    server = await start_server(echo, process_request=process_request)
    with pytest.raises(wsline.InvalidHandshake) as info:
        await client(ws_url(server))
    if isinstance(info.value, wsline.InvalidStatus):
        assert info.value.status == 500
    error, conn = await asyncio.wait_for(server.errors.get(), 1)
    assert isinstance(error, KeyError)
    assert conn.path == "/"


# --------------------------------------------------- opening handshake timeout


@pytest.mark.parametrize("sent", [b"", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgr"])
async def test_opening_handshake_timeout(start_server, raw_client, sent):
    server = await start_server(echo, open_timeout=0.3)
    peer = await raw_client(server.port)
    start = time.monotonic()
    if sent:
        await peer.send(sent)
    try:
        data = await peer.read_eof(timeout=1.5)
    except ConnectionResetError:
        data = b""
    elapsed = time.monotonic() - start
    assert 0.25 <= elapsed < 1.0
    if data:
        assert data.startswith(b"HTTP/1.1 408 "), data


async def test_opening_handshake_timeout_does_not_hit_open_connections(start_server):
    server = await start_server(echo, open_timeout=0.2)
    async with client(ws_url(server)) as ws:
        await asyncio.sleep(0.4)
        await ws.send("still open")
        assert await ws.recv() == "still open"


# ------------------------------------------------------------ abrupt endings


async def test_client_reset_mid_message(start_server, raw_client, loop_errors, caplog):
    caplog.set_level(logging.DEBUG)
    seen: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handler(ws):
        try:
            await ws.recv()
        except BaseException as exc:
            seen.set_result((exc, ws.close_code))
            raise

    server = await start_server(handler, compression=None)
    peer = await connect_raw(raw_client, server)
    frame = peer.frame(2, b"q" * 100)
    await peer.send(frame[:60])  # half a frame
    await asyncio.sleep(0.05)
    peer.reset()
    exc, close_code = await asyncio.wait_for(seen, 1)
    assert type(exc) is wsline.ConnectionClosedError
    assert exc.code == 1006
    assert exc.initiator == "none"
    assert close_code == 1006
    await eventually(lambda: not server.connections, what="the connection left server.connections")
    assert len(server.errors) == 0
    assert_no_unhandled(loop_errors, caplog)


async def test_client_vanishes_without_close_frame(start_server, raw_client, loop_errors, caplog):
    seen: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handler(ws):
        try:
            async for _ in ws:
                pass
        except wsline.ConnectionClosed as exc:
            seen.set_result(exc)

    server = await start_server(handler, compression=None)
    peer = await connect_raw(raw_client, server)
    await peer.close()  # FIN, no close frame
    exc = await asyncio.wait_for(seen, 1)
    assert isinstance(exc, wsline.ConnectionClosedError)
    assert exc.code == 1006
    assert_no_unhandled(loop_errors, caplog)


async def test_server_send_after_client_reset(start_server, raw_client, loop_errors, caplog):
    seen: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handler(ws):
        await ws.recv()  # "go"
        try:
            for _ in range(1000):
                await ws.send(b"s" * 10000)
                await asyncio.sleep(0.001)
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion
            seen.set_result(exc)
            return
        seen.set_result(None)

    server = await start_server(handler, compression=None)
    peer = await connect_raw(raw_client, server)
    await peer.send_frame(1, b"go")
    await peer.read_frame()
    peer.reset()
    exc = await asyncio.wait_for(seen, 2)
    assert isinstance(exc, wsline.ConnectionClosedError), exc
    assert exc.code == 1006
    await eventually(lambda: not server.connections, what="the connection left server.connections")
    assert len(server.errors) == 0
    assert_no_unhandled(loop_errors, caplog)


async def test_server_reset_mid_message(raw_server, loop_errors, caplog):
    async def server(peer):
        await peer.accept()
        frame = frames.build_frame(2, b"w" * 100)
        await peer.send(frame[:50])
        await asyncio.sleep(0.05)
        peer.reset()

    port = await raw_server(server)
    ws = await client(f"ws://{HOST}:{port}/", compression=None)
    with pytest.raises(wsline.ConnectionClosedError) as info:
        await ws.recv(timeout=1)
    assert info.value.code == 1006
    assert info.value.initiator == "none"
    assert ws.close_code == 1006
    with pytest.raises(wsline.ConnectionClosedError):
        await ws.send("x")
    await ws.close()  # never raises on a dead connection
    assert_no_unhandled(loop_errors, caplog)


async def test_ping_pending_when_connection_lost(raw_server, loop_errors, caplog):
    async def server(peer):
        await peer.accept()
        await peer.read_frame()  # the ping
        peer.reset()

    port = await raw_server(server)
    ws = await client(f"ws://{HOST}:{port}/", compression=None)
    waiter = ws.ping()
    with pytest.raises(wsline.ConnectionClosedError) as info:
        await asyncio.wait_for(waiter, 1)
    assert info.value.code == 1006
    # A ping nobody awaits must not log "never retrieved" either.
    ws2 = await client(f"ws://{HOST}:{port}/", compression=None)
    ws2.ping()
    await asyncio.wait_for(ws2.wait_closed(), 1)
    assert_no_unhandled(loop_errors, caplog)


# ------------------------------------------------------ failed fragmented sends


@pytest.mark.parametrize("how", ["producer raises", "send cancelled"])
async def test_failed_fragmented_send_does_not_corrupt_the_stream(start_server, how):
    server_saw: list = []

    async def handler(ws):
        try:
            async for message in ws:
                server_saw.append(message)
                await ws.send(message)
        except wsline.ConnectionClosed as exc:
            server_saw.append(exc)

    stall = asyncio.Event()

    async def producer():
        yield "part one, "
        yield "part two, "
        if how == "producer raises":
            raise RuntimeError("producer failed")
        await stall.wait()  # never set: the send is cancelled here
        yield "never"

    server = await start_server(handler, compression=None)
    async with client(ws_url(server)) as ws:
        if how == "producer raises":
            with pytest.raises(RuntimeError):
                await ws.send(producer())
        else:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.send(producer()), 0.1)
        # The connection may stay usable or be closed by this side, but the
        # next message must not be a protocol violation.
        try:
            await ws.send("next message")
            outcome = await ws.recv(timeout=1)
        except wsline.ConnectionClosed as exc:
            outcome = exc
        protocol_errors = [
            x for x in [outcome, *server_saw] if isinstance(x, wsline.ConnectionClosed) and x.code == 1002
        ]
        assert protocol_errors == []


# ------------------------------------------------------------- close timeout


async def test_close_timeout_client_side(raw_server):
    async def server(peer):
        await peer.accept()
        await asyncio.sleep(10)  # reads nothing, answers nothing

    port = await raw_server(server)
    ws = await client(f"ws://{HOST}:{port}/", compression=None, close_timeout=5)
    start = time.monotonic()
    await asyncio.wait_for(ws.close(timeout=0.3), 2)
    elapsed = time.monotonic() - start
    assert 0.25 <= elapsed < 1.0
    assert ws.state is wsline.State.CLOSED
    assert ws.close_code == 1006
    with pytest.raises(wsline.ConnectionClosedError) as info:
        await ws.recv()
    assert info.value.code == 1006
    assert info.value.initiator == "local"


async def test_close_timeout_server_side(start_server, raw_client):
    result: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handler(ws):
        start = time.monotonic()
        await ws.close(timeout=0.3)
        result.set_result((time.monotonic() - start, ws.close_code, ws.state))

    server = await start_server(handler, compression=None, close_timeout=5)
    peer = await connect_raw(raw_client, server)
    assert (await peer.read_close())[0] == 1000  # and never answers
    elapsed, code, state = await asyncio.wait_for(result, 2)
    assert 0.25 <= elapsed < 1.0
    assert code == 1006
    assert state is wsline.State.CLOSED


async def test_close_when_server_answers_but_keeps_tcp_open(raw_server):
    async def server(peer):
        await peer.accept()
        await peer.read_close()
        await peer.send_close(1000, "ok")
        await asyncio.sleep(10)  # keeps the TCP connection open

    port = await raw_server(server)
    ws = await client(f"ws://{HOST}:{port}/", compression=None)
    start = time.monotonic()
    await asyncio.wait_for(ws.close(timeout=0.3), 2)
    assert time.monotonic() - start < 1.0
    assert ws.state is wsline.State.CLOSED
    # The closing handshake did complete: the code is the server's.
    assert ws.close_code == 1000
    assert ws.close_reason == "ok"


async def test_close_timeout_argument_honoured_after_peer_close_frame(raw_server):
    """The server sends its close frame but never closes TCP; close(timeout=0.3) must not wait longer."""

    async def server(peer):
        await peer.accept()
        await peer.send_close(1000, "server done")
        await asyncio.sleep(10)

    port = await raw_server(server)
    ws = await client(f"ws://{HOST}:{port}/", compression=None, close_timeout=1.5)
    with pytest.raises(wsline.ConnectionClosedOK):
        await ws.recv(timeout=1)
    start = time.monotonic()
    await ws.close(timeout=0.3)
    assert time.monotonic() - start < 1.0
    assert ws.state is wsline.State.CLOSED


async def test_server_close_timeout_bounds_a_closing_connection(start_server, raw_client):
    closing = asyncio.Event()

    async def handler(ws):
        closing.set()
        await ws.close()  # the raw client never answers

    server = await start_server(handler, compression=None, close_timeout=1.5)
    peer = await connect_raw(raw_client, server)
    await asyncio.wait_for(closing.wait(), 1)
    assert (await peer.read_close())[0] == 1000
    start = time.monotonic()
    await server.close(timeout=0.3)
    assert time.monotonic() - start < 1.0


# ----------------------------------------------------------------- keepalive


async def test_keepalive_timeout_server_side(start_server, raw_client, loop_errors, caplog):
    seen: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handler(ws):
        start = time.monotonic()
        try:
            await ws.recv()
        except wsline.ConnectionClosed as exc:
            seen.set_result((exc, time.monotonic() - start))

    server = await start_server(handler, compression=None, ping_interval=0.2, ping_timeout=0.2)
    peer = await connect_raw(raw_client, server)
    # The raw client never answers pings.
    exc, elapsed = await asyncio.wait_for(seen, 2)
    assert isinstance(exc, wsline.KeepaliveTimeout)
    assert isinstance(exc, wsline.ConnectionClosedError)
    assert exc.code == 1006
    assert exc.timeout == pytest.approx(0.2)
    assert "keepalive" in str(exc)
    assert 0.3 <= elapsed < 1.0
    first = await peer.read_frame()
    assert first.opcode == 9  # the unanswered ping
    assert_no_unhandled(loop_errors, caplog)


async def test_keepalive_timeout_client_side(raw_server, loop_errors, caplog):
    async def server(peer):
        await peer.accept()
        await asyncio.sleep(10)  # ignores pings

    port = await raw_server(server)
    ws = await client(f"ws://{HOST}:{port}/", compression=None, ping_interval=0.2, ping_timeout=0.2)
    start = time.monotonic()
    with pytest.raises(wsline.KeepaliveTimeout) as info:
        await ws.recv(timeout=2)
    assert time.monotonic() - start < 1.0
    assert info.value.code == 1006
    await asyncio.wait_for(ws.wait_closed(), 1)
    assert ws.close_code == 1006
    with pytest.raises(wsline.ConnectionClosedError):
        await ws.send("x")
    assert_no_unhandled(loop_errors, caplog)


async def test_pongs_answered_while_client_does_not_read(start_server):
    conn: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handler(ws):
        conn.set_result(ws)
        await echo(ws)

    server = await start_server(handler, ping_interval=0.1, ping_timeout=0.2)
    async with client(ws_url(server)) as ws:
        server_ws = await asyncio.wait_for(conn, 1)
        await asyncio.sleep(1.0)  # no recv() on the client all along
        assert ws.open
        assert server_ws.open
        assert server_ws.latency is not None
        await ws.send("alive")
        assert await ws.recv(timeout=1) == "alive"


async def test_pongs_answered_while_server_handler_does_not_read(start_server):
    release = asyncio.Event()

    async def handler(ws):
        await release.wait()
        await echo(ws)

    server = await start_server(handler)
    async with client(ws_url(server), ping_interval=0.1, ping_timeout=0.2) as ws:
        await asyncio.sleep(0.6)
        assert ws.open
        assert ws.latency is not None
        release.set()
        await ws.send("alive")
        assert await ws.recv(timeout=1) == "alive"


async def test_ping_interval_must_be_positive():
    with pytest.raises(ValueError):
        wsline.serve(echo, HOST, 0, ping_interval=0)


# --------------------------------------------------- client handshake failures


async def test_connect_to_closed_port():
    with pytest.raises(ConnectionRefusedError):
        await client(f"ws://{HOST}:{free_port()}/")


async def test_server_answers_403_with_body(raw_server):
    async def server(peer):
        await peer.read_request()
        body = b"go away, you are not welcome"
        await peer.send(
            b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await peer.read_eof()

    port = await raw_server(server)
    with pytest.raises(wsline.InvalidStatus) as info:
        await client(f"ws://{HOST}:{port}/")
    assert info.value.status == 403
    assert info.value.reason_phrase == "Forbidden"
    assert info.value.body == b"go away, you are not welcome"
    assert "expected 101, got 403" in str(info.value)
    assert "go away" in str(info.value)


async def test_server_answers_302_without_length(raw_server):
    async def server(peer):
        await peer.read_request()
        await peer.send(b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\n\r\nmoved")

    port = await raw_server(server)
    with pytest.raises(wsline.InvalidStatus) as info:
        await client(f"ws://{HOST}:{port}/")
    assert info.value.status == 302
    assert ("Location", "/elsewhere") in info.value.headers
    assert info.value.body == b"moved"


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nnot found\r\n0\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
    ],
    ids=["chunked 404", "204"],
)
async def test_rejection_without_content_length_from_keep_alive_server(raw_server, answer):
    async def server(peer):
        await peer.read_request()
        await peer.send(answer)
        await asyncio.sleep(10)  # keep-alive: the connection stays open

    port = await raw_server(server)
    with pytest.raises(wsline.InvalidStatus) as info:
        await client(f"ws://{HOST}:{port}/", open_timeout=0.5)
    assert info.value.status in (404, 204)
    if info.value.status == 404:
        assert info.value.body.endswith(b"0\r\n\r\n") or info.value.body == b"not found"


async def test_wrong_accept_key(raw_server):
    async def server(peer):
        await peer.accept(accept="s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        await peer.read_eof()

    port = await raw_server(server)
    with pytest.raises(wsline.InvalidHandshake) as info:
        await client(f"ws://{HOST}:{port}/")
    assert not isinstance(info.value, wsline.InvalidStatus)
    assert "Sec-WebSocket-Accept" in str(info.value)


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n",  # no Upgrade
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n",  # no Connection
        b"NOT HTTP AT ALL\r\n",
    ],
    ids=["no upgrade", "no connection", "garbage status line"],
)
async def test_malformed_101(raw_server, response):
    async def server(peer):
        request = await peer.read_request()
        from wsline.protocol.handshake import accept_key

        key = request.get("Sec-WebSocket-Key") or ""
        await peer.send(response + f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n".encode())
        await peer.read_eof()

    port = await raw_server(server)
    with pytest.raises(wsline.InvalidHandshake):
        await client(f"ws://{HOST}:{port}/")


async def test_server_accepts_extension_not_offered(raw_server):
    async def server(peer):
        await peer.accept([("Sec-WebSocket-Extensions", "permessage-deflate")])
        await peer.read_eof()

    port = await raw_server(server)
    with pytest.raises(wsline.InvalidHandshake):
        await client(f"ws://{HOST}:{port}/", compression=None)


async def test_server_closes_during_handshake(raw_server):
    async def server(peer):
        await peer.read_request()
        # ... and hang up without answering.

    port = await raw_server(server)
    with pytest.raises(wsline.InvalidHandshake) as info:
        await client(f"ws://{HOST}:{port}/")
    assert "closed the connection" in str(info.value)


async def test_client_open_timeout(raw_server):
    async def server(peer):
        await asyncio.sleep(10)  # accepts TCP, never answers

    port = await raw_server(server)
    start = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        await client(f"ws://{HOST}:{port}/", open_timeout=0.3)
    elapsed = time.monotonic() - start
    assert 0.25 <= elapsed < 1.0
    assert "timed out" in str(info.value)


async def test_client_open_timeout_on_half_response(raw_server):
    async def server(peer):
        await peer.read_request()
        await peer.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n")
        await asyncio.sleep(10)

    port = await raw_server(server)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        await client(f"ws://{HOST}:{port}/", open_timeout=0.3)
    assert time.monotonic() - start < 1.0


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1/",
        "https://example.com/",
        "ws://",
        "ws:///path",
        "wss://:443/",
        "ws://127.0.0.1:99999/",
        "ws://127.0.0.1:port/",
        "ws://127.0.0.1/#fragment",
        "not a uri",
        "",
    ],
)
async def test_invalid_uris(uri):
    with pytest.raises(wsline.InvalidURI) as info:
        await wsline.connect(uri)
    assert isinstance(info.value, wsline.InvalidHandshake)
    assert isinstance(info.value, ValueError)


async def test_valid_uri_forms_parse(echo_server):
    port = echo_server.port
    for uri in (
        f"ws://{HOST}:{port}",
        f"WS://{HOST}:{port}/",
        f"ws://{HOST}:{port}/?q=1",
        f"ws://u:p@{HOST}:{port}/",
    ):
        async with client(uri) as ws:
            await ws.send(uri)
            assert await ws.recv() == uri


async def test_ipv6_loopback_if_available(start_server):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = await wsline.serve(echo, "::1", 0, ping_interval=None, close_timeout=0.5)
    except OSError:
        pytest.skip("no IPv6 loopback")
    try:
        async with client(f"ws://[::1]:{server.port}/") as ws:
            await ws.send("v6")
            assert await ws.recv() == "v6"
    finally:
        await server.close()
