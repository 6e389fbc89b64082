"""The compiled hot path (wsline._speedups) against its pure-Python twin.

The C functions must give exactly what the Python code gives, byte for byte
and event for event, on valid and hostile input. The whole suite also runs
with WSLINE_NO_EXTENSIONS=1 (``make test`` does both); these tests compare the
two paths directly in one process.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from typing import Any

import pytest

from wsline.protocol import frames
from wsline.protocol.connection import Connection, Failure

speedups: Any
try:
    from wsline import _speedups as speedups  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the build
    speedups = None

needs_c = pytest.mark.skipif(speedups is None, reason="wsline._speedups is not built")

SIZES = [0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 125, 126, 127, 255, 256, 257,
         1000, 4095, 4096, 4097, 65535, 65536, 65537, 100_000]


def test_required_build_is_loaded() -> None:
    """Under WSLINE_REQUIRE_EXTENSIONS=1 (the compiled CI run) the C path must be in use."""
    if os.environ.get("WSLINE_REQUIRE_EXTENSIONS", "") not in ("", "0"):
        assert frames.COMPILED
        assert frames.apply_mask is speedups.apply_mask
    if os.environ.get("WSLINE_NO_EXTENSIONS", "") not in ("", "0"):
        assert not frames.COMPILED
        assert frames.parse_messages is None


def test_environment_variable_forces_pure_python() -> None:
    code = "from wsline.protocol import frames; print(frames.COMPILED, frames.parse_messages)"
    env = {**os.environ, "WSLINE_NO_EXTENSIONS": "1"}
    env.pop("WSLINE_REQUIRE_EXTENSIONS", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "None"]


@needs_c
@pytest.mark.parametrize("n", SIZES)
def test_apply_mask_matches_python(n: int) -> None:
    rng = random.Random(n)
    data = rng.randbytes(n)
    mask = rng.randbytes(4)
    expected = frames._apply_mask_py(data, mask)
    assert speedups.apply_mask(data, mask) == expected
    assert speedups.apply_mask(bytearray(data), mask) == expected
    assert speedups.apply_mask(memoryview(data), mask) == expected
    # Masking twice gives the data back; an unaligned start changes nothing.
    assert speedups.apply_mask(expected, mask) == data
    if n > 3:
        assert speedups.apply_mask(memoryview(data)[3:], mask) == frames._apply_mask_py(data[3:], mask)


@needs_c
def test_apply_mask_rejects_bad_keys() -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        speedups.apply_mask(b"abc", b"123")
    with pytest.raises(TypeError):
        speedups.apply_mask("text", b"1234")
    with pytest.raises(TypeError):
        speedups.apply_mask(b"abc")


@needs_c
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("b0", [0x81, 0x82, 0x01, 0x00, 0x80, 0x88, 0x89, 0x8A, 0xC1, 0x42])
@pytest.mark.parametrize("masked", [False, True])
def test_build_frame_matches_python(n: int, b0: int, masked: bool) -> None:
    rng = random.Random(n * 1000 + b0)
    payload = rng.randbytes(n)
    mask = rng.randbytes(4) if masked else None
    assert speedups.build_frame(b0, payload, mask) == frames._build_frame_py(b0, payload, mask)


@needs_c
def test_build_frame_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        speedups.build_frame(256, b"", None)
    with pytest.raises(ValueError):
        speedups.build_frame(0x82, b"", b"12")
    with pytest.raises(TypeError):
        speedups.build_frame(0x82, "text", None)


# ------------------------------------------------------------ parse_messages


def _frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask: bytes | None = None,
           length: int | None = None) -> bytes:
    """A frame built by hand (any header, even an invalid one)."""
    n = len(payload) if length is None else length
    b0 = opcode | (0x80 if fin else 0) | rsv
    m = 0x80 if mask is not None else 0
    if n < 126:
        head = bytes([b0, m | n])
    elif n < 65536:
        head = bytes([b0, m | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, m | 127]) + n.to_bytes(8, "big")
    if mask is None:
        return head + payload
    return head + mask + frames._apply_mask_py(payload, mask)


def _random_stream(rng: random.Random, from_client: bool) -> bytes:
    """Mostly simple messages, with everything the C parser must leave to Python mixed in."""
    out = bytearray()
    for _ in range(rng.randint(1, 40)):
        mask = rng.randbytes(4) if from_client else None
        kind = rng.random()
        n = rng.choice([0, 1, 5, 125, 126, 200, 65535, 65536, 70000]) if kind < 0.1 else rng.randint(0, 300)
        if kind < 0.45:
            out += _frame(2, rng.randbytes(n), mask=mask)
        elif kind < 0.8:
            text = "".join(rng.choice("aé€😀z ") for _ in range(n // 3))
            out += _frame(1, text.encode(), mask=mask)
        elif kind < 0.85:
            out += _frame(9, rng.randbytes(rng.randint(0, 125)), mask=mask)
        elif kind < 0.9:
            out += _frame(1, b"ab", fin=False, mask=mask) + _frame(0, b"cd", mask=mask)
        else:
            # Something that fails the connection (the rest is never parsed).
            bad = rng.choice([
                _frame(1, b"\xff\xfe", mask=mask),                      # invalid UTF-8 -> 1007
                _frame(1, "é".encode()[:1], mask=mask),                 # truncated UTF-8 -> 1007
                _frame(2, b"x", rsv=0x40, mask=mask),                   # RSV1 without deflate -> 1002
                _frame(3, b"x", mask=mask),                             # reserved opcode -> 1002
                _frame(2, b"x" * 2000, mask=mask),                      # over max_size -> 1009
                _frame(0, b"x", mask=mask),                             # stray continuation -> 1002
                _frame(2, b"x", mask=None if from_client else b"abcd"),  # wrong masking -> 1002
                _frame(2, b"", length=(1 << 63) + 5, mask=mask)[:10],   # length MSB set -> 1002
            ])
            out += bad
    return bytes(out)


def _events(data: bytes, is_client: bool, chunks: list[int], monkeypatch: pytest.MonkeyPatch,
            compiled: bool) -> list[Any]:
    with monkeypatch.context() as m:
        if not compiled:
            m.setattr(frames, "parse_messages", None)
        conn = Connection(is_client, max_size=1500 if len(data) < 1_000_000 else None)
        events: list[Any] = []
        pos = 0
        for size in chunks:
            events += conn.receive_data(memoryview(data[pos : pos + size]))
            pos += size
        events += conn.receive_data(data[pos:])
        while conn.input_held:
            events += conn.receive_data(b"")
    # Events are compared by value and type (Failure by its code and reason).
    return [
        ("fail", e.error.code, e.error.reason) if isinstance(e, Failure) else (type(e).__name__, repr(e))
        for e in events
    ]


@needs_c
@pytest.mark.parametrize("seed", range(60))
def test_parser_events_match_pure_python(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    from_client = seed % 2 == 0
    data = _random_stream(rng, from_client)
    whole_c = _events(data, not from_client, [], monkeypatch, compiled=True)
    whole_py = _events(data, not from_client, [], monkeypatch, compiled=False)
    assert whole_c == whole_py
    # Any split gives the same events on both paths.
    cuts: list[int] = []
    left = len(data)
    while left > 0:
        size = min(left, rng.choice([1, 2, 3, 7, 64, 1000, 70_000]))
        cuts.append(size)
        left -= size
    assert _events(data, not from_client, cuts, monkeypatch, compiled=True) == whole_py
    assert _events(data, not from_client, cuts, monkeypatch, compiled=False) == whole_py


@needs_c
def test_parse_messages_stops_where_python_must_judge() -> None:
    mask = b"\x01\x02\x03\x04"
    ok = _frame(2, b"hello", mask=mask)
    for stop in (
        _frame(9, b"", mask=mask),
        _frame(1, b"\xff", mask=mask),
        _frame(2, b"x", rsv=0x40, mask=mask),
        _frame(2, b"x", fin=False, mask=mask),
        _frame(2, b"x"),  # unmasked from a client
        _frame(2, b"x" * 11, mask=mask),  # over max_size below
        ok[:-1],  # incomplete (the last thing in the buffer)
    ):
        data = ok + ok + stop + (ok if len(stop) != len(ok) - 1 else b"")
        events: list[Any] = []
        pos = speedups.parse_messages(memoryview(data), 0, len(data), True, 10, events)
        assert pos == 2 * len(ok)
        assert events == [b"hello", b"hello"]


@needs_c
def test_parse_messages_checks_its_arguments() -> None:
    with pytest.raises(ValueError):
        speedups.parse_messages(b"abc", 2, 1, True, 10, [])
    with pytest.raises(ValueError):
        speedups.parse_messages(b"abc", 0, 4, True, 10, [])
    with pytest.raises(TypeError):
        speedups.parse_messages(b"abc", 0, 3, True, 10, ())


# ------------------------------------------------------------- MessageBuffer


def _fill(mb: Any, data: bytes, mask: bytes | None, cuts: list[int], direct: bool) -> bytes:
    """Fill a MessageBuffer with the (masked) data in pieces, by write() or through view() + unmask()."""
    pos = 0
    for end in [*cuts, len(data)]:
        piece = data[pos:end]
        if direct:
            with mb.view() as view:
                view[pos:end] = piece
            if mask is not None:
                mb.unmask(pos, end, mask, pos & 3)
        else:
            mb.write(pos, piece, mask, pos & 3)
        pos = end
    result: bytes = mb.take()
    return result


MB_IMPLS = [frames._MessageBufferPy] + ([speedups.MessageBuffer] if speedups is not None else [])


@pytest.mark.parametrize("impl", MB_IMPLS)
@pytest.mark.parametrize("n", [0, 1, 5, 65536, 100_003])
@pytest.mark.parametrize("direct", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_message_buffer_twins(impl: Any, n: int, direct: bool, masked: bool) -> None:
    rng = random.Random(n * 4 + direct * 2 + masked)
    plain = rng.randbytes(n)
    mask = rng.randbytes(4) if masked else None
    wire = frames._apply_mask_py(plain, mask) if mask is not None else plain
    cuts = sorted(rng.sample(range(n + 1), min(n + 1, 7)))
    out = _fill(impl(n), wire, mask, cuts, direct)
    assert type(out) is bytes
    assert out == plain


@pytest.mark.parametrize("impl", MB_IMPLS)
def test_message_buffer_checks(impl: Any) -> None:
    mb = impl(8)
    with pytest.raises(ValueError):
        mb.write(6, b"abc", None, 0)
    with pytest.raises(ValueError):
        mb.write(-1, b"a", None, 0)
    with pytest.raises(ValueError):
        mb.unmask(4, 9, b"abcd", 0)
    with pytest.raises(ValueError):
        mb.write(0, b"a", b"abc", 0)
    with pytest.raises(ValueError):
        impl(-1)
    mb.write(0, b"12345678", None, 0)
    assert mb.take() == b"12345678"
    with pytest.raises(BufferError):
        mb.take()
    with pytest.raises(BufferError):
        mb.write(0, b"a", None, 0)
    with pytest.raises(BufferError):
        mb.view()


@needs_c
def test_c_message_buffer_view_outlives_take() -> None:
    """A view still held (by a transport) after take() keeps the memory valid."""
    mb = speedups.MessageBuffer(4)
    view = mb.view()
    view[:] = b"abcd"
    data = mb.take()
    del mb
    assert bytes(view) == b"abcd" == data
    view.release()


def _big_frames(rng: random.Random, is_server: bool, sizes: list[int], text: bool) -> tuple[bytes, list[Any]]:
    wire = b""
    expected: list[Any] = []
    for size in sizes:
        if text:
            payload = ("é" * (size // 2)).encode()
            expected.append(payload.decode())
        else:
            payload = rng.randbytes(size)
            expected.append(payload)
        mask = rng.randbytes(4) if is_server else None
        wire += frames._build_frame_py(0x81 if text else 0x82, payload, mask)
    return wire, expected


@pytest.mark.parametrize("is_server", [True, False])
@pytest.mark.parametrize("text", [False, True])
@pytest.mark.parametrize("direct", [False, True])
def test_large_messages_in_place(is_server: bool, text: bool, direct: bool) -> None:
    """Large messages assembled in a MessageBuffer: by receive_data alone, or read into ``direct``."""
    rng = random.Random(is_server * 4 + text * 2 + direct)
    wire, expected = _big_frames(rng, is_server, [70_000, 65536, 200_001, 10, 300_000], text)
    conn = Connection(is_client=not is_server, max_size=None)
    events: list[Any] = []
    pos = 0
    while pos < len(wire):
        if direct and conn.direct is not None:
            n = min(len(conn.direct), rng.randrange(1, 90_000), len(wire) - pos)
            conn.direct[:n] = wire[pos : pos + n]
            pos += n
            events += conn.receive_direct(n)
        else:
            n = rng.randrange(1, 90_000)
            events += conn.receive_data(memoryview(wire[pos : pos + n]))
            pos += n
    assert events == expected
    assert all(type(e) is type(x) for e, x in zip(events, expected, strict=True))
    assert conn.direct is None


def test_large_text_with_bad_utf8_fails_in_place() -> None:
    payload = b"a" * 70_000 + b"\xff" + b"a" * 70_000
    wire = frames._build_frame_py(0x81, payload, b"\x01\x02\x03\x04")
    conn = Connection(is_client=False, max_size=None)
    events = conn.receive_data(memoryview(wire[:80_000]))
    assert len(events) == 1 and isinstance(events[0], Failure)
    assert events[0].error.code == 1007
    assert conn.direct is None


def test_send_message_parts() -> None:
    server = Connection(is_client=False)
    big = bytes(range(256)) * 1024
    head, payload = server.send_message_parts(big)
    assert payload is big
    assert head + payload == frames._build_frame_py(0x82, big, None)
    frame, none = server.send_message_parts(b"small")
    assert none is None and frame == frames._build_frame_py(0x82, b"small", None)
    client = Connection(is_client=True)
    frame, none = client.send_message_parts(big)
    assert none is None and len(frame) == len(big) + 14
