"""ASGI HTTP on wsline's parser: one request/response cycle of an ASGI 3 application.

The I/O layer reads a request head with :class:`~wsline.protocol.http11.RequestParser`
and hands it, with the connection, to :class:`HTTPCycle`, which runs the
application's ``app(scope, receive, send)`` for it:

* ``receive()`` gives the body as it arrives, one ``http.request`` event per
  :class:`~wsline.protocol.http11.Data` event of the parser (``more_body`` until
  the :class:`~wsline.protocol.http11.EndOfMessage`); the connection reads only
  while the application receives (the parser buffers a little, then the I/O
  layer stops reading). The first ``receive()`` of a request with ``Expect:
  100-continue`` sends ``100 Continue`` (unless the response has started). Once
  the body is in, ``receive()`` waits for ``http.disconnect``: the client went
  away, or the response is complete.
* ``send()`` takes ``http.response.start`` then ``http.response.body`` events.
  The head goes out with the first body piece, or at the end of the event
  loop's pass when the application takes longer, so that a whole response is
  one write. :class:`ResponseFramer` frames it (sans-I/O): the application's
  ``Content-Length`` when it gives one, else the length of a body sent in one
  piece, else chunked transfer coding (HTTP/1.1) or the end of the connection
  (HTTP/1.0); no body for HEAD (its ``Content-Length`` kept), 204 and 304; the
  ``Server`` and ``Date`` headers unless the application sets them. ``send()``
  waits while the client does not read (the transport's buffer is above its
  limit) and raises :class:`ClientDisconnected` (an :class:`OSError`, as the
  ASGI HTTP specification 2.4 asks) once the client is gone.
* Errors: an exception before the head went out is a 500 (and the connection
  closes); after it, the connection closes (the client sees a cut response).
  An application that returns without a response gets a 500. Invalid messages
  raise :class:`RuntimeError` in the application (and so end up the same way);
  each is logged with the connection's id.

The connection's side is :class:`Channel`: the parser, a transport, and a way to
wait for the next thing that happens on the connection.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Awaitable, Callable, Iterable, MutableMapping, Protocol

from ..errors import HandshakeRejected
from ..protocol.handshake import reject_response
from ..protocol.http11 import (
    NEED_DATA,
    REASON_PHRASES,
    Data,
    EndOfMessage,
    Headers,
    Request,
    RequestParser,
    Response,
)
from ..protocol.server import ServerHandshake

__all__ = [
    "ASGIApp",
    "Channel",
    "ClientDisconnected",
    "HTTPCycle",
    "Message",
    "ResponseFramer",
    "Scope",
    "http_date",
    "respond_whole",
]

logger = logging.getLogger("wsline.asgi")

#: An ASGI message.
Message = MutableMapping[str, Any]
#: An ASGI scope.
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: An ASGI 3 application.
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE_BAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]|^[ \t]|[ \t]$")
_DIGITS = re.compile(rb"[0-9]{1,18}")

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_LAST_CHUNK = b"0\r\n\r\n"
_DISCONNECT: dict[str, Any] = {"type": "http.disconnect"}


class ClientDisconnected(OSError):
    """``send()`` after the client went away (ASGI HTTP 2.4: an :class:`OSError`)."""


# ------------------------------------------------------------------ the date


_date_second = -1
_date_value = b""


def http_date(now: float | None = None) -> bytes:
    """The ``Date`` header's value for now (IMF-fixdate), computed once a second."""
    global _date_second, _date_value
    now = time.time() if now is None else now
    second = int(now)
    if second != _date_second:
        _date_value = formatdate(second, usegmt=True).encode("ascii")
        _date_second = second
    return _date_value


# ------------------------------------------------------------------ framing (sans-I/O)


_STATUS_LINES: dict[int, bytes] = {}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        reason = REASON_PHRASES.get(status)
        if reason is None:
            try:
                reason = HTTPStatus(status).phrase
            except ValueError:
                reason = ""
        line = f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1")
        if len(_STATUS_LINES) < 1000:
            _STATUS_LINES[status] = line
    return line


