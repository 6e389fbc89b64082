"""Coverage-guided fuzz target for the frame parser (``Connection.receive_data``).

Input layout (every byte string is a valid input):

* byte 0, configuration: bit 0 client side (else server side); bit 1
  permessage-deflate negotiated; bit 2 no context takeover for the peer;
  bits 3-4 ``max_size`` (2**20, 1000, 16 or 0); bits 5-7 inflate window bits
  (8 + value).
* byte 1, how the second parse splits the stream: 0 feeds one byte at a time,
  other values seed a small generator of chunk lengths.
* the rest: the bytes the peer sends.

Invariants: ``receive_data`` never raises; the stream parsed in one call and the
same stream fed in chunks give the same events and the same automatic replies;
a :class:`Failure` (codes 1002, 1007, 1009 only) or a :class:`CloseFrame` can
only be the last event, after which nothing more is parsed; messages respect
``max_size``; the parser never holds more than a frame header plus a control
payload in its buffer between calls; the failure close frame that follows a
:class:`Failure` is read by the peer as that code.

A known bug is skipped so that the fuzzer can look for new ones; set
``WSLINE_FUZZ_STRICT=1`` to make it crash too. Run it with ``make fuzz`` (atheris
is imported only when run as a script).
"""

from __future__ import annotations

import os
import sys

from wsline.protocol.connection import CloseFrame, Connection, Event, Failure, Ping, Pong
from wsline.protocol.deflate import PerMessageDeflate

MAX_SIZES = (1 << 20, 1000, 16, 0)
FAILURE_CODES = frozenset({1002, 1007, 1009})
#: The most a parser may keep between calls: a 14-byte header and a 125-byte control payload.
MAX_BUFFERED = 14 + 125
STRICT = os.environ.get("WSLINE_FUZZ_STRICT") == "1"


def chunk_lengths(seed: int, total: int) -> list[int]:
    """Deterministic chunk lengths adding up to ``total`` (1-byte chunks when ``seed`` is 0)."""
    if seed == 0:
        return [1] * total
    lengths: list[int] = []
    state = seed
    left = total
    while left > 0:
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        n = min(left, 1 + (state >> 16) % 23)
        lengths.append(n)
        left -= n
    return lengths


def make_connection(config: int) -> Connection:
    is_client = bool(config & 1)
    deflate = None
    if config & 2:
        bits = 8 + (config >> 5)
        reset = bool(config & 4)
        # The peer's side: what we inflate with is the peer's window.
        if is_client:
            deflate = PerMessageDeflate(False, server_max_window_bits=bits, server_no_context_takeover=reset)
        else:
            deflate = PerMessageDeflate(True, client_max_window_bits=bits, client_no_context_takeover=reset)
    return Connection(is_client, max_size=MAX_SIZES[(config >> 3) & 3], deflate=deflate)


def norm(event: Event) -> tuple[object, ...]:
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


def unmask_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(first byte, unmasked payload) of each frame in ``data``, which must be whole frames."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        length = b1 & 0x7F
        pos += 2
        if length == 126:
            length = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
        elif length == 127:
            length = int.from_bytes(data[pos : pos + 8], "big")
            pos += 8
        key = b""
        if b1 & 0x80:
            key = data[pos : pos + 4]
            pos += 4
        payload = data[pos : pos + length]
        assert len(payload) == length, "truncated frame in the outbox"
        if key:
            payload = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
        out.append((b0, payload))
        pos += length
    return out


def check_events(conn: Connection, events: list[Event]) -> None:
    for i, event in enumerate(events):
        if isinstance(event, (Failure, CloseFrame)):
            assert i == len(events) - 1, f"event after the end: {events!r}"
        if isinstance(event, Failure):
            assert event.error.code in FAILURE_CODES, event
            assert conn.failure is event.error
        elif isinstance(event, str):
            assert len(event.encode("utf-8")) <= conn.max_size, "text message over max_size"
        elif isinstance(event, bytes):
            assert len(event) <= conn.max_size, "binary message over max_size"
        elif isinstance(event, (Ping, Pong)):
            assert len(event.payload) <= 125


def parse_split(config: int, stream: bytes, seed: int) -> tuple[Connection, list[Event]]:
    conn = make_connection(config)
    events: list[Event] = []
    pos = 0
    for n in chunk_lengths(seed, len(stream)):
        got = conn.receive_data(stream[pos : pos + n])
        while conn.input_held:  # stopped at the inflate budget: go on with what it holds
            got += conn.receive_data(b"")
        pos += n
        if events and isinstance(events[-1], (Failure, CloseFrame)):
            assert got == [], "events after a Failure or CloseFrame"
        events += got
        assert len(conn._buf) <= MAX_BUFFERED, f"{len(conn._buf)} bytes buffered"
        assert conn._msg_size <= conn.max_size
    return conn, events


def check_failure_close(conn: Connection) -> None:
    failure = conn.failure
    if failure is None:
        return
    data = conn.send_failure_close()
    peer = Connection(not conn.is_client)
    got = peer.receive_data(data)
    assert len(got) == 1 and isinstance(got[0], CloseFrame), got
    assert got[0].code == failure.code, (got, failure)


def known_bug(whole: list[tuple[object, ...]], split: list[tuple[object, ...]]) -> bool:
    """BUG A (documented in tests/test_properties.py): with permessage-deflate, a message that
    reaches max_size right before corrupt compressed data fails with 1007 or 1009 depending on
    where the stream is cut."""
    return (
        len(whole) == len(split)
        and whole[:-1] == split[:-1]
        and {whole[-1], split[-1]} == {("failure", 1007), ("failure", 1009)}
    )


def TestOneInput(data: bytes) -> None:  # the name atheris calls
    if len(data) < 2:
        return
    config, seed, stream = data[0], data[1], data[2:]

    whole = make_connection(config)
    events = whole.receive_data(stream)
    while whole.input_held:
        events += whole.receive_data(b"")
    check_events(whole, events)
    assert len(whole._buf) <= MAX_BUFFERED
    if events and isinstance(events[-1], (Failure, CloseFrame)):
        assert whole.receive_data(b"\x81\x00" * 3) == []

    split, split_events = parse_split(config, stream, seed)
    whole_norm = [norm(e) for e in events]
    split_norm = [norm(e) for e in split_events]
    if whole_norm != split_norm and not (known_bug(whole_norm, split_norm) and not STRICT):
        raise AssertionError((events, split_events))
    whole_out = unmask_frames(b"".join(whole.outbox))
    split_out = unmask_frames(b"".join(split.outbox))
    assert whole_out == split_out, (whole_out, split_out)
    check_failure_close(whole)


def main() -> None:
    import atheris  # type: ignore[import-untyped]  # only here: the tests import TestOneInput without it

    atheris.instrument_all()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
