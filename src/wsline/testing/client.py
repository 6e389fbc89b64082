"""The in-process test client (:class:`TestClient`) and the functions it is made of.

Everything runs through wsline's own code on both ends, over a
:class:`~wsline.testing.transport.TransportPair` instead of sockets: the
server's connections are the real server protocol of :func:`wsline.serve` (or
of ``wsline.asgi.serve()`` for an ASGI application) on a real
:class:`~wsline.Server` built from the same options, and the client is the
real opening handshake (:class:`~wsline.protocol.client.ClientHandshake`) and
the real :class:`~wsline.WebSocket`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import weakref
from typing import Any, Callable, Generator, Iterable, Mapping
from urllib.parse import urlsplit

from ..aio import client as aio_client
from ..aio import server as aio_server
from ..aio.client import _ClientProtocol
from ..aio.connection import WebSocket, start
from ..aio.listener import Listener
from ..aio.server import Server, _Hooks, _ServerProtocol
from ..errors import InvalidHandshake, OpenTimeout
from ..protocol import deflate as pmd
from ..protocol.client import ClientHandshake, ClientOptions
from ..protocol.handshake import WSURI, parse_uri
from ..protocol.http11 import (
    CLOSED,
    NEED_DATA,
    Data,
    EndOfMessage,
    Headers,
    Limits,
    Request,
    Response,
    ResponseParser,
    serialize_request,
)
from ..protocol.server import ServerOptions
from .transport import DEFAULT_WINDOW, TransportPair

__all__ = ["TestClient", "WebSocketConnect", "open_connection", "open_websocket", "pair_of", "stream_server"]

#: ``serve()`` options that only mean something with sockets.
_SERVER_SOCKET_OPTIONS = ("host", "port", "ssl", "sock", "reuse_port", "backlog")
#: ``connect()`` options that only mean something with sockets (or several attempts).
_CLIENT_SOCKET_OPTIONS = (
    "ssl",
    "server_hostname",
    "sock",
    "host",
    "port",
    "proxy",
    "proxy_ssl",
    "backoff_initial",
    "backoff_max",
    "backoff_factor",
)
#: The limits of the test client's response parser (generous: it reads what the server sends).
_RESPONSE_LIMITS = Limits(max_head=2**20, max_headers=1024, max_body=2**62, max_trailers=2**20)

_pairs: weakref.WeakKeyDictionary[WebSocket, TransportPair] = weakref.WeakKeyDictionary()


def pair_of(ws: WebSocket) -> TransportPair:
    """The :class:`TransportPair` under a client WebSocket opened by this module.

    (:func:`open_websocket` or :meth:`TestClient.websocket`), to set faults
    once the connection is open: ``pair_of(ws).server_to_client.stall()``.
    """
    try:
        return _pairs[ws]
    except KeyError:
        raise LookupError(f"{ws!r} was not opened by wsline.testing") from None


def _refuse(options: Mapping[str, Any], names: Iterable[str], where: str) -> None:
    for name in names:
        if name in options:
            raise TypeError(f"{where}: {name!r} has no meaning without sockets")


def _client_spec(uri: str, options: dict[str, Any], where: str) -> tuple[WSURI, ClientOptions]:
    """The URI and the options, checked by :func:`wsline.connect` itself (nothing connects)."""
    _refuse(options, _CLIENT_SOCKET_OPTIONS, where)
    spec = aio_client.connect(uri, proxy=None, **options)
    wsuri = parse_uri(uri)
    if wsuri.secure:
        raise ValueError(f"{where}: the in-memory transport has no TLS; use a ws:// URI, not {uri!r}")
    return wsuri, spec.options


async def _open(
    protocol: asyncio.BaseProtocol, uri: str, wsuri: WSURI, options: ClientOptions, pair: TransportPair
) -> WebSocket:
    """The client's opening handshake over ``pair`` to ``protocol``, then its WebSocket."""
    handshake = ClientHandshake(wsuri, options)
    client_protocol = _ClientProtocol(handshake)
    pair.connect(client_protocol, protocol)
    try:
        if options.open_timeout is None:
            await client_protocol.done
        else:
            try:
                await asyncio.wait_for(client_protocol.done, options.open_timeout)
            except asyncio.TimeoutError:
                raise OpenTimeout(
                    f"opening handshake with {uri} timed out after {options.open_timeout:g} s"
                ) from None
    except BaseException:
        pair.client.abort()
        raise
    core = handshake.connection
    response = handshake.response
    assert core is not None and response is not None
    ws = WebSocket(
        pair.client,
        core,
        request=handshake.request,
        response=response,
        subprotocol=handshake.subprotocol,
        ping_interval=options.ping_interval,
        ping_timeout=options.ping_timeout,
        close_timeout=options.close_timeout,
        max_queue=options.max_queue,
        write_limit=options.write_limit,
    )
    pair.client.set_write_buffer_limits(high=options.write_limit)
    client_protocol.ws = ws
    start(ws, handshake.trailing_data())
    _pairs[ws] = pair
    return ws


