"""The RFC 6455 connection state machine, without I/O.

Feed received bytes with :meth:`Connection.receive_data`; it returns the events
they complete: a ``str`` (text message), ``bytes`` (binary message), or a
:class:`Ping`, :class:`Pong`, :class:`CloseFrame` or :class:`Failure`. Frames
the protocol itself must send in reply (pongs, the close reply) collect in
:attr:`Connection.outbox`; the I/O layer writes them out after each call. After
a :class:`Failure`, the I/O layer sends :meth:`Connection.send_failure_close`.
The ``send_*`` methods return the bytes to write.
"""

from __future__ import annotations

import codecs
import struct
from enum import IntEnum
from typing import Iterator, Union

from ..errors import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    Initiator,
    InvalidPayload,
    KeepaliveTimeout,
    PayloadTooBig,
    ProtocolError,
)
from . import frames as _frames
from .frames import (
    MaskSource,
    build_close_payload,
    parse_close_payload,
)

__all__ = [
    "State",
    "Ping",
    "Pong",
    "CloseFrame",
    "Failure",
    "Event",
    "Connection",
    "InvalidState",
]

_unpack_h = struct.Struct("!H").unpack_from
_unpack_q = struct.Struct("!Q").unpack_from
_utf8_decoder = codecs.getincrementaldecoder("utf-8")

BytesLike = Union[bytes, bytearray, memoryview]

#: Bytes of compressed messages one receive_data call inflates before it holds the rest.
INFLATE_BUDGET = 1 << 20

#: Received pieces of a message below this size are gathered in one buffer.
_SMALL_PIECE = 4096


class State(IntEnum):
    """Connection states (RFC 6455 4, 7)."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


class Ping:
    """A ping frame arrived (the pong is already in the outbox)."""

    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __repr__(self) -> str:
        return f"Ping({self.payload!r})"


class Pong:
    """A pong frame arrived."""

    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __repr__(self) -> str:
        return f"Pong({self.payload!r})"


class CloseFrame:
    """The peer's close frame arrived (1005 when it carried no code)."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason

    def __repr__(self) -> str:
        return f"CloseFrame({self.code}, {self.reason!r})"


class Failure:
    """The peer broke the protocol; fail with ``send_failure_close()`` (code ``error.code``)."""

    __slots__ = ("error",)

    def __init__(self, error: ProtocolError) -> None:
        self.error = error

    def __repr__(self) -> str:
        return f"Failure({self.error.code}, {self.error.reason!r})"


Event = Union[str, bytes, Ping, Pong, CloseFrame, Failure]


class InvalidState(Exception):
    """A frame was sent in a state that does not allow it (after the close frame)."""


class _Deflate:
    """What the core needs from a negotiated permessage-deflate instance."""

    def compress(self, data: BytesLike) -> bytes:  # pragma: no cover - protocol
        raise NotImplementedError

    def decompress(self, data: BytesLike, fin: bool, max_size: int) -> bytes:  # pragma: no cover
        raise NotImplementedError


