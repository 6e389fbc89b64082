"""Tests for the sans-I/O RFC 6455 state machine (wsline.protocol.connection)."""

from __future__ import annotations

import array
import random
import struct
from dataclasses import dataclass

import pytest

from wsline.errors import InvalidPayload, PayloadTooBig, ProtocolError
from wsline.protocol.connection import (
    CloseFrame,
    Connection,
    Failure,
    InvalidState,
    Ping,
    Pong,
    State,
)
from wsline.protocol.frames import Opcode, build_frame

MASK = b"\x5a\xa5\x0f\xf0"


# ---------------------------------------------------------------------- helpers


@dataclass
class Frame:
    fin: bool
    rsv1: bool
    rsv2: bool
    rsv3: bool
    opcode: int
    masked: bool
    payload: bytes  # unmasked


def parse_frames(data: bytes) -> list[Frame]:
    """A tiny independent frame parser for what the core sends; must consume everything."""
    out: list[Frame] = []
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= 2, "truncated frame header"
        b0, b1 = data[pos], data[pos + 1]
        pos += 2
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack_from("!H", data, pos)
            assert length >= 126, "non-minimal 16-bit length"
            pos += 2
        elif length == 127:
            (length,) = struct.unpack_from("!Q", data, pos)
            assert length >= 65536, "non-minimal 64-bit length"
            pos += 8
        mask = None
        if b1 & 0x80:
            mask = data[pos : pos + 4]
            assert len(mask) == 4
            pos += 4
        payload = data[pos : pos + length]
        assert len(payload) == length, "truncated payload"
        pos += length
        if mask is not None:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        out.append(
            Frame(
                fin=bool(b0 & 0x80),
                rsv1=bool(b0 & 0x40),
                rsv2=bool(b0 & 0x20),
                rsv3=bool(b0 & 0x10),
                opcode=b0 & 0x0F,
                masked=mask is not None,
                payload=payload,
            )
        )
    return out


def parse_one(data: bytes) -> Frame:
    frames = parse_frames(data)
    assert len(frames) == 1, frames
    return frames[0]


def incoming(
    conn: Connection,
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: bytes = MASK,
) -> bytes:
    """A frame as ``conn``'s peer sends it: masked towards a server, unmasked towards a client."""
    return build_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=None if conn.is_client else mask)


def with_bits(frame: bytes, bits: int) -> bytes:
    return bytes([frame[0] | bits]) + frame[1:]


def raw_header(conn: Connection, opcode: int, length: int, fin: bool = True) -> bytes:
    """Just the header (and masking key, towards a server) of a frame announcing ``length``."""
    b0 = opcode | (0x80 if fin else 0)
    m = 0 if conn.is_client else 0x80
    if length < 126:
        head = bytes([b0, m | length])
    elif length < 65536:
        head = struct.pack("!BBH", b0, m | 126, length)
    else:
        head = struct.pack("!BBQ", b0, m | 127, length)
    return head if conn.is_client else head + MASK


def norm(event: object) -> tuple[object, ...]:
    """A comparable form of an event (type-exact for messages)."""
    if type(event) is str:
        return ("text", event)
    if type(event) is bytes:
        return ("binary", event)
    if isinstance(event, Ping):
        return ("ping", event.payload)
    if isinstance(event, Pong):
        return ("pong", event.payload)
    if isinstance(event, CloseFrame):
        return ("close", event.code, event.reason)
    if isinstance(event, Failure):
        return ("failure", event.error.code)
    raise AssertionError(f"unexpected event {event!r}")


def failure_of(events: list[object], code: int) -> ProtocolError:
    """Assert that the last event is a Failure with ``code``; return its error."""
    assert events, "no events"
    last = events[-1]
    assert isinstance(last, Failure), events
    assert last.error.code == code
    assert isinstance(last.error, ProtocolError)
    return last.error


def outbox_frames(conn: Connection) -> list[Frame]:
    return [f for data in conn.data_to_send() for f in parse_frames(data)]


@pytest.fixture(params=[False, True], ids=["server", "client"])
def conn(request: pytest.FixtureRequest) -> Connection:
    return Connection(is_client=request.param)


