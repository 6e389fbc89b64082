"""One ASGI WebSocket session on wsline's connection: :class:`ASGIWebSocket`.

Both ASGI hosts run WebSockets through this class: the uvicorn protocol
(:mod:`wsline.asgi.uvicorn`) and wsline's own ASGI server. The host reads the
upgrade request with :class:`~wsline.protocol.http11.RequestParser`, builds the
scope (:func:`wsline.asgi.scope.websocket_scope`) and hands both over::

    session = ASGIWebSocket(app, scope, request, protocol, handshake,
                            trailing_data=parser.trailing_data())
    await session.run()        # the application's whole life on this connection

``protocol`` is the host's :class:`~wsline.aio.connection.ProtocolBase` (its
``transport`` set). Until the application accepts, the host forwards three
calls, and from then on ``protocol.ws`` is the :class:`~wsline.WebSocket` and
:class:`~wsline.aio.connection.ProtocolBase` routes everything to it:

* ``handshake_data(data)`` → :meth:`ASGIWebSocket.data_received` (bytes that
  arrive before the 101; they go to the WebSocket after it);
* ``connection_lost(exc)`` → :meth:`ASGIWebSocket.connection_lost` (it may
  keep calling it after the upgrade too: harmless);
* on a graceful stop, :meth:`ASGIWebSocket.shutdown` (1012 "service restart"
  to an open connection; 503 to one the application has not answered yet).

The ASGI WebSocket specification (2.4), message by message
-------------------------------------------------------------

The opening handshake is checked by
:meth:`~wsline.protocol.server.ServerHandshake.accept` before the application
runs: a request that is no valid upgrade gets its 4xx (400, 426...) from
:meth:`~wsline.protocol.server.ServerHandshake.serialize` and the application
never sees it.

``receive()`` gives:

* ``{"type": "websocket.connect"}`` first, always;
* then, once accepted, ``{"type": "websocket.receive", "text": str}`` or
  ``{"type": "websocket.receive", "bytes": bytes}`` for each message (only the
  one key, as uvicorn does), whole (fragments are joined by the core);
* ``{"type": "websocket.disconnect", "code": int, "reason": str}`` when the
  connection ends: the client's close code and reason (1005 when its close frame
  had none), 1006 when the connection was lost without one, the code this side
  failed the connection with (1009 for a message above ``max_size``, 1002,
  1007...), or the code the application closed with itself. Called again, it
  gives the same disconnect again (it never hangs).

``send()`` takes:

* ``websocket.accept``: ``subprotocol`` (one the client offered, or ``None``;
  another raises :class:`RuntimeError` and the client gets 500) and ``headers``
  (``(bytes, bytes)`` pairs added to the 101, after the host's defaults, which
  an application header of the same name replaces). The 101 is
  :meth:`~wsline.protocol.server.ServerHandshake.accept`'s;
  ``Sec-WebSocket-Accept``, ``-Extensions``, ``Upgrade`` and ``Connection`` are
  the handshake's own and may not be given; a ``Sec-WebSocket-Protocol`` header
  is taken as the ``subprotocol``;
* ``websocket.send`` with exactly one of ``bytes`` or ``text`` (not ``None``);
  it returns once the frame is handed to the transport, and waits first while
  the connection's write buffer is above its high-water mark (backpressure);
* ``websocket.close`` with ``code`` (default 1000) and ``reason``: the closing
  handshake. Before the accept, it refuses the connection with 403;
* ``websocket.http.response.start`` (``status``, ``headers``) and
  ``websocket.http.response.body`` (``body``, ``more_body``) before the accept:
  the denial response of the ``websocket.http.response`` extension, sent when
  its last body part arrives (with ``Content-Length`` and ``Connection:
  close``). The host offers it with ``"websocket.http.response": {}`` in
  ``scope["extensions"]``.

A message of the wrong type for the state (``websocket.send`` before the accept,
a second accept, anything after a close...) or with a wrong field raises
:class:`RuntimeError` (or :class:`TypeError` for a value of the wrong type)
naming the message. Sending to a connection whose client is gone raises
:class:`ClientDisconnected`, an :class:`OSError` (spec 2.4; Starlette turns it
into ``WebSocketDisconnect``); ``websocket.close`` on it does nothing.

How it ends: an application that raises before it accepted gets its client a
500, after the accept a close with 1011; one that returns without accepting or
refusing gets its client a 403; one that returns after the accept, a close with
1000. :meth:`run` returns when the TCP connection is closed (the closing
handshake is bounded by ``close_timeout``).

After the accept the connection is wsline's :class:`~wsline.WebSocket`: the
keepalive pings (``ping_interval``, ``ping_timeout``), the limits
(``max_size``, ``max_queue``: reading stops while that many messages wait),
permessage-deflate, the backpressure and the closing handshake are its own.

The ``wsline`` extension
------------------------

``scope["extensions"]["wsline"]`` (a :class:`WslineExtension`, a read-only
mapping) gives an application what no ASGI server offers:

``scope["extensions"]["wsline"]["version"]``
    wsline's version string (and a way to tell wsline is there).
``["websocket"]()``
    The connection's :class:`wsline.WebSocket` once accepted (``None``
    before, or after a denial): for :func:`wsline.broadcast`, a
    :class:`wsline.hub.Hub` or :class:`~wsline.hub.RedisHub` of the
    application's own, ``close_code``, ``remote_address``... Receive through
    ASGI, not with its ``recv()``: the session reads for the application.
``["latency"]()``
    The round-trip time of the last answered ping in seconds (the keepalive
    pings measure it), ``None`` before the first.
``await ["ping"]()``
    Sends a ping now; the round-trip time in seconds.
``["backlog"]()``
    Bytes waiting to go out (in the transport and queued for this loop pass).
Per-message compression
    ``{"type": "websocket.send", "text": ..., "wsline.compress": False}`` sends
    that message uncompressed even when permessage-deflate was negotiated
    (already compressed data, tiny messages); ``True`` compresses it even below
    the size threshold. Starlette: ``await websocket.send({...})``.
Backpressure
    Every ``websocket.send`` waits while the write buffer is above its
    high-water mark (64 KiB): a producer that awaits its sends never buffers
    more than that per connection.
Broadcast: ``await ["join"](room)``, ``await ["leave"](room)``, ``await ["publish"](room, message)``
    Rooms in one in-process :class:`wsline.hub.Hub` (``["hub"]``, one per
    process, shared by every connection of it): ``publish`` frames (and, where
    the compression settings allow, compresses) the message **once** and
    queues the same bytes on every member without awaiting any one of them; a
    member whose backlog is over the fan-out limit misses the message instead of
    holding the others up. Members leave their rooms when their connection
    closes. ``exclude_self=True`` leaves this connection out. ``publish``
    returns a :class:`wsline.BroadcastResult` (counts). With
    several worker processes each has its own hub: use a
    :class:`~wsline.hub.RedisHub` with ``["websocket"]()`` to reach all of them.
``["broadcast"](connections, message, ...)``
    :func:`wsline.broadcast` itself, for connections the application keeps
    (``["websocket"]()`` of each).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence

from .._version import __version__
from ..aio.connection import ProtocolBase, WebSocket
from ..aio.fanout import BroadcastMessage, BroadcastResult, broadcast
from ..errors import ConnectionClosed, HandshakeRejected
from ..hub import Hub
from ..protocol.handshake import reject_response
from ..protocol.http11 import REASON_PHRASES, Headers, Request, Response
from ..protocol.server import Accepted, ServerHandshake, ServerOptions

__all__ = [
    "ASGIApp",
    "ASGIWebSocket",
    "ClientDisconnected",
    "Message",
    "WslineExtension",
    "default_hub",
]

#: An ASGI message.
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: An ASGI 3 application.
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[object]]

logger = logging.getLogger("wsline.asgi")


class ClientDisconnected(OSError):
    """``send()`` to a WebSocket whose client is gone (an :class:`OSError`, as ASGI 2.4 asks)."""


# Session states (what the application has done).
_CONNECTING = 0  # nothing sent yet
_RESPONSE = 1  # websocket.http.response.start sent: body parts to come
_OPEN = 2  # accepted
_CLOSED = 3  # closed by the application (or refused, or answered), or the client went before the accept

# Header fields of the 101 that only the handshake sets.
_HANDSHAKE_HEADERS = frozenset({"sec-websocket-accept", "sec-websocket-extensions", "upgrade", "connection"})
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

#: Bytes that may arrive before the accept (a client should send none) before reading pauses.
_EARLY_DATA_LIMIT = 2**16

_default_hub: Hub | None = None


def default_hub() -> Hub:
    """The in-process :class:`~wsline.hub.Hub` of the ``wsline`` extension's rooms (one per process)."""
    global _default_hub
    if _default_hub is None:
        _default_hub = Hub()
    return _default_hub


