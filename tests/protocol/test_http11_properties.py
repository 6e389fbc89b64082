"""Property-based tests (hypothesis) of the HTTP/1.1 parser (wsline.protocol.http11).

* Splits: every way of cutting a valid stream of pipelined messages into pieces
  gives the events that feeding it whole gives.
* Model: the events are those of the generated messages, and those of a small
  reference decoder written here (it only has to be right on valid input).
* Garbage: arbitrary bytes, and valid streams with a few bytes changed, raise
  nothing but HandshakeRejected (requests) or InvalidHandshake (responses), the
  events keep their grammar, and what the parser holds stays within its limits.

As in test_properties.py the budget is fixed and the examples are derandomized;
``WSLINE_HYPOTHESIS=explore`` switches to random examples and a larger budget.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from itertools import pairwise

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsline.errors import HandshakeRejected, InvalidHandshake
from wsline.protocol.http11 import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    Data,
    EndOfMessage,
    Limits,
    Request,
    RequestParser,
    Response,
    ResponseParser,
    Sentinel,
)

EXPLORE = os.environ.get("WSLINE_HYPOTHESIS") == "explore"
PROFILE = settings(
    max_examples=3000 if EXPLORE else 200,
    deadline=None,
    derandomize=not EXPLORE,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Norm = tuple[object, ...]
REQUEST_STATUSES = frozenset({400, 413, 431, 501, 505})
#: Small limits, so that the garbage tests reach them.
SMALL = Limits(max_head=300, max_headers=8, max_body=400, max_chunk_line=24, max_trailers=80)


# ---------------------------------------------------------------------- messages


@dataclass
class Message:
    """A generated message, and the events it must give."""

    start_line: str
    headers: list[tuple[str, str]]  # as the parser gives them (OWS stripped)
    wire_headers: list[str]  # the lines as sent
    body: bytes = b""
    #: None: Content-Length (or no body); else the chunks, their extensions, trailers.
    chunks: list[tuple[bytes, bytes]] | None = None
    trailers: list[tuple[str, str]] = field(default_factory=list)
    wire_trailers: list[str] = field(default_factory=list)
    last_chunk: bytes = b"0"
    lead: bytes = b""  # empty lines before a request line

    def wire(self) -> bytes:
        head = "".join(f"{line}\r\n" for line in [self.start_line, *self.wire_headers]) + "\r\n"
        out = self.lead + head.encode("latin-1")
        if self.chunks is None:
            return out + self.body
        for data, ext in self.chunks:
            out += b"%x%s\r\n%s\r\n" % (len(data), ext, data)
        trailers = "".join(f"{line}\r\n" for line in self.wire_trailers).encode("latin-1")
        return out + self.last_chunk + b"\r\n" + trailers + b"\r\n"


names = st.from_regex(r"[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,12}", fullmatch=True).filter(
    lambda n: n.lower() not in ("host", "content-length", "transfer-encoding", "connection")
)
vchars = st.sampled_from([chr(c) for c in (*range(0x21, 0x7F), *range(0x80, 0x100))])
words = st.text(vchars, min_size=1, max_size=8)
values = st.builds(
    lambda ws, seps: "".join(s + w for s, w in zip(["", *seps], ws, strict=False)),
    st.lists(words, max_size=4),
    st.lists(st.sampled_from([" ", "\t", "  ", " \t "]), min_size=3, max_size=3),
)
ows = st.sampled_from(["", " ", "\t", "  ", " \t"])


@st.composite
def fields(draw: st.DrawFn, max_size: int = 5) -> tuple[list[tuple[str, str]], list[str]]:
    parsed: list[tuple[str, str]] = []
    wire: list[str] = []
    for name, value in draw(st.lists(st.tuples(names, values), max_size=max_size)):
        parsed.append((name, value))
        wire.append(f"{name}:{draw(ows)}{value}{draw(ows)}")
    return parsed, wire


tokens = st.from_regex(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,6}", fullmatch=True)
quoted = st.lists(
    st.one_of(
        st.sampled_from([chr(c) for c in (0x09, 0x20, 0x21, *range(0x23, 0x5C), *range(0x5D, 0x7F))]),
        st.sampled_from(['\\"', "\\\\", "\\a", "\\\t"]),
    ),
    max_size=6,
).map(lambda parts: '"' + "".join(parts) + '"')
bws = st.sampled_from(["", " ", "\t", " \t"])


@st.composite
def chunk_ext(draw: st.DrawFn) -> bytes:
    out = ""
    for _ in range(draw(st.integers(0, 2))):
        out += f"{draw(bws)};{draw(bws)}{draw(tokens)}"
        if draw(st.booleans()):
            out += f"{draw(bws)}={draw(bws)}{draw(st.one_of(tokens, quoted))}"
    return out.encode("latin-1")


@st.composite
def bodies(draw: st.DrawFn, message: Message, allow_chunked: bool = True, allow_none: bool = True) -> Message:
    kinds = ["none"] if allow_none else []
    kinds += ["length", "chunked"] if allow_chunked else ["length"]
    kind = draw(st.sampled_from(kinds))
    if kind == "length":
        message.body = draw(st.binary(max_size=80))
        message.headers.append(("Content-Length", str(len(message.body))))
        message.wire_headers.append(f"Content-Length: {len(message.body)}")
    elif kind == "chunked":
        chunks = draw(st.lists(st.tuples(st.binary(min_size=1, max_size=40), chunk_ext()), max_size=4))
        message.chunks = chunks
        message.body = b"".join(data for data, _ in chunks)
        message.headers.append(("Transfer-Encoding", "chunked"))
        message.wire_headers.append("Transfer-Encoding: chunked")
        message.trailers, message.wire_trailers = draw(fields(max_size=3))
        message.last_chunk = b"0" * draw(st.integers(1, 3)) + draw(chunk_ext())
    return message


@st.composite
def requests(draw: st.DrawFn) -> Message:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "OPTIONS", "M-X"]))
    target = draw(st.from_regex(r"/[A-Za-z0-9/?=&%._~!$'()*+,;:@|^{}\[\]-]{0,20}", fullmatch=True))
    version = draw(st.sampled_from(["1.1", "1.1", "1.1", "1.0", "1.3"]))
    parsed, wire = draw(fields())
    if version != "1.0" or draw(st.booleans()):
        host = draw(st.sampled_from(["h", "example.com:8080", "[::1]", "127.0.0.1:1", "xn--bcher-kva.ch"]))
        at = draw(st.integers(0, len(parsed)))
        parsed.insert(at, ("Host", host))
        wire.insert(at, f"Host:{draw(ows)}{host}{draw(ows)}")
    message = Message(f"{method} {target} HTTP/{version}", parsed, wire)
    message.lead = b"\r\n" * draw(st.integers(0, 2))
    return draw(bodies(message, allow_chunked=version != "1.0"))


def expected_request(message: Message) -> list[Norm]:
    method, target, version = message.start_line.split(" ")
    head = ("request", method, target, (1, int(version[-1])), tuple(message.headers))
    data = [("data", message.body)] if message.body else []
    return [head, *data, ("end", tuple(message.trailers)), ("PAUSED",)]


# ---------------------------------------------------------------------- driving a parser


def norm(event: object) -> Norm:
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


def cut(stream: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(stream)}), len(stream)]
    return [stream[a:b] for a, b in pairwise(bounds)]


def feed_all(
    parser: RequestParser | ResponseParser,
    pieces: list[bytes],
    methods: list[str] | None = None,
    bound: int | None = None,
) -> list[Norm]:
    """Feed the pieces then EOF, draining after each; Data merged per message, NEED_DATA left out.

    ``methods``: the request method each response answers (ResponseParser).
    ``bound``: what the parser may hold whenever it needs data.
    """
    out: list[Norm] = []
    answered = 0

    def take() -> bool:
        nonlocal answered
        while True:
            event = parser.next_event()
            if event is NEED_DATA:
                if bound is not None:
                    assert parser.buffered <= bound, (parser.buffered, bound)
                return True
            item = norm(event)
            if isinstance(event, Data):
                assert event.data and type(event.data) is bytes
                if out[-1][0] == "data":
                    out[-1] = ("data", out[-1][1] + event.data)  # type: ignore[operator]
                    continue
            out.append(item)
            if event is PAUSED:
                answered += 1
                if isinstance(parser, ResponseParser):
                    status = next(e[1] for e in reversed(out) if e[0] == "response")
                    assert isinstance(status, int)
                    if status == 101 or (
                        methods and methods[answered - 1] == "CONNECT" and status // 100 == 2
                    ):
                        parser.trailing_data()  # a new protocol: the parser is done
                        out.append(("switched",))
                        return False
                    if methods is not None and answered >= len(methods):
                        return False
                    parser.start_next(methods[answered] if methods else None)
                else:
                    parser.start_next()
            elif event is CLOSED:
                return False

    for piece in pieces:
        parser.feed(piece)
        if not take():
            return out
    parser.feed_eof()
    take()
    return out


def check_grammar(events: list[Norm], kind: str, limits: Limits) -> None:
    """Messages are head, Data..., end, PAUSED; CLOSED only last; bodies within max_body."""
    state = "idle"
    size = 0
    for i, event in enumerate(events):
        tag = event[0]
        if state == "idle":
            if tag in ("CLOSED", "switched"):
                assert i == len(events) - 1
                continue
            assert tag == kind, events
            if kind == "response" and 100 <= event[1] < 200 and event[1] != 101:  # type: ignore[operator]
                continue  # interim: another head follows
            state, size = "body", 0
        elif state == "body":
            if tag == "data":
                size += len(event[1])  # type: ignore[arg-type]
                assert size <= limits.max_body
            else:
                assert tag == "end", events
                state = "ended"
        else:
            assert tag == "PAUSED", events
            state = "idle"


# ---------------------------------------------------------------------- the reference decoder


def reference_requests(stream: bytes) -> list[Norm]:
    """A plain decoder of valid request streams: split on CRLF, read lengths and chunks."""
    out: list[Norm] = []
    pos = 0
    while True:
        while stream.startswith(b"\r\n", pos):
            pos += 2
        if pos == len(stream):
            return [*out, ("CLOSED",)]
        end = stream.index(b"\r\n\r\n", pos)
        lines = stream[pos:end].decode("latin-1").split("\r\n")
        pos = end + 4
        method, target, version = lines[0].split(" ")
        headers = [(n, v.strip(" \t")) for n, v in (line.split(":", 1) for line in lines[1:])]
        out.append(("request", method, target, (1, int(version[-1])), tuple(headers)))
        lower = {n.lower(): v for n, v in headers}
        body, trailers, pos = reference_body(stream, pos, lower)
        if body:
            out.append(("data", body))
        out += [("end", tuple(trailers)), ("PAUSED",)]


def reference_body(
    stream: bytes, pos: int, lower: dict[str, str]
) -> tuple[bytes, list[tuple[str, str]], int]:
    if "transfer-encoding" in lower:
        body = b""
        while True:
            line_end = stream.index(b"\r\n", pos)
            size = int(stream[pos:line_end].split(b";")[0].strip(b" \t"), 16)
            pos = line_end + 2
            if not size:
                break
            body += stream[pos : pos + size]
            assert stream[pos + size : pos + size + 2] == b"\r\n"
            pos += size + 2
        trailers = []
        while not stream.startswith(b"\r\n", pos):
            line_end = stream.index(b"\r\n", pos)
            name, value = stream[pos:line_end].decode("latin-1").split(":", 1)
            trailers.append((name, value.strip(" \t")))
            pos = line_end + 2
        return body, trailers, pos + 2
    length = int(lower.get("content-length", "0"))
    return stream[pos : pos + length], [], pos + length


# ---------------------------------------------------------------------- requests: splits and model


@PROFILE
@given(messages=st.lists(requests(), min_size=1, max_size=4), data=st.data())
def test_request_splits_give_the_same_events(messages: list[Message], data: st.DataObject) -> None:
    stream = b"".join(m.wire() for m in messages)
    whole = feed_all(RequestParser(), [stream])
    expected = [event for m in messages for event in expected_request(m)] + [("CLOSED",)]
    assert whole == expected
    assert reference_requests(stream) == expected
    for _ in range(3):
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
        assert feed_all(RequestParser(), cut(stream, cuts)) == whole
    assert feed_all(RequestParser(), cut(stream, list(range(len(stream))))) == whole  # a byte at a time


@PROFILE
@given(messages=st.lists(requests(), min_size=1, max_size=3), data=st.data())
def test_request_trailing_data_after_any_message(messages: list[Message], data: st.DataObject) -> None:
    """Upgrading after message k hands over exactly the bytes after it, however they came."""
    wires = [m.wire() for m in messages]
    k = data.draw(st.integers(0, len(messages) - 1))
    stream = b"".join(wires)
    after = len(b"".join(wires[: k + 1]))
    parser = RequestParser()
    pieces = cut(stream, data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    done = 0
    for n, piece in enumerate(pieces):
        parser.feed(piece)
        event = parser.next_event()
        while event is not NEED_DATA and not (event is PAUSED and done == k):
            if event is PAUSED:
                done += 1
                parser.start_next()
            event = parser.next_event()
        if event is PAUSED:
            got = parser.trailing_data() + b"".join(pieces[n + 1 :])
            break
    else:
        raise AssertionError("message k never ended")
    assert got == stream[after:]


# ---------------------------------------------------------------------- responses: splits and model


@st.composite
def response_sequences(draw: st.DrawFn) -> tuple[list[Message], list[str], list[Norm]]:
    """Responses (interim ones included) to requests of these methods, and the expected events."""
    messages: list[Message] = []
    methods: list[str] = []
    expected: list[Norm] = []
    count = draw(st.integers(1, 4))
    for i in range(count):
        method = draw(st.sampled_from(["GET", "GET", "HEAD", "POST"]))
        methods.append(method)
        for status in draw(st.lists(st.sampled_from([100, 102, 103]), max_size=2)):
            parsed, wire = draw(fields(max_size=2))
            messages.append(Message(f"HTTP/1.1 {status} Info", parsed, wire))
            expected.append(("response", status, "Info", tuple(parsed)))
        status = draw(st.sampled_from([200, 201, 204, 301, 304, 404, 500, 999]))
        version = draw(st.sampled_from(["1.1", "1.0"]))
        reason = draw(st.sampled_from(["", "OK", "Some \t reason \xe9"]))
        parsed, wire = draw(fields(max_size=3))
        message = Message(
            f"HTTP/{version} {status} {reason}".rstrip(" ")
            if not reason
            else f"HTTP/{version} {status} {reason}",
            parsed,
            wire,
        )
        no_body = method == "HEAD" or status in (204, 304)
        last = i == count - 1
        if no_body:
            if draw(st.booleans()):  # framing headers that must not frame anything
                message.headers.append(("Content-Length", "12"))
                message.wire_headers.append("Content-Length: 12")
        elif last and draw(st.booleans()):
            message.body = draw(st.binary(min_size=1, max_size=60))  # read until close
        else:
            # (no framing header would mean "until the connection closes")
            message = draw(bodies(message, allow_chunked=version == "1.1", allow_none=False))
        messages.append(message)
        shown = (
            reason
            or {
                200: "OK",
                201: "",
                204: "No Content",
                301: "Moved Permanently",
                304: "Not Modified",
                404: "Not Found",
                500: "Internal Server Error",
                999: "",
            }[status]
        )
        expected.append(("response", status, shown, tuple(message.headers)))
        if message.body and not no_body:
            expected.append(("data", message.body))
        expected += [("end", tuple(message.trailers)), ("PAUSED",)]
    return messages, methods, expected


def reference_responses(stream: bytes, methods: list[str]) -> list[Norm]:
    """A plain decoder of valid response streams."""
    out: list[Norm] = []
    pos = 0
    for method in methods:
        while True:
            end = stream.index(b"\r\n\r\n", pos)
            lines = stream[pos:end].decode("latin-1").split("\r\n")
            pos = end + 4
            status = int(lines[0][9:12])
            headers = [(n, v.strip(" \t")) for n, v in (line.split(":", 1) for line in lines[1:])]
            out.append(("response", status, lines[0][13:], tuple(headers)))
            if status >= 200:
                break
        lower = {n.lower(): v for n, v in headers}
        if method == "HEAD" or status in (204, 304):
            body, trailers = b"", list[tuple[str, str]]()
        elif "transfer-encoding" in lower or "content-length" in lower:
            body, trailers, pos = reference_body(stream, pos, lower)
        else:
            body, trailers, pos = stream[pos:], [], len(stream)
        if body:
            out.append(("data", body))
        out += [("end", tuple(trailers)), ("PAUSED",)]
    return out


def fix_reasons(events: list[Norm]) -> list[Norm]:
    """The reference decoder does not know the default reason phrases."""
    return [(e[0], e[1], "", e[3]) if e[0] == "response" else e for e in events]


@PROFILE
@given(sequence=response_sequences(), data=st.data())
def test_response_splits_give_the_same_events(
    sequence: tuple[list[Message], list[str], list[Norm]], data: st.DataObject
) -> None:
    messages, methods, expected = sequence
    stream = b"".join(m.wire() for m in messages)
    parser = ResponseParser(request_method=methods[0])
    whole = feed_all(parser, [stream], methods)
    assert whole == expected
    assert fix_reasons(reference_responses(stream, methods)) == fix_reasons(expected)
    for _ in range(3):
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
        got = feed_all(ResponseParser(request_method=methods[0]), cut(stream, cuts), methods)
        assert got == whole


# ---------------------------------------------------------------------- garbage


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """A valid stream with a few bytes flipped, inserted or deleted (near misses)."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "insert", "delete", "replace"]))
        byte = draw(st.sampled_from(b'\r\n \t;:,="\\0aF\x00\x7f\x80-+'))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data.insert(at, byte)
        elif op == "delete":
            del data[at]
        else:
            data[at] = byte
    return bytes(data)


