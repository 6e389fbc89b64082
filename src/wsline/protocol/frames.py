"""Frame-level pieces of RFC 6455: opcodes, headers, masking, close payloads.

Pure functions only; no state beyond a pool of random mask bytes.
"""

from __future__ import annotations

import os
import struct
from enum import IntEnum
from typing import Any, Callable, Protocol

from ..errors import ProtocolError

__all__ = [
    "Opcode",
    "apply_mask",
    "build_frame",
    "build_close_payload",
    "parse_close_payload",
    "MaskSource",
    "is_valid_close_code",
    "COMPILED",
]


class Opcode(IntEnum):
    """Frame opcodes (RFC 6455 5.2)."""

    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


CONTROL_OPCODES = frozenset({0x8, 0x9, 0xA})
DATA_OPCODES = frozenset({0x0, 0x1, 0x2})

_pack_b = struct.Struct("!BB").pack
_pack_h = struct.Struct("!BBH").pack
_pack_q = struct.Struct("!BBQ").pack


# XOR tables for the pure-Python masking of long payloads, one per key byte, built on demand.
_XOR_TABLES: list[bytes | None] = [None] * 256


def _xor_table(k: int) -> bytes:
    table = _XOR_TABLES[k]
    if table is None:
        table = _XOR_TABLES[k] = bytes(b ^ k for b in range(256))
    return table