class Connection:
    """One side of a WebSocket connection after the opening handshake.

    ``max_size`` bounds a whole message (after decompression); ``None`` means no
    limit. ``deflate`` is the negotiated permessage-deflate state, if any. With
    ``defer_close_reply``, the peer's close frame is not answered at once: the
    application may first answer the messages that came before it, then sends
    :meth:`send_close_reply` (RFC 6455 5.5.1 allows finishing the current message).
    """

    def __init__(
        self,
        is_client: bool,
        *,
        max_size: int | None = 2**20,
        deflate: object | None = None,
        compress_threshold: int = 32,
        defer_close_reply: bool = False,
    ) -> None:
        self.is_client = is_client
        self.defer_close_reply = defer_close_reply
        self.state = State.OPEN
        self.max_size: int = max_size if max_size is not None else (1 << 63)
        self.deflate = deflate
        self.compress_threshold = compress_threshold
        self.outbox: list[bytes] = []
        self.close_sent: tuple[int, str] | None = None
        self.close_rcvd: CloseFrame | None = None
        #: True when our close frame went out before the peer's arrived.
        self.close_sent_first = False
        self.failure: ProtocolError | None = None
        self.eof = False
        self._masks = MaskSource() if is_client else None
        self._buf = bytearray()
        # The data frame being streamed: [fin, mask | None, remaining, mask phase]
        self._frame: list[object] | None = None
        # The message being assembled.
        self._msg_op = 0  # 0: none; 1 text; 2 binary
        self._msg_compressed = False
        self._msg_size = 0
        self._chunks: list[bytes | bytearray] = []
        self._decoder: codecs.IncrementalDecoder | None = None
        self._stopped = False  # no more input is parsed (close received or failed)
        #: True when the last receive_data stopped at its inflate budget with input left.
        self.input_held = False
        self._inflated = 0  # bytes inflated during this receive_data call

    # ------------------------------------------------------------------ receiving

    def receive_data(self, data: BytesLike) -> list[Event]:
        """Parse received bytes; return the events they complete.

        One call inflates at most about ``INFLATE_BUDGET`` bytes of compressed
        messages: then it stops, keeps the rest, and sets :attr:`input_held`
        (call again, with ``b""`` or more data, once the messages are consumed).
        A few kilobytes of deflate can carry hundreds of megabytes of messages.
        """
        events: list[Event] = []
        self.input_held = False
        self._inflated = 0
        if self._stopped:
            return events
        if self._buf:
            self._buf += data
            buf = self._buf
            with memoryview(buf) as view:
                pos = self._parse(view, len(buf), events)
            if pos:
                del buf[:pos]
        else:
            if isinstance(data, memoryview):
                view = data if data.itemsize == 1 else data.cast("B")
                n = len(view)
                pos = self._parse(view, n, events)
                if pos < n and not self._stopped:
                    self._buf += view[pos:]
            else:
                with memoryview(data) as view:
                    n = len(view)
                    pos = self._parse(view, n, events)
                    if pos < n and not self._stopped:
                        self._buf += view[pos:]
        if self._stopped:
            self._buf = bytearray()
        return events

    def receive_eof(self) -> None:
        """The peer closed its side of the TCP connection."""
        self.eof = True
        self._stopped = True
        self.state = State.CLOSED

    def _parse(self, buf: memoryview, end: int, events: list[Event]) -> int:
        pos = 0
        is_server = not self.is_client
        fast = _frames.parse_messages
        while not self._stopped:
            if self._inflated >= INFLATE_BUDGET:
                self.input_held = pos < end
                return pos
            if self._frame is not None:
                pos = self._continue_frame(buf, pos, end, events)
                if self._frame is not None:
                    return pos
                continue
            if fast is not None and not self._msg_op:
                # Whole unfragmented, uncompressed messages in C; it stops at
                # the first frame that needs judging and leaves it to the code below.
                pos = fast(buf, pos, end, is_server, self.max_size, events)
            avail = end - pos
            if avail < 2:
                break
            b0 = buf[pos]
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            hlen = 2
            if length == 126:
                if avail < 4:
                    break
                (length,) = _unpack_h(buf, pos + 2)
                hlen = 4
            elif length == 127:
                if avail < 10:
                    break
                (length,) = _unpack_q(buf, pos + 2)
                hlen = 10
            masked = b1 & 0x80
            if masked:
                if avail < hlen + 4:
                    break
                mask: bytes | None = bytes(buf[pos + hlen : pos + hlen + 4])
                hlen += 4
            else:
                mask = None
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            try:
                if bool(masked) != is_server:
                    raise ProtocolError(
                        "unmasked frame from a client" if is_server else "masked frame from the server"
                    )
                self._check_header(b0, opcode, fin, length)
            except ProtocolError as exc:
                self._fail(exc, events)
                return pos
            start = pos + hlen
            if opcode >= 8:
                if end - start < length:
                    break
                payload = bytes(buf[start : start + length])
                if mask is not None:
                    payload = _frames.apply_mask(payload, mask)
                pos = start + length
                self._control(opcode, payload, events)
                continue
            if end - start >= length and opcode and fin and not (b0 & 0x40):
                # Fast path: a whole unfragmented, uncompressed message.
                pos = start + length
                if mask is not None:
                    payload = _frames.apply_mask(buf[start:pos], mask)
                else:
                    payload = bytes(buf[start:pos])
                if opcode == 1:
                    try:
                        events.append(payload.decode("utf-8"))
                    except UnicodeDecodeError:
                        self._fail(InvalidPayload("invalid UTF-8 in a text message"), events)
                        return pos
                else:
                    events.append(payload)
                continue
            # Slow path: fragments, compression, or a frame that is not all here.
            if opcode:
                self._msg_op = opcode
                self._msg_compressed = bool(b0 & 0x40)
                self._msg_size = 0
                self._chunks = []
                self._decoder = _utf8_decoder() if opcode == 1 else None
            self._frame = [fin, mask, length, 0]
            pos = start
        return pos

    def _check_header(self, b0: int, opcode: int, fin: int, length: int) -> None:
        if b0 & 0x70:
            if b0 & 0x30:
                raise ProtocolError("reserved bits RSV2/RSV3 set")
            if self.deflate is None:
                raise ProtocolError("reserved bit RSV1 set without a negotiated extension")
            if opcode not in (1, 2):
                raise ProtocolError(
                    "RSV1 set on a control frame" if opcode >= 8 else "RSV1 set on a continuation frame"
                )
        if opcode >= 8:
            if opcode > 10:
                raise ProtocolError(f"reserved opcode {opcode:#x}")
            if not fin:
                raise ProtocolError("fragmented control frame")
            if length > 125:
                raise ProtocolError("control frame payload longer than 125 bytes")
            return
        if opcode > 2:
            raise ProtocolError(f"reserved opcode {opcode:#x}")
        if opcode == 0:
            if not self._msg_op:
                raise ProtocolError("continuation frame without a message to continue")
            compressed = self._msg_compressed
            size = self._msg_size
        else:
            if self._msg_op:
                raise ProtocolError("new data frame while a fragmented message is unfinished")
            compressed = bool(b0 & 0x40)
            size = 0
        if length >> 63:
            raise ProtocolError("frame length has the most significant bit set")
        if not compressed and size + length > self.max_size:
            raise PayloadTooBig(
                f"message of {size + length} bytes or more exceeds the limit of {self.max_size} bytes"
            )

    def _continue_frame(self, buf: memoryview, pos: int, end: int, events: list[Event]) -> int:
        frame = self._frame
        assert frame is not None
        fin, mask, remaining, phase = frame
        assert isinstance(remaining, int) and isinstance(phase, int)
        take = min(end - pos, remaining)
        if take == 0 and remaining:
            return pos
        piece_view = buf[pos : pos + take]
        if mask is not None:
            assert isinstance(mask, bytes)
            key = mask[phase:] + mask[:phase] if phase else mask
            piece = _frames.apply_mask(piece_view, key)
        else:
            piece = bytes(piece_view)
        piece_view.release()
        pos += take
        remaining -= take
        if remaining:
            frame[2] = remaining
            frame[3] = (phase + take) & 3
        else:
            self._frame = None
        try:
            self._data(piece, bool(fin) and not remaining)
        except ProtocolError as exc:
            self._frame = None
            self._fail(exc, events)
            return pos
        if fin and not remaining:
            self._finish_message(events)
        return pos

    def _data(self, piece: bytes, last: bool) -> None:
        if self._msg_compressed:
            deflate = self.deflate
            assert deflate is not None
            piece = deflate.decompress(piece, last, self.max_size - self._msg_size)  # type: ignore[attr-defined]
            self._msg_size += len(piece)
            self._inflated += len(piece)
            if self._msg_size > self.max_size:
                raise PayloadTooBig(f"message exceeds the limit of {self.max_size} bytes")
        else:
            self._msg_size += len(piece)
        decoder = self._decoder
        if decoder is not None:
            # UTF-8 is checked as it comes (fail fast, RFC 6455 8.1); the text
            # itself is decoded once, from the bytes, when the message ends.
            try:
                decoder.decode(piece, last)
            except UnicodeDecodeError:
                raise InvalidPayload("invalid UTF-8 in a text message") from None
        if not piece:
            return
        chunks = self._chunks
        if len(piece) >= _SMALL_PIECE:
            chunks.append(piece)
        elif chunks and type(chunks[-1]) is bytearray:
            # Small pieces (a trickle of tiny fragments) share one buffer:
            # a byte costs a byte, not a Python object.
            chunks[-1] += piece
        else:
            chunks.append(bytearray(piece))

    def _finish_message(self, events: list[Event]) -> None:
        chunks = self._chunks
        data = bytes(chunks[0]) if len(chunks) == 1 else b"".join(chunks)
        if self._msg_op == 1:
            events.append(data.decode("utf-8"))  # checked already, piece by piece
        else:
            events.append(data)
        self._msg_op = 0
        self._chunks = []
        self._decoder = None

    def _control(self, opcode: int, payload: bytes, events: list[Event]) -> None:
        if opcode == 9:
            events.append(Ping(payload))
            if self.close_sent is None:
                self.outbox.append(self._frame_bytes(10, payload))
        elif opcode == 10:
            events.append(Pong(payload))
        else:
            try:
                code, reason = parse_close_payload(payload)
            except ProtocolError as exc:
                self._fail(exc, events)
                return
            frame = CloseFrame(code, reason)
            self.close_rcvd = frame
            self._stopped = True
            if self.close_sent is None:
                if self.defer_close_reply:
                    self.state = State.CLOSING
                    events.append(frame)
                    return
                self.outbox.append(self.send_close_reply())
            self.state = State.CLOSED
            events.append(frame)

    def send_close_reply(self) -> bytes:
        """The answer to the peer's close frame: its code and reason echoed (RFC 6455 5.5.1).

        Needed only with ``defer_close_reply``; ``b""`` when there is nothing to answer.
        """
        frame = self.close_rcvd
        if frame is None or self.close_sent is not None:
            return b""
        reply = None if frame.code == 1005 else frame.code
        self.close_sent = (reply or 1005, frame.reason)
        self.state = State.CLOSED
        return self._frame_bytes(8, build_close_payload(reply, frame.reason))

    def _fail(self, exc: ProtocolError, events: list[Event]) -> None:
        self.failure = exc
        self._stopped = True
        self._frame = None
        events.append(Failure(exc))

    def send_failure_close(self) -> bytes:
        """The close frame that fails the connection after a :class:`Failure` event.

        Kept apart from the event so that the application may still answer the
        messages that arrived before the bad frame; send it soon after.
        """
        exc = self.failure
        if exc is None or self.close_sent is not None:
            return b""
        reason = exc.reason.encode("utf-8")[:123].decode("utf-8", "ignore")
        return self.send_close(exc.code, reason)

    # -------------------------------------------------------------------- sending

    def _frame_bytes(self, opcode: int, payload: BytesLike, fin: bool = True, rsv1: bool = False) -> bytes:
        if type(payload) is memoryview:
            payload = _frames.as_bytes_view(payload)
        masks = self._masks
        b0 = opcode | (0x80 if fin else 0) | (0x40 if rsv1 else 0)
        return _frames.build_frame_b0(b0, payload, None if masks is None else masks.next())

    def _check_can_send(self) -> None:
        # Data may still go out after the peer's close frame, until our reply.
        if self.close_sent is not None or self.state is State.CLOSED:
            raise InvalidState(f"cannot send in state {self.state.name}")

    def send_message(self, message: BytesLike | str, *, compress: bool | None = None) -> bytes:
        """Frame one whole message: ``str`` as text, bytes-like as binary."""
        self._check_can_send()
        if isinstance(message, str):
            opcode = 1
            payload: BytesLike = message.encode("utf-8")
        else:
            opcode = 2
            payload = _frames.as_bytes_view(message) if type(message) is memoryview else message
        deflate = self.deflate
        if deflate is not None and compress is not False:
            if compress or len(payload) >= self.compress_threshold:
                return self._frame_bytes(opcode, deflate.compress(payload), True, True)  # type: ignore[attr-defined]
        return self._frame_bytes(opcode, payload)

    def send_frame(self, opcode: int, payload: BytesLike, fin: bool) -> bytes:
        """Frame one fragment (``opcode`` 0 continues a message). Never compressed."""
        self._check_can_send()
        return self._frame_bytes(opcode, payload, fin)

    def send_ping(self, payload: BytesLike = b"") -> bytes:
        """Frame a ping (payload at most 125 bytes)."""
        self._check_can_send()
        if len(payload) > 125:
            raise ValueError("ping payload longer than 125 bytes")
        return self._frame_bytes(9, payload)

    def send_pong(self, payload: BytesLike = b"") -> bytes:
        """Frame an unsolicited pong (payload at most 125 bytes)."""
        self._check_can_send()
        if len(payload) > 125:
            raise ValueError("pong payload longer than 125 bytes")
        return self._frame_bytes(10, payload)

    def send_close(self, code: int | None = 1000, reason: str = "") -> bytes:
        """Start the closing handshake; returns the close frame's bytes.

        Returns ``b""`` when a close frame was already sent.
        """
        if self.close_sent is not None or self.state is State.CLOSED:
            return b""
        payload = build_close_payload(code, reason)
        self.close_sent = (code if code is not None else 1005, reason)
        if self.close_rcvd is None:
            self.close_sent_first = True
            self.state = State.CLOSING
        else:
            self.state = State.CLOSED
        return self._frame_bytes(8, payload)

    def data_to_send(self) -> Iterator[bytes]:
        """Take the frames queued by the protocol itself (pongs, close replies)."""
        out = self.outbox
        self.outbox = []
        return iter(out)

    # ---------------------------------------------------------------- close info

    @property
    def close_code(self) -> int | None:
        """The peer's close code; 1006 when the connection ended without one."""
        if self.close_rcvd is not None:
            return self.close_rcvd.code
        if self.state is State.CLOSED:
            return 1006
        return None

    @property
    def close_reason(self) -> str:
        """The peer's close reason."""
        return self.close_rcvd.reason if self.close_rcvd is not None else ""

    def closed_exception(
        self, keepalive_timeout: float | None = None, latency: float | None = None
    ) -> ConnectionClosed:
        """The exception that describes how the connection ended (or is ending).

        ``keepalive_timeout``: set when the I/O layer gave up waiting for a pong
        (then :class:`~wsline.errors.KeepaliveTimeout`, with the last ``latency``).
        """
        if keepalive_timeout is not None:
            return KeepaliveTimeout(keepalive_timeout, latency)
        rcvd = self.close_rcvd
        sent_code = self.close_sent[0] if self.close_sent else None
        if rcvd is not None:
            initiator: Initiator = "local" if self.close_sent_first else "remote"
            ok = rcvd.code in (1000, 1001) and not (self.failure is not None and self.close_sent_first)
            cls = ConnectionClosedOK if ok else ConnectionClosedError
            return cls(rcvd.code, rcvd.reason, initiator, sent_code)
        if self.failure is not None:
            return ConnectionClosedError(self.failure.code, self.failure.reason, "local", sent_code)
        return ConnectionClosedError(1006, "", "local" if self.close_sent is not None else "none", sent_code)
