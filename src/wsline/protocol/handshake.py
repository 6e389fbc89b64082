"""The opening handshake (RFC 6455 4) and the bits of HTTP/1.1 it needs, without I/O."""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import HandshakeRejected, InvalidHandshake, InvalidURI, NegotiationError

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
    "build_request",
    "build_response",
    "accept_response",
    "reject_response",
    "check_response",
    "parse_token_list",
    "generate_key",
    "REASON_PHRASES",
    "decode_chunked",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

REASON_PHRASES: dict[int, str] = {
    101: "Switching Protocols",
    200: "OK",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    426: "Upgrade Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN_S = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE_BAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_REQUEST_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP/(\d)\.(\d)")
_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) (\d{3})(?: ([^\r\n]*))?")

# Request targets (RFC 9112 3.2). The characters are checked liberally: any
# visible ASCII character but "#" (clients send "|", "{", "^" and the like
# unescaped); controls, space, DEL and non-ASCII bytes are refused.
_TARGET_BAD = re.compile(r"[^\x21\x22\x24-\x7e]")
#: The scheme and "://" that start an absolute-form target (RFC 3986 3.1).
_ABSOLUTE_FORM = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*)://")
_ABSOLUTE_SCHEMES = frozenset({"http", "https", "ws", "wss"})
#: The authority of an absolute-form target: an IP literal or a reg-name, and a port.
_AUTHORITY = re.compile(r"(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9\-._~!$&'()*+,;=%]+))(?::[0-9]*)?")
#: A host in a ws:// URI once IDNA-encoded: RFC 3986 reg-name characters, no "%".
_URI_HOST = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=]+")
_IDNA_DEVIATIONS = frozenset("\u00df\u03c2\u200c\u200d")  # UTS 46 deviation characters
# What build_request percent-encodes (the WHATWG URL path and query
# percent-encode sets, plus "#"): controls, space, DEL, non-ASCII and a few
# delimiters. Everything else is kept, "%" and existing %XX escapes included.
_PATH_UNSAFE = re.compile(r"[^\x21\x24-\x3b\x3d\x3f-\x5f\x61-\x7a\x7c\x7e]")
_QUERY_UNSAFE = re.compile(r"[^\x21\x24-\x3b\x3d\x3f-\x7e]")