async def open_websocket(
    protocol: asyncio.BaseProtocol,
    uri: str = "ws://testserver/",
    *,
    pair: TransportPair | None = None,
    **options: Any,
) -> WebSocket:
    """Open a wsline client WebSocket to the server-side ``protocol`` over a :class:`TransportPair`.

    ``protocol`` is any server end: a wsline server's
    (:meth:`TestClient.server_protocol`), a raw one from :func:`stream_server`,
    your own. ``options`` are :func:`wsline.connect`'s (``subprotocols``,
    ``headers``, ``origin``, ``compression``, timeouts, limits), checked the
    same way; the socket ones (``ssl``, ``host``, ``proxy``...) raise
    :class:`TypeError`. Raises what :func:`wsline.connect` raises for a failed
    handshake (:class:`~wsline.InvalidStatus` for a refusal,
    :class:`~wsline.OpenTimeout`...). :func:`pair_of` gives the pair back.
    """
    wsuri, client_options = _client_spec(uri, options, "open_websocket()")
    return await _open(protocol, uri, wsuri, client_options, pair or TransportPair())


async def open_connection(
    protocol: asyncio.BaseProtocol, *, pair: TransportPair | None = None, limit: int = 2**16
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw client, as :func:`asyncio.open_connection` gives one, connected to ``protocol``.

    For tests that write bytes by hand (a malformed request, a hand-built
    frame). ``writer.transport`` is the client's
    :class:`~wsline.testing.transport.FaultTransport` (its ``.pair`` has the faults).
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    stream_protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    pair = pair or TransportPair()
    pair.connect(stream_protocol, protocol)
    return reader, asyncio.StreamWriter(pair.client, stream_protocol, reader, loop)


def stream_server(
    callback: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any], *, limit: int = 2**16
) -> asyncio.BaseProtocol:
    """A raw server end: ``callback(reader, writer)`` runs once connected.

    As with :func:`asyncio.start_server`. For a wsline client against a
    server that misbehaves; pass the result to :func:`open_websocket` or
    :meth:`TransportPair.connect`. Call it inside a coroutine (the protocol
    belongs to the running loop).
    """
    loop = asyncio.get_running_loop()
    return asyncio.StreamReaderProtocol(asyncio.StreamReader(limit=limit, loop=loop), callback, loop=loop)


