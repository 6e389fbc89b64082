"""The asyncio WebSocket server: ``serve(handler, host, port)``."""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import re
import socket
import ssl as ssl_module
from typing import Any, AsyncIterator, Awaitable, Callable, Generator, NamedTuple, Sequence, Union, cast

from .._version import __version__
from ..errors import ConnectionClosed, HandshakeRejected, NegotiationError
from ..protocol import deflate as pmd
from ..protocol.connection import Connection
from ..protocol.handshake import (
    Headers,
    Request,
    Response,
    accept_response,
    build_response,
    check_request,
    parse_request,
    reject_response,
)
from .connection import DEBUG, ProtocolBase, WebSocket, _debug_enabled, _next_id, set_nodelay
from .listener import Listener

__all__ = ["serve", "Server", "ServerError", "ConnectionInfo", "ErrorChannel"]

logger = logging.getLogger("wsline.server")

Handler = Callable[[WebSocket], Awaitable[Any]]
ProcessRequest = Callable[[Request], Union[Response, Awaitable[Union[Response, None]], None]]
HttpHandler = Callable[[Request], Union[Response, Awaitable[Response]]]
SelectSubprotocol = Callable[[Request, Sequence[str]], Union[str, None]]


class ConnectionInfo(NamedTuple):
    """Which connection an error came from."""

    id: str
    remote_address: Any
    path: str


class ServerError(NamedTuple):
    """An item of :attr:`Server.errors`: the exception and its connection."""

    error: BaseException
    connection: ConnectionInfo


class ErrorChannel:
    """A bounded queue of errors raised by connection handlers.

    Read it with ``async for error, info in server.errors`` or
    :meth:`get_nowait`. When full, the oldest item is dropped (and counted in
    :attr:`dropped`) so that an unread channel never blocks the server.
    """

    def __init__(self, maxlen: int = 100) -> None:
        self._items: collections.deque[ServerError] = collections.deque(maxlen=maxlen)
        self._waiters: list[asyncio.Future[None]] = []
        self._closed = False
        #: How many errors were dropped because the channel was full.
        self.dropped = 0

    def put(self, item: ServerError) -> None:
        """Add an error (drops the oldest when full)."""
        if len(self._items) == self._items.maxlen:
            self.dropped += 1
        self._items.append(item)
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def close(self) -> None:
        """No more errors will come; iteration ends once the channel is empty."""
        self._closed = True
        self._wake()

    def get_nowait(self) -> ServerError | None:
        """The oldest error, or ``None`` if there is none."""
        return self._items.popleft() if self._items else None

    async def get(self) -> ServerError:
        """Wait for the next error (raises :class:`StopAsyncIteration` when closed and empty)."""
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            await fut
        return self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)

    def __aiter__(self) -> AsyncIterator[ServerError]:
        return self

    async def __anext__(self) -> ServerError:
        return await self.get()


class _Options:
    """Per-server settings (never process-global)."""

    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)

    handler: Handler
    listener: type[Listener] | None
    subprotocols: Sequence[str] | None
    select_subprotocol: SelectSubprotocol | None
    origins: Sequence[str | None] | None
    process_request: ProcessRequest | None
    ping_interval: float | None
    ping_timeout: float | None
    open_timeout: float | None
    close_timeout: float
    max_size: int | None
    max_queue: int | None
    write_limit: int
    deflate: pmd.DeflateConfig | None
    max_header_size: int
    max_body_size: int
    max_connections_per_client: int | None
    http_handler: HttpHandler | None
    check_upgrade: Callable[[Request], Response | None] | None
    server_header: str | None


class _Disconnected(Exception):
    """The client went away before a complete request arrived."""