def peer_of(conn: Connection, **kwargs: object) -> Connection:
    return Connection(is_client=not conn.is_client, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- basics


def test_initial_state(conn: Connection) -> None:
    assert conn.state is State.OPEN
    assert conn.close_code is None
    assert conn.close_reason == ""
    assert conn.failure is None
    assert list(conn.data_to_send()) == []


def test_text_message(conn: Connection) -> None:
    events = conn.receive_data(incoming(conn, Opcode.TEXT, "héllo ✓".encode()))
    assert events == ["héllo ✓"]
    assert type(events[0]) is str


def test_binary_message(conn: Connection) -> None:
    events = conn.receive_data(incoming(conn, Opcode.BINARY, b"\x00\xffbin"))
    assert events == [b"\x00\xffbin"]
    assert type(events[0]) is bytes


def test_empty_messages(conn: Connection) -> None:
    data = incoming(conn, Opcode.TEXT, b"") + incoming(conn, Opcode.BINARY, b"")
    assert [norm(e) for e in conn.receive_data(data)] == [("text", ""), ("binary", b"")]


def test_several_frames_in_one_feed(conn: Connection) -> None:
    data = b"".join(incoming(conn, Opcode.TEXT, f"m{i}".encode()) for i in range(5))
    assert conn.receive_data(data) == [f"m{i}" for i in range(5)]


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_receive_accepts_bytes_like(conn: Connection, kind: type) -> None:
    data = incoming(conn, Opcode.BINARY, b"abc") + incoming(conn, Opcode.TEXT, b"x")
    assert conn.receive_data(kind(data)) == [b"abc", "x"]


@pytest.mark.parametrize("length", [125, 126, 65535, 65536, 100_000])
def test_length_encodings_received(conn: Connection, length: int) -> None:
    payload = bytes(i % 251 for i in range(length))
    assert conn.receive_data(incoming(conn, Opcode.BINARY, payload)) == [payload]


def test_fragmented_message_with_interleaved_control_frames(conn: Connection) -> None:
    data = (
        incoming(conn, Opcode.TEXT, b"Hel", fin=False)
        + incoming(conn, Opcode.PING, b"p1")
        + incoming(conn, Opcode.CONT, b"", fin=False)
        + incoming(conn, Opcode.PONG, b"p2")
        + incoming(conn, Opcode.CONT, b"lo")
    )
    events = conn.receive_data(data)
    assert [norm(e) for e in events] == [("ping", b"p1"), ("pong", b"p2"), ("text", "Hello")]


def test_fragmented_binary_message(conn: Connection) -> None:
    parts = [b"ab", b"", b"cd", b"e"]
    data = b"".join(
        incoming(conn, Opcode.BINARY if i == 0 else Opcode.CONT, p, fin=i == len(parts) - 1)
        for i, p in enumerate(parts)
    )
    events = conn.receive_data(data)
    assert events == [b"abcde"]
    assert type(events[0]) is bytes


def test_fragmented_all_empty(conn: Connection) -> None:
    data = incoming(conn, Opcode.TEXT, b"", fin=False) + incoming(conn, Opcode.CONT, b"")
    data += incoming(conn, Opcode.BINARY, b"", fin=False) + incoming(conn, Opcode.CONT, b"")
    assert [norm(e) for e in conn.receive_data(data)] == [("text", ""), ("binary", b"")]


def test_received_data_is_copied(conn: Connection) -> None:
    frame = incoming(conn, Opcode.BINARY, b"0123456789")
    buf = bytearray(frame + incoming(conn, Opcode.PING, b"pp")[:1])
    events = conn.receive_data(buf)
    buf[:] = b"\x00" * len(buf)
    assert events == [b"0123456789"]
    rest = incoming(conn, Opcode.PING, b"pp")[1:]
    assert [norm(e) for e in conn.receive_data(rest)] == [("ping", b"pp")]


def test_receive_data_does_not_release_callers_memoryview(conn: Connection) -> None:
    data = incoming(conn, Opcode.BINARY, b"abc")
    view = memoryview(data)
    assert conn.receive_data(view) == [b"abc"]
    assert bytes(view) == data  # the caller can still use its view


# ---------------------------------------------------------------------- masking rules


def test_unmasked_frame_to_server_fails() -> None:
    server = Connection(is_client=False)
    events = server.receive_data(build_frame(Opcode.TEXT, b"hi"))
    failure_of(events, 1002)
    assert server.failure is not None and server.failure.code == 1002


def test_masked_frame_to_client_fails() -> None:
    client = Connection(is_client=True)
    events = client.receive_data(build_frame(Opcode.TEXT, b"hi", mask=MASK))
    failure_of(events, 1002)


def test_masked_control_frame_to_client_fails() -> None:
    client = Connection(is_client=True)
    failure_of(client.receive_data(build_frame(Opcode.PING, b"", mask=MASK)), 1002)
    assert list(client.data_to_send()) == []


def test_unmasked_control_frame_to_server_fails() -> None:
    server = Connection(is_client=False)
    failure_of(server.receive_data(build_frame(Opcode.CLOSE, b"\x03\xe8")), 1002)
    assert server.close_rcvd is None
    assert list(server.data_to_send()) == []


# ---------------------------------------------------------------------- header violations


@pytest.mark.parametrize("bits", [0x40, 0x20, 0x10, 0x70, 0x60], ids=["rsv1", "rsv2", "rsv3", "all", "rsv12"])
@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.CLOSE])
def test_reserved_bits_without_extension(conn: Connection, bits: int, opcode: int) -> None:
    frame = with_bits(incoming(conn, opcode, b""), bits)
    failure_of(conn.receive_data(frame), 1002)
    assert list(conn.data_to_send()) == []


def test_rsv_on_continuation_without_extension(conn: Connection) -> None:
    data = incoming(conn, Opcode.TEXT, b"a", fin=False) + with_bits(incoming(conn, Opcode.CONT, b"b"), 0x40)
    failure_of(conn.receive_data(data), 1002)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes(conn: Connection, opcode: int) -> None:
    events = conn.receive_data(incoming(conn, Opcode.TEXT, b"ok") + incoming(conn, opcode, b"x"))
    assert events[0] == "ok"
    failure_of(events, 1002)
    assert len(events) == 2


@pytest.mark.parametrize("opcode", [3, 0xB])
def test_reserved_opcodes_fail_even_while_fragmented(conn: Connection, opcode: int) -> None:
    data = incoming(conn, Opcode.TEXT, b"a", fin=False) + incoming(conn, opcode, b"")
    failure_of(conn.receive_data(data), 1002)


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
@pytest.mark.parametrize("length", [126, 200, 65536])
def test_control_frame_too_long(conn: Connection, opcode: int, length: int) -> None:
    payload = b"\x03\xe8" + b"a" * (length - 2)
    failure_of(conn.receive_data(incoming(conn, opcode, payload)), 1002)
    assert list(conn.data_to_send()) == []
    assert conn.close_rcvd is None


def test_control_frame_too_long_detected_from_header(conn: Connection) -> None:
    events = conn.receive_data(raw_header(conn, Opcode.PING, 126))
    failure_of(events, 1002)


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_control_frame_of_125_bytes_is_fine(conn: Connection, opcode: int) -> None:
    payload = b"\x03\xe8" + b"r" * 123
    events = conn.receive_data(incoming(conn, opcode, payload))
    assert len(events) == 1
    assert not isinstance(events[0], Failure)


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_fragmented_control_frame(conn: Connection, opcode: int) -> None:
    failure_of(conn.receive_data(incoming(conn, opcode, b"", fin=False)), 1002)
    assert list(conn.data_to_send()) == []


@pytest.mark.parametrize("fin", [True, False])
def test_continuation_without_start(conn: Connection, fin: bool) -> None:
    failure_of(conn.receive_data(incoming(conn, Opcode.CONT, b"x", fin=fin)), 1002)


def test_continuation_after_complete_message(conn: Connection) -> None:
    data = incoming(conn, Opcode.TEXT, b"a", fin=False) + incoming(conn, Opcode.CONT, b"b")
    data += incoming(conn, Opcode.CONT, b"c")
    events = conn.receive_data(data)
    assert events[0] == "ab"
    failure_of(events, 1002)


@pytest.mark.parametrize("first", [Opcode.TEXT, Opcode.BINARY])
@pytest.mark.parametrize("second", [Opcode.TEXT, Opcode.BINARY])
@pytest.mark.parametrize("second_fin", [True, False])
def test_new_data_frame_while_fragmented(conn: Connection, first: int, second: int, second_fin: bool) -> None:
    data = incoming(conn, first, b"a", fin=False) + incoming(conn, second, b"b", fin=second_fin)
    failure_of(conn.receive_data(data), 1002)


def test_64bit_length_with_msb_set(conn: Connection) -> None:
    events = conn.receive_data(raw_header(conn, Opcode.BINARY, 1 << 63))
    error = failure_of(events, 1002)
    assert not isinstance(error, PayloadTooBig)


def test_64bit_length_with_msb_set_unlimited() -> None:
    for is_client in (False, True):
        conn = Connection(is_client=is_client, max_size=None)
        failure_of(conn.receive_data(raw_header(conn, Opcode.BINARY, (1 << 64) - 1)), 1002)


