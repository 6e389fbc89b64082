"""The server's side of the opening handshake (RFC 6455 4.2), without I/O.

An I/O layer reads requests with :class:`~wsline.protocol.http11.RequestParser`
and hands each upgrade request to :meth:`ServerHandshake.accept`, which checks it
against the server's :class:`ServerOptions` and returns the 101 response (as bytes,
ready to write) and a ready :class:`~wsline.protocol.connection.Connection`, or
raises :class:`~wsline.errors.HandshakeRejected` with the status to answer.
:meth:`ServerHandshake.serialize` frames every other answer (plain HTTP
responses and rejections) with the headers HTTP/1.1 asks for.

The asyncio server, the callback API and the ASGI layers all run on this: no I/O
layer checks a handshake header itself.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable, Iterable, Literal, Sequence, Union

from .._version import __version__
from ..errors import HandshakeRejected, NegotiationError
from . import deflate as pmd
from .connection import Connection
from .handshake import accept_response, check_request
from .http11 import Headers, Limits, Request, Response, build_response

__all__ = ["AUTO", "SelectSubprotocol", "ServerOptions", "ServerHandshake", "Accepted"]


class _Auto(enum.Enum):
    AUTO = "auto"


#: :meth:`ServerHandshake.accept` picks the subprotocol by the server's options.
AUTO: Literal[_Auto.AUTO] = _Auto.AUTO

#: ``select_subprotocol(request, offered)``: the subprotocol to use, or ``None``.
SelectSubprotocol = Callable[[Request, Sequence[str]], Union[str, None]]

#: The value of the ``Server`` header by default.
DEFAULT_SERVER_HEADER = f"wsline/{__version__}"


def _check_timeout(name: str, value: float | None, *, allow_none: bool = True) -> None:
    if value is None:
        if not allow_none:
            raise ValueError(f"{name} must be a number of seconds")
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds{' or None' if allow_none else ''}")


def _check_size(name: str, value: int | None, *, allow_none: bool = True, minimum: int = 1) -> None:
    if value is None:
        if not allow_none:
            raise ValueError(f"{name} must be an integer")
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        suffix = " or None" if allow_none else ""
        raise ValueError(f"{name} must be an integer of at least {minimum}{suffix}")


@dataclass(frozen=True)
class ServerOptions:
    """Everything a WebSocket server is configured with, checked once.

    The I/O layers read the timing and buffering settings; the handshake reads
    the rest. See :func:`wsline.serve` for what each one means.
    """

    subprotocols: tuple[str, ...] = ()
    origins: tuple[str | None, ...] | None = None
    select_subprotocol: SelectSubprotocol | None = None
    deflate: pmd.DeflateConfig | None = pmd.DEFAULT_SERVER_CONFIG
    max_size: int | None = 2**20
    max_queue: int | None = 32
    write_limit: int = 2**16
    max_header_size: int = 16384
    max_body_size: int = 2**20
    max_connections_per_client: int | None = None
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    open_timeout: float | None = 10.0
    close_timeout: float = 10.0
    server_header: str | None = DEFAULT_SERVER_HEADER

    def __post_init__(self) -> None:
        for name in self.subprotocols:
            if not isinstance(name, str) or not name:
                raise ValueError(f"invalid subprotocol name {name!r}")
        _check_size("max_size", self.max_size)
        _check_size("max_queue", self.max_queue)
        _check_size("write_limit", self.write_limit, allow_none=False, minimum=0)
        _check_size("max_header_size", self.max_header_size, allow_none=False, minimum=64)
        _check_size("max_body_size", self.max_body_size, allow_none=False, minimum=0)
        _check_size("max_connections_per_client", self.max_connections_per_client)
        _check_timeout("ping_interval", self.ping_interval)
        _check_timeout("ping_timeout", self.ping_timeout)
        _check_timeout("open_timeout", self.open_timeout)
        _check_timeout("close_timeout", self.close_timeout, allow_none=False)
        if self.server_header is not None and any(c in self.server_header for c in "\r\n\0"):
            raise ValueError("server_header may not contain CR, LF or NUL")
        # One Limits object for every request of this server.
        object.__setattr__(
            self, "_limits", Limits(max_head=self.max_header_size, max_body=self.max_body_size)
        )

    @property
    def limits(self) -> Limits:
        """The HTTP/1.1 parser's limits for this server's requests."""
        limits: Limits = self.__dict__["_limits"]
        return limits


@dataclass(frozen=True)
class Accepted:
    """An accepted upgrade: what to write, and the connection that starts after it."""

    #: The 101 response.
    response: Response
    #: The 101 response's bytes, to write before any frame.
    data: bytes
    #: The subprotocol chosen, or ``None``.
    subprotocol: str | None
    #: The WebSocket connection, ready for the bytes that follow the request.
    connection: Connection


class ServerHandshake:
    """The opening handshake of one server, for its :class:`ServerOptions`."""

    __slots__ = ("options",)

    def __init__(self, options: ServerOptions) -> None:
        self.options = options

    def select_subprotocol(self, request: Request) -> str | None:
        """The subprotocol for ``request``: ``select_subprotocol``, else the server's preference order."""
        offered = request.subprotocols
        opts = self.options
        if opts.select_subprotocol is not None:
            chosen = opts.select_subprotocol(request, offered)
            if chosen is not None and chosen not in offered:
                raise HandshakeRejected(500, f"select_subprotocol chose {chosen!r}, which was not offered")
            return chosen
        if not offered:
            return None
        for name in opts.subprotocols:
            if name in offered:
                return name
        return None

    def accept(
        self,
        request: Request,
        *,
        subprotocol: str | Literal[_Auto.AUTO] | None = AUTO,
        extra_headers: Iterable[tuple[str, str]] = (),
        check_origin: bool = True,
    ) -> Accepted:
        """Check an upgrade request and accept it.

        ``subprotocol`` names the subprotocol (or ``None`` for none), as an ASGI
        app does; with :data:`AUTO`, :meth:`select_subprotocol` decides.
        ``extra_headers`` go into the 101 after the handshake's own. Raises
        :class:`~wsline.errors.HandshakeRejected` with the status to answer
        (400, 403, 405, 426, 505...).
        """
        opts = self.options
        key = check_request(request)
        if check_origin and opts.origins is not None and request.origin not in opts.origins:
            raise HandshakeRejected(403, f"origin {request.origin!r} is not allowed")
        if subprotocol is AUTO:
            chosen = self.select_subprotocol(request)
        else:
            chosen = subprotocol
            if chosen is not None and chosen not in request.subprotocols:
                raise HandshakeRejected(
                    500, f"the application chose subprotocol {chosen!r}, which was not offered"
                )
        extensions, deflate = None, None
        ext_values = request.headers.get_all("Sec-WebSocket-Extensions")
        if opts.deflate is not None and ext_values:
            try:
                negotiated = pmd.server_negotiate(ext_values, opts.deflate)
            except NegotiationError as exc:
                raise HandshakeRejected(400, str(exc)) from None
            if negotiated is not None:
                extensions, deflate = negotiated
        headers = list(extra_headers)
        if opts.server_header and not any(name.lower() == "server" for name, _ in headers):
            headers.insert(0, ("Server", opts.server_header))
        response = accept_response(key, chosen, extensions, headers)
        connection = Connection(
            False,
            max_size=opts.max_size,
            deflate=deflate,
            defer_close_reply=True,
        )
        return Accepted(response, build_response(response), chosen, connection)

    def serialize(self, response: Response, request: Request | None, keep_alive: bool) -> bytes:
        """The bytes of an HTTP answer to ``request`` (``None``: a request that could not be read).

        Adds ``Content-Length`` where the status has a body, ``Connection:
        close`` when the connection ends after it, and the ``Server`` header; a
        response to ``HEAD`` goes without its body. The application's
        :class:`Response` is left untouched.
        """
        headers = Headers(response.headers.items())
        status = response.status
        if status >= 200 and status not in (204, 304) and "Content-Length" not in headers:
            headers.add("Content-Length", str(len(response.body)))
        if not keep_alive and "Connection" not in headers:
            headers.add("Connection", "close")
        server = self.options.server_header
        if server and "Server" not in headers:
            headers.add("Server", server)
        body = b"" if request is not None and request.method == "HEAD" else response.body
        return build_response(Response(status, response.reason, headers, body))

    @staticmethod
    def keep_alive(request: Request, response: Response, request_keep_alive: bool) -> bool:
        """Whether the connection stays open after answering ``request`` with ``response``.

        ``request_keep_alive`` is the parser's verdict on the request (HTTP
        version, ``Connection`` header, ambiguous framing).
        """
        if not request_keep_alive:
            return False
        for value in response.headers.get_all("Connection"):
            if "close" in (token.strip().lower() for token in value.split(",")):
                return False
        return True