request_streams = st.lists(requests(), min_size=1, max_size=3).map(lambda ms: b"".join(m.wire() for m in ms))
request_garbage = st.one_of(
    st.binary(max_size=400),
    mutated(request_streams),
    st.builds(lambda a, b: a + b, request_streams, st.binary(max_size=100)),
)


def bound(limits: Limits) -> int:
    return max(limits.max_head, limits.max_chunk_line + 1, limits.max_trailers + 2)


@PROFILE
@given(stream=request_garbage, cuts=st.lists(st.integers(0, 600), max_size=8), small=st.booleans())
def test_request_garbage_raises_only_handshake_rejected(stream: bytes, cuts: list[int], small: bool) -> None:
    limits = SMALL if small else Limits()
    outcomes: list[tuple[object, ...]] = []
    for pieces in ([stream], cut(stream, cuts)):
        parser = RequestParser(limits)
        try:
            events = feed_all(parser, pieces, bound=bound(limits))
        except HandshakeRejected as exc:
            assert exc.status in REQUEST_STATUSES, exc
            assert not parser.keep_alive
            outcomes.append(("rejected",))
            continue
        check_grammar(events, "request", limits)
        outcomes.append(("events", *events))
    # Whether a stream is refused does not depend on how it is cut (where, and with
    # which status, may: a limit or an early check can come first).
    assert outcomes[0][0] == outcomes[1][0]
    if outcomes[0][0] == "events":
        assert outcomes[0] == outcomes[1]