class _ServerProtocol(ProtocolBase):
    """One server connection: HTTP/1.1 requests until an upgrade, then WebSocket."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.opts = server._opts
        self.conn_id = _next_id()
        self._inbuf = bytearray()
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost = False
        self._eof = False
        self._http_paused = False  # the peer does not read our HTTP responses
        self._loop: asyncio.AbstractEventLoop = server._loop
        self._client_ip: str | None = None
        self.request: Request | None = None
        self.remote_address: Any = None

    # ------------------------------------------------------------ transport side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.transport = transport
        set_nodelay(transport)
        transport.set_write_buffer_limits(high=self.opts.write_limit)
        self.remote_address = transport.get_extra_info("peername")
        server = self.server
        server._protocols.add(self)
        limit = self.opts.max_connections_per_client
        if limit is not None and isinstance(self.remote_address, tuple):
            ip = str(self.remote_address[0])
            count = server._per_client.get(ip, 0)
            if count >= limit:
                logger.info("[%s] refused: %s has %d connections open", self.conn_id, ip, count)
                self._respond(reject_response(429, f"too many connections from {ip}\n"))
                return
            server._per_client[ip] = count + 1
            self._client_ip = ip
        # No task yet: it starts when a whole request head is in (or too much
        # arrived without one), so a handshake costs no wait-for-data round.
        self._start_timer(True)

    def _start_task(self) -> None:
        task = self._loop.create_task(self._run())
        self._task = task
        server = self.server
        server._tasks.add(task)
        task.add_done_callback(server._tasks.discard)

    def handshake_data(self, data: memoryview) -> None:
        inbuf = self._inbuf
        seen = len(inbuf)
        inbuf += data
        if self._task is None:
            if inbuf.find(b"\r\n\r\n", max(0, seen - 3)) < 0 and len(inbuf) <= self.opts.max_header_size:
                return
            self._start_task()
        if len(inbuf) > self.opts.max_header_size + 65536 and self.transport is not None:
            self.transport.pause_reading()  # _wait_data resumes when more is needed
        self._wake()

    def pause_writing(self) -> None:
        if self.ws is None:  # before the upgrade: _serve_requests waits for the drain
            self._http_paused = True
        super().pause_writing()

    def resume_writing(self) -> None:
        if self.ws is None:
            self._http_paused = False
            self._wake()
        super().resume_writing()

    def eof_received(self) -> bool | None:
        self._eof = True
        if self._task is None:
            return None  # nothing was asked: close the transport
        self._wake()
        return None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._cancel_timer()
        self._wake()
        server = self.server
        server._protocols.discard(self)
        if self._client_ip is not None:
            left = server._per_client.get(self._client_ip, 1) - 1
            if left > 0:
                server._per_client[self._client_ip] = left
            else:
                server._per_client.pop(self._client_ip, None)
            self._client_ip = None
        super().connection_lost(exc)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _start_timer(self, first: bool) -> None:
        self._cancel_timer()
        if self.opts.open_timeout is not None:
            self._timer = self._loop.call_later(
                self.opts.open_timeout, self._timed_out, first
            )

    def _timed_out(self, first: bool) -> None:
        self._timer = None
        if self.ws is not None or self.transport is None or self._lost:
            return
        if not first and not self._inbuf:
            self.transport.close()  # an idle keep-alive connection
            return
        logger.info("[%s] request timed out", self.conn_id)
        self._respond(reject_response(408, "request timed out\n"))

    def _respond(self, response: Response) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(build_response(response))
            self.transport.close()

    # ------------------------------------------------------------- reading

    async def _wait_data(self) -> None:
        if self._lost or self._eof:
            raise _Disconnected
        assert self.transport is not None
        self.transport.resume_reading()
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiter = waiter
        await waiter

    async def _wait_drain(self) -> None:
        assert self.transport is not None
        self.transport.pause_reading()
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiter = waiter
        await waiter

    async def _read_head(self) -> bytes:
        limit = self.opts.max_header_size
        buf = self._inbuf
        scan = 0
        while True:
            end = buf.find(b"\r\n\r\n", scan)
            if end >= 0:
                if end > limit:
                    break
                head = bytes(buf[:end])
                del buf[: end + 4]
                return head
            if len(buf) > limit:
                break
            scan = max(0, len(buf) - 3)
            await self._wait_data()
        raise HandshakeRejected(431, f"request head larger than {limit} bytes")

    async def _read_body(self, request: Request) -> bytes:
        headers = request.headers
        if headers.get("Transfer-Encoding") is not None:
            codings = [c.strip().lower() for c in ",".join(headers.get_all("Transfer-Encoding")).split(",")]
            if codings != ["chunked"]:
                raise HandshakeRejected(501, "unsupported Transfer-Encoding")
            return await self._read_chunked()
        lengths = headers.get_all("Content-Length")
        if not lengths:
            return b""
        if len(set(lengths)) != 1 or not _DIGITS.fullmatch(lengths[0]):
            raise HandshakeRejected(400, "invalid Content-Length")
        length = int(lengths[0])
        if length > self.opts.max_body_size:
            raise HandshakeRejected(413, f"request body larger than {self.opts.max_body_size} bytes")
        while len(self._inbuf) < length:
            await self._wait_data()
        body = bytes(self._inbuf[:length])
        del self._inbuf[:length]
        return body

    async def _read_chunked(self) -> bytes:
        body = bytearray()
        buf = self._inbuf
        while True:
            end = buf.find(b"\r\n")
            while end < 0:
                if len(buf) > 1024:
                    raise HandshakeRejected(400, "malformed chunk size line")
                await self._wait_data()
                end = buf.find(b"\r\n")
            size_text = bytes(buf[:end]).split(b";", 1)[0].strip()
            if not _HEXDIGITS.fullmatch(size_text):
                raise HandshakeRejected(400, "malformed chunk size")
            size = int(size_text, 16)
            del buf[: end + 2]
            if len(body) + size > self.opts.max_body_size:
                raise HandshakeRejected(413, f"request body larger than {self.opts.max_body_size} bytes")
            if size == 0:
                # Skip trailers up to the empty line.
                while True:
                    end = buf.find(b"\r\n")
                    while end < 0:
                        if len(buf) > self.opts.max_header_size:
                            raise HandshakeRejected(431, "trailers too large")
                        await self._wait_data()
                        end = buf.find(b"\r\n")
                    line = bytes(buf[:end])
                    del buf[: end + 2]
                    if not line:
                        return bytes(body)
            while len(buf) < size + 2:
                await self._wait_data()
            if buf[size : size + 2] != b"\r\n":
                raise HandshakeRejected(400, "malformed chunk")
            body += buf[:size]
            del buf[: size + 2]

    # ------------------------------------------------------------- the request loop

    async def _run(self) -> None:
        try:
            ws = await self._serve_requests()
        except (asyncio.CancelledError, _Disconnected):
            if self.transport is not None and not self._lost:
                self.transport.close()
            return
        except Exception as exc:  # pragma: no cover - defensive
            logger.exception("[%s] unexpected error before the upgrade", self.conn_id)
            self.server._report(exc, self._info())
            if self.transport is not None:
                self.transport.abort()
            return
        finally:
            self._cancel_timer()
        if ws is not None and self.opts.listener is None:
            await self._run_handler(ws)

    def _info(self) -> ConnectionInfo:
        path = self.request.path if self.request is not None else ""
        return ConnectionInfo(self.conn_id, self.remote_address, path)

    async def _serve_requests(self) -> WebSocket | None:
        """Answer HTTP requests until one upgrades (returns the WebSocket) or the connection ends."""
        first = True
        while True:
            if not first:  # the first request's timer runs since connection_made
                self._start_timer(first)
            self.request = None
            keep_alive = False
            try:
                head = await self._read_head()
                request = parse_request(head)
                request.remote_address = self.remote_address
                self.request = request
                if not request.is_upgrade:
                    request.body = await self._read_body(request)
                    self._cancel_timer()  # the request is in; the handler may take its time
                response = await self._gate(request)
                if response is None:
                    if request.is_upgrade:
                        upgraded = await self._upgrade(request)
                        if not isinstance(upgraded, Response):
                            return upgraded
                        response = upgraded
                    else:
                        response = await self._http(request)
                keep_alive = _keep_alive(request, response)
            except HandshakeRejected as exc:
                logger.info("[%s] rejected request: %d %s", self.conn_id, exc.status, exc.reason)
                response = reject_response(exc.status, exc.reason + "\n", exc.headers)
            if self._lost:
                return None
            assert self.transport is not None
            self._write_response(response, self.request, keep_alive)
            if not keep_alive:
                self.transport.close()
                return None
            # A client that sends requests but does not read the answers gets
            # no more answers (nor reads) until it catches up.
            while self._http_paused and not self._lost:
                await self._wait_drain()
            if self._lost:
                return None
            first = False

    def _write_response(self, response: Response, request: Request | None, keep_alive: bool) -> None:
        assert self.transport is not None
        headers = Headers(response.headers.items())  # the handler's Response stays untouched
        if "Content-Length" not in headers and response.status >= 200 and response.status not in (204, 304):
            headers.add("Content-Length", str(len(response.body)))
        if not keep_alive and "Connection" not in headers:
            headers.add("Connection", "close")
        if self.opts.server_header and "Server" not in headers:
            headers.add("Server", self.opts.server_header)
        body = response.body
        if request is not None and request.method == "HEAD":
            response = Response(response.status, response.reason, headers)
        else:
            response = Response(response.status, response.reason, headers, body)
        self.transport.write(build_response(response))

    async def _gate(self, request: Request) -> Response | None:
        """Run ``process_request``; a Response it returns answers the request."""
        hook = self.opts.process_request
        if hook is None:
            return None
        try:
            result = hook(request)
            if inspect.isawaitable(result):
                result = await result
            if result is not None and not isinstance(result, Response):
                raise TypeError("process_request must return a Response or None")
        except HandshakeRejected:
            raise
        except Exception as exc:
            logger.error("[%s] process_request failed: %r", self.conn_id, exc, exc_info=True)
            self.server._report(exc, self._info())
            return reject_response(500, "internal server error\n")
        return result

    async def _http(self, request: Request) -> Response:
        handler = self.opts.http_handler
        if handler is None:
            raise HandshakeRejected(
                426,
                "this is a WebSocket endpoint: the request needs 'Upgrade: websocket'",
                [("Upgrade", "websocket")],
            )
        try:
            result = handler(request)
            if inspect.isawaitable(result):
                result = await result
            if not isinstance(result, Response):
                raise TypeError(f"the HTTP handler returned {type(result).__name__}, not a Response")
            return result
        except HandshakeRejected:
            raise
        except Exception as exc:
            logger.error("[%s] HTTP handler failed: %r", self.conn_id, exc, exc_info=True)
            self.server._report(exc, self._info())
            return reject_response(500, "internal server error\n")

    async def _upgrade(self, request: Request) -> WebSocket | Response | None:
        assert self.transport is not None
        opts = self.opts
        if opts.check_upgrade is not None:
            refusal = opts.check_upgrade(request)
            if refusal is not None:
                return refusal
        key = check_request(request)
        if opts.origins is not None and request.origin not in opts.origins:
            raise HandshakeRejected(403, f"origin {request.origin!r} is not allowed")
        subprotocol = self._select_subprotocol(request)
        extensions, deflate = None, None
        ext_values = request.headers.get_all("Sec-WebSocket-Extensions")
        if opts.deflate is not None and ext_values:
            try:
                negotiated = pmd.server_negotiate(ext_values, opts.deflate)
            except NegotiationError as exc:
                raise HandshakeRejected(400, str(exc)) from None
            if negotiated is not None:
                extensions, deflate = negotiated
        if self._lost:
            return None
        self._cancel_timer()
        extra = [("Server", opts.server_header)] if opts.server_header else []
        response = accept_response(key, subprotocol, extensions, extra)
        self.transport.write(build_response(response))
        core = Connection(
            False,
            max_size=opts.max_size,
            deflate=deflate,
            compress_threshold=opts.deflate.threshold if opts.deflate is not None else 0,
            defer_close_reply=True,
        )
        ws = WebSocket(
            self.transport,
            core,
            request=request,
            response=response,
            subprotocol=subprotocol,
            ping_interval=opts.ping_interval,
            ping_timeout=opts.ping_timeout,
            close_timeout=opts.close_timeout,
            max_queue=opts.max_queue,
            write_limit=opts.write_limit,
            conn_id=self.conn_id,
        )
        self.ws = ws
        request.headers._index = None  # rebuilt if the application looks a header up; ~1 KB idle
        if _debug_enabled(DEBUG):
            ws.logger.debug("connection open: %s", request.path)  # not the query: it may hold tokens
        if opts.listener is not None:
            self._start_listener(ws, opts.listener)
        if self._inbuf:
            rest, self._inbuf = self._inbuf, bytearray()
            ws._feed(memoryview(rest))
        if not ws._reading_paused:
            self.transport.resume_reading()
        return ws

    def _select_subprotocol(self, request: Request) -> str | None:
        offered = request.subprotocols
        opts = self.opts
        if opts.select_subprotocol is not None:
            chosen = opts.select_subprotocol(request, offered)
            if chosen is not None and chosen not in offered:
                raise HandshakeRejected(500, f"select_subprotocol chose {chosen!r}, which was not offered")
            return chosen
        if not offered or not opts.subprotocols:
            return None
        for name in opts.subprotocols:
            if name in offered:
                return name
        return None

    def _start_listener(self, ws: WebSocket, cls: type[Listener]) -> None:
        """The callback API: attach a new listener before any message is fed."""
        server = self.server
        info = self._info()
        ws._report_error = lambda exc: server._report(exc, info)
        server.connections.add(ws)
        ws._lost_fut.add_done_callback(lambda _: server.connections.discard(ws))
        try:
            listener = cls()
        except Exception as exc:
            ws.logger.error("listener %s() failed: %r", cls.__name__, exc, exc_info=True)
            server._report(exc, info)
            ws.close_nowait(1011, "internal error")
            return
        listener.ws = ws
        ws._listener = listener
        ws._call_listener(listener.on_open)

    async def _run_handler(self, ws: WebSocket) -> None:
        server = self.server
        server.connections.add(ws)
        try:
            await self.opts.handler(ws)
        except ConnectionClosed as exc:
            ws.logger.debug("handler ended by closed connection: %s", exc)
        except asyncio.CancelledError:
            ws.logger.debug("handler cancelled")
            if server._closing:
                ws.abort()
            raise
        except Exception as exc:
            ws.logger.error("handler failed: %r", exc, exc_info=True)
            server._report(exc, self._info())
            await ws.close(1011, "internal error")
        finally:
            server.connections.discard(ws)
        await ws.close()


_DIGITS = re.compile(r"[0-9]{1,18}")
_HEXDIGITS = re.compile(rb"[0-9A-Fa-f]{1,16}")


def _keep_alive(request: Request, response: Response) -> bool:
    """Whether the connection stays open after this exchange (HTTP/1.1 rules)."""
    for value in request.headers.get_all("Connection") + response.headers.get_all("Connection"):
        if "close" in (token.strip().lower() for token in value.split(",")):
            return False
    return True


class Server:
    """A running WebSocket server. Use as an async context manager, or call :meth:`close`."""

    def __init__(self, opts: _Options, errors_maxlen: int = 100) -> None:
        self._opts = opts
        self._server: asyncio.Server | None = None
        self._protocols: set[_ServerProtocol] = set()
        self._per_client: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: The open WebSocket connections.
        self.connections: set[WebSocket] = set()
        #: Errors raised by handlers, as :class:`ServerError` items.
        self.errors = ErrorChannel(errors_maxlen)
        self._closing = False
        self._loop = asyncio.get_running_loop()
        self._closed = self._loop.create_future()

    def _report(self, error: BaseException, info: ConnectionInfo) -> None:
        self.errors.put(ServerError(error, info))

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets."""
        return tuple(self._server.sockets) if self._server is not None else ()

    @property
    def ports(self) -> list[int]:
        """The bound TCP ports."""
        return [s.getsockname()[1] for s in self.sockets if s.family in (socket.AF_INET, socket.AF_INET6)]

    @property
    def port(self) -> int:
        """The first bound TCP port (handy with ``port=0``)."""
        return self.ports[0]

    async def close(
        self, code: int = 1001, reason: str = "server shutting down", timeout: float | None = None
    ) -> None:
        """Stop accepting, close every connection with ``code`` (1001), wait for handlers.

        Handlers still running ``timeout`` seconds (default ``close_timeout``) after
        their connection closed are cancelled.
        """
        if self._closing:
            await asyncio.shield(self._closed)
            return
        self._closing = True
        if self._server is not None:
            self._server.close()
        # Connections still in their opening handshake are dropped.
        for proto in list(self._protocols):
            if proto.ws is None and proto.transport is not None:
                proto.transport.abort()
        wait = self._opts.close_timeout if timeout is None else timeout
        closers = [ws.close(code, reason, timeout=wait) for ws in list(self.connections)]
        if closers:
            await asyncio.gather(*closers, return_exceptions=True)
        tasks = [task for task in self._tasks if not task.done()]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=wait)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1)
        if self._server is not None:
            await self._server.wait_closed()
        self.errors.close()
        if not self._closed.done():
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        """Wait until :meth:`close` has finished."""
        await asyncio.shield(self._closed)

    async def serve_forever(self) -> None:
        """Serve until cancelled (then close)."""
        try:
            await asyncio.shield(self._closed)
        finally:
            await self.close()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _Serve:
    """Awaitable and async context manager returned by :func:`serve`."""

    def __init__(self, start: Callable[[], Awaitable[Server]]) -> None:
        self._start = start
        self._server: Server | None = None

    def __await__(self) -> Generator[Any, None, Server]:
        return self._start().__await__()

    async def __aenter__(self) -> Server:
        self._server = await self._start()
        return self._server

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        await self._server.close()


