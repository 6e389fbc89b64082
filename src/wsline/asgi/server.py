"""ASGI applications on wsline's own server: ``wsline.asgi.serve(app, host, port)``.

::

    from wsline.asgi import serve

    async def main() -> None:
        async with serve(app, "127.0.0.1", 8000) as server:   # a FastAPI, Starlette... app
            await server.serve_forever()                      # until SIGINT or SIGTERM

The connections are wsline's server connections (the per-client limit, the
head's ``open_timeout`` with its 408, pausing for a client that does not read)
with the request loop of an ASGI server: every request goes to the application,
one at a time per connection and in order (pipelined requests wait in the
parser); plain HTTP through :class:`~wsline.asgi.http.HTTPCycle` (streamed
bodies both ways), WebSocket upgrades through the shared ASGI WebSocket session
(:mod:`wsline.asgi.websocket`, the one the uvicorn protocol runs too). A
keep-alive connection waits ``keep_alive_timeout`` seconds for its next request.
Requests the parser refuses get its 4xx (``ServerHandshake.serialize``) and a
closed connection.

The application's lifespan (:mod:`wsline.asgi.lifespan`) starts before the
server listens and ends after its connections: :meth:`ASGIServer.close` (also on
SIGINT/SIGTERM in :meth:`~wsline.aio.server.Server.serve_forever`) stops
accepting, closes idle connections, lets requests in progress finish (for
``shutdown_timeout`` seconds, then cancels them), closes WebSockets with 1012
(service restart), then runs the lifespan shutdown.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import socket
import ssl as ssl_module
from typing import Any, Awaitable, Callable, Generator, Sequence, cast
from urllib.parse import quote

from ..aio.connection import ProtocolBase
from ..aio.server import Server, _Hooks, _ServerProtocol
from ..errors import HandshakeRejected
from ..protocol import deflate as pmd
from ..protocol.handshake import reject_response
from ..protocol.http11 import NEED_DATA, EndOfMessage, Request, RequestParser
from ..protocol.server import DEFAULT_SERVER_HEADER, ServerHandshake, ServerOptions
from .http import ASGIApp, Channel, HTTPCycle, http_date
from .lifespan import Lifespan, LifespanFailed, LifespanMode
from .scope import client_address, http_scope, scheme_for, server_address, websocket_scope
from .websocket import ASGIWebSocket

__all__ = [
    "ASGIServer",
    "LifespanFailed",
    "Runner",
    "TakeRequest",
    "asgi_runner",
    "run_request",
    "serve",
    "strip_prefix",
]

logger = logging.getLogger("wsline.asgi")
access_logger = logging.getLogger("wsline.asgi.access")

#: What takes over a connection for one request: ``await runner(channel)`` runs it
#: (the body, the answer; a WebSocket to its end) on the connection's
#: :class:`~wsline.asgi.http.Channel`, and returns whether the connection may
#: carry another request.
Runner = Callable[[Channel], Awaitable[bool]]
#: The hook: ``take_request(request)`` for each request head, before its body is
#: read: a :data:`Runner` to hand the connection to, or ``None`` to go on as usual.
TakeRequest = Callable[[Request], Runner | None]


async def _no_handler(ws: Any) -> None:  # pragma: no cover - the ASGI server runs no wsline handler
    raise RuntimeError("the ASGI server runs its application, not a wsline handler")


class _ASGIProtocol(_ServerProtocol):
    """One connection of the ASGI server: wsline's server connection with the ASGI request loop.

    It is also the :class:`~wsline.asgi.http.Channel` its HTTP cycles run on.
    """

    server: ASGIServer

    def __init__(self, server: ASGIServer) -> None:
        super().__init__(server)
        self._waiters: list[asyncio.Future[None]] = []
        self._eof = False
        self._session: ASGIWebSocket | None = None  # once upgraded
        self._busy = False  # a runner has the connection
        self._idle_deadline: float | None = None  # when an idle keep-alive connection closes
        self._idle_handle: asyncio.TimerHandle | None = None

    local_address: Any = None
    tls = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.local_address = transport.get_extra_info("sockname")
        self.tls = transport.get_extra_info("sslcontext") is not None
        super().connection_made(transport)

    # ------------------------------------------------------------ the Channel

    @property
    def parser(self) -> RequestParser:
        return self._parser

    @property
    def lost(self) -> bool:
        return self._lost

    @property
    def eof(self) -> bool:
        return self._eof

    @property
    def writing_paused(self) -> bool:
        return self._http_paused

    @property
    def closing(self) -> bool:
        return self.server._closing

    async def wait(self) -> None:
        fut: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(fut)
        try:
            await fut
        finally:
            del fut

    def wake(self) -> None:
        self._wake()

    @property
    def handshake(self) -> ServerHandshake:
        return self.server._handshake

    def report(self, exc: BaseException) -> None:
        self.server._report(exc, self._info())

    def attach(self, session: ASGIWebSocket) -> None:
        self._session = session
        if self.server._closing:
            session.shutdown(1012)

    def resume_reading(self) -> None:
        if self.transport is not None and not self._lost:
            self.transport.resume_reading()

    def _wake(self) -> None:
        super()._wake()
        waiters = self._waiters
        if waiters:
            self._waiters = []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def eof_received(self) -> bool | None:
        if self.ws is not None or self._session is not None:
            return None  # the WebSocket (or its session) learns of it in connection_lost
        self._eof = True
        try:
            self._parser.feed_eof()
        except Exception:  # noqa: BLE001 - the parser failed already, or handed its data over
            pass
        if self._task is None:
            return None  # nothing was asked: close the transport
        self._wake()
        return True  # half-closed: the answer may still go out (the request loop closes after it)

    # ------------------------------------------------------------ timers

    def _start_idle_timer(self) -> None:
        """Wait ``keep_alive_timeout`` for the next request (one timer handle, re-armed lazily)."""
        timeout = self.server.keep_alive_timeout
        if timeout is None:
            return
        self._idle_deadline = deadline = self._loop.time() + timeout
        if self._idle_handle is None:
            self._idle_handle = self._loop.call_at(deadline, self._idle_check)

    def _idle_check(self) -> None:
        self._idle_handle = None
        deadline = self._idle_deadline
        if deadline is None or self._lost or self.transport is None:
            return  # a request came: the next idle wait arms it again
        if self._loop.time() < deadline:
            self._idle_handle = self._loop.call_at(deadline, self._idle_check)
            return
        self._idle_deadline = None
        if self._parser.buffered:
            self._start_timer(False)  # a request has begun: open_timeout for its head (then 408)
        else:
            self.transport.close()

    # ------------------------------------------------------------ shutdown

    def shutdown(self, code: int, reason: str) -> None:
        """The server stops: close when idle, after the response when busy, WebSockets with ``code``."""
        session = self._session
        if session is not None:
            session.shutdown(code)
        elif not self._busy and self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------ the request loop

    async def _serve_requests(self) -> None:
        """The request loop with the ``take_request`` hook (see :data:`TakeRequest`).

        Every request goes to the runner the server's ``take_request`` gives
        for it (the ASGI server's claims them all); one it does not claim gets
        404. This is the loop aio/server.py's would become with the hook.
        """
        server = self.server
        parser = self._parser
        first = True
        while True:
            if not first:
                self._start_idle_timer()
            self.request = None
            try:
                event = await self._next_event()
            except HandshakeRejected as exc:
                logger.info("[%s] rejected request: %d %s", self.conn_id, exc.status, exc.reason)
                self._respond(reject_response(exc.status, exc.reason + "\n", exc.headers))
                return None
            if not isinstance(event, Request):  # CLOSED: the client ended a keep-alive connection
                if self.transport is not None:
                    self.transport.close()
                return None
            self._idle_deadline = None
            self._cancel_timer()
            request = event
            request.remote_address = self.remote_address
            self.request = request
            runner = server.take_request(request)
            if runner is None:
                self._respond(reject_response(404, "404 Not Found\n"))
                return None
            self._busy = True
            try:
                keep_alive = await runner(self)
            finally:
                self._busy = False
            if not keep_alive or server._closing or self._lost or self._eof:
                if self.transport is not None:
                    self.transport.close()
                return None
            parser.start_next()
            # A client that sends requests but does not read the answers gets
            # no more answers (nor reads) until it catches up.
            while self._http_paused and not self._lost:
                if self.transport is not None:
                    self.transport.pause_reading()
                await self.wait()
            if self._lost:
                return None
            first = False

    def handshake_data(self, data: memoryview) -> None:
        session = self._session
        if session is not None:  # upgraded, not accepted yet
            session.data_received(data)
            return
        super().handshake_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        super().connection_lost(exc)
        session = self._session
        if session is not None:
            session.connection_lost(exc)


def asgi_runner(
    app: ASGIApp, *, root_path: str = "", prefix: str = "", state: dict[str, Any] | None = None
) -> Callable[[Request], Runner]:
    """``take_request`` for ``app``: every request runs through it (see :func:`run_request`)."""

    def take(request: Request) -> Runner:
        return functools.partial(run_request, app, request, root_path=root_path, prefix=prefix, state=state)

    return take


async def run_request(
    app: ASGIApp,
    request: Request,
    channel: Channel,
    *,
    root_path: str = "",
    prefix: str = "",
    state: dict[str, Any] | None = None,
) -> bool:
    """Run one request (whose head the channel's parser just gave) through ``app``.

    Plain HTTP goes through :class:`~wsline.asgi.http.HTTPCycle`; an upgrade
    through :class:`~wsline.asgi.websocket.ASGIWebSocket` (after the request's
    body, if any, is read: the parser hands the rest over). ``root_path`` goes
    in front of the path (a proxy's mount point); ``prefix`` is the part of
    the request's path that is the mount point (``Router.mount``): taken off the
    path, then given back as ``root_path``. ``state``: the lifespan state, copied
    into the scope. Returns whether the connection may carry another request.
    """
    transport = channel.transport
    assert transport is not None
    if prefix:
        request = strip_prefix(request, prefix)
        root_path = root_path + prefix
    tls = channel.tls
    client = client_address(channel.remote_address)
    server = server_address(channel.local_address)
    if not request.is_upgrade:
        scope = http_scope(
            request, scheme=scheme_for("http", tls), client=client, server=server,
            root_path=root_path, state=state,
        )
        cycle = HTTPCycle(
            app, scope, request, channel, channel.handshake, keep_alive=channel.parser.keep_alive,
            report=channel.report,
        )
        keep = await cycle.run()
        if access_logger.isEnabledFor(logging.INFO):
            access_logger.info(
                '%s - "%s %s HTTP/%s" %s',
                f"{client[0]}:{client[1]}" if client else "-",
                request.method,
                request.target,
                scope["http_version"],
                cycle.status or "-",
            )
        return keep
    parser = channel.parser
    while True:  # an upgrade request's body (there is hardly ever one): read and dropped
        try:
            event = parser.next_event()
        except HandshakeRejected as exc:
            refusal = reject_response(exc.status, exc.reason + "\n", exc.headers)
            transport.write(channel.handshake.serialize(refusal, None, False))
            return False
        if isinstance(event, EndOfMessage):
            break
        if event is NEED_DATA:
            if channel.lost or channel.eof:
                return False
            channel.resume_reading()
            await channel.wait()
    scope = websocket_scope(
        request,
        scheme=scheme_for("websocket", tls),
        client=client,
        server=server,
        root_path=root_path,
        state=state,
        extensions={"websocket.http.response": {}},
    )
    session = ASGIWebSocket(
        app,
        scope,
        request,
        cast(ProtocolBase, channel),
        channel.handshake,
        trailing_data=parser.trailing_data(),
        default_headers=[(b"date", http_date())],
        conn_id=channel.conn_id,
    )
    channel.attach(session)
    await session.run()
    return False


def strip_prefix(request: Request, prefix: str) -> Request:
    """``request`` with ``prefix`` (a path, percent-decoded) taken off the front of its target."""
    target = request.target
    raw, sep, query = target.partition("?")
    if raw.startswith(prefix) and (len(raw) == len(prefix) or raw[len(prefix)] == "/"):
        rest = raw[len(prefix) :]
    else:  # the prefix came percent-encoded: rebuild from the decoded path
        rest = quote(request.path[len(prefix) :], safe="/!$&'()*+,;=:@-._~")
    return dataclasses.replace(request, target=rest + sep + query)


class ASGIServer(Server):
    """A running ASGI server (see :func:`serve`): :meth:`close`, ``serve_forever()``, ``port``, ``errors``."""

    def __init__(
        self,
        app: ASGIApp,
        opts: ServerOptions,
        *,
        lifespan: Lifespan,
        root_path: str,
        keep_alive_timeout: float | None,
        shutdown_timeout: float,
        take_request: TakeRequest | None = None,
        errors_maxlen: int = 100,
    ) -> None:
        super().__init__(opts, _Hooks(_no_handler, None, None, None, None), errors_maxlen)
        self.app = app
        #: Who serves each request (by default: the application, with the lifespan state).
        self.take_request: TakeRequest = take_request or asgi_runner(
            app, root_path=root_path, state=lifespan.state if lifespan.supported else None
        )
        self.lifespan = lifespan
        self.root_path = root_path
        self.keep_alive_timeout = keep_alive_timeout
        self.shutdown_timeout = shutdown_timeout

    async def close(
        self, code: int = 1012, reason: str = "server shutting down", timeout: float | None = None
    ) -> None:
        """Stop accepting; close idle connections; let requests in progress finish; close
        WebSockets with ``code`` (1012, service restart); then the lifespan shutdown.

        What still runs ``timeout`` seconds (default ``shutdown_timeout``) later is cancelled.
        """
        if self._closing:
            await asyncio.shield(self._closed)
            return
        self._closing = True
        if self._server is not None:
            self._server.close()
        for proto in list(self._protocols):
            if isinstance(proto, _ASGIProtocol):
                proto.shutdown(code, reason)
        wait = self.shutdown_timeout if timeout is None else timeout
        tasks = [task for task in self._tasks if not task.done()]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=wait)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1)
        for proto in list(self._protocols):
            if proto.transport is not None:
                proto.transport.abort()
        try:
            await self.lifespan.shutdown()
        finally:
            if self._server is not None:
                await self._server.wait_closed()
            self.errors.close()
            if not self._closed.done():
                self._closed.set_result(None)


class _ServeASGI:
    """Awaitable and async context manager returned by :func:`serve`."""

    def __init__(self, start: Callable[[], Awaitable[ASGIServer]]) -> None:
        self._start = start
        self._server: ASGIServer | None = None

    def __await__(self) -> Generator[Any, None, ASGIServer]:
        return self._start().__await__()

    def __repr__(self) -> str:
        return (
            "<wsline.asgi.serve(): not a coroutine; inside one, use "
            "'async with wsline.asgi.serve(app, ...) as server:' "
            "or 'server = await wsline.asgi.serve(app, ...)'>"
        )

    def __enter__(self) -> None:
        raise TypeError("use 'async with wsline.asgi.serve(...)' (inside a coroutine), not 'with'")

    def __exit__(self, *exc: object) -> None:  # pragma: no cover - __enter__ always raises
        pass

    async def __aenter__(self) -> ASGIServer:
        self._server = await self._start()
        return self._server

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        await self._server.close()


def serve(
    app: ASGIApp,
    host: str | Sequence[str] | None = None,
    port: int | None = None,
    *,
    root_path: str = "",
    lifespan: LifespanMode = "auto",
    compression: str | None = "deflate",
    deflate: pmd.DeflateConfig | None = None,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    open_timeout: float | None = 10.0,
    keep_alive_timeout: float | None = 5.0,
    close_timeout: float = 10.0,
    shutdown_timeout: float = 10.0,
    max_size: int | None = 2**20,
    max_queue: int | None = 32,
    write_limit: int = 2**16,
    max_header_size: int = 16384,
    max_body_size: int = 2**26,
    max_connections_per_client: int | None = None,
    ssl: ssl_module.SSLContext | None = None,
    sock: socket.socket | None = None,
    reuse_port: bool | None = None,
    backlog: int = 2048,
    server_header: str | None = DEFAULT_SERVER_HEADER,
    errors_maxlen: int = 100,
) -> _ServeASGI:
    """Serve the ASGI 3 application ``app`` (HTTP/1.1 and WebSockets) on ``host``:``port``.

    Use ``async with serve(app, "127.0.0.1", 8000) as server:`` or ``server =
    await serve(...)``; the lifespan startup runs first (a failure raises
    :class:`~wsline.asgi.lifespan.LifespanFailed` and nothing listens).

    - ``root_path``: the mount point the application is served under (behind
      a proxy that strips it), ``scope["root_path"]``, in front of ``path``.
    - ``lifespan``: ``"auto"`` (run it when the application supports it),
      ``"on"`` (it must) or ``"off"``.
    - ``open_timeout``: for a request head (408 after it); ``keep_alive_timeout``:
      how long an idle keep-alive connection waits for its next request.
    - ``shutdown_timeout``: how long :meth:`ASGIServer.close` lets requests
      in progress and WebSocket sessions finish.
    - ``max_header_size`` (431), ``max_body_size`` (413; 64 MiB by default,
      streamed bodies included): the parser's limits.
    - WebSockets: ``compression``, ``deflate``, ``max_size``, ``max_queue``,
      ``ping_interval``, ``ping_timeout``, ``close_timeout``, ``write_limit``
      as in :func:`wsline.serve`; the application chooses the subprotocol.
    """
    if compression not in ("deflate", None):
        raise ValueError(f"unsupported compression {compression!r}; use 'deflate' or None")
    if not callable(app):
        raise TypeError(f"serve() needs an ASGI application (app(scope, receive, send)), not {app!r}")
    if root_path and (not root_path.startswith("/") or root_path.endswith("/")):
        raise ValueError(f"root_path must start with '/' and not end with one: {root_path!r}")
    if keep_alive_timeout is not None and keep_alive_timeout <= 0:
        raise ValueError("keep_alive_timeout must be a positive number of seconds or None")
    if shutdown_timeout <= 0:
        raise ValueError("shutdown_timeout must be a positive number of seconds")
    opts = ServerOptions(
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
    life = Lifespan(app, lifespan)  # checks the mode

    async def start() -> ASGIServer:
        loop = asyncio.get_running_loop()
        await life.startup()
        server = ASGIServer(
            app,
            opts,
            lifespan=life,
            root_path=root_path,
            keep_alive_timeout=keep_alive_timeout,
            shutdown_timeout=shutdown_timeout,
            errors_maxlen=errors_maxlen,
        )
        try:
            if sock is not None:
                server._server = await loop.create_server(
                    lambda: _ASGIProtocol(server), sock=sock, ssl=ssl, backlog=backlog
                )
            else:
                server._server = await loop.create_server(
                    lambda: _ASGIProtocol(server),
                    host,
                    port or 0,
                    ssl=ssl,
                    backlog=backlog,
                    reuse_port=reuse_port or None,
                )
        except BaseException:
            await life.shutdown()
            raise
        for s in server.sockets:
            logger.info("listening on %s", s.getsockname())
        return server

    return _ServeASGI(start)
