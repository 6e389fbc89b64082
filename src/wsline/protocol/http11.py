"""HTTP/1.1 messages (RFC 9112) without I/O: the one HTTP parser of the package.

The data types (:class:`Headers`, :class:`Request`, :class:`Response`), the
whole-head parsers (:func:`parse_request`, :func:`parse_response`) and two
incremental parsers that also frame the bodies: :class:`RequestParser` for a
server, :class:`ResponseParser` for a client (and for a proxy's answer to
``CONNECT``). An I/O layer feeds them bytes and takes events::

    parser = RequestParser(Limits(max_body=65536))
    parser.feed(data)
    while True:
        event = parser.next_event()
        if event is NEED_DATA:        # read more (and feed it), or feed_eof()
            break
        if event is PAUSED:           # a message is complete: answer it, then start_next()
            break
        if event is CLOSED:           # the peer closed the connection between messages
            break
        ...                           # Request / Response, then Data..., then EndOfMessage

Each message is its head (the :class:`Request` or :class:`Response` itself, with
an empty ``body``), zero or more :class:`Data` events as the body arrives, then
:class:`EndOfMessage` (with the trailer fields of a chunked body). After the
``EndOfMessage`` the parser returns :data:`PAUSED` until :meth:`~RequestParser.start_next`:
pipelined messages come out one at a time, in order, and what arrives meanwhile is
buffered (:attr:`~RequestParser.buffered` says how much, for the I/O layer to stop
reading). When the connection switches protocols (a WebSocket upgrade, a 101
response, a tunnel), :meth:`~RequestParser.trailing_data` hands over the bytes that
came after the message.

Errors raise :class:`~wsline.errors.HandshakeRejected` (requests: the status to
answer with) or :class:`~wsline.errors.InvalidHandshake` (responses); after one, the
parser is dead: every later call raises the same exception.

Deliberate strictness (each a smuggling or desynchronisation hole otherwise):

* Lines end with CRLF, in the head, in chunk lines and in trailers. A bare LF or a
  bare CR anywhere there is an error (RFC 9112 2.2 lets a recipient accept a bare
  LF; we do not, so that no two parsers on a path disagree on where a line ends).
* No whitespace between a field name and its colon, no obsolete line folding, no
  control characters in a field value (HTAB but), no whitespace in a chunk size.
* An HTTP/1.1 request needs exactly one Host field, and its value must be a valid,
  non-empty authority (RFC 9112 3.2 would allow an empty one when the target has
  no authority; we never need it). With an absolute-form target the target's
  authority replaces the Host value the application sees (RFC 9112 3.2.2).
* Content-Length is 1 to 18 digits; repeated values (several fields or a list) are
  accepted only when they are all the same number (RFC 9110 8.6).
* A request's Transfer-Encoding must end with ``chunked``, once; another coding
  before it is 501 (we decode none), and Transfer-Encoding with Content-Length is
  framed by the Transfer-Encoding, with ``keep_alive`` off (RFC 9112 6.1).

What is tolerated: up to :data:`MAX_EMPTY_LINES` empty lines (CRLF) before a
request line (RFC 9112 2.2: a client may send one after a body); empty elements in
the Transfer-Encoding and Connection lists; HTTP/1.0 requests (the WebSocket
handshake check requires 1.1 elsewhere) and any HTTP/1.x minor version.

Interim responses (1xx other than 101) come out as a :class:`Response` of their
own, with no body and no ``EndOfMessage``; the next event is the next response's
head. A response's framing errors (a bad Content-Length or Transfer-Encoding, a
body above ``max_body``) are raised by the call after the one that returned the
:class:`Response`, so that a client still learns the status the server sent.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections import abc, deque
from dataclasses import dataclass, field
from typing import Any, Final, Generic, Iterable, Iterator, Mapping, NoReturn, TypeVar, Union
from urllib.parse import parse_qsl, unquote

from ..errors import HandshakeRejected, InvalidHandshake, NegotiationError

__all__ = [
    "CLOSED",
    "MAX_EMPTY_LINES",
    "NEED_DATA",
    "PAUSED",
    "REASON_PHRASES",
    "Data",
    "EndOfMessage",
    "Headers",
    "Limits",
    "Request",
    "RequestEvent",
    "RequestParser",
    "Response",
    "ResponseEvent",
    "ResponseParser",
    "Sentinel",
    "build_response",
    "serialize_request",
    "parse_request",
    "parse_response",
    "parse_token_list",
]

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

#: How many empty lines (CRLF) may come before a request line (RFC 9112 2.2).
MAX_EMPTY_LINES = 128

# ------------------------------------------------------------------ grammar
# The heads are decoded as latin-1 (one byte, one character), so the patterns
# below work on str and obs-text (0x80-0xFF) is U+0080-U+00FF.

_TCHAR = r"!#$%&'*+\-.^_`|~0-9A-Za-z"  # RFC 9110 5.6.2
_VCHAR = r"\x21-\x7e\x80-\xff"  # field-vchar: VCHAR / obs-text
_TOKEN_S = re.compile(f"[{_TCHAR}]+")
_TCHAR_BYTES = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
#: What may not be in a field value (as bytes): controls but HTAB, and DEL.
_VALUE_BAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_REQUEST_LINE = re.compile(f"([{_TCHAR}]+) ([^ ]+) HTTP/([0-9])\\.([0-9])")
# status-line = HTTP-version SP status-code SP [ reason-phrase ]; the second SP
# is optional here (servers send "HTTP/1.1 101" too).
_STATUS_LINE = re.compile(r"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: ([\t \x21-\x7e\x80-\xff]*))?")
# field-line = field-name ":" OWS field-value OWS, then CRLF. The value starts and
# ends with a field-vchar, so the OWS around it stays out of the group. Anchored
# after a CRLF: findall over a header section finds one match per valid line, and
# only whole lines (a CR or LF is in no group, so a bare one breaks its line).
_FIELD_VALUE = f"((?:[{_VCHAR}](?:[\\t {_VCHAR}]*[{_VCHAR}])?)?)"
_FIELD_LINES = re.compile(f"(?<=\\r\\n)([{_TCHAR}]+):[ \\t]*{_FIELD_VALUE}[ \\t]*\\r\\n")
_FIELD_LINE = re.compile(f"([{_TCHAR}]+):[ \\t]*{_FIELD_VALUE}[ \\t]*")
#: A bare CR (not before LF) or a bare LF (not after CR).
_BARE_CR_LF = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_DIGITS = re.compile(r"[0-9]{1,18}")
# chunk = chunk-size [ chunk-ext ] CRLF (RFC 9112 7.1.1), where
# chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ),
# chunk-ext-val = token / quoted-string. At most 16 hex digits.
_TOKEN_B = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED_B = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_CHUNK_SIZE_LINE = re.compile(
    rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[ \t]*"
    + _TOKEN_B
    + rb"(?:[ \t]*=[ \t]*(?:"
    + _TOKEN_B
    + rb"|"
    + _QUOTED_B
    + rb"))?)*"
)

# Request targets (RFC 9112 3.2). The characters are checked liberally: any
# visible ASCII character but "#" (clients send "|", "{", "^" and the like
# unescaped); controls, space, DEL and non-ASCII bytes are refused.
_TARGET_BAD = re.compile(r"[^\x21\x22\x24-\x7e]")
#: The scheme and "://" that start an absolute-form target (RFC 3986 3.1).
_ABSOLUTE_FORM = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*)://")
_ABSOLUTE_SCHEMES = frozenset({"http", "https", "ws", "wss"})
#: An authority (a target's, or a Host value): an IP literal or a reg-name, and a port.
_AUTHORITY = re.compile(r"(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9\-._~!$&'()*+,;=%]+))(?::[0-9]*)?")


# ------------------------------------------------------------------ data types


class Headers:
    """HTTP headers: ordered, repeatable, case-insensitive names.

    ``items`` are ``(name, value)`` pairs, or a mapping. ``headers[name]`` and
    :meth:`get` give the first value of a name, :meth:`get_all` every value;
    iterating gives the pairs in order.
    """

    __slots__ = ("_index", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] | Mapping[str, str] = ()) -> None:
        # A list or tuple of pairs (what the parser and the handshake pass) skips
        # the Mapping check, an ABC check that costs more than the copy.
        if type(items) is not list and type(items) is not tuple and isinstance(items, abc.Mapping):
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


@dataclass
class Request:
    """An HTTP request head (the WebSocket upgrade request, or a plain request)."""

    #: The method: ``"GET"`` for an upgrade.
    method: str
    #: The request target as sent: the path and the query string (``/chat?token=...``).
    target: str
    #: The header fields.
    headers: Headers
    #: The HTTP version, ``(1, 1)``.
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
    """An HTTP response (head and, for rejections, a body).

    The server adds ``Content-Length``, ``Connection: close`` where needed and
    the ``Server`` header when it sends one; :mod:`wsline.http` has helpers that
    make responses with a content type.
    """

    #: The status code.
    status: int
    #: The reason phrase (by default the standard one for ``status``).
    reason: str = ""
    #: The header fields.
    headers: Headers = field(default_factory=Headers)
    #: The body.
    body: bytes = b""

    def __post_init__(self) -> None:
        if not self.reason:
            self.reason = REASON_PHRASES.get(self.status, "")


def build_response(response: Response) -> bytes:
    """Serialize a response (head and body)."""
    head = f"HTTP/1.1 {response.status} {response.reason}\r\n".encode("latin-1")
    return head + response.headers.encode() + b"\r\n" + response.body


def serialize_request(request: Request) -> bytes:
    """The bytes of a request: its line, its header fields, and its body."""
    major, minor = request.version
    line = f"{request.method} {request.target} HTTP/{major}.{minor}\r\n".encode("ascii")
    return line + request.headers.encode() + b"\r\n" + request.body


# ------------------------------------------------------------------ events


class Sentinel(enum.Enum):
    """The events that are not part of a message."""

    #: Feed more bytes (or :meth:`~RequestParser.feed_eof`).
    NEED_DATA = "NEED_DATA"
    #: A message is complete; call :meth:`~RequestParser.start_next` for the next one.
    PAUSED = "PAUSED"
    #: The peer closed the connection cleanly, between two messages.
    CLOSED = "CLOSED"

    def __repr__(self) -> str:
        return self.value


NEED_DATA: Final = Sentinel.NEED_DATA
PAUSED: Final = Sentinel.PAUSED
CLOSED: Final = Sentinel.CLOSED


@dataclass(frozen=True, slots=True)
class Data:
    """A piece of a message body, as it arrived."""

    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    """The end of a message; ``trailers`` are a chunked body's trailer fields."""

    trailers: Headers = field(default_factory=Headers)


