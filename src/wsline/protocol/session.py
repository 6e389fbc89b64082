"""Message-level logic over :class:`~wsline.protocol.connection.Connection`, shared by the I/O layers.

- :class:`Fragmenter` frames one message sent as an iterable of pieces
  (RFC 6455 5.4): the first piece decides text or binary, later pieces must
  be of the same kind, they continue with opcode 0, and FIN marks the last.
- :class:`PingTracker` keeps the pings waiting for their pong, each with
  whatever the I/O layer waits on (an asyncio future, a thread event), and
  the round-trip time of the last answered one. The core has no clock: the
  time is passed in, in seconds from any monotonic clock.
- :func:`check_pieces` says what may be sent as a fragmented message.

The I/O layers keep only the waiting, the timers and the transport.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Iterable, Mapping
from typing import Generic, Sequence, TypeVar, Union

from .connection import Connection

__all__ = ["Fragmenter", "PingTracker", "check_pieces", "INCOMPLETE_MESSAGE"]

Piece = Union[str, bytes, bytearray, memoryview]
W = TypeVar("W")

#: Why the connection closes (with 1011) when a fragmented send fails midway.
INCOMPLETE_MESSAGE = "incomplete fragmented message"


def check_pieces(pieces: object, *, allow_async: bool) -> None:
    """Raise :class:`TypeError` unless ``pieces`` can be sent as one fragmented message.

    That is an iterable (with ``allow_async``, also an async iterable) other
    than a mapping (a dict is most likely a message someone forgot to serialize).
    """
    if isinstance(pieces, Mapping):
        raise TypeError("cannot send a mapping; serialize it first (e.g. json.dumps)")
    if not (isinstance(pieces, Iterable) or (allow_async and isinstance(pieces, AsyncIterable))):
        raise TypeError(f"cannot send {type(pieces).__name__}; use str or a bytes-like object")


class Fragmenter:
    """Frames one fragmented message, one piece behind.

    A frame must say whether it is the last, so a piece is framed when the
    next one arrives: :meth:`push` returns the frame of the piece before
    (``b""`` for the first), :meth:`finish` the last frame, with FIN
    (``b""`` when there were no pieces: nothing is sent). Fragments are never
    compressed. Frames come from :meth:`Connection.send_frame`, which raises
    :class:`~wsline.protocol.connection.InvalidState` once closing.

    When the pieces stop coming midway (the iterable raised), :meth:`abort`
    gives the close frame to send: half a message on the wire leaves the
    stream unable to carry another one.
    """

    __slots__ = ("_core", "_pending", "_text", "started")

    def __init__(self, core: Connection) -> None:
        self._core = core
        self._pending: Piece | None = None
        self._text = False
        #: A frame of the message went out: it must be finished, or the connection closed.
        self.started = False

    def push(self, piece: object) -> bytes:
        """Take the next piece; return the frame of the previous one (``b""`` for the first)."""
        if isinstance(piece, str):
            text = True
        elif isinstance(piece, (bytes, bytearray, memoryview)):
            text = False
        else:
            raise TypeError(f"cannot send a fragment of type {type(piece).__name__}")
        previous = self._pending
        if previous is None:
            self._text = text
            self._pending = piece
            return b""
        if text != self._text:
            raise TypeError("all fragments of a message must be str, or all bytes-like")
        frame = self._frame(previous, False)
        self._pending = piece
        return frame

    def finish(self) -> bytes:
        """The last piece's frame, with FIN (``b""`` when no piece came)."""
        previous = self._pending
        if previous is None:
            return b""
        self._pending = None
        return self._frame(previous, True)

    def abort(self) -> bytes:
        """The pieces stopped midway: the 1011 close frame to send (``b""`` if none is due).

        None is due when no fragment went out yet, or a close frame did already.
        """
        self._pending = None
        if not self.started:
            return b""
        return self._core.send_close(1011, INCOMPLETE_MESSAGE)

    def _frame(self, piece: Piece, fin: bool) -> bytes:
        opcode = 0 if self.started else (1 if self._text else 2)
        payload = piece.encode("utf-8") if isinstance(piece, str) else piece
        frame = self._core.send_frame(opcode, payload, fin)
        self.started = True
        return frame


class PingTracker(Generic[W]):
    """Pings waiting for their pong, each with the I/O layer's waiter ``W``.

    A pong answers its ping and every ping sent before it (RFC 6455 5.5.3:
    a peer may answer only the most recent of several pings). An unknown pong
    (unsolicited, a heartbeat) answers nothing.
    """

    __slots__ = ("_waiting", "latency")

    def __init__(self) -> None:
        self._waiting: dict[bytes, tuple[W, float]] = {}
        #: Round-trip time of the last answered ping, in seconds.
        self.latency: float | None = None

    def add(self, data: str | bytes | None, waiter: W, now: float) -> bytes:
        """A new ping, sent at ``now``: ``waiter`` waits for its pong. Returns its payload.

        The payload is ``data`` (``str`` as UTF-8), or 4 random bytes unlike
        those of the waiting pings. Raises :class:`ValueError` when ``data``
        is longer than 125 bytes or a ping with it is waiting already (its
        pong could not be told apart). If the ping cannot be sent after all,
        :meth:`discard` it.
        """
        waiting = self._waiting
        if data is None:
            payload = os.urandom(4)
            while payload in waiting:
                payload = os.urandom(4)
        else:
            payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
            if len(payload) > 125:
                raise ValueError("ping payload longer than 125 bytes")
            if payload in waiting:
                raise ValueError("a ping with this payload is already waiting for its pong")
        waiting[payload] = (waiter, now)
        return payload

    def newest(self) -> bytes | None:
        """The payload of the latest waiting ping."""
        return next(reversed(self._waiting), None)

    def pong(self, payload: bytes, now: float) -> Sequence[tuple[W, float]]:
        """A pong with ``payload`` arrived at ``now``: the waiters it answers, oldest first, with their RTT.

        Sets :attr:`latency` when it answers a ping.
        """
        waiting = self._waiting
        entry = waiting.get(payload)
        if entry is None:
            return ()
        if next(iter(waiting)) == payload:  # the oldest ping (most often the only one)
            del waiting[payload]
            rtt = self.latency = now - entry[1]
            return ((entry[0], rtt),)
        answered = []
        for key in list(waiting):
            waiter, sent = waiting.pop(key)
            answered.append((waiter, now - sent))
            if key == payload:
                self.latency = now - sent
                break
        return answered

    def discard(self, payload: bytes, waiter: W) -> None:
        """Stop waiting for the pong of ``payload`` (if ``waiter`` still waits for it)."""
        entry = self._waiting.get(payload)
        if entry is not None and entry[0] is waiter:
            del self._waiting[payload]

    def clear(self) -> list[W]:
        """Stop waiting for every pong (the connection is gone); the waiters, oldest first."""
        waiters = [waiter for waiter, _ in self._waiting.values()]
        self._waiting.clear()
        return waiters

    def __contains__(self, payload: object) -> bool:
        return payload in self._waiting

    def __len__(self) -> int:
        return len(self._waiting)