class _HTTPClientProtocol(asyncio.Protocol):
    """Writes one request, reads its response with the sans-I/O ResponseParser, then closes."""

    def __init__(self, data: bytes, method: str) -> None:
        self._data = data
        self._parser = ResponseParser(_RESPONSE_LIMITS, request_method=method)
        self._response: Response | None = None
        self._body: list[bytes] = []
        self._eof = False
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[Response] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        assert self.transport is not None
        self.transport.write(self._data)

    def data_received(self, data: bytes) -> None:
        if not self.done.done():
            self._parser.feed(data)
            self._advance()

    def eof_received(self) -> bool | None:
        if not self.done.done():
            self._eof = True
            self._parser.feed_eof()
            self._advance()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            detail = f": {exc}" if exc else ""
            self.done.set_exception(
                ConnectionError(f"the server closed the connection before a whole response{detail}")
            )

    def _advance(self) -> None:
        parser = self._parser
        try:
            while True:
                event = parser.next_event()
                if event is NEED_DATA:
                    return
                if isinstance(event, Response):
                    self._response = event
                elif isinstance(event, Data):
                    self._body.append(event.data)
                elif isinstance(event, EndOfMessage):
                    response = self._response
                    assert response is not None
                    if 100 <= response.status < 200 and response.status != 101:
                        parser.start_next()  # informational: the answer follows
                        self._response = None
                        continue
                    response.body = b"".join(self._body)
                    self.done.set_result(response)
                    if self.transport is not None:
                        self.transport.close()
                    return
                elif event is CLOSED:
                    self.done.set_exception(
                        ConnectionError("the server closed the connection without answering")
                    )
                    return
                else:
                    return
        except InvalidHandshake as exc:  # a malformed response, or one cut short
            if self._eof:
                error: Exception = ConnectionError(
                    f"the server closed the connection before a whole response: {exc}"
                )
                error.__cause__ = exc
            else:
                error = exc
            self.done.set_exception(error)
            if self.transport is not None:
                self.transport.abort()


def _is_asgi(app: object) -> bool:
    """Whether ``app`` looks like an ASGI 3 application (``app(scope, receive, send)``)."""
    if isinstance(app, type) or hasattr(app, "handle_http") or hasattr(app, "check_upgrade"):
        return False  # a Listener subclass, a Router
    try:
        params = inspect.signature(app).parameters.values()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p for p in params if p.kind in positional and p.default is inspect.Parameter.empty]
    return len(required) == 3


def _bind(function: Callable[..., Any], app: object, options: dict[str, Any]) -> dict[str, Any]:
    """Every argument of ``function(app, **options)``, its defaults included."""
    bound = inspect.signature(function).bind(app, **options)
    bound.apply_defaults()
    return dict(bound.arguments)


def _server_options(args: dict[str, Any]) -> ServerOptions:
    """The :class:`ServerOptions` that ``serve()`` builds from these arguments."""
    values = {f.name: args[f.name] for f in dataclasses.fields(ServerOptions) if f.name in args}
    if "subprotocols" in values:
        values["subprotocols"] = tuple(values["subprotocols"] or ())
    if values.get("origins") is not None:
        values["origins"] = tuple(values["origins"])
    deflate = args.get("deflate")
    values["deflate"] = (
        (deflate or pmd.DEFAULT_SERVER_CONFIG) if args.get("compression") == "deflate" else None
    )
    return ServerOptions(**values)


