"""Tests for the frame-level helpers of RFC 6455 (wsline.protocol.frames)."""

from __future__ import annotations

import array
import itertools
import os
import struct

import pytest

from wsline.errors import InvalidPayload, PayloadTooBig, ProtocolError
from wsline.protocol import frames as frames_module
from wsline.protocol.frames import (
    MaskSource,
    Opcode,
    apply_mask,
    build_close_payload,
    build_frame,
    is_valid_close_code,
    parse_close_payload,
)

RFC_MASK = bytes.fromhex("37fa213d")


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def naive_mask(data: bytes, mask: bytes) -> bytes:
    """Reference implementation: byte-by-byte XOR, straight from RFC 6455 5.3."""
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


# ------------------------------------------------------------------ opcodes


def test_opcode_values_match_rfc() -> None:
    assert Opcode.CONT == 0x0
    assert Opcode.TEXT == 0x1
    assert Opcode.BINARY == 0x2
    assert Opcode.CLOSE == 0x8
    assert Opcode.PING == 0x9
    assert Opcode.PONG == 0xA
    assert frames_module.CONTROL_OPCODES == {0x8, 0x9, 0xA}
    assert frames_module.DATA_OPCODES == {0x0, 0x1, 0x2}


# ------------------------------------------------------------------ masking


def test_apply_mask_rfc_hello_vector() -> None:
    # RFC 6455 5.7: "Hello" masked with 37 fa 21 3d is 7f 9f 4d 51 58.
    assert apply_mask(b"Hello", RFC_MASK) == h("7f 9f 4d 51 58")
    assert apply_mask(h("7f 9f 4d 51 58"), RFC_MASK) == b"Hello"


def test_apply_mask_zero_mask_is_identity() -> None:
    data = bytes(range(37))
    assert apply_mask(data, b"\x00\x00\x00\x00") == data


def test_apply_mask_all_ones_inverts() -> None:
    data = bytes(range(11))
    assert apply_mask(data, b"\xff\xff\xff\xff") == bytes(255 - b for b in data)


def test_apply_mask_empty() -> None:
    result = apply_mask(b"", RFC_MASK)
    assert result == b""
    assert isinstance(result, bytes)


@pytest.mark.parametrize("length", [*range(0, 18), 63, 64, 65, 125, 126, 1000, 4097])
@pytest.mark.parametrize(
    "mask", [RFC_MASK, b"\x00\x00\x00\x01", b"\x80\x00\x00\x00", b"\xff\x00\xff\x00", b"abcd"]
)
def test_apply_mask_matches_reference_and_round_trips(length: int, mask: bytes) -> None:
    data = os.urandom(length)
    masked = apply_mask(data, mask)
    assert isinstance(masked, bytes)
    assert len(masked) == length
    assert masked == naive_mask(data, mask)
    assert apply_mask(masked, mask) == data


def test_apply_mask_keeps_trailing_and_leading_zero_bytes() -> None:
    # Big-integer tricks must not drop leading/trailing zero bytes.
    data = b"\x00\x00\x00\x00\x00\x00\x00"
    assert apply_mask(data, b"\x00\x00\x00\x00") == data
    data = b"\x37\xfa\x21\x3d\x37"
    assert apply_mask(data, RFC_MASK) == b"\x00" * 5


def test_apply_mask_does_not_mutate_bytearray() -> None:
    original = bytes(range(50))
    buf = bytearray(original)
    masked = apply_mask(buf, RFC_MASK)
    assert buf == original
    assert masked == naive_mask(original, RFC_MASK)
    assert isinstance(masked, bytes)


def test_apply_mask_does_not_mutate_memoryview_source() -> None:
    original = bytes(range(40))
    backing = bytearray(original)
    view = memoryview(backing)[3:30]
    masked = apply_mask(view, b"wxyz")
    assert backing == original
    assert masked == naive_mask(original[3:30], b"wxyz")
    # The view is still usable afterwards.
    assert bytes(view) == original[3:30]


def test_apply_mask_result_is_independent_of_input_buffer() -> None:
    buf = bytearray(b"abcdefgh")
    masked = apply_mask(buf, RFC_MASK)
    buf[:] = b"zzzzzzzz"
    assert masked == naive_mask(b"abcdefgh", RFC_MASK)


# ------------------------------------------------------------------ build_frame


def test_build_frame_rfc_unmasked_text() -> None:
    # RFC 6455 5.7: a single-frame unmasked text message "Hello".
    assert build_frame(Opcode.TEXT, b"Hello") == h("81 05 48 65 6c 6c 6f")


def test_build_frame_rfc_masked_text() -> None:
    # RFC 6455 5.7: a single-frame masked text message "Hello".
    frame = build_frame(Opcode.TEXT, b"Hello", mask=RFC_MASK)
    assert frame == h("81 85 37 fa 21 3d 7f 9f 4d 51 58")


