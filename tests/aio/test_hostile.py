"""Hostile clients (issue #7): floods, trickles, giant announced lengths, peers that never read.

Two kinds of hostility, two kinds of test:

- a misbehaving peer on a good network (floods, trickles, giant lengths, many
  connections from one address): real loopback sockets against a wsline
  server, since the kernel's segmenting, buffers and accept queue are part of
  what is tested;
- a misbehaving network under a well-behaved peer (a reader that stops
  reading, a host that vanishes, a connection cut in the middle of a frame or
  reset): the last section, on wsline.testing's fault transport, where each
  fault is switched on at an exact moment instead of approximated with small
  socket buffers.

Every test asserts a concrete outcome (status, close code, a bound on memory
or buffering, a time bound) and checks that nothing leaked to the event loop.
Cases already covered elsewhere are not repeated here: 200 distinct header
lines (431), one oversized header (431), a stalled head (408), a 10**9-byte
frame header with a small max_size (1009), the MSB length bit as a plain
protocol error (1002), idle keepalive timeouts on both sides, basic write
backpressure and the per-client limit with two connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import pytest
import pytest_asyncio

import wsline
from conftest import (
    CLIENT_DEFAULTS,
    HOST,
    MASK,
    SERVER_DEFAULTS,
    RawPeer,
    client,
    collect_garbage,
    echo,
    eventually,
    ws_url,
)
from wsline.protocol import frames
from wsline.protocol.handshake import Headers, Response
from wsline.testing import TestClient, TransportPair, open_websocket, pair_of, stream_server

pytestmark = pytest.mark.asyncio

NEVER_RETRIEVED = ("never retrieved", "Task was destroyed", "Unhandled exception")
RESET_ERRORS = (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError)


# ------------------------------------------------------------------- helpers


def assert_no_leaks(loop_errors: list[dict[str, Any]], caplog: pytest.LogCaptureFixture) -> None:
    """Nothing reached the loop's exception handler and no "never retrieved" was logged."""
    collect_garbage()
    assert loop_errors == [], loop_errors
    bad = [r.getMessage() for r in caplog.records if any(s in r.getMessage() for s in NEVER_RETRIEVED)]
    assert bad == [], bad


async def assert_still_serving(server: wsline.Server, text: str = "still here") -> None:
    """A well-behaved client gets through and gets its echo promptly."""
    async with client(ws_url(server), open_timeout=2) as ws:
        await ws.send(text)
        assert await ws.recv(timeout=2) == text


async def read_until_closed(peer: RawPeer, timeout: float = 2.0) -> bytes:
    """What the server sends until it closes the connection (a reset counts as closed)."""
    try:
        return await peer.read_eof(timeout)
    except RESET_ERRORS:
        return b""


def upgrade_request(extra: list[str] | None = None, key: str = "dGhlIHNhbXBsZSBub25jZQ==") -> bytes:
    lines = [
        "GET / HTTP/1.1",
        f"Host: {HOST}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(extra or []),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def tiny_get(path: str = "/t") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode()


def ok_page(request: Any) -> Response:
    return Response(
        200, headers=Headers([("Content-Type", "text/plain")]), body=b"ok:" + request.target.encode()
    )


def frame_header(opcode: int, length: int, *, fin: bool = True, mask: bytes = MASK) -> bytes:
    """A masked client frame header announcing ``length`` bytes (64-bit length field)."""
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | 127]) + struct.pack("!Q", length) + mask


def one_byte_fragments(count: int, *, first: bool, last: bool, byte: int = 0x61) -> bytes:
    """``count`` masked 1-byte data frames (binary start when ``first``, FIN on the last when ``last``)."""
    payload = bytes([byte])
    out = bytearray()
    for i in range(count):
        opcode = 2 if first and i == 0 else 0
        fin = last and i == count - 1
        out += frames.build_frame(opcode, payload, fin=fin, mask=MASK)
    return bytes(out)


