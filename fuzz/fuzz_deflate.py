"""Coverage-guided fuzz target for permessage-deflate (``PerMessageDeflate``).

Input layout:

* byte 0: bits 0-2 inflate window bits (8 + value); bit 3 no context
  takeover; bits 4-5 ``max_size`` (2**20, 4096, 64 or 0); bit 6 also run the
  compress round trip; bit 7 compress with no context takeover.
* byte 1: seeds the chunk lengths the second decompression uses (0: 1 byte).
* the rest: up to 4 messages separated by ``b"\\xff\\x00\\xff"``.

A known bug is skipped so that the fuzzer can look for new ones; set
``WSLINE_FUZZ_STRICT=1`` to make it crash too.

Invariants: inflating arbitrary bytes raises nothing but :class:`InvalidPayload`
or :class:`PayloadTooBig`, never produces more than ``max_size`` bytes, and
gives the same result (data or error class) whether a message comes in one
piece or in chunks; after an error the state is dropped, like a failed
connection's. Compressing any messages and inflating them with the peer's
object gives them back.
"""

from __future__ import annotations

import os
import sys
from typing import Union

from wsline.errors import InvalidPayload, PayloadTooBig
from wsline.protocol.deflate import PerMessageDeflate

MAX_SIZES = (1 << 20, 4096, 64, 0)
SEPARATOR = b"\xff\x00\xff"
STRICT = os.environ.get("WSLINE_FUZZ_STRICT") == "1"

Outcome = Union[bytes, str]


def chunk_lengths(seed: int, total: int) -> list[int]:
    """Deterministic chunk lengths adding up to ``total`` (1-byte chunks when ``seed`` is 0)."""
    if seed == 0:
        return [1] * total
    lengths: list[int] = []
    state = seed
    left = total
    while left > 0:
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        n = min(left, 1 + (state >> 16) % 37)
        lengths.append(n)
        left -= n
    return lengths


def inflater(config: int) -> PerMessageDeflate:
    return PerMessageDeflate(
        True, client_max_window_bits=8 + (config & 7), client_no_context_takeover=bool(config & 8)
    )


def inflate_all(config: int, messages: list[bytes], seed: int | None) -> list[Outcome]:
    """Inflate each message (in chunks unless ``seed`` is None); stop at the first error."""
    max_size = MAX_SIZES[(config >> 4) & 3]
    pmd = inflater(config)
    out: list[Outcome] = []
    for message in messages:
        pieces = [message] if seed is None else []
        if seed is not None:
            pos = 0
            for n in chunk_lengths(seed, len(message)):
                pieces.append(message[pos : pos + n])
                pos += n
            if not pieces:
                pieces = [b""]
        produced: list[bytes] = []
        try:
            for i, piece in enumerate(pieces):
                room = max_size - sum(map(len, produced))
                got = pmd.decompress(piece, i == len(pieces) - 1, room)
                assert len(got) <= room, "decompress went over its budget"
                produced.append(got)
        except (InvalidPayload, PayloadTooBig) as exc:
            out.append(type(exc).__name__)
            break
        out.append(b"".join(produced))
    return out


def round_trip(config: int, messages: list[bytes]) -> None:
    bits = 9 + (config & 7) % 7
    reset = bool(config & 0x80)
    sender = PerMessageDeflate(False, client_max_window_bits=bits, client_no_context_takeover=reset)
    receiver = PerMessageDeflate(True, client_max_window_bits=bits, client_no_context_takeover=reset)
    for message in messages:
        payload = sender.compress(message)
        assert receiver.decompress(payload, True, len(message)) == message


def known_bug(whole: list[Outcome], split: list[Outcome]) -> bool:
    """BUG A (documented in tests/test_properties.py): when the output reaches the limit right
    before corrupt data, the error class depends on where the input is cut."""
    errors = {"InvalidPayload", "PayloadTooBig"}
    return len(whole) == len(split) and whole[:-1] == split[:-1] and {whole[-1], split[-1]} == errors


def TestOneInput(data: bytes) -> None:  # the name atheris calls
    if len(data) < 2:
        return
    config, seed = data[0], data[1]
    messages = data[2:].split(SEPARATOR)[:4]
    whole = inflate_all(config, messages, None)
    split = inflate_all(config, messages, seed)
    if whole != split and not (known_bug(whole, split) and not STRICT):
        raise AssertionError((whole, split))
    if config & 0x40:
        round_trip(config, messages)


def main() -> None:
    import atheris  # type: ignore[import-untyped]  # only here: the tests import TestOneInput without it

    atheris.instrument_all()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
