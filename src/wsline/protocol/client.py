"""The client's side of the opening handshake (RFC 6455 4.1), without I/O.

::

    handshake = ClientHandshake(parse_uri("ws://example.com/chat"), ClientOptions())
    write(handshake.data_to_send())
    while not handshake.receive_data(read()):   # InvalidStatus for a refusal
        pass
    connection = handshake.connection            # RFC 6455 from here on
    connection.receive_data(handshake.trailing_data())

The response is read by :class:`~wsline.protocol.http11.ResponseParser`; a
refusal (any status but 101) is read with its body, up to
``ClientOptions.max_rejection_body`` bytes, and raised as
:class:`~wsline.errors.InvalidStatus`. The asyncio client and the blocking
client both run on this.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .._version import __version__
from ..errors import ConnectFailed, ConnectRefused, InvalidHandshake, InvalidStatus, WebSocketError
from . import deflate as pmd
from .connection import Connection
from .handshake import WSURI, check_response, generate_key, make_request, parse_uri
from .http11 import NEED_DATA, Data, EndOfMessage, Limits, Response, ResponseParser, serialize_request

__all__ = [
    "ClientOptions",
    "ClientHandshake",
    "client_options",
    "connect_error",
    "headers_from",
]

#: The value of the ``User-Agent`` header by default.
DEFAULT_USER_AGENT = f"wsline/{__version__}"

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _check_header(name: str, value: str) -> None:
    if not isinstance(name, str) or not isinstance(value, str):
        raise TypeError(f"header names and values must be str, not {name!r}: {value!r}")
    if not _TOKEN.fullmatch(name) or _VALUE_BAD.search(value):
        raise ValueError(f"invalid header {name!r}: {value!r}")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"header {name!r} has characters outside Latin-1: {value!r}") from None


def _check_positive(name: str, value: float | None, *, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive number{' or None' if allow_none else ''}")


@dataclass(frozen=True)
class ClientOptions:
    """Everything a WebSocket client connection is configured with, checked once.

    See :func:`wsline.connect` for what each one means. A subprotocol that is
    not a token or a header that HTTP cannot carry is refused here, before any
    connection is made.
    """

    subprotocols: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    origin: str | None = None
    deflate: pmd.DeflateConfig | None = pmd.DEFAULT_CLIENT_CONFIG
    user_agent: str | None = DEFAULT_USER_AGENT
    max_size: int | None = 2**20
    max_queue: int | None = 32
    write_limit: int = 2**16
    open_timeout: float | None = 10.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    close_timeout: float = 10.0
    #: The largest response head accepted from the server.
    max_response_head: int = 64 * 1024
    #: How much of a refusal's body is kept for :class:`~wsline.errors.InvalidStatus`.
    max_rejection_body: int = 64 * 1024
    _limits: Limits = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in self.subprotocols:
            if not isinstance(name, str) or not _TOKEN.fullmatch(name):
                raise ValueError(f"invalid subprotocol name {name!r}")
        for name, value in self.headers:
            _check_header(name, value)
        if self.origin is not None:
            _check_header("Origin", self.origin)
        if self.user_agent is not None:
            _check_header("User-Agent", self.user_agent)
        _check_positive("max_size", self.max_size)
        _check_positive("max_queue", self.max_queue)
        _check_positive("open_timeout", self.open_timeout)
        _check_positive("ping_interval", self.ping_interval)
        _check_positive("ping_timeout", self.ping_timeout)
        _check_positive("close_timeout", self.close_timeout, allow_none=False)
        if not isinstance(self.write_limit, int) or self.write_limit < 0:
            raise ValueError("write_limit must be a non-negative integer")
        object.__setattr__(
            self,
            "_limits",
            Limits(max_head=self.max_response_head, max_body=1 << 62, max_trailers=self.max_response_head),
        )


class ClientHandshake:
    """One client's opening handshake: the request out, the response in, then a :class:`Connection`.

    ``key`` is the ``Sec-WebSocket-Key`` (random by default). With
    ``defer_close_reply`` (the asyncio client), the connection answers the
    peer's close frame once the application has read what came before it.
    """

    def __init__(
        self, uri: WSURI, options: ClientOptions, key: str | None = None, *, defer_close_reply: bool = True
    ) -> None:
        self.uri = uri
        self._defer_close_reply = defer_close_reply
        self.options = options
        self.key = key or generate_key()
        offer = pmd.client_offer(options.deflate) if options.deflate is not None else None
        #: The request sent (its headers are what :attr:`WebSocket.request` shows).
        self.request = make_request(
            uri,
            self.key,
            subprotocols=options.subprotocols,
            extensions=offer,
            origin=options.origin,
            extra_headers=options.headers,
            user_agent=options.user_agent,
        )
        self._out = serialize_request(self.request)
        self._parser = ResponseParser(options._limits, request_method="GET")
        self._body: list[bytes] = []
        self._body_size = 0
        #: The server's response, once its head is in.
        self.response: Response | None = None
        #: The subprotocol the server chose (after a 101).
        self.subprotocol: str | None = None
        #: The WebSocket connection, once the 101 is in and checked.
        self.connection: Connection | None = None

    def data_to_send(self) -> bytes:
        """The request's bytes (once; ``b""`` after)."""
        out, self._out = self._out, b""
        return out

    def receive_data(self, data: bytes | bytearray | memoryview) -> bool:
        """Take bytes from the server; ``True`` once the connection is open.

        Raises :class:`~wsline.errors.InvalidStatus` once a refusal and its body
        (or the first ``max_rejection_body`` bytes of it) are in, and
        :class:`~wsline.errors.InvalidHandshake` for a malformed or unacceptable
        response.
        """
        if self.connection is not None:
            raise RuntimeError("the handshake is over: feed the Connection")
        self._parser.feed(data)
        return self._advance()

    def receive_eof(self, detail: str = "") -> None:
        """The server closed the connection: raises what that means for the handshake.

        :class:`~wsline.errors.InvalidStatus` when a refusal's head had come (with
        the body that arrived), else :class:`~wsline.errors.InvalidHandshake`;
        ``detail`` (e.g. the socket error) goes into its message.
        """
        if self.connection is not None:
            return
        try:
            self._parser.feed_eof()
            self._advance()
        except InvalidStatus:
            raise
        except InvalidHandshake:
            pass  # a refusal whose body was cut: what arrived is kept
        if self.response is None:
            raise InvalidHandshake(
                "the server closed the connection during the opening handshake"
                + (f": {detail}" if detail else "")
            )
        self._refuse()

    def trailing_data(self) -> bytes:
        """What came after the 101 in the same reads: the first frames."""
        return self._parser.trailing_data()

    def _advance(self) -> bool:
        parser = self._parser
        while True:
            try:
                event = parser.next_event()
            except InvalidHandshake:
                if self.response is None or self.response.status == 101:
                    raise
                self._refuse()  # a refusal with a malformed body: its status is what counts
            if event is NEED_DATA:
                return False
            if isinstance(event, Response):
                self.response = event
            elif isinstance(event, EndOfMessage) and self.response is not None and self.response.status == 101:  # noqa: E501
                self._open(self.response)
                return True
            elif isinstance(event, Data):
                room = self.options.max_rejection_body - self._body_size
                self._body.append(event.data[:room])
                self._body_size += min(len(event.data), room)
                if self._body_size >= self.options.max_rejection_body:
                    self._refuse()
            elif isinstance(event, EndOfMessage):
                self._refuse()
            else:
                # The parser has nothing more (an informational response loops here).
                return False

    def _refuse(self) -> None:
        response = self.response
        assert response is not None
        response.body = b"".join(self._body)
        raise InvalidStatus(response.status, response.reason, response.headers.items(), response.body)

    def _open(self, response: Response) -> None:
        options = self.options
        self.subprotocol = check_response(response, self.key, options.subprotocols)
        deflate = None
        ext_values = response.headers.get_all("Sec-WebSocket-Extensions")
        if ext_values:
            if options.deflate is None:
                raise InvalidHandshake("the server accepted an extension we did not offer")
            deflate = pmd.client_negotiate(ext_values, options.deflate)
        self.connection = Connection(
            True,
            max_size=options.max_size,
            deflate=deflate,
            defer_close_reply=self._defer_close_reply,
        )