def test_nothing_parsed_after_failure(conn: Connection) -> None:
    failure_of(conn.receive_data(incoming(conn, 3, b"")), 1002)
    assert conn.receive_data(incoming(conn, Opcode.TEXT, b"late")) == []
    assert conn.receive_data(incoming(conn, Opcode.PING, b"late")) == []
    assert list(conn.data_to_send()) == []


def test_messages_before_bad_frame_are_delivered(conn: Connection) -> None:
    data = (
        incoming(conn, Opcode.TEXT, b"one")
        + incoming(conn, Opcode.BINARY, b"two")
        + incoming(conn, 0xC, b"bad")
        + incoming(conn, Opcode.TEXT, b"never")
    )
    events = conn.receive_data(data)
    assert [norm(e) for e in events] == [("text", "one"), ("binary", b"two"), ("failure", 1002)]


# ---------------------------------------------------------------------- UTF-8


INVALID_UTF8 = [
    b"\xff",
    b"\xc0\xaf",  # overlong
    b"\xe0\x80\xaf",  # overlong
    b"\xed\xa0\x80",  # surrogate
    b"\xf4\x90\x80\x80",  # > U+10FFFF
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",  # Autobahn 6.4
    b"\x80",
    b"ab\xe2\x82",  # truncated at the end
]


@pytest.mark.parametrize("bad", INVALID_UTF8)
def test_invalid_utf8_single_frame(conn: Connection, bad: bytes) -> None:
    error = failure_of(conn.receive_data(incoming(conn, Opcode.TEXT, bad)), 1007)
    assert isinstance(error, InvalidPayload)


@pytest.mark.parametrize("bad", INVALID_UTF8)
def test_invalid_utf8_in_binary_is_fine(conn: Connection, bad: bytes) -> None:
    assert conn.receive_data(incoming(conn, Opcode.BINARY, bad)) == [bad]


def test_invalid_utf8_fragmented_fails_fast(conn: Connection) -> None:
    # Autobahn 6.4.1: the bad fragment is detected before the final fragment arrives.
    first = incoming(conn, Opcode.TEXT, "κόσμε".encode(), fin=False)
    bad = incoming(conn, Opcode.CONT, b"\xf4\x90\x80\x80", fin=False)
    last = incoming(conn, Opcode.CONT, b"edited")
    assert conn.receive_data(first) == []
    failure_of(conn.receive_data(bad), 1007)
    assert conn.receive_data(last) == []


def test_invalid_utf8_fragmented_fails_at_first_bad_fragment(conn: Connection) -> None:
    data = (
        incoming(conn, Opcode.TEXT, b"ok", fin=False)
        + incoming(conn, Opcode.CONT, b"\xff", fin=False)
        + incoming(conn, Opcode.PING, b"after")
    )
    events = conn.receive_data(data)
    assert [norm(e) for e in events] == [("failure", 1007)]
    assert list(conn.data_to_send()) == []


@pytest.mark.parametrize("bad", [b"\xff", b"\xf4\x90", b"\xc0", b"\xe0\x80"])
def test_invalid_utf8_detected_inside_incomplete_frame(conn: Connection, bad: bytes) -> None:
    payload = b"valid text " + bad + b"x" * 200
    frame = incoming(conn, Opcode.TEXT, payload)
    header_len = len(frame) - len(payload)
    half = header_len + len(payload) // 2
    assert conn.receive_data(frame[:header_len]) == []
    failure_of(conn.receive_data(frame[header_len:half]), 1007)