@contextlib.contextmanager
def traced_memory() -> Any:
    """tracemalloc for the duration; yields a function returning (current, peak) since the start."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    collect_garbage()
    base, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()

    def measure() -> tuple[int, int]:
        current, peak = tracemalloc.get_traced_memory()
        return current - base, peak - base

    try:
        yield measure
    finally:
        if not was_tracing:
            tracemalloc.stop()


async def server_ws(conn: asyncio.Future[wsline.WebSocket]) -> wsline.WebSocket:
    return await asyncio.wait_for(conn, 2)


def capturing(
    body: Callable[[wsline.WebSocket], Awaitable[Any]] | None = None,
) -> tuple[asyncio.Future[wsline.WebSocket], Callable[[wsline.WebSocket], Awaitable[Any]]]:
    """A handler that publishes its WebSocket, then runs ``body`` (default: echo)."""
    conn: asyncio.Future[wsline.WebSocket] = asyncio.get_running_loop().create_future()

    async def handler(ws: wsline.WebSocket) -> None:
        if not conn.done():
            conn.set_result(ws)
        await (body or echo)(ws)

    return conn, handler


HOSTILE = "/hostile"


def on_hostile_path(
    body: Callable[[wsline.WebSocket], Awaitable[Any]],
) -> Callable[[wsline.WebSocket], Awaitable[Any]]:
    """A handler running ``body`` for the raw client (path /hostile) and echo for everyone else."""

    async def handler(ws: wsline.WebSocket) -> None:
        await (body if ws.request.path == HOSTILE else echo)(ws)

    return handler


async def write_until_blocked(peer: RawPeer, chunks: Iterable[bytes], stall: float = 0.5) -> tuple[int, bool]:
    """Write chunks until one cannot be drained within ``stall`` seconds; returns (bytes written, blocked)."""
    written = 0
    for chunk in chunks:
        peer.writer.write(chunk)
        written += len(chunk)
        try:
            await asyncio.wait_for(peer.writer.drain(), stall)
        except (asyncio.TimeoutError, TimeoutError):
            return written, True
    return written, False


# -------------------------------------------------------------- header floods

REPEATED = {
    "300 x X-Repeat": ("X-Repeat: v", 300),
    "200 x Sec-WebSocket-Protocol": ("Sec-WebSocket-Protocol: chat", 200),
    "1000 x Cookie": ("Cookie: a=b", 1000),
}


@pytest.mark.parametrize("line,count", REPEATED.values(), ids=REPEATED.keys())
async def test_repeated_header_flood_is_431_and_closed(
    start_server, raw_client, loop_errors, caplog, line, count
):
    server = await start_server(echo, compression=None)
    peer = await raw_client(server.port)
    data = upgrade_request([line] * count)
    assert len(data) < 16384  # a flood of lines, not an oversized head
    await peer.send(data)
    response = await peer.read_response()
    assert response.status == 431, response
    assert (response.get("Connection") or "").lower() == "close"
    assert await read_until_closed(peer) == b""
    assert server.connections == set()
    await assert_still_serving(server)
    assert_no_leaks(loop_errors, caplog)


async def test_repeated_headers_under_the_line_limit_are_accepted(
    start_server, raw_client, loop_errors, caplog
):
    """Repetition alone is not hostile: 100 copies of a header still upgrade."""
    server = await start_server(echo, compression=None)
    peer = await raw_client(server.port)
    await peer.handshake(headers=[("X-Repeat", "v")] * 100)
    await peer.send_frame(1, b"fine")
    frame = await peer.read_frame()
    assert (frame.opcode, frame.payload) == (1, b"fine")
    assert_no_leaks(loop_errors, caplog)


REPEATED_HANDSHAKE = {
    "100 x Host": (f"Host: {HOST}", 400),
    "100 x the same Sec-WebSocket-Key": ("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", 400),
    "100 x Sec-WebSocket-Version": ("Sec-WebSocket-Version: 13", 426),
    "99 x permessage-deflate offers": ("Sec-WebSocket-Extensions: permessage-deflate", 101),
}


@pytest.mark.parametrize("line,status", REPEATED_HANDSHAKE.values(), ids=REPEATED_HANDSHAKE.keys())
async def test_repeated_handshake_headers_get_the_right_answer(
    start_server, raw_client, loop_errors, caplog, line, status
):
    """Under the line limit, repeating a handshake header is judged by the handshake rules."""
    server = await start_server(echo)
    peer = await raw_client(server.port)
    start = time.monotonic()
    await peer.send(upgrade_request([line] * 99))  # plus the base request's own copy, if any
    response = await peer.read_response()
    assert time.monotonic() - start < 1.0
    assert response.status == status, response
    if status == 101:
        assert (response.get("Sec-WebSocket-Extensions") or "").startswith("permessage-deflate")
        assert len([k for k, _ in response.headers if k.lower() == "sec-websocket-extensions"]) == 1
    else:
        assert await read_until_closed(peer) == b""
    await assert_still_serving(server)
    assert_no_leaks(loop_errors, caplog)


async def test_endless_stream_of_tiny_header_lines_is_431_before_it_ends(
    start_server, raw_client, loop_errors, caplog
):
    """Thousands of 4-byte lines that never end the head: refused once past max_header_size."""
    server = await start_server(echo, compression=None, open_timeout=5, max_header_size=4096)
    peer = await raw_client(server.port)
    start = time.monotonic()
    await peer.send(b"GET / HTTP/1.1\r\n")
    answered: bytes = b""
    for _ in range(100):  # up to 100 * 100 lines * 5 bytes = 50 kB, never the blank line
        try:
            await peer.send(b"a:b\r\n" * 100)
        except RESET_ERRORS:
            break
        try:
            answered = await peer.read_head(timeout=0.01)
            break
        except (asyncio.TimeoutError, TimeoutError):
            continue
        except RESET_ERRORS:
            break
    if not answered:
        answered = await peer.read_head(timeout=2)
    assert answered.startswith(b"HTTP/1.1 431 "), answered
    assert time.monotonic() - start < 2.0  # the size limit, not open_timeout, ended it
    await read_until_closed(peer)
    await assert_still_serving(server)
    assert_no_leaks(loop_errors, caplog)


async def test_head_trickled_byte_by_byte_gets_408_at_open_timeout(
    start_server, raw_client, loop_errors, caplog
):
    """Slowloris: a byte every 20 ms keeps data flowing, but open_timeout bounds the whole head."""
    server = await start_server(echo, compression=None, open_timeout=0.5)
    peer = await raw_client(server.port)
    data = upgrade_request([f"X-Pad-{i}: {'p' * 20}" for i in range(10)])  # ~6 s at this pace
    start = time.monotonic()
    sent = 0
    answer = b""
    for byte in data:
        try:
            await peer.send(bytes([byte]))
        except RESET_ERRORS:
            break
        sent += 1
        try:
            answer = await peer.read_head(timeout=0.02)
            break
        except (asyncio.TimeoutError, TimeoutError):
            continue
        except RESET_ERRORS:
            break
    elapsed = time.monotonic() - start
    assert sent < len(data), "the server waited for the whole trickled head"
    if answer:  # the 408 may be lost to a reset when our next byte hits the closed socket
        assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert 0.35 <= elapsed < 2.0
    await read_until_closed(peer)
    await assert_still_serving(server)
    assert_no_leaks(loop_errors, caplog)


async def test_head_sent_byte_by_byte_in_time_is_accepted(start_server, raw_client, loop_errors, caplog):
    """One byte per TCP segment, blank line split across segments: still a valid upgrade."""
    server = await start_server(echo, compression=None, open_timeout=5)
    peer = await raw_client(server.port)
    data = upgrade_request(["X-Pad: " + "p" * 40])
    for byte in data:
        await peer.send(bytes([byte]))
        await asyncio.sleep(0)
    response = await peer.read_response()
    assert response.status == 101
    await peer.send_frame(1, b"after trickle")
    frame = await peer.read_frame()
    assert frame.payload == b"after trickle"
    assert_no_leaks(loop_errors, caplog)


async def test_many_pipelined_requests_then_upgrade(start_server, raw_client, loop_errors, caplog):
    """500 tiny keep-alive requests in one write, then an upgrade: each answered in order, then 101."""
    server = await start_server(echo, compression=None, http_handler=ok_page)
    peer = await raw_client(server.port)
    await peer.send(b"".join(tiny_get(f"/{i}") for i in range(500)) + upgrade_request())
    for i in range(500):
        response = await peer.read_response()
        assert response.status == 200
        assert response.body == f"ok:/{i}".encode()
    response = await peer.read_response()
    assert response.status == 101
    await peer.send_frame(1, b"upgraded")
    assert (await peer.read_frame()).payload == b"upgraded"
    assert_no_leaks(loop_errors, caplog)


async def test_many_pipelined_requests_then_a_bad_one_is_400_and_closed(
    start_server, raw_client, loop_errors, caplog
):
    server = await start_server(echo, compression=None, http_handler=ok_page)
    peer = await raw_client(server.port)
    await peer.send(b"".join(tiny_get() for _ in range(300)) + b"NONSENSE\r\n\r\n" + tiny_get() * 50)
    for _ in range(300):
        assert (await peer.read_response()).status == 200
    response = await peer.read_response()
    assert response.status == 400
    assert (response.get("Connection") or "").lower() == "close"
    # The 50 requests after the bad one are never answered.
    assert await read_until_closed(peer) == b""
    await assert_still_serving(server)
    assert_no_leaks(loop_errors, caplog)


async def test_keep_alive_request_stream_then_stall_is_408(start_server, raw_client, loop_errors, caplog):
    """Timely requests keep the connection (open_timeout is per request); a stalled one gets 408."""
    server = await start_server(echo, compression=None, http_handler=ok_page, open_timeout=0.4)
    peer = await raw_client(server.port)
    start = time.monotonic()
    count = 0
    while time.monotonic() - start < 0.8:  # longer than open_timeout in all
        await peer.send(tiny_get())
        assert (await peer.read_response()).status == 200
        count += 1
        await asyncio.sleep(0.01)
    assert count > 10
    await peer.send(b"GET /stalled HTTP/1.1\r\nHost: h\r\n")  # no blank line, ever
    stalled = time.monotonic()
    response = await peer.read_response(timeout=2)
    assert response.status == 408
    assert 0.3 <= time.monotonic() - stalled < 1.5
    assert await read_until_closed(peer) == b""
    await assert_still_serving(server)
    assert_no_leaks(loop_errors, caplog)


# ------------------------------------------------------- giant announced lengths


@pytest.mark.parametrize(
    "max_size,length,code",
    [
        (2**20, 2**63 - 1, 1009),
        (None, 1 << 63, 1002),
        (2**20, 2**64 - 1, 1002),
        (None, (1 << 63) | 5, 1002),
    ],
    ids=["2^63-1 over max_size", "MSB set, no max_size", "all ones", "MSB set, small value"],
)
async def test_giant_length_fails_at_once_without_allocating(
    start_server, raw_client, loop_errors, caplog, max_size, length, code
):
    seen: asyncio.Future[wsline.ConnectionClosed] = asyncio.get_running_loop().create_future()

    async def handler(ws: wsline.WebSocket) -> None:
        try:
            await echo(ws)
        except wsline.ConnectionClosed as exc:
            if not seen.done():
                seen.set_result(exc)

    server = await start_server(handler, compression=None, max_size=max_size, close_timeout=1)
    peer = await raw_client(server.port)
    await peer.handshake()
    with traced_memory() as measure:
        start = time.monotonic()
        await peer.send(frame_header(2, length))  # the header alone: no payload ever comes
        got, _reason = await peer.read_close(timeout=1.5)
        elapsed = time.monotonic() - start
        _, peak = measure()
    assert got == code
    assert elapsed < 1.0  # no waiting for the announced payload
    assert peak < 512 * 1024, f"peak {peak} bytes while failing the connection"
    exc = await asyncio.wait_for(seen, 2)
    assert isinstance(exc, wsline.ConnectionClosedError)
    assert exc.code == code
    assert await read_until_closed(peer) == b""  # the server closed TCP too
    await assert_still_serving(server)
    assert_no_leaks(loop_errors, caplog)


async def test_2_63_minus_1_without_max_size_streams_without_preallocating(
    start_server, raw_client, loop_errors, caplog
):
    """With max_size=None the frame is legal: memory follows what arrives, not what was announced."""
    conn, handler = capturing()
    server = await start_server(handler, compression=None, max_size=None)
    peer = await raw_client(server.port)
    await peer.handshake()
    ws = await server_ws(conn)
    payload = b"\x00" * (256 * 1024)
    with traced_memory() as measure:
        await peer.send(frame_header(2, 2**63 - 1) + frames.apply_mask(payload, MASK))
        deadline = time.monotonic() + 2
        while ws._core._msg_size < len(payload):  # wait until the server has taken it all in
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        _, peak = measure()
    assert ws.open  # still reading the huge frame
    assert peak < 4 * len(payload) + 512 * 1024, f"peak {peak} for {len(payload)} bytes received"
    await assert_still_serving(server)
    peer.abort()
    await asyncio.wait_for(ws.wait_closed(), 2)
    assert ws.close_code == 1006
    assert_no_leaks(loop_errors, caplog)


# ------------------------------------------------------ a trickle of fragments


async def test_one_byte_fragments_past_max_size_close_1009(start_server, raw_client, loop_errors, caplog):
    seen: asyncio.Future[wsline.ConnectionClosed] = asyncio.get_running_loop().create_future()

    async def handler(ws: wsline.WebSocket) -> None:
        try:
            await echo(ws)
        except wsline.ConnectionClosed as exc:
            if not seen.done():
                seen.set_result(exc)

    server = await start_server(handler, compression=None, max_size=4096)
    peer = await raw_client(server.port)
    await peer.handshake()
    data = one_byte_fragments(6000, first=True, last=True)
    with contextlib.suppress(*RESET_ERRORS):
        for i in range(0, len(data), 7 * 500):  # 500 frames per write
            await peer.send(data[i : i + 7 * 500])
            await asyncio.sleep(0)
    code, reason = await peer.read_close()
    assert code == 1009, reason
    exc = await asyncio.wait_for(seen, 2)
    assert exc.code == 1009
    assert await read_until_closed(peer) == b""
    await assert_still_serving(server)
    assert_no_leaks(loop_errors, caplog)


async def test_one_byte_fragment_trickle_completes_while_others_are_served(
    start_server, raw_client, loop_errors, caplog
):
    """20000 one-byte fragments, trickled: the message arrives whole and other clients see no stall."""
    server = await start_server(echo, compression=None)
    peer = await raw_client(server.port)
    await peer.handshake()
    count = 20000
    pattern = bytes(range(256)) * (count // 256 + 1)
    stop = asyncio.Event()
    latencies: list[float] = []

    async def other_client() -> None:
        async with client(ws_url(server)) as ws:
            while not stop.is_set():
                start = time.monotonic()
                await ws.send("ping?")
                assert await ws.recv(timeout=2) == "ping?"
                latencies.append(time.monotonic() - start)
                await asyncio.sleep(0.005)

    other = asyncio.create_task(other_client())
    try:
        batch = 250
        for start in range(0, count, batch):
            chunk = bytearray()
            for i in range(start, min(start + batch, count)):
                chunk += frames.build_frame(
                    2 if i == 0 else 0, pattern[i : i + 1], fin=i == count - 1, mask=MASK
                )
            await peer.send(bytes(chunk))
            await asyncio.sleep(0.002)
        frame = await peer.read_frame(timeout=5)
    finally:
        stop.set()
        await asyncio.wait_for(other, 5)
    assert frame.opcode == 2 and frame.fin
    assert frame.payload == pattern[:count]
    assert len(latencies) >= 5
    assert max(latencies) < 0.5, f"other client stalled: max round trip {max(latencies):.3f} s"
    assert_no_leaks(loop_errors, caplog)


EURO = "\u20ac".encode()  # 3 bytes in UTF-8: one character per 3 one-byte fragments
FRAGMENTS = 21000  # a multiple of 3: whole characters in the text case


async def send_unfinished_fragments(peer: RawPeer, kind: str, count: int) -> None:
    """Send ``count`` 1-byte fragments of an unfinished message and wait until the server parsed them.

    A ping interleaved in the fragmented message comes back as a pong only once
    everything before it was parsed.
    """
    data = bytearray()
    for i in range(count):
        opcode = (1 if kind == "text" else 2) if i == 0 else 0
        byte = EURO[i % 3] if kind == "text" else 0xC3
        data += frames.build_frame(opcode, bytes([byte]), fin=False, mask=MASK)
    for i in range(0, len(data), 7 * 2000):
        await peer.send(bytes(data[i : i + 7 * 2000]))
    await peer.send_frame(9, b"sync")
    while True:
        frame = await peer.read_frame(timeout=10)  # tracemalloc slows everything down
        if frame.opcode == 10 and frame.payload == b"sync":
            return


def expected_message(kind: str, count: int) -> bytes:
    return (EURO * (count // 3) if kind == "text" else b"\xc3" * count) + b"!"


@pytest.mark.parametrize("kind", ["binary", "text"])
async def test_fragments_are_released_once_the_message_is_delivered(
    start_server, raw_client, loop_errors, caplog, kind
):
    server = await start_server(echo, compression=None, max_size=2**20)
    peer = await raw_client(server.port)
    await peer.handshake()
    with traced_memory() as measure:
        for _ in range(2):  # two messages in a row: nothing accumulates across them
            await send_unfinished_fragments(peer, kind, FRAGMENTS)
            await peer.send_frame(0, b"!", fin=True)
            frame = await peer.read_frame(timeout=10)
            assert frame.payload == expected_message(kind, FRAGMENTS)
        collect_garbage()
        after, _ = measure()
    assert after < 256 * 1024, f"{after} bytes still held after the messages were delivered"
    assert_no_leaks(loop_errors, caplog)


@pytest.mark.parametrize("kind", ["binary", "text"])
async def test_memory_per_buffered_fragment_is_bounded(start_server, raw_client, loop_errors, caplog, kind):
    """A message made of 1-byte fragments must cost about its size, not a Python object per fragment."""
    conn, handler = capturing()
    server = await start_server(handler, compression=None, max_size=2**20)
    peer = await raw_client(server.port)
    await peer.handshake()
    ws = await server_ws(conn)
    with traced_memory() as measure:
        await send_unfinished_fragments(peer, kind, FRAGMENTS)
        collect_garbage()
        held, _ = measure()
    assert ws.open
    per_fragment = held / FRAGMENTS
    # Appending to a bytearray costs ~1 byte per payload byte; a bytes object plus a list slot ~48.
    assert per_fragment < 8, f"{per_fragment:.1f} bytes held per buffered 1-byte fragment"
    assert_no_leaks(loop_errors, caplog)


# --------------------------------------------- many connections from one address


async def open_many(raw_client, port: int, count: int) -> tuple[list[RawPeer], list[RawPeer]]:
    """``count`` raw connections at once; returns (upgraded, refused with 429)."""
    peers = await asyncio.gather(*(raw_client(port) for _ in range(count)))
    await asyncio.sleep(0.3)  # a refusal is written at accept time, before any request

    async def classify(peer: RawPeer) -> tuple[str, RawPeer]:
        try:
            response = await peer.read_response(timeout=1.0)
        except (asyncio.TimeoutError, TimeoutError):
            await peer.handshake()  # nothing came: this one holds a slot
            return "open", peer
        assert response.status == 429, response
        assert b"too many connections" in response.body
        assert await read_until_closed(peer) == b""
        return "refused", peer

    results = await asyncio.gather(*(classify(peer) for peer in peers))
    return [p for kind, p in results if kind == "open"], [p for kind, p in results if kind == "refused"]


async def test_per_client_limit_with_200_connections_and_recovery(
    start_server, raw_client, loop_errors, caplog
):
    limit = 50
    server = await start_server(
        echo, compression=None, max_connections_per_client=limit, backlog=512, open_timeout=5
    )
    opened, refused = await open_many(raw_client, server.port, 200)
    assert (len(opened), len(refused)) == (limit, 200 - limit)
    assert len(server.connections) == limit
    # Every held connection works.
    for i, peer in enumerate(opened):
        await peer.send_frame(1, f"m{i}".encode())
    for i, peer in enumerate(opened):
        assert (await peer.read_frame()).payload == f"m{i}".encode()
    # Release the slots in every way a connection can end.
    for i, peer in enumerate(opened):
        if i % 3 == 0:
            await peer.send_close(1000)
        elif i % 3 == 1:
            peer.reset()
        else:
            await peer.send_frame(1, b"unmasked", mask=None)  # protocol error: the server closes 1002
    for i, peer in enumerate(opened):
        if i % 3 == 0:
            assert (await peer.read_close())[0] == 1000
        elif i % 3 == 2:
            assert (await peer.read_close())[0] == 1002
        if i % 3 != 1:
            assert await read_until_closed(peer) == b""
    deadline = time.monotonic() + 3
    while server.connections or server._per_client:
        assert time.monotonic() < deadline, f"slots never freed: {server._per_client}"
        await asyncio.sleep(0.02)
    # The limit holds exactly as before: no slot leaked, none double-freed.
    opened, refused = await open_many(raw_client, server.port, limit + 10)
    assert (len(opened), len(refused)) == (limit, 10)
    for peer in opened:
        peer.abort()
    assert_no_leaks(loop_errors, caplog)


# ------------------------------------------------------- compressed floods in one read


def compressed_zeros(size: int) -> bytes:
    """One message of ``size`` zero bytes as permessage-deflate payload (a few hundred bytes)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = compressor.compress(bytes(size)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


@pytest.mark.parametrize("listener", [False, True])
async def test_compressed_flood_in_one_read_is_held_at_max_queue(
    start_server, raw_client, loop_errors, caplog, listener
):
    """1000 messages of 256 KiB in ~300 KB of deflate, in one write, to a handler that is not reading.

    Each message is within max_size, but together they inflate to 256 MB: the
    server must stop inflating once max_queue messages wait (plus a bounded
    budget), not hold them all; and every message must still arrive, in order.
    """
    count, size = 1000, 2**18
    received: list[int] = []
    release = asyncio.Event()

    async def slow_reader(ws: wsline.WebSocket) -> None:
        await release.wait()
        async for message in ws:
            assert message == bytes(size)
            received.append(len(message))
            if len(received) == count:
                await ws.send("done")

    class Counter(wsline.Listener):
        def on_message(self, message: wsline.Data) -> None:
            assert message == bytes(size)
            received.append(len(message))
            if len(received) == count:
                self.ws.send_nowait("done")

    handler: Any = Counter if listener else slow_reader
    server = await start_server(handler, max_size=size, max_queue=8)
    peer = await raw_client(server.port)
    await peer.handshake(headers=[("Sec-WebSocket-Extensions", "permessage-deflate")])
    payload = compressed_zeros(size)
    burst = b"".join(peer.frame(2, payload, rsv1=True) for _ in range(count))
    assert len(burst) < 400_000
    with traced_memory() as measure:
        await peer.send(burst)
        await asyncio.sleep(0.5)
        _, peak_waiting = measure()
        release.set()
        frame = await peer.read_frame(timeout=30)
        _, peak = measure()
    assert frame.payload == b"done"
    assert len(received) == count
    # max_queue messages, the inflate budget and the held input: tens of MB at most, not 256 MB.
    assert peak_waiting < 24 * 2**20, f"{peak_waiting / 2**20:.1f} MiB held while the handler waited"
    assert peak < 32 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    await peer.send_close()
    assert (await peer.read_close())[0] == 1000
    assert_no_leaks(loop_errors, caplog)


# ============================================================ a misbehaving network
#
# The peer here behaves (or is a RawPeer writing what the test says); the
# network does not: a reader that stops reading, a host that vanishes, a
# connection cut in the middle of a frame or reset. These run on
# wsline.testing's fault transport: the server is wsline's own server protocol
# on a real Server (TestClient), the faults are switched on mid-test, and
# what used to be approximated with a 4 KiB SO_RCVBUF is exact.


@pytest_asyncio.fixture
async def fault_server() -> AsyncIterator[Callable[..., Awaitable[TestClient]]]:
    """Factory: ``app = await fault_server(handler, **serve_kwargs)``: a TestClient, closed at teardown."""
    apps: list[TestClient] = []

    async def start(
        handler: Callable[[wsline.WebSocket], Awaitable[Any]] = echo, **kwargs: Any
    ) -> TestClient:
        app = await TestClient(handler, **{**SERVER_DEFAULTS, **kwargs}).start()
        apps.append(app)
        return app

    yield start
    for app in apps:
        await asyncio.wait_for(app.close(), 5)


async def fault_peer(app: TestClient, *, window: int = 4096) -> tuple[RawPeer, TransportPair]:
    """A raw client on a fault transport pair to ``app``'s server (``window``: its 'socket buffers')."""
    pair = app.pair(window=window)
    reader, writer = await app.open_connection(pair=pair)
    return RawPeer(reader, writer, is_client=True), pair


async def assert_fault_server_still_serving(app: TestClient, text: str = "still here") -> None:
    async with app.websocket("/", **CLIENT_DEFAULTS) as ws:
        await ws.send(text)
        assert await ws.recv(timeout=2) == text


async def watch_buffer(transport: asyncio.WriteTransport, stop: asyncio.Event, samples: list[int]) -> None:
    while not stop.is_set():
        samples.append(transport.get_write_buffer_size())
        await asyncio.sleep(0.005)


# --------------------------------------------------- a client that never reads


async def test_pipelined_requests_from_a_client_that_never_reads_are_bounded(
    fault_server, loop_errors, caplog
):
    """Pipelined requests whose responses are never read must not pile up in the server's write buffer."""
    body = b"r" * 16384

    def big_page(request: Any) -> Response:
        return Response(200, headers=Headers([("Content-Type", "text/plain")]), body=body)

    app = await fault_server(
        echo, compression=None, http_handler=big_page, write_limit=16384, open_timeout=10
    )
    peer, pair = await fault_peer(app)
    pair.server_to_client.stall()  # the client reads nothing
    requests = tiny_get() * 100  # 100 requests, 1.6 MB of responses per chunk
    written, _ = await write_until_blocked(peer, (requests for _ in range(20)), stall=0.1)
    await asyncio.sleep(0.2)
    assert len(app.server._protocols) == 1
    buffered = pair.server.get_write_buffer_size()
    # 2000 responses would be 32 MB; the server should stop reading requests once its writes back up.
    assert buffered <= 1 << 20, f"{buffered} bytes of responses buffered (client sent {written} bytes)"
    pair.abort()
    assert_no_leaks(loop_errors, caplog)


PING_BATCH = 1000  # pings per write: 131 kB of masked 125-byte pings
FLOOD_BATCHES = 80  # about 10 MB of pings, and as many bytes of pongs


async def test_ping_flood_from_a_client_that_never_reads_is_bounded(fault_server, loop_errors, caplog):
    conn, handler = capturing()
    write_limit = 16 * 1024
    app = await fault_server(handler, compression=None, write_limit=write_limit)
    peer, pair = await fault_peer(app)
    await peer.handshake()
    ws = await server_ws(conn)
    pair.server_to_client.stall()
    pings = peer.frame(9, b"p" * 125) * PING_BATCH
    stop = asyncio.Event()
    samples: list[int] = []
    watcher = asyncio.create_task(watch_buffer(pair.server, stop, samples))
    written, blocked = await write_until_blocked(peer, (pings for _ in range(FLOOD_BATCHES)), stall=0.1)
    await asyncio.sleep(0.1)
    stop.set()
    await watcher
    samples.append(pair.server.get_write_buffer_size())
    # A correct server holds its pongs while the peer does not read (only the latest ping
    # is answered); one read (256 kB) of pings may still be answered past the high-water mark.
    assert max(samples) <= write_limit + 512 * 1024, (
        f"server buffered {max(samples)} bytes of pongs; client wrote {written} bytes, blocked={blocked}"
    )
    assert ws.open
    pair.abort()
    assert_no_leaks(loop_errors, caplog)


async def test_ping_flood_from_a_server_that_never_reads_is_bounded(loop_errors, caplog):
    result: asyncio.Future[tuple[int, bool]] = asyncio.get_running_loop().create_future()
    pair = TransportPair(window=4096)

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = RawPeer(reader, writer, is_client=False)
        await peer.accept()
        pair.client_to_server.stall()  # from now on the server reads nothing
        pings = peer.frame(9, b"p" * 125) * PING_BATCH
        result.set_result(await write_until_blocked(peer, (pings for _ in range(FLOOD_BATCHES)), stall=0.1))

    ws = await open_websocket(
        stream_server(flood), pair=pair, **{**CLIENT_DEFAULTS, "compression": None, "write_limit": 16 * 1024}
    )
    try:
        stop = asyncio.Event()
        samples: list[int] = []
        watcher = asyncio.create_task(watch_buffer(pair.client, stop, samples))
        written, blocked = await asyncio.wait_for(result, 30)
        await asyncio.sleep(0.1)
        stop.set()
        await watcher
        assert max(samples) <= 16 * 1024 + 512 * 1024, (
            f"client buffered {max(samples)} bytes of pongs; server wrote {written} bytes, blocked={blocked}"
        )
        assert ws.open
    finally:
        pair.abort()
    assert_no_leaks(loop_errors, caplog)


async def test_handler_close_against_a_client_that_never_reads_ends_in_close_timeout(
    fault_server, loop_errors, caplog
):
    """send() blocks at the high-water mark; close() then gives up after close_timeout (abort)."""
    result: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    chunk = os.urandom(32 * 1024)
    write_limit = 16 * 1024

    async def handler(ws: wsline.WebSocket) -> None:
        sent, peak = 0, 0
        while sent < 4000:  # 128 MB at most: far more than any buffer
            try:
                await asyncio.wait_for(ws.send(chunk), 0.5)
            except (asyncio.TimeoutError, TimeoutError):
                break
            sent += 1
            peak = max(peak, ws.backlog)
        start = time.monotonic()
        await ws.close(1000, "bye")
        result.set_result(
            {"sent": sent, "peak": peak, "close": time.monotonic() - start, "code": ws.close_code}
        )

    app = await fault_server(
        on_hostile_path(handler), compression=None, write_limit=write_limit, close_timeout=0.5
    )
    peer, pair = await fault_peer(app)
    await peer.handshake(HOSTILE)
    pair.server_to_client.stall()  # ... and never reads again
    outcome = await asyncio.wait_for(result, 10)
    assert outcome["sent"] < 4000, "send() never blocked"
    assert outcome["peak"] <= write_limit + 2 * len(chunk)
    assert 0.4 <= outcome["close"] < 1.5, outcome  # close_timeout, then abort
    assert outcome["code"] == 1006
    await eventually(lambda: not app.server.connections, what="the connection left server.connections")
    await assert_fault_server_still_serving(app)
    assert_no_leaks(loop_errors, caplog)


@pytest.mark.parametrize("closer", ["ws.close", "server.close"])
async def test_handler_stuck_in_send_is_released_by_close(fault_server, loop_errors, caplog, closer):
    """A handler blocked in send() (no timeout of its own) ends with ConnectionClosed once close aborts."""
    conn: asyncio.Future[wsline.WebSocket] = asyncio.get_running_loop().create_future()
    ended: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
    chunk = os.urandom(32 * 1024)

    async def handler(ws: wsline.WebSocket) -> None:
        conn.set_result(ws)
        try:
            while True:
                await ws.send(chunk)
        except BaseException as exc:
            ended.set_result(exc)
            raise

    app = await fault_server(handler, compression=None, write_limit=16 * 1024, close_timeout=0.5)
    peer, pair = await fault_peer(app)
    await peer.handshake()
    pair.server_to_client.stall()  # the client reads nothing more
    ws = await server_ws(conn)
    # Wait until the handler is parked in send(), above the high-water mark.
    await eventually(lambda: ws.writing_paused, what="send() reached the high-water mark")
    await asyncio.sleep(0.1)
    assert ws.writing_paused
    assert not ended.done()
    start = time.monotonic()
    if closer == "ws.close":
        await asyncio.wait_for(ws.close(), 3)
    else:
        await asyncio.wait_for(app.server.close(timeout=0.3), 3)
    exc = await asyncio.wait_for(ended, 2)
    elapsed = time.monotonic() - start
    assert isinstance(exc, wsline.ConnectionClosed), repr(exc)  # not cancelled: released by the abort
    assert exc.code == 1006
    assert elapsed < 1.5
    assert ws.state is wsline.State.CLOSED
    assert_no_leaks(loop_errors, caplog)


# --------------------------------------------------------------- half-open TCP


async def test_keepalive_notices_a_dead_peer_while_the_server_streams(fault_server, loop_errors, caplog):
    """The peer's host vanishes: the ping sits behind unsent data, the timeout still fires."""
    ended: asyncio.Future[tuple[BaseException, float]] = asyncio.get_running_loop().create_future()
    chunk = os.urandom(32 * 1024)

    async def handler(ws: wsline.WebSocket) -> None:
        start = time.monotonic()
        try:
            while True:
                await ws.send(chunk)  # no timeout: only keepalive can end this
        except wsline.ConnectionClosed as exc:
            ended.set_result((exc, time.monotonic() - start))

    app = await fault_server(
        on_hostile_path(handler), compression=None, write_limit=16 * 1024, ping_interval=0.3, ping_timeout=0.3
    )
    peer, pair = await fault_peer(app)
    await peer.handshake(HOSTILE)
    pair.half_open("client")  # then silence: no reads, no pongs, no FIN
    exc, elapsed = await asyncio.wait_for(ended, 5)
    assert isinstance(exc, wsline.KeepaliveTimeout), repr(exc)
    assert exc.code == 1006
    assert 0.5 <= elapsed < 2.0
    assert pair.server_to_client.in_flight > 0  # what went into the void
    await eventually(lambda: not app.server.connections, what="the connection left server.connections")
    await assert_fault_server_still_serving(app)
    assert_no_leaks(loop_errors, caplog)


async def test_keepalive_notices_a_dead_server_while_the_client_streams(fault_server, loop_errors, caplog):
    app = await fault_server(echo, compression=None)
    options = {**CLIENT_DEFAULTS, "ping_interval": 0.3, "ping_timeout": 0.3}
    ws = await app.websocket("/", **options, compression=None, write_limit=16 * 1024)
    pair = pair_of(ws)
    pair.half_open("server")  # the server's host is gone: no reads, no pongs, no FIN
    chunk = os.urandom(32 * 1024)
    start = time.monotonic()
    try:
        with pytest.raises(wsline.KeepaliveTimeout) as info:
            for _ in range(100_000):
                await asyncio.wait_for(ws.send(chunk), 5)  # no timeout of ours fires first
        elapsed = time.monotonic() - start
    finally:
        ws.abort()
    assert info.value.code == 1006
    assert 0.5 <= elapsed < 2.0
    await asyncio.wait_for(ws.wait_closed(), 1)
    assert ws.state is wsline.State.CLOSED
    pair.abort()  # the server's end never heard of any of it
    assert_no_leaks(loop_errors, caplog)


# --------------------------------------------------------- cuts and resets


@pytest.mark.parametrize("reset", [False, True], ids=["cut", "reset"])
async def test_connection_cut_in_the_middle_of_a_frame_frees_everything(
    fault_server, loop_errors, caplog, reset
):
    """A frame cut after its header and a few payload bytes (FIN or RST): 1006, the slot and memory freed."""
    seen: asyncio.Future[wsline.ConnectionClosed] = asyncio.get_running_loop().create_future()

    async def handler(ws: wsline.WebSocket) -> None:
        try:
            await echo(ws)
        except wsline.ConnectionClosed as exc:
            if not seen.done():
                seen.set_result(exc)

    app = await fault_server(handler, compression=None, max_connections_per_client=1)
    peer, pair = await fault_peer(app)
    await peer.handshake()
    before = pair.client_to_server.delivered
    pair.client_to_server.cut_after(bytes=14 + 1000, reset=reset)  # header, mask, 1000 of 2**20 bytes
    with contextlib.suppress(*RESET_ERRORS):
        await peer.send(frame_header(2, 2**20))  # 14 bytes: the header with a 64-bit length and the mask
        await peer.send(frames.apply_mask(os.urandom(64 * 1024), MASK))
    exc = await asyncio.wait_for(seen, 2)
    assert isinstance(exc, wsline.ConnectionClosedError) and exc.code == 1006
    assert pair.client_to_server.delivered == before + 1014  # not a byte more
    await eventually(lambda: not app.server.connections and not app.server._per_client, what="freed")
    await assert_fault_server_still_serving(app)  # the per-client slot is free again
    assert_no_leaks(loop_errors, caplog)


async def test_reset_while_the_server_waits_on_backpressure_releases_send(fault_server, loop_errors, caplog):
    conn: asyncio.Future[wsline.WebSocket] = asyncio.get_running_loop().create_future()
    ended: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def handler(ws: wsline.WebSocket) -> None:
        conn.set_result(ws)
        try:
            while True:
                await ws.send(b"x" * 65536)
        except wsline.ConnectionClosed as exc:
            ended.set_result(exc)

    app = await fault_server(handler, compression=None, write_limit=16 * 1024)
    ws = await app.websocket("/", **CLIENT_DEFAULTS, compression=None)
    pair = pair_of(ws)
    pair.server_to_client.stall()
    server_side = await server_ws(conn)
    await eventually(lambda: server_side.writing_paused, what="the handler waits in send()")
    pair.reset()
    exc = await asyncio.wait_for(ended, 2)
    assert isinstance(exc, wsline.ConnectionClosedError) and exc.code == 1006
    with pytest.raises(wsline.ConnectionClosedError):
        while True:  # what arrived before the stall, then the reset (what was stalled is gone)
            await ws.recv()
    assert ws.close_code == 1006
    assert_no_leaks(loop_errors, caplog)