response_streams = response_sequences().map(lambda s: b"".join(m.wire() for m in s[0]))
response_garbage = st.one_of(st.binary(max_size=400), mutated(response_streams))


@PROFILE
@given(
    stream=response_garbage,
    cuts=st.lists(st.integers(0, 600), max_size=8),
    method=st.sampled_from(["GET", "HEAD", "CONNECT"]),
    small=st.booleans(),
)
def test_response_garbage_raises_only_invalid_handshake(
    stream: bytes, cuts: list[int], method: str, small: bool
) -> None:
    limits = SMALL if small else Limits()
    outcomes: list[tuple[object, ...]] = []
    for pieces in ([stream], cut(stream, cuts)):
        parser = ResponseParser(limits, request_method=method)
        try:
            events = feed_all(parser, pieces, [method] * 8, bound=bound(limits))
        except HandshakeRejected as exc:
            raise AssertionError(f"a server-side error from the response parser: {exc!r}") from None
        except InvalidHandshake as exc:
            assert str(exc)
            outcomes.append(("invalid",))
            continue
        check_grammar(events, "response", limits)
        outcomes.append(("events", *events))
    assert outcomes[0][0] == outcomes[1][0]
    if outcomes[0][0] == "events":
        assert outcomes[0] == outcomes[1]