def test_build_frame_rfc_fragmented_text() -> None:
    # RFC 6455 5.7: fragmented unmasked text message "Hel" + "lo".
    assert build_frame(Opcode.TEXT, b"Hel", fin=False) == h("01 03 48 65 6c")
    assert build_frame(Opcode.CONT, b"lo") == h("80 02 6c 6f")


def test_build_frame_rfc_ping_and_masked_pong() -> None:
    # RFC 6455 5.7: unmasked ping "Hello" and masked pong "Hello".
    assert build_frame(Opcode.PING, b"Hello") == h("89 05 48 65 6c 6c 6f")
    assert build_frame(Opcode.PONG, b"Hello", mask=RFC_MASK) == h("8a 85 37 fa 21 3d 7f 9f 4d 51 58")


def test_build_frame_rfc_256_and_64k_binary_headers() -> None:
    # RFC 6455 5.7: 256 bytes in a single unmasked binary frame, then 64 KiB.
    frame = build_frame(Opcode.BINARY, bytes(256))
    assert frame[:4] == h("82 7e 01 00")
    assert len(frame) == 4 + 256
    frame = build_frame(Opcode.BINARY, bytes(65536))
    assert frame[:10] == h("82 7f 00 00 00 00 00 01 00 00")
    assert len(frame) == 10 + 65536


@pytest.mark.parametrize(
    ("length", "header_len", "marker"),
    [
        (0, 2, 0),
        (1, 2, 1),
        (125, 2, 125),
        (126, 4, 126),
        (127, 4, 126),
        (65535, 4, 126),
        (65536, 10, 127),
        (70000, 10, 127),
    ],
)
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_build_frame_length_encodings(length: int, header_len: int, marker: int, masked: bool) -> None:
    payload = bytes(i & 0xFF for i in range(length))
    mask = b"\x01\x02\x03\x04" if masked else None
    frame = build_frame(Opcode.BINARY, payload, mask=mask)
    assert frame[0] == 0x82
    assert frame[1] & 0x80 == (0x80 if masked else 0)
    assert frame[1] & 0x7F == marker
    if marker == 126:
        assert struct.unpack("!H", frame[2:4])[0] == length
    elif marker == 127:
        assert struct.unpack("!Q", frame[2:10])[0] == length
    offset = header_len
    if masked:
        assert frame[offset : offset + 4] == b"\x01\x02\x03\x04"
        offset += 4
    assert len(frame) == offset + length
    body = frame[offset:]
    assert (naive_mask(body, b"\x01\x02\x03\x04") if masked else body) == payload


def test_build_frame_flags() -> None:
    assert build_frame(Opcode.BINARY, b"x", fin=False)[0] == 0x02
    assert build_frame(Opcode.BINARY, b"x", fin=True)[0] == 0x82
    assert build_frame(Opcode.TEXT, b"x", rsv1=True)[0] == 0xC1
    assert build_frame(Opcode.CONT, b"x", fin=False, rsv1=True)[0] == 0x40
    assert build_frame(Opcode.CLOSE, b"")[0] == 0x88
    assert build_frame(Opcode.CLOSE, b"") == b"\x88\x00"
    assert build_frame(Opcode.PING, b"", mask=RFC_MASK) == b"\x89\x80" + RFC_MASK


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_build_frame_accepts_bytes_like(kind: type) -> None:
    data = b"payload!"
    frame = build_frame(Opcode.BINARY, kind(bytearray(data)))
    assert isinstance(frame, bytes)
    assert frame == b"\x82\x08" + data
    frame = build_frame(Opcode.BINARY, kind(bytearray(data)), mask=RFC_MASK)
    assert isinstance(frame, bytes)
    assert frame == b"\x82\x88" + RFC_MASK + naive_mask(data, RFC_MASK)


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_build_frame_multibyte_memoryview_uses_byte_length(masked: bool) -> None:
    items = array.array("H", [0x0102, 0x0304, 0x0506])
    data = items.tobytes()  # 6 bytes
    mask = RFC_MASK if masked else None
    frame = build_frame(Opcode.BINARY, memoryview(items), mask=mask)
    assert frame[1] & 0x7F == len(data)
    body = frame[6:] if masked else frame[2:]
    assert (naive_mask(body, RFC_MASK) if masked else body) == data


