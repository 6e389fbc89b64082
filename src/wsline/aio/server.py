"""The asyncio WebSocket server: ``serve(handler, host, port)``."""

from __future__ import annotations

import asyncio
import collections
import functools
import inspect
import logging
import socket
import ssl as ssl_module
from typing import Any, AsyncIterator, Awaitable, Callable, Generator, NamedTuple, Sequence, Union, cast

from ..errors import ConnectionClosed, HandshakeRejected
from ..protocol import deflate as pmd
from ..protocol.handshake import reject_response
from ..protocol.http11 import NEED_DATA, Data, EndOfMessage, Request, RequestParser, Response
from ..protocol.server import DEFAULT_SERVER_HEADER, SelectSubprotocol, ServerHandshake, ServerOptions
from .connection import (
    DEBUG,
    ProtocolBase,
    WebSocket,
    _debug_enabled,
    _next_id,
    attach_listener,
    set_nodelay,
    start,
)
from .listener import Listener
from .loop import STOP_SIGNALS, wait_for_signal

__all__ = ["serve", "Server", "ServerError", "ConnectionInfo", "ErrorChannel"]

logger = logging.getLogger("wsline.server")

Handler = Callable[[WebSocket], Awaitable[Any]]
ProcessRequest = Callable[[Request], Union[Response, Awaitable[Union[Response, None]], None]]
HttpHandler = Callable[[Request], Union[Response, Awaitable[Response]]]


class ConnectionInfo(NamedTuple):
    """Which connection an error came from."""

    #: The connection's id, as in its log records (``ws.id``).
    id: str
    #: The client's address, as the socket gives it.
    remote_address: Any
    #: The request's path (never the query string: it may hold tokens).
    path: str


class ServerError(NamedTuple):
    """An item of :attr:`Server.errors`: the exception and its connection.

    It unpacks as ``error, info = item``.
    """

    error: BaseException
    connection: ConnectionInfo


class ErrorChannel:
    """A bounded queue of errors raised by connection handlers.

    Read it with ``async for error, info in server.errors`` or
    :meth:`get_nowait`. When full, the oldest item is dropped (and counted in
    :attr:`dropped`) so that an unread channel never blocks the server.
    ``maxlen`` is how many errors it keeps: ``serve(errors_maxlen=...)``.
    Iteration ends when the server is closed and the channel is empty.
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


class _Hooks:
    """The application's side of one server: what runs for requests and connections."""

    __slots__ = ("check_upgrade", "handler", "http_handler", "listener", "process_request")

    def __init__(
        self,
        handler: Handler | type[Listener],
        listener: type[Listener] | None,
        process_request: ProcessRequest | None,
        http_handler: HttpHandler | None,
        check_upgrade: Callable[[Request], Response | None] | None,
    ) -> None:
        self.handler = handler
        self.listener = listener
        self.process_request = process_request
        self.http_handler = http_handler
        self.check_upgrade = check_upgrade


class _Disconnected(Exception):
    """The client went away before a complete request arrived."""


