"""ASGI connection scopes built from a wsline :class:`~wsline.protocol.http11.Request`.

Protocol-neutral helpers shared by the ASGI layers (the uvicorn WebSocket
protocol, :mod:`wsline.asgi.uvicorn`, and wsline's own ASGI server): they turn
the request that :class:`~wsline.protocol.http11.RequestParser` read, plus the
socket's addresses, into the ``scope`` dict of the ASGI specification (version
3.0; HTTP and WebSocket connection scopes, spec 2.4)::

    scope = websocket_scope(
        request,
        scheme="ws",                       # scheme_for("websocket", tls=False)
        client=client_address(transport.get_extra_info("peername")),
        server=server_address(transport.get_extra_info("sockname")),
        root_path="",
        state=lifespan_state,              # copied (shallow) into scope["state"]
        extensions={"websocket.http.response": {}},
    )

What each key holds, and the choices made where the specification leaves room
(the choices are uvicorn's, so that an application sees the same scope under
either server):

``type``
    ``"http"`` or ``"websocket"`` (``"lifespan"`` scopes carry no request and are
    not built here).
``asgi``
    ``{"version": "3.0", "spec_version": ...}``: ``"2.4"`` by default (the
    WebSocket spec with ``reason`` in ``websocket.disconnect`` and the
    ``OSError`` on sending to a closed connection); an HTTP server that
    implements an older HTTP spec version passes its own.
``http_version``
    ``"1.1"`` or ``"1.0"``, from the request line.
``scheme``
    ``"ws"``/``"wss"`` for a WebSocket, ``"http"``/``"https"`` for HTTP
    (:func:`scheme_for`). A proxy's ``X-Forwarded-Proto`` is not looked at here:
    uvicorn's ``ProxyHeadersMiddleware`` (or the server's own equivalent) rewrites
    ``scheme`` and ``client`` in the scope when the proxy is trusted.
``path``
    The request target's path, percent-decoded (UTF-8, invalid sequences
    replaced), **with** ``root_path`` in front. The ASGI specification says that
    ``path`` includes ``root_path``, and uvicorn (0.26 and later) builds it so:
    ``root_path + unquote(raw path)``. Routers such as Starlette's strip
    ``root_path`` themselves.
``raw_path``
    The path as it came on the wire (``bytes``, percent-escapes kept, no query),
    with ``root_path`` in front too (as uvicorn does; ``root_path`` is
    percent-encoded for it, which leaves an ASCII root path unchanged).
``query_string``
    The bytes after ``?`` (``b""`` when there is none), undecoded.
``root_path``
    The mount point the server was told about (uvicorn's ``--root-path``;
    ``""`` by default), as a ``str``.
``headers``
    Every header line in order, as ``(name, value)`` pairs of ``bytes``, names
    lower-cased, values as received (ISO-8859-1, exactly the bytes on the wire).
``client``
    ``(host, port)`` of the peer, host as a ``str`` (an IPv6 address without
    brackets, like ``"::1"``); ``None`` when the socket has no such address (a
    Unix socket) (:func:`client_address`).
``server``
    ``(host, port)`` this side listens on; ``(path, None)`` for a Unix socket;
    ``None`` when unknown (:func:`server_address`).
``state``
    A shallow copy of the lifespan state (``None``: the key is left out, as
    for a server without lifespan state). Each connection gets its own copy,
    so what the application adds to it stays with that connection, while the
    objects in it are shared.
``extensions``
    The extensions the server offers for this connection, e.g.
    ``{"websocket.http.response": {}}``; ``{}`` when none.
``method`` (HTTP only)
    The request method, as sent (upper case for every standard method).
``subprotocols`` (WebSocket only)
    The subprotocols the client offered in ``Sec-WebSocket-Protocol``, in its
    order of preference (an empty list when none).

The functions build plain ``dict`` objects, fresh for each call: an
application may change its scope (routers do).
"""

from __future__ import annotations

from typing import Any, Literal, Mapping
from urllib.parse import quote, unquote

from ..errors import NegotiationError
from ..protocol.http11 import Headers, Request, parse_token_list

__all__ = [
    "ASGI_VERSION",
    "SPEC_VERSION",
    "Scope",
    "asgi_headers",
    "base_scope",
    "client_address",
    "http_scope",
    "http_version",
    "offered_subprotocols",
    "scheme_for",
    "server_address",
    "split_target",
    "websocket_scope",
]

#: The ASGI version of the scopes built here.
ASGI_VERSION = "3.0"
#: The version of the HTTP and WebSocket specification these scopes follow.
SPEC_VERSION = "2.4"

#: An ASGI scope.
Scope = dict[str, Any]

ScopeType = Literal["http", "websocket"]

# What stays as it is when a root path is percent-encoded for raw_path: RFC 3986
# pchar, "/" and "%" (an already encoded root path is kept as given).
_ROOT_PATH_SAFE = "/%!$&'()*+,;=:@-._~"


def asgi_headers(headers: Headers) -> list[tuple[bytes, bytes]]:
    """``headers`` as ASGI wants them: ``(lower-cased name, value)`` pairs of ``bytes``, in order.

    The parser decoded each byte of the head as one ISO-8859-1 character, so
    encoding back as ISO-8859-1 gives exactly the bytes that came on the wire.
    """
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


