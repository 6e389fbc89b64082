"""permessage-deflate (RFC 7692), without I/O.

Negotiation works on ``Sec-WebSocket-Extensions`` header values: the server
calls :func:`server_negotiate` with the request's values, the client sends
:func:`client_offer` and checks the answer with :func:`client_negotiate`. Both
sides end up with a :class:`PerMessageDeflate`, which compresses whole outgoing
messages and inflates incoming ones frame by frame.

Memory per connection is kept low: zlib objects are created on first use, and
dropped after each message on a side that may not take over its context, so an
idle connection without context takeover holds no zlib state at all.
"""

from __future__ import annotations

import re
import sys
import zlib
from dataclasses import dataclass
from typing import TypeAlias

from ..errors import InvalidPayload, NegotiationError, PayloadTooBig

__all__ = [
    "EXTENSION_NAME",
    "DeflateConfig",
    "DEFAULT_SERVER_CONFIG",
    "DEFAULT_CLIENT_CONFIG",
    "PerMessageDeflate",
    "parse_extensions",
    "server_negotiate",
    "client_offer",
    "client_negotiate",
]

#: The extension token of RFC 7692.
EXTENSION_NAME = "permessage-deflate"

#: Parsed extension parameters: ``(name, value)``, value ``None`` when absent.
Params: TypeAlias = list[tuple[str, str | None]]

# A Z_SYNC_FLUSH ends with an empty stored block; RFC 7692 7.2.1 strips it from
# each message and 7.2.2 puts it back before inflating.
_TAIL = b"\x00\x00\xff\xff"

# zlib cannot build a raw deflate compressor with an 8-bit window (1.2.9 and
# later refuse it). A 9-bit compressor is safe for a peer that inflates with 8
# bits: zlib never emits a distance above MAX_DIST = window - MIN_LOOKAHEAD =
# 512 - 262 = 250, which fits in 256 bytes. Node's zlib does the same mapping.
_MIN_COMPRESS_BITS = 9

# The largest max_length zlib accepts, minus one (see _inflate).
_MAX_LENGTH = sys.maxsize - 1

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED = re.compile(r'"((?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*)"')
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
# RFC 7692 7.1.2: "a decimal integer value without leading zeroes between 8 to 15".
_WINDOW_BITS = re.compile(r"[89]|1[0-5]")