class ResponseFramer:
    """Frames one streamed HTTP/1.1 response (RFC 9112 6), without I/O.

    ``method`` and ``version`` are the request's; ``keep_alive`` is whether the
    connection may carry another request (the parser's verdict, and whether the
    server is closing). :meth:`start` takes the application's status and
    headers; :meth:`head` gives the head's bytes once the framing is known
    (``first`` is the first body piece and ``final`` whether it is the last
    one: a body sent whole gets its ``Content-Length``); :meth:`body` frames
    each piece. :attr:`keep_alive` says, after :meth:`head`, whether the
    connection stays open after the response. Invalid input raises
    :class:`RuntimeError` (an application error).
    """

    __slots__ = (
        "_chunked",
        "_headers",
        "_length",
        "_no_body",
        "_sent",
        "_server",
        "keep_alive",
        "method",
        "status",
        "version",
    )

    def __init__(
        self,
        method: str,
        version: tuple[int, int],
        keep_alive: bool,
        server_header: bytes | None = None,
    ) -> None:
        self.method = method
        self.version = version
        self.keep_alive = keep_alive
        self._server = server_header
        self.status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._length: int | None = None  # the application's Content-Length
        self._chunked = False
        self._no_body = False
        self._sent = 0

    def start(self, status: object, headers: object) -> None:
        """Check ``http.response.start``'s ``status`` and ``headers``."""
        if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
            raise RuntimeError(f"invalid HTTP status {status!r} in http.response.start (200 to 599)")
        self.status = status
        out = self._headers
        for item in _iter_headers(headers):
            name, value = item
            lname = name.lower()
            if lname == b"content-length":
                if not _DIGITS.fullmatch(value.strip()):
                    raise RuntimeError(f"invalid Content-Length {value!r} in http.response.start")
                length = int(value)
                if self._length is not None and self._length != length:
                    raise RuntimeError("conflicting Content-Length headers in http.response.start")
                self._length = length
                continue  # said once, below
            elif lname == b"transfer-encoding":
                if value.strip().lower() != b"chunked":
                    raise RuntimeError(f"unsupported Transfer-Encoding {value!r} (the server frames bodies)")
                continue  # we chunk (or not) ourselves
            elif lname == b"connection":
                if b"close" in (token.strip().lower() for token in value.split(b",")):
                    self.keep_alive = False
                continue  # said again below as the framing needs
            out.append((name, value))
        # RFC 9110 6.4.1 and 9112 6.3: these have no body.
        self._no_body = self.method == "HEAD" or status in (204, 304)

    def head(self, first: bytes, final: bool, date: bytes) -> bytes:
        """The head, once the first body piece (``first``; ``final``: the only one) is known."""
        lines = [_status_line(self.status)]
        has_server = has_date = False
        for name, value in self._headers:
            lname = name.lower()
            if lname == b"server":
                has_server = True
            elif lname == b"date":
                has_date = True
            lines += (name, b": ", value, b"\r\n")
        if self._server is not None and not has_server:
            lines += (b"server: ", self._server, b"\r\n")
        if not has_date:
            lines += (b"date: ", date, b"\r\n")
        length = self._length
        if length is not None:
            if self.status != 204:  # RFC 9110 8.6: never in a 204; a 304 or HEAD's says the GET's
                lines += (b"content-length: ", str(length).encode("ascii"), b"\r\n")
        elif self.status in (204, 304):
            pass
        elif final and (first or self.method != "HEAD"):
            # The whole body in one piece: its length is known.
            self._length = len(first)
            lines += (b"content-length: ", str(len(first)).encode("ascii"), b"\r\n")
        elif self.method == "HEAD":
            pass  # the length of the body a GET would have is unknown: none said
        elif self.version >= (1, 1):
            self._chunked = True
            lines.append(b"transfer-encoding: chunked\r\n")
        else:
            self.keep_alive = False  # HTTP/1.0: the body ends with the connection
        if not self.keep_alive:
            lines.append(b"connection: close\r\n")
        elif self.version < (1, 1):
            lines.append(b"connection: keep-alive\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    def body(self, data: bytes, final: bool) -> bytes:
        """The bytes to write for a body piece (``final``: the last one)."""
        if self._no_body:
            return b""
        if self._length is not None:
            self._sent += len(data)
            if self._sent > self._length:
                raise RuntimeError(
                    f"the response body is longer than its Content-Length ({self._length} bytes)"
                )
            if final and self._sent < self._length:
                raise RuntimeError(
                    f"the response body ended after {self._sent} of its Content-Length's {self._length} bytes"
                )
            return data
        if self._chunked:
            if data:
                framed = b"%x\r\n%b\r\n" % (len(data), data)
                return framed + _LAST_CHUNK if final else framed
            return _LAST_CHUNK if final else b""
        return data

    def abort(self) -> None:
        """The response will not be completed: the connection must close."""
        self.keep_alive = False


def _iter_headers(headers: object) -> Iterable[tuple[bytes, bytes]]:
    if headers is None:
        return
    try:
        items = iter(headers)  # type: ignore[call-overload]
    except TypeError:
        raise RuntimeError(f"http.response.start headers must be pairs, not {headers!r}") from None
    for item in items:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise RuntimeError(f"invalid header {item!r} in http.response.start (not a pair)") from None
        if not isinstance(name, (bytes, bytearray)) or not isinstance(value, (bytes, bytearray)):
            raise RuntimeError(f"header names and values must be bytes: {item!r}")
        name, value = bytes(name), bytes(value)
        if not _TOKEN.fullmatch(name):
            raise RuntimeError(f"invalid header name {name!r}")
        if _VALUE_BAD.search(value):
            raise RuntimeError(f"invalid value for header {name!r}: {value!r}")
        yield name, value


# ------------------------------------------------------------------ the cycle


_SERVER_HEADERS: dict[str, bytes] = {}


def _server_header(handshake: ServerHandshake) -> bytes | None:
    """The ``Server`` header's value as bytes (encoded once per value)."""
    value = handshake.options.server_header
    if not value:
        return None
    encoded = _SERVER_HEADERS.get(value)
    if encoded is None:
        encoded = _SERVER_HEADERS[value] = value.encode("latin-1")
    return encoded


class Channel(Protocol):
    """The connection an :class:`HTTPCycle` runs on: what the I/O layer provides.

    * ``parser``: the connection's request parser, just after the head of the
      request being served (the cycle reads the body from it);
    * ``transport``: where the response goes;
    * :meth:`wait`: returns at the next change (bytes fed to the parser, EOF,
      the connection lost, the write buffer drained, or :meth:`wake`);
      several tasks may wait at once;
    * :meth:`resume_reading`: the cycle needs more bytes (the I/O layer pauses
      reading by itself while the parser holds a lot);
    * ``lost``: the connection is gone (nothing can be written); ``eof``: the
      client closed its side (it sends no more; the answer may still go out);
      ``writing_paused``: the client does not read fast enough; ``closing``:
      the server is shutting down (the response says ``Connection: close``);
    * ``handshake``: the server's :class:`~wsline.protocol.server.ServerHandshake`
      (its options: limits, WebSocket settings, the ``Server`` header);
      ``remote_address``, ``local_address``: the socket's addresses; ``tls``:
      whether it runs TLS; :meth:`report`: where the
      application's exceptions go (the server's error channel);
    * :meth:`attach`: a WebSocket session takes the connection over (the I/O
      layer forwards the bytes before its 101, ``connection_lost`` and a
      graceful stop to it). A Channel is also a
      :class:`~wsline.aio.connection.ProtocolBase` (the session sets its ``ws``).
    """

    conn_id: str
    #: The socket's addresses (``getpeername()``, ``getsockname()``), and whether it runs TLS.
    remote_address: Any
    local_address: Any
    tls: bool

    @property
    def handshake(self) -> ServerHandshake: ...

    def report(self, exc: BaseException) -> None: ...

    def attach(self, session: Any) -> None: ...

    @property
    def parser(self) -> RequestParser: ...

    @property
    def transport(self) -> asyncio.Transport | None: ...

    @property
    def lost(self) -> bool: ...

    @property
    def eof(self) -> bool: ...

    @property
    def writing_paused(self) -> bool: ...

    @property
    def closing(self) -> bool: ...

    async def wait(self) -> None: ...

    def wake(self) -> None: ...

    def resume_reading(self) -> None: ...


class HTTPCycle:
    """One HTTP request through an ASGI application (see the module's documentation).

    ``keep_alive`` is the parser's verdict on the request; :meth:`run` returns
    whether the connection may go on to the next request (the response is
    complete, framed so that its end is known, and the request body was read
    to its end, or can be without waiting). ``handshake`` serializes the 500
    and the parser's refusals; ``report`` gets the application's exceptions.
    """

    __slots__ = (
        "_body_done",
        "_complete",
        "_continue",
        "_flush_handle",
        "_framer",
        "_head_pending",
        "_head_sent",
        "_refused",
        "_started",
        "app",
        "channel",
        "handshake",
        "report",
        "request",
        "scope",
    )

    def __init__(
        self,
        app: ASGIApp,
        scope: Scope,
        request: Request,
        channel: Channel,
        handshake: ServerHandshake,
        *,
        keep_alive: bool,
        report: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.app = app
        self.scope = scope
        self.request = request
        self.channel = channel
        self.handshake = handshake
        self.report = report
        self._framer = ResponseFramer(
            request.method, request.version, keep_alive and not channel.closing, _server_header(handshake)
        )
        self._body_done = False
        self._started = False  # http.response.start received
        self._head_pending = False  # ... and its head not written yet
        self._head_sent = False
        self._complete = False
        self._refused = False  # the body was refused (413...): answered, connection closing
        self._flush_handle: asyncio.Handle | None = None
        expect = request.headers.get("Expect") if request.version >= (1, 1) else None
        self._continue = expect is not None and expect.strip().lower() == "100-continue"

    @property
    def status(self) -> int:
        """The response's status once it started (0 before)."""
        return self._framer.status

    # ------------------------------------------------------------ running

    async def run(self) -> bool:
        """Run the application for this request; whether the connection may carry another."""
        try:
            result: object = await self.app(self.scope, self.receive, self.send)  # type: ignore[func-returns-value]
        except ClientDisconnected:
            return False
        except Exception as exc:  # noqa: BLE001 - the application's, answered and logged
            channel = self.channel
            if channel.lost or self._refused or (channel.eof and not self._body_done):
                # Raised because the client went away (e.g. starlette's ClientDisconnect).
                logger.info("[%s] application ended after the client left: %r", self.channel.conn_id, exc)
                return False
            self._log_error("ASGI application failed: %r", exc, exc)
            if not self._head_sent:
                self._send_500()
            return False
        except asyncio.CancelledError:
            self._framer.abort()
            raise
        finally:
            self._cancel_flush()
        if result is not None:
            self._log_error("the ASGI application returned %r, not None", result)
        if self._refused or self.channel.lost:
            return False
        if not self._started or (not self._complete and not self._head_sent):
            what = "completing" if self._started else "starting"
            self._log_error("the ASGI application returned without %s a response", what)
            self._send_500()
            return False
        if not self._complete:
            self._log_error("the ASGI application returned without completing its response")
            return False
        return self._framer.keep_alive and self._skip_body()

    def _skip_body(self) -> bool:
        """Read the rest of an unread request body, if it is here already; whether it was."""
        if self._body_done:
            return True
        parser = self.channel.parser
        try:
            while True:
                event = parser.next_event()
                if isinstance(event, EndOfMessage):
                    self._body_done = True
                    return True
                if not isinstance(event, Data):  # NEED_DATA: not waited for
                    return False
        except HandshakeRejected:
            return False

    def _log_error(self, message: str, arg: object = None, exc: BaseException | None = None) -> None:
        args: tuple[object, ...] = (self.channel.conn_id, self.request.method, self.request.path)
        if arg is not None:
            args += (arg,)
        logger.error("[%s] %s %s: " + message, *args, exc_info=exc)
        if self.report is not None:
            text = message % (arg,) if arg is not None else message
            self.report(exc if exc is not None else RuntimeError(text))

    def _write(self, data: bytes) -> None:
        transport = self.channel.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)

    def _send_500(self) -> None:
        self._cancel_flush()
        self._framer.abort()
        if self.channel.lost:
            return
        response = reject_response(500, "Internal Server Error\n")
        self._write(self.handshake.serialize(response, self.request, False))
        self._head_sent = True

    # ------------------------------------------------------------ receive

    async def receive(self) -> Message:
        """The ASGI ``receive``: ``http.request`` events, then ``http.disconnect``."""
        channel = self.channel
        if self._continue:
            self._continue = False
            if not self._started and not self._body_done and not channel.lost and not channel.eof:
                self._write(_CONTINUE)
        if not self._body_done and not self._refused:
            parser = channel.parser
            while True:
                try:
                    event = parser.next_event()
                except HandshakeRejected as exc:
                    if not channel.lost and not channel.eof:  # else the client left midway
                        self._refuse(exc)
                    return dict(_DISCONNECT)
                if isinstance(event, Data):
                    return self._body_event(parser, event.data)
                if isinstance(event, EndOfMessage):
                    self._body_done = True
                    return {"type": "http.request", "body": b"", "more_body": False}
                if event is not NEED_DATA or channel.lost:
                    return dict(_DISCONNECT)
                channel.resume_reading()
                await channel.wait()
        while not self._complete and not channel.lost and not channel.eof and not self._refused:
            await channel.wait()
        return dict(_DISCONNECT)

    def _body_event(self, parser: RequestParser, data: bytes) -> Message:
        """An ``http.request`` event with ``data`` and what else of the body is here already."""
        pieces: list[bytes] | None = None
        more = True
        while True:
            try:
                event = parser.next_event()
            except HandshakeRejected:
                break  # raised again by the next receive()
            if isinstance(event, Data):
                if pieces is None:
                    pieces = [data]
                pieces.append(event.data)
                continue
            if isinstance(event, EndOfMessage):
                self._body_done = True
                more = False
            break
        body = b"".join(pieces) if pieces is not None else data
        return {"type": "http.request", "body": body, "more_body": more}

    def _refuse(self, exc: HandshakeRejected) -> None:
        """The request body broke a rule or a limit: answer it (if we still can), then close."""
        logger.info("[%s] refused request body: %d %s", self.channel.conn_id, exc.status, exc.reason)
        self._refused = True
        self._framer.abort()
        if not self._head_sent:
            self._cancel_flush()
            self._head_sent = True
            response = reject_response(exc.status, exc.reason + "\n", exc.headers)
            self._write(self.handshake.serialize(response, self.request, False))
        transport = self.channel.transport
        if transport is not None:
            transport.close()

    # ------------------------------------------------------------ send

    async def send(self, message: Message) -> None:
        """The ASGI ``send``: ``http.response.start``, then ``http.response.body`` events."""
        kind = message.get("type")
        channel = self.channel
        if self._refused or channel.lost:
            raise ClientDisconnected("the client closed the connection")
        if not self._started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected ASGI message 'http.response.start', got {kind!r}")
            self._framer.start(message.get("status"), message.get("headers"))
            if message.get("trailers"):
                raise RuntimeError("http.response.trailers is not offered by this server")
            self._started = True
            self._continue = False
            self._head_pending = True
            # The head waits for the first body piece, or the end of this loop pass.
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush_head)
            return
        if self._complete:
            raise RuntimeError(f"ASGI message {kind!r} after the response was complete")
        if kind != "http.response.body":
            raise RuntimeError(f"expected ASGI message 'http.response.body', got {kind!r}")
        body = message.get("body", b"")
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise RuntimeError(f"http.response.body's body must be bytes, not {type(body).__name__}")
        more = bool(message.get("more_body", False))
        body = bytes(body)
        framer = self._framer
        if self._head_pending:
            self._cancel_flush()
            self._head_pending = False
            self._head_sent = True
            if channel.closing:
                framer.abort()
            head = framer.head(body, not more, http_date())
            self._write(head + framer.body(body, not more))
        else:
            self._write(framer.body(body, not more))
        if not more:
            self._complete = True
            channel.wake()  # a receive() waiting for the end
        elif channel.writing_paused:
            while channel.writing_paused and not channel.lost:
                await channel.wait()
            if channel.lost:
                raise ClientDisconnected("the client closed the connection")

    def _flush_head(self) -> None:
        self._flush_handle = None
        if self._head_pending and not self.channel.lost:
            self._head_pending = False
            self._head_sent = True
            if self.channel.closing:
                self._framer.abort()
            self._write(self._framer.head(b"", False, http_date()))

    def _cancel_flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None