RequestEvent = Union[Request, Data, EndOfMessage, Sentinel]
ResponseEvent = Union[Response, Data, EndOfMessage, Sentinel]


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits of a parser, in bytes (``max_headers`` is a count).

    * ``max_head``: the request or status line and the header fields, the final
      empty line included (431 beyond, as soon as that many bytes came without an
      end of head);
    * ``max_headers``: header (and trailer) field lines (431 beyond);
    * ``max_body``: a body, Content-Length or chunked (413 beyond, before any of
      it is read; for a chunked body as soon as a chunk size says so);
    * ``max_chunk_line``: a chunk size line, extensions included, without its CRLF (400);
    * ``max_trailers``: the trailer section of a chunked body, its final empty line
      included (431).
    """

    max_head: int = 16384
    max_headers: int = 128
    max_body: int = 2**20
    max_chunk_line: int = 1024
    max_trailers: int = 16384

    def __post_init__(self) -> None:
        for name in ("max_head", "max_headers", "max_body", "max_chunk_line", "max_trailers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, not {value!r}")


# ------------------------------------------------------------------ whole heads


def _head_text(head: bytes) -> tuple[str, int]:
    """``head`` decoded, and where its header section ends (after a CRLF).

    ``head`` may end with the CRLF of its last line, with the empty line too, or
    with neither (as an I/O layer that cut the CRLFCRLF away gives it).
    """
    text = head.decode("latin-1")
    if text.endswith("\r\n\r\n"):
        return text, len(text) - 2
    if text.endswith("\r\n"):
        return text, len(text)
    text += "\r\n"
    return text, len(text)


def _parse_fields(text: str, start: int, end: int, max_count: int) -> list[tuple[str, str]]:
    """The field lines of ``text[start:end]`` (each ending with CRLF, ``start`` just after one).

    Raises :class:`HandshakeRejected` (400, or 431 for more than ``max_count``).
    """
    count = text.count("\n", start, end)  # a bare LF is a line too, which findall will not match
    if count > max_count:
        raise HandshakeRejected(431, f"more than {max_count} header lines")
    if not count:
        return []
    fields: list[tuple[str, str]] = _FIELD_LINES.findall(text, start, end)
    if len(fields) != count:
        _field_error(text[start:end])
    return fields


def _field_error(section: str) -> NoReturn:
    """Raise the 400 for the first invalid line of a header section."""
    for line in section.split("\r\n")[:-1]:
        if _FIELD_LINE.fullmatch(line):
            continue
        if "\r" in line or "\n" in line:
            raise HandshakeRejected(400, "bare CR or LF in the header section (lines end with CRLF)")
        if not line:
            raise HandshakeRejected(400, "empty line inside the header section")
        if line[0] in " \t":
            raise HandshakeRejected(400, "obsolete line folding in headers is not allowed")
        name, sep, _value = line.partition(":")
        if sep and name.rstrip(" \t") != name and _TOKEN_S.fullmatch(name.rstrip(" \t")):
            raise HandshakeRejected(
                400, f"whitespace between the header name {name.rstrip()!r} and the colon"
            )
        if not sep or not _TOKEN_S.fullmatch(name):
            raise HandshakeRejected(400, f"malformed header line {line[:80]!r}")
        raise HandshakeRejected(400, f"invalid character in header {name!r}")
    raise HandshakeRejected(400, "malformed header section")  # pragma: no cover - a line fails above


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _valid_authority(text: str) -> bool:
    match = _AUTHORITY.fullmatch(text)
    return match is not None and (match.group(1) is None or _is_ipv6(match.group(1)))


def _request_target(method: str, target: str) -> tuple[str, str | None]:
    """Check a request target (RFC 9112 3.2): its origin-form (or ``*``) and authority.

    * origin-form (``/path?query``) is kept exactly;
    * absolute-form (``http://host/path?query``; http, https, ws or wss)
      gives its path and query, exactly, or ``/`` for an empty path, and its
      authority (``host:port``, which then stands for the Host header);
    * asterisk-form (``*``) is only for OPTIONS;
    * authority-form (``host:port``) is only for CONNECT, for proxies, which
      this is not: 400, like any other target.
    """
    bad = _TARGET_BAD.search(target)
    if bad is not None:
        raise HandshakeRejected(400, f"invalid character {bad.group()!r} in the request target")
    if target.startswith("/"):
        return target, None
    if target == "*":
        if method != "OPTIONS":
            raise HandshakeRejected(400, "the request target * is only for OPTIONS")
        return target, None
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
    if not _valid_authority(authority):
        raise HandshakeRejected(400, f"invalid host in the request target {target[:80]!r}")
    return (rest if rest.startswith("/") else "/" + rest), authority


def _parse_request_head(text: str, end: int, max_headers: int) -> Request:
    """The request whose head is ``text[:end]`` (lines ending with CRLF, no empty line).

    No pattern takes a CR or an LF in (the target's check refuses them), so a bare
    one fails the line it is in.
    """
    line_end = text.find("\r\n", 0, end)
    match = _REQUEST_LINE.fullmatch(text, 0, line_end)
    if match is None:
        line = text[:line_end]
        if "\r" in line or "\n" in line:
            raise HandshakeRejected(400, "bare CR or LF in the request line (lines end with CRLF)")
        raise HandshakeRejected(400, f"malformed request line {line[:80]!r}")
    method, target, major, minor = match.groups()
    if major != "1":
        raise HandshakeRejected(505, f"HTTP/{major}.{minor} is not supported; use HTTP/1.1")
    version = (1, int(minor))
    target, authority = _request_target(method, target)
    headers = Headers(_parse_fields(text, line_end + 2, end, max_headers))
    hosts = (headers._index or headers._lookup()).get("host")
    if hosts is None:
        if version >= (1, 1):
            raise HandshakeRejected(400, "missing Host header")
    elif len(hosts) > 1:
        raise HandshakeRejected(400, "more than one Host header")
    elif not hosts[0]:
        raise HandshakeRejected(400, "empty Host header")
    elif not _valid_authority(hosts[0]):
        raise HandshakeRejected(400, f"invalid Host header {hosts[0][:80]!r}")
    if authority is not None and (hosts is None or hosts[0] != authority):
        # RFC 9112 3.2.2: the target's authority wins over the Host header.
        items = headers._items
        for i, (name, _value) in enumerate(items):
            if name.lower() == "host":
                items[i] = (name, authority)
                break
        else:
            items.append(("Host", authority))
        headers._index = None
    return Request(method, target, headers, version)


def parse_request(head: bytes, max_headers: int = 128) -> Request:
    """Parse a request head (the request line and header lines, CRLFs included).

    The final empty line may be there or not. Checks the request line, the target
    (RFC 9112 3.2), the header lines and the Host header (RFC 9112 3.2); the body
    framing (Content-Length, Transfer-Encoding) is :class:`RequestParser`'s.
    Raises :class:`HandshakeRejected` with the status to answer.
    """
    text, end = _head_text(head)
    return _parse_request_head(text, end, max_headers)


def _parse_response_head(text: str, end: int, max_headers: int) -> Response:
    """The response whose head is ``text[:end]`` (lines ending with CRLF, no empty line)."""
    line_end = text.find("\r\n", 0, end)
    match = _STATUS_LINE.fullmatch(text, 0, line_end)
    if match is None or match.group(1) != "1" or match.group(3) < "100":
        line = text[: min(line_end, 80)].encode("latin-1")
        raise InvalidHandshake(f"malformed HTTP status line from the server: {line!r}")
    try:
        fields = _parse_fields(text, line_end + 2, end, max_headers)
    except HandshakeRejected as exc:
        raise InvalidHandshake(f"malformed HTTP response from the server: {exc.reason}") from None
    return Response(int(match.group(3)), match.group(4) or "", Headers(fields))


def parse_response(head: bytes, max_headers: int = 128) -> Response:
    """Parse a response head; raises :class:`InvalidHandshake` if malformed.

    The final empty line may be there or not. The body framing is
    :class:`ResponseParser`'s.
    """
    text, end = _head_text(head)
    return _parse_response_head(text, end, max_headers)


# ------------------------------------------------------------------ framing


def _transfer_codings(values: list[str]) -> list[str] | None:
    """The transfer codings of Transfer-Encoding values, lower-cased, or ``None`` if malformed.

    A coding with parameters keeps ``;`` at the end of its name (no coding we
    know takes any: ``chunked;x`` is malformed, ``gzip;x`` unsupported).
    """
    codings: list[str] = []
    for value in values:
        for item in value.split(","):
            item = item.strip(" \t")
            if not item:
                continue
            name, semi, _params = item.partition(";")
            name = name.rstrip(" \t")
            if not _TOKEN_S.fullmatch(name):
                return None
            codings.append(name.lower() + semi)
    return codings or None


def _content_length(values: list[str]) -> int | None:
    """The Content-Length of these values, or ``None`` if invalid or inconsistent."""
    length: int | None = None
    for value in values:
        for item in value.split(","):
            item = item.strip(" \t")
            if not _DIGITS.fullmatch(item):
                return None
            number = int(item)
            if length is not None and number != length:
                return None
            length = number
    return length


def _keep_alive(version: tuple[int, int], headers: Headers) -> bool:
    """Whether the connection persists after this message (RFC 9112 9.3)."""
    values = (headers._index or headers._lookup()).get("connection")
    if not values:
        return version >= (1, 1)
    options = {option.lower() for option in parse_token_list(values, strict=False)}
    if "close" in options:
        return False
    return version >= (1, 1) or "keep-alive" in options


# ------------------------------------------------------------------ parsers

# Parser states.
_S_HEAD = 0  # waiting for a head
_S_LENGTH = 1  # a Content-Length body: _remaining bytes to go
_S_CHUNK_LINE = 2  # a chunk size line
_S_CHUNK_DATA = 3  # chunk data: _remaining bytes to go
_S_CHUNK_END = 4  # the CRLF after chunk data
_S_TRAILERS = 5  # the trailer section (the view starts at the last chunk's CRLF)
_S_UNTIL_EOF = 6  # a response body that ends with the connection
_S_EOM = 7  # EndOfMessage is the next event
_S_DONE = 8  # paused after EndOfMessage
_S_SWITCHED = 9  # trailing_data() took the rest
_S_CLOSED = 10  # clean EOF between messages
_S_DEFERRED = 11  # a response's framing error is the next "event"
_BODY_STATES = frozenset({_S_LENGTH, _S_CHUNK_DATA, _S_UNTIL_EOF})


_M = TypeVar("_M", Request, Response)


class _Parser(Generic[_M]):
    """What RequestParser and ResponseParser share: the buffer, the body framing, EOF."""

    # The stream not yet parsed is _buf followed by _pieces (the first one from
    # offset _off). Pieces are the fed bytes objects themselves: a body that
    # arrives in large reads goes out as Data slices of them, copied at most once;
    # lines that straddle reads are gathered in _buf.
    __slots__ = (
        "_body_total",
        "_buf",
        "_checked",
        "_deferred",
        "_empty_lines",
        "_eof",
        "_error",
        "_fields",
        "_keep_alive",
        "_limits",
        "_off",
        "_pieces",
        "_remaining",
        "_scan",
        "_state",
        "_switch",
        "_trailers",
        "_version",
    )

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._buf = bytearray()
        self._pieces: deque[bytes] = deque()
        self._off = 0
        self._state = _S_HEAD
        self._eof = False
        self._error: Exception | None = None
        self._deferred: Exception | None = None
        self._switch = False
        # None: as the head's Connection header and version say (_fields, _version),
        # worked out when asked (a WebSocket upgrade never asks).
        self._keep_alive: bool | None = True
        self._fields = Headers()
        self._version = (1, 1)
        self._reset()

    def _reset(self) -> None:
        self._scan = 0  # bytes of the view searched for the end of a head or line
        self._checked = 0  # bytes of the view checked for bare CR and LF
        self._empty_lines = 0
        self._remaining = 0
        self._body_total = 0
        self._trailers: Headers | None = None

    # -- the interface

    @property
    def buffered(self) -> int:
        """How many bytes are held, not yet parsed (pause reading when it is large)."""
        return len(self._buf) + sum(map(len, self._pieces)) - self._off

    @property
    def keep_alive(self) -> bool:
        """Whether the connection may carry another message after the current one."""
        if self._error is not None:
            return False
        keep_alive = self._keep_alive
        if keep_alive is None:
            keep_alive = self._keep_alive = _keep_alive(self._version, self._fields)
        return keep_alive

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Take bytes from the peer (an empty ``data`` is nothing, not EOF)."""
        self._check_alive()
        if not data:
            return
        if self._eof:
            raise RuntimeError("feed() after feed_eof()")
        if self._buf and not self._pieces and self._state not in _BODY_STATES:
            self._buf += data
        else:
            self._pieces.append(data if type(data) is bytes else bytes(data))

    def feed_eof(self) -> None:
        """The peer closed its side: no more bytes will come."""
        self._check_alive()
        self._eof = True

    def start_next(self) -> None:
        """Go on to the next message, after the ``EndOfMessage`` (:data:`PAUSED`)."""
        self._check_alive()
        if self._state != _S_DONE:
            raise RuntimeError("start_next() is for after the EndOfMessage of a message")
        if self._switch:
            raise RuntimeError("the connection switched protocols: take trailing_data()")
        self._state = _S_HEAD
        self._keep_alive = True
        self._reset()

    def trailing_data(self) -> bytes:
        """After an ``EndOfMessage``: the bytes that followed, and the end of parsing.

        For a connection that switches protocols (a WebSocket upgrade, a 101
        response, a tunnel): those bytes are the new protocol's.
        """
        self._check_alive()
        if self._state != _S_DONE:
            raise RuntimeError("trailing_data() is for after the EndOfMessage of a message")
        self._state = _S_SWITCHED
        if not self._buf and not self._pieces:
            return b""
        data = bytes(self._buf)
        for i, piece in enumerate(self._pieces):
            data += piece[self._off :] if i == 0 else piece
        self._buf = bytearray()
        self._pieces.clear()
        self._off = 0
        return data

    def _check_alive(self) -> None:
        if self._error is not None:
            raise self._error
        if self._state == _S_SWITCHED:
            raise RuntimeError("the parser handed its data over with trailing_data()")

    # -- what the subclasses say

    _side = ""  # "request" or "response", for messages

    def _parse_head(self, text: str, end: int) -> _M:
        raise NotImplementedError

    def _exception(self, status: int, reason: str) -> Exception:
        raise NotImplementedError

    def _too_large(self, what: str, limit: int) -> str:
        raise NotImplementedError

    def _early_check(self, data: bytes | bytearray, start: int) -> None:
        """Check the start of an incomplete head (the first bytes may already be wrong)."""

    def _incomplete(self, state: int) -> Exception:
        raise NotImplementedError

    # -- errors

    def _fail(self, status: int, reason: str) -> NoReturn:
        self._raise(self._exception(status, reason))

    def _raise(self, exc: Exception) -> NoReturn:
        self._error = exc
        self._keep_alive = False
        self._buf = bytearray()
        self._pieces.clear()
        self._off = 0
        raise exc

    # -- the buffer

    def _view(self) -> tuple[bytes | bytearray, int]:
        """The unparsed stream as one object, and where in it the stream starts."""
        pieces = self._pieces
        if not pieces:
            return self._buf, 0
        if not self._buf and len(pieces) == 1:
            return pieces[0], self._off
        buf = self._buf
        first = pieces.popleft()
        buf += memoryview(first)[self._off :] if self._off else first
        for piece in pieces:
            buf += piece
        pieces.clear()
        self._off = 0
        return buf, 0

    def _consume(self, pos: int) -> None:
        """Drop the view up to ``pos`` (right after :meth:`_view`)."""
        pieces = self._pieces
        if pieces:  # the view was the one piece
            if pos >= len(pieces[0]):
                pieces.popleft()
                self._off = 0
            else:
                self._off = pos
        else:
            del self._buf[:pos]

    def _take(self, limit: int) -> bytes | None:
        """Up to ``limit`` bytes from the stream, or ``None`` if there are none."""
        buf = self._buf
        if buf:
            if len(buf) <= limit:
                out = bytes(buf)
                buf.clear()
            else:
                with memoryview(buf) as view:
                    out = view[:limit].tobytes()
                del buf[:limit]
            return out
        pieces = self._pieces
        if not pieces:
            return None
        piece, off = pieces[0], self._off
        if len(piece) - off <= limit:
            pieces.popleft()
            self._off = 0
            return piece[off:] if off else piece
        self._off = off + limit
        return piece[off : off + limit]

    def _find_section_end(
        self, data: bytes | bytearray, start: int, limit: int, what: str, lead: int = 0
    ) -> int:
        """Where the CRLFCRLF ending a head or trailer section at ``start`` is, or -1.

        ``limit`` bytes at most, CRLFCRLF included, after ``lead`` bytes at
        ``start`` (the CRLF before a trailer section); beyond, a 431. An incomplete
        section is checked for bare CR and LF.
        """
        end = data.find(b"\r\n\r\n", start + self._scan, start + lead + limit)
        if end >= 0:
            return end
        size = len(data) - start
        if size >= lead + limit:
            self._fail(431, self._too_large(what, limit))
        endpos = len(data) - 1 if data[-1] == 13 else len(data)  # a last CR may come before an LF
        if endpos > start + self._checked:
            if data[start + self._checked] == 10 and self._checked == 0:
                self._fail(400, f"bare LF in the {self._side} {what} (lines end with CRLF)")
            if _BARE_CR_LF.search(data, start + self._checked, endpos) is not None:
                self._fail(400, f"bare CR or LF in the {self._side} {what} (lines end with CRLF)")
            self._checked = endpos - start
        self._scan = max(0, size - 3)
        return -1

    # -- events

    def _need_data(self) -> Sentinel | EndOfMessage:
        if not self._eof:
            return NEED_DATA
        state = self._state
        if state == _S_UNTIL_EOF:
            self._state = _S_EOM
            return self._end_of_message()
        if state == _S_HEAD and not self.buffered:
            self._state = _S_CLOSED
            self._keep_alive = False
            return CLOSED
        self._raise(self._incomplete(state))

    def _end_of_message(self) -> EndOfMessage:
        trailers = self._trailers if self._trailers is not None else Headers()
        self._trailers = None
        self._state = _S_DONE
        return EndOfMessage(trailers)

    def _next(self) -> _M | Data | EndOfMessage | Sentinel:
        if self._error is not None:
            raise self._error
        while True:
            state = self._state
            if state == _S_HEAD:
                return self._next_head()
            if state == _S_EOM:
                return self._end_of_message()
            if state == _S_DONE:
                return PAUSED
            if state == _S_LENGTH or state == _S_CHUNK_DATA:
                out = self._take(self._remaining)
                if out is None:
                    return self._need_data()
                self._remaining -= len(out)
                if not self._remaining:
                    self._state = _S_EOM if state == _S_LENGTH else _S_CHUNK_END
                return Data(out)
            if state == _S_CHUNK_LINE:
                if not self._chunk_line():
                    return self._need_data()
                continue
            if state == _S_CHUNK_END:
                data, start = self._view()
                size = len(data) - start
                if (size and data[start] != 13) or (size >= 2 and data[start + 1] != 10):
                    self._fail(400, "chunk data is not followed by CRLF")
                if size < 2:
                    return self._need_data()
                self._consume(start + 2)
                self._state = _S_CHUNK_LINE
                continue
            if state == _S_TRAILERS:
                if not self._trailer_section():
                    return self._need_data()
                return self._end_of_message()
            if state == _S_UNTIL_EOF:
                out = self._take(self._limits.max_body + 1)
                if out is None:
                    return self._need_data()
                self._body_total += len(out)
                if self._body_total > self._limits.max_body:
                    self._fail(413, self._too_large("body", self._limits.max_body))
                return Data(out)
            if state == _S_CLOSED:
                return CLOSED
            if state == _S_DEFERRED:
                assert self._deferred is not None
                self._raise(self._deferred)
            assert state == _S_SWITCHED
            raise RuntimeError("the parser handed its data over with trailing_data()")

    def _next_head(self) -> _M | Sentinel | EndOfMessage:
        data, start = self._view()
        if len(data) == start:
            return self._need_data()
        if data[start] == 13 or data[start] == 10:
            data, start = self._skip_empty_lines(data, start)
            if len(data) - start < 2 and (len(data) == start or data[start] == 13):
                return self._need_data()
        end = data.find(b"\r\n\r\n", start + self._scan, start + self._limits.max_head)
        if end < 0:
            self._early_check(data, start)
            end = self._find_section_end(data, start, self._limits.max_head, "head")
            if end < 0:
                return self._need_data()
        size = end + 4 - start
        text = (data if size == len(data) else data[start : end + 4]).decode("latin-1")
        try:
            message = self._parse_head(text, size - 2)
        except InvalidHandshake as exc:  # HandshakeRejected too
            self._raise(exc)
        self._consume(end + 4)
        self._scan = self._checked = 0
        return message

    def _skip_empty_lines(self, data: bytes | bytearray, start: int) -> tuple[bytes | bytearray, int]:
        """Skip the empty lines before a request line (RFC 9112 2.2); none before a status line."""
        self._early_check(data, start)
        return data, start

    def _chunk_line(self) -> bool:
        """Parse a chunk size line if it is all there; whether it was."""
        data, start = self._view()
        limits = self._limits
        stop = min(len(data), start + limits.max_chunk_line + 1)
        cr = data.find(b"\r", start + self._scan, stop)
        if data.find(b"\n", start + self._scan, cr if cr >= 0 else stop) >= 0:
            self._fail(400, "bare LF in a chunk size line (lines end with CRLF)")
        if cr < 0:
            if len(data) - start > limits.max_chunk_line:
                self._fail(400, f"chunk size line longer than {limits.max_chunk_line} bytes")
            self._scan = len(data) - start
            return False
        if cr + 1 == len(data):
            self._scan = cr - start
            return False
        if data[cr + 1] != 10:
            self._fail(400, "bare CR in a chunk size line (lines end with CRLF)")
        match = _CHUNK_SIZE_LINE.fullmatch(data, start, cr)
        if match is None:
            self._fail(400, "malformed chunk size line")
        size = int(match.group(1), 16)
        self._scan = 0
        if not size:
            # The last chunk: its CRLF stays, to start the trailer section's search.
            self._consume(cr)
            self._state = _S_TRAILERS
            return True
        self._consume(cr + 2)
        self._body_total += size
        if self._body_total > limits.max_body:
            self._fail(413, self._too_large("body", limits.max_body))
        self._remaining = size
        self._state = _S_CHUNK_DATA
        return True

    def _trailer_section(self) -> bool:
        """Parse the trailer section if it is all there; whether it was."""
        data, start = self._view()  # starts with the last chunk's CRLF
        limits = self._limits
        end = self._find_section_end(data, start, limits.max_trailers, "trailer section", 2)
        if end < 0:
            return False
        if end > start:
            text = data[start : end + 2].decode("latin-1")
            try:
                fields = _parse_fields(text, 2, len(text), limits.max_headers)
            except HandshakeRejected as exc:
                self._fail(exc.status, exc.reason.replace("header", "trailer"))
            self._trailers = Headers(fields)
        self._consume(end + 4)
        self._scan = self._checked = 0
        return True

    def _start_length(self, length: int) -> None:
        if length:
            self._remaining = length
            self._state = _S_LENGTH
        else:
            self._state = _S_EOM


class RequestParser(_Parser[Request]):
    """Parse the requests of a connection, server side (see the module's documentation).

    ``next_event()`` gives a :class:`Request`, its body as :class:`Data`, an
    :class:`EndOfMessage`, then :data:`PAUSED` until :meth:`start_next`;
    :data:`NEED_DATA` when it needs more bytes; :data:`CLOSED` after a clean EOF
    between requests. An error raises :class:`HandshakeRejected` with the status
    to answer (then close the connection); an EOF inside a request is a 400.
    """

    __slots__ = ()
    _side = "request"

    def __init__(self, limits: Limits = Limits()) -> None:
        super().__init__(limits)

    def next_event(self) -> RequestEvent:
        """The next event (see the class documentation)."""
        return self._next()

    def _exception(self, status: int, reason: str) -> Exception:
        return HandshakeRejected(status, reason)

    def _too_large(self, what: str, limit: int) -> str:
        return f"request {what} larger than {limit} bytes"

    def _incomplete(self, state: int) -> Exception:
        return HandshakeRejected(400, "incomplete request: the connection ended in the middle of it")

    def _parse_head(self, text: str, end: int) -> Request:
        request = _parse_request_head(text, end, self._limits.max_headers)
        self._frame(request)
        return request

    def _early_check(self, data: bytes | bytearray, start: int) -> None:
        if data[start] not in _TCHAR_BYTES:
            self._fail(400, "malformed request line")

    def _skip_empty_lines(self, data: bytes | bytearray, start: int) -> tuple[bytes | bytearray, int]:
        pos = start
        while data.startswith(b"\r\n", pos):
            pos += 2
            self._empty_lines += 1
            if self._empty_lines > MAX_EMPTY_LINES:
                self._fail(400, f"more than {MAX_EMPTY_LINES} empty lines before the request line")
        if pos > start:
            self._consume(pos)
            data, start = self._view()
        if len(data) > start and (data[start] == 10 or (data[start] == 13 and len(data) > start + 1)):
            self._fail(400, "bare CR or LF before the request line (lines end with CRLF)")
        return data, start

    def _frame(self, request: Request) -> None:
        """Set up the body of ``request`` (RFC 9112 6.3), or raise."""
        headers = request.headers
        index = headers._index or headers._lookup()
        self._keep_alive, self._fields, self._version = None, headers, request.version
        te = index.get("transfer-encoding")
        cl = index.get("content-length")
        if te is not None:
            if request.version < (1, 1):
                raise HandshakeRejected(400, "Transfer-Encoding is not allowed in an HTTP/1.0 request")
            codings = _transfer_codings(te)
            if codings is None:
                raise HandshakeRejected(400, "malformed Transfer-Encoding")
            if codings.count("chunked") > 1:
                raise HandshakeRejected(400, "Transfer-Encoding applies chunked more than once")
            if codings[-1] != "chunked":
                raise HandshakeRejected(
                    400, "the body length cannot be determined: chunked must be the last Transfer-Encoding"
                )
            if len(codings) > 1:
                raise HandshakeRejected(501, "unsupported Transfer-Encoding (only chunked is)")
            if cl is not None:
                self._keep_alive = False  # RFC 9112 6.1: answer, then close
            self._state = _S_CHUNK_LINE
            return
        if cl is None:
            self._state = _S_EOM
            return
        length = _content_length(cl)
        if length is None:
            raise HandshakeRejected(400, "invalid Content-Length")
        if length > self._limits.max_body:
            raise HandshakeRejected(413, f"request body larger than {self._limits.max_body} bytes")
        self._start_length(length)


class ResponseParser(_Parser[Response]):
    """Parse the responses of a connection, client side (see the module's documentation).

    ``request_method`` is the method of the request being answered: a response
    to HEAD has no body, a 2xx response to CONNECT opens a tunnel. Body framing
    is RFC 9112 6.3's: 1xx (but 101), 204 and 304 have no body; a 101 response,
    and a 2xx answer to CONNECT, end with their head (:meth:`trailing_data` is
    the new protocol's); then Transfer-Encoding chunked, Content-Length, or the
    rest of the connection (EOF ends the message). Errors raise
    :class:`InvalidHandshake`.
    """

    __slots__ = ("_method",)
    _side = "response"

    def __init__(self, limits: Limits = Limits(), *, request_method: str = "GET") -> None:
        super().__init__(limits)
        self._method = request_method

    def next_event(self) -> ResponseEvent:
        """The next event (see the class documentation)."""
        return self._next()

    def start_next(self, request_method: str | None = None) -> None:
        """Go on to the next response (to a request with ``request_method``, if given)."""
        super().start_next()
        if request_method is not None:
            self._method = request_method

    def _exception(self, status: int, reason: str) -> Exception:
        if reason.startswith("the server"):  # a _too_large sentence
            return InvalidHandshake(reason)
        return InvalidHandshake(f"malformed HTTP response from the server: {reason}")

    def _too_large(self, what: str, limit: int) -> str:
        return f"the server's response {what} is larger than {limit} bytes"

    def _incomplete(self, state: int) -> Exception:
        if state == _S_HEAD:
            return InvalidHandshake("the server closed the connection in the middle of the response head")
        return InvalidHandshake("the server closed the connection in the middle of the response body")

    def _early_check(self, data: bytes | bytearray, start: int) -> None:
        size = min(5, len(data) - start)
        if data[start : start + size] != b"HTTP/"[:size]:
            line = bytes(data[start : start + 80]).split(b"\r\n", 1)[0]
            self._raise(InvalidHandshake(f"malformed HTTP status line from the server: {line!r}"))

    def _parse_head(self, text: str, end: int) -> Response:
        response = _parse_response_head(text, end, self._limits.max_headers)
        self._frame(response, text)
        return response

    def _frame(self, response: Response, text: str) -> None:
        """Set up the body of ``response`` (RFC 9112 6.3); errors are deferred."""
        status = response.status
        headers = response.headers
        version = (1, int(text[7]))  # "HTTP/1.x": _STATUS_LINE checked it
        self._keep_alive, self._fields, self._version = None, headers, version
        if status < 200 and status != 101:
            self._state = _S_HEAD  # an interim response: the final one follows
            return
        if status == 101 or (self._method == "CONNECT" and 200 <= status < 300):
            self._switch = True
            self._keep_alive = False
            self._state = _S_EOM
            return
        if self._method == "HEAD" or status in (204, 304):
            self._state = _S_EOM
            return
        index = headers._index or headers._lookup()
        te = index.get("transfer-encoding")
        cl = index.get("content-length")
        if te is not None:
            codings = _transfer_codings(te)
            if version < (1, 1):
                self._defer("Transfer-Encoding in an HTTP/1.0 response")
            elif codings is None or codings.count("chunked") > 1 or "chunked;" in codings:
                self._defer(f"malformed Transfer-Encoding {', '.join(te)[:80]!r}")
            elif codings[-1] == "chunked":
                self._state = _S_CHUNK_LINE
                if cl is not None:
                    self._keep_alive = False
            else:  # RFC 9112 6.3 rule 4: chunked is not the last coding
                self._keep_alive = False
                self._state = _S_UNTIL_EOF
            return
        if cl is None:
            self._keep_alive = False
            self._state = _S_UNTIL_EOF
            return
        length = _content_length(cl)
        if length is None:
            self._defer(f"invalid Content-Length {', '.join(cl)[:80]!r}")
        elif length > self._limits.max_body:
            self._defer(self._too_large("body", self._limits.max_body), 413)
        else:
            self._start_length(length)

    def _defer(self, reason: str, status: int = 400) -> None:
        self._deferred = self._exception(status, reason)
        self._state = _S_DEFERRED
