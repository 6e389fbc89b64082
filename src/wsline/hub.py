"""Rooms of connections, and publishing to them: :class:`Hub` and :class:`RedisHub`.

:class:`Hub` keeps the members of this process in memory and needs nothing.
:class:`RedisHub` (``pip install 'wsline[redis]'``) has the same interface and
shares published messages between processes over Redis pub/sub::

    async with RedisHub("redis://127.0.0.1:6379/0") as hub:   # or Hub()
        await hub.join("lobby", ws)
        await hub.publish("lobby", "hello", exclude=ws)

Members leave their rooms by themselves when their connection closes.
Delivery uses :func:`wsline.broadcast`: one framing for all, and a
member that does not keep up has messages dropped (``policy="drop"``) or is
closed (``policy="close"``) instead of holding up the others.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .aio.connection import WebSocket
from .aio.fanout import BroadcastMessage, BroadcastResult, Policy, broadcast
from .errors import WebSocketError
from .protocol.connection import State

if TYPE_CHECKING:  # pragma: no cover
    from .hub_redis import RedisHub as RedisHub

__all__ = ["BroadcastResult", "Hub", "HubUnavailable", "RedisHub"]

logger = logging.getLogger("wsline.hub")


class HubUnavailable(WebSocketError):
    """The hub's backend (e.g. Redis) cannot be reached, or its client library is missing."""


class Hub:
    """Rooms of local connections; :meth:`publish` delivers to a room's members.

    ``policy`` and ``limit`` are passed to :func:`wsline.broadcast`.
    The methods are coroutines so that every hub (e.g. :class:`RedisHub`) has
    the same interface; this one never waits. Use it from one event loop.
    """

    def __init__(self, *, policy: Policy = "drop", limit: int | None = None) -> None:
        self.policy: Policy = policy
        self.limit = limit
        self._rooms: dict[str, dict[WebSocket, None]] = {}
        self._joined: dict[WebSocket, set[str]] = {}

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect to the backend (nothing to do in process)."""

    async def close(self) -> None:
        """Disconnect from the backend; the members stay connected."""

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ------------------------------------------------------------ membership

    async def join(self, room: str, ws: WebSocket) -> None:
        """Add ``ws`` to ``room`` (no-op if it is a member, or closed already)."""
        if ws.state is State.CLOSED:
            return
        members = self._rooms.get(room)
        new_room = members is None
        if members is None:
            members = self._rooms[room] = {}
        members[ws] = None
        rooms = self._joined.get(ws)
        if rooms is None:
            rooms = self._joined[ws] = set()
            ws.add_close_callback(self._connection_closed)
        rooms.add(room)
        if new_room:
            await self._room_added(room)

    async def leave(self, room: str, ws: WebSocket) -> None:
        """Remove ``ws`` from ``room`` (no-op if it is not a member)."""
        rooms = self._joined.get(ws)
        if rooms is not None:
            rooms.discard(room)
        if self._remove(room, ws):
            await self._room_removed(room)

    def members(self, room: str) -> list[WebSocket]:
        """The local members of ``room``, in the order they joined."""
        return list(self._rooms.get(room, ()))

    def rooms(self) -> list[str]:
        """The rooms with local members."""
        return list(self._rooms)

    def rooms_of(self, ws: WebSocket) -> list[str]:
        """The rooms ``ws`` is in."""
        return sorted(self._joined.get(ws, ()))

    def _remove(self, room: str, ws: WebSocket) -> bool:
        """Take ``ws`` out of ``room``; True if the room is now empty (and gone)."""
        members = self._rooms.get(room)
        if members is None or ws not in members:
            return False
        del members[ws]
        if members:
            return False
        del self._rooms[room]
        return True

    def _connection_closed(self, ws: WebSocket) -> None:
        for room in self._joined.pop(ws, ()):
            if self._remove(room, ws):
                self._room_emptied(room)

    async def _room_added(self, room: str) -> None:
        """The first local member joined ``room``."""

    async def _room_removed(self, room: str) -> None:
        """The last local member left ``room``."""

    def _room_emptied(self, room: str) -> None:
        """The last local member's connection closed (sync: from a callback)."""

    # ------------------------------------------------------------ publishing

    async def publish(
        self, room: str, message: BroadcastMessage, *, exclude: WebSocket | None = None
    ) -> BroadcastResult:
        """Deliver ``message`` to every member of ``room`` but ``exclude``.

        Returns the counts of the local delivery.
        """
        return self._deliver(room, message, exclude)

    def _deliver(self, room: str, message: BroadcastMessage, exclude: WebSocket | None) -> BroadcastResult:
        members = self._rooms.get(room)
        if not members:
            return BroadcastResult()
        targets: Any = members if exclude is None else [ws for ws in members if ws is not exclude]
        return broadcast(targets, message, policy=self.policy, limit=self.limit)


def __getattr__(name: str) -> Any:
    if name == "RedisHub":  # importing it does not need redis; starting it does
        from .hub_redis import RedisHub

        return RedisHub
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
