"""wsline.broadcast(): one framing for many connections, and slow readers left behind."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

import wsline
from wsline.aio.fanout import BroadcastResult, broadcast, dropped_messages
from wsline.protocol.deflate import DeflateConfig

pytestmark = pytest.mark.asyncio

HOST = "127.0.0.1"
OPTS: dict[str, Any] = {"ping_interval": None, "close_timeout": 0.5}


class Room:
    """A server that keeps its connections, in the order they arrived."""

    def __init__(self) -> None:
        self.conns: list[wsline.WebSocket] = []
        self.arrived = asyncio.Event()

    async def handler(self, ws: wsline.WebSocket) -> None:
        self.conns.append(ws)
        self.arrived.set()
        await ws.wait_closed()

    async def wait_for(self, n: int) -> None:
        while len(self.conns) < n:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 2)


@pytest_asyncio.fixture
async def room() -> AsyncIterator[tuple[Room, wsline.Server]]:
    r = Room()
    async with wsline.serve(r.handler, HOST, 0, **OPTS) as server:
        yield r, server


async def raw_sleeper(port: int) -> socket.socket:
    """A client that completes the handshake and never reads again (tiny receive buffer)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, (HOST, port))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(
        sock,
        f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode(),
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 1024)
    assert head.startswith(b"HTTP/1.1 101 ")
    return sock


def small_send_buffer(ws: wsline.WebSocket) -> None:
    """No kernel send buffer autotuning: the backlog builds up in the transport soon."""
    ws._transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)


