"""Tests for the HTTP/1.1 parser (wsline.protocol.http11), without I/O.

Every strict rule has a test of its own, every limit is tested at its boundary
(exactly the limit passes, one byte more fails, and it fails before the bytes
beyond are needed), and the request-smuggling holes each have a regression test
(the section at the end).
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from wsline.errors import HandshakeRejected, InvalidHandshake
from wsline.protocol import handshake as hs
from wsline.protocol.http11 import (
    CLOSED,
    MAX_EMPTY_LINES,
    NEED_DATA,
    PAUSED,
    Data,
    EndOfMessage,
    Headers,
    Limits,
    Request,
    RequestParser,
    Response,
    ResponseParser,
    Sentinel,
    parse_request,
    parse_response,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
UPGRADE = (
    b"GET /chat?room=1 HTTP/1.1\r\n"
    b"Host: server.example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: " + KEY.encode() + b"\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)
GET = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
DEFAULT = Limits()

Norm = tuple[object, ...]


# ---------------------------------------------------------------------- helpers


def norm(event: object) -> Norm:
    """A comparable form of an event."""
    if isinstance(event, Request):
        return ("request", event.method, event.target, event.version, tuple(event.headers))
    if isinstance(event, Response):
        return ("response", event.status, event.reason, tuple(event.headers))
    if isinstance(event, Data):
        return ("data", event.data)
    if isinstance(event, EndOfMessage):
        return ("end", tuple(event.trailers))
    assert isinstance(event, Sentinel), event
    return (event.value,)


def drain(parser: RequestParser | ResponseParser) -> list[object]:
    """Events up to (and with) the first NEED_DATA, PAUSED or CLOSED."""
    out: list[object] = []
    while True:
        event = parser.next_event()
        out.append(event)
        if isinstance(event, Sentinel):
            return out


def run(
    parser: RequestParser | ResponseParser, data: bytes | Iterable[bytes], eof: bool = True
) -> list[Norm]:
    """Feed ``data`` (a piece at a time), go on past each PAUSED, and feed EOF at the end.

    The events, normalized, with adjacent Data merged and NEED_DATA left out.
    """
    pieces = [data] if isinstance(data, bytes) else list(data)
    out: list[Norm] = []

    def take() -> None:
        while True:
            event = parser.next_event()
            if event is NEED_DATA:
                return
            item = norm(event)
            if item[0] == "data" and out and out[-1][0] == "data":
                out[-1] = ("data", out[-1][1] + item[1])  # type: ignore[operator]
            else:
                out.append(item)
            if event is PAUSED:
                parser.start_next()
            elif event is CLOSED:
                return

    for piece in pieces:
        parser.feed(piece)
        take()
    if eof:
        parser.feed_eof()
        take()
    return out


def requests(data: bytes | Iterable[bytes], limits: Limits = DEFAULT, eof: bool = True) -> list[Norm]:
    return run(RequestParser(limits), data, eof)


def rejected(data: bytes | Iterable[bytes], limits: Limits = DEFAULT, eof: bool = True) -> HandshakeRejected:
    """The rejection ``data`` gets (feeding EOF at the end if ``eof``)."""
    with pytest.raises(HandshakeRejected) as info:
        requests(data, limits, eof)
    return info.value


def first_request(data: bytes) -> Request:
    parser = RequestParser()
    parser.feed(data)
    event = parser.next_event()
    assert isinstance(event, Request), event
    return event


def request_with(*lines: str, request_line: str = "GET / HTTP/1.1", body: bytes = b"") -> bytes:
    return "".join(f"{line}\r\n" for line in (request_line, *lines)).encode("latin-1") + b"\r\n" + body


def chunked(*lines: str, body: bytes) -> bytes:
    return request_with("Host: h", *lines, request_line="POST /up HTTP/1.1") + body


TE_CHUNKED = "Transfer-Encoding: chunked"


# ---------------------------------------------------------------------- the common case


def test_websocket_upgrade_in_one_feed() -> None:
    parser = RequestParser()
    parser.feed(UPGRADE)
    request = parser.next_event()
    assert isinstance(request, Request)
    assert (request.method, request.target, request.version) == ("GET", "/chat?room=1", (1, 1))
    assert request.path == "/chat" and request.query == {"room": "1"}
    assert request.is_upgrade and request.host == "server.example.com"
    assert request.body == b""
    assert hs.check_request(request) == KEY
    end = parser.next_event()
    assert isinstance(end, EndOfMessage) and len(end.trailers) == 0
    assert parser.next_event() is PAUSED
    assert parser.next_event() is PAUSED
    assert parser.keep_alive
    assert parser.buffered == 0
    assert parser.trailing_data() == b""


def test_trailing_data_after_an_upgrade_is_the_websocket_bytes() -> None:
    frame = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
    parser = RequestParser()
    parser.feed(UPGRADE + frame[:4])
    assert [norm(e)[0] for e in drain(parser)] == ["request", "end", "PAUSED"]
    parser.feed(frame[4:])  # arrives while paused: kept
    assert parser.buffered == len(frame)
    assert parser.trailing_data() == frame
    with pytest.raises(RuntimeError):
        parser.next_event()
    with pytest.raises(RuntimeError):
        parser.feed(b"x")
    with pytest.raises(RuntimeError):
        parser.start_next()


def test_trailing_data_and_start_next_only_after_the_end_of_a_message() -> None:
    parser = RequestParser()
    with pytest.raises(RuntimeError):
        parser.trailing_data()
    with pytest.raises(RuntimeError):
        parser.start_next()
    parser.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nab")
    assert [norm(e)[0] for e in drain(parser)] == ["request", "data", "NEED_DATA"]
    with pytest.raises(RuntimeError):
        parser.trailing_data()
    with pytest.raises(RuntimeError):
        parser.start_next()


def test_a_head_fed_byte_by_byte() -> None:
    pieces = [UPGRADE[i : i + 1] for i in range(len(UPGRADE))]
    assert requests(pieces) == requests(UPGRADE)
    assert [e[0] for e in requests(pieces)] == ["request", "end", "PAUSED", "CLOSED"]


def test_bytearray_and_memoryview_are_copied() -> None:
    parser = RequestParser()
    data = bytearray(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\n")
    parser.feed(memoryview(data))
    data[:4] = b"XXXX"  # the caller reuses its buffer
    assert norm(parser.next_event())[:3] == ("request", "POST", "/")
    body = bytearray(b"body")
    parser.feed(body)
    body[:] = b"XXXX"
    assert parser.next_event() == Data(b"body")


def test_whole_head_functions_are_the_parsers_heads() -> None:
    head = UPGRADE[:-4]
    for variant in (head, head + b"\r\n", head + b"\r\n\r\n"):
        assert norm(parse_request(variant)) == norm(first_request(UPGRADE))
    with pytest.raises(HandshakeRejected) as info:
        parse_request(b"GET / HTTP/1.1\r\nHost: h\r\n\r\nX: y")
    assert info.value.status == 400
    response = parse_response(b"HTTP/1.1 200 OK\r\nX: y")
    assert (response.status, response.reason, response.headers.items()) == (200, "OK", [("X", "y")])


# ---------------------------------------------------------------------- pipelining, streaming, EOF


def test_three_pipelined_requests_come_out_in_order() -> None:
    stream = (
        b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
        b"POST /3 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )
    parser = RequestParser()
    parser.feed(stream)
    first = drain(parser)
    assert [norm(e)[:3] for e in first] == [("request", "GET", "/1"), ("end", ()), ("PAUSED",)]
    assert parser.buffered == len(stream) - len(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert parser.next_event() is PAUSED  # nothing moves until start_next
    parser.start_next()
    second = drain(parser)
    assert [norm(e)[:3] for e in second] == [
        ("request", "POST", "/2"),
        ("data", b"hello"),
        ("end", ()),
        ("PAUSED",),
    ]
    parser.start_next()
    third = drain(parser)
    assert [norm(e)[:3] for e in third] == [
        ("request", "POST", "/3"),
        ("data", b"abc"),
        ("end", ()),
        ("PAUSED",),
    ]
    parser.start_next()
    assert parser.next_event() is NEED_DATA
    parser.feed_eof()
    assert parser.next_event() is CLOSED
    assert parser.next_event() is CLOSED
    assert not parser.keep_alive


def test_a_large_body_is_streamed_as_it_arrives() -> None:
    size = 2**20
    parser = RequestParser()
    parser.feed(f"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {size}\r\n\r\n".encode())
    assert isinstance(parser.next_event(), Request)
    assert parser.next_event() is NEED_DATA
    got = 0
    for i in range(size // 65536):
        piece = bytes([i]) * 65536
        parser.feed(piece)
        event = parser.next_event()
        assert isinstance(event, Data) and event.data == piece
        assert event.data is piece  # a whole piece goes out as it came: no copy
        got += len(event.data)
        assert parser.buffered == 0
        if got < size:
            assert parser.next_event() is NEED_DATA
    assert got == size
    assert isinstance(parser.next_event(), EndOfMessage)


def test_a_chunked_body_is_streamed_as_it_arrives() -> None:
    parser = RequestParser()
    parser.feed(chunked(TE_CHUNKED, body=b"10000\r\n"))
    assert isinstance(parser.next_event(), Request)
    for _ in range(4):
        parser.feed(b"x" * 16384)
        event = parser.next_event()
        assert event == Data(b"x" * 16384)
        assert parser.buffered == 0
    parser.feed(b"\r\n0\r\n\r\n")
    assert isinstance(parser.next_event(), EndOfMessage)


def test_body_bytes_after_the_head_in_the_same_feed() -> None:
    parser = RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n01234")
    assert [norm(e) for e in drain(parser)][1:] == [("data", b"01234"), ("NEED_DATA",)]
    parser.feed(b"56789GET")
    assert [norm(e) for e in drain(parser)] == [("data", b"56789"), ("end", ()), ("PAUSED",)]
    assert parser.buffered == 3


def test_clean_eof_between_requests_is_closed() -> None:
    assert requests(b"") == [("CLOSED",)]
    assert requests(GET) == [*requests(GET, eof=False), ("CLOSED",)]
    assert requests(GET + b"\r\n") == requests(GET)  # a CRLF after a message, then EOF
    parser = RequestParser()
    parser.feed(GET)
    parser.feed_eof()
    assert [norm(e)[0] for e in drain(parser)] == ["request", "end", "PAUSED"]
    parser.start_next()
    assert parser.next_event() is CLOSED


def test_eof_while_paused_still_gives_the_buffered_requests() -> None:
    parser = RequestParser()
    parser.feed(GET + GET)
    parser.feed_eof()  # a client that half-closes after pipelining
    assert [e[0] for e in run(parser, [])] == ["request", "end", "PAUSED"] * 2 + ["CLOSED"]


@pytest.mark.parametrize(
    "data",
    [
        b"G",
        b"GET / HTTP/1.1\r\nHost: h\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n\r",
        b"\r",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\r\n",
    ],
)
def test_eof_inside_a_request_is_a_400(data: bytes) -> None:
    exc = rejected(data)
    assert exc.status == 400 and "incomplete request" in exc.reason


def test_feed_after_eof_is_a_programming_error() -> None:
    parser = RequestParser()
    parser.feed_eof()
    with pytest.raises(RuntimeError):
        parser.feed(b"GET")
    parser.feed(b"")  # nothing, even after EOF
    assert parser.next_event() is CLOSED


def test_the_parser_is_dead_after_an_error() -> None:
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n")
    with pytest.raises(HandshakeRejected) as info:
        parser.next_event()
    error = info.value
    assert error.status == 400
    assert not parser.keep_alive
    assert parser.buffered == 0
    for call in (
        parser.next_event,
        parser.feed_eof,
        parser.start_next,
        parser.trailing_data,
        lambda: parser.feed(b"GET / HTTP/1.1\r\n\r\n"),
    ):
        with pytest.raises(HandshakeRejected) as again:
            call()
        assert again.value is error


@pytest.mark.parametrize(
    "bad", [{"max_head": -1}, {"max_body": 1.5}, {"max_headers": True}, {"max_trailers": "1"}]
)
def test_limits_are_checked(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Limits(**bad)  # type: ignore[arg-type]


def test_empty_feed_is_nothing() -> None:
    parser = RequestParser()
    parser.feed(b"")
    assert parser.next_event() is NEED_DATA


# ---------------------------------------------------------------------- keep-alive


@pytest.mark.parametrize(
    ("version", "connection", "expected"),
    [
        ("1.1", None, True),
        ("1.1", "close", False),
        ("1.1", "Close", False),
        ("1.1", "keep-alive, close", False),
        ("1.1", "Upgrade", True),
        ("1.1", "keep-alive", True),
        ("1.2", None, True),
        ("1.0", None, False),
        ("1.0", "keep-alive", True),
        ("1.0", "Keep-Alive", True),
        ("1.0", "close", False),
    ],
)
def test_keep_alive(version: str, connection: str | None, expected: bool) -> None:
    lines = ["Host: h"] + ([f"Connection: {connection}"] if connection else [])
    parser = RequestParser()
    parser.feed(request_with(*lines, request_line=f"GET / HTTP/{version}"))
    drain(parser)
    assert parser.keep_alive is expected


def test_keep_alive_is_for_the_current_request() -> None:
    parser = RequestParser()
    parser.feed(request_with("Host: h", "Connection: close") + GET)
    drain(parser)
    assert not parser.keep_alive
    parser.start_next()
    drain(parser)
    assert parser.keep_alive


def test_transfer_encoding_with_content_length_is_framed_by_the_encoding_then_closed() -> None:
    data = chunked(TE_CHUNKED, "Content-Length: 100", body=b"3\r\nabc\r\n0\r\n\r\n") + GET
    parser = RequestParser()
    parser.feed(data)
    events = [norm(e) for e in drain(parser)]
    assert events[1:] == [("data", b"abc"), ("end", ()), ("PAUSED",)]
    assert not parser.keep_alive
    assert parser.buffered == len(GET)  # what follows the chunked body, not Content-Length's


# ---------------------------------------------------------------------- request line


@pytest.mark.parametrize(
    "line",
    [
        "GET  / HTTP/1.1",
        "GET /  HTTP/1.1",
        "GET / HTTP/1.1 ",
        " GET / HTTP/1.1",
        "GET\t/ HTTP/1.1",
        "GET /\tHTTP/1.1",
        "GET / http/1.1",
        "GET / HTTP/1.1x",
        "GET / HTTP/11",
        "GET / HTTP/1.",
        "GET /",
        "G(T / HTTP/1.1",
        "GET",
        "GET / HTTP/1.1\x00",
    ],
)
def test_malformed_request_line(line: str) -> None:
    assert rejected(request_with("Host: h", request_line=line)).status == 400


@pytest.mark.parametrize("version", ["0.9", "2.0", "3.1", "9.9"])
def test_other_http_versions_are_505(version: str) -> None:
    assert rejected(request_with("Host: h", request_line=f"GET / HTTP/{version}")).status == 505


@pytest.mark.parametrize(("version", "parsed"), [("1.0", (1, 0)), ("1.1", (1, 1)), ("1.9", (1, 9))])
def test_http_1_x_is_accepted(version: str, parsed: tuple[int, int]) -> None:
    assert first_request(request_with("Host: h", request_line=f"GET / HTTP/{version}")).version == parsed


def test_http_1_0_needs_no_host() -> None:
    request = first_request(b"GET / HTTP/1.0\r\n\r\n")
    assert request.version == (1, 0) and request.host is None


def test_methods_are_tokens_and_kept_as_sent() -> None:
    assert first_request(request_with("Host: h", request_line="M-SEARCH /x HTTP/1.1")).method == "M-SEARCH"
    assert first_request(request_with("Host: h", request_line="get / HTTP/1.1")).method == "get"


def test_request_targets_are_checked() -> None:
    assert first_request(request_with("Host: h", request_line="OPTIONS * HTTP/1.1")).target == "*"
    for target in ("*", "x", "h:443", "ftp://h/", "/a#b", "/\x7f"):
        assert rejected(request_with("Host: h", request_line=f"GET {target} HTTP/1.1")).status == 400
    exc = rejected(request_with("Host: h:443", request_line="CONNECT h:443 HTTP/1.1"))
    assert exc.status == 400 and "CONNECT" in exc.reason


def test_early_garbage_is_refused_without_waiting_for_a_head() -> None:
    for garbage in (b"\x16\x03\x01\x02\x00", b" GET", b"\x00", b"{"):
        exc = rejected(garbage, eof=False)
        assert exc.status == 400 and "malformed request line" in exc.reason
    # HTTP/2 with prior knowledge: the preface is a request line of version 2.0.
    assert rejected(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", eof=False).status == 505


# ---------------------------------------------------------------------- empty lines before a request


@pytest.mark.parametrize("count", [1, 2, MAX_EMPTY_LINES])
def test_empty_lines_before_a_request_line_are_ignored(count: int) -> None:
    assert requests(b"\r\n" * count + GET) == requests(GET)
    pieces = [b"\r", b"\n"] * count + [GET]
    assert requests(pieces) == requests(GET)


def test_too_many_empty_lines_before_a_request_line() -> None:
    exc = rejected(b"\r\n" * (MAX_EMPTY_LINES + 1), eof=False)
    assert exc.status == 400
    # Counted across pieces too.
    assert rejected([b"\r\n"] * (MAX_EMPTY_LINES + 1), eof=False).status == 400


def test_empty_lines_are_counted_per_request() -> None:
    stream = (b"\r\n" * MAX_EMPTY_LINES + GET) * 3
    assert [e[0] for e in requests(stream)] == ["request", "end", "PAUSED"] * 3 + ["CLOSED"]


@pytest.mark.parametrize("lead", [b"\n", b"\r\n\n", b"\rG", b"\r\r\n", b"\n\r\n"])
def test_a_bare_cr_or_lf_before_a_request_line(lead: bytes) -> None:
    assert rejected(lead + GET, eof=False).status == 400


# ---------------------------------------------------------------------- line endings in the head


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\nb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n\n\r\n\r\n",
        b"GET / HTTP/1.1\rHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\rb\r\nHost: h\r\n\r\n",
        b"GET /a\rb HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\r\n",
    ],
)
def test_a_bare_cr_or_lf_in_the_head_is_a_400(data: bytes) -> None:
    assert rejected(data).status == 400


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\nHost: h\n\n",  # an LF-only client: refused at once, not after max_head
        b"GET / HTTP/1.1\r\nHost: h\nX",
        b"GET / HTTP/1.1\rX",
        b"GET / HTTP/1.1\r\nHost: h\r\r",
    ],
)
def test_a_bare_cr_or_lf_is_refused_before_the_end_of_the_head(data: bytes) -> None:
    exc = rejected(data, eof=False)
    assert exc.status == 400 and "bare" in exc.reason


def test_a_cr_at_the_end_of_a_piece_may_be_followed_by_lf() -> None:
    pieces = [b"GET / HTTP/1.1\r", b"\nHost: h\r", b"\n\r", b"\n"]
    assert requests(pieces) == requests(GET)


# ---------------------------------------------------------------------- header fields


def test_header_values_ows_tab_and_obs_text() -> None:
    request = first_request(
        request_with(
            "Host: h", "X-Pad: \t  a  b\t ", "X-Tab: a\tb", "X-Latin: caf\xe9 \xff", "X-Empty:", "X-Sp:   "
        )
    )
    headers = request.headers
    assert headers["X-Pad"] == "a  b"
    assert headers["X-Tab"] == "a\tb"
    assert headers["X-Latin"] == "caf\xe9 \xff"
    assert headers["X-Empty"] == "" and headers["X-Sp"] == ""
    assert headers.items()[0] == ("Host", "h")


@pytest.mark.parametrize("line", ["Header : value", "Header\t: value", "Header  :value"])
def test_whitespace_before_the_colon_is_a_400(line: str) -> None:
    exc = rejected(request_with("Host: h", line))
    assert exc.status == 400 and "whitespace" in exc.reason


@pytest.mark.parametrize("fold", [" folded", "\tfolded", "  "])
def test_obs_fold_is_a_400(fold: str) -> None:
    exc = rejected(request_with("Host: h", "X: a", fold))
    assert exc.status == 400 and "fold" in exc.reason


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f"])
def test_control_characters_in_values_are_a_400(char: str) -> None:
    exc = rejected(request_with("Host: h", f"X: a{char}b"))
    assert exc.status == 400 and "invalid character" in exc.reason


@pytest.mark.parametrize("line", ["NoColon", ": empty name", "Na(me: v", "N\xe9: v", "Na/me: v", "[x]: v"])
def test_field_names_are_tokens(line: str) -> None:
    assert rejected(request_with("Host: h", line)).status == 400


def test_max_headers_boundary() -> None:
    lines = ["Host: h", *(f"X-{i}: {i}" for i in range(9))]
    limits = Limits(max_headers=10)
    assert len(first_request_limited(request_with(*lines), limits).headers) == 10
    assert rejected(request_with(*lines, "X-Last: 1"), limits).status == 431


def first_request_limited(data: bytes, limits: Limits) -> Request:
    parser = RequestParser(limits)
    parser.feed(data)
    event = parser.next_event()
    assert isinstance(event, Request)
    return event


# ---------------------------------------------------------------------- max_head


def head_of_size(size: int) -> bytes:
    """A GET head of exactly ``size`` bytes, its final CRLFCRLF included."""
    base = b"GET / HTTP/1.1\r\nHost: h\r\nX: \r\n\r\n"
    head = base[:-4] + b"a" * (size - len(base)) + b"\r\n\r\n"
    assert len(head) == size
    return head


@pytest.mark.parametrize("limit", [64, 1000, 16384])
def test_max_head_boundary(limit: int) -> None:
    limits = Limits(max_head=limit)
    assert requests(head_of_size(limit), limits)[0][0] == "request"
    assert rejected(head_of_size(limit + 1), limits).status == 431


def test_max_head_is_enforced_as_the_bytes_arrive() -> None:
    limits = Limits(max_head=100)
    head = head_of_size(200)
    parser = RequestParser(limits)
    parser.feed(head[:99])
    assert parser.next_event() is NEED_DATA
    parser.feed(head[99:100])  # 100 bytes and no end of head: it cannot end within the limit
    with pytest.raises(HandshakeRejected) as info:
        parser.next_event()
    assert info.value.status == 431
    # The same in one piece, however much more came.
    assert rejected(head[:100], limits, eof=False).status == 431
    assert rejected(head + b"x" * 100000, limits, eof=False).status == 431


def test_max_head_does_not_count_the_next_request() -> None:
    limits = Limits(max_head=len(GET))
    assert [e[0] for e in requests(GET * 5, limits)].count("request") == 5


# ---------------------------------------------------------------------- Host


def test_missing_host_is_a_400() -> None:
    exc = rejected(request_with("X: y"))
    assert exc.status == 400 and "Host" in exc.reason


def test_two_hosts_are_a_400() -> None:
    assert rejected(request_with("Host: a", "Host: a")).status == 400
    assert rejected(request_with("Host: a", "Host: b")).status == 400
    assert rejected(request_with("Host: a", "Host: b", request_line="GET / HTTP/1.0")).status == 400


@pytest.mark.parametrize("value", ["", " ", "a b", "h/x", "u@h", "[::g]", "[::1", "h:x", "[v1.x]", "a\\b"])
def test_invalid_host_values_are_a_400(value: str) -> None:
    assert rejected(request_with(f"Host: {value}")).status == 400


@pytest.mark.parametrize(
    "value", ["h", "h:80", "h:", "127.0.0.1:8080", "[::1]", "[2001:db8::1]:443", "xn--d-a.b"]
)
def test_valid_host_values(value: str) -> None:
    assert first_request(request_with(f"Host: {value}")).host == value


def test_absolute_form_authority_wins_over_host() -> None:
    request = first_request(
        request_with("X: 1", "Host: other.example", request_line="GET http://a.example:8080/p?q=1 HTTP/1.1")
    )
    assert request.target == "/p?q=1"
    assert request.host == "a.example:8080"
    assert request.headers.items() == [("X", "1"), ("Host", "a.example:8080")]
    assert request.headers.get_all("host") == ["a.example:8080"]


def test_absolute_form_still_needs_a_valid_host_header() -> None:
    assert rejected(request_with(request_line="GET http://a/ HTTP/1.1")).status == 400
    assert rejected(request_with("Host: a b", request_line="GET http://a/ HTTP/1.1")).status == 400


def test_absolute_form_http_1_0_without_host_gets_the_targets() -> None:
    request = first_request(request_with(request_line="GET ws://[::1]:9/x HTTP/1.0"))
    assert request.host == "[::1]:9" and request.target == "/x"


# ---------------------------------------------------------------------- Content-Length


def post(*lines: str, body: bytes = b"") -> bytes:
    return request_with("Host: h", *lines, request_line="POST / HTTP/1.1", body=body)


@pytest.mark.parametrize("value", ["5", " 5 ", "\t5", "005", "5, 5", "5,5", "5 ,\t5", "5, 05"], ids=repr)
def test_valid_content_length(value: str) -> None:
    events = requests(post(f"Content-Length: {value}", body=b"hello") + GET)
    assert events[1] == ("data", b"hello")
    assert [e[0] for e in events].count("request") == 2


def test_several_equal_content_length_fields() -> None:
    events = requests(post("Content-Length: 5", "Content-Length: 5", body=b"hello"))
    assert events[1] == ("data", b"hello")


@pytest.mark.parametrize(
    "values",
    [
        ["+5"],
        ["-5"],
        ["5 5"],
        ["5, 6"],
        ["5,"],
        [",5"],
        [""],
        ["0x5"],
        ["5.0"],
        ["5e0"],
        ["\xb2"],
        ["1" * 19],
        ["5", "6"],
        ["5", ""],
    ],
    ids=repr,
)
def test_invalid_content_length_is_a_400(values: list[str]) -> None:
    exc = rejected(post(*(f"Content-Length: {v}" for v in values)))
    assert exc.status == 400 and "Content-Length" in exc.reason


def test_eighteen_digits_are_the_most() -> None:
    limits = Limits(max_body=10**18)
    parser = RequestParser(limits)
    parser.feed(post("Content-Length: " + "9" * 18))
    assert isinstance(parser.next_event(), Request)
    assert parser.next_event() is NEED_DATA


def test_content_length_zero_and_no_body() -> None:
    assert [e[0] for e in requests(post("Content-Length: 0"))] == ["request", "end", "PAUSED", "CLOSED"]
    assert [e[0] for e in requests(post())] == ["request", "end", "PAUSED", "CLOSED"]


def test_max_body_boundary_with_content_length() -> None:
    limits = Limits(max_body=10)
    assert requests(post("Content-Length: 10", body=b"0123456789"), limits)[1] == ("data", b"0123456789")
    exc = rejected(post("Content-Length: 11"), limits, eof=False)  # before any of the body came
    assert exc.status == 413 and "larger than 10 bytes" in exc.reason


def test_a_get_body_is_consumed_and_never_the_next_request() -> None:
    smuggled = b"GET /admin HTTP/1.1\r\nHost: h\r\n\r\n"
    data = request_with("Host: h", f"Content-Length: {len(smuggled)}", body=smuggled) + GET
    events = requests(data)
    assert [e[:3] for e in events if e[0] == "request"] == [("request", "GET", "/"), ("request", "GET", "/")]
    assert events[1] == ("data", smuggled)


def test_an_upgrade_request_with_a_body_is_framed() -> None:
    data = UPGRADE[:-2] + b"Content-Length: 3\r\n\r\nabcREST"
    parser = RequestParser()
    parser.feed(data)
    assert [norm(e)[0] for e in drain(parser)] == ["request", "data", "end", "PAUSED"]
    assert parser.trailing_data() == b"REST"


# ---------------------------------------------------------------------- Transfer-Encoding


@pytest.mark.parametrize(
    "values",
    [["chunked"], ["Chunked"], ["CHUNKED"], [" chunked "], [", chunked"], ["chunked,"], ["", "chunked"]],
)
def test_chunked_transfer_encoding(values: list[str]) -> None:
    lines = [f"Transfer-Encoding: {v}" for v in values]
    assert requests(chunked(*lines, body=b"3\r\nabc\r\n0\r\n\r\n"))[1] == ("data", b"abc")


@pytest.mark.parametrize(
    "values",
    [
        ["chunked, gzip"],
        ["chunked", "gzip"],
        ["gzip"],
        ["identity"],
        ["chunked, chunked"],
        ["chunked", "chunked"],
        ["gzip, chunked, chunked"],
        ["chunked;x=1"],
        [""],
        [","],
        ["chu nked"],
        ["chunked\x01"],
        ['"chunked"'],
    ],
    ids=repr,
)
def test_transfer_encoding_that_does_not_end_with_one_chunked_is_a_400(values: list[str]) -> None:
    assert rejected(chunked(*(f"Transfer-Encoding: {v}" for v in values), body=b"0\r\n\r\n")).status == 400


@pytest.mark.parametrize(
    "values", [["gzip, chunked"], ["gzip", "chunked"], ["deflate;q=1, chunked"], ["x, y, chunked"]]
)
def test_other_codings_before_chunked_are_a_501(values: list[str]) -> None:
    exc = rejected(chunked(*(f"Transfer-Encoding: {v}" for v in values), body=b"0\r\n\r\n"))
    assert exc.status == 501 and "Transfer-Encoding" in exc.reason


def test_transfer_encoding_in_http_1_0_is_a_400() -> None:
    data = request_with("Host: h", TE_CHUNKED, request_line="POST / HTTP/1.0", body=b"0\r\n\r\n")
    assert rejected(data).status == 400


# ---------------------------------------------------------------------- chunked bodies


def chunk_events(body: bytes, limits: Limits = DEFAULT, pieces: int = 1) -> list[Norm]:
    data = chunked(TE_CHUNKED, body=body)
    if pieces == 1:
        return requests(data, limits)
    step = max(1, len(data) // pieces)
    return requests([data[i : i + step] for i in range(0, len(data), step)], limits)


@pytest.mark.parametrize(
    "line",
    [
        b"a",
        b"A",
        b"000a",
        b"0" * 15 + b"a",
        b"a;x",
        b"a;x=y",
        b'a;x="quoted \\" \\\\ text"',
        b'a;x=""',
        b"a ; x = y",
        b"a\t;\tx\t=\ty",
        b'a;x;y=1;z="2"',
        b'a;x="\x80\xff"',
        b'a;x="\t"',
    ],
    ids=repr,
)
def test_valid_chunk_size_lines(line: bytes) -> None:
    events = chunk_events(line + b"\r\n0123456789\r\n0\r\n\r\n")
    assert events[1] == ("data", b"0123456789")


@pytest.mark.parametrize("last", [b"0", b"000", b"0;x=1", b"0 ;x"], ids=repr)
def test_last_chunk_forms(last: bytes) -> None:
    assert chunk_events(b"3\r\nabc\r\n" + last + b"\r\n\r\n")[1:3] == [("data", b"abc"), ("end", ())]


@pytest.mark.parametrize(
    "line",
    [
        b"5 ",
        b" 5",
        b"5\t",
        b"\t5",
        b"+5",
        b"-5",
        b"0x5",
        b"",
        b"5;",
        b"5; ",
        b"5;a b",
        b"5;a=",
        b"5;=b",
        b"5;a=b c",
        b'5;a="unterminated',
        b'5;a="bad\\\x01"',
        b'5;a="ctl\x01"',
        b"5;a=b;",
        b"5 5",
        b"5,a",
        b"g",
        b"1" + b"0" * 16,
        b"5;a\x00",
    ],
    ids=repr,
)
def test_invalid_chunk_size_lines_are_a_400(line: bytes) -> None:
    exc = rejected(chunked(TE_CHUNKED, body=line + b"\r\nhello\r\n0\r\n\r\n"))
    assert exc.status == 400


@pytest.mark.parametrize(
    "body",
    [
        b"5\nhello\r\n0\r\n\r\n",
        b"5\rhello\r\n0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhello\r0\r\n\r\n",
        b"5\r\nhello\r\n0\n\r\n",
        b"5\r\nhello\r\n0\r\n\n",
        b"5\r\nhello\r\n0\r\nX: y\n\r\n",
        b"5;a=b\n\r\nhello\r\n0\r\n\r\n",
    ],
    ids=repr,
)
def test_a_bare_cr_or_lf_in_chunk_framing_is_a_400(body: bytes) -> None:
    assert rejected(chunked(TE_CHUNKED, body=body)).status == 400


@pytest.mark.parametrize("after", [b"XX", b"\n\r", b"\rX", b"  ", b"hello"], ids=repr)
def test_chunk_data_must_be_followed_by_crlf(after: bytes) -> None:
    exc = rejected(chunked(TE_CHUNKED, body=b"5\r\nhello" + after + b"0\r\n\r\n"))
    assert exc.status == 400 and "CRLF" in exc.reason


def test_a_wrong_byte_after_chunk_data_is_refused_at_once() -> None:
    assert rejected(chunked(TE_CHUNKED, body=b"5\r\nhelloX"), eof=False).status == 400
    assert rejected(chunked(TE_CHUNKED, body=b"5\r\nhello\rX"), eof=False).status == 400


def test_chunks_split_anywhere() -> None:
    body = b"3;a=b\r\nabc\r\n10\r\n" + b"x" * 16 + b"\r\n0\r\nT: 1\r\n\r\n"
    whole = chunk_events(body)
    for pieces in (2, 3, 7, 50, 1000):
        assert chunk_events(body, pieces=pieces) == whole
    assert whole[1:3] == [("data", b"abc" + b"x" * 16), ("end", (("T", "1"),))]


def test_max_chunk_line_boundary() -> None:
    limits = Limits(max_chunk_line=20)
    line = b"5;x=" + b"y" * 16
    assert len(line) == 20
    assert chunk_events(line + b"\r\nhello\r\n0\r\n\r\n", limits)[1] == ("data", b"hello")
    assert rejected(chunked(TE_CHUNKED, body=line + b"y\r\nhello\r\n0\r\n\r\n"), limits).status == 400


def test_max_chunk_line_is_enforced_as_the_bytes_arrive() -> None:
    limits = Limits(max_chunk_line=20)
    head = chunked(TE_CHUNKED, body=b"")
    parser = RequestParser(limits)
    parser.feed(head + b"5;x=" + b"y" * 16)  # 20 bytes: the CRLF may still come
    assert isinstance(parser.next_event(), Request)
    assert parser.next_event() is NEED_DATA
    parser.feed(b"\r")  # and a CR: still possible
    assert parser.next_event() is NEED_DATA
    parser.feed(b"\n")
    assert parser.next_event() is NEED_DATA
    assert rejected(head + b"5;x=" + b"y" * 17, limits, eof=False).status == 400
    assert rejected(head + b"5;x=" + b"y" * 16 + b"yy", limits, eof=False).status == 400
    assert rejected([head, b"5;x=", b"y" * 10, b"y" * 7], limits, eof=False).status == 400


def test_max_body_boundary_with_chunks() -> None:
    limits = Limits(max_body=10)
    assert chunk_events(b"4\r\nabcd\r\n6\r\nefghij\r\n0\r\n\r\n", limits)[1] == ("data", b"abcdefghij")
    # One more: refused when the size line says so, before the chunk data came.
    parser = RequestParser(limits)
    parser.feed(chunked(TE_CHUNKED, body=b"4\r\nabcd\r\n7\r\n"))
    assert isinstance(parser.next_event(), Request)
    assert parser.next_event() == Data(b"abcd")
    with pytest.raises(HandshakeRejected) as info:
        parser.next_event()
    assert info.value.status == 413
    assert rejected(chunked(TE_CHUNKED, body=b"ffffffffffffffff\r\n"), eof=False).status == 413


def test_trailers_are_in_the_end_of_message() -> None:
    events = chunk_events(b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nX-Other:  two words \r\n\r\n")
    assert events[2] == ("end", (("X-Sum", "1"), ("X-Other", "two words")))
    parser = RequestParser()
    parser.feed(chunked(TE_CHUNKED, body=b"0\r\nA: 1\r\n\r\n"))
    events_raw = drain(parser)
    end = events_raw[1]
    assert isinstance(end, EndOfMessage) and end.trailers["a"] == "1"


@pytest.mark.parametrize(
    "trailers",
    [b"A : 1\r\n", b"A: 1\r\n folded\r\n", b"A: \x00\r\n", b"NoColon\r\n", b" A: 1\r\n", b"A\t: 1\r\n"],
    ids=repr,
)
def test_trailer_fields_follow_the_header_rules(trailers: bytes) -> None:
    assert rejected(chunked(TE_CHUNKED, body=b"0\r\n" + trailers + b"\r\n")).status == 400


def test_max_trailers_boundary() -> None:
    limits = Limits(max_trailers=20)
    trailers = b"X: " + b"a" * 13 + b"\r\n\r\n"  # 20 bytes, the final CRLF included
    assert len(trailers) == 20
    assert chunk_events(b"0\r\n" + trailers, limits)[1] == ("end", (("X", "a" * 13),))
    exc = rejected(chunked(TE_CHUNKED, body=b"0\r\nX: " + b"a" * 14 + b"\r\n\r\n"), limits)
    assert exc.status == 431
    # Enforced as the bytes arrive.
    assert rejected(chunked(TE_CHUNKED, body=b"0\r\n" + b"X: " + b"a" * 17), limits, eof=False).status == 431


def test_trailer_count_is_bounded_by_max_headers() -> None:
    limits = Limits(max_headers=3)
    assert chunk_events(b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", limits)[1][0] == "end"
    assert (
        rejected(chunked(TE_CHUNKED, body=b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n"), limits).status == 431
    )


def test_pipelined_request_after_trailers() -> None:
    events = requests(chunked(TE_CHUNKED, body=b"0\r\nA: 1\r\n\r\n") + GET)
    assert [e[0] for e in events] == ["request", "end", "PAUSED", "request", "end", "PAUSED", "CLOSED"]


# ---------------------------------------------------------------------- limits are bounded


def test_buffered_memory_stays_within_the_limits() -> None:
    limits = Limits(max_head=1000, max_chunk_line=100, max_trailers=1000)
    # Each of these, fed a byte at a time, fails within a limit plus one byte.
    for data, limit in [
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 2000, 1000),
        (chunked(TE_CHUNKED, body=b"1" + b"0" * 200), 100),
        (chunked(TE_CHUNKED, body=b"0\r\nX: " + b"a" * 2000), 1000),
    ]:
        parser = RequestParser(limits)
        with pytest.raises(HandshakeRejected):
            for i in range(len(data)):
                parser.feed(data[i : i + 1])
                while not isinstance(parser.next_event(), Sentinel):
                    pass
                assert parser.buffered <= limit + 2
        assert i < len(data) - 1


# ---------------------------------------------------------------------- responses


def responses(
    data: bytes | Iterable[bytes], method: str = "GET", limits: Limits = DEFAULT, eof: bool = True
) -> list[Norm]:
    return run(ResponseParser(limits, request_method=method), data, eof)


def response_error(data: bytes, method: str = "GET", limits: Limits = DEFAULT, eof: bool = True) -> str:
    with pytest.raises(InvalidHandshake) as info:
        responses(data, method, limits, eof)
    assert not isinstance(info.value, HandshakeRejected)
    return str(info.value)


ACCEPTED = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: " + hs.accept_key(KEY).encode() + b"\r\n\r\n"
)


def test_101_ends_with_its_head_and_the_rest_is_the_new_protocol() -> None:
    frame = b"\x81\x05hello"
    parser = ResponseParser()
    parser.feed(ACCEPTED + frame)
    events = drain(parser)
    assert [norm(e)[0] for e in events] == ["response", "end", "PAUSED"]
    response = events[0]
    assert isinstance(response, Response) and response.status == 101
    assert hs.check_response(response, KEY) is None
    assert not parser.keep_alive
    with pytest.raises(RuntimeError):
        parser.start_next()
    assert parser.trailing_data() == frame


def test_101_without_content_length_does_not_read_to_eof() -> None:
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 101 Switching Protocols\r\nContent-Length: 50\r\n\r\nxyz")
    assert [norm(e)[0] for e in drain(parser)] == ["response", "end", "PAUSED"]
    assert parser.trailing_data() == b"xyz"


def test_connect_2xx_is_a_tunnel() -> None:
    tls = b"\x16\x03\x03\x00\x10" + bytes(16)
    parser = ResponseParser(request_method="CONNECT")
    parser.feed(b"HTTP/1.1 200 Connection established\r\n\r\n" + tls)
    events = drain(parser)
    assert [norm(e)[:3] for e in events] == [
        ("response", 200, "Connection established"),
        ("end", ()),
        ("PAUSED",),
    ]
    assert parser.trailing_data() == tls
    # HTTP/1.0 proxies too, with headers that would frame a body otherwise.
    parser = ResponseParser(request_method="CONNECT")
    parser.feed(b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\n" + tls)
    assert [norm(e)[0] for e in drain(parser)] == ["response", "end", "PAUSED"]
    assert parser.trailing_data() == tls


def test_connect_refused_has_a_body() -> None:
    data = b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 4\r\n\r\ndeny"
    assert responses(data, "CONNECT")[:3] == [
        ("response", 407, "Proxy Authentication Required", (("Content-Length", "4"),)),
        ("data", b"deny"),
        ("end", ()),
    ]


def test_read_until_close() -> None:
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n\r\nno ")
    assert [norm(e)[0] for e in drain(parser)] == ["response", "data", "NEED_DATA"]
    assert not parser.keep_alive
    parser.feed(b"way")
    assert parser.next_event() == Data(b"way")
    assert parser.next_event() is NEED_DATA
    parser.feed_eof()
    assert isinstance(parser.next_event(), EndOfMessage)
    assert parser.next_event() is PAUSED


def test_read_until_close_is_bounded_by_max_body() -> None:
    limits = Limits(max_body=10)
    assert responses(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 10, limits=limits)[1] == ("data", b"x" * 10)
    message = response_error(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 11, limits=limits, eof=False)
    assert "larger than 10 bytes" in message


def test_head_responses_have_no_body() -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    parser = ResponseParser(request_method="HEAD")
    parser.feed(data + b"HTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nx")
    assert [norm(e)[0] for e in drain(parser)] == ["response", "end", "PAUSED"]
    assert parser.keep_alive
    parser.start_next(request_method="GET")
    assert [norm(e)[:2] for e in drain(parser)] == [
        ("response", 404),
        ("data", b"x"),
        ("end", ()),
        ("PAUSED",),
    ]


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_have_no_body(status: int) -> None:
    data = f"HTTP/1.1 {status} X\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    assert [e[0] for e in responses(data)] == ["response", "end", "PAUSED", "CLOSED"]


def test_interim_responses_come_before_the_final_one() -> None:
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    assert responses(data) == [
        ("response", 100, "Continue", ()),
        ("response", 103, "Early Hints", (("Link", "</s.css>; rel=preload"),)),
        ("response", 200, "OK", (("Content-Length", "2"),)),
        ("data", b"ok"),
        ("end", ()),
        ("PAUSED",),
        ("CLOSED",),
    ]


def test_chunked_response_with_trailers() -> None:
    data = b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nfail\r\n0\r\nX-Why: db\r\n\r\n"
    assert responses(data)[1:3] == [("data", b"fail"), ("end", (("X-Why", "db"),))]


def test_response_transfer_codings() -> None:
    # Another coding before chunked: framed by chunked, the data left encoded.
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n\x1f\x8b\r\n0\r\n\r\n"
    assert responses(data)[1] == ("data", b"\x1f\x8b")
    # chunked not last: the body runs to the end of the connection (RFC 9112 6.3).
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n2\r\nzz"
    parser = ResponseParser()
    assert [e[1] for e in run(parser, data) if e[0] == "data"] == [b"2\r\nzz"]
    # With Content-Length too: chunked wins, and the connection closes after.
    parser = ResponseParser()
    parser.feed(
        b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"
    )
    assert [norm(e) for e in drain(parser)][1:] == [("data", b"x"), ("end", ()), ("PAUSED",)]
    assert not parser.keep_alive


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 1x\r\n\r\n", "invalid Content-Length"),
        (
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "invalid Content-Length",
        ),
        (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 100\r\n\r\n", "larger than 10 bytes"),
        (b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", "Transfer-Encoding"),
        (b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked;x\r\n\r\n", "Transfer-Encoding"),
        (b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: \r\n\r\n", "Transfer-Encoding"),
        (b"HTTP/1.0 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.0"),
    ],
)
def test_response_framing_errors_come_after_the_head(head: bytes, expected: str) -> None:
    parser = ResponseParser(Limits(max_body=10))
    parser.feed(head + b"body")
    response = parser.next_event()
    assert isinstance(response, Response) and response.status == 403  # the caller learns the status
    with pytest.raises(InvalidHandshake) as info:
        parser.next_event()
    assert expected in str(info.value)
    with pytest.raises(InvalidHandshake) as again:
        parser.next_event()
    assert again.value is info.value


@pytest.mark.parametrize(
    "line",
    [
        b"HTTP/1.1 1O1 Bad",
        b"HTTP/1.1",
        b"ICY 200 OK",
        b"HTTP/1.1 1011 X",
        b"HTTP/2.0 200 OK",
        b"HTTP/1.1 099 X",
        b"HTTP/1.1  200 OK",
        b"http/1.1 200 OK",
        b"HTTP/1.1 200 O\x00K",
        b"HTTP/1.1 200 OK\rX",
    ],
    ids=repr,
)
def test_malformed_status_lines(line: bytes) -> None:
    message = response_error(line + b"\r\nX: y\r\n\r\n")
    assert message.startswith("malformed HTTP status line from the server: ")
    assert repr(line[:10])[2:-1] in message


@pytest.mark.parametrize(
    ("line", "status", "reason"),
    [
        (b"HTTP/1.1 101", 101, "Switching Protocols"),
        (b"HTTP/1.1 200 ", 200, "OK"),
        (b"HTTP/1.0 999 Request denied", 999, "Request denied"),
        (b"HTTP/1.1 418 I'm a \xe9 teapot\t", 418, "I'm a \xe9 teapot\t"),
    ],
)
def test_status_lines(line: bytes, status: int, reason: str) -> None:
    response = parse_response(line)
    assert (response.status, response.reason) == (status, reason)


def test_garbage_instead_of_a_response_fails_at_once() -> None:
    for garbage in (b"SSH-2.0-OpenSSH_9.6\r\n", b"\x15\x03\x03", b"<html>", b"\r\n", b"H\n", b"HTTP:"):
        message = response_error(garbage, eof=False)
        assert message.startswith("malformed HTTP status line from the server: ")


@pytest.mark.parametrize("line", ["broken header", "X : y", " folded", "X: \x00", "X: a\nb"], ids=repr)
def test_malformed_response_headers(line: str) -> None:
    message = response_error(b"HTTP/1.1 200 OK\r\nA: b\r\n" + line.encode("latin-1") + b"\r\n\r\n")
    assert message.startswith("malformed HTTP response from the server: ")


def test_response_eof() -> None:
    assert responses(b"") == [("CLOSED",)]
    assert "middle of the response head" in response_error(b"HTTP/1.1 200 OK\r\n")
    assert "middle of the response body" in response_error(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"
    assert "middle of the response body" in response_error(data)


def test_response_max_head() -> None:
    limits = Limits(max_head=64)
    head = b"HTTP/1.1 200 OK\r\nX: " + b"a" * 40 + b"\r\n\r\n"
    assert len(head) == 64
    assert responses(head, "HEAD", limits)[0][0] == "response"
    message = response_error(head[:-4] + b"a\r\n\r\n", "HEAD", limits, eof=False)
    assert message == "the server's response head is larger than 64 bytes"


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"HTTP/1.1 200 OK\r\n\r\n", False),  # read until close
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n", True),
    ],
)
def test_response_keep_alive(head: bytes, expected: bool) -> None:
    parser = ResponseParser()
    parser.feed(head)
    drain(parser)
    assert parser.keep_alive is expected


# ---------------------------------------------------------------------- request smuggling
# One regression test per hole: each input must be refused (or framed) the one way.


@pytest.mark.parametrize(
    "size_line", [b"5 ", b" 5", b"5\t", b"5\n", b"5\r", b"5;a b", b"5;", b"5\rx\n"], ids=repr
)
def test_smuggling_chunk_size_lines(size_line: bytes) -> None:
    body = size_line + b"\r\nhello\r\n0\r\n\r\n"
    assert rejected(chunked(TE_CHUNKED, body=body)).status == 400


def test_smuggling_te_and_cl_is_answered_then_closed() -> None:
    # A front end framing by Content-Length would see "G" + a second request; we frame by chunked.
    data = chunked(TE_CHUNKED, "Content-Length: 4", body=b"1\r\nG\r\n0\r\n\r\n")
    parser = RequestParser()
    parser.feed(data + b"GET /admin HTTP/1.1\r\nHost: h\r\n\r\n")
    assert [norm(e) for e in drain(parser)][1:] == [("data", b"G"), ("end", ()), ("PAUSED",)]
    assert not parser.keep_alive  # the server answers and closes: /admin is never read


@pytest.mark.parametrize(
    ("value", "status"), [("chunked, gzip", 400), ("gzip, chunked", 501), ("chunked, chunked", 400)]
)
def test_smuggling_transfer_encoding_lists(value: str, status: int) -> None:
    assert rejected(chunked(f"Transfer-Encoding: {value}", body=b"0\r\n\r\n")).status == status


@pytest.mark.parametrize("value", ["+5", "5, 6", " 5 5"], ids=repr)
def test_smuggling_content_length(value: str) -> None:
    assert rejected(post(f"Content-Length:{value}", body=b"hello")).status == 400


def test_smuggling_missing_host() -> None:
    assert rejected(b"GET / HTTP/1.1\r\n\r\n").status == 400


def test_smuggling_two_hosts() -> None:
    assert rejected(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").status == 400


def test_smuggling_absolute_form_authority_wins() -> None:
    request = first_request(b"GET http://good.example/ HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    assert request.host == "good.example"
    assert request.headers.get_all("Host") == ["good.example"]


def test_smuggling_leading_empty_line_is_ignored() -> None:
    assert requests(b"\r\n" + GET) == requests(GET)


def test_smuggling_space_before_colon() -> None:
    assert rejected(b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n").status == 400


def test_smuggling_obs_fold() -> None:
    data = b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n Transfer-Encoding: chunked\r\n\r\n"
    assert rejected(data).status == 400


def test_smuggling_nul_in_a_value() -> None:
    assert rejected(b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n").status == 400


def test_smuggling_bare_lf_header_line_is_not_a_header() -> None:
    # A parser accepting bare LF would see Transfer-Encoding; one splitting on CRLF would not.
    data = b"POST / HTTP/1.1\r\nHost: h\r\nX: a\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc"
    assert rejected(data).status == 400


def test_headers_type_is_the_handshake_one() -> None:
    assert hs.Headers is Headers and hs.Request is Request and hs.Response is Response
    assert hs.parse_request is parse_request and hs.parse_response is parse_response