class Headers:
    """HTTP headers: ordered, repeatable, case-insensitive names."""

    __slots__ = ("_index", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] | Mapping[str, str] = ()) -> None:
        if isinstance(items, Mapping):
            items = items.items()
        self._items: list[tuple[str, str]] = list(items)
        # Lower-cased name -> values, built on the first lookup (a handshake
        # looks up a dozen names: one pass instead of one scan per name).
        self._index: dict[str, list[str]] | None = None

    def _lookup(self) -> dict[str, list[str]]:
        index: dict[str, list[str]] = {}
        for key, value in self._items:
            lname = key.lower()
            values = index.get(lname)
            if values is None:
                index[lname] = [value]
            else:
                values.append(value)
        self._index = index
        return index

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        values = (self._index or self._lookup()).get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        return list((self._index or self._lookup()).get(name.lower(), ()))

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def add(self, name: str, value: str) -> None:
        """Append a header line."""
        self._items.append((name, value))
        self._index = None

    def items(self) -> list[tuple[str, str]]:
        """All (name, value) pairs in order."""
        return list(self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def encode(self) -> bytes:
        """Serialize as header lines, each ending with CRLF."""
        return "".join(f"{k}: {v}\r\n" for k, v in self._items).encode("latin-1")


@dataclass
class Request:
    """An HTTP request head (the WebSocket upgrade request, or a plain request)."""

    method: str
    target: str
    headers: Headers
    version: tuple[int, int] = (1, 1)
    #: The request body (plain HTTP requests; empty for upgrades).
    body: bytes = b""
    #: The client's address as the socket gives it (set by the server).
    remote_address: Any = None

    @property
    def path(self) -> str:
        """The path of the target, percent-decoded."""
        return unquote(self.target.split("?", 1)[0])

    @property
    def query_string(self) -> str:
        """The raw query string (after ``?``), or ``""``."""
        parts = self.target.split("?", 1)
        return parts[1] if len(parts) == 2 else ""

    @property
    def query(self) -> dict[str, str]:
        """Query parameters, decoded; the first value wins for repeated names."""
        result: dict[str, str] = {}
        for key, value in parse_qsl(self.query_string, keep_blank_values=True):
            result.setdefault(key, value)
        return result

    @property
    def origin(self) -> str | None:
        """The ``Origin`` header (browsers send it; other clients usually do not)."""
        return self.headers.get("Origin")

    @property
    def host(self) -> str | None:
        """The ``Host`` header."""
        return self.headers.get("Host")

    @property
    def subprotocols(self) -> list[str]:
        """The subprotocols the client offered, in its order of preference."""
        return parse_token_list(self.headers.get_all("Sec-WebSocket-Protocol"))

    @property
    def is_upgrade(self) -> bool:
        """Whether this asks to upgrade to WebSocket."""
        upgrade = parse_token_list(self.headers.get_all("Upgrade"), strict=False)
        return any(u.lower() == "websocket" for u in upgrade)


@dataclass
class Response:
    """An HTTP response (head and, for rejections, a body)."""

    status: int
    reason: str = ""
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def __post_init__(self) -> None:
        if not self.reason:
            self.reason = REASON_PHRASES.get(self.status, "")


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 4.2.2)."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def generate_key() -> str:
    """A fresh random ``Sec-WebSocket-Key``."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def parse_token_list(values: Iterable[str], strict: bool = True) -> list[str]:
    """Split comma-separated header values into tokens (empty elements are skipped).

    With ``strict``, an element that is not an RFC 7230 token raises
    :class:`NegotiationError`.
    """
    out: list[str] = []
    for value in values:
        for item in value.split(","):
            item = item.strip(" \t")
            if not item:
                continue
            if strict and not _TOKEN_S.fullmatch(item):
                raise NegotiationError(f"invalid token {item!r} in header value {value!r}")
            out.append(item)
    return out


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


def _encode_resource(resource: str) -> str:
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
    resource = _encode_resource(resource)
    user_info = None
    if parts.username is not None:
        user_info = (unquote(parts.username), unquote(parts.password or ""))
        try:
            ":".join(user_info).encode("utf-8")  # as build_request encodes it
        except UnicodeEncodeError:  # a lone surrogate
            raise InvalidURI(f"{uri!r} has an invalid user name or password") from None
    return WSURI(secure, host, port, resource, user_info)


# ---------------------------------------------------------------- HTTP parsing


def _parse_header_lines(lines: list[bytes], max_count: int) -> Headers:
    lines = [line for line in lines if line]
    if len(lines) > max_count:
        raise HandshakeRejected(431, f"more than {max_count} header lines")
    items: list[tuple[str, str]] = []
    for line in lines:
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            raise HandshakeRejected(400, "obsolete line folding in headers is not allowed")
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):
            raise HandshakeRejected(400, f"malformed header line {line[:80]!r}")
        value = value.strip(b" \t")
        if _VALUE_BAD.search(value):
            raise HandshakeRejected(400, f"invalid character in header {name.decode()!r}")
        items.append((name.decode("ascii"), value.decode("latin-1")))
    return Headers(items)


def parse_request(head: bytes, max_headers: int = 128) -> Request:
    """Parse a request head (everything before the blank line, CRLFs included).

    Raises :class:`HandshakeRejected` with the status to answer.
    """
    lines = head.split(b"\r\n")
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        raise HandshakeRejected(400, f"malformed request line {lines[0][:80]!r}")
    method, target, major, minor = match.groups()
    version = (int(major), int(minor))
    if version < (1, 1) or major != b"1":
        raise HandshakeRejected(505, f"HTTP/{major.decode()}.{minor.decode()} is not supported; use HTTP/1.1")
    try:
        target_s = target.decode("ascii")
    except UnicodeDecodeError:
        raise HandshakeRejected(400, "non-ASCII request target") from None
    method_s = method.decode("ascii")
    target_s = _request_target(method_s, target_s)
    headers = _parse_header_lines(lines[1:], max_headers)
    return Request(method_s, target_s, headers, version)


def _request_target(method: str, target: str) -> str:
    """Check a request target (RFC 9112 3.2); return it in origin-form (or ``*``).

    * origin-form (``/path?query``) is kept exactly;
    * absolute-form (``http://host/path?query``; http, https, ws or wss)
      gives its path and query, exactly, or ``/`` for an empty path;
    * asterisk-form (``*``) is only for OPTIONS;
    * authority-form (``host:port``) is only for CONNECT, for proxies, which
      this is not: 400, like any other target.
    """
    bad = _TARGET_BAD.search(target)
    if bad is not None:
        raise HandshakeRejected(400, f"invalid character {bad.group()!r} in the request target")
    if target.startswith("/"):
        return target
    if target == "*":
        if method != "OPTIONS":
            raise HandshakeRejected(400, "the request target * is only for OPTIONS")
        return target
    absolute = _ABSOLUTE_FORM.match(target)
    if absolute is None:
        if method == "CONNECT":
            raise HandshakeRejected(400, "CONNECT is for proxies, and this server is not one")
        raise HandshakeRejected(400, f"invalid request target {target[:80]!r}")
    scheme = absolute.group(1).lower()
    if scheme not in _ABSOLUTE_SCHEMES:
        raise HandshakeRejected(400, f"unsupported scheme {scheme[:20]!r} in the request target")
    rest = target[absolute.end() :]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, rest = rest[:cut], rest[cut:]
    host = _AUTHORITY.fullmatch(authority)
    if host is None or (host.group(1) is not None and not _is_ipv6(host.group(1))):
        raise HandshakeRejected(400, f"invalid host in the request target {target[:80]!r}")
    return rest if rest.startswith("/") else "/" + rest


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def parse_response(head: bytes, max_headers: int = 128) -> Response:
    """Parse a response head; raises :class:`InvalidHandshake` if malformed."""
    lines = head.split(b"\r\n")
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None:
        raise InvalidHandshake(f"malformed HTTP status line from the server: {lines[0][:80]!r}")
    _major, _minor, status, reason = match.groups()
    try:
        headers = _parse_header_lines(lines[1:], max_headers)
    except HandshakeRejected as exc:
        raise InvalidHandshake(f"malformed HTTP response from the server: {exc.reason}") from None
    return Response(int(status), (reason or b"").decode("latin-1"), headers)


# ------------------------------------------------------------- server side


def check_request(request: Request) -> str:
    """Validate a WebSocket upgrade request; return its ``Sec-WebSocket-Key``.

    Raises :class:`HandshakeRejected` with the status and reason to answer.
    """
    headers = request.headers
    if request.method != "GET":
        raise HandshakeRejected(405, "a WebSocket handshake must use GET", [("Allow", "GET")])
    hosts = headers.get_all("Host")
    if len(hosts) != 1 or not hosts[0]:
        raise HandshakeRejected(400, "missing Host header" if not hosts else "invalid Host header")
    upgrade = parse_token_list(headers.get_all("Upgrade"), strict=False)
    if not any(u.lower() == "websocket" for u in upgrade):
        raise HandshakeRejected(
            426,
            "this is a WebSocket endpoint: the request needs 'Upgrade: websocket'",
            [("Upgrade", "websocket"), ("Connection", "Upgrade")],
        )
    connection = parse_token_list(headers.get_all("Connection"), strict=False)
    if not any(c.lower() == "upgrade" for c in connection):
        raise HandshakeRejected(400, "the Connection header must contain 'Upgrade'")
    versions = headers.get_all("Sec-WebSocket-Version")
    if versions != ["13"]:
        raise HandshakeRejected(
            426,
            "unsupported Sec-WebSocket-Version (only 13 is supported)"
            if versions
            else "missing Sec-WebSocket-Version header",
            [("Sec-WebSocket-Version", "13")],
        )
    keys = headers.get_all("Sec-WebSocket-Key")
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


def build_response(response: Response) -> bytes:
    """Serialize a response (head and body)."""
    head = f"HTTP/1.1 {response.status} {response.reason}\r\n".encode("latin-1")
    return head + response.headers.encode() + b"\r\n" + response.body


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


def build_request(
    uri: WSURI,
    key: str,
    *,
    subprotocols: Iterable[str] = (),
    extensions: str | None = None,
    origin: str | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
    user_agent: str | None = None,
) -> bytes:
    """Serialize the client's upgrade request."""
    headers = Headers(
        [
            ("Host", uri.host_header),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Version", "13"),
        ]
    )
    protocols = list(subprotocols)
    for p in protocols:
        if not _TOKEN_S.fullmatch(p):
            raise ValueError(f"invalid subprotocol name {p!r}")
    if protocols:
        headers.add("Sec-WebSocket-Protocol", ", ".join(protocols))
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
        if not _TOKEN_S.fullmatch(name) or _VALUE_BAD.search(value.encode("latin-1")):
            raise ValueError(f"invalid header {name!r}: {value!r}")
        headers.add(name, value)
    target = _encode_resource(uri.resource)
    return f"GET {target} HTTP/1.1\r\n".encode("ascii") + headers.encode() + b"\r\n"


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


def decode_chunked(data: bytes | bytearray, partial: bool = False) -> bytes | None:
    """Decode a chunked HTTP body (a rejection's body, for error messages).

    Returns ``None`` while the body is incomplete, unless ``partial`` asks for
    what has arrived so far; a malformed body yields what was decoded.
    """
    body = bytearray()
    pos = 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            break
        size_text = bytes(data[pos:end]).split(b";", 1)[0].strip()
        if not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", size_text):
            return bytes(body)
        size = int(size_text, 16)
        if size == 0:
            return bytes(body)
        start = end + 2
        if len(data) < start + size:
            if partial:
                body += data[start:]
            break
        body += data[start : start + size]
        pos = start + size + 2
    return bytes(body) if partial else None