class CountingDeflate:
    """A permessage-deflate (the core's Deflate protocol) that counts the messages it compresses."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.compressed = 0

    @property
    def threshold(self) -> int:
        return int(self.inner.threshold)

    @property
    def shared_key(self) -> Any:
        return self.inner.shared_key

    def compress(self, data: Any) -> bytes:
        self.compressed += 1
        return bytes(self.inner.compress(data))

    def decompress(self, data: Any, fin: bool, max_size: int) -> bytes:
        return bytes(self.inner.decompress(data, fin, max_size))


def spy_writes(ws: wsline.WebSocket, log: list[bytes]) -> None:
    """Record the frames broadcast hands to ``ws`` (it queues them with ``_queue``)."""
    original = ws._queue

    def queue(data: bytes) -> None:
        log.append(data)
        original(data)

    ws._queue = queue  # type: ignore[method-assign]


async def test_frames_once_for_all_server_connections(room: tuple[Room, wsline.Server]) -> None:
    r, server = room
    url = f"ws://{HOST}:{server.port}/"
    clients = [await wsline.connect(url, compression=None, **OPTS) for _ in range(5)]
    try:
        await r.wait_for(5)
        writes: list[bytes] = []
        for ws in r.conns:
            spy_writes(ws, writes)
        result = broadcast(r.conns, "hello everyone")
        assert result == BroadcastResult(sent=5)
        assert len(writes) == 5
        assert all(data is writes[0] for data in writes)  # the very same bytes object
        for client in clients:
            assert await asyncio.wait_for(client.recv(), 2) == "hello everyone"
        assert broadcast(r.conns, b"\x00\x01") == BroadcastResult(sent=5)
        for client in clients:
            assert await asyncio.wait_for(client.recv(), 2) == b"\x00\x01"
    finally:
        for client in clients:
            await client.close()


async def test_compresses_once_without_context_takeover() -> None:
    r = Room()
    async with wsline.serve(
        r.handler, HOST, 0, deflate=DeflateConfig(server_no_context_takeover=True), **OPTS
    ) as server:
        url = f"ws://{HOST}:{server.port}/"
        clients = [await wsline.connect(url, **OPTS) for _ in range(3)]
        try:
            await r.wait_for(3)
            assert all(ws._core.deflate is not None for ws in r.conns)
            counters = []
            for ws in r.conns:
                counter = CountingDeflate(ws._core.deflate)
                ws._core.deflate = counter
                counters.append(counter)
            text = "compress me " * 100
            for _ in range(3):
                assert broadcast(r.conns, text).sent == 3
            assert sum(c.compressed for c in counters) == 3  # once per message, not per connection
            for client in clients:
                for _ in range(3):
                    assert await asyncio.wait_for(client.recv(), 2) == text
        finally:
            for client in clients:
                await client.close()


async def test_context_takeover_and_client_side_frame_per_connection(
    room: tuple[Room, wsline.Server],
) -> None:
    r, server = room
    url = f"ws://{HOST}:{server.port}/"
    clients = [await wsline.connect(url, **OPTS) for _ in range(3)]  # deflate with context takeover
    try:
        await r.wait_for(3)
        text = "the same words again " * 50
        for _ in range(3):  # the second and later messages use each connection's history
            assert broadcast(r.conns, text).sent == 3
        for client in clients:
            for _ in range(3):
                assert await asyncio.wait_for(client.recv(), 2) == text
        # Client side: masked frames, each client frames for itself.
        assert broadcast(clients, "from the clients").sent == 3
        got = []
        for client in clients:
            assert client.is_client
        while len(got) < 3:
            await asyncio.sleep(0.01)
            got = [ws for ws in r.conns if ws._messages]
        assert all(ws._messages[0] == "from the clients" for ws in r.conns)
    finally:
        for client in clients:
            await client.close()


async def test_skips_closed_connections(room: tuple[Room, wsline.Server]) -> None:
    r, server = room
    url = f"ws://{HOST}:{server.port}/"
    a = await wsline.connect(url, **OPTS)
    b = await wsline.connect(url, **OPTS)
    await r.wait_for(2)
    await b.close()
    await asyncio.wait_for(r.conns[1].wait_closed(), 2)
    assert broadcast(r.conns, "x") == BroadcastResult(sent=1, skipped=1)
    assert await asyncio.wait_for(a.recv(), 2) == "x"
    await a.close()
    with pytest.raises(ValueError):
        broadcast(r.conns, "x", policy="nope")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        broadcast(r.conns, 42)  # type: ignore[arg-type]


async def _flood(r: Room, fast: list[wsline.WebSocket], policy: str, rounds: int) -> BroadcastResult:
    """Broadcast ``rounds`` 4 KiB messages; the fast clients read them all meanwhile."""
    total = BroadcastResult()
    message = os.urandom(4096)

    async def reader(client: wsline.WebSocket) -> int:
        n = 0
        while n < rounds:
            assert await asyncio.wait_for(client.recv(), 5) == message
            n += 1
        return n

    readers = [asyncio.create_task(reader(c)) for c in fast]
    for i in range(rounds):
        total = total + broadcast(r.conns, message, policy=policy, limit=64 * 1024)  # type: ignore[arg-type]
        if i % 10 == 9:
            await asyncio.sleep(0)  # let the loop flush and the readers read
    counts = await asyncio.wait_for(asyncio.gather(*readers), 10)
    assert counts == [rounds] * len(fast)  # the fast clients got every message
    return total


async def test_drop_policy_skips_the_slow_client(room: tuple[Room, wsline.Server]) -> None:
    r, server = room
    url = f"ws://{HOST}:{server.port}/"
    fast = [await wsline.connect(url, compression=None, **OPTS) for _ in range(2)]
    sleeper = await raw_sleeper(server.port)
    try:
        await r.wait_for(3)
        slow = r.conns[2]
        small_send_buffer(slow)
        rounds = 400  # 1.6 MB: far beyond what the sleeper's socket buffers hold
        total = await _flood(r, fast, "drop", rounds)
        assert total.dropped > 0 and total.closed == 0
        assert total.sent + total.dropped == 3 * rounds
        assert dropped_messages(slow) == total.dropped
        assert dropped_messages(r.conns[0]) == 0
        assert slow.open  # still connected: it only misses messages
    finally:
        sleeper.close()
        for client in fast:
            await client.close()


async def test_close_policy_closes_the_slow_client(room: tuple[Room, wsline.Server]) -> None:
    r, server = room
    url = f"ws://{HOST}:{server.port}/"
    fast = [await wsline.connect(url, compression=None, **OPTS) for _ in range(2)]
    sleeper = await raw_sleeper(server.port)
    try:
        await r.wait_for(3)
        slow = r.conns[2]
        small_send_buffer(slow)
        rounds = 400
        total = await _flood(r, fast, "close", rounds)
        assert total.closed == 1 and total.dropped == 0
        assert total.sent + total.closed + total.skipped == 3 * rounds
        await asyncio.wait_for(slow.wait_closed(), 5)  # aborted after CLOSE_TIMEOUT
        assert slow._core.close_sent is not None and slow._core.close_sent[0] == 1008
    finally:
        sleeper.close()
        for client in fast:
            await client.close()


async def test_small_or_uncompressed_messages_share_the_plain_frame() -> None:
    r = Room()
    async with wsline.serve(r.handler, HOST, 0, **OPTS) as server:  # deflate with context takeover
        url = f"ws://{HOST}:{server.port}/"
        clients = [await wsline.connect(url, **OPTS) for _ in range(3)]
        try:
            await r.wait_for(3)
            writes: list[bytes] = []
            for ws in r.conns:
                spy_writes(ws, writes)
            assert broadcast(r.conns, "tiny").sent == 3  # below the threshold (32 bytes)
            long = "not compressed on request " * 10
            assert broadcast(r.conns, long, compress=False).sent == 3
            assert len(writes) == 6
            assert writes[0] is writes[1] is writes[2] and writes[3] is writes[4] is writes[5]
            assert not writes[3][0] & 0x40  # no RSV1
            for client in clients:
                assert await asyncio.wait_for(client.recv(), 2) == "tiny"
                assert await asyncio.wait_for(client.recv(), 2) == long
        finally:
            for client in clients:
                await client.close()


async def test_a_half_sent_fragmented_message_is_not_interrupted(
    room: tuple[Room, wsline.Server],
) -> None:
    r, server = room
    url = f"ws://{HOST}:{server.port}/"
    client = await wsline.connect(url, **OPTS)
    try:
        await r.wait_for(1)
        ws = r.conns[0]
        go_on = asyncio.Event()

        async def pieces() -> AsyncIterator[str]:
            yield "one, "
            yield "two, "
            await go_on.wait()
            yield "three"

        sending = asyncio.create_task(ws.send(pieces()))
        await asyncio.sleep(0.05)  # the first fragment is out
        assert broadcast([ws], "in between") == BroadcastResult(dropped=1)
        assert dropped_messages(ws) == 1
        go_on.set()
        await sending
        assert broadcast([ws], "after") == BroadcastResult(sent=1)
        assert await asyncio.wait_for(client.recv(), 2) == "one, two, three"
        assert await asyncio.wait_for(client.recv(), 2) == "after"
    finally:
        await client.close()


async def test_backlog_counts_the_queued_frames(room: tuple[Room, wsline.Server]) -> None:
    r, server = room
    client = await wsline.connect(f"ws://{HOST}:{server.port}/", compression=None, **OPTS)
    try:
        await r.wait_for(1)
        ws = r.conns[0]
        assert ws.backlog == 0
        broadcast([ws], b"x" * 100)
        assert ws.backlog == 102  # queued for the end of this loop pass: header + payload
        assert broadcast([ws], b"y", limit=50) == BroadcastResult(dropped=1)  # over the limit
        await asyncio.sleep(0)
        assert await asyncio.wait_for(client.recv(), 2) == b"x" * 100
    finally:
        await client.close()
