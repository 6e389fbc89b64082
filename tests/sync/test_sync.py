"""The blocking client (``wsline.sync``) on real loopback sockets.

Two kinds of servers: wsline's asyncio server running on an event loop in a
background thread (:class:`ServerThread`), and raw TCP servers whose
connections are driven byte by byte by a script in a thread
(:class:`RawServer`), for what a well-behaved server never does.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import os
import queue
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import wsline
from conftest import HOST, free_port
from wsline import sync
from wsline.protocol import frames
from wsline.protocol.handshake import accept_key, reject_response

pytestmark = pytest.mark.timeout(10)

SERVER_DEFAULTS: dict[str, Any] = {"ping_interval": None, "close_timeout": 0.5, "open_timeout": 2.0}
CLIENT_DEFAULTS: dict[str, Any] = {"close_timeout": 0.5, "open_timeout": 2.0}

#: How long a raw server or a test waits for something before giving up.
WAIT = 2.0


def client(url: str, **kwargs: Any) -> sync.ClientConnection:
    """``wsline.sync.connect`` with short timeouts (overridable)."""
    return sync.connect(url, **{**CLIENT_DEFAULTS, **kwargs})


@pytest.fixture(autouse=True)
def no_thread_left_behind() -> Iterator[None]:
    """Every connection's reader and keepalive threads end with the test."""
    yield
    deadline = time.monotonic() + WAIT
    while True:
        left = [t.name for t in threading.enumerate() if t.name.startswith("wsline-")]
        if not left:
            return
        assert time.monotonic() < deadline, f"threads still running: {left}"
        time.sleep(0.01)


# ------------------------------------------------------------ wsline servers


