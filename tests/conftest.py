"""Shared fixtures for the asyncio integration tests.

Everything runs on real loopback sockets: wsline servers and clients, plus raw
peers (a client or a server driven byte by byte) that do the opening handshake
by hand and exchange hand-built frames, to provoke what a well-behaved peer
never does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import os
import socket
import ssl
import struct
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import wsline
from wsline.protocol import frames
from wsline.protocol.handshake import accept_key

HOST = "127.0.0.1"

# The tests talk to their own loopback servers: a proxy configured in the
# environment (a CI machine's) must not get in between. test_proxy.py sets
# these variables itself where it tests them.
for _name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
    os.environ.pop(_name, None)
    os.environ.pop(_name.upper(), None)

#: Options that keep every test fast: no background pings, short timeouts.
SERVER_DEFAULTS: dict[str, Any] = {"ping_interval": None, "close_timeout": 0.5, "open_timeout": 2.0}
CLIENT_DEFAULTS: dict[str, Any] = {"ping_interval": None, "close_timeout": 0.5, "open_timeout": 2.0}

#: The masking key raw clients use (any 4 bytes do; a fixed one keeps traces readable).
MASK = b"\x37\xfa\x21\x3d"

#: How long a raw peer waits for something before the test fails.
READ_TIMEOUT = 2.0


# ------------------------------------------------------------------ wsline ends


async def echo(ws: wsline.WebSocket) -> None:
    """Echo handler: text as text, binary as binary."""
    async for message in ws:
        await ws.send(message)


def ws_url(server: wsline.Server, path: str = "/", scheme: str = "ws") -> str:
    return f"{scheme}://{HOST}:{server.port}{path}"


def client(url: str, **kwargs: Any) -> wsline.connect:
    """``wsline.connect`` with the fast test defaults (overridable)."""
    return wsline.connect(url, **{**CLIENT_DEFAULTS, **kwargs})


StartServer = Callable[..., Awaitable[wsline.Server]]


@pytest_asyncio.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """Factory: ``server = await start_server(handler, **serve_kwargs)``; closed at teardown."""
    servers: list[wsline.Server] = []

    async def start(
        handler: Callable[[wsline.WebSocket], Awaitable[Any]] = echo, **kwargs: Any
    ) -> wsline.Server:
        server = await wsline.serve(handler, HOST, 0, **{**SERVER_DEFAULTS, **kwargs})
        servers.append(server)
        return server

    yield start
    for server in servers:
        await asyncio.wait_for(server.close(timeout=0.5), 5)


@pytest_asyncio.fixture
async def echo_server(start_server: StartServer) -> wsline.Server:
    """A wsline echo server on 127.0.0.1 with the default options (compression on)."""
    return await start_server(echo)


# -------------------------------------------------------------------- raw peers


@dataclass
class Frame:
    fin: bool
    opcode: int
    payload: bytes
    rsv1: bool = False
    masked: bool = False

    @property
    def close(self) -> tuple[int, str]:
        """(code, reason) of a close frame (1005 when it has no payload)."""
        assert self.opcode == 8, f"not a close frame: {self}"
        if not self.payload:
            return 1005, ""
        return int.from_bytes(self.payload[:2], "big"), self.payload[2:].decode("utf-8")


@dataclass
class HTTPMessage:
    """A parsed HTTP response (or request) head and body."""

    start_line: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def status(self) -> int:
        return int(self.start_line.split(" ", 2)[1])

    def get(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def parse_head(head: bytes) -> HTTPMessage:
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return HTTPMessage(lines[0], headers)


class RawPeer:
    """One end of a TCP connection driven by hand.

    ``is_client`` decides whether :meth:`send_frame` masks by default. Reads
    time out after :data:`READ_TIMEOUT` so that a test never hangs.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, is_client: bool) -> None:
        self.reader = reader
        self.writer = writer
        self.is_client = is_client
        self.request: HTTPMessage | None = None

    # -- bytes

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_exactly(self, n: int, timeout: float = READ_TIMEOUT) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(n), timeout)

    async def read_head(self, timeout: float = READ_TIMEOUT) -> bytes:
        return await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)

    async def read_eof(self, timeout: float = READ_TIMEOUT) -> bytes:
        """Read until the peer closes; returns what came (may raise ConnectionResetError)."""
        return await asyncio.wait_for(self.reader.read(), timeout)

    # -- HTTP

    async def read_response(self, timeout: float = READ_TIMEOUT) -> HTTPMessage:
        """Read a response head and its Content-Length body."""
        message = parse_head(await self.read_head(timeout))
        length = message.get("Content-Length")
        if length:
            message.body = await self.read_exactly(int(length), timeout)
        return message

    async def read_request(self, timeout: float = READ_TIMEOUT) -> HTTPMessage:
        self.request = parse_head(await self.read_head(timeout))
        return self.request

    async def handshake(
        self,
        path: str = "/",
        headers: list[tuple[str, str]] | None = None,
        *,
        key: str | None = None,
    ) -> HTTPMessage:
        """Client side: send an upgrade request, read the 101 (asserted)."""
        key = key or base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {HOST}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in headers or []),
        ]
        await self.send(("\r\n".join(lines) + "\r\n\r\n").encode())
        response = await self.read_response()
        assert response.status == 101, response
        assert response.get("Sec-WebSocket-Accept") == accept_key(key)
        return response

    async def accept(
        self,
        extra_headers: list[tuple[str, str]] | None = None,
        *,
        accept: str | None = None,
        tail: bytes = b"",
    ) -> HTTPMessage:
        """Server side: read the upgrade request and answer 101 (with ``tail`` in the same write)."""
        request = await self.read_request()
        key = request.get("Sec-WebSocket-Key")
        assert key is not None
        lines = [
            "HTTP/1.1 101 Switching Protocols",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {accept if accept is not None else accept_key(key)}",
            *(f"{k}: {v}" for k, v in extra_headers or []),
        ]
        await self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + tail)
        return request

    # -- frames

    def frame(
        self, opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False, mask: Any = "auto"
    ) -> bytes:
        if mask == "auto":
            mask = MASK if self.is_client else None
        return frames.build_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=mask)

    async def send_frame(self, opcode: int, payload: bytes = b"", **kwargs: Any) -> None:
        await self.send(self.frame(opcode, payload, **kwargs))

    async def send_close(self, code: int = 1000, reason: str = "") -> None:
        await self.send_frame(8, frames.build_close_payload(code, reason))

    async def read_frame(self, timeout: float = READ_TIMEOUT) -> Frame:
        async def read() -> Frame:
            b0, b1 = await self.reader.readexactly(2)
            length = b1 & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
            mask = await self.reader.readexactly(4) if b1 & 0x80 else None
            payload = await self.reader.readexactly(length)
            if mask is not None:
                payload = frames.apply_mask(payload, mask)
            return Frame(bool(b0 & 0x80), b0 & 0x0F, payload, bool(b0 & 0x40), mask is not None)

        return await asyncio.wait_for(read(), timeout)

    async def read_close(self, timeout: float = READ_TIMEOUT) -> tuple[int, str]:
        """Skip frames until a close frame; return its (code, reason)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.read_frame(max(0.01, deadline - loop.time()))
            if frame.opcode == 8:
                return frame.close

    # -- ending

    def reset(self) -> None:
        """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    def abort(self) -> None:
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 1)