# ------------------------------------------------------------------ whole requests


async def respond_whole(app: ASGIApp, scope: Scope, request: Request) -> Response:
    """Run ``app`` for a request whose body is read already (``request.body``); its whole response.

    For a server that hands over whole requests and writes whole responses
    (wsline's ``http_handler`` path, e.g. :meth:`wsline.Router.mount` until the
    server has the ``take_request`` hook): ``receive()`` gives the body in one
    ``http.request`` event, then ``http.disconnect`` once the response is
    complete (a client's going away cannot be seen); the response is collected
    to its end. Invalid messages raise :class:`RuntimeError` (a 500).
    """
    framer = ResponseFramer(request.method, request.version, True)
    pieces: list[bytes] = []
    state = {"body_sent": False, "started": False}
    complete = asyncio.Event()

    async def receive() -> Message:
        if not state["body_sent"]:
            state["body_sent"] = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await complete.wait()
        return dict(_DISCONNECT)

    async def send(message: Message) -> None:
        kind = message.get("type")
        if not state["started"]:
            if kind != "http.response.start":
                raise RuntimeError(f"expected ASGI message 'http.response.start', got {kind!r}")
            if message.get("trailers"):
                raise RuntimeError("http.response.trailers is not offered by this server")
            framer.start(message.get("status"), message.get("headers"))
            state["started"] = True
            return
        if complete.is_set():
            raise RuntimeError(f"ASGI message {kind!r} after the response was complete")
        if kind != "http.response.body":
            raise RuntimeError(f"expected ASGI message 'http.response.body', got {kind!r}")
        body = message.get("body", b"")
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise RuntimeError(f"http.response.body's body must be bytes, not {type(body).__name__}")
        if body:
            pieces.append(bytes(body))
        if not message.get("more_body", False):
            complete.set()

    result: object = await app(scope, receive, send)  # type: ignore[func-returns-value]
    if result is not None:
        raise RuntimeError(f"the ASGI application returned {result!r}, not None")
    if not complete.is_set():
        what = "completing" if state["started"] else "starting"
        raise RuntimeError(f"the ASGI application returned without {what} a response")
    body = b"".join(pieces)
    status = framer.status
    length = framer._length
    if length is not None and request.method != "HEAD" and status not in (204, 304) and length != len(body):
        raise RuntimeError(f"the response body has {len(body)} bytes, its Content-Length says {length}")
    headers = Headers([(name.decode("latin-1"), value.decode("latin-1")) for name, value in framer._headers])
    if status in (204, 304):
        body = b""
        if length is not None and status == 304:
            headers.add("Content-Length", str(length))
    else:
        headers.add("Content-Length", str(length if length is not None else len(body)))
    if not framer.keep_alive:
        headers.add("Connection", "close")
    if not any(name.lower() == "date" for name, _ in headers):
        headers.add("Date", http_date().decode("ascii"))
    return Response(status, _status_line(status)[13:-2].decode("latin-1"), headers, body)