async def echo(ws: wsline.WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


class ServerThread:
    """wsline asyncio servers on an event loop that runs in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-server-loop", daemon=True)
        self.thread.start()
        self.servers: list[wsline.Server] = []

    def run(self, coro: Any, timeout: float = 5.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self, handler: Callable[[wsline.WebSocket], Any] = echo, **kwargs: Any) -> wsline.Server:
        async def start() -> wsline.Server:
            return await wsline.serve(handler, HOST, 0, **{**SERVER_DEFAULTS, **kwargs})

        server: wsline.Server = self.run(start())
        self.servers.append(server)
        return server

    def url(self, server: wsline.Server, path: str = "/", scheme: str = "ws") -> str:
        return f"{scheme}://{HOST}:{server.port}{path}"

    def stop(self) -> None:
        for server in self.servers:
            self.run(server.close(timeout=0.5))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def server_thread() -> Iterator[ServerThread]:
    st = ServerThread()
    yield st
    st.stop()


@pytest.fixture
def echo_url(server_thread: ServerThread) -> str:
    """An echo server with the default options (compression on)."""
    return server_thread.url(server_thread.start(echo))


# ---------------------------------------------------------------- raw servers


class RawServer:
    """A TCP server that runs ``script(conn)`` in a thread per connection, then closes it.

    Whatever a script raises is kept in :attr:`errors` (checked at teardown).
    """

    def __init__(self, script: Callable[[socket.socket], None]) -> None:
        self.script = script
        self.sock = socket.create_server((HOST, 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"ws://{HOST}:{self.port}/"
        self.errors: list[BaseException] = []
        self.conns: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.accepter = threading.Thread(target=self._accept, daemon=True)
        self.accepter.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(WAIT)
            self.conns.append(conn)
            thread = threading.Thread(target=self._run, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _run(self, conn: socket.socket) -> None:
        try:
            self.script(conn)
        except BaseException as exc:  # noqa: BLE001 - reported at teardown
            self.errors.append(exc)
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()
        for thread in self.threads:
            thread.join(WAIT)


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket], None]], RawServer]]:
    servers: list[RawServer] = []

    def start(script: Callable[[socket.socket], None]) -> RawServer:
        server = RawServer(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
    for server in servers:
        assert not server.errors, server.errors


def recv_exactly(conn: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"EOF after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


def read_head(conn: socket.socket) -> dict[str, str]:
    """Read a request head; return its headers (lower-case names)."""
    data = bytearray()
    while not data.endswith(b"\r\n\r\n"):
        chunk = conn.recv(1)
        if not chunk:
            raise ConnectionError("EOF in request head")
        data += chunk
    headers = {}
    for line in data.decode("latin-1").split("\r\n")[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return headers


def accept(
    conn: socket.socket, *, accept: str | None = None, extra: str = "", tail: bytes = b""
) -> dict[str, str]:
    """Read the upgrade request, answer 101 (``tail`` goes in the same write)."""
    headers = read_head(conn)
    key = headers["sec-websocket-key"]
    head = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept if accept is not None else accept_key(key)}\r\n{extra}\r\n"
    )
    conn.sendall(head.encode() + tail)
    return headers


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bytes | None = None) -> bytes:
    return frames.build_frame(opcode, payload, fin=fin, mask=mask)


def close_frame(code: int = 1000, reason: str = "") -> bytes:
    return frame(8, frames.build_close_payload(code, reason))


def read_frame(conn: socket.socket) -> tuple[bool, int, bytes, bool]:
    """(fin, opcode, unmasked payload, rsv1) of the next client frame."""
    b0, b1 = recv_exactly(conn, 2)
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", recv_exactly(conn, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", recv_exactly(conn, 8))
    assert b1 & 0x80, "client frames must be masked"
    mask = recv_exactly(conn, 4)
    payload = frames.apply_mask(recv_exactly(conn, length), mask)
    return bool(b0 & 0x80), b0 & 0x0F, payload, bool(b0 & 0x40)


def read_close(conn: socket.socket) -> tuple[int, str]:
    """Skip frames until a close frame; return its (code, reason)."""
    while True:
        _fin, opcode, payload, _rsv1 = read_frame(conn)
        if opcode == 8:
            return frames.parse_close_payload(payload)


def read_until_eof(conn: socket.socket) -> None:
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass


def get(q: queue.Queue[Any]) -> Any:
    return q.get(timeout=WAIT)


# ------------------------------------------------------------------ echo


@pytest.mark.parametrize("compression", ["deflate", None])
def test_echo_text_and_binary(server_thread, compression):
    url = server_thread.url(server_thread.start(echo, compression=compression))
    with client(url, compression=compression) as ws:
        ws.send("héllo wörld ✓")
        reply = ws.recv(timeout=WAIT)
        assert reply == "héllo wörld ✓" and type(reply) is str
        for payload in (b"\x00\x01\xff" * 20, bytearray(b"bytearray!"), memoryview(b"memoryview bytes")):
            ws.send(payload)
            reply = ws.recv(timeout=WAIT)
            assert type(reply) is bytes and reply == bytes(payload)
        ws.send("")
        assert ws.recv(timeout=WAIT) == ""
    assert ws.close_code == 1000
    assert ws.state is wsline.State.CLOSED


def test_fragmented_send_round_trip(echo_url):
    with client(echo_url) as ws:
        ws.send(["fra", "gmen", "ted ✓"])
        assert ws.recv(timeout=WAIT) == "fragmented ✓"
        ws.send(iter([b"\x00", bytearray(b"\x01"), memoryview(b"\x02\x03")]))
        assert ws.recv(timeout=WAIT) == b"\x00\x01\x02\x03"
        ws.send([])  # nothing to send
        ws.send(["one piece"])
        assert ws.recv(timeout=WAIT) == "one piece"


def test_fragmented_send_goes_out_as_fragments(raw_server):
    seen: queue.Queue[Any] = queue.Queue()

    def script(conn):
        accept(conn)
        seen.put([read_frame(conn)[:3] for _ in range(3)])
        conn.sendall(close_frame())
        read_close(conn)

    server = raw_server(script)
    with client(server.url) as ws:
        ws.send(["a", "bc", "d"])
        assert get(seen) == [(False, 1, b"a"), (False, 0, b"bc"), (True, 0, b"d")]


def test_send_rejects_wrong_types(echo_url):
    with client(echo_url) as ws:
        with pytest.raises(TypeError, match="mapping"):
            ws.send({"a": 1})  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            ws.send(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="fragment of type int"):
            ws.send(["text", 42])  # type: ignore[list-item]
        # Nothing was on the wire yet (a piece goes out once the next one is known).
        with pytest.raises(TypeError, match="all fragments"):
            ws.send(["text", b"bytes"])  # type: ignore[list-item]
        ws.send("still open")
        assert ws.recv(timeout=WAIT) == "still open"
    assert ws.close_code == 1000


def test_fragment_generator_failing_midway_closes_with_1011(raw_server):
    seen: queue.Queue[Any] = queue.Queue()

    def script(conn):
        accept(conn)
        seen.put(read_frame(conn)[:3])
        code_reason = read_close(conn)
        conn.sendall(close_frame(*code_reason))
        seen.put(code_reason)

    def pieces():
        yield "first"
        yield "second"  # "first" goes out now, as a non-final fragment
        raise RuntimeError("producer broke")

    server = raw_server(script)
    with client(server.url) as ws:
        with pytest.raises(RuntimeError, match="producer broke"):
            ws.send(pieces())
        assert get(seen) == (False, 1, b"first")
        assert get(seen) == (1011, "incomplete fragmented message")
        with pytest.raises(wsline.ConnectionClosedError) as info:
            ws.recv(timeout=WAIT)
        assert info.value.code == 1011


def test_concurrent_senders_with_compression(echo_url):
    """Several threads send at once: frames never interleave and deflate stays in order."""
    n_threads, n_messages = 4, 50
    with client(echo_url) as ws:
        assert "permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")

        def sender(i: int) -> None:
            for j in range(n_messages):
                ws.send(f"thread {i} message {j} " + "padding " * (j % 7) * 10)

        threads = [threading.Thread(target=sender, args=(i,)) for i in range(n_threads)]
        for thread in threads:
            thread.start()
        received = [ws.recv(timeout=WAIT) for _ in range(n_threads * n_messages)]
        for thread in threads:
            thread.join()
    expected = [f"thread {i} message {j} " + "padding " * (j % 7) * 10 for i in range(4) for j in range(50)]
    assert collections.Counter(received) == collections.Counter(expected)
    assert ws.close_code == 1000


# ---------------------------------------------------------------- receiving


def test_recv_timeout_then_continue(echo_url):
    with client(echo_url) as ws:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match="timed out"):
            ws.recv(timeout=0.1)
        assert 0.09 <= time.monotonic() - start < 1.0
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0)
        ws.send("still there?")
        assert ws.recv(timeout=WAIT) == "still there?"


def test_iteration_ends_on_server_close_1000(server_thread):
    async def handler(ws):
        for i in range(3):
            await ws.send(f"message {i}")
        await ws.send(b"\x00\x01")
        # returning closes with 1000

    url = server_thread.url(server_thread.start(handler))
    with client(url) as ws:
        assert list(ws) == ["message 0", "message 1", "message 2", b"\x00\x01"]
        assert ws.close_code == 1000
        assert ws.close_reason == ""
        with pytest.raises(wsline.ConnectionClosedOK):
            ws.recv()
        with pytest.raises(wsline.ConnectionClosedOK):
            ws.send("too late")


def test_server_closing_with_1011(server_thread):
    async def handler(ws):
        await ws.send("before")
        await ws.close(1011, "it broke")

    url = server_thread.url(server_thread.start(handler))
    with client(url) as ws:
        assert ws.recv(timeout=WAIT) == "before"
        with pytest.raises(wsline.ConnectionClosedError) as info:
            ws.recv(timeout=WAIT)
        assert info.value.code == 1011
        assert info.value.reason == "it broke"
        assert info.value.initiator == "remote"
        with pytest.raises(wsline.ConnectionClosedError):
            for _ in ws:
                pass
    assert (ws.close_code, ws.close_reason) == (1011, "it broke")


def test_server_dropping_tcp_gives_1006(server_thread):
    async def handler(ws):
        await ws.send("bye")
        ws.abort()

    url = server_thread.url(server_thread.start(handler))
    with client(url) as ws:
        assert ws.recv(timeout=WAIT) == "bye"
        with pytest.raises(wsline.ConnectionClosedError) as info:
            ws.recv(timeout=WAIT)
        assert info.value.code == 1006
        assert ws.close_code == 1006


def test_server_speaks_first(server_thread):
    async def handler(ws):
        await ws.send("welcome")
        await echo(ws)

    url = server_thread.url(server_thread.start(handler))
    with client(url) as ws:
        assert ws.recv(timeout=WAIT) == "welcome"
        ws.send("hi")
        assert ws.recv(timeout=WAIT) == "hi"


def test_frames_in_the_same_segment_as_the_101_are_kept(raw_server):
    def script(conn):
        accept(conn, tail=frame(1, b"first") + frame(2, b"\x00second") + close_frame(1000, "done"))
        assert read_close(conn) == (1000, "done")

    server = raw_server(script)
    with client(server.url) as ws:
        assert list(ws) == ["first", b"\x00second"]
    assert (ws.close_code, ws.close_reason) == (1000, "done")


def test_half_a_frame_after_the_101_is_kept(raw_server):
    data = frame(1, b"split across writes")

    def script(conn):
        accept(conn, tail=data[:5])
        time.sleep(0.05)
        conn.sendall(data[5:] + close_frame())
        read_close(conn)

    server = raw_server(script)
    with client(server.url) as ws:
        assert list(ws) == ["split across writes"]


def test_reading_stops_while_the_queue_is_full(server_thread):
    blobs = [os.urandom(64 * 1024) for _ in range(40)]

    async def handler(ws):
        for blob in blobs:
            await ws.send(blob)

    url = server_thread.url(server_thread.start(handler, compression=None))
    with client(url, max_queue=2) as ws:
        time.sleep(0.2)
        assert 2 <= len(ws._messages) <= 3  # one read may complete one more message
        assert ws._reader_waiting
        assert list(ws) == blobs


def test_close_unblocks_a_recv_in_another_thread(echo_url):
    outcome: queue.Queue[Any] = queue.Queue()
    ws = client(echo_url)

    def reader() -> None:
        try:
            ws.recv()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.put(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.05)
    ws.close()
    thread.join(WAIT)
    exc = get(outcome)
    assert isinstance(exc, wsline.ConnectionClosedOK)
    assert exc.initiator == "local"


def test_max_size_exceeded_fails_with_1009(server_thread):
    server_saw: queue.Queue[Any] = queue.Queue()

    async def handler(ws):
        await ws.send("x" * 2000)
        try:
            await ws.recv()
        except wsline.ConnectionClosed as exc:
            server_saw.put(exc.code)

    url = server_thread.url(server_thread.start(handler))
    with client(url, max_size=1000) as ws:
        with pytest.raises(wsline.ConnectionClosedError) as info:
            ws.recv(timeout=WAIT)
        assert info.value.code == 1009
    assert get(server_saw) == 1009
    assert ws.close_code == 1009


def test_protocol_violation_by_the_server_fails_with_1002(raw_server):
    seen: queue.Queue[Any] = queue.Queue()

    def script(conn):
        accept(conn)
        conn.sendall(frame(1, b"masked!", mask=b"abcd"))  # servers must not mask
        seen.put(read_close(conn))

    server = raw_server(script)
    with client(server.url) as ws:
        with pytest.raises(wsline.ConnectionClosedError) as info:
            ws.recv(timeout=WAIT)
        assert info.value.code == 1002
    assert get(seen)[0] == 1002


# ------------------------------------------------------------------ closing


def test_close_with_code_and_reason(server_thread):
    server_saw: queue.Queue[Any] = queue.Queue()

    async def handler(ws):
        with contextlib.suppress(wsline.ConnectionClosed):
            async for _ in ws:
                pass
        server_saw.put((ws.close_code, ws.close_reason))

    url = server_thread.url(server_thread.start(handler))
    ws = client(url)
    ws.close(4000, "bye now")
    assert get(server_saw) == (4000, "bye now")
    assert (ws.close_code, ws.close_reason) == (4000, "bye now")
    ws.close()  # again: nothing happens
    with pytest.raises(wsline.ConnectionClosedError) as info:
        ws.send("late")
    assert info.value.initiator == "local"
    with pytest.raises(wsline.ConnectionClosed):
        ws.ping()


def test_context_manager_closes_with_1000(server_thread):
    server_saw: queue.Queue[Any] = queue.Queue()

    async def handler(ws):
        async for _ in ws:
            pass
        server_saw.put(ws.close_code)

    url = server_thread.url(server_thread.start(handler))
    with client(url) as ws:
        assert ws.state is wsline.State.OPEN
        assert ws.close_code is None
    assert get(server_saw) == 1000
    assert ws._reader.is_alive() is False
    assert ws._sock_closed


def test_close_times_out_when_the_server_does_not_answer(raw_server):
    def script(conn):
        accept(conn)
        read_until_eof(conn)  # never answers the close frame

    server = raw_server(script)
    ws = client(server.url, close_timeout=0.3)
    start = time.monotonic()
    ws.close()
    assert 0.25 <= time.monotonic() - start < 1.5
    assert ws.close_code == 1006
    assert ws.state is wsline.State.CLOSED


def test_server_pings_are_answered_without_recv(raw_server):
    seen: queue.Queue[Any] = queue.Queue()

    def script(conn):
        accept(conn)
        conn.sendall(frame(9, b"are you there"))
        seen.put(read_frame(conn)[1:3])
        conn.sendall(close_frame())
        read_close(conn)

    server = raw_server(script)
    with client(server.url):
        assert get(seen) == (10, b"are you there")


# --------------------------------------------------------------- ping / pong


def test_ping_returns_the_round_trip_time(echo_url):
    with client(echo_url) as ws:
        rtt = ws.ping()
        assert 0 <= rtt < 1
        assert ws.latency == rtt
        assert 0 <= ws.ping(b"custom payload", timeout=WAIT) < 1
        assert 0 <= ws.ping("text payload") < 1
        with pytest.raises(ValueError):
            ws.ping(b"x" * 126)
        ws.pong(b"unsolicited")
        ws.send("still fine")
        assert ws.recv(timeout=WAIT) == "still fine"


def test_ping_timeout(raw_server):
    def script(conn):
        accept(conn)
        read_until_eof(conn)  # never answers pings

    server = raw_server(script)
    ws = client(server.url, close_timeout=0.2)
    with pytest.raises(TimeoutError, match="no pong"):
        ws.ping(timeout=0.1)
    assert ws.state is wsline.State.OPEN
    assert len(ws._pings) == 0  # the timed-out ping is forgotten
    ws.close()


def test_a_pong_answers_every_earlier_ping(raw_server):
    """Pings from two threads; the server answers only the later one (RFC 6455 5.5.3)."""
    got_two: queue.Queue[Any] = queue.Queue()

    def script(conn):
        accept(conn)
        first = read_frame(conn)
        second = read_frame(conn)
        assert first[1] == second[1] == 9
        got_two.put(True)
        conn.sendall(frame(10, second[2]))
        conn.sendall(close_frame())
        read_close(conn)

    server = raw_server(script)
    with client(server.url) as ws:
        results: queue.Queue[Any] = queue.Queue()
        first = threading.Thread(target=lambda: results.put(("first", ws.ping(b"one", timeout=WAIT))))
        first.start()
        while len(ws._pings) == 0:
            time.sleep(0.001)
        second = threading.Thread(target=lambda: results.put(("second", ws.ping("two", timeout=WAIT))))
        second.start()
        get(got_two)
        first.join(WAIT)
        second.join(WAIT)
        answers = dict([get(results), get(results)])
        assert answers["first"] >= answers["second"] == ws.latency


def test_pong_takes_str_and_bytes(raw_server):
    seen: queue.Queue[Any] = queue.Queue()

    def script(conn):
        accept(conn)
        seen.put([read_frame(conn)[1:3] for _ in range(2)])
        conn.sendall(close_frame())
        read_close(conn)

    server = raw_server(script)
    with client(server.url) as ws:
        ws.pong("hé")
        ws.pong(bytearray(b"b"))
        assert get(seen) == [(10, "hé".encode()), (10, b"b")]


def test_keepalive_keeps_a_live_connection(echo_url):
    with client(echo_url, ping_interval=0.05, ping_timeout=1.0) as ws:
        time.sleep(0.3)
        assert ws.latency is not None
        ws.send("alive")
        assert ws.recv(timeout=WAIT) == "alive"


def test_keepalive_drops_a_dead_connection(raw_server):
    seen: queue.Queue[Any] = queue.Queue()

    def script(conn):
        accept(conn)
        seen.put(read_close(conn))  # ignores the pings
        read_until_eof(conn)

    server = raw_server(script)
    ws = client(server.url, ping_interval=0.05, ping_timeout=0.1)
    with pytest.raises(wsline.KeepaliveTimeout):
        ws.recv(timeout=WAIT)
    assert get(seen) == (1011, "keepalive ping timeout")
    ws.close()


# --------------------------------------------------------------- handshake


def test_subprotocol_headers_and_attributes(server_thread):
    async def handler(ws):
        headers = ws.request.headers
        await ws.send(f"{headers.get('X-Token')}|{headers.get('Origin')}|{headers.get('User-Agent')}")
        await echo(ws)

    server = server_thread.start(handler, subprotocols=["chat", "superchat"])
    url = server_thread.url(server, "/path?q=1")
    with client(
        url,
        subprotocols=["superchat", "other"],
        headers={"X-Token": "s3cret"},
        origin="https://example.com",
    ) as ws:
        token, origin, agent = ws.recv(timeout=WAIT).split("|")  # type: ignore[union-attr]
        assert (token, origin) == ("s3cret", "https://example.com")
        assert agent.startswith("wsline/")
        assert ws.subprotocol == "superchat"
        assert ws.response.status == 101
        assert ws.request.target == "/path?q=1"
        assert ws.request.headers.get("X-Token") == "s3cret"
        assert ws.remote_address[:2] == (HOST, server.port)
        assert ws.local_address[0] == HOST
        assert "OPEN" in repr(ws)
    with client(url, headers=[("X-Token", "t")]) as ws:
        assert ws.subprotocol is None
        assert ws.recv(timeout=WAIT).startswith("t|None|")  # type: ignore[union-attr]


def test_compression_negotiated_and_large_message(echo_url):
    message = ("All work and no play makes Jack a dull boy. " * 2400)[: 100 * 1024]
    with client(echo_url) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
        assert extensions is not None and extensions.startswith("permessage-deflate")
        assert ws._core.deflate is not None
        ws.send(message)
        assert ws.recv(timeout=WAIT) == message
        ws.send(message.encode())
        assert ws.recv(timeout=WAIT) == message.encode()
    with client(echo_url, compression=None) as ws:
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        ws.send(message)
        assert ws.recv(timeout=WAIT) == message


def test_compressed_frames_on_the_wire(raw_server):
    seen: queue.Queue[Any] = queue.Queue()

    def script(conn):
        headers = accept(conn, extra="Sec-WebSocket-Extensions: permessage-deflate\r\n")
        seen.put(headers.get("sec-websocket-extensions"))
        _fin, opcode, payload, rsv1 = read_frame(conn)
        inflated = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
        seen.put((opcode, rsv1, len(payload), inflated))
        conn.sendall(close_frame())
        read_close(conn)

    server = raw_server(script)
    with client(server.url) as ws:
        ws.send("z" * 10_000)
        assert "permessage-deflate" in get(seen)
        opcode, rsv1, wire_length, inflated = get(seen)
        assert (opcode, rsv1, inflated) == (1, True, b"z" * 10_000)
        assert wire_length < 200


def test_rejection_403_raises_invalid_status_with_body(server_thread):
    server = server_thread.start(echo, process_request=lambda request: reject_response(403, "go away\n"))
    with pytest.raises(wsline.InvalidStatus) as info:
        client(server_thread.url(server))
    assert info.value.status == 403
    assert info.value.body == b"go away\n"
    assert "403" in str(info.value) and "go away" in str(info.value)


@pytest.mark.parametrize(
    "response, body",
    [
        (b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"HTTP/1.1 500 Internal Server Error\r\n\r\nuntil EOF", b"until EOF"),
        (b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n", b""),
    ],
)
def test_rejection_bodies(raw_server, response, body):
    def script(conn):
        read_head(conn)
        conn.sendall(response)
        if b"chunked" in response or b"Content-Length" in response:
            read_until_eof(conn)  # the connection stays open: the client must find the body's end
        # else: closing marks the end of the body

    server = raw_server(script)
    start = time.monotonic()
    with pytest.raises(wsline.InvalidStatus) as info:
        client(server.url)
    assert time.monotonic() - start < WAIT / 2
    assert info.value.body == body


def test_wrong_accept_raises_invalid_handshake(raw_server):
    wrong = base64.b64encode(os.urandom(20)).decode()
    server = raw_server(lambda conn: accept(conn, accept=wrong))
    with pytest.raises(wsline.InvalidHandshake, match="Sec-WebSocket-Accept"):
        client(server.url)


def test_unoffered_subprotocol_raises_negotiation_error(raw_server):
    server = raw_server(lambda conn: accept(conn, extra="Sec-WebSocket-Protocol: chat\r\n"))
    with pytest.raises(wsline.NegotiationError, match="chat"):
        client(server.url)


def test_server_closing_during_handshake(raw_server):
    server = raw_server(read_head)  # reads the request, then closes
    with pytest.raises(wsline.InvalidHandshake, match="closed the connection during the opening handshake"):
        client(server.url)


def test_closed_port_raises_connection_refused():
    with pytest.raises(ConnectionRefusedError):
        client(f"ws://{HOST}:{free_port()}/")


def test_open_timeout_against_a_silent_server():
    with socket.create_server((HOST, 0)) as listener:  # never accepts: the kernel completes TCP
        url = f"ws://{HOST}:{listener.getsockname()[1]}/"
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=r"timed out after 0\.3 s"):
            client(url, open_timeout=0.3)
        assert 0.25 <= time.monotonic() - start < 1.5


@pytest.mark.parametrize("uri", ["http://example.com/", "ws://", "ws://host/#fragment", "not a uri"])
def test_invalid_uri(uri):
    with pytest.raises(wsline.InvalidURI):
        sync.connect(uri)


def test_invalid_options():
    with pytest.raises(ValueError, match="wss"):
        sync.connect("ws://127.0.0.1:1/", ssl=True)
    with pytest.raises(ValueError, match="compression"):
        sync.connect("ws://127.0.0.1:1/", compression="gzip")
    with pytest.raises(ValueError, match="header"):
        sync.connect("ws://127.0.0.1:1/", headers={"Bad Name": "x"})


# ---------------------------------------------------------------------- TLS


def test_wss_with_trusted_certificate(server_thread, tls):
    server = server_thread.start(echo, ssl=tls.server_context)
    url = server_thread.url(server, scheme="wss")
    with client(url, ssl=tls.client_context) as ws:
        ws.send("over TLS")
        assert ws.recv(timeout=WAIT) == "over TLS"
        ws.send(b"\x01" * 70_000)
        assert ws.recv(timeout=WAIT) == b"\x01" * 70_000
        assert 0 <= ws.ping() < 1
    assert ws.close_code == 1000
    # server_hostname picks the name checked against the certificate.
    with client(url, ssl=tls.client_context, server_hostname="localhost") as ws:
        ws.send("by name")
        assert ws.recv(timeout=WAIT) == "by name"


def test_concurrent_senders_and_pings_over_tls(server_thread, tls):
    """The reader thread reads while other threads write, on one TLS socket."""
    server = server_thread.start(echo, ssl=tls.server_context)
    url = server_thread.url(server, scheme="wss")
    messages = [f"{i}:" + os.urandom(i % 50 * 100).hex() for i in range(300)]
    with client(url, ssl=tls.client_context, ping_interval=0.01, ping_timeout=WAIT) as ws:

        def sender(part: list[str]) -> None:
            for message in part:
                ws.send(message)

        threads = [threading.Thread(target=sender, args=(messages[i::3],)) for i in range(3)]
        for thread in threads:
            thread.start()
        received = [ws.recv(timeout=WAIT) for _ in messages]
        for thread in threads:
            thread.join()
        assert ws.latency is not None
    assert sorted(received) == sorted(messages)  # type: ignore[type-var]
    assert ws.close_code == 1000


def test_close_timeout_over_tls(raw_server, tls):
    def script(conn):
        with tls.server_context.wrap_socket(conn, server_side=True) as tls_conn:
            accept(tls_conn)
            read_until_eof(tls_conn)  # never answers the close frame

    server = raw_server(script)
    ws = client(server.url.replace("ws://", "wss://"), ssl=tls.client_context, close_timeout=0.3)
    start = time.monotonic()
    ws.close()
    assert 0.25 <= time.monotonic() - start < 1.5
    assert ws.close_code == 1006


def test_wss_with_untrusted_certificate(server_thread, tls):
    server = server_thread.start(echo, ssl=tls.server_context)
    with pytest.raises(wsline.InvalidHandshake, match="TLS certificate verification failed"):
        client(server_thread.url(server, scheme="wss"))


def test_wss_with_wrong_hostname(server_thread, tls):
    server = server_thread.start(echo, ssl=tls.server_context)
    url = server_thread.url(server, scheme="wss")
    with pytest.raises(wsline.InvalidHandshake, match="TLS certificate verification failed"):
        client(url, ssl=tls.client_context, server_hostname="example.com")