def _headers(headers: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> list[tuple[str, str]]:
    if headers is None:
        return []
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    for name, value in items:
        if any(c in name + value for c in "\r\n\0"):
            raise ValueError(f"header {name!r}: {value!r} contains CR, LF or NUL")
    return items


class WebSocketConnect:
    """What :meth:`TestClient.websocket` returns: ``async with`` it (or await it) for the WebSocket.

    :attr:`pair` exists from the start, so faults can be set before the
    handshake (``conn.pair.client_to_server.cut_after(bytes=10)``) as well as
    after it. Leaving the ``async with`` block closes the WebSocket (1000).
    """

    def __init__(
        self, client: TestClient, uri: str, wsuri: WSURI, options: ClientOptions, pair: TransportPair
    ):
        self._client = client
        #: The URI the handshake asks for.
        self.uri = uri
        self._wsuri = wsuri
        self._options = options
        #: The connection's :class:`~wsline.testing.transport.TransportPair`.
        self.pair = pair
        self._ws: WebSocket | None = None

    def __await__(self) -> Generator[Any, None, WebSocket]:
        return self._connect().__await__()

    async def _connect(self) -> WebSocket:
        protocol = self._client.server_protocol()
        self._client._track(self.pair)
        return await _open(protocol, self.uri, self._wsuri, self._options, self.pair)

    async def __aenter__(self) -> WebSocket:
        self._ws = await self._connect()
        return self._ws

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()


class TestClient:
    """wsline's server for ``app``, in process: WebSockets and HTTP requests without sockets.

    ::

        async with TestClient(router, ping_interval=None) as client:
            async with client.websocket("/ws", subprotocols=["chat"]) as ws:
                await ws.send("hello")
                assert await ws.recv() == "hello"
            response = await client.get("/health")
            assert response.status == 200

    :param app: what :func:`wsline.serve` takes (a handler ``async def
        handler(ws)``, a :class:`~wsline.Router`, a :class:`~wsline.Listener`
        subclass), or an ASGI 3 application (``app(scope, receive, send)``:
        Starlette, FastAPI), served as ``wsline.asgi.serve()`` serves it,
        its lifespan included.
    :param asgi: ``True`` or ``False`` says which of the two ``app`` is;
        by default the signature tells (three required positional parameters:
        ASGI).
    :param base_url: the host the requests name (``Host``, the WebSocket
        URIs): ``ws://testserver`` by default.
    :param client_address: the client's address as the server sees it
        (``request.remote_address``, ``scope["client"]``); by default
        127.0.0.1 with a fresh port per connection.
    :param window: each connection's :class:`TransportPair` window (bytes a
        direction absorbs before the writer's buffer grows).
    :param raise_server_exceptions: when the client closes, an exception a
        handler raised and that nobody took from ``client.server.errors`` is
        raised (the first one), so that a test does not pass over a failing
        handler unnoticed. ``False`` leaves them there.
    :param options: :func:`wsline.serve`'s options (or ``wsline.asgi.serve()``'s
        for an ASGI application), checked by it, with its defaults: the
        server is configured exactly as it would be on a socket. ``host``,
        ``port``, ``ssl``, ``sock``, ``reuse_port`` and ``backlog`` raise
        :class:`TypeError`.

    Enter it with ``async with`` (or :meth:`start` and :meth:`close`): the
    :class:`~wsline.Server` is :attr:`server` (``server.errors``,
    ``server.connections``). Leaving closes it as :meth:`Server.close
    <wsline.Server.close>` does (1001 to the WebSockets still open; 1012 for
    an ASGI application, then its lifespan shutdown), and aborts what is
    left of every connection.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        app: Any,
        *,
        asgi: bool | None = None,
        base_url: str = "ws://testserver",
        client_address: tuple[str, int] | None = None,
        window: int = DEFAULT_WINDOW,
        raise_server_exceptions: bool = True,
        **options: Any,
    ) -> None:
        _refuse(options, _SERVER_SOCKET_OPTIONS, "TestClient()")
        self.app = app
        #: Whether ``app`` is served as an ASGI application.
        self.asgi = _is_asgi(app) if asgi is None else asgi
        if self.asgi:
            from ..asgi import server as asgi_server

            asgi_server.serve(app, **options)  # checks the options as it would (nothing starts)
            self._args = _bind(asgi_server.serve, app, options)
        else:
            aio_server.serve(app, **options)  # checks the options as it would (nothing starts)
            self._args = _bind(aio_server.serve, app, options)
        self._options = _server_options(self._args)
        split = urlsplit(base_url)
        if split.scheme not in ("ws", "http") or not split.netloc or split.path not in ("", "/"):
            raise ValueError(f"base_url must be like 'ws://testserver', not {base_url!r}")
        #: The ``Host`` the requests carry.
        self.host = split.netloc
        self.client_address = client_address
        self.window = window
        self.raise_server_exceptions = raise_server_exceptions
        self._server: Server | None = None
        self._pairs: list[TransportPair] = []

    def __repr__(self) -> str:
        kind = "ASGI application" if self.asgi else "handler"
        return f"<TestClient {kind} {self.app!r}{'' if self._server is not None else ' (not started)'}>"

    # ------------------------------------------------------------------ life

    @property
    def server(self) -> Server:
        """The running :class:`~wsline.Server` (a ``wsline.asgi.server.ASGIServer`` for ASGI)."""
        if self._server is None:
            raise RuntimeError("the TestClient is not started: use 'async with TestClient(app) as client'")
        return self._server

    async def start(self) -> TestClient:
        """Build the server (for ASGI, after the lifespan startup, which may raise ``LifespanFailed``)."""
        if self._server is not None:
            raise RuntimeError("this TestClient is started already")
        args = self._args
        if self.asgi:
            from ..asgi.lifespan import Lifespan
            from ..asgi.server import ASGIServer

            lifespan = Lifespan(self.app, args["lifespan"])
            await lifespan.startup()
            self._server = ASGIServer(
                self.app,
                self._options,
                lifespan=lifespan,
                root_path=args["root_path"],
                keep_alive_timeout=args["keep_alive_timeout"],
                shutdown_timeout=args["shutdown_timeout"],
                errors_maxlen=args["errors_maxlen"],
            )
        else:
            self._server = Server(self._options, self._hooks(), args["errors_maxlen"])
        return self

    def _hooks(self) -> _Hooks:
        """The hooks ``serve()`` derives from its handler and options."""
        app, args = self.app, self._args
        listener = app if isinstance(app, type) and issubclass(app, Listener) else None
        http_handler = args["http_handler"]
        if http_handler is None and listener is None:
            http_handler = getattr(app, "handle_http", None)
        check_upgrade = getattr(app, "check_upgrade", None) if listener is None else None
        return _Hooks(app, listener, args["process_request"], http_handler, check_upgrade)

    async def close(self, *, raise_server_exceptions: bool | None = None) -> None:
        """Close the server, abort what is left of the connections; then raise a handler's exception.

        (see ``raise_server_exceptions``; the argument overrides the client's setting).
        """
        server = self._server
        if server is None:
            return
        try:
            await server.close()
        finally:
            for pair in self._pairs:
                pair.abort()
            self._pairs.clear()
            await asyncio.sleep(0)  # their connection_lost callbacks
        if raise_server_exceptions is None:
            raise_server_exceptions = self.raise_server_exceptions
        if not raise_server_exceptions:
            return
        first = server.errors.get_nowait()
        if first is not None:
            more = len(server.errors)
            add_note = getattr(first.error, "add_note", None)  # Python 3.11+
            if more and add_note is not None:
                add_note(f"raised by the server's handler; {more} more left in server.errors")
            raise first.error

    async def __aenter__(self) -> TestClient:
        return await self.start()

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        # An exception of the test itself goes first: no handler's on top of it.
        await self.close(raise_server_exceptions=None if exc is None else False)

    # ------------------------------------------------------------------ connections

    def server_protocol(self) -> asyncio.BaseProtocol:
        """A new server end of this client's server (wsline's server protocol), for a pair of your own."""
        server = self.server
        if self.asgi:
            from ..asgi.server import ASGIServer, _ASGIProtocol

            assert isinstance(server, ASGIServer)
            return _ASGIProtocol(server)
        return _ServerProtocol(server)

    def pair(self, **kwargs: Any) -> TransportPair:
        """A new :class:`TransportPair` with this client's window and address (``kwargs`` override them)."""
        kwargs.setdefault("window", self.window)
        if self.client_address is not None:
            kwargs.setdefault("client_address", self.client_address)
        return TransportPair(**kwargs)

    def _track(self, pair: TransportPair) -> None:
        self._pairs = [p for p in self._pairs if not p.closed]
        self._pairs.append(pair)

    def connect(self, protocol: asyncio.BaseProtocol, *, pair: TransportPair | None = None) -> TransportPair:
        """Connect a client-side ``protocol`` of your own to the server; returns the pair."""
        server_protocol = self.server_protocol()
        pair = pair or self.pair()
        self._track(pair)
        pair.connect(protocol, server_protocol)
        return pair

    async def open_connection(
        self, *, pair: TransportPair | None = None, limit: int = 2**16
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A raw client connected to the server (see :func:`open_connection`)."""
        server_protocol = self.server_protocol()
        pair = pair or self.pair()
        self._track(pair)
        return await open_connection(server_protocol, pair=pair, limit=limit)

    def websocket(
        self, path: str = "/", *, pair: TransportPair | None = None, **options: Any
    ) -> WebSocketConnect:
        """A WebSocket to ``path`` (a query string may follow): ``async with client.websocket("/ws") as ws``.

        ``options`` are :func:`wsline.connect`'s (``subprotocols``,
        ``headers``, ``origin``, ``compression``, ``ping_interval``,
        ``close_timeout``, ``max_size``...), checked now. A refusal raises
        :class:`~wsline.InvalidStatus` (``status``, ``headers``, ``body``) when
        the handshake runs; :attr:`WebSocketConnect.pair` is the connection's
        pair, for faults.
        """
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        uri = f"ws://{self.host}{path}"
        wsuri, client_options = _client_spec(uri, options, "TestClient.websocket()")
        return WebSocketConnect(self, uri, wsuri, client_options, pair or self.pair())

    # ------------------------------------------------------------------ HTTP

    async def request(
        self,
        method: str,
        path: str = "/",
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        body: bytes = b"",
        pair: TransportPair | None = None,
        timeout: float | None = 10.0,
    ) -> Response:
        """Send one HTTP/1.1 request on a new connection; the server's whole :class:`~wsline.Response`.

        ``Host`` is added unless given, and ``Content-Length`` when there is a
        body (or the method is POST, PUT or PATCH) and no framing header is
        given. The response is the server's, as parsed from the wire
        (``status``, ``reason``, ``headers``, ``body``; ``body`` is empty for
        HEAD). Raises :class:`TimeoutError` when no whole response came within
        ``timeout`` seconds, :class:`ConnectionError` when the server closed
        the connection without one.
        """
        items = _headers(headers)
        names = {name.lower() for name, _ in items}
        if "host" not in names:
            items.insert(0, ("Host", self.host))
        if (body or method in ("POST", "PUT", "PATCH")) and not names & {
            "content-length",
            "transfer-encoding",
        }:
            items.append(("Content-Length", str(len(body))))
        data = serialize_request(Request(method, path, Headers(items), body=bytes(body)))
        protocol = _HTTPClientProtocol(data, method)
        pair = self.connect(protocol, pair=pair)
        try:
            if timeout is None:
                return await protocol.done
            try:
                return await asyncio.wait_for(asyncio.shield(protocol.done), timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"no whole response to {method} {path} within {timeout:g} s") from None
        finally:
            if protocol.done.done() and not protocol.done.cancelled():
                pair.client.close()
            else:
                protocol.done.cancel()
                pair.client.abort()

    async def get(
        self,
        path: str = "/",
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        pair: TransportPair | None = None,
        timeout: float | None = 10.0,
    ) -> Response:
        """``GET path`` (see :meth:`request`)."""
        return await self.request("GET", path, headers=headers, pair=pair, timeout=timeout)

    async def head(
        self,
        path: str = "/",
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        pair: TransportPair | None = None,
        timeout: float | None = 10.0,
    ) -> Response:
        """``HEAD path`` (see :meth:`request`): the response's ``body`` is empty."""
        return await self.request("HEAD", path, headers=headers, pair=pair, timeout=timeout)

    async def post(
        self,
        path: str = "/",
        body: bytes = b"",
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        pair: TransportPair | None = None,
        timeout: float | None = 10.0,
    ) -> Response:
        """``POST path`` with ``body`` (see :meth:`request`)."""
        return await self.request("POST", path, headers=headers, body=body, pair=pair, timeout=timeout)
