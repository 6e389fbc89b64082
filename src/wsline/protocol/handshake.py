"""The opening handshake (RFC 6455 4), without I/O.

The HTTP/1.1 side (the data types, the parsers) is :mod:`wsline.protocol.http11`'s;
``Headers``, ``Request``, ``Response``, ``REASON_PHRASES``, ``build_response``,
``parse_request``, ``parse_response`` and ``parse_token_list`` are re-exported here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass
from typing import Iterable, Sequence
from urllib.parse import unquote, urlsplit

from ..errors import HandshakeRejected, InvalidHandshake, InvalidURI, NegotiationError
from .http11 import (
    REASON_PHRASES,
    Headers,
    Request,
    Response,
    build_response,
    parse_request,
    parse_response,
    parse_token_list,
    serialize_request,
)

__all__ = [
    "GUID",
    "Headers",
    "Request",
    "Response",
    "WSURI",
    "accept_key",
    "parse_uri",
    "parse_request",
    "parse_response",
    "check_request",
    "make_request",
    "serialize_request",
    "encode_resource",
    "build_response",
    "accept_response",
    "reject_response",
    "check_response",
    "parse_token_list",
    "generate_key",
    "REASON_PHRASES",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: A host in a ws:// URI once IDNA-encoded: RFC 3986 reg-name characters, no "%".
_URI_HOST = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=]+")
_IDNA_DEVIATIONS = frozenset("\u00df\u03c2\u200c\u200d")  # UTS 46 deviation characters
# What encode_resource percent-encodes (the WHATWG URL path and query
# percent-encode sets, plus "#"): controls, space, DEL, non-ASCII and a few
# delimiters. Everything else is kept, "%" and existing %XX escapes included.
_PATH_UNSAFE = re.compile(r"[^\x21\x24-\x3b\x3d\x3f-\x5f\x61-\x7a\x7c\x7e]")
_QUERY_UNSAFE = re.compile(r"[^\x21\x24-\x3b\x3d\x3f-\x7e]")


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 4.2.2)."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def generate_key() -> str:
    """A fresh random ``Sec-WebSocket-Key``."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


# ---------------------------------------------------------------------- URIs