_KNOWN = (
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
)


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class DeflateConfig:
    """Settings for one side (server or client) of permessage-deflate.

    On a server, the ``*_no_context_takeover`` flags are imposed on the peer or
    on ourselves in the response, and the window bits are upper limits applied
    to what the client offers. On a client, they are what the offer asks for;
    ``client_max_window_bits=None`` offers the valueless parameter (the server
    may then pick any client window). ``threshold``: messages shorter than this
    many bytes are not worth compressing and go uncompressed (the negotiated
    :class:`PerMessageDeflate` carries it to the connection).

    ``serve()`` uses :data:`DEFAULT_SERVER_CONFIG` and ``connect()``
    :data:`DEFAULT_CLIENT_CONFIG` when given none.
    """

    #: The server resets its compressor after each message (less memory, less compression).
    server_no_context_takeover: bool = False
    #: The client resets its compressor after each message.
    client_no_context_takeover: bool = False
    #: The server's LZ77 window: 8 to 15 bits, or ``None`` (see above).
    server_max_window_bits: int | None = None
    #: The client's LZ77 window: 8 to 15 bits, or ``None`` (see above).
    client_max_window_bits: int | None = None
    #: zlib's compression level, -1 to 9 (6: zlib's default).
    compress_level: int = 6
    #: zlib's memLevel, 1 to 9: the memory of its internal state (5 here, zlib's default is 8).
    mem_level: int = 5
    #: Messages shorter than this many bytes go uncompressed.
    threshold: int = 32

    def __post_init__(self) -> None:
        for name in ("server_no_context_takeover", "client_no_context_takeover"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool")
        for name in ("server_max_window_bits", "client_max_window_bits"):
            bits = getattr(self, name)
            if bits is not None and not _int_in(bits, 8, 15):
                raise ValueError(f"{name} must be None or an int from 8 to 15, not {bits!r}")
        if not _int_in(self.compress_level, -1, 9):
            raise ValueError(f"compress_level must be an int from -1 to 9, not {self.compress_level!r}")
        if not _int_in(self.mem_level, 1, 9):
            raise ValueError(f"mem_level must be an int from 1 to 9, not {self.mem_level!r}")
        if not _int_in(self.threshold, 0, sys.maxsize):
            raise ValueError(f"threshold must be a non-negative int, not {self.threshold!r}")


def _int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


#: What ``serve()`` uses by default: 12-bit windows both ways and memLevel 5,
#: chosen from ``benchmarks/memory_per_connection.py``: about 59 KiB per busy
#: connection for a ratio within 7 % of zlib's full 15-bit window, which costs
#: about 199 KiB. (The server caps the client's window only when the client
#: offers ``client_max_window_bits``; browsers do.)
DEFAULT_SERVER_CONFIG = DeflateConfig(server_max_window_bits=12, client_max_window_bits=12)

#: What ``connect()`` uses by default: the valueless ``client_max_window_bits``
#: offer, which lets the server choose our window (as browsers do). A client
#: that offers a value must fail when a server answers with more, and some
#: servers do; clients are few per process, so memory matters less here.
DEFAULT_CLIENT_CONFIG = DeflateConfig()


# ---------------------------------------------------------------- per connection


class PerMessageDeflate:
    """One connection's compression state, built by the negotiate functions.

    The negotiated parameters are plain attributes; the window bits are always
    ints (15 when the parameter was not negotiated). ``is_server`` says which
    side this object is: "our" side compresses with its own window and
    context-takeover rule, and inflates with the peer's.

    It is what :class:`~wsline.protocol.connection.Connection` takes as
    ``deflate`` (it fits the core's ``Deflate`` protocol): ``threshold`` (from
    :attr:`DeflateConfig.threshold`) is the size below which messages go
    uncompressed; ``shared_key`` is set when our side keeps no context between
    messages: a compressed message then depends on it alone, and one compressed
    frame fits every connection with an equal key (fan-out).
    """

    __slots__ = (
        "_compress_bits",
        "_compressor",
        "_decompressor",
        "_fed",
        "_inflate_bits",
        "_local_reset",
        "_remote_reset",
        "client_max_window_bits",
        "client_no_context_takeover",
        "compress_level",
        "is_server",
        "mem_level",
        "server_max_window_bits",
        "server_no_context_takeover",
        "shared_key",
        "threshold",
    )

    def __init__(
        self,
        is_server: bool,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int = 15,
        client_max_window_bits: int = 15,
        compress_level: int = 6,
        mem_level: int = 5,
        threshold: int = 32,
    ) -> None:
        for bits in (server_max_window_bits, client_max_window_bits):
            if not _int_in(bits, 8, 15):
                raise ValueError(f"window bits must be an int from 8 to 15, not {bits!r}")
        self.is_server = is_server
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.compress_level = compress_level
        self.mem_level = mem_level
        self.threshold = threshold
        if is_server:
            local_bits, remote_bits = server_max_window_bits, client_max_window_bits
            self._local_reset = server_no_context_takeover
            self._remote_reset = client_no_context_takeover
        else:
            local_bits, remote_bits = client_max_window_bits, server_max_window_bits
            self._local_reset = client_no_context_takeover
            self._remote_reset = server_no_context_takeover
        self._compress_bits = max(local_bits, _MIN_COMPRESS_BITS)
        self._inflate_bits = remote_bits
        self.shared_key: tuple[int, int, int] | None = (
            (self._compress_bits, compress_level, mem_level) if self._local_reset else None
        )
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None
        self._fed = False  # the current incoming message had compressed bytes

    def __repr__(self) -> str:
        side = "server" if self.is_server else "client"
        return (
            f"<PerMessageDeflate {side} "
            f"server_no_context_takeover={self.server_no_context_takeover} "
            f"client_no_context_takeover={self.client_no_context_takeover} "
            f"server_max_window_bits={self.server_max_window_bits} "
            f"client_max_window_bits={self.client_max_window_bits}>"
        )

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        """Compress one whole message into the payload of a frame with RSV1 set.

        Deflate with a sync flush, minus the trailing ``00 00 ff ff`` (RFC 7692
        7.2.1). Without context takeover on our side, the compressor is dropped
        after the message and the next one starts from an empty window.
        """
        compressor = self._compressor
        if compressor is None:
            compressor = zlib.compressobj(
                self.compress_level, zlib.DEFLATED, -self._compress_bits, self.mem_level
            )
        body = compressor.compress(data)
        tail = compressor.flush(zlib.Z_SYNC_FLUSH)
        self._compressor = None if self._local_reset else compressor
        # The sync flush itself emits the empty stored block, so it is all in ``tail``.
        if tail.endswith(_TAIL):
            tail = tail[:-4]
        return body + tail if body else tail

    def decompress(self, data: bytes | bytearray | memoryview, fin: bool, max_size: int) -> bytes:
        """Inflate one frame's payload of the current compressed message.

        Call with ``fin=True`` for the message's last frame. At most
        ``max_size`` bytes are produced (the room left in the message);
        :class:`PayloadTooBig` is raised as soon as more would come, before the
        memory is spent. Corrupt data raises :class:`InvalidPayload`.
        """
        budget = min(max(max_size, 0), _MAX_LENGTH)
        parts: list[bytes] = []
        produced = self._inflate(data, budget, parts)
        if fin:
            # RFC 7692 7.2.2: append 00 00 ff ff. Skipped when the message had
            # no bytes at all, or when its deflate stream already ended with a
            # final block: the tail would leave a half-read block behind.
            if self._fed and self._decompressor is not None:
                self._inflate(_TAIL, budget - produced, parts)
            self._fed = False
            if self._remote_reset:
                self._decompressor = None
        if not parts:
            return b""
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _inflate(self, data: bytes | bytearray | memoryview, budget: int, parts: list[bytes]) -> int:
        # Asking zlib for budget + 1 bytes tells "exactly at the limit" from
        # "over it" with certainty: when fewer come out, every input byte was
        # consumed and nothing is left pending inside zlib (a long match can
        # stay pending with an empty unconsumed_tail, so that check alone is
        # not enough).
        produced = 0
        if data:
            self._fed = True
        while data:
            decompressor = self._decompressor
            if decompressor is None:
                decompressor = self._decompressor = zlib.decompressobj(-self._inflate_bits)
            try:
                out = decompressor.decompress(data, budget - produced + 1)
            except zlib.error as exc:
                self._decompressor = None
                raise InvalidPayload(f"invalid compressed data: {exc}") from None
            produced += len(out)
            if produced > budget:
                self._decompressor = None
                raise PayloadTooBig(f"decompressed message over the size limit ({budget} more bytes allowed)")
            if out:
                parts.append(out)
            if not decompressor.eof:
                break
            # The peer closed its deflate stream with a BFINAL block (RFC 7692
            # 7.2.3.4). What follows starts a new stream, without the old window.
            self._decompressor = None
            data = decompressor.unused_data
        return produced


# ---------------------------------------------------------------- header parsing


def parse_extensions(values: list[str]) -> list[tuple[str, Params]]:
    """Parse ``Sec-WebSocket-Extensions`` values (RFC 6455 9.1).

    Returns ``(name, [(param, value or None), ...])`` for each extension, in
    order, across all the header lines. Quoted-string values are unquoted.
    Malformed syntax raises :class:`NegotiationError`.
    """
    result: list[tuple[str, Params]] = []
    for value in values:
        _parse_value(value, result)
    return result


def _parse_value(text: str, result: list[tuple[str, Params]]) -> None:
    end = len(text)
    pos = _skip_ows(text, 0)
    while pos < end:
        if text[pos] == ",":  # empty list element: allowed by the #rule
            pos = _skip_ows(text, pos + 1)
            continue
        name, pos = _token(text, pos, "an extension name")
        params: Params = []
        pos = _skip_ows(text, pos)
        while pos < end and text[pos] == ";":
            pos = _skip_ows(text, pos + 1)
            param, pos = _token(text, pos, "a parameter name")
            pos = _skip_ows(text, pos)
            param_value: str | None = None
            if pos < end and text[pos] == "=":
                pos = _skip_ows(text, pos + 1)
                if pos < end and text[pos] == '"':
                    quoted = _QUOTED.match(text, pos)
                    if quoted is None:
                        raise NegotiationError(f"bad quoted string at offset {pos} in {text!r}")
                    param_value = _QUOTED_PAIR.sub(r"\1", quoted.group(1))
                    # RFC 6455 9.1: once unescaped, the value must still be a token.
                    if not _TOKEN.fullmatch(param_value):
                        raise NegotiationError(f"quoted value {param_value!r} is not a token in {text!r}")
                    pos = quoted.end()
                else:
                    param_value, pos = _token(text, pos, "a parameter value")
                pos = _skip_ows(text, pos)
            params.append((param, param_value))
        result.append((name, params))
        if pos < end:
            if text[pos] != ",":
                raise NegotiationError(f"unexpected {text[pos]!r} at offset {pos} in {text!r}")
            pos = _skip_ows(text, pos + 1)


def _skip_ows(text: str, pos: int) -> int:
    end = len(text)
    while pos < end and text[pos] in " \t":
        pos += 1
    return pos


def _token(text: str, pos: int, what: str) -> tuple[str, int]:
    match = _TOKEN.match(text, pos)
    if match is None:
        found = repr(text[pos]) if pos < len(text) else "end of value"
        raise NegotiationError(f"expected {what} at offset {pos} in {text!r}, found {found}")
    return match.group(), match.end()


def _format(params: Params) -> str:
    parts = [EXTENSION_NAME]
    for name, value in params:
        parts.append(name if value is None else f"{name}={value}")
    return "; ".join(parts)


class _Declined(Exception):
    """An offer or response that breaks RFC 7692 7.1 (message says why)."""


def _read_params(params: Params, *, is_offer: bool) -> dict[str, str | None]:
    """Check names, duplicates and values of permessage-deflate parameters."""
    seen: dict[str, str | None] = {}
    for name, value in params:
        if name not in _KNOWN:
            raise _Declined(f"unknown parameter {name!r}")
        if name in seen:
            raise _Declined(f"duplicate parameter {name!r}")
        if name.endswith("_no_context_takeover"):
            if value is not None:
                raise _Declined(f"{name} takes no value, got {value!r}")
        elif value is None:
            # Only an offer may carry a valueless client_max_window_bits (7.1.2.2).
            if not (is_offer and name == "client_max_window_bits"):
                raise _Declined(f"{name} needs a value")
        elif not _WINDOW_BITS.fullmatch(value):
            raise _Declined(f"invalid {name} value {value!r} (expected 8 to 15)")
        seen[name] = value
    return seen


# ---------------------------------------------------------------- server side


def server_negotiate(values: list[str], config: DeflateConfig) -> tuple[str, PerMessageDeflate] | None:
    """Pick the first acceptable permessage-deflate offer of a request (server side).

    ``values`` are the request's ``Sec-WebSocket-Extensions`` values. Offers
    with unknown, duplicate or invalid parameters are declined and skipped;
    other extensions are ignored. Returns the response header value and the
    connection's state, or ``None`` when no offer is acceptable. Malformed
    header syntax raises :class:`NegotiationError` (answer 400).
    """
    for name, params in parse_extensions(values):
        if name != EXTENSION_NAME:
            continue
        try:
            offer = _read_params(params, is_offer=True)
        except _Declined:
            continue
        return _accept(offer, config)
    return None


def _accept(offer: dict[str, str | None], config: DeflateConfig) -> tuple[str, PerMessageDeflate]:
    response: Params = []

    # 7.1.1.1: an offered server_no_context_takeover must be echoed; the
    # server may also impose it on itself.
    server_nct = config.server_no_context_takeover or "server_no_context_takeover" in offer
    if server_nct:
        response.append(("server_no_context_takeover", None))

    # 7.1.1.2: the server may always forbid the client's context takeover; a
    # client that offered it has promised it anyway, so echo it and free the
    # inflater between messages.
    client_nct = config.client_no_context_takeover or "client_no_context_takeover" in offer
    if client_nct:
        response.append(("client_no_context_takeover", None))

    # 7.1.2.1: answer an offered limit with the same or a smaller value; the
    # server may also announce its own limit unasked.
    server_bits = config.server_max_window_bits
    offered = offer.get("server_max_window_bits")
    if offered is not None:
        server_bits = int(offered) if server_bits is None else min(server_bits, int(offered))
    if server_bits is not None:
        response.append(("server_max_window_bits", str(server_bits)))

    # 7.1.2.2: a client window may only be set when the client offered the
    # parameter, and not above a value it offered. A client that did not offer
    # it is accepted anyway, and inflated with the full 15-bit window.
    client_bits: int | None = None
    if "client_max_window_bits" in offer:
        client_bits = config.client_max_window_bits
        offered = offer["client_max_window_bits"]
        if offered is not None:
            client_bits = int(offered) if client_bits is None else min(client_bits, int(offered))
        if client_bits is not None:
            response.append(("client_max_window_bits", str(client_bits)))

    deflate = PerMessageDeflate(
        True,
        server_no_context_takeover=server_nct,
        client_no_context_takeover=client_nct,
        server_max_window_bits=server_bits or 15,
        client_max_window_bits=client_bits or 15,
        compress_level=config.compress_level,
        mem_level=config.mem_level,
        threshold=config.threshold,
    )
    return _format(response), deflate


# ---------------------------------------------------------------- client side


def _offer_params(config: DeflateConfig) -> Params:
    params: Params = []
    if config.server_no_context_takeover:
        params.append(("server_no_context_takeover", None))
    if config.client_no_context_takeover:
        params.append(("client_no_context_takeover", None))
    if config.server_max_window_bits is not None:
        params.append(("server_max_window_bits", str(config.server_max_window_bits)))
    bits = config.client_max_window_bits
    params.append(("client_max_window_bits", None if bits is None else str(bits)))
    return params


def client_offer(config: DeflateConfig) -> str:
    """The ``Sec-WebSocket-Extensions`` value a client sends to offer compression."""
    return _format(_offer_params(config))


def client_negotiate(values: list[str], config: DeflateConfig) -> PerMessageDeflate | None:
    """Check the server's ``Sec-WebSocket-Extensions`` answer (client side).

    ``config`` must be the one :func:`client_offer` was built from. Returns
    ``None`` when the server accepted no extension. Any answer RFC 7692 7.1
    does not allow raises :class:`NegotiationError`: the client must then
    fail the connection.
    """
    extensions = parse_extensions(values)
    if not extensions:
        return None
    if len(extensions) > 1:
        names = ", ".join(name for name, _ in extensions)
        if all(name == EXTENSION_NAME for name, _ in extensions):
            raise NegotiationError(f"the server accepted {EXTENSION_NAME} more than once")
        raise NegotiationError(
            f"the server accepted several extensions ({names}); only {EXTENSION_NAME} was offered"
        )
    name, params = extensions[0]
    if name != EXTENSION_NAME:
        raise NegotiationError(f"the server accepted extension {name!r}, which was not offered")
    try:
        response = _read_params(params, is_offer=False)
    except _Declined as exc:
        raise NegotiationError(f"invalid {EXTENSION_NAME} response: {exc}") from None
    offer = dict(_offer_params(config))

    # 7.1.1.1: an offered server_no_context_takeover must come back; the
    # server may add it unasked.
    server_nct = "server_no_context_takeover" in response
    if "server_no_context_takeover" in offer and not server_nct:
        raise NegotiationError(
            f"invalid {EXTENSION_NAME} response: server_no_context_takeover was requested but not accepted"
        )

    # 7.1.1.2: offering client_no_context_takeover is a promise, whatever the answer.
    client_nct = "client_no_context_takeover" in response or "client_no_context_takeover" in offer

    # 7.1.2.1: a requested server limit must be answered with a value <= it.
    server_bits = 15
    answered = response.get("server_max_window_bits")
    if answered is not None:
        server_bits = int(answered)
    asked = offer.get("server_max_window_bits")
    if asked is not None:
        if answered is None:
            raise NegotiationError(
                f"invalid {EXTENSION_NAME} response: server_max_window_bits={asked} was requested "
                "but the response does not include server_max_window_bits"
            )
        if server_bits > int(asked):
            raise NegotiationError(
                f"invalid {EXTENSION_NAME} response: server_max_window_bits={server_bits} "
                f"is larger than the requested {asked}"
            )

    # 7.1.2.2: client_max_window_bits only if offered, and not above an offered value.
    mine = offer.get("client_max_window_bits")
    client_bits = 15 if mine is None else int(mine)
    if "client_max_window_bits" in response:
        if "client_max_window_bits" not in offer:
            raise NegotiationError(
                f"invalid {EXTENSION_NAME} response: client_max_window_bits was not offered"
            )
        answered = response["client_max_window_bits"]
        assert answered is not None  # _read_params requires a value in a response
        if int(answered) > client_bits:
            raise NegotiationError(
                f"invalid {EXTENSION_NAME} response: client_max_window_bits={answered} "
                f"is larger than the offered {mine}"
            )
        client_bits = int(answered)

    return PerMessageDeflate(
        False,
        server_no_context_takeover=server_nct,
        client_no_context_takeover=client_nct,
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
        compress_level=config.compress_level,
        mem_level=config.mem_level,
        threshold=config.threshold,
    )