def test_invalid_utf8_detected_in_first_half_of_fragment(conn: Connection) -> None:
    start = incoming(conn, Opcode.TEXT, b"abc", fin=False)
    payload = b"\xff" + b"y" * 300
    cont = incoming(conn, Opcode.CONT, payload, fin=False)
    assert conn.receive_data(start) == []
    failure_of(conn.receive_data(cont[: len(cont) // 2]), 1007)


@pytest.mark.parametrize("text", ["€", "𝄞", "é", "日本語", "a€b𝄞c"])
def test_utf8_char_split_across_fragments(conn: Connection, text: str) -> None:
    data = text.encode()
    frames = b"".join(
        incoming(conn, Opcode.TEXT if i == 0 else Opcode.CONT, data[i : i + 1], fin=i == len(data) - 1)
        for i in range(len(data))
    )
    assert conn.receive_data(frames) == [text]


def test_utf8_char_split_across_feeds(conn: Connection) -> None:
    frame = incoming(conn, Opcode.TEXT, "x€y𝄞z".encode())
    events: list[object] = []
    for i in range(len(frame)):
        events += conn.receive_data(frame[i : i + 1])
    assert events == ["x€y𝄞z"]


def test_utf8_truncated_at_end_of_fragmented_message(conn: Connection) -> None:
    data = incoming(conn, Opcode.TEXT, b"ab", fin=False) + incoming(conn, Opcode.CONT, b"\xe2\x82")
    failure_of(conn.receive_data(data), 1007)


def test_utf8_truncated_before_empty_final_fragment(conn: Connection) -> None:
    data = incoming(conn, Opcode.TEXT, b"ab\xe2\x82", fin=False)
    assert conn.receive_data(data) == []
    failure_of(conn.receive_data(incoming(conn, Opcode.CONT, b"")), 1007)


# ---------------------------------------------------------------------- size limits


def test_oversize_frame_detected_from_header_alone(conn: Connection) -> None:
    events = conn.receive_data(raw_header(conn, Opcode.BINARY, 2**40))
    error = failure_of(events, 1009)
    assert isinstance(error, PayloadTooBig)


def test_oversize_text_frame_from_header_alone() -> None:
    conn = Connection(is_client=False, max_size=1000)
    failure_of(conn.receive_data(raw_header(conn, Opcode.TEXT, 1001)), 1009)


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_max_size_boundary(conn: Connection, opcode: int) -> None:
    limited = Connection(is_client=conn.is_client, max_size=100)
    ok = incoming(limited, opcode, b"a" * 100)
    assert len(limited.receive_data(ok)) == 1
    assert limited.failure is None
    failure_of(limited.receive_data(incoming(limited, opcode, b"a" * 101)), 1009)


def test_oversize_total_over_fragments(conn: Connection) -> None:
    limited = Connection(is_client=conn.is_client, max_size=1000)
    first = incoming(limited, Opcode.BINARY, b"a" * 400, fin=False)
    second = incoming(limited, Opcode.CONT, b"b" * 400, fin=False)
    third = incoming(limited, Opcode.CONT, b"c" * 201)
    assert limited.receive_data(first + second) == []
    # The third fragment's header alone pushes the total over the limit.
    header_len = len(third) - 201
    error = failure_of(limited.receive_data(third[:header_len]), 1009)
    assert isinstance(error, PayloadTooBig)


def test_fragments_exactly_at_limit(conn: Connection) -> None:
    limited = Connection(is_client=conn.is_client, max_size=1000)
    data = (
        incoming(limited, Opcode.TEXT, b"a" * 400, fin=False)
        + incoming(limited, Opcode.CONT, b"b" * 400, fin=False)
        + incoming(limited, Opcode.CONT, b"c" * 200)
    )
    assert limited.receive_data(data) == ["a" * 400 + "b" * 400 + "c" * 200]


def test_size_limit_resets_between_messages(conn: Connection) -> None:
    limited = Connection(is_client=conn.is_client, max_size=10)
    data = b"".join(
        incoming(limited, Opcode.BINARY, b"x" * 5, fin=False) + incoming(limited, Opcode.CONT, b"y" * 5)
        for _ in range(3)
    )
    assert limited.receive_data(data) == [b"xxxxxyyyyy"] * 3


def test_default_max_size_is_1_mib(conn: Connection) -> None:
    assert conn.receive_data(incoming(conn, Opcode.BINARY, bytes(2**20))) == [bytes(2**20)]
    other = Connection(is_client=conn.is_client)
    failure_of(other.receive_data(incoming(other, Opcode.BINARY, bytes(2**20 + 1))), 1009)


def test_max_size_none_allows_large(conn: Connection) -> None:
    unlimited = Connection(is_client=conn.is_client, max_size=None)
    payload = bytes(range(256)) * (2**20 // 256 * 3)  # 3 MiB
    assert unlimited.receive_data(incoming(unlimited, Opcode.BINARY, payload)) == [payload]
    # And a header announcing a huge frame is not a failure, just pending data.
    assert unlimited.receive_data(raw_header(unlimited, Opcode.BINARY, 2**40)) == []
    assert unlimited.failure is None


# ---------------------------------------------------------------------- arbitrary splits


def sample_stream(conn: Connection) -> bytes:
    big = bytes(i % 253 for i in range(66_000))
    parts = [
        incoming(conn, Opcode.TEXT, "κόσμε 𝄞 €".encode()),
        incoming(conn, Opcode.BINARY, b""),
        incoming(conn, Opcode.PING, b"ping-1"),
        incoming(conn, Opcode.TEXT, "frag-€".encode()[:6], fin=False, mask=b"\x01\x02\x03\x04"),
        incoming(conn, Opcode.PING, b""),
        incoming(conn, Opcode.CONT, "frag-€".encode()[6:], fin=False, mask=b"\xff\xfe\xfd\xfc"),
        incoming(conn, Opcode.CONT, b"-end"),
        incoming(conn, Opcode.BINARY, bytes(range(200))),
        incoming(conn, Opcode.PONG, b"pong"),
        incoming(conn, Opcode.BINARY, big, fin=False),
        incoming(conn, Opcode.CONT, b"tail"),
        incoming(conn, Opcode.TEXT, b""),
        incoming(conn, Opcode.CLOSE, b"\x03\xe8done"),
        incoming(conn, Opcode.TEXT, b"after close is ignored"),
    ]
    return b"".join(parts)


EXPECTED_STREAM_EVENTS = [
    ("text", "κόσμε 𝄞 €"),
    ("binary", b""),
    ("ping", b"ping-1"),
    ("ping", b""),
    ("text", "frag-€-end"),
    ("binary", bytes(range(200))),
    ("pong", b"pong"),
    ("binary", bytes(i % 253 for i in range(66_000)) + b"tail"),
    ("text", ""),
    ("close", 1000, "done"),
]


def feed_in_chunks(conn: Connection, data: bytes, sizes: list[int]) -> list[tuple[object, ...]]:
    events: list[tuple[object, ...]] = []
    pos = 0
    i = 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        i += 1
        events += [norm(e) for e in conn.receive_data(data[pos : pos + size])]
        pos += size
    return events


@pytest.mark.parametrize(
    "sizes",
    [[1], [2], [3], [5], [7], [13], [125], [1000], [4096], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10**9]],
    ids=lambda s: "-".join(map(str, s)) if len(s) < 5 else "mixed",
)
def test_arbitrary_split_points_give_same_events(conn: Connection, sizes: list[int]) -> None:
    data = sample_stream(conn)
    whole = Connection(is_client=conn.is_client)
    whole_events = [norm(e) for e in whole.receive_data(data)]
    assert whole_events == EXPECTED_STREAM_EVENTS
    events = feed_in_chunks(conn, data, sizes)
    assert events == whole_events
    # The protocol's own replies are the same too: two pongs and the close reply.
    replies = [(f.opcode, f.payload, f.masked) for f in outbox_frames(conn)]
    assert replies == [(f.opcode, f.payload, f.masked) for f in outbox_frames(whole)]
    assert replies == [
        (Opcode.PONG, b"ping-1", conn.is_client),
        (Opcode.PONG, b"", conn.is_client),
        (Opcode.CLOSE, b"\x03\xe8done", conn.is_client),
    ]
    assert conn.state is State.CLOSED


@pytest.mark.parametrize("seed", range(8))
def test_random_split_points(conn: Connection, seed: int) -> None:
    rng = random.Random(seed)
    data = sample_stream(conn)
    cuts = sorted(rng.sample(range(1, len(data)), 60))
    events: list[tuple[object, ...]] = []
    prev = 0
    for cut in [*cuts, len(data)]:
        events += [norm(e) for e in conn.receive_data(data[prev:cut])]
        prev = cut
    assert events == EXPECTED_STREAM_EVENTS


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_split_points_with_a_failure(conn: Connection, size: int) -> None:
    data = (
        incoming(conn, Opcode.TEXT, b"a", fin=False)
        + incoming(conn, Opcode.PING, b"x")
        + incoming(conn, Opcode.CONT, "b€".encode(), fin=False)
        + incoming(conn, Opcode.CONT, b"\xe2\x28\xa1" + b"z" * 50)
        + incoming(conn, Opcode.TEXT, b"unreached")
    )
    expected = [("ping", b"x"), ("failure", 1007)]
    whole = Connection(is_client=conn.is_client)
    assert [norm(e) for e in whole.receive_data(data)] == expected
    assert feed_in_chunks(conn, data, [size]) == expected


# ---------------------------------------------------------------------- ping / pong


@pytest.mark.parametrize("payload", [b"", b"x", b"\x00\xff" * 10, b"p" * 125])
def test_ping_gets_automatic_pong(conn: Connection, payload: bytes) -> None:
    events = conn.receive_data(incoming(conn, Opcode.PING, payload))
    assert [norm(e) for e in events] == [("ping", payload)]
    assert isinstance(events[0], Ping)
    queued = list(conn.data_to_send())
    assert len(queued) == 1
    pong = parse_one(queued[0])
    assert pong.opcode == Opcode.PONG
    assert pong.fin
    assert pong.payload == payload
    assert pong.masked is conn.is_client
    assert not (pong.rsv1 or pong.rsv2 or pong.rsv3)
    # data_to_send drains the outbox.
    assert list(conn.data_to_send()) == []
    assert conn.outbox == []


def test_automatic_pong_is_accepted_by_peer(conn: Connection) -> None:
    conn.receive_data(incoming(conn, Opcode.PING, b"hello"))
    peer = peer_of(conn)
    events = peer.receive_data(b"".join(conn.data_to_send()))
    assert [norm(e) for e in events] == [("pong", b"hello")]


def test_several_pings_get_pongs_in_order(conn: Connection) -> None:
    data = b"".join(incoming(conn, Opcode.PING, f"{i}".encode()) for i in range(4))
    assert [norm(e) for e in conn.receive_data(data)] == [("ping", f"{i}".encode()) for i in range(4)]
    assert [f.payload for f in outbox_frames(conn)] == [b"0", b"1", b"2", b"3"]


def test_pong_event_queues_nothing(conn: Connection) -> None:
    events = conn.receive_data(incoming(conn, Opcode.PONG, b"unsolicited"))
    assert len(events) == 1
    assert isinstance(events[0], Pong)
    assert events[0].payload == b"unsolicited"
    assert list(conn.data_to_send()) == []


def test_client_pongs_use_fresh_masks() -> None:
    client = Connection(is_client=True)
    client.receive_data(b"".join(build_frame(Opcode.PING, b"abcd") for _ in range(20)))
    frames = list(client.data_to_send())
    keys = {data[2:6] for data in frames}
    assert len(keys) >= 18
    assert all(parse_one(data).payload == b"abcd" for data in frames)


# ---------------------------------------------------------------------- closing


def test_peer_close_is_echoed(conn: Connection) -> None:
    events = conn.receive_data(incoming(conn, Opcode.CLOSE, b"\x03\xe8bye"))
    assert len(events) == 1
    assert isinstance(events[0], CloseFrame)
    assert (events[0].code, events[0].reason) == (1000, "bye")
    assert conn.state is State.CLOSED
    assert conn.close_code == 1000
    assert conn.close_reason == "bye"
    assert conn.close_sent == (1000, "bye")
    assert not conn.close_sent_first
    reply = parse_one(b"".join(conn.data_to_send()))
    assert reply.opcode == Opcode.CLOSE
    assert reply.fin
    assert reply.payload == b"\x03\xe8bye"
    assert reply.masked is conn.is_client
    # Nothing more is parsed, nothing more may be sent.
    assert conn.receive_data(incoming(conn, Opcode.TEXT, b"late")) == []
    with pytest.raises(InvalidState):
        conn.send_message("too late")
    assert conn.send_close() == b""


@pytest.mark.parametrize("code", [1001, 1011, 3000, 4999])
def test_peer_close_code_echoed(conn: Connection, code: int) -> None:
    events = conn.receive_data(incoming(conn, Opcode.CLOSE, code.to_bytes(2, "big")))
    assert [norm(e) for e in events] == [("close", code, "")]
    assert parse_one(b"".join(conn.data_to_send())).payload == code.to_bytes(2, "big")


def test_peer_close_reply_accepted_by_peer(conn: Connection) -> None:
    conn.receive_data(incoming(conn, Opcode.CLOSE, b"\x03\xe9gone"))
    peer = peer_of(conn)
    events = peer.receive_data(b"".join(conn.data_to_send()))
    assert [norm(e) for e in events] == [("close", 1001, "gone")]


def test_peer_close_with_empty_payload(conn: Connection) -> None:
    events = conn.receive_data(incoming(conn, Opcode.CLOSE, b""))
    assert [norm(e) for e in events] == [("close", 1005, "")]
    assert conn.close_code == 1005
    assert conn.close_reason == ""
    assert conn.state is State.CLOSED
    reply = parse_one(b"".join(conn.data_to_send()))
    assert reply.opcode == Opcode.CLOSE
    assert reply.payload == b""


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
def test_peer_close_with_invalid_code(conn: Connection, code: int) -> None:
    failure_of(conn.receive_data(incoming(conn, Opcode.CLOSE, code.to_bytes(2, "big"))), 1002)
    assert conn.close_rcvd is None
    assert list(conn.data_to_send()) == []


def test_peer_close_with_one_byte_payload(conn: Connection) -> None:
    failure_of(conn.receive_data(incoming(conn, Opcode.CLOSE, b"\x03")), 1002)
    assert list(conn.data_to_send()) == []


def test_peer_close_with_invalid_utf8_reason(conn: Connection) -> None:
    failure_of(conn.receive_data(incoming(conn, Opcode.CLOSE, b"\x03\xe8\xff\xfe")), 1007)
    assert list(conn.data_to_send()) == []


def test_peer_close_during_fragmented_message(conn: Connection) -> None:
    data = incoming(conn, Opcode.TEXT, b"half", fin=False) + incoming(conn, Opcode.CLOSE, b"\x03\xe8")
    assert [norm(e) for e in conn.receive_data(data)] == [("close", 1000, "")]


def test_local_close_first(conn: Connection) -> None:
    data = conn.send_close(1000, "bye")
    frame = parse_one(data)
    assert frame.opcode == Opcode.CLOSE
    assert frame.payload == b"\x03\xe8bye"
    assert frame.masked is conn.is_client
    assert conn.state is State.CLOSING
    assert conn.close_sent == (1000, "bye")
    assert conn.close_sent_first
    assert conn.close_code is None
    with pytest.raises(InvalidState):
        conn.send_message("nope")
    with pytest.raises(InvalidState):
        conn.send_message(b"nope")
    with pytest.raises(InvalidState):
        conn.send_frame(Opcode.TEXT, b"nope", True)
    with pytest.raises(InvalidState):
        conn.send_ping()
    with pytest.raises(InvalidState):
        conn.send_pong()
    assert conn.send_close(1001) == b""
    # Messages still arrive while closing; pings get no pong after our close.
    events = conn.receive_data(incoming(conn, Opcode.TEXT, b"late") + incoming(conn, Opcode.PING, b"p"))
    assert [norm(e) for e in events] == [("text", "late"), ("ping", b"p")]
    assert list(conn.data_to_send()) == []
    # The peer's reply completes the handshake without another close frame.
    events = conn.receive_data(incoming(conn, Opcode.CLOSE, b"\x03\xe8bye"))
    assert [norm(e) for e in events] == [("close", 1000, "bye")]
    assert conn.state is State.CLOSED
    assert conn.close_code == 1000
    assert list(conn.data_to_send()) == []


def test_local_close_without_code(conn: Connection) -> None:
    frame = parse_one(conn.send_close(None))
    assert frame.payload == b""
    assert conn.close_sent == (1005, "")
    assert conn.state is State.CLOSING


def test_local_close_rejects_invalid_code(conn: Connection) -> None:
    with pytest.raises(ValueError):
        conn.send_close(1005)
    with pytest.raises(ValueError):
        conn.send_close(1000, "x" * 124)
    assert conn.state is State.OPEN
    assert conn.close_sent is None


def test_local_close_accepted_by_peer(conn: Connection) -> None:
    peer = peer_of(conn)
    events = peer.receive_data(conn.send_close(4000, "custom ✓"))
    assert [norm(e) for e in events] == [("close", 4000, "custom ✓")]
    # And the peer's echo closes us.
    events = conn.receive_data(b"".join(peer.data_to_send()))
    assert [norm(e) for e in events] == [("close", 4000, "custom ✓")]
    assert conn.state is State.CLOSED


# ---------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("make_bad", "code"),
    [
        (lambda c: incoming(c, 3, b""), 1002),
        (lambda c: incoming(c, Opcode.TEXT, b"\xff"), 1007),
        (lambda c: raw_header(c, Opcode.BINARY, 2**40), 1009),
    ],
    ids=["1002", "1007", "1009"],
)
def test_send_failure_close(conn: Connection, make_bad: object, code: int) -> None:
    assert conn.send_failure_close() == b""  # no failure yet
    failure_of(conn.receive_data(make_bad(conn)), code)  # type: ignore[operator]
    data = conn.send_failure_close()
    frame = parse_one(data)
    assert frame.opcode == Opcode.CLOSE
    assert frame.masked is conn.is_client
    assert int.from_bytes(frame.payload[:2], "big") == code
    assert len(frame.payload) <= 125
    peer = peer_of(conn)
    events = peer.receive_data(data)
    assert len(events) == 1
    assert isinstance(events[0], CloseFrame)
    assert events[0].code == code
    assert conn.close_sent is not None and conn.close_sent[0] == code
    assert conn.state is State.CLOSING
    assert conn.send_failure_close() == b""
    with pytest.raises(InvalidState):
        conn.send_message("x")


def test_failure_event_repr_and_error(conn: Connection) -> None:
    events = conn.receive_data(incoming(conn, Opcode.TEXT, b"\xff"))
    failure = events[-1]
    assert isinstance(failure, Failure)
    assert failure.error is conn.failure
    assert "1007" in repr(failure)


# ---------------------------------------------------------------------- EOF


def test_receive_eof(conn: Connection) -> None:
    conn.receive_eof()
    assert conn.state is State.CLOSED
    assert conn.close_code == 1006
    assert conn.close_reason == ""
    assert conn.eof
    assert conn.receive_data(incoming(conn, Opcode.TEXT, b"late")) == []
    with pytest.raises(InvalidState):
        conn.send_message("x")


def test_receive_eof_mid_frame(conn: Connection) -> None:
    frame = incoming(conn, Opcode.TEXT, b"partial message")
    assert conn.receive_data(frame[:5]) == []
    conn.receive_eof()
    assert conn.state is State.CLOSED
    assert conn.close_code == 1006


def test_receive_eof_after_close_keeps_code(conn: Connection) -> None:
    conn.receive_data(incoming(conn, Opcode.CLOSE, b"\x03\xe9"))
    conn.receive_eof()
    assert conn.close_code == 1001


def test_receive_eof_after_local_close(conn: Connection) -> None:
    conn.send_close()
    assert conn.close_code is None
    conn.receive_eof()
    assert conn.state is State.CLOSED
    assert conn.close_code == 1006


def test_send_close_after_eof_keeps_closed_state(conn: Connection) -> None:
    conn.receive_eof()
    conn.send_close(1001)
    assert conn.state is State.CLOSED
    assert conn.close_code == 1006


# ---------------------------------------------------------------------- sending


def test_send_text_message(conn: Connection) -> None:
    frame = parse_one(conn.send_message("héllo ✓"))
    assert frame.opcode == Opcode.TEXT
    assert frame.fin
    assert not (frame.rsv1 or frame.rsv2 or frame.rsv3)
    assert frame.masked is conn.is_client
    assert frame.payload == "héllo ✓".encode()


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_send_binary_message(conn: Connection, kind: type) -> None:
    data = conn.send_message(kind(b"\x00\x01binary"))
    assert isinstance(data, bytes)
    frame = parse_one(data)
    assert frame.opcode == Opcode.BINARY
    assert frame.fin
    assert frame.masked is conn.is_client
    assert frame.payload == b"\x00\x01binary"


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536])
def test_sent_messages_round_trip_to_peer(conn: Connection, length: int) -> None:
    peer = peer_of(conn, max_size=None)
    text = "é" * (length // 2) + "a" * (length % 2)
    binary = bytes(i % 256 for i in range(length))
    events = peer.receive_data(conn.send_message(text) + conn.send_message(binary))
    assert [norm(e) for e in events] == [("text", text), ("binary", binary)]


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_send_message_does_not_mutate_caller_buffer(conn: Connection, kind: type) -> None:
    original = bytes(range(256)) * 3
    backing = bytearray(original)
    message = backing if kind is bytearray else memoryview(backing)
    frame = parse_one(conn.send_message(message))
    assert backing == original
    assert frame.payload == original
    assert frame.masked is conn.is_client


def test_client_messages_use_fresh_masks() -> None:
    client = Connection(is_client=True)
    keys = {client.send_message(b"same")[2:6] for _ in range(50)}
    assert len(keys) >= 45


def test_send_message_multibyte_memoryview(conn: Connection) -> None:
    items = array.array("I", [1, 2, 3])
    frame = parse_one(conn.send_message(memoryview(items)))
    assert frame.opcode == Opcode.BINARY
    assert frame.payload == items.tobytes()


@pytest.mark.parametrize(
    "is_client",
    [
        pytest.param(
            False,
            id="server",
        ),
        pytest.param(True, id="client"),
    ],
)
def test_send_message_non_contiguous_memoryview(is_client: bool) -> None:
    conn = Connection(is_client=is_client)
    frame = parse_one(conn.send_message(memoryview(b"abcdef")[::2]))
    assert frame.opcode == Opcode.BINARY
    assert frame.payload == b"ace"


def test_send_frame_fragments(conn: Connection) -> None:
    data = [
        conn.send_frame(Opcode.TEXT, b"frag", False),
        conn.send_frame(Opcode.CONT, b"", False),
        conn.send_frame(Opcode.CONT, "-€".encode(), True),
    ]
    frames = [parse_one(d) for d in data]
    assert [(f.opcode, f.fin) for f in frames] == [(1, False), (0, False), (0, True)]
    assert all(f.masked is conn.is_client for f in frames)
    assert all(not f.rsv1 for f in frames)
    peer = peer_of(conn)
    assert peer.receive_data(b"".join(data)) == ["frag-€"]


def test_send_frame_binary_fragments_with_ping_between(conn: Connection) -> None:
    data = (
        conn.send_frame(Opcode.BINARY, b"ab", False)
        + conn.send_ping(b"hb")
        + conn.send_frame(Opcode.CONT, bytearray(b"cd"), True)
    )
    peer = peer_of(conn)
    assert [norm(e) for e in peer.receive_data(data)] == [("ping", b"hb"), ("binary", b"abcd")]
    assert [f.payload for f in outbox_frames(peer)] == [b"hb"]


def test_send_ping_and_pong(conn: Connection) -> None:
    ping = parse_one(conn.send_ping(b"abc"))
    assert (ping.opcode, ping.payload, ping.fin, ping.masked) == (Opcode.PING, b"abc", True, conn.is_client)
    pong = parse_one(conn.send_pong(b"xyz"))
    assert (pong.opcode, pong.payload, pong.masked) == (Opcode.PONG, b"xyz", conn.is_client)
    assert parse_one(conn.send_ping()).payload == b""
    assert parse_one(conn.send_ping(b"p" * 125)).payload == b"p" * 125
    assert parse_one(conn.send_pong(b"p" * 125)).payload == b"p" * 125


def test_send_ping_payload_too_long(conn: Connection) -> None:
    with pytest.raises(ValueError):
        conn.send_ping(b"p" * 126)
    with pytest.raises(ValueError):
        conn.send_pong(b"p" * 126)
    assert conn.state is State.OPEN


def test_send_after_peer_close_is_invalid(conn: Connection) -> None:
    conn.receive_data(incoming(conn, Opcode.CLOSE, b""))
    for send in (lambda: conn.send_message(b"x"), conn.send_ping, lambda: conn.send_frame(2, b"", True)):
        with pytest.raises(InvalidState):
            send()


def test_full_conversation_between_two_cores() -> None:
    client = Connection(is_client=True)
    server = Connection(is_client=False)
    assert server.receive_data(client.send_message("hi")) == ["hi"]
    assert client.receive_data(server.send_message(b"yo")) == [b"yo"]
    server.receive_data(client.send_ping(b"1"))
    assert [norm(e) for e in client.receive_data(b"".join(server.data_to_send()))] == [("pong", b"1")]
    closing = client.send_close(1000, "done")
    assert [norm(e) for e in server.receive_data(closing)] == [("close", 1000, "done")]
    assert server.state is State.CLOSED
    assert [norm(e) for e in client.receive_data(b"".join(server.data_to_send()))] == [
        ("close", 1000, "done")
    ]
    assert client.state is State.CLOSED
    assert client.close_sent_first and not server.close_sent_first


def test_inflate_budget_holds_input_and_resumes() -> None:
    """A read that inflates to more than INFLATE_BUDGET stops there; the rest is kept, not lost."""
    from wsline.protocol import connection as core
    from wsline.protocol.deflate import PerMessageDeflate

    sender = Connection(True, deflate=PerMessageDeflate(False, threshold=0))
    size = 200_000
    messages = [bytes([i]) * size for i in range(30)]  # 6 MB, a few KB compressed
    wire = b"".join(sender.send_message(m) for m in messages)
    assert len(wire) < 100_000
    receiver = Connection(False, deflate=PerMessageDeflate(True))
    first = receiver.receive_data(wire)
    assert receiver.input_held
    assert 0 < len(first) < len(messages)
    assert sum(map(len, first)) <= core.INFLATE_BUDGET + size  # checked between frames
    events = list(first)
    calls = 1
    while receiver.input_held:
        events += receiver.receive_data(b"")
        calls += 1
    assert events == messages
    assert calls >= len(messages) * size // (core.INFLATE_BUDGET + size)
    # Uncompressed messages are never held: no amplification to guard against.
    plain = Connection(False)
    data = b"".join(Connection(True).send_message(m) for m in messages)
    assert plain.receive_data(data) == messages and not plain.input_held


# ----------------------------------------------------------- events and states


def test_events_are_frozen_dataclasses_that_compare_by_value() -> None:
    import dataclasses

    assert Ping(b"a") == Ping(b"a") and Ping(b"a") != Ping(b"b") and Ping(b"a") != Pong(b"a")
    assert CloseFrame(1000, "bye") == CloseFrame(1000, "bye") != CloseFrame(1001, "bye")
    error = ProtocolError("bad")
    assert Failure(error) == Failure(error)
    for event in (Ping(b"a"), Pong(b"a"), CloseFrame(1000, ""), Failure(error)):
        assert dataclasses.is_dataclass(event)
        assert not hasattr(event, "__dict__")  # slots
        field = dataclasses.fields(event)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(event, field, None)
    assert repr(Ping(b"a")) == "Ping(b'a')" and repr(CloseFrame(1000, "x")) == "CloseFrame(1000, 'x')"


def test_received_control_events_compare_with_constructed_ones(conn: Connection) -> None:
    events = conn.receive_data(incoming(conn, Opcode.PING, b"p") + incoming(conn, Opcode.PONG, b"q"))
    assert events == [Ping(b"p"), Pong(b"q")]
    events = conn.receive_data(incoming(conn, Opcode.CLOSE, b"\x03\xe8bye"))
    assert events == [CloseFrame(1000, "bye")]


def test_states_start_at_open_and_keep_their_values() -> None:
    assert [(s.name, s.value) for s in State] == [("OPEN", 1), ("CLOSING", 2), ("CLOSED", 3)]
    assert not hasattr(State, "CONNECTING")  # a Connection exists only after the handshake


# ------------------------------------------------------------ deflate protocol


class FakeDeflate:
    """Anything with the Deflate protocol's members will do: it 'compresses' by reversing."""

    def __init__(self, threshold: int = 10, shared_key: object = None) -> None:
        self.threshold = threshold
        self.shared_key = shared_key
        self.compressed: list[bytes] = []

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        self.compressed.append(bytes(data))
        return bytes(data)[::-1]

    def decompress(self, data: bytes | bytearray | memoryview, fin: bool, max_size: int) -> bytes:
        return bytes(data)[::-1]


def test_threshold_comes_from_the_deflate_object() -> None:
    deflate = FakeDeflate(threshold=10)
    conn = Connection(False, deflate=deflate)
    assert not parse_one(conn.send_message(b"123456789")).rsv1  # 9 < 10
    frame = parse_one(conn.send_message(b"0123456789"))
    assert frame.rsv1 and frame.payload == b"9876543210"
    assert parse_one(conn.send_message(b"1", compress=True)).rsv1
    assert not parse_one(conn.send_message(b"0123456789" * 3, compress=False)).rsv1
    deflate.threshold = 0  # read at each message
    assert parse_one(conn.send_message(b"")).rsv1
    assert deflate.compressed == [b"0123456789", b"1", b""]


def test_received_compressed_frames_go_through_the_deflate_object() -> None:
    conn = Connection(True, deflate=FakeDeflate())
    frame = build_frame(Opcode.BINARY, b"olleh", rsv1=True)
    assert conn.receive_data(frame) == [b"hello"]


# ------------------------------------------------------------------ shared frames


def test_send_shared_reuses_plain_frames_on_servers() -> None:
    frames: dict[object, bytes] = {}
    a, b = Connection(False), Connection(False)
    first = a.send_shared(1, b"hi", frames)
    assert b.send_shared(1, b"hi", frames) is first
    assert parse_one(first) == Frame(True, False, False, False, 1, False, b"hi")


def test_send_shared_frames_its_own_on_clients() -> None:
    frames: dict[object, bytes] = {}
    a, b = Connection(True), Connection(True)
    fa, fb = a.send_shared(2, b"hi", frames), b.send_shared(2, b"hi", frames)
    assert fa != fb and frames == {}  # masked with fresh keys
    assert parse_one(fa).payload == parse_one(fb).payload == b"hi"


def test_send_shared_compressed_only_with_a_shared_key() -> None:
    frames: dict[object, bytes] = {}
    keyed = [FakeDeflate(threshold=0, shared_key=("k",)) for _ in range(2)]
    own = FakeDeflate(threshold=0)
    conns = [Connection(False, deflate=d) for d in [*keyed, own]]
    out = [c.send_shared(1, b"abc", frames) for c in conns]
    assert out[0] is out[1] and out[2] == out[0] and out[2] is not out[0]
    assert [len(d.compressed) for d in [*keyed, own]] == [1, 0, 1]
    # Below the threshold or compress=False: the plain frame, shared with connections without deflate.
    plain = conns[0].send_shared(1, b"abc", frames, compress=False)
    assert Connection(False).send_shared(1, b"abc", frames) is plain
    assert not parse_one(plain).rsv1


def test_send_shared_after_close_is_invalid(conn: Connection) -> None:
    conn.send_close()
    with pytest.raises(InvalidState):
        conn.send_shared(1, b"x", {})


# ----------------------------------------------------------- closing from here


def test_close_starts_the_handshake(conn: Connection) -> None:
    frame = parse_one(conn.close(1001, "away"))
    assert frame.opcode == 8 and frame.payload == b"\x03\xe9away"
    assert conn.state is State.CLOSING and conn.close_sent == (1001, "away")
    assert conn.close() == b""  # once


def test_close_after_a_failure_sends_the_failure_code(conn: Connection) -> None:
    conn.receive_data(incoming(conn, Opcode.TEXT, b"\xff"))
    frame = parse_one(conn.close(1000, "ignored"))
    assert frame.payload[:2] == b"\x03\xef"  # 1007
    assert conn.close() == b""


def test_close_after_a_deferred_peer_close_echoes_it() -> None:
    conn = Connection(False, defer_close_reply=True)
    conn.receive_data(build_frame(Opcode.CLOSE, b"\x0f\xa0app", mask=MASK))
    assert conn.state is State.CLOSING and conn.close_sent is None
    frame = parse_one(conn.close(1000, "ignored"))
    assert frame.payload == b"\x0f\xa0app" and conn.state is State.CLOSED


def test_close_after_eof_sends_nothing(conn: Connection) -> None:
    conn.receive_eof()
    assert conn.close() == b""


def test_send_pong_takes_str(conn: Connection) -> None:
    assert parse_one(conn.send_pong("hé")).payload == "hé".encode()


# ------------------------------------------------------------------ held pongs


def test_take_outbox_joins_the_frames(conn: Connection) -> None:
    assert conn.take_outbox() == b""
    conn.receive_data(incoming(conn, Opcode.PING, b"1") + incoming(conn, Opcode.PING, b"2"))
    frames = parse_frames(conn.take_outbox())
    assert [(f.opcode, f.payload) for f in frames] == [(10, b"1"), (10, b"2")]
    assert conn.outbox == [] and conn.held_pong is None


def test_held_pongs_keep_only_the_latest(conn: Connection) -> None:
    for i in range(100):
        conn.receive_data(incoming(conn, Opcode.PING, b"%d" % i))
        assert conn.take_outbox(hold_pongs=True) == b""
    assert conn.held_pong is not None and parse_one(conn.held_pong).payload == b"99"
    pong = conn.release_held_pong()
    assert parse_one(pong).opcode == 10 and parse_one(pong).payload == b"99"
    assert conn.release_held_pong() == b""


def test_held_pongs_let_other_frames_through() -> None:
    conn = Connection(False)
    conn.receive_data(incoming(conn, Opcode.PING, b"p") + incoming(conn, Opcode.CLOSE, b"\x03\xe8"))
    frames = parse_frames(conn.take_outbox(hold_pongs=True))
    assert [f.opcode for f in frames] == [8]  # the close reply; the pong is held
    assert conn.release_held_pong() == b""  # never after our close frame


def test_an_oversized_compressed_message_closes_with_the_limit_in_the_reason() -> None:
    from wsline.protocol import deflate as pmd
    from wsline.protocol.connection import Failure
    from wsline.protocol.frames import build_frame

    _, server_deflate = pmd.server_negotiate(["permessage-deflate"], pmd.DeflateConfig())  # type: ignore[misc]
    _, sender = pmd.server_negotiate(["permessage-deflate"], pmd.DeflateConfig())  # type: ignore[misc]
    compressed = sender.compress(b"a" * 50_000)
    receiver = Connection(False, max_size=1000, deflate=server_deflate)
    events = receiver.receive_data(build_frame(2, compressed, mask=b"abcd", rsv1=True))
    failure = events[-1]
    assert isinstance(failure, Failure)
    assert failure.error.code == 1009
    assert "limit of 1000 bytes" in failure.error.reason