@dataclass(frozen=True)
class WSURI:
    """A parsed ws:// or wss:// URI."""

    secure: bool
    host: str
    port: int
    resource: str
    user_info: tuple[str, str] | None = None

    @property
    def host_header(self) -> str:
        """The value of the ``Host`` header for this URI."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == (443 if self.secure else 80):
            return host
        return f"{host}:{self.port}"


def _percent_encode(text: str, unsafe: re.Pattern[str]) -> str:
    """``text`` with each ``unsafe`` character percent-encoded as UTF-8 bytes."""
    try:
        return unsafe.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8")), text)
    except UnicodeEncodeError:  # a lone surrogate
        raise InvalidURI(f"{text!r} is not valid Unicode") from None


def encode_resource(resource: str) -> str:
    """A resource as a request line may carry it, as browsers send it.

    Space, controls, DEL, non-ASCII characters (as UTF-8) and ``"#<>`{}`` in
    the path, ``"#<>`` in the query, are percent-encoded; "%" is kept as it
    is, so an encoded resource is left unchanged.
    """
    path, sep, query = resource.partition("?")
    return _percent_encode(path, _PATH_UNSAFE) + sep + _percent_encode(query, _QUERY_UNSAFE)


def _uri_host(uri: str, netloc: str, host: str) -> str:
    """The host of a URI, checked (and IDNA-encoded if it is not ASCII)."""
    if netloc.rpartition("@")[2].startswith("["):
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError:
            address = None
        if address is None or "%" in host:  # also an IPvFuture, or a zone ID
            raise InvalidURI(f"{uri!r} has an invalid IPv6 address [{host}]")
        return host
    if not host.isascii():
        # Python's idna codec (IDNA 2003) is what the socket functions use for
        # such a name: encoding it here, the Host header names the host
        # connected to. The four characters IDNA 2003 maps away but IDNA 2008
        # (browsers) keeps would name another host than a browser does.
        if any(c in _IDNA_DEVIATIONS for c in host):
            raise InvalidURI(
                f"{uri!r} has a host name that IDNA 2003 and 2008 encode differently; "
                "give its xn-- (punycode) form"
            )
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidURI(f"{uri!r} has an invalid international host name: {exc}") from None
    if not _URI_HOST.fullmatch(host):
        raise InvalidURI(f"{uri!r} has an invalid host {host!r}")
    return host


def parse_uri(uri: str) -> WSURI:
    """Parse a WebSocket URI; raises :class:`InvalidURI` with the reason.

    A non-ASCII host name is IDNA-encoded; the path and query are
    percent-encoded where a request line may not carry them as they are
    (``ws://h/a b`` has the resource ``/a%20b``, ``ws://h/é`` ``/%C3%A9``).
    """
    try:
        parts = urlsplit(uri)
        port_value = parts.port
    except ValueError as exc:
        raise InvalidURI(f"{uri!r} is not a valid URI: {exc}") from None
    if parts.scheme not in ("ws", "wss"):
        raise InvalidURI(f"{uri!r} is not a WebSocket URI: the scheme must be ws or wss")
    if not parts.hostname:
        raise InvalidURI(f"{uri!r} has no host")
    if parts.fragment:
        raise InvalidURI(f"{uri!r} has a fragment (#...); WebSocket URIs may not (use %23)")
    host = _uri_host(uri, parts.netloc, parts.hostname)
    secure = parts.scheme == "wss"
    port = port_value if port_value is not None else (443 if secure else 80)
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    resource = encode_resource(resource)
    user_info = None
    if parts.username is not None:
        user_info = (unquote(parts.username), unquote(parts.password or ""))
        try:
            ":".join(user_info).encode("utf-8")  # as build_request encodes it
        except UnicodeEncodeError:  # a lone surrogate
            raise InvalidURI(f"{uri!r} has an invalid user name or password") from None
    return WSURI(secure, host, port, resource, user_info)


# ------------------------------------------------------------- server side


def _has_token(values: Sequence[str], token: str) -> bool:
    """Whether the comma-separated ``values`` hold ``token`` (case-insensitively)."""
    return any(item.lower() == token for item in parse_token_list(values, strict=False))


def check_request(request: Request) -> str:
    """Validate a WebSocket upgrade request; return its ``Sec-WebSocket-Key``.

    Raises :class:`HandshakeRejected` with the status and reason to answer.
    """
    if request.version < (1, 1):  # RFC 6455 4.1: HTTP/1.1 or higher
        raise HandshakeRejected(505, "a WebSocket handshake needs HTTP/1.1")
    if request.method != "GET":
        raise HandshakeRejected(405, "a WebSocket handshake must use GET", [("Allow", "GET")])
    # The headers' own index, read without copying: this runs for every handshake.
    headers = request.headers
    index = headers._index or headers._lookup()
    hosts = index.get("host", ())
    if len(hosts) != 1 or not hosts[0]:
        raise HandshakeRejected(400, "missing Host header" if not hosts else "invalid Host header")
    upgrade = index.get("upgrade", ())
    if not (upgrade == ["websocket"] or _has_token(upgrade, "websocket")):
        raise HandshakeRejected(
            426,
            "this is a WebSocket endpoint: the request needs 'Upgrade: websocket'",
            [("Upgrade", "websocket"), ("Connection", "Upgrade")],
        )
    connection = index.get("connection", ())
    if not (connection == ["Upgrade"] or _has_token(connection, "upgrade")):
        raise HandshakeRejected(400, "the Connection header must contain 'Upgrade'")
    versions = index.get("sec-websocket-version")
    if versions != ["13"]:
        raise HandshakeRejected(
            426,
            "unsupported Sec-WebSocket-Version (only 13 is supported)"
            if versions
            else "missing Sec-WebSocket-Version header",
            [("Sec-WebSocket-Version", "13")],
        )
    keys = index.get("sec-websocket-key", ())
    if len(keys) != 1:
        raise HandshakeRejected(
            400, "missing Sec-WebSocket-Key header" if not keys else "more than one Sec-WebSocket-Key"
        )
    key = keys[0]
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raw = b""
    if len(raw) != 16:
        raise HandshakeRejected(400, "Sec-WebSocket-Key must be 16 bytes in base64")
    try:
        request.subprotocols  # noqa: B018 - validates the header syntax
    except NegotiationError as exc:
        raise HandshakeRejected(400, str(exc)) from None
    return key


def accept_response(
    key: str,
    subprotocol: str | None = None,
    extensions: str | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> Response:
    """The 101 response for a validated request."""
    headers = Headers(
        [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept_key(key))]
    )
    if subprotocol is not None:
        headers.add("Sec-WebSocket-Protocol", subprotocol)
    if extensions:
        headers.add("Sec-WebSocket-Extensions", extensions)
    for name, value in extra_headers:
        headers.add(name, value)
    return Response(101, headers=headers)


def reject_response(
    status: int,
    body: str | bytes = "",
    headers: Iterable[tuple[str, str]] = (),
    content_type: str = "text/plain; charset=utf-8",
) -> Response:
    """A complete rejection response with a body and ``Connection: close``."""
    data = body.encode("utf-8") if isinstance(body, str) else body
    if not data:
        data = f"{status} {REASON_PHRASES.get(status, '')}\n".encode()
    hdrs = Headers(list(headers))
    if "Content-Type" not in hdrs:
        hdrs.add("Content-Type", content_type)
    hdrs.add("Content-Length", str(len(data)))
    hdrs.add("Connection", "close")
    return Response(status, headers=hdrs, body=data)


# ------------------------------------------------------------- client side


def make_request(
    uri: WSURI,
    key: str,
    *,
    subprotocols: Iterable[str] = (),
    extensions: str | None = None,
    origin: str | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
    user_agent: str | None = None,
) -> Request:
    """The client's upgrade request for ``uri`` (RFC 6455 4.1).

    The values are taken as they are: :class:`~wsline.protocol.client.ClientOptions`
    checks subprotocol names and headers once, when a client is configured.
    Serialize it with :func:`~wsline.protocol.http11.serialize_request`.
    """
    headers = Headers(
        [
            ("Host", uri.host_header),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Version", "13"),
        ]
    )
    protocols = ", ".join(subprotocols)
    if protocols:
        headers.add("Sec-WebSocket-Protocol", protocols)
    if extensions:
        headers.add("Sec-WebSocket-Extensions", extensions)
    if origin is not None:
        headers.add("Origin", origin)
    if uri.user_info is not None:
        token = base64.b64encode(":".join(uri.user_info).encode("utf-8")).decode("ascii")
        headers.add("Authorization", f"Basic {token}")
    if user_agent:
        headers.add("User-Agent", user_agent)
    for name, value in extra_headers:
        headers.add(name, value)
    return Request("GET", encode_resource(uri.resource), headers)


def check_response(response: Response, key: str, subprotocols: Iterable[str] = ()) -> str | None:
    """Validate a 101 response; return the subprotocol the server chose.

    The caller handles statuses other than 101 (see :class:`~wsline.errors.InvalidStatus`).
    """
    headers = response.headers
    upgrade = parse_token_list(headers.get_all("Upgrade"), strict=False)
    if not any(u.lower() == "websocket" for u in upgrade):
        raise InvalidHandshake("the server's 101 response lacks 'Upgrade: websocket'")
    connection = parse_token_list(headers.get_all("Connection"), strict=False)
    if not any(c.lower() == "upgrade" for c in connection):
        raise InvalidHandshake("the server's 101 response lacks 'Connection: Upgrade'")
    accepts = headers.get_all("Sec-WebSocket-Accept")
    if len(accepts) != 1 or accepts[0] != accept_key(key):
        raise InvalidHandshake("the server's Sec-WebSocket-Accept does not match our key")
    chosen = parse_token_list(headers.get_all("Sec-WebSocket-Protocol"))
    if not chosen:
        return None
    offered = list(subprotocols)
    if len(chosen) > 1:
        raise NegotiationError(f"the server chose several subprotocols: {', '.join(chosen)}")
    if chosen[0] not in offered:
        raise NegotiationError(
            f"the server chose subprotocol {chosen[0]!r}, which we did not offer"
            + (f" (offered: {', '.join(offered)})" if offered else "")
        )
    return chosen[0]
