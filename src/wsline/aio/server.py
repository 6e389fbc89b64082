"""The asyncio WebSocket server: ``serve(handler, host, port)``."""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import socket
import ssl as ssl_module
from typing import Any, AsyncIterator, Awaitable, Callable, Generator, NamedTuple, Sequence, Union

from .. import __version__
from ..errors import ConnectionClosed, HandshakeRejected, NegotiationError
from ..protocol import deflate as pmd
from ..protocol.connection import Connection
from ..protocol.handshake import (
    Request,
    Response,
    accept_response,
    build_response,
    check_request,
    parse_request,
    reject_response,
)
from .connection import ProtocolBase, WebSocket, _next_id, set_nodelay

__all__ = ["serve", "Server", "ServerError", "ConnectionInfo", "ErrorChannel"]

logger = logging.getLogger("wsline.server")

Handler = Callable[[WebSocket], Awaitable[Any]]
ProcessRequest = Callable[[Request], Union[Response, Awaitable[Union[Response, None]], None]]
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
    server_header: str | None


class _ServerProtocol(ProtocolBase):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.opts = server._opts
        self.conn_id = _next_id()
        self._head = bytearray()
        self._head_fut: asyncio.Future[bytes] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost = False
        self.request: Request | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        set_nodelay(transport)
        transport.set_write_buffer_limits(high=self.opts.write_limit)
        loop = asyncio.get_running_loop()
        self._head_fut = loop.create_future()
        if self.opts.open_timeout is not None:
            self._timer = loop.call_later(self.opts.open_timeout, self._open_timed_out)
        self.server._protocols.add(self)
        self._task = loop.create_task(self._run())

    def _open_timed_out(self) -> None:
        self._timer = None
        if self.ws is None and self.transport is not None and not self._lost:
            logger.info("[%s] opening handshake timed out", self.conn_id)
            self._respond(reject_response(408, "opening handshake timed out\n"))

    def handshake_data(self, data: memoryview) -> None:
        head = self._head
        scan_from = max(0, len(head) - 3)
        head += data
        fut = self._head_fut
        if fut is None or fut.done():
            if len(head) > self.opts.max_header_size + 65536:
                self.transport.abort()  # type: ignore[union-attr]
            return
        end = head.find(b"\r\n\r\n", scan_from)
        limit = self.opts.max_header_size
        if end < 0:
            if len(head) > limit:
                fut.set_exception(HandshakeRejected(431, f"request head larger than {limit} bytes"))
            return
        if end > limit:
            fut.set_exception(HandshakeRejected(431, f"request head larger than {limit} bytes"))
            return
        fut.set_result(bytes(head[:end]))
        del head[: end + 4]
        assert self.transport is not None
        self.transport.pause_reading()

    def _respond(self, response: Response) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(build_response(response))
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        fut = self._head_fut
        if fut is not None and not fut.done():
            fut.cancel()
        self.server._protocols.discard(self)
        super().connection_lost(exc)

    async def _run(self) -> None:
        try:
            ws = await self._handshake()
        except asyncio.CancelledError:
            return
        except Exception as exc:  # pragma: no cover - defensive
            logger.exception("[%s] unexpected error in the opening handshake", self.conn_id)
            self.server._report(exc, self._info())
            if self.transport is not None:
                self.transport.abort()
            return
        if ws is not None:
            await self._run_handler(ws)

    def _info(self) -> ConnectionInfo:
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        path = self.request.path if self.request is not None else ""
        return ConnectionInfo(self.conn_id, peer, path)

    async def _handshake(self) -> WebSocket | None:
        assert self._head_fut is not None and self.transport is not None
        opts = self.opts
        try:
            head = await self._head_fut
            request = parse_request(head)
            self.request = request
            if opts.process_request is not None:
                result = opts.process_request(request)
                if inspect.isawaitable(result):
                    result = await result
                if result is not None:
                    if not isinstance(result, Response):
                        raise TypeError("process_request must return a Response or None")
                    self._respond(result)
                    return None
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
        except HandshakeRejected as exc:
            logger.info("[%s] rejected handshake: %d %s", self.conn_id, exc.status, exc.reason)
            self._respond(reject_response(exc.status, exc.reason + "\n", exc.headers))
            return None
        if self._lost:
            return None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        extra = [("Server", opts.server_header)] if opts.server_header else []
        response = accept_response(key, subprotocol, extensions, extra)
        self.transport.write(build_response(response))
        core = Connection(
            False,
            max_size=opts.max_size,
            deflate=deflate,
            compress_threshold=opts.deflate.threshold if opts.deflate is not None else 0,
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
            conn_id=self.conn_id,
        )
        self.ws = ws
        ws.logger.debug("connection open: %s %s", request.method, request.target)
        if self._head:
            rest, self._head = self._head, bytearray()
            ws._feed(memoryview(rest))
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


class Server:
    """A running WebSocket server. Use as an async context manager, or call :meth:`close`."""

    def __init__(self, opts: _Options, errors_maxlen: int = 100) -> None:
        self._opts = opts
        self._server: asyncio.Server | None = None
        self._protocols: set[_ServerProtocol] = set()
        #: The open WebSocket connections.
        self.connections: set[WebSocket] = set()
        #: Errors raised by handlers, as :class:`ServerError` items.
        self.errors = ErrorChannel(errors_maxlen)
        self._closing = False
        self._closed = asyncio.get_running_loop().create_future()

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
        tasks = [p._task for p in list(self._protocols) if p._task is not None and not p._task.done()]
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
    handler: Handler,
    host: str | Sequence[str] | None = None,
    port: int | None = None,
    *,
    subprotocols: Sequence[str] | None = None,
    select_subprotocol: SelectSubprotocol | None = None,
    origins: Sequence[str | None] | None = None,
    process_request: ProcessRequest | None = None,
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
    ``server.errors`` and the ``wsline.server`` logger.

    - ``subprotocols``: names in this server's order of preference; the first
      one the client offered is chosen (``select_subprotocol(request, offered)``
      overrides).
    - ``origins``: allowed ``Origin`` values (``None`` in the list admits
      clients that send none); others get 403.
    - ``process_request(request)``: runs before the handshake; return a
      :class:`~wsline.protocol.handshake.Response` to answer with it instead
      (e.g. a page, or a 401), or ``None`` to go on.
    - ``compression="deflate"`` accepts permessage-deflate (``deflate`` tunes it);
      ``None`` turns it off.
    """
    if compression not in ("deflate", None):
        raise ValueError(f"unsupported compression {compression!r}; use 'deflate' or None")
    if ping_interval is not None and ping_interval <= 0:
        raise ValueError("ping_interval must be positive or None")
    deflate_config = (deflate or pmd.DeflateConfig()) if compression == "deflate" else None
    opts = _Options(
        handler=handler,
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
