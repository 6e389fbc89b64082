"""The RFC 6455 connection state machine, without I/O.

Feed received bytes with :meth:`Connection.receive_data`; it returns the events
they complete: a ``str`` (text message), ``bytes`` (binary message), or a
:class:`Ping`, :class:`Pong`, :class:`CloseFrame` or :class:`Failure`. Frames
the protocol itself must send in reply (pongs, the close reply) collect in
:attr:`Connection.outbox`; the I/O layer writes them out after each call. After
a :class:`Failure`, the I/O layer sends :meth:`Connection.send_failure_close`.
The ``send_*`` methods return the bytes to write.

A :class:`Connection` exists only after the opening handshake: it starts
:attr:`State.OPEN` (the handshake has its own objects, in
:mod:`~wsline.protocol.handshake`), so there is no ``CONNECTING`` state.
The events are frozen dataclasses with slots: they compare with ``==``.
Message-level helpers over it (fragmented sends, ping bookkeeping) are in
:mod:`~wsline.protocol.session`.
"""

from __future__ import annotations

import codecs
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Hashable, Iterator, Protocol, Union

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

if TYPE_CHECKING:  # pragma: no cover
    from .deflate import PerMessageDeflate

__all__ = [
    "State",
    "Ping",
    "Pong",
    "CloseFrame",
    "Failure",
    "Event",
    "Deflate",
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

#: An unfragmented, uncompressed message of this many bytes or more (up to
#: _BIG_MAX) is assembled in one MessageBuffer of its final size: no pieces to
#: join, and the I/O layer may read the rest of it straight into place
#: (:attr:`Connection.direct`).
_BIG = 1 << 16
_BIG_MAX = 1 << 24

#: Unmasked frames with a payload of this many bytes or more are handed out
#: as header and payload apart (:meth:`Connection.send_message_parts`).
SPLIT_SEND = 1 << 17


class State(IntEnum):
    """Connection states (RFC 6455 7), from the end of the opening handshake on.

    There is no ``CONNECTING``: a :class:`Connection` is made once the
    handshake succeeded (the values of the others are those of RFC 6455's
    readyState, and stay).
    """

    OPEN = 1
    CLOSING = 2
    CLOSED = 3


_OPEN = State.OPEN
_CLOSED = State.CLOSED


@dataclass(frozen=True, slots=True)
class Ping:
    """A ping frame arrived (the pong is already in the outbox)."""

    payload: bytes

    def __repr__(self) -> str:
        return f"Ping({self.payload!r})"


@dataclass(frozen=True, slots=True)
class Pong:
    """A pong frame arrived."""

    payload: bytes

    def __repr__(self) -> str:
        return f"Pong({self.payload!r})"


@dataclass(frozen=True, slots=True)
class CloseFrame:
    """The peer's close frame arrived (1005 when it carried no code)."""

    code: int
    reason: str

    def __repr__(self) -> str:
        return f"CloseFrame({self.code}, {self.reason!r})"


@dataclass(frozen=True, slots=True)
class Failure:
    """The peer broke the protocol; fail with ``send_failure_close()`` (code ``error.code``)."""

    error: ProtocolError

    def __repr__(self) -> str:
        return f"Failure({self.error.code}, {self.error.reason!r})"


Event = Union[str, bytes, Ping, Pong, CloseFrame, Failure]


class InvalidState(Exception):
    """A frame was sent in a state that does not allow it (after the close frame)."""


class Deflate(Protocol):
    """What the core needs from a negotiated permessage-deflate (``PerMessageDeflate`` fits it)."""

    @property
    def threshold(self) -> int:
        """Messages shorter than this many bytes go uncompressed (unless asked for)."""
        ...

    @property
    def shared_key(self) -> Hashable | None:
        """Set when :meth:`compress` carries no context from one message to the next.

        Then its output depends on the message and on this key alone, so one
        compressed frame fits every connection with an equal key (fan-out);
        ``None`` with context takeover.
        """
        ...

    def compress(self, data: BytesLike) -> bytes:
        """One whole message, compressed into a frame payload (RSV1 set)."""
        ...

    def decompress(self, data: BytesLike, fin: bool, max_size: int) -> bytes:
        """One frame's payload of a compressed message, inflated to ``max_size`` bytes at most."""
        ...


if TYPE_CHECKING:  # pragma: no cover - mypy checks that the real one fits

    def _fits(deflate: PerMessageDeflate) -> Deflate:
        return deflate


class Connection:
    """One side of a WebSocket connection after the opening handshake.

    ``max_size`` bounds a whole message (after decompression); ``None`` means no
    limit. ``deflate`` is the negotiated permessage-deflate state, if any
    (messages shorter than its ``threshold`` go uncompressed). With
    ``defer_close_reply``, the peer's close frame is not answered at once: the
    application may first answer the messages that came before it, then sends
    :meth:`send_close_reply` (RFC 6455 5.5.1 allows finishing the current message).
    """

    def __init__(
        self,
        is_client: bool,
        *,
        max_size: int | None = 2**20,
        deflate: Deflate | None = None,
        defer_close_reply: bool = False,
    ) -> None:
        self.is_client = is_client
        self.defer_close_reply = defer_close_reply
        self.state = State.OPEN
        self.max_size: int = max_size if max_size is not None else (1 << 63)
        self.deflate = deflate
        self.outbox: list[bytes] = []
        self.close_sent: tuple[int, str] | None = None
        self.close_rcvd: CloseFrame | None = None
        #: True when our close frame went out before the peer's arrived.
        self.close_sent_first = False
        self.failure: ProtocolError | None = None
        #: The latest pong kept back by ``take_outbox(hold_pongs=True)``.
        self.held_pong: bytes | None = None
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
        # A large message assembled in place (see _BIG) and how much of it is here.
        self._msgbuf: _frames.MessageBufferLike | None = None
        self._msgpos = 0
        #: Where the next received bytes may go straight to (the rest of a large
        #: message, see :meth:`receive_direct`), or ``None``: use :meth:`receive_data`.
        self.direct: memoryview | None = None
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
        if self._msgbuf is not None:
            self._set_direct()
        elif self.direct is not None:
            self.direct = None
        return events

    def _set_direct(self) -> None:
        mb = self._msgbuf
        frame = self._frame
        if mb is None or frame is None or self._buf or self._stopped:
            self.direct = None
        else:
            remaining = frame[2]
            assert isinstance(remaining, int)
            with mb.view() as view:
                self.direct = view[self._msgpos : self._msgpos + remaining]

    def receive_direct(self, n: int) -> list[Event]:
        """``n`` bytes were received straight into :attr:`direct`: return the events they complete.

        The I/O layer reads into :attr:`direct` (when it is set) instead of
        its own buffer and calls this instead of :meth:`receive_data`.
        """
        events: list[Event] = []
        self.input_held = False
        self.direct = None
        frame = self._frame
        if self._stopped or self._msgbuf is None or frame is None:
            return events
        _, mask, remaining, phase = frame
        assert isinstance(remaining, int) and isinstance(phase, int)
        if not 0 < n <= remaining:
            raise ValueError(f"received {n} bytes into a view of {remaining}")
        start = self._msgpos
        if mask is not None:
            assert isinstance(mask, bytes)
            self._msgbuf.unmask(start, start + n, mask, phase)
        remaining -= n
        if remaining:
            frame[2] = remaining
            frame[3] = (phase + n) & 3
        else:
            self._frame = None
        self._big_piece(start, n, not remaining, events)
        if remaining and not self._stopped:
            self._set_direct()
        return events

    def _big_piece(self, start: int, n: int, last: bool, events: list[Event]) -> None:
        """Bytes start..start+n of the large message are in place (unmasked)."""
        mb = self._msgbuf
        assert mb is not None
        self._msgpos = start + n
        self._msg_size += n
        decoder = self._decoder
        if decoder is not None:
            try:
                with mb.view() as view:
                    decoder.decode(view[start : start + n], last)
            except UnicodeDecodeError:
                self._fail(InvalidPayload("invalid UTF-8 in a text message"), events)
                return
        if last:
            data = mb.take()
            self._msgbuf = None
            self.direct = None
            events.append(data.decode("utf-8") if self._msg_op == 1 else data)
            self._msg_op = 0
            self._decoder = None

    def receive_eof(self) -> None:
        """The peer closed its side of the TCP connection."""
        self.eof = True
        self._stopped = True
        self.state = State.CLOSED
        self._msgbuf = None
        self.direct = None

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
                if fin and not self._msg_compressed and _BIG <= length <= _BIG_MAX:
                    self._msgbuf = _frames.MessageBuffer(length)
                    self._msgpos = 0
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
        mb = self._msgbuf
        if mb is not None:
            # A large message: this piece goes (unmasked) straight to its place.
            start = self._msgpos
            mb.write(start, buf[pos : pos + take], mask, phase)  # type: ignore[arg-type]
            pos += take
            remaining -= take
            if remaining:
                frame[2] = remaining
                frame[3] = (phase + take) & 3
            else:
                self._frame = None
            self._big_piece(start, take, not remaining, events)
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
            try:
                piece = deflate.decompress(piece, last, self.max_size - self._msg_size)
            except PayloadTooBig:  # the close reason names the limit, not what was left of it
                raise PayloadTooBig(
                    f"decompressed message exceeds the limit of {self.max_size} bytes"
                ) from None
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
        self._msgbuf = None
        self.direct = None
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
            if compress or len(payload) >= deflate.threshold:
                return self._frame_bytes(opcode, deflate.compress(payload), True, True)
        return self._frame_bytes(opcode, payload)

    def send_message_parts(
        self, message: BytesLike | str, *, compress: bool | None = None
    ) -> tuple[bytes, BytesLike | None]:
        """Like :meth:`send_message`, but a large unmasked, uncompressed frame comes as
        ``(header, payload)``, to be written one after the other (the payload is
        not copied into a frame); otherwise ``(frame, None)``.

        ``payload`` is the caller's object (bytes-like, not copied): it must
        not change until written.
        """
        if self._masks is None and self.deflate is None and not isinstance(message, str):
            payload = _frames.as_bytes_view(message) if type(message) is memoryview else message
            if len(payload) >= SPLIT_SEND:
                self._check_can_send()
                return _frames.frame_header(0x82, len(payload)), payload
        return self.send_message(message, compress=compress), None

    def send_shared(
        self, opcode: int, payload: BytesLike, frames: dict[Hashable, bytes], compress: bool | None = None
    ) -> bytes:
        """Frame a message that many connections send alike (fan-out); ``opcode`` 1 text, 2 binary.

        ``frames`` is one dict shared by those connections for this message: a
        frame that fits the others is kept there and reused. Unmasked,
        uncompressed frames fit every server connection; a compressed one,
        every server connection whose deflate has the same ``shared_key`` (no
        context takeover). Client frames are masked: each is its own.
        """
        if self.close_sent is not None or self.state is _CLOSED:  # _check_can_send, inlined
            raise InvalidState(f"cannot send in state {self.state.name}")
        deflate = self.deflate
        shared = self._masks is None
        if deflate is not None and compress is not False and (compress or len(payload) >= deflate.threshold):
            key = deflate.shared_key if shared else None
            if key is None:
                return self._frame_bytes(opcode, deflate.compress(payload), True, True)
            frame = frames.get(key)
            if frame is None:
                # This connection's compressor starts from an empty window and
                # is reset after the message: its frame fits the others alike.
                frame = frames[key] = self._frame_bytes(opcode, deflate.compress(payload), True, True)
            return frame
        if not shared:
            return self._frame_bytes(opcode, payload)
        frame = frames.get(opcode)
        if frame is None:
            frame = frames[opcode] = self._frame_bytes(opcode, payload)
        return frame

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

    def send_pong(self, payload: BytesLike | str = b"") -> bytes:
        """Frame an unsolicited pong (payload at most 125 bytes; ``str`` is sent as UTF-8)."""
        self._check_can_send()
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
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

    def close(self, code: int | None = 1000, reason: str = "") -> bytes:
        """Close from this side now; returns the close frame to write (``b""``: one went out already).

        After a :class:`Failure` that is the protocol error's close
        (:meth:`send_failure_close`); after the peer's close frame (deferred
        with ``defer_close_reply``), the echo of its code
        (:meth:`send_close_reply`); otherwise a new close with ``code`` and
        ``reason`` (:meth:`send_close`).
        """
        if self.failure is not None:
            return self.send_failure_close()
        if self.close_rcvd is not None:
            return self.send_close_reply()
        return self.send_close(code, reason)

    def data_to_send(self) -> Iterator[bytes]:
        """Take the frames queued by the protocol itself (pongs, close replies)."""
        out = self.outbox
        self.outbox = []
        return iter(out)

    def take_outbox(self, hold_pongs: bool = False) -> bytes:
        """Take the frames queued by the protocol itself, joined (``b""`` when none).

        ``hold_pongs``: the peer is not reading what we write (the I/O layer's
        write buffer is full). Then pongs stay out, and only the latest is kept
        in :attr:`held_pong` (RFC 6455 5.5.3 allows answering only the most
        recent ping): a ping flood from a peer that never reads cannot pile up
        pongs without bound. :meth:`release_held_pong` gives it back.
        """
        out = self.outbox
        if not out:
            return b""
        self.outbox = []
        if hold_pongs:
            kept = []
            for frame in out:
                if frame[0] == 0x8A:  # a pong (FIN + opcode 0xA)
                    self.held_pong = frame
                else:
                    kept.append(frame)
            out = kept
        return out[0] if len(out) == 1 else b"".join(out)

    def release_held_pong(self) -> bytes:
        """The pong kept back by :meth:`take_outbox`, once writing resumes (``b""``: none, or closing)."""
        pong = self.held_pong
        if pong is None:
            return b""
        self.held_pong = None
        return pong if self.close_sent is None else b""

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
