"""ASGI HTTP on wsline's server, byte by byte: raw sockets against small ASGI applications.

Keep-alive, pipelining, streamed request bodies (and reading only while the
application receives), streamed responses and their framing (Content-Length,
chunked, close-delimited on HTTP/1.0), HEAD, 204/304, ``Expect: 100-continue``,
``http.disconnect``, the application's errors, invalid messages, the parser's
refusals, limits and timeouts. The responses are read with wsline's own
:class:`~wsline.protocol.http11.ResponseParser`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from wsline.asgi.http import ResponseFramer, http_date
from wsline.asgi.server import ASGIServer, serve
from wsline.protocol.http11 import CLOSED, NEED_DATA, Data, EndOfMessage, Limits, Response, ResponseParser

HOST = "127.0.0.1"
TIMEOUT = 3.0

Message = dict[str, Any]
App = Callable[
    [dict[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]

LIMITS = Limits(max_body=2**31)
FAST: dict[str, Any] = {
    "open_timeout": 2.0,
    "keep_alive_timeout": 2.0,
    "shutdown_timeout": 1.0,
    "lifespan": "off",
}


@contextlib.asynccontextmanager
async def running(app: App, **kwargs: Any) -> AsyncIterator[ASGIServer]:
    async with serve(app, HOST, 0, **{**FAST, **kwargs}) as server:
        yield server


class Peer:
    """A raw HTTP client on one connection; responses read by ResponseParser."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = ResponseParser(LIMITS)
        self.first = True

    @classmethod
    async def open(cls, server: ASGIServer) -> Peer:
        reader, writer = await asyncio.open_connection(HOST, server.port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def _event(self) -> object:
        while True:
            event = self.parser.next_event()
            if event is not NEED_DATA:
                return event
            data = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
            if data:
                self.parser.feed(data)
            else:
                self.parser.feed_eof()

    async def response(self, method: str = "GET") -> tuple[Response, bytes]:
        """The next response (interim ones skipped unless asked) and its body."""
        if not self.first:
            self.parser.start_next(method)
        else:
            self.parser = ResponseParser(LIMITS, request_method=method)
            self.first = False
        head = await self._event()
        assert isinstance(head, Response), head
        body = b""
        while True:
            event = await self._event()
            if isinstance(event, Data):
                body += event.data
            else:
                assert isinstance(event, EndOfMessage), event
                return head, body

    async def interim(self) -> Response:
        """A 1xx response (the parser gives it as a head of its own)."""
        head = await self._event()
        assert isinstance(head, Response) and head.status < 200, head
        return head

    async def closed(self) -> bool:
        """Whether the server closes the connection (nothing more comes)."""
        try:
            data = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
        except (ConnectionResetError, asyncio.TimeoutError):
            return False
        return data == b""

    async def raw(self, timeout: float = TIMEOUT) -> bytes:
        """Everything until the server closes the connection."""
        out = b""
        while True:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                return out
            out += data

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


@pytest.fixture
async def peers() -> AsyncIterator[list[Peer]]:
    opened: list[Peer] = []
    yield opened
    for peer in opened:
        await peer.close()


async def connect(server: ASGIServer, peers: list[Peer]) -> Peer:
    peer = await Peer.open(server)
    peers.append(peer)
    return peer


def get(
    path: str = "/", *headers: str, method: str = "GET", version: str = "1.1", body: bytes = b""
) -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: test", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# ------------------------------------------------------------------ applications


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    body = f"{scope['method']} {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


async def echo_body(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echoes the body, and says how many http.request events it came in."""
    chunks = []
    while True:
        message = await receive()
        assert message["type"] == "http.request"
        chunks.append(message["body"])
        if not message.get("more_body"):
            break
    body = b"".join(chunks)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"x-events", str(len(chunks)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def streaming(pieces: list[bytes], headers: list[tuple[bytes, bytes]] = (), status: int = 200) -> App:  # type: ignore[assignment]
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": list(headers)})
        for piece in pieces:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b""})

    return app


# ------------------------------------------------------------------ keep-alive, pipelining


async def test_keep_alive_serves_many_requests_on_one_connection(peers: list[Peer]) -> None:
    async with running(hello) as server:
        peer = await connect(server, peers)
        for i in range(5):
            await peer.send(get(f"/n{i}"))
            head, body = await peer.response()
            assert head.status == 200
            assert body == f"GET /n{i}".encode()
            assert head.headers.get("Content-Length") == str(len(body))
            assert head.headers.get("Server", "").startswith("wsline/")
            assert head.headers.get("Date", "").endswith(" GMT")
            assert head.headers.get("Connection") is None


async def test_pipelined_requests_are_answered_in_order_one_at_a_time(peers: list[Peer]) -> None:
    running_now = 0
    most = 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal running_now, most
        running_now += 1
        most = max(most, running_now)
        await asyncio.sleep(0.02 if scope["path"] == "/0" else 0)  # the first is the slowest
        await receive()
        running_now -= 1
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    async with running(app) as server:
        peer = await connect(server, peers)
        await peer.send(b"".join(get(f"/{i}", body=b"x" * i) for i in range(10)))
        for i in range(10):
            _head, body = await peer.response()
            assert body == f"/{i}".encode()
        assert most == 1


async def test_http10_closes_unless_keep_alive_asked(peers: list[Peer]) -> None:
    async with running(hello) as server:
        peer = await connect(server, peers)
        await peer.send(b"GET /old HTTP/1.0\r\n\r\n")
        head, body = await peer.response()
        assert body == b"GET /old"
        assert head.headers.get("Connection") == "close"
        assert await peer.closed()

        peer = await connect(server, peers)
        await peer.send(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        head, body = await peer.response()
        assert head.headers.get("Connection") == "keep-alive"
        await peer.send(b"GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        _head, body = await peer.response()
        assert body == b"GET /b"


async def test_connection_close_from_the_client_or_the_app(peers: list[Peer]) -> None:
    async def closing(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"connection", b"close")]})
        await send({"type": "http.response.body", "body": b"bye"})

    async with running(hello) as server:
        peer = await connect(server, peers)
        await peer.send(get("/", "Connection: close"))
        head, _ = await peer.response()
        assert head.headers.get("Connection") == "close"
        assert await peer.closed()
    async with running(closing) as server:
        peer = await connect(server, peers)
        await peer.send(get("/") + get("/never"))
        head, body = await peer.response()
        assert body == b"bye" and head.headers.get("Connection") == "close"
        assert await peer.closed()


# ------------------------------------------------------------------ request bodies


async def test_request_body_streams_as_it_arrives(peers: list[Peer]) -> None:
    got: list[tuple[bytes, bool]] = []
    first = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            got.append((message["body"], message["more_body"]))
            first.set()
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": str(len(got)).encode()})

    async with running(app) as server:
        peer = await connect(server, peers)
        await peer.send(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await asyncio.wait_for(first.wait(), TIMEOUT)
        assert got == [(b"hello", True)]  # delivered before the rest was even sent
        await peer.send(b"6\r\n world\r\n0\r\n\r\n")
        _head, body = await peer.response()
        assert b"".join(piece for piece, _ in got) == b"hello world"
        assert got[-1][1] is False
        assert int(body) == len(got) >= 2


async def test_whole_body_comes_as_one_event(peers: list[Peer]) -> None:
    async with running(echo_body) as server:
        peer = await connect(server, peers)
        await peer.send(get("/", method="POST", body=b"abc" * 1000))
        head, body = await peer.response()
        assert body == b"abc" * 1000
        assert head.headers.get("x-events") == "1"
        await peer.send(get("/", method="POST"))  # no body: one empty final event
        head, body = await peer.response()
        assert body == b"" and head.headers.get("x-events") == "1"


async def test_reading_stops_while_the_app_does_not_receive(peers: list[Peer]) -> None:
    release = asyncio.Event()
    received = 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal received
        await release.wait()
        while True:
            message = await receive()
            received += len(message["body"])
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": str(received).encode()})

    size = 16 * 2**20
    async with running(app, max_body_size=size) as server:
        peer = await connect(server, peers)
        peer.writer.transport.set_write_buffer_limits(high=0)  # type: ignore[attr-defined]
        await peer.send(
            get("/", method="POST").replace(b"\r\n\r\n", f"\r\nContent-Length: {size}\r\n\r\n".encode())
        )
        chunk = b"x" * 65536
        sent = 0
        with contextlib.suppress(asyncio.TimeoutError):
            while sent < size:
                peer.writer.write(chunk)
                await asyncio.wait_for(peer.writer.drain(), 0.5)
                sent += len(chunk)
        # The server stopped reading: what was sent is bounded by the socket buffers
        # and the parser's small buffer, far from the whole body.
        assert sent < size
        release.set()
        while sent < size:
            peer.writer.write(chunk)
            sent += len(chunk)
        await peer.writer.drain()
        _head, body = await peer.response()
        assert int(body) == size


async def test_body_over_the_limit_is_413(peers: list[Peer]) -> None:
    async with running(echo_body, max_body_size=1000) as server:
        peer = await connect(server, peers)
        await peer.send(get("/", method="POST", body=b"x" * 1001))
        head, _ = await peer.response()
        assert head.status == 413
        assert await peer.closed()

        peer = await connect(server, peers)  # chunked: found out while streaming
        await peer.send(
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"200\r\n" + b"x" * 512 + b"\r\n" + b"400\r\n" + b"x" * 1024 + b"\r\n0\r\n\r\n"
        )
        head, _ = await peer.response()
        assert head.status == 413
        assert await peer.closed()


async def test_unread_body_then_keep_alive_or_close(peers: list[Peer]) -> None:
    async with running(hello) as server:
        peer = await connect(server, peers)
        # The small body is in already: skipped, and the connection goes on.
        await peer.send(get("/a", method="POST", body=b"ignored") + get("/b"))
        _, body = await peer.response()
        assert body == b"POST /a"
        _, body = await peer.response()
        assert body == b"GET /b"
        # The body has not come: the answer goes out, then the connection closes.
        await peer.send(b"POST /c HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\nabc")
        _, body = await peer.response()
        assert body == b"POST /c"
        assert await peer.closed()


# ------------------------------------------------------------------ Expect: 100-continue


async def test_100_continue_is_sent_when_the_app_receives(peers: list[Peer]) -> None:
    async with running(echo_body) as server:
        peer = await connect(server, peers)
        await peer.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        head = await peer.interim()
        assert head.status == 100
        await peer.send(b"hello")
        head, body = await peer.response()
        assert head.status == 200 and body == b"hello"


async def test_no_100_continue_when_the_app_answers_first(peers: list[Peer]) -> None:
    async def refuse(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 401})
        await send({"type": "http.response.body", "body": b"no"})

    async with running(refuse) as server:
        peer = await connect(server, peers)
        await peer.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        data = await peer.raw()
        assert data.startswith(b"HTTP/1.1 401 ")
        assert b"100 Continue" not in data  # and the unsent body: the connection closed


# ------------------------------------------------------------------ response framing


async def test_streamed_response_is_chunked_on_http11(peers: list[Peer]) -> None:
    async with running(streaming([b"one ", b"two ", b"three"])) as server:
        peer = await connect(server, peers)
        await peer.send(get())
        head, body = await peer.response()
        assert head.headers.get("Transfer-Encoding") == "chunked"
        assert head.headers.get("Content-Length") is None
        assert body == b"one two three"
        await peer.send(get())  # and the connection goes on
        _, body = await peer.response()
        assert body == b"one two three"


async def test_streamed_response_with_content_length_is_not_chunked(peers: list[Peer]) -> None:
    app = streaming([b"one ", b"two ", b"three"], [(b"content-length", b"13")])
    async with running(app) as server:
        peer = await connect(server, peers)
        await peer.send(get())
        head, body = await peer.response()
        assert head.headers.get("Transfer-Encoding") is None
        assert head.headers.get_all("Content-Length") == ["13"]
        assert body == b"one two three"


async def test_streamed_response_on_http10_ends_with_the_connection(peers: list[Peer]) -> None:
    async with running(streaming([b"one ", b"two"])) as server:
        peer = await connect(server, peers)
        await peer.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        data = await peer.raw()
        head, _, body = data.partition(b"\r\n\r\n")
        assert b"transfer-encoding" not in head.lower() and b"content-length" not in head.lower()
        assert b"connection: close" in head.lower()
        assert body == b"one two"


async def test_the_head_goes_out_before_a_slow_first_piece(peers: list[Peer]) -> None:
    release = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await release.wait()
        await send({"type": "http.response.body", "body": b"data: 1\n\n"})

    async with running(app) as server:
        peer = await connect(server, peers)
        await peer.send(get())
        head = await asyncio.wait_for(peer.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"transfer-encoding: chunked" in head
        release.set()
        rest = await asyncio.wait_for(peer.reader.readuntil(b"0\r\n\r\n"), TIMEOUT)
        assert rest == b"9\r\ndata: 1\n\n\r\n0\r\n\r\n"


async def test_head_request_has_no_body_and_keeps_content_length(peers: list[Peer]) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"11")]})
        await send({"type": "http.response.body", "body": b"hello world"})

    async with running(app) as server:
        peer = await connect(server, peers)
        await peer.send(get(method="HEAD") + get())
        head, body = await peer.response("HEAD")
        assert head.headers.get("Content-Length") == "11" and body == b""
        _, body = await peer.response()
        assert body == b"hello world"  # framing intact: the HEAD's body was not written
    async with running(hello) as server:  # no Content-Length given: the body's length
        peer = await connect(server, peers)
        await peer.send(get(method="HEAD") + get())
        head, body = await peer.response("HEAD")
        assert head.headers.get("Content-Length") == str(len(b"HEAD /")) and body == b""
        _, body = await peer.response()
        assert body == b"GET /"


@pytest.mark.parametrize("status", [204, 304])
async def test_no_body_statuses(peers: list[Peer], status: int) -> None:
    async with running(streaming([b"dropped"], status=status)) as server:
        peer = await connect(server, peers)
        await peer.send(get() + get())
        for _ in range(2):
            head, body = await peer.response()
            assert head.status == status and body == b""
            assert head.headers.get("Transfer-Encoding") is None
            assert head.headers.get("Content-Length") is None


async def test_app_headers_server_and_date_win(peers: list[Peer]) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [
            (b"Server", b"mine"),
            (b"date", b"yesterday"),
            (b"set-cookie", b"a=1"),
            (b"set-cookie", b"b=2"),
        ]
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": b"made"})

    async with running(app) as server:
        peer = await connect(server, peers)
        await peer.send(get())
        head, _ = await peer.response()
        assert head.status == 201 and head.reason == "Created"
        assert head.headers.get_all("Server") == ["mine"]
        assert head.headers.get_all("Date") == ["yesterday"]
        assert head.headers.get_all("Set-Cookie") == ["a=1", "b=2"]
    async with running(hello, server_header=None) as server:
        peer = await connect(server, peers)
        await peer.send(get())
        head, _ = await peer.response()
        assert "Server" not in head.headers


# ------------------------------------------------------------------ disconnect


async def test_http_disconnect_when_the_client_goes_away(peers: list[Peer]) -> None:
    seen: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        assert message == {"type": "http.request", "body": b"", "more_body": False}
        seen.set_result(await receive())  # waits: the body is done, the response not started

    async with running(app) as server:
        peer = await connect(server, peers)
        await peer.send(get())
        await asyncio.sleep(0.05)
        peer.writer.close()
        assert await asyncio.wait_for(seen, TIMEOUT) == {"type": "http.disconnect"}


async def test_disconnect_in_the_middle_of_the_body(peers: list[Peer]) -> None:
    seen: list[Message] = []
    done = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            seen.append(message)
            if message["type"] == "http.disconnect":
                done.set()
                return

    async with running(app) as server:
        peer = await connect(server, peers)
        await peer.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
        await asyncio.sleep(0.05)
        peer.writer.transport.abort()  # type: ignore[attr-defined]
        await asyncio.wait_for(done.wait(), TIMEOUT)
        assert seen[0] == {"type": "http.request", "body": b"abc", "more_body": True}
        assert seen[-1] == {"type": "http.disconnect"}


async def test_receive_after_the_response_is_disconnect(peers: list[Peer]) -> None:
    after: list[Message] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"ok"})
        after.append(await asyncio.wait_for(receive(), 1))

    async with running(app) as server:
        peer = await connect(server, peers)
        await peer.send(get())
        await peer.response()
        assert after == [{"type": "http.disconnect"}]


async def test_send_to_a_gone_client_raises_oserror(peers: list[Peer]) -> None:
    raised: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        try:
            for _ in range(10000):
                await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
                await asyncio.sleep(0)
        except OSError as exc:
            raised.set_result(exc)
            raise

    async with running(app) as server:
        peer = await connect(server, peers)
        await peer.send(get())
        await peer.reader.readexactly(1000)
        peer.writer.transport.abort()  # type: ignore[attr-defined]
        assert isinstance(await asyncio.wait_for(raised, TIMEOUT), OSError)


async def test_a_client_that_does_not_read_holds_the_app_in_send(peers: list[Peer]) -> None:
    sent = 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal sent
        await send({"type": "http.response.start", "status": 200})
        for _ in range(300):
            await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
            sent += 1
        await send({"type": "http.response.body", "body": b""})

    async with running(app) as server:
        peer = await connect(server, peers)
        await peer.send(get())
        await asyncio.sleep(0.3)
        # Bounded by the socket buffers (the kernel's, a few MB on loopback), not the 19 MiB the app has.
        assert sent < 200, sent
        _head, body = await peer.response()
        assert len(body) == 300 * 65536


# ------------------------------------------------------------------ errors


async def test_exception_before_the_response_is_500(
    peers: list[Peer], caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise ValueError("broken app")

    async with running(app) as server:
        peer = await connect(server, peers)
        with caplog.at_level(logging.ERROR, "wsline.asgi"):
            await peer.send(get("/boom"))
            head, body = await peer.response()
        assert head.status == 500 and body == b"Internal Server Error\n"
        assert head.headers.get("Connection") == "close"
        assert await peer.closed()
        record = next(r for r in caplog.records if "ASGI application failed" in r.getMessage())
        assert "/boom" in record.getMessage() and record.exc_info is not None
        error = server.errors.get_nowait()
        assert error is not None and isinstance(error.error, ValueError)


async def test_exception_after_the_head_closes_the_connection(peers: list[Peer]) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("broken midway")

    async with running(app) as server:
        peer = await connect(server, peers)
        await peer.send(get())
        data = await peer.raw()
        assert data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert data.endswith(b"7\r\npartial\r\n")  # no last chunk: the client sees the cut


async def test_returning_without_a_response_is_500(peers: list[Peer]) -> None:
    async def nothing(scope: dict[str, Any], receive: Any, send: Any) -> None:
        return None

    async def only_start(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})

    for app in (nothing, only_start):
        async with running(app) as server:
            peer = await connect(server, peers)
            await peer.send(get())
            head, _ = await peer.response()
            assert head.status == 500


@pytest.mark.parametrize(
    "messages, error",
    [
        ([{"type": "http.response.body", "body": b"x"}], "expected ASGI message 'http.response.start'"),
        ([{"type": "http.response.start", "status": 99}], "invalid HTTP status"),
        ([{"type": "http.response.start", "status": 200, "headers": [("a", "b")]}], "must be bytes"),
        (
            [{"type": "http.response.start", "status": 200, "headers": [(b"a b", b"c")]}],
            "invalid header name",
        ),
        (
            [{"type": "http.response.start", "status": 200, "headers": [(b"a", b"c\r\nx: y")]}],
            "invalid value",
        ),
        (
            [{"type": "http.response.start", "status": 200}, {"type": "http.response.body", "body": "text"}],
            "must be bytes",
        ),
        (
            [
                {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]},
                {"type": "http.response.body", "body": b"abc"},
            ],
            "longer than its Content-Length",
        ),
        (
            [
                {"type": "http.response.start", "status": 200},
                {"type": "http.response.body", "body": b""},
                {"type": "http.response.body", "body": b""},
            ],
            "after the response was complete",
        ),
    ],
)
async def test_invalid_messages_raise_runtime_error(
    peers: list[Peer], caplog: pytest.LogCaptureFixture, messages: list[Message], error: str
) -> None:
    raised: list[BaseException] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            for message in messages:
                await send(message)
        except RuntimeError as exc:
            raised.append(exc)
            raise

    async with running(app) as server:
        peer = await connect(server, peers)
        with caplog.at_level(logging.ERROR, "wsline.asgi"):
            await peer.send(get())
            data = await peer.raw()
        assert raised and error in str(raised[0])
        assert any(error in r.getMessage() and "[" in r.getMessage() for r in caplog.records)
        if len(messages) == 1 or messages[1].get("body") == "text":
            assert data.startswith(b"HTTP/1.1 500 ")


# ------------------------------------------------------------------ bad HTTP, limits, timeouts


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        (b"GET / HTTP/1.1\nHost: t\n\n", 400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX: " + b"y" * 20000 + b"\r\n\r\n", 431),
    ],
)
async def test_bad_http_gets_the_parsers_answer_and_a_closed_connection(
    peers: list[Peer], request_bytes: bytes, status: int
) -> None:
    called = False

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal called
        called = True

    async with running(app) as server:
        peer = await connect(server, peers)
        await peer.send(request_bytes)
        data = await peer.raw()
        assert data.startswith(f"HTTP/1.1 {status} ".encode())
        assert b"Connection: close" in data
        assert not called


async def test_bad_second_request_after_a_good_one(peers: list[Peer]) -> None:
    async with running(hello) as server:
        peer = await connect(server, peers)
        await peer.send(get("/ok") + b"GET / HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n")
        _, body = await peer.response()
        assert body == b"GET /ok"
        head, _ = await peer.response()
        assert head.status == 400
        assert await peer.closed()


async def test_too_many_headers_is_431(peers: list[Peer]) -> None:
    async with running(hello) as server:
        peer = await connect(server, peers)
        await peer.send(get("/", *(f"X-{i}: {i}" for i in range(200))))
        data = await peer.raw()
        assert data.startswith(b"HTTP/1.1 431 ")


async def test_slow_head_gets_408(peers: list[Peer]) -> None:
    async with running(hello, open_timeout=0.3) as server:
        peer = await connect(server, peers)
        await peer.send(b"GET / HTTP/1.1\r\nHost")
        data = await peer.raw()
        assert data.startswith(b"HTTP/1.1 408 ")


async def test_idle_keep_alive_connection_is_closed(peers: list[Peer]) -> None:
    async with running(hello, keep_alive_timeout=0.2, open_timeout=5) as server:
        peer = await connect(server, peers)
        await peer.send(get())
        await peer.response()
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert await peer.closed()
        assert 0.1 < loop.time() - start < 2


async def test_max_connections_per_client_is_429(peers: list[Peer]) -> None:
    async with running(hello, max_connections_per_client=1) as server:
        first = await connect(server, peers)
        await first.send(get())
        await first.response()
        second = await connect(server, peers)
        data = await second.raw()
        assert data.startswith(b"HTTP/1.1 429 ")


async def test_half_closed_client_still_gets_its_answer(peers: list[Peer]) -> None:
    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(0.1)
        await hello(scope, receive, send)

    async with running(slow) as server:
        peer = await connect(server, peers)
        await peer.send(get("/half"))
        peer.writer.write_eof()
        data = await peer.raw()
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"GET /half")


# ------------------------------------------------------------------ the scope


async def test_http_scope(peers: list[Peer]) -> None:
    scopes: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scopes.append(scope)
        await hello(scope, receive, send)

    async with running(app, root_path="/mount") as server:
        peer = await connect(server, peers)
        await peer.send(get("/a%20b/c?x=1&y=%20", "X-Thing: One"))
        await peer.response()
        scope = scopes[0]
        assert scope["type"] == "http"
        assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
        assert scope["http_version"] == "1.1"
        assert scope["method"] == "GET"
        assert scope["scheme"] == "http"
        assert scope["root_path"] == "/mount"
        assert scope["path"] == "/mount/a b/c"
        assert scope["raw_path"] == b"/mount/a%20b/c"
        assert scope["query_string"] == b"x=1&y=%20"
        assert (b"x-thing", b"One") in scope["headers"] and (b"host", b"test") in scope["headers"]
        assert scope["client"][0] == HOST and scope["server"] == (HOST, server.port)
        assert "state" not in scope  # lifespan off


async def test_lifespan_state_is_copied_into_each_scope(peers: list[Peer]) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    scope["state"]["shared"] = []
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        scope["state"]["mine"] = scope["path"]  # stays with this request
        scope["state"]["shared"].append(scope["path"])  # the objects are shared
        seen.append(dict(scope["state"]))
        await hello(scope, receive, send)

    async with running(app, lifespan="on") as server:
        peer = await connect(server, peers)
        await peer.send(get("/1") + get("/2"))
        await peer.response()
        await peer.response()
    assert seen[0]["mine"] == "/1" and seen[1]["mine"] == "/2"
    assert seen[1]["shared"] == ["/1", "/2"]


# ------------------------------------------------------------------ the framer, without I/O


def test_framer_whole_body_gets_content_length() -> None:
    framer = ResponseFramer("GET", (1, 1), True, b"wsline/x")
    framer.start(200, [(b"content-type", b"text/plain")])
    head = framer.head(b"hello", True, b"DATE")
    assert head == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nserver: wsline/x\r\ndate: DATE\r\n"
        b"content-length: 5\r\n\r\n"
    )
    assert framer.body(b"hello", True) == b"hello"
    assert framer.keep_alive


def test_framer_chunks_and_ends() -> None:
    framer = ResponseFramer("GET", (1, 1), True)
    framer.start(200, None)
    assert b"transfer-encoding: chunked\r\n" in framer.head(b"ab", False, b"D")
    assert framer.body(b"ab", False) == b"2\r\nab\r\n"
    assert framer.body(b"", False) == b""
    assert framer.body(b"c", True) == b"1\r\nc\r\n0\r\n\r\n"


def test_framer_http10_close_delimited() -> None:
    framer = ResponseFramer("GET", (1, 0), True)
    framer.start(200, [])
    head = framer.head(b"ab", False, b"D")
    assert b"connection: close\r\n" in head and b"chunked" not in head
    assert not framer.keep_alive
    assert framer.body(b"ab", True) == b"ab"


def test_framer_checks_content_length() -> None:
    framer = ResponseFramer("GET", (1, 1), True)
    framer.start(200, [(b"Content-Length", b"3"), (b"content-length", b"3")])
    assert framer.head(b"a", False, b"D").count(b"content-length: 3") == 1
    assert framer.body(b"ab", False) == b"ab"
    with pytest.raises(RuntimeError, match="ended after 2 of"):
        framer.body(b"", True)
    framer = ResponseFramer("GET", (1, 1), True)
    with pytest.raises(RuntimeError, match="conflicting"):
        framer.start(200, [(b"content-length", b"3"), (b"content-length", b"4")])
    with pytest.raises(RuntimeError, match="invalid Content-Length"):
        ResponseFramer("GET", (1, 1), True).start(200, [(b"content-length", b"-1")])


def test_framer_connection_close_and_transfer_encoding() -> None:
    framer = ResponseFramer("GET", (1, 1), True)
    framer.start(200, [(b"connection", b"Keep-Alive, Close"), (b"transfer-encoding", b"chunked")])
    head = framer.head(b"", False, b"D")
    assert head.count(b"connection") == 1 and b"connection: close" in head
    assert head.count(b"transfer-encoding: chunked") == 1
    assert not framer.keep_alive
    with pytest.raises(RuntimeError, match="unsupported Transfer-Encoding"):
        ResponseFramer("GET", (1, 1), True).start(200, [(b"transfer-encoding", b"gzip")])


def test_framer_no_body_statuses_and_head() -> None:
    framer = ResponseFramer("GET", (1, 1), True)
    framer.start(204, [(b"content-length", b"0")])
    head = framer.head(b"x", True, b"D")
    assert b"content-length" not in head and b"chunked" not in head
    assert framer.body(b"x", True) == b""
    framer = ResponseFramer("HEAD", (1, 1), True)
    framer.start(200, [])
    head = framer.head(b"", False, b"D")  # streamed, length unknown: none said, not chunked
    assert b"content-length" not in head and b"chunked" not in head and framer.keep_alive


def test_http_date_is_an_imf_fixdate() -> None:
    assert http_date(0) == b"Thu, 01 Jan 1970 00:00:00 GMT"
    assert http_date(1e9) == b"Sun, 09 Sep 2001 01:46:40 GMT"


def test_parser_closed_sentinel_is_not_a_response() -> None:
    parser = ResponseParser()
    parser.feed_eof()
    assert parser.next_event() is CLOSED