def _apply_mask_py(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated; returns new bytes."""
    n = len(data)
    if n < 1024:
        if n == 0:
            return b""
        # Big-integer XOR runs in C over machine words: the fastest way for short data.
        repeated = mask * ((n + 3) >> 2)
        if len(repeated) != n:
            repeated = repeated[:n]
        value = int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")
        return value.to_bytes(n, "little")
    # Long data: every 4th byte shares a key byte, so four strided translate()
    # calls do the XOR in C (about 2.5x the big-integer way at 1 MiB).
    out = bytearray(data)
    for i in range(4):
        out[i::4] = out[i::4].translate(_xor_table(mask[i]))
    return bytes(out)


def _build_frame_py(b0: int, payload: bytes | bytearray | memoryview, mask: bytes | None) -> bytes:
    """One frame from its first header byte, payload and optional masking key."""
    length = len(payload)
    m = 0 if mask is None else 0x80
    if length < 126:
        head = _pack_b(b0, m | length)
    elif length < 65536:
        head = _pack_h(b0, m | 126, length)
    else:
        head = _pack_q(b0, m | 127, length)
    if mask is not None:
        return head + mask + _apply_mask_py(payload, mask)
    return head + payload if length else head


class _MessageBufferPy:
    """A large message's bytes, filled in place while it arrives, then taken whole.

    ``write`` copies (and unmasks) a piece to an offset; ``view`` is a writable
    memoryview that a transport may read straight into, ``unmask`` then
    unmasks what landed there; ``take`` returns the message once. The C twin
    (``_speedups.MessageBuffer``) fills a ``bytes`` object, so that ``take``
    copies nothing; this one a ``bytearray`` (``take`` copies once).
    """

    __slots__ = ("_data", "_taken")

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError("size must be >= 0")
        self._data = bytearray(size)
        self._taken = False

    def _check(self, start: int, n: int) -> None:
        if self._taken:
            raise BufferError("the message was taken")
        if start < 0 or n < 0 or start > len(self._data) - n:
            raise ValueError("range outside the message")

    def write(
        self, offset: int, data: bytes | bytearray | memoryview, mask: bytes | None, phase: int
    ) -> None:
        n = len(data)
        self._check(offset, n)
        if mask is not None:
            if len(mask) != 4:
                raise ValueError("the masking key must be 4 bytes")
            phase &= 3
            data = _apply_mask_py(data, mask[phase:] + mask[:phase] if phase else mask)
        self._data[offset : offset + n] = data

    def unmask(self, start: int, end: int, mask: bytes, phase: int) -> None:
        self._check(start, end - start)
        if len(mask) != 4:
            raise ValueError("the masking key must be 4 bytes")
        phase &= 3
        with memoryview(self._data) as view:
            piece = _apply_mask_py(view[start:end], mask[phase:] + mask[:phase] if phase else mask)
        self._data[start:end] = piece

    def view(self) -> memoryview:
        if self._taken:
            raise BufferError("the message was taken")
        return memoryview(self._data)

    def take(self) -> bytes:
        if self._taken:
            raise BufferError("the message was taken")
        self._taken = True
        return bytes(self._data)


class MessageBufferLike(Protocol):
    def write(
        self, offset: int, data: bytes | bytearray | memoryview, mask: bytes | None, phase: int
    ) -> None: ...

    def unmask(self, start: int, end: int, mask: bytes, phase: int) -> None: ...

    def view(self) -> memoryview: ...

    def take(self) -> bytes: ...


ParseMessages = Callable[[memoryview, int, int, bool, int, list[Any]], int]


def _load_speedups() -> Any:
    """The compiled module, or ``None`` (not built, or WSLINE_NO_EXTENSIONS=1).

    WSLINE_REQUIRE_EXTENSIONS=1 turns a missing build into an ImportError, so a
    test run that means to test the compiled path cannot silently skip it.
    """
    if os.environ.get("WSLINE_NO_EXTENSIONS", "") not in ("", "0"):
        return None
    try:
        from .. import _speedups  # type: ignore[attr-defined]
    except ImportError:
        if os.environ.get("WSLINE_REQUIRE_EXTENSIONS", "") not in ("", "0"):
            raise
        return None
    return _speedups


_speedups = _load_speedups()

#: True when the compiled hot path (``wsline._speedups``) is in use.
COMPILED: bool = _speedups is not None

apply_mask: Callable[[bytes | bytearray | memoryview, bytes], bytes]
build_frame_b0: Callable[[int, bytes | bytearray | memoryview, bytes | None], bytes]
#: Consumes whole simple data messages in C; ``None`` on the pure-Python path.
parse_messages: ParseMessages | None
#: ``MessageBuffer(size)``: where a large message is assembled (see :class:`_MessageBufferPy`).
MessageBuffer: Callable[[int], MessageBufferLike]
if _speedups is not None:
    apply_mask = _speedups.apply_mask
    build_frame_b0 = _speedups.build_frame
    parse_messages = _speedups.parse_messages
    MessageBuffer = _speedups.MessageBuffer
else:
    apply_mask = _apply_mask_py
    build_frame_b0 = _build_frame_py
    parse_messages = None
    MessageBuffer = _MessageBufferPy


def frame_header(b0: int, length: int) -> bytes:
    """The header of an unmasked frame of ``length`` payload bytes (the payload goes separately)."""
    if length < 126:
        return _pack_b(b0, length)
    if length < 65536:
        return _pack_h(b0, 126, length)
    return _pack_q(b0, 127, length)


def as_bytes_view(view: memoryview) -> memoryview | bytes:
    """A flat byte view of ``view`` (a copy only when it is not contiguous)."""
    if not view.c_contiguous:
        return view.tobytes()
    if view.itemsize != 1 or view.ndim != 1:
        return view.cast("B")
    return view


def build_frame(
    opcode: int,
    payload: bytes | bytearray | memoryview,
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: bytes | None = None,
) -> bytes:
    """Serialize one frame. ``mask`` is the 4-byte key for client frames.

    The caller's ``payload`` is never modified.
    """
    if type(payload) is memoryview:
        payload = as_bytes_view(payload)
    return build_frame_b0(opcode | (0x80 if fin else 0) | (0x40 if rsv1 else 0), payload, mask)


class MaskSource:
    """Masking keys from a pooled CSPRNG buffer (one ``os.urandom`` call per 1024 keys)."""

    __slots__ = ("_pool", "_pos")

    POOL = 4096

    def __init__(self) -> None:
        self._pool = b""
        self._pos = self.POOL

    def next(self) -> bytes:
        pos = self._pos
        if pos >= self.POOL:
            self._pool = os.urandom(self.POOL)
            pos = 0
        self._pos = pos + 4
        return self._pool[pos : pos + 4]


def is_valid_close_code(code: int) -> bool:
    """Whether ``code`` may appear in a close frame on the wire (RFC 6455 7.4)."""
    if 1000 <= code <= 2999:
        return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014)
    return 3000 <= code <= 4999


def build_close_payload(code: int | None, reason: str = "") -> bytes:
    """Close frame payload: 2-byte code plus UTF-8 reason (at most 123 bytes)."""
    if code is None:
        if reason:
            raise ValueError("a close reason needs a close code")
        return b""
    if not is_valid_close_code(code):
        raise ValueError(f"close code {code} may not be sent on the wire")
    data = reason.encode("utf-8")
    if len(data) > 123:
        raise ValueError("close reason is longer than 123 bytes in UTF-8")
    return code.to_bytes(2, "big") + data


def parse_close_payload(payload: bytes) -> tuple[int, str]:
    """Decode a received close payload; (1005, "") when it is empty.

    Raises :class:`ProtocolError` for a 1-byte payload or a forbidden code and
    :class:`~wsline.errors.InvalidPayload` for a reason that is not UTF-8.
    """
    n = len(payload)
    if n == 0:
        return 1005, ""
    if n == 1:
        raise ProtocolError("close frame with a 1-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if not is_valid_close_code(code):
        raise ProtocolError(f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("close reason is not valid UTF-8", 1007) from None
    return code, reason