def test_build_frame_does_not_mutate_payload_when_masking() -> None:
    original = b"do not touch me, please" * 3
    buf = bytearray(original)
    frame = build_frame(Opcode.BINARY, buf, mask=RFC_MASK)
    assert buf == original
    assert frame[6:] == naive_mask(original, RFC_MASK)
    view_backing = bytearray(original)
    frame = build_frame(Opcode.BINARY, memoryview(view_backing), mask=b"\xaa\xbb\xcc\xdd")
    assert view_backing == original
    assert frame[6:] == naive_mask(original, b"\xaa\xbb\xcc\xdd")


# ------------------------------------------------------------------ MaskSource


def test_mask_source_keys_are_4_bytes_and_differ() -> None:
    source = MaskSource()
    keys = [source.next() for _ in range(3000)]  # crosses two pool refills
    assert all(isinstance(k, bytes) and len(k) == 4 for k in keys)
    # 3000 random 32-bit keys: a handful of collisions at most (expected ~0.001).
    assert len(set(keys)) >= 2990
    assert all(a != b for a, b in itertools.pairwise(keys))


def test_mask_source_independent_instances_differ() -> None:
    a = [MaskSource().next() for _ in range(50)]
    assert len(set(a)) >= 45


def test_mask_source_pools_urandom(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake_urandom(n: int) -> bytes:
        calls.append(n)
        base = len(calls)
        return bytes((base * 7 + i) & 0xFF for i in range(n))

    monkeypatch.setattr(frames_module.os, "urandom", fake_urandom)
    source = MaskSource()
    keys = [source.next() for _ in range(1024)]
    assert calls == [MaskSource.POOL]
    expected_pool = bytes((7 + i) & 0xFF for i in range(MaskSource.POOL))
    assert b"".join(keys) == expected_pool
    key = source.next()  # the 1025th key needs a fresh pool
    assert len(calls) == 2
    assert key == bytes((14 + i) & 0xFF for i in range(4))


# ------------------------------------------------------------------ close codes


@pytest.mark.parametrize(
    "code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
)
def test_valid_close_codes(code: int) -> None:
    assert is_valid_close_code(code)
    payload = build_close_payload(code, "why")
    assert payload == code.to_bytes(2, "big") + b"why"
    assert parse_close_payload(payload) == (code, "why")


FORBIDDEN_CODES = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@pytest.mark.parametrize("code", FORBIDDEN_CODES)
def test_forbidden_close_codes(code: int) -> None:
    assert not is_valid_close_code(code)
    with pytest.raises(ValueError):
        build_close_payload(code)
    with pytest.raises(ProtocolError) as info:
        parse_close_payload(code.to_bytes(2, "big"))
    assert info.value.code == 1002
    assert not isinstance(info.value, (InvalidPayload, PayloadTooBig))


# ------------------------------------------------------------------ close payloads


def test_build_close_payload_basic() -> None:
    assert build_close_payload(1000) == b"\x03\xe8"
    assert build_close_payload(1000, "") == b"\x03\xe8"
    assert build_close_payload(1001, "bye") == b"\x03\xe9bye"
    assert build_close_payload(4321, "héllo") == (4321).to_bytes(2, "big") + "héllo".encode()


def test_build_close_payload_without_code() -> None:
    assert build_close_payload(None) == b""
    with pytest.raises(ValueError):
        build_close_payload(None, "reason without a code")


def test_build_close_payload_reason_length_limit() -> None:
    assert len(build_close_payload(1000, "a" * 123)) == 125
    with pytest.raises(ValueError):
        build_close_payload(1000, "a" * 124)
    # The limit is in UTF-8 bytes, not characters: 62 x "é" is 124 bytes.
    with pytest.raises(ValueError):
        build_close_payload(1000, "é" * 62)
    assert len(build_close_payload(1000, "é" * 61 + "a")) == 125


def test_parse_close_payload_empty() -> None:
    assert parse_close_payload(b"") == (1005, "")


def test_parse_close_payload_one_byte() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_close_payload(b"\x03")
    assert info.value.code == 1002


def test_parse_close_payload_code_only() -> None:
    assert parse_close_payload(b"\x03\xe8") == (1000, "")
    assert parse_close_payload(b"\x0f\xa0") == (4000, "")


def test_parse_close_payload_utf8_reason() -> None:
    reason = "κόσμε ✓"
    assert parse_close_payload(b"\x03\xe9" + reason.encode()) == (1001, reason)


@pytest.mark.parametrize("bad", [b"\xff", b"ok\xc0\xaf", b"\xed\xa0\x80", b"\xce", b"\xf4\x90\x80\x80"])
def test_parse_close_payload_invalid_utf8_reason(bad: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_close_payload(b"\x03\xe8" + bad)
    assert info.value.code == 1007


def test_close_payload_round_trip_max_reason() -> None:
    reason = "✓" * 41  # 123 bytes
    payload = build_close_payload(3333, reason)
    assert len(payload) == 125
    assert parse_close_payload(payload) == (3333, reason)
