"""Frame-level pieces of RFC 6455: opcodes, headers, masking, close payloads.

Pure functions only; no state beyond a pool of random mask bytes.
"""

from __future__ import annotations

import os
import struct
from enum import IntEnum

from ..errors import ProtocolError

__all__ = [
    "Opcode",
    "apply_mask",
    "build_frame",
    "build_close_payload",
    "parse_close_payload",
    "MaskSource",
    "is_valid_close_code",
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


def _apply_mask_py(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated; returns new bytes."""
    n = len(data)
    if n == 0:
        return b""
    # Big-integer XOR runs in C over machine words: fast enough in pure Python.
    repeated = mask * ((n + 3) >> 2)
    if len(repeated) != n:
        repeated = repeated[:n]
    value = int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")
    return value.to_bytes(n, "little")


apply_mask = _apply_mask_py


def as_bytes_view(view: memoryview) -> memoryview | bytes:
    """A flat byte view of ``view`` (a copy only when it is not contiguous)."""
    if not view.c_contiguous:
        return view.tobytes()
    if view.itemsize != 1 or view.ndim != 1:
        return view.cast("B")
    return view


def header_bytes(opcode: int, length: int, fin: bool, rsv1: bool, masked: bool) -> bytes:
    """Encode a frame header (without the masking key)."""
    b0 = opcode | (0x80 if fin else 0) | (0x40 if rsv1 else 0)
    m = 0x80 if masked else 0
    if length < 126:
        return _pack_b(b0, m | length)
    if length < 65536:
        return _pack_h(b0, m | 126, length)
    return _pack_q(b0, m | 127, length)


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
    length = len(payload)
    head = header_bytes(opcode, length, fin, rsv1, mask is not None)
    if mask is not None:
        return head + mask + apply_mask(payload, mask)
    return head + payload if length else head


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