def client_options(
    uri: str,
    *,
    ssl: object,
    compression: str | None,
    deflate: pmd.DeflateConfig | None,
    subprotocols: Iterable[str] | None,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
    **fields: Any,
) -> tuple[WSURI, ClientOptions]:
    """``connect()``'s arguments, checked once for both clients: the parsed URI and the options.

    ``compression`` is ``"deflate"`` (with ``deflate`` or the default
    :data:`~wsline.protocol.deflate.DEFAULT_CLIENT_CONFIG`) or ``None``; an
    ``ssl`` context for a ``ws://`` URI is a mistake; ``fields`` are the other
    :class:`ClientOptions` fields.
    """
    if compression not in ("deflate", None):
        raise ValueError(f"unsupported compression {compression!r}; use 'deflate' or None")
    wsuri = parse_uri(uri)
    if ssl and not wsuri.secure:
        raise ValueError("ssl= was given for a ws:// URI; use wss://")
    options = ClientOptions(
        subprotocols=tuple(subprotocols or ()),
        headers=headers_from(headers),
        deflate=(deflate or pmd.DEFAULT_CLIENT_CONFIG) if compression == "deflate" else None,
        **fields,
    )
    return wsuri, options


def headers_from(
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
) -> tuple[tuple[str, str], ...]:
    """``headers=`` as :class:`ClientOptions` takes it (from a mapping or pairs)."""
    if headers is None:
        return ()
    items = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((name, value) for name, value in items)


# OpenSSL's reasons when the other end does not speak TLS (a ws:// server, say).
_NOT_TLS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST")


def connect_error(exc: OSError, host: str, port: int) -> WebSocketError:
    """What a failed TCP or TLS set-up means, as a wsline error (raise it ``from exc``).

    A failed certificate check or TLS handshake is an
    :class:`~wsline.errors.InvalidHandshake` that says which; anything else
    (refused, unreachable, a name not found, a reset) a
    :class:`~wsline.errors.ConnectFailed` (an :class:`OSError` too).
    """
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return InvalidHandshake(f"TLS certificate verification failed for {host}: {exc.verify_message}")
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        hint = " (the server does not seem to speak TLS: is it a ws:// server?)" if reason in _NOT_TLS else ""
        return InvalidHandshake(f"TLS handshake with {where} failed: {reason}{hint}")
    detail = exc.strerror or str(exc) or type(exc).__name__
    cls = ConnectRefused if isinstance(exc, ConnectionRefusedError) else ConnectFailed
    return cls(exc.errno, f"cannot connect to {where}: {detail}")