OpenRaw = Callable[..., Awaitable[RawPeer]]


@pytest_asyncio.fixture
async def raw_client() -> AsyncIterator[OpenRaw]:
    """Factory: ``peer = await raw_client(port, rcvbuf=None)``: a raw TCP client (aborted at teardown)."""
    peers: list[RawPeer] = []

    async def open_raw(port: int, *, rcvbuf: int | None = None) -> RawPeer:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await loop.sock_connect(sock, (HOST, port))
        reader, writer = await asyncio.open_connection(sock=sock)
        peer = RawPeer(reader, writer, is_client=True)
        peers.append(peer)
        return peer

    yield open_raw
    for peer in peers:
        peer.abort()
    await asyncio.sleep(0)


@pytest_asyncio.fixture
async def raw_server() -> AsyncIterator[Callable[[Callable[[RawPeer], Awaitable[None]]], Awaitable[int]]]:
    """Factory: ``port = await raw_server(callback)``; ``callback(peer)`` runs per connection.

    The connection is closed when the callback returns. Connections still open
    and callbacks still running are aborted/cancelled at teardown.
    """
    servers: list[asyncio.Server] = []
    tasks: set[asyncio.Task[None]] = set()
    peers: list[RawPeer] = []

    async def start(callback: Callable[[RawPeer], Awaitable[None]]) -> int:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = RawPeer(reader, writer, is_client=False)
            peers.append(peer)
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            with contextlib.suppress(
                asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError
            ):
                await callback(peer)
                # Like a real server: close TCP once done (RFC 6455 7.1.1).
                await peer.close()

        server = await asyncio.start_server(on_connect, HOST, 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()
    for peer in peers:
        peer.abort()
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=1)
    for server in servers:
        await asyncio.wait_for(server.wait_closed(), 1)


def free_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------- unhandled-error traps


@pytest_asyncio.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """Collects whatever reaches the event loop's exception handler.

    That is where "Task exception was never retrieved", "Future exception was
    never retrieved" and errors of callbacks end up. Call :func:`collect_garbage`
    before checking the list: the "never retrieved" reports come from ``__del__``.
    """
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    yield seen
    collect_garbage()
    loop.set_exception_handler(previous)


async def eventually(condition: Callable[[], object], timeout: float = 3.0, what: str = "") -> None:
    """Poll ``condition`` until it is true; fail after ``timeout`` seconds.

    For a state that settles a moment after the event a test waited for (a
    connection leaving ``server.connections`` after its close): poll for it
    rather than sleep a guess and assert.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout:g} s: {what or condition}")
        await asyncio.sleep(0.005)


def collect_garbage() -> None:
    for _ in range(3):
        gc.collect()


# --------------------------------------------------------------------------- TLS


@dataclass
class TLS:
    ca: Any
    server_context: ssl.SSLContext
    client_context: ssl.SSLContext


@pytest.fixture(scope="session")
def tls() -> Iterator[TLS]:
    """A throwaway CA (trustme) and a certificate for 127.0.0.1 / localhost."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    client_context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client_context)
    yield TLS(ca, server_context, client_context)


# ------------------------------------------------------------------ scale-out (tests/scaleout)
# Here rather than in tests/scaleout/conftest.py: a second module named "conftest"
# would shadow this one for the test files that import helpers from it.


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Any]:
    """A redis-server of one test (tests/scaleout/scaleout_redis.py)."""
    from scaleout_redis import RedisServer

    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A three-primary Redis Cluster shared by the session's scale-out tests."""
    from scaleout_redis import RedisCluster

    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def prefix() -> str:
    """Key and channel prefix of one test on the shared cluster."""
    return f"t{uuid.uuid4().hex[:8]}:"