class _ServerProtocol(ProtocolBase):
    """One server connection: HTTP/1.1 requests until an upgrade, then WebSocket.

    The requests are read by the sans-I/O :class:`~wsline.protocol.http11.RequestParser`
    and the upgrade is checked by :class:`~wsline.protocol.server.ServerHandshake`;
    this class only moves bytes, runs the hooks and keeps the timer.
    """

    def __init__(self, server: Server) -> None:
        self.server = server
        self.opts = server._opts
        self.hooks = server._hooks
        self.conn_id = _next_id()
        self._parser = RequestParser(self.opts.limits)
        # The parser's first answer, got while no task ran yet (an event or its error).
        self._pending: object = None
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost = False
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
        # No task yet: it starts when a whole request head is in (or the
        # request is refused), so a handshake costs no wait-for-data round.
        self._start_timer(True)

    def _start_task(self) -> None:
        task = self._loop.create_task(self._run())
        self._task = task
        server = self.server
        server._tasks.add(task)
        task.add_done_callback(server._tasks.discard)

    def handshake_data(self, data: memoryview) -> None:
        parser = self._parser
        parser.feed(data)
        if self._task is None:
            try:
                event = parser.next_event()
            except HandshakeRejected as exc:
                self._pending = exc
            else:
                if event is NEED_DATA:
                    return
                self._pending = event
            self._start_task()
        elif parser.buffered > self.opts.max_header_size + 65536 and self.transport is not None:
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
        if self.ws is not None:
            return None  # the WebSocket learns of it in connection_lost
        self._parser.feed_eof()
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
            self._timer = self._loop.call_later(self.opts.open_timeout, self._timed_out, first)

    def _timed_out(self, first: bool) -> None:
        self._timer = None
        if self.ws is not None or self.transport is None or self._lost:
            return
        if not first and not self._parser.buffered:
            self.transport.close()  # an idle keep-alive connection
            return
        logger.info("[%s] request timed out", self.conn_id)
        self._respond(reject_response(408, "request timed out\n"))

    def _respond(self, response: Response) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.server._handshake.serialize(response, None, False))
            self.transport.close()

    # ------------------------------------------------------------- reading

    async def _wait_data(self) -> None:
        if self._lost:
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

    async def _next_event(self) -> object:
        """The parser's next event (a request head, body data, its end, or CLOSED), waiting for bytes."""
        pending = self._pending
        if pending is not None:
            self._pending = None
            if isinstance(pending, HandshakeRejected):
                raise pending
            return pending
        parser = self._parser
        while True:
            event = parser.next_event()
            if event is not NEED_DATA:
                return event
            await self._wait_data()

    async def _read_body(self) -> bytes:
        """The body of the current request, to its end (the parser enforces ``max_body_size``)."""
        chunks: list[bytes] = []
        while True:
            event = await self._next_event()
            if isinstance(event, Data):
                chunks.append(event.data)
            elif isinstance(event, EndOfMessage):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
            else:  # pragma: no cover - the parser ends every body with EndOfMessage
                raise HandshakeRejected(400, "incomplete request body")

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
        if ws is not None and self.hooks.listener is None:
            await self._run_handler(ws)

    def _info(self) -> ConnectionInfo:
        path = self.request.path if self.request is not None else ""
        return ConnectionInfo(self.conn_id, self.remote_address, path)

    async def _serve_requests(self) -> WebSocket | None:
        """Answer HTTP requests until one upgrades (returns the WebSocket) or the connection ends."""
        first = True
        handshake = self.server._handshake
        parser = self._parser
        while True:
            if not first:  # the first request's timer runs since connection_made
                self._start_timer(first)
            self.request = None
            keep_alive = False
            try:
                event = await self._next_event()
                if not isinstance(event, Request):  # CLOSED: the client ended a keep-alive connection
                    if self.transport is not None:
                        self.transport.close()
                    return None
                request = event
                request.remote_address = self.remote_address
                self.request = request
                upgrade = request.is_upgrade
                request.body = await self._read_body()
                if not upgrade:
                    self._cancel_timer()  # the request is in; the handler may take its time
                response = await self._gate(request)
                if response is None:
                    if upgrade:
                        upgraded = await self._upgrade(request)
                        if not isinstance(upgraded, Response):
                            return upgraded
                        response = upgraded
                    else:
                        response = await self._http(request)
                keep_alive = handshake.keep_alive(request, response, parser.keep_alive)
            except HandshakeRejected as exc:
                logger.info("[%s] rejected request: %d %s", self.conn_id, exc.status, exc.reason)
                response = reject_response(exc.status, exc.reason + "\n", exc.headers)
            if self._lost:
                return None
            assert self.transport is not None
            self.transport.write(handshake.serialize(response, self.request, keep_alive))
            if not keep_alive:
                self.transport.close()
                return None
            parser.start_next()
            # A client that sends requests but does not read the answers gets
            # no more answers (nor reads) until it catches up.
            while self._http_paused and not self._lost:
                await self._wait_drain()
            if self._lost:
                return None
            first = False

    async def _gate(self, request: Request) -> Response | None:
        """Run ``process_request``; a Response it returns answers the request."""
        hook = self.hooks.process_request
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
        handler = self.hooks.http_handler
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
        hooks = self.hooks
        if hooks.check_upgrade is not None:
            refusal = hooks.check_upgrade(request)
            if refusal is not None:
                return refusal
        accepted = self.server._handshake.accept(request)
        if self._lost:
            return None
        self._cancel_timer()
        self.transport.write(accepted.data)
        opts = self.opts
        ws = WebSocket(
            self.transport,
            accepted.connection,
            request=request,
            response=accepted.response,
            subprotocol=accepted.subprotocol,
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
        if hooks.listener is not None:
            self._start_listener(ws, hooks.listener)
        start(ws, self._parser.trailing_data())
        return ws

    def _start_listener(self, ws: WebSocket, cls: type[Listener]) -> None:
        """The callback API: attach a new listener before any message is fed."""
        server = self.server
        info = self._info()
        server.connections.add(ws)
        ws.add_close_callback(server.connections.discard)
        try:
            listener = cls()
        except Exception as exc:
            ws.logger.error("listener %s() failed: %r", cls.__name__, exc, exc_info=True)
            server._report(exc, info)
            ws.close_nowait(1011, "internal error")
            return
        attach_listener(ws, listener, lambda exc: server._report(exc, info))

    async def _run_handler(self, ws: WebSocket) -> None:
        server = self.server
        server.connections.add(ws)
        try:
            await cast(Handler, self.hooks.handler)(ws)
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
    """A running WebSocket server. Use as an async context manager, or call :meth:`close`.

    Made by :func:`serve` (never constructed directly): ``async with
    serve(...) as server`` or ``server = await serve(...)``. Its options are
    those given to :func:`serve`.
    """

    def __init__(self, opts: ServerOptions, hooks: _Hooks, errors_maxlen: int = 100) -> None:
        self._opts = opts
        self._hooks = hooks
        self._handshake = ServerHandshake(opts)
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

    async def serve_forever(self, stop_signals: Sequence[int] = STOP_SIGNALS) -> None:
        """Serve until a stop signal, :meth:`close` or cancellation; then close cleanly.

        In the main thread, SIGINT (Ctrl-C) and SIGTERM stop the server: every
        client gets a 1001 close frame, the handlers finish (see :meth:`close`)
        and this returns, without a :class:`KeyboardInterrupt` traceback. A
        complete server script::

            async def main() -> None:
                async with wsline.serve(handler, "127.0.0.1", 8000) as server:
                    await server.serve_forever()

            asyncio.run(main())

        ``stop_signals=()`` leaves the signals alone.
        """
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(asyncio.shield(self._closed))]
        if stop_signals:
            waits.append(asyncio.ensure_future(wait_for_signal(stop_signals)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in waits:
                fut.cancel()
            await self.close()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _is_async_callable(handler: object) -> bool:
    """Whether calling ``handler`` gives an awaitable: an async function, a partial of one, a Router."""
    while isinstance(handler, functools.partial):
        handler = handler.func
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - an instance with an async __call__
    return inspect.iscoroutinefunction(call)


class _Serve:
    """Awaitable and async context manager returned by :func:`serve`."""

    def __init__(self, start: Callable[[], Awaitable[Server]]) -> None:
        self._start = start
        self._server: Server | None = None

    def __await__(self) -> Generator[Any, None, Server]:
        return self._start().__await__()

    def __repr__(self) -> str:
        # asyncio.run(serve(...)) shows this: say what to do instead.
        return (
            "<wsline.serve(): not a coroutine; inside one, use 'async with wsline.serve(...) as server:' "
            "or 'server = await wsline.serve(...)'>"
        )

    def __enter__(self) -> None:
        raise TypeError("use 'async with wsline.serve(...)' (inside a coroutine), not 'with'")

    def __exit__(self, *exc: object) -> None:  # pragma: no cover - __enter__ always raises
        pass

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
    server_header: str | None = DEFAULT_SERVER_HEADER,
    errors_maxlen: int = 100,
) -> _Serve:
    """Start a WebSocket server; ``handler(ws)`` runs for each connection.

    Use ``async with serve(handler, "127.0.0.1", 8000) as server:`` or
    ``server = await serve(...)``; either way the result is a :class:`Server`
    (``serve()`` itself returns an object that is both awaitable and an async
    context manager; leaving the ``async with`` block closes the server). A
    script that runs until Ctrl-C calls :meth:`Server.serve_forever`.

    Returning from the handler closes the connection with 1000; an exception
    closes it with 1011 and goes to ``server.errors`` and the ``wsline``
    logger. The options are checked here, before anything listens: a bad value
    raises :class:`ValueError` (or :class:`TypeError`) at once.

    :param handler: ``async def handler(ws)``, run once per connection with the
        :class:`~wsline.WebSocket` (a :func:`functools.partial` of one, or an
        object with an ``async def __call__``, will do; a plain ``def`` raises
        :class:`TypeError`). A :class:`wsline.http.Router` serves its HTTP and
        WebSocket routes. A :class:`~wsline.Listener` subclass selects the
        callback API: one instance per connection, no task and no await per
        message.
    :param host: the address(es) to listen on: a host name or IP address, a
        sequence of them, or ``None`` (or ``""``) for every interface, as
        :meth:`asyncio.loop.create_server` takes them.
    :param port: the TCP port; ``0`` or ``None`` picks a free one
        (:attr:`Server.port` says which).
    :param subprotocols: subprotocol names in this server's order of
        preference: the first one that the client also offered is chosen; none
        is chosen when there is no common one (the connection still opens, and
        ``ws.subprotocol`` is ``None``).
    :param select_subprotocol: ``select_subprotocol(request, offered)`` chooses
        instead of ``subprotocols``: it returns one of ``offered`` (the
        client's list, in its order) or ``None`` for none; a name that was not
        offered answers 500.
    :param origins: the ``Origin`` header values allowed to open a connection,
        compared exactly (``"https://example.com"``); ``None`` in the list
        admits clients that send no ``Origin`` (non-browser clients). Others
        get 403. Without ``origins`` (the default) every origin is accepted:
        :mod:`wsline.gate` has normalizing and same-origin checks.
    :param process_request: ``process_request(request)`` (sync or async) runs
        for every request, WebSocket upgrade or plain HTTP, once its head and
        body are in and before anything is answered. It returns ``None`` to go
        on, or a :class:`~wsline.Response` to answer with instead (a page, a
        401, a 403...). :mod:`wsline.gate` has ready-made ones and
        :func:`~wsline.gate.chain` to combine them.
    :param http_handler: ``http_handler(request)`` (sync or async) answers the
        plain HTTP requests (not upgrades) on the same port with a
        :class:`~wsline.Response`; keep-alive, ``HEAD`` and request bodies up to
        ``max_body_size`` are handled for it. Without it, plain requests get
        426. A :class:`~wsline.http.Router` passed as ``handler`` brings its own.
    :param compression: ``"deflate"`` (the default) accepts permessage-deflate
        when the client offers it; ``None`` declines it. Anything else raises
        :class:`ValueError`.
    :param deflate: a :class:`~wsline.DeflateConfig` that tunes
        permessage-deflate (window bits, memLevel, context takeover, the size
        threshold); the default is
        :data:`~wsline.protocol.deflate.DEFAULT_SERVER_CONFIG` (12-bit windows,
        memLevel 5).
    :param ping_interval: seconds between keepalive pings on each connection;
        ``None`` sends none.
    :param ping_timeout: seconds to wait for the pong to a keepalive ping; then
        the connection is considered dead and dropped
        (:class:`~wsline.errors.KeepaliveTimeout`, close code 1006 for the
        handler). ``None`` waits forever.
    :param open_timeout: seconds a client has to send a whole request head (and
        body), from the moment it connects (408 after it); an idle keep-alive
        connection is closed after as long. ``None`` disables the limit.
    :param close_timeout: seconds the closing handshake may take before the
        TCP connection is aborted; also how long :meth:`Server.close` waits for
        handlers to return before it cancels them.
    :param max_size: the largest message accepted, in bytes, after
        decompression; a bigger one closes the connection with 1009 before the
        memory is spent. ``None``: no limit.
    :param max_queue: how many received messages may wait unread before the
        connection stops reading from its socket (TCP then pushes back on the
        client); reading resumes as they are read. ``None``: no limit.
    :param write_limit: the high-water mark of each connection's write buffer,
        in bytes: :meth:`WebSocket.send` waits while more than this is
        buffered, :attr:`WebSocket.writing_paused` is true, and
        :func:`wsline.broadcast` allows a backlog of 16 times it.
    :param max_header_size: the largest request head accepted, in bytes (431
        beyond it).
    :param max_body_size: the largest request body accepted, in bytes (413
        beyond it).
    :param max_connections_per_client: how many connections one client IP
        address may have open at once; more get 429. ``None``: no limit.
    :param ssl: an :class:`ssl.SSLContext` with the server's certificate, for
        ``wss://`` (and ``https://``); ``None`` serves plain ``ws://``.
    :param sock: an already bound (and listening) socket to serve on, instead
        of ``host`` and ``port``.
    :param reuse_port: set ``SO_REUSEPORT`` so that several processes can
        listen on the same port (Linux balances connections between them).
    :param backlog: the listen queue length passed to :meth:`socket.socket.listen`.
    :param server_header: the ``Server`` header of every response;
        ``None`` sends none.
    :param errors_maxlen: how many handler errors :attr:`Server.errors` keeps
        unread before it drops the oldest.
    :returns: an awaitable async context manager that gives the
        :class:`Server` once it listens.
    :raises ValueError: for an invalid option (a negative size, an empty
        subprotocol name, an unknown ``compression``...).
    :raises TypeError: when ``handler`` is not an async callable or a
        :class:`~wsline.Listener` subclass.
    :raises OSError: when awaited, if the address cannot be bound (e.g. the
        port is taken).
    """
    if compression not in ("deflate", None):
        raise ValueError(f"unsupported compression {compression!r}; use 'deflate' or None")
    listener = handler if isinstance(handler, type) and issubclass(handler, Listener) else None
    if listener is None and not _is_async_callable(handler):
        raise TypeError(
            f"serve() needs an 'async def' handler (or a Listener subclass), not {handler!r}: "
            "each connection runs 'await handler(ws)'"
        )
    # A router (wsline.http.Router) brings its HTTP routes and WebSocket paths.
    if http_handler is None and listener is None:
        http_handler = getattr(handler, "handle_http", None)
    check_upgrade = getattr(handler, "check_upgrade", None) if listener is None else None
    opts = ServerOptions(
        subprotocols=tuple(subprotocols or ()),
        origins=tuple(origins) if origins is not None else None,
        select_subprotocol=select_subprotocol,
        deflate=(deflate or pmd.DEFAULT_SERVER_CONFIG) if compression == "deflate" else None,
        max_size=max_size,
        max_queue=max_queue,
        write_limit=write_limit,
        max_header_size=max_header_size,
        max_body_size=max_body_size,
        max_connections_per_client=max_connections_per_client,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        open_timeout=open_timeout,
        close_timeout=close_timeout,
        server_header=server_header,
    )
    hooks = _Hooks(handler, listener, process_request, http_handler, check_upgrade)

    async def start() -> Server:
        loop = asyncio.get_running_loop()
        server = Server(opts, hooks, errors_maxlen)
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
