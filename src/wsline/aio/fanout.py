"""Send one message to many connections at once: :func:`broadcast`.

``broadcast(connections, message)`` frames the message once and hands the same
bytes to every server-side connection that can take them, without awaiting any
of them:

- server frames are not masked, so one uncompressed frame fits every server
  connection;
- a compressed frame is shared only by connections whose permessage-deflate
  has ``server_no_context_takeover`` (and the same window bits and level): with
  context takeover each connection's compressor carries history, so each one
  compresses the message itself;
- client-side connections mask every frame with a fresh key: they frame it
  themselves too.

A slow reader never holds up the others: each connection's outgoing backlog
(what its transport holds plus what is queued for the next write) is compared
with ``limit`` before the message is queued. Over the limit, ``policy="drop"``
skips the message for that connection, and ``policy="close"`` closes it with
1008 (the closing handshake gets :data:`CLOSE_TIMEOUT` seconds, then the TCP
connection is aborted). Per-connection counts of dropped messages are kept in
a weak map: :func:`dropped_messages`.

It works through the fan-out interface of :class:`WebSocket` (``_fanout``,
``backlog``, ``close_nowait``), never its internals; the framing and the
choice of a shared frame are the protocol core's (``Connection.send_shared``).
"""

from __future__ import annotations

import weakref
from typing import Hashable, Iterable, Literal, Union

from .connection import (
    FANOUT_DEFAULT_LIMIT,
    FANOUT_LIMIT_FACTOR,
    FANOUT_OVER,
    FANOUT_SENT,
    FANOUT_SKIPPED,
    WebSocket,
)

__all__ = [
    "BroadcastResult",
    "CLOSE_CODE",
    "CLOSE_TIMEOUT",
    "DEFAULT_LIMIT",
    "LIMIT_FACTOR",
    "Policy",
    "broadcast",
    "dropped_messages",
]

Policy = Literal["drop", "close"]
BroadcastMessage = Union[str, bytes, bytearray, memoryview]

#: Without ``limit``, a connection may have ``LIMIT_FACTOR`` x its write
#: buffer's high-water mark (``serve(write_limit=...)``, 64 KiB by default) queued.
LIMIT_FACTOR = FANOUT_LIMIT_FACTOR
#: The limit used when a transport reports no high-water mark (1 MiB).
DEFAULT_LIMIT = FANOUT_DEFAULT_LIMIT
#: The close code sent to a connection that falls too far behind (policy violation).
CLOSE_CODE = 1008
#: The close reason sent with it.
CLOSE_REASON = "too slow to keep up"
#: Seconds a too-slow connection gets to complete the closing handshake before it is aborted.
CLOSE_TIMEOUT = 1.0

_dropped: weakref.WeakKeyDictionary[WebSocket, int] = weakref.WeakKeyDictionary()


class BroadcastResult:
    """What :func:`broadcast` did, as counts of connections.

    - ``sent``: the message was queued;
    - ``dropped``: skipped because the connection's backlog was over the limit
      (``policy="drop"``), or it was in the middle of a fragmented send;
    - ``closed``: closed for being over the limit (``policy="close"``);
    - ``skipped``: not open (closing or closed).
    """

    __slots__ = ("closed", "dropped", "sent", "skipped")

    def __init__(self, sent: int = 0, dropped: int = 0, closed: int = 0, skipped: int = 0) -> None:
        self.sent = sent
        self.dropped = dropped
        self.closed = closed
        self.skipped = skipped

    def __add__(self, other: BroadcastResult) -> BroadcastResult:
        return BroadcastResult(
            self.sent + other.sent,
            self.dropped + other.dropped,
            self.closed + other.closed,
            self.skipped + other.skipped,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BroadcastResult):
            return NotImplemented
        return (self.sent, self.dropped, self.closed, self.skipped) == (
            other.sent,
            other.dropped,
            other.closed,
            other.skipped,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"BroadcastResult(sent={self.sent}, dropped={self.dropped}, "
            f"closed={self.closed}, skipped={self.skipped})"
        )


def dropped_messages(ws: WebSocket) -> int:
    """How many broadcast messages were dropped for ``ws`` because it was too slow (or busy)."""
    return _dropped.get(ws, 0)


def backlog(ws: WebSocket) -> int:
    """Bytes waiting to go out on ``ws``: in the transport plus queued for the next write."""
    return ws.backlog


def broadcast(
    connections: Iterable[WebSocket],
    message: BroadcastMessage,
    *,
    policy: Policy = "drop",
    limit: int | None = None,
    compress: bool | None = None,
) -> BroadcastResult:
    """Queue ``message`` on every connection in ``connections``; never waits.

    ``str`` goes as a text message, bytes-like as binary (anything else raises
    :class:`TypeError`). ``policy`` says what happens to a connection whose
    backlog is over the limit: ``"drop"`` skips the message for it (counted in
    :func:`dropped_messages`), ``"close"`` closes it with 1008. ``limit`` is the
    largest backlog (bytes) a connection may have for the message to be queued
    (default: :data:`LIMIT_FACTOR` x the connection's write buffer high-water
    mark). ``compress`` is as for :meth:`WebSocket.send`. Returns counts
    (:class:`BroadcastResult`). Call it from the event loop's thread.
    """
    if policy not in ("drop", "close"):
        raise ValueError(f"policy must be 'drop' or 'close', not {policy!r}")
    if isinstance(message, str):
        opcode = 1
        payload = message.encode("utf-8")
    elif isinstance(message, (bytes, bytearray, memoryview)):
        opcode = 2
        payload = bytes(message) if not isinstance(message, bytes) else message
    else:
        raise TypeError(f"cannot broadcast {type(message).__name__}; use str or a bytes-like object")
    frames: dict[Hashable, bytes] = {}  # frames that fit several connections (see send_shared)
    sent = dropped = closed = skipped = 0
    for ws in connections:
        outcome = ws._fanout(opcode, payload, frames, compress, limit)
        if outcome == FANOUT_SENT:
            sent += 1
        elif outcome == FANOUT_SKIPPED:
            skipped += 1
        elif outcome == FANOUT_OVER and policy == "close":
            closed += 1
            # The close frame goes out now, so that the connection counts as
            # closing (skipped) from here on; it is aborted after CLOSE_TIMEOUT.
            ws.close_nowait(CLOSE_CODE, CLOSE_REASON, CLOSE_TIMEOUT)
            ws.logger.info("broadcast: outgoing backlog over the limit; closing with %d", CLOSE_CODE)
        else:
            # Over the limit, or a fragmented message is half sent: a frame
            # cannot go in between its fragments.
            dropped += 1
            _dropped[ws] = _dropped.get(ws, 0) + 1
    return BroadcastResult(sent, dropped, closed, skipped)