def serve(
    handler: Handler | type[Listener],
    host: str | Sequence[str] | None = None,
    port: int | None = None,
    *,
    subprotocols: Sequence[str] | None = None,
    select_subprotocol: SelectSubprotocol | None = None,
    origins: Sequence[str | None] | None = None,
    process_request: ProcessRequest | None = None,
    http_handler: HttpHandler | None = None,
    compression: str | None = "deflate",
    deflate: pmd.DeflateConfig | None = None,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    open_timeout: float | None = 10.0,
    close_timeout: float = 10.0,
    max_size: int | None = 2**20,
    max_queue: int | None = 32,
    write_limit: int = 2**16,
    max_header_size: int = 16384,
    max_body_size: int = 2**20,
    max_connections_per_client: int | None = None,
    ssl: ssl_module.SSLContext | None = None,
    sock: socket.socket | None = None,
    reuse_port: bool | None = None,
    backlog: int = 128,
    server_header: str | None = f"wsline/{__version__}",
    errors_maxlen: int = 100,
) -> _Serve:
    """Start a WebSocket server; ``handler(ws)`` runs for each connection.

    Use ``async with serve(handler, "127.0.0.1", 8000) as server:`` or
    ``server = await serve(...)``. Returning from the handler closes the
    connection with 1000; an exception closes it with 1011 and goes to
    ``server.errors`` and the ``wsline`` logger. A :class:`~wsline.Listener`
    subclass in place of ``handler`` selects the callback API (one instance
    per connection, no task, no await per message).

    - ``subprotocols``: names in this server's order of preference; the first
      one the client offered is chosen (``select_subprotocol(request, offered)``
      overrides).
    - ``origins``: allowed ``Origin`` values (``None`` in the list admits
      clients that send none); others get 403.
    - ``process_request(request)``: runs before the handshake; return a
      :class:`~wsline.protocol.handshake.Response` to answer with it instead
      (e.g. a page, or a 401), or ``None`` to go on.
    - ``http_handler(request)``: answers plain HTTP requests (not upgrades) on
      the same port with a :class:`~wsline.protocol.handshake.Response`
      (keep-alive, HEAD and request bodies up to ``max_body_size`` handled);
      without it they get 426. A :class:`wsline.http.Router` passed as
      ``handler`` provides both kinds of route.
    - ``max_connections_per_client``: open connections allowed per client IP
      address; more get 429.
    - ``compression="deflate"`` accepts permessage-deflate (``deflate`` tunes it);
      ``None`` turns it off.
    """
    if compression not in ("deflate", None):
        raise ValueError(f"unsupported compression {compression!r}; use 'deflate' or None")
    if ping_interval is not None and ping_interval <= 0:
        raise ValueError("ping_interval must be positive or None")
    listener = handler if isinstance(handler, type) and issubclass(handler, Listener) else None
    # A router (wsline.http.Router) brings its HTTP routes and WebSocket paths.
    if http_handler is None and listener is None:
        http_handler = getattr(handler, "handle_http", None)
    check_upgrade = getattr(handler, "check_upgrade", None) if listener is None else None
    deflate_config = (deflate or pmd.DEFAULT_SERVER_CONFIG) if compression == "deflate" else None
    opts = _Options(
        handler=handler,
        listener=listener,
        subprotocols=subprotocols,
        select_subprotocol=select_subprotocol,
        origins=origins,
        process_request=process_request,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        open_timeout=open_timeout,
        close_timeout=close_timeout,
        max_size=max_size,
        max_queue=max_queue,
        write_limit=write_limit,
        deflate=deflate_config,
        max_header_size=max_header_size,
        max_body_size=max_body_size,
        max_connections_per_client=max_connections_per_client,
        http_handler=http_handler,
        check_upgrade=check_upgrade,
        server_header=server_header,
    )

    async def start() -> Server:
        loop = asyncio.get_running_loop()
        server = Server(opts, errors_maxlen)
        if sock is not None:
            server._server = await loop.create_server(
                lambda: _ServerProtocol(server), sock=sock, ssl=ssl, backlog=backlog
            )
        else:
            server._server = await loop.create_server(
                lambda: _ServerProtocol(server),
                host,
                port or 0,
                ssl=ssl,
                backlog=backlog,
                reuse_port=reuse_port or None,
            )
        for s in server.sockets:
            logger.info("listening on %s", s.getsockname())
        return server

    return _Serve(start)