def _headers(message: Message, name: str) -> list[tuple[str, str]]:
    """The ``headers`` of an ASGI message, checked, as ``str`` pairs (ISO-8859-1)."""
    raw = message.get("headers")
    if raw is None:
        return []
    out: list[tuple[str, str]] = []
    try:
        items = list(raw)
    except TypeError:
        raise TypeError(f"'{name}': headers must be an iterable of (name, value) pairs") from None
    for item in items:
        try:
            key, value = item
        except (TypeError, ValueError):
            raise TypeError(f"'{name}': each header must be a (name, value) pair, not {item!r}") from None
        if not isinstance(key, (bytes, bytearray)) or not isinstance(value, (bytes, bytearray)):
            raise TypeError(f"'{name}': header names and values must be bytes, not {item!r}")
        if not _TOKEN.fullmatch(key):
            raise RuntimeError(f"'{name}': invalid header name {bytes(key)!r}")
        if _BAD_VALUE.search(value):
            raise RuntimeError(f"'{name}': invalid character in the value of header {bytes(key)!r}")
        out.append((key.decode("latin-1"), value.decode("latin-1").strip(" \t")))
    return out


def _merge(defaults: Sequence[tuple[str, str]], headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The host's default headers that the application did not set, then the application's."""
    if not defaults:
        return headers
    if not headers:
        return list(defaults)
    names = {name.lower() for name, _ in headers}
    return [item for item in defaults if item[0].lower() not in names] + headers


class WslineExtension(Mapping[str, Any]):
    """``scope["extensions"]["wsline"]``: what wsline adds to an ASGI WebSocket (see the module).

    A read-only mapping whose values are also attributes: ``ext["latency"]()``
    and ``ext.latency()`` are the same call.
    """

    __slots__ = ("_session",)

    _KEYS = (
        "version",
        "websocket",
        "latency",
        "ping",
        "backlog",
        "hub",
        "join",
        "leave",
        "publish",
        "broadcast",
    )

    #: wsline's version.
    version = __version__
    #: :func:`wsline.broadcast`.
    broadcast = staticmethod(broadcast)

    def __init__(self, session: ASGIWebSocket) -> None:
        self._session = session

    def __getitem__(self, key: str) -> Any:
        if key not in self._KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._KEYS)

    def __len__(self) -> int:
        return len(self._KEYS)

    def __repr__(self) -> str:
        return f"<wsline ASGI extension {__version__} of {self._session!r}>"

    def websocket(self) -> WebSocket | None:
        """The connection's :class:`~wsline.WebSocket` once accepted, else ``None``."""
        return self._session._ws

    def _open_ws(self, what: str) -> WebSocket:
        ws = self._session._ws
        if ws is None:
            raise RuntimeError(f"{what} needs an accepted WebSocket (send 'websocket.accept' first)")
        return ws

    def latency(self) -> float | None:
        """Round-trip time of the last answered ping, in seconds (``None`` before the first)."""
        ws = self._session._ws
        return ws.latency if ws is not None else None

    async def ping(self) -> float:
        """Ping the client now; the round-trip time in seconds (:class:`ClientDisconnected` once closed)."""
        ws = self._open_ws("ping()")
        try:
            return await ws.ping()
        except ConnectionClosed as exc:
            raise ClientDisconnected(str(exc)) from None

    def backlog(self) -> int:
        """Bytes waiting to go out on this connection (0 before the accept)."""
        ws = self._session._ws
        return ws.backlog if ws is not None else 0

    @property
    def hub(self) -> Hub:
        """The in-process hub of :meth:`join`, :meth:`leave` and :meth:`publish` (one per process)."""
        return default_hub()

    async def join(self, room: str) -> None:
        """Make this connection a member of ``room`` (it leaves by itself when it closes)."""
        await default_hub().join(room, self._open_ws("join()"))

    async def leave(self, room: str) -> None:
        """Take this connection out of ``room``."""
        ws = self._session._ws
        if ws is not None:
            await default_hub().leave(room, ws)

    async def publish(
        self, room: str, message: BroadcastMessage, *, exclude_self: bool = False
    ) -> BroadcastResult:
        """Send ``message`` to every member of ``room``, framed once; never waits for a member."""
        exclude = self._session._ws if exclude_self else None
        return await default_hub().publish(room, message, exclude=exclude)


class ASGIWebSocket:
    """The ASGI side of one WebSocket connection: runs ``app(scope, receive, send)`` on it.

    - ``scope``: the WebSocket scope (:func:`~wsline.asgi.scope.websocket_scope`);
      the ``wsline`` extension is added to its ``extensions``, and denial
      responses are allowed when ``"websocket.http.response"`` is there.
    - ``request``: the upgrade request, read to its end by the host's parser.
    - ``protocol``: the host's protocol, ``transport`` set (see the module for
      the calls it forwards).
    - ``handshake``, ``options``: the server's handshake and options
      (``options`` defaults to ``handshake.options``): limits, compression,
      keepalive, timeouts.
    - ``trailing_data``: what the parser read after the request
      (``parser.trailing_data()``): the first WebSocket bytes.
    - ``default_headers``: ``(bytes, bytes)`` pairs for every response (the 101
      and the refusals), e.g. ``Server`` and ``Date``; an application header of
      the same name replaces one.
    - ``log``: where the access lines (``'127.0.0.1:50000 - "WebSocket /ws"
      [accepted]'``, ``... 403``) and the application's errors go (INFO and
      ERROR); ``"wsline.asgi"`` by default.
    - ``conn_id``: the connection's id in wsline's logs.
    """

    __slots__ = (
        "__weakref__",
        "_accepted",
        "_app",
        "_close",
        "_connect_sent",
        "_early",
        "_early_size",
        "_gone",
        "_handshake",
        "_log",
        "_opened",
        "_options",
        "_protocol",
        "_response",
        "_shut_down",
        "_state",
        "_trailing",
        "_ws",
        "conn_id",
        "default_headers",
        "request",
        "scope",
    )

    def __init__(
        self,
        app: ASGIApp,
        scope: MutableMapping[str, Any],
        request: Request,
        protocol: ProtocolBase,
        handshake: ServerHandshake,
        options: ServerOptions | None = None,
        *,
        trailing_data: bytes = b"",
        default_headers: Iterable[tuple[bytes, bytes]] = (),
        log: logging.Logger | None = None,
        conn_id: str | None = None,
    ) -> None:
        if protocol.transport is None:
            raise ValueError("the protocol has no transport yet")
        self._app = app
        self.scope = scope
        self.request = request
        self._protocol = protocol
        self._handshake = handshake
        self._options = options if options is not None else handshake.options
        self._trailing = trailing_data
        #: The headers every response gets, as ``str`` pairs.
        self.default_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in default_headers]
        self._log = log if log is not None else logger
        self.conn_id = conn_id
        self._state = _CONNECTING
        self._connect_sent = False
        self._gone = False
        self._shut_down = False  # refused by shutdown() before the application answered
        self._ws: WebSocket | None = None
        self._accepted: Accepted | None = None  # the handshake checked before the app ran
        self._opened: asyncio.Future[None] | None = None  # a receive() waiting for the accept
        self._close: tuple[int, str] = (1006, "")  # the disconnect once closed without the WebSocket
        self._response: tuple[int, list[tuple[str, str]], list[bytes]] | None = None
        self._early: list[bytes] | None = None
        self._early_size = 0
        extensions = scope.get("extensions")
        if extensions is None:
            extensions = scope["extensions"] = {}
        extensions["wsline"] = WslineExtension(self)

    def __repr__(self) -> str:
        state = ("connecting", "responding", "open", "closed")[self._state]
        return f"<ASGIWebSocket {self.scope.get('path', '')!r} {state}>"

    @property
    def websocket(self) -> WebSocket | None:
        """The :class:`~wsline.WebSocket` once the application accepted."""
        return self._ws

    # ------------------------------------------------------------ the host's calls

    def data_received(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes that arrived before the 101 (kept for the WebSocket; reading pauses past 64 KiB)."""
        if self._ws is not None:  # the host forwarded after the upgrade after all
            self._ws._feed(memoryview(data))
            return
        if self._state == _CLOSED or not data:
            return
        if self._early is None:
            self._early = []
        self._early.append(bytes(data))
        self._early_size += len(data)
        transport = self._protocol.transport
        if self._early_size > _EARLY_DATA_LIMIT and transport is not None:
            transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        """The TCP connection is closed (the host's ``connection_lost``)."""
        if self._gone:
            return
        self._gone = True
        self._early = None
        self._wake()

    def shutdown(self, code: int = 1012, reason: str = "service restart") -> None:
        """Stop gracefully: close an open connection with ``code``, answer 503 to an unanswered one.

        The application's ``receive()`` then gives ``websocket.disconnect``
        (once the client answered the close, or the connection ended).
        """
        ws = self._ws
        if ws is not None:
            if self._state == _OPEN:
                ws.close_nowait(code, reason)
            return
        if self._state in (_CONNECTING, _RESPONSE) and not self._gone:
            self._refuse(reject_response(503, "the server is shutting down\n", [("Retry-After", "1")]))
            self._shut_down = True
            self._close = (code, reason)
            self._wake()

    # ------------------------------------------------------------ running the app

    async def run(self) -> None:
        """Check the handshake, run the application, then end the connection as it asks."""
        if self._state != _CONNECTING or self._gone:
            return  # shut down (503) or gone before it could start
        try:
            self._accepted = self._handshake.accept(
                self.request, subprotocol=None, extra_headers=self.default_headers
            )
        except HandshakeRejected as exc:
            self._log.info('%s - "WebSocket %s" %d', self._client(), self._target(), exc.status)
            self._refuse(reject_response(exc.status, exc.reason + "\n", exc.headers))
            return
        try:
            result = await self._app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass  # the application sent to a connection that was gone: nothing left to do
        except asyncio.CancelledError:
            self._abort()
            raise
        except BaseException as exc:
            self._log.exception("Exception in ASGI application\n")
            if self._state in (_CONNECTING, _RESPONSE):
                self._refuse(reject_response(500, "internal server error\n"))
            elif self._state == _OPEN and self._ws is not None:
                self._ws.close_nowait(1011, "internal error")
            if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit
                self._abort()
                raise
        else:
            if result is not None:
                self._log.error("ASGI callable should return None, but returned '%s'.", result)
            if self._state == _CONNECTING:
                if not self._gone:
                    self._log.error("ASGI callable returned without accepting or closing the WebSocket: 403")
                    self._refuse(reject_response(403))
            elif self._state == _RESPONSE:
                self._log.error("ASGI callable returned before the end of its denial response: 500")
                self._refuse(reject_response(500, "internal server error\n"))
            elif self._state == _OPEN and self._ws is not None:
                self._ws.close_nowait(1000)
        ws = self._ws
        if ws is not None:
            await ws.wait_closed()

    def _abort(self) -> None:
        ws = self._ws
        if ws is not None:
            ws.abort()
        elif not self._gone and self._protocol.transport is not None:
            self._protocol.transport.abort()

    # ------------------------------------------------------------ receive

    async def receive(self) -> Message:
        """The ASGI ``receive``: ``websocket.connect``, then messages, then ``websocket.disconnect``."""
        ws = self._ws
        if ws is not None and self._state == _OPEN:
            try:
                message = await ws.recv()
            except ConnectionClosed as exc:
                return {"type": "websocket.disconnect", "code": exc.code, "reason": exc.reason}
            if type(message) is str:
                return {"type": "websocket.receive", "text": message}
            return {"type": "websocket.receive", "bytes": message}
        if not self._connect_sent:
            self._connect_sent = True
            return {"type": "websocket.connect"}
        while self._state in (_CONNECTING, _RESPONSE) and not self._gone:
            # Before the accept there is nothing to receive: wait for the
            # accept, the refusal, or the client's going away.
            fut = self._opened
            if fut is None:
                fut = self._opened = asyncio.get_running_loop().create_future()
            await fut
        if self._state == _OPEN:
            return await self.receive()
        # Gone before the accept (1006), refused (1006), or closed by the
        # application (its own code and reason, as uvicorn gives them).
        code, reason = self._close
        return {"type": "websocket.disconnect", "code": code, "reason": reason}

    def _wake(self) -> None:
        fut = self._opened
        if fut is not None:
            self._opened = None
            if not fut.done():
                fut.set_result(None)

    # ------------------------------------------------------------ send

    async def send(self, message: Message) -> None:
        """The ASGI ``send`` (see the module for each message)."""
        try:
            kind = message["type"]
        except (TypeError, KeyError):
            raise TypeError(f"an ASGI message is a dict with a 'type', not {message!r}") from None
        state = self._state
        if state == _OPEN:
            if kind == "websocket.send":
                await self._send_message(message)
            elif kind == "websocket.close":
                self._send_close(message)
            else:
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.send' or 'websocket.close', but got {kind!r}."
                )
        elif state == _CONNECTING:
            if self._gone:
                if kind == "websocket.close":
                    self._state = _CLOSED
                    return
                raise ClientDisconnected("the client went away before the WebSocket was accepted")
            if kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                self._deny(message)
            elif kind == "websocket.http.response.start":
                self._response_start(message)
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' or "
                    f"'websocket.http.response.start', but got {kind!r}."
                )
        elif state == _RESPONSE:
            if kind != "websocket.http.response.body":
                raise RuntimeError(f"Expected ASGI message 'websocket.http.response.body', but got {kind!r}.")
            if self._gone:
                raise ClientDisconnected("the client went away during the denial response")
            self._response_body(message)
        elif kind != "websocket.close":  # closing a closed connection does nothing
            if self._shut_down:
                raise ClientDisconnected("the server is shutting down: the client got 503")
            raise RuntimeError(f"Unexpected ASGI message {kind!r}, after the WebSocket was closed.")

    async def _send_message(self, message: Message) -> None:
        data = message.get("bytes")
        text = message.get("text")
        if data is not None:
            if text is not None:
                raise RuntimeError("'websocket.send' needs exactly one of 'bytes' and 'text', not both")
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"'websocket.send': 'bytes' must be bytes, not {type(data).__name__}")
            payload: str | bytes | bytearray | memoryview = data
        elif text is not None:
            if not isinstance(text, str):
                raise TypeError(f"'websocket.send': 'text' must be str, not {type(text).__name__}")
            payload = text
        else:
            raise RuntimeError("'websocket.send' needs 'bytes' or 'text'")
        compress = message.get("wsline.compress")
        if compress is not None and not isinstance(compress, bool):
            raise TypeError(f"'websocket.send': 'wsline.compress' must be a bool, not {compress!r}")
        ws = self._ws
        assert ws is not None
        try:
            await ws.send(payload, compress=compress)
        except ConnectionClosed as exc:
            raise ClientDisconnected(str(exc)) from None

    def _close_args(self, message: Message) -> tuple[int, str]:
        code = message.get("code", 1000)
        reason = message.get("reason")
        if code is None:
            code = 1000
        if not isinstance(code, int) or isinstance(code, bool):
            raise TypeError(f"'websocket.close': 'code' must be an int, not {code!r}")
        if reason is None:
            reason = ""
        if not isinstance(reason, str):
            raise TypeError(f"'websocket.close': 'reason' must be str, not {type(reason).__name__}")
        return code, reason

    def _send_close(self, message: Message) -> None:
        code, reason = self._close_args(message)
        ws = self._ws
        assert ws is not None
        try:
            ws.close_nowait(code, reason)
        except ValueError as exc:
            raise RuntimeError(f"'websocket.close': {exc}") from None
        self._state = _CLOSED
        self._close = (code, reason)

    # -- before the accept

    def _accept(self, message: Message) -> None:
        subprotocol = message.get("subprotocol")
        if subprotocol is not None and not isinstance(subprotocol, str):
            raise TypeError(f"'websocket.accept': 'subprotocol' must be str or None, not {subprotocol!r}")
        headers = _headers(message, "websocket.accept")
        if headers:
            kept = []
            for name, value in headers:
                lname = name.lower()
                if lname in _HANDSHAKE_HEADERS:
                    raise RuntimeError(f"'websocket.accept': the {name} header is the handshake's own")
                if lname == "sec-websocket-protocol":
                    if subprotocol is not None and subprotocol != value:
                        raise RuntimeError(
                            f"'websocket.accept': subprotocol {subprotocol!r} and a "
                            f"Sec-WebSocket-Protocol header {value!r} disagree"
                        )
                    subprotocol = value
                    continue
                kept.append((name, value))
            headers = kept
        accepted = self._accepted
        if subprotocol is not None or headers or accepted is None:
            try:
                accepted = self._handshake.accept(
                    self.request, subprotocol=subprotocol, extra_headers=_merge(self.default_headers, headers)
                )
            except HandshakeRejected as exc:
                self._refuse(reject_response(exc.status, "internal server error\n"))
                offered = self.scope.get("subprotocols", [])
                raise RuntimeError(
                    f"'websocket.accept': {exc.reason} (the client offered {offered!r}); "
                    f"answered {exc.status}"
                ) from None
        self._accepted = None
        protocol = self._protocol
        transport = protocol.transport
        assert transport is not None
        self._log.info('%s - "WebSocket %s" [accepted]', self._client(), self._target())
        transport.write(accepted.data)
        opts = self._options
        ws = WebSocket(
            transport,
            accepted.connection,
            request=self.request,
            response=accepted.response,
            subprotocol=accepted.subprotocol,
            ping_interval=opts.ping_interval,
            ping_timeout=opts.ping_timeout,
            close_timeout=opts.close_timeout,
            max_queue=opts.max_queue,
            write_limit=opts.write_limit,
            conn_id=self.conn_id,
        )
        self._ws = ws
        self._state = _OPEN
        protocol.ws = ws
        # The upgrade request's header index (~1 KB) is rebuilt if anyone looks a header up.
        self.request.headers._index = None
        # Reading resumes before the early bytes go in, so that a pause the
        # WebSocket asks for while taking them (a full queue) stays.
        transport.resume_reading()
        early = self._early
        self._early = None
        rest = self._trailing
        self._trailing = b""
        if early:
            rest = b"".join([rest, *early])
        if rest:
            ws._feed(memoryview(rest))
        self._wake()

    def _deny(self, message: Message) -> None:
        # A refusal has no close frame: code and reason are not used (FastAPI
        # sends its validation errors, a list, as the reason).
        self._log.info('%s - "WebSocket %s" 403', self._client(), self._target())
        self._refuse(reject_response(403))
        self._wake()

    def _response_start(self, message: Message) -> None:
        if "websocket.http.response" not in self.scope.get("extensions", {}):
            raise RuntimeError("'websocket.http.response.start': the server did not offer this extension")
        status = message.get("status")
        if not isinstance(status, int) or isinstance(status, bool):
            raise TypeError(f"'websocket.http.response.start': 'status' must be an int, not {status!r}")
        if not 200 <= status <= 599:
            raise RuntimeError(f"'websocket.http.response.start': invalid HTTP status code {status}")
        headers = _headers(message, "websocket.http.response.start")
        for name, _value in headers:
            if name.lower() == "transfer-encoding":
                raise RuntimeError("'websocket.http.response.start': Transfer-Encoding is not supported")
        self._log.info('%s - "WebSocket %s" %d', self._client(), self._target(), status)
        self._response = (status, headers, [])
        self._state = _RESPONSE

    def _response_body(self, message: Message) -> None:
        assert self._response is not None
        body = message.get("body", b"")
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"'websocket.http.response.body': 'body' must be bytes, not {type(body).__name__}"
            )
        status, headers, chunks = self._response
        if body:
            chunks.append(bytes(body))
        if message.get("more_body", False):
            return
        data = b"".join(chunks)
        for name, value in headers:
            if name.lower() == "content-length" and value != str(len(data)):
                self._refuse(reject_response(500, "internal server error\n"))
                raise RuntimeError(
                    f"'websocket.http.response.body': Content-Length says {value}, "
                    f"the body has {len(data)} bytes"
                )
        if not any(name.lower() == "content-type" for name, _ in headers) and data:
            headers.append(("Content-Type", "text/plain; charset=utf-8"))
        self._refuse(Response(status, REASON_PHRASES.get(status, ""), Headers(headers), data))
        self._wake()

    def _refuse(self, response: Response) -> None:
        """Answer with ``response`` (a refusal, or the application's denial) and close."""
        self._state = _CLOSED
        self._accepted = None
        self._response = None
        self._early = None
        transport = self._protocol.transport
        if self._gone or transport is None or transport.is_closing():
            return
        if self.default_headers:
            response = Response(
                response.status,
                response.reason,
                Headers(_merge(self.default_headers, response.headers.items())),
                response.body,
            )
        transport.write(self._handshake.serialize(response, self.request, False))
        transport.close()

    # ------------------------------------------------------------ access log

    def _client(self) -> str:
        client = self.scope.get("client")
        if not client:
            return ""
        return f"{client[0]}:{client[1]}"

    def _target(self) -> str:
        raw_path = self.scope.get("raw_path") or b""
        query = self.scope.get("query_string") or b""
        text = bytes(raw_path).decode("latin-1")
        if query:
            text += "?" + bytes(query).decode("latin-1")
        return text.replace('"', "%22")