def split_target(target: str) -> tuple[bytes, bytes]:
    """A request target's raw path and query string, as ``bytes``, as sent.

    The parser has checked the target (RFC 9112 3.2: visible ASCII only) and
    reduced an absolute-form target to its path and query; ``"*"`` (OPTIONS)
    stays ``"*"``.
    """
    path, _, query = target.partition("?")
    return path.encode("ascii"), query.encode("ascii")


def http_version(request: Request) -> str:
    """``"1.1"``, ``"1.0"``: the HTTP version of the request line."""
    major, minor = request.version
    return f"{major}.{minor}"


def scheme_for(scope_type: ScopeType, tls: bool) -> str:
    """``"ws"``/``"wss"`` for a WebSocket scope, ``"http"``/``"https"`` for HTTP."""
    if scope_type == "websocket":
        return "wss" if tls else "ws"
    if scope_type == "http":
        return "https" if tls else "http"
    raise ValueError(f"unknown scope type {scope_type!r}")


def client_address(peername: Any) -> tuple[str, int] | None:
    """The ``client`` of a scope from a socket's peer address (``transport.get_extra_info("peername")``).

    IPv4 ``(host, port)`` and IPv6 ``(host, port, flowinfo, scope_id)`` give
    ``(host, port)``; a Unix socket's address (a path, often empty) and
    ``None`` give ``None``.
    """
    if isinstance(peername, (tuple, list)) and len(peername) >= 2:
        return (str(peername[0]), int(peername[1]))
    return None


def server_address(sockname: Any) -> tuple[str, int | None] | None:
    """The ``server`` of a scope from a socket's own address (``transport.get_extra_info("sockname")``).

    ``(host, port)`` for TCP (IPv6: without flow info and scope id); ``(path,
    None)`` for a Unix socket; ``None`` when unknown.
    """
    if isinstance(sockname, (tuple, list)) and len(sockname) >= 2:
        return (str(sockname[0]), int(sockname[1]))
    if isinstance(sockname, bytes):  # an abstract or non-UTF-8 Unix socket path
        sockname = sockname.decode("utf-8", "surrogateescape")
    if isinstance(sockname, str) and sockname:
        return (sockname, None)
    return None


def base_scope(
    request: Request,
    *,
    type: ScopeType,
    scheme: str,
    client: tuple[str, int] | None,
    server: tuple[str, int | None] | None,
    root_path: str = "",
    state: Mapping[str, Any] | None = None,
    extensions: Mapping[str, Any] | None = None,
    spec_version: str = SPEC_VERSION,
) -> Scope:
    """The keys every HTTP and WebSocket scope has (see the module's documentation for each one).

    ``client`` and ``server`` are tuples as :func:`client_address` and
    :func:`server_address` give them; ``state`` and ``extensions`` are copied
    (shallow: the dict is new, its values are shared).
    """
    raw_path, query_string = split_target(request.target)
    path = unquote(raw_path.decode("ascii")) if b"%" in raw_path else raw_path.decode("ascii")
    if root_path:
        path = root_path + path
        raw_path = quote(root_path, safe=_ROOT_PATH_SAFE).encode("ascii") + raw_path
    scope: Scope = {
        "type": type,
        "asgi": {"version": ASGI_VERSION, "spec_version": spec_version},
        "http_version": http_version(request),
        "scheme": scheme,
        "path": path,
        "raw_path": raw_path,
        "query_string": query_string,
        "root_path": root_path,
        "headers": asgi_headers(request.headers),
        "client": client,
        "server": server,
        "extensions": dict(extensions) if extensions else {},
    }
    if state is not None:
        scope["state"] = dict(state)
    return scope


def http_scope(
    request: Request,
    *,
    scheme: str,
    client: tuple[str, int] | None,
    server: tuple[str, int | None] | None,
    root_path: str = "",
    state: Mapping[str, Any] | None = None,
    extensions: Mapping[str, Any] | None = None,
    spec_version: str = SPEC_VERSION,
) -> Scope:
    """An HTTP connection scope: :func:`base_scope` plus ``method``."""
    scope = base_scope(
        request,
        type="http",
        scheme=scheme,
        client=client,
        server=server,
        root_path=root_path,
        state=state,
        extensions=extensions,
        spec_version=spec_version,
    )
    scope["method"] = request.method
    return scope


def offered_subprotocols(request: Request) -> list[str]:
    """The subprotocols a WebSocket request offers, in order (``[]`` for a malformed header).

    A malformed ``Sec-WebSocket-Protocol`` is refused by the handshake
    (:meth:`~wsline.protocol.server.ServerHandshake.accept`), so an application
    never runs with one; this does not raise for it either.
    """
    try:
        return request.subprotocols
    except NegotiationError:
        return parse_token_list(request.headers.get_all("Sec-WebSocket-Protocol"), strict=False)


def websocket_scope(
    request: Request,
    *,
    scheme: str,
    client: tuple[str, int] | None,
    server: tuple[str, int | None] | None,
    root_path: str = "",
    state: Mapping[str, Any] | None = None,
    extensions: Mapping[str, Any] | None = None,
    spec_version: str = SPEC_VERSION,
) -> Scope:
    """A WebSocket connection scope: :func:`base_scope` plus ``subprotocols``.

    Give ``extensions={"websocket.http.response": {}}`` when the server can
    send a denial response (:mod:`wsline.asgi.websocket` can).
    """
    scope = base_scope(
        request,
        type="websocket",
        scheme=scheme,
        client=client,
        server=server,
        root_path=root_path,
        state=state,
        extensions=extensions,
        spec_version=spec_version,
    )
    scope["subprotocols"] = offered_subprotocols(request)
    return scope
