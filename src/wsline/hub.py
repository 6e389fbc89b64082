"""Rooms of connections, in one process or across many: :class:`Hub` and :class:`RedisHub`.

:class:`Hub` keeps everything in this process and needs nothing.
:class:`RedisHub` (``pip install 'wsline[redis]'``) has the same interface and
shares the rooms between processes and machines through one Redis server or a
Redis Cluster::

    async with RedisHub("redis://127.0.0.1:6379/0") as hub:     # or Hub()
        joined = await hub.join("lobby", ws, user="u42", data={"name": "Ann"})
        await hub.publish("lobby", "hello", exclude=ws)
        await hub.presence("lobby")             # the members of every process
        await hub.send_to(joined.address, "to that one connection, wherever it is")

Members leave their rooms by themselves when their connection closes.

What a hub promises
-------------------

**Order and positions.** Every *entry* of a room -- a :class:`Publication`
or a :class:`PresenceEvent` (a join or a leave) -- gets a
:class:`StreamPosition`: an *offset* that counts 1, 2, 3... within an
*epoch*, a random name of the room's stream that changes whenever the store
may have lost entries (a :class:`Hub` that is created again, a Redis restart
without persistence, a room idle for longer than the store keeps it). Every
process delivers a room's entries in offset order, each once: a process that
notices a gap (a lost Redis connection, a subscription race) fetches what it
missed from the history before going on, and a process that cannot (the
history no longer has it) gives every member a :class:`Reset` instead.

**History and recovery.** The last ``history_size`` entries of a room that
are younger than ``history_ttl`` seconds are kept (1000 and 300 s by
default; in memory for :class:`Hub`, in a Redis stream for :class:`RedisHub`;
Redis trims approximately, so it may keep a little more). A member that joins
with ``since=`` the last position it saw receives every entry after it, once
and in order, then the live ones; or, when that is not possible, a
:class:`Reset` first -- "cannot recover": the epoch changed, the position is
unknown, or the history was trimmed past it -- followed by the entries after
its own join, so that the application can load its state afresh. A member
that joins without ``since`` receives its own join and what follows.
``history_size=0`` turns history off: positions are still given, but any
gap is a :class:`Reset`.

**Envelopes.** What a member's connection receives is decided by its
:class:`Envelope`. :data:`RAW` (the default) sends publications as they were
published and nothing else, for plain subscribers; :class:`PositionPrefix`
sends ``"<epoch>:<offset>\\n"`` + the message (text stays text, binary stays
binary) and ``"!reset <epoch>:<offset> <reason>"`` on a reset; an
application writes its own (the chat demo adds ``"pos"`` to its JSON
events). A *lossless* envelope (``PositionPrefix``, the chat's) never skips
an entry for a slow member: the member is closed with 1008 instead, and
recovers from its last position when it comes back.

**Presence.** :meth:`Hub.presence` lists the members of a room in every
process, in the order they joined, each a :class:`ClientInfo` with its
address, an optional ``user`` (one user may have several connections) and
optional ``data``. ``join(..., user=..., unique=True)`` refuses a user that
is in the room already, on any process (:class:`UserTaken`). Joins and
leaves are entries of the room: :meth:`Hub.subscribe` iterates over them
with the publications, and an envelope can show them. A :class:`RedisHub`
refreshes its members every ``heartbeat`` seconds (5 by default); the members
of a process that dies without leaving (``SIGKILL``, a lost machine) expire
``presence_ttl`` seconds after its last refresh (3 heartbeats by default) and
leave -- with a leave event -- at the next heartbeat of any process with
members or subscribers in the room: within ``presence_ttl + heartbeat``
seconds (20 s with the defaults).

**Addresses.** Every member has a cluster-wide address,
``"<hub id>/<connection id>"`` (:meth:`Hub.address`): :meth:`Hub.send_to`
delivers a message to it from any process.

Delivery uses :func:`wsline.broadcast`: one framing for all the members that
get the same bytes; a member that does not keep up has messages dropped
(``policy="drop"``, :data:`RAW` only) or is closed (``policy="close"``, and
always for lossless envelopes) instead of holding up the others.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import time
import weakref
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Iterable, Literal, NamedTuple, Protocol, Union

from .aio.connection import WebSocket
from .aio.fanout import BroadcastMessage, BroadcastResult, Policy, broadcast
from .errors import WebSocketError
from .protocol.connection import State

if TYPE_CHECKING:  # pragma: no cover
    from .hub_redis import RedisHub as RedisHub

__all__ = [
    "RAW",
    "BroadcastResult",
    "ClientInfo",
    "Entry",
    "Envelope",
    "Hub",
    "HubUnavailable",
    "Joined",
    "PositionPrefix",
    "PresenceEvent",
    "Publication",
    "PublishResult",
    "RedisHub",
    "Reset",
    "RoomView",
    "StreamPosition",
    "Subscription",
    "UserTaken",
]

logger = logging.getLogger("wsline.hub")


class HubUnavailable(WebSocketError):
    """The hub's backend (e.g. Redis) cannot be reached, or its client library is missing."""


class UserTaken(WebSocketError):
    """``join(..., unique=True)``: the user is a member of the room already (in some process)."""

    def __init__(self, room: str, user: str) -> None:
        super().__init__(f"user {user!r} is in room {room!r} already")
        self.room = room
        self.user = user


# ------------------------------------------------------------------ positions and entries

_EPOCH = re.compile(r"[0-9A-Za-z_-]{1,64}\Z")
_OFFSET = re.compile(r"[0-9]{1,19}\Z")


def new_epoch() -> str:
    """A fresh epoch name: 12 random hex digits."""
    return os.urandom(6).hex()


class StreamPosition(NamedTuple):
    """Where an entry is in its room's stream: ``epoch`` and ``offset`` (1 for the first entry).

    ``str(position)`` is ``"epoch:offset"``, the form clients keep and send
    back (:meth:`parse` reads it). Offset 0 is the position before the
    first entry of an epoch.
    """

    epoch: str
    offset: int

    def __str__(self) -> str:
        return f"{self.epoch}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> StreamPosition:
        """``"epoch:offset"`` as a position; :class:`ValueError` if it is not one."""
        epoch, sep, offset = text.rpartition(":")
        if not sep or not _EPOCH.match(epoch) or not _OFFSET.match(offset):
            raise ValueError(f"not a stream position (EPOCH:OFFSET): {text[:80]!r}")
        return cls(epoch, int(offset))


@dataclass(frozen=True)
class ClientInfo:
    """A member of a room, as presence lists it.

    ``address`` is the connection's (:meth:`Hub.address`); ``user`` and
    ``data`` are what it joined with; ``joined`` is the offset of its join
    event (members are listed in that order).
    """

    address: str
    user: str | None = None
    data: Any = None
    joined: int = 0


@dataclass(frozen=True)
class Publication:
    """A published message, at ``position`` in ``room``.

    ``data`` is ``str`` for text, ``bytes`` for binary. ``excluded`` is the
    address of the connection it is not delivered to (``publish(exclude=ws)``).
    """

    room: str
    position: StreamPosition
    data: str | bytes
    excluded: str | None = None


@dataclass(frozen=True)
class PresenceEvent:
    """A member joined (``kind="join"``) or left (``"leave"``) ``room``, at ``position``.

    ``first`` (joins): the first connection of its user in the room (always
    for members without a user). ``last`` (leaves): its user's last one.
    """

    room: str
    position: StreamPosition
    kind: Literal["join", "leave"]
    client: ClientInfo
    first: bool = True
    last: bool = True


@dataclass(frozen=True)
class Reset:
    """Cannot recover: entries after ``since`` may be lost; what follows comes after ``position``.

    ``reason``: ``"epoch changed"`` (the store lost the stream, e.g. a Redis
    restart without persistence), ``"history trimmed"`` (older than the
    history keeps), ``"position unknown"`` (a position the room never had),
    ``"history unavailable"`` (the store could not be read), ``"fell behind"``.
    The application should load its state afresh.
    """

    room: str
    position: StreamPosition
    since: StreamPosition | None
    reason: str


#: What a room's stream is made of.
Entry = Union[Publication, PresenceEvent]
Item = Union[Publication, PresenceEvent, Reset]


@dataclass(frozen=True)
class Joined:
    """What :meth:`Hub.join` did: the member's ``address`` and the ``position`` of its join.

    ``members`` is the room's presence right after the join (``snapshot=True``
    only). ``recovered`` (``since`` given): every entry after ``since`` was
    delivered (``False``: a :class:`Reset` was); it is ``None`` while
    :meth:`Envelope.joined` runs, before the recovery.
    """

    room: str
    address: str
    position: StreamPosition
    members: list[ClientInfo] | None = None
    recovered: bool | None = None


class PublishResult(BroadcastResult):
    """:class:`BroadcastResult` counts of this process's delivery, and the publication's ``position``.

    :class:`Hub` delivers while :meth:`Hub.publish` runs, so the counts are
    its members'; :class:`RedisHub` delivers when the publication comes
    back from Redis, so they are zero. ``position`` is ``None`` when it is
    not known (``wait=False``, or Redis unreachable: see :meth:`RedisHub.publish`).
    """

    __slots__ = ("position",)

    def __init__(
        self,
        sent: int = 0,
        dropped: int = 0,
        closed: int = 0,
        skipped: int = 0,
        position: StreamPosition | None = None,
    ) -> None:
        super().__init__(sent, dropped, closed, skipped)
        self.position = position

    def __repr__(self) -> str:
        return (
            f"PublishResult(sent={self.sent}, dropped={self.dropped}, closed={self.closed}, "
            f"skipped={self.skipped}, position={self.position})"
        )


# ------------------------------------------------------------------ envelopes


class RoomView(Protocol):
    """What an :class:`Envelope` may look at: the room, as this process has delivered it so far."""

    @property
    def name(self) -> str: ...

    @property
    def position(self) -> StreamPosition: ...

    def clients(self) -> list[ClientInfo]:
        """The members, in the order they joined, as of :attr:`position`."""
        ...


class Envelope:
    """How the entries of a room reach a member's connection: one envelope per kind of client.

    Each method returns the message to send (``str``: text, bytes: binary),
    or ``None`` to send nothing. One envelope object serves many members:
    what it returns is framed once for all of them (keep it the same object).

    ``lossless``: members must get every entry; one that falls behind is
    closed with 1008 rather than skipped (it recovers when it comes back).
    """

    lossless: bool = False

    def publication(self, pub: Publication, room: RoomView) -> BroadcastMessage | None:
        """A publication: here, its data as published."""
        return pub.data

    def presence(self, event: PresenceEvent, room: RoomView) -> BroadcastMessage | None:
        """A join or a leave: here, nothing."""
        return None

    def reset(self, reset: Reset, room: RoomView) -> BroadcastMessage | None:
        """A :class:`Reset`: here, nothing."""
        return None

    def joined(self, joined: Joined, room: RoomView) -> BroadcastMessage | None:
        """The first message of a member, before any entry (a welcome): here, none."""
        return None


#: Publications as they were published, nothing else: what plain subscribers get.
RAW = Envelope()


class PositionPrefix(Envelope):
    """Publications as ``"<epoch>:<offset>\\n"`` followed by the message; lossless.

    A text message stays text and a binary one binary (the prefix is ASCII).
    A :class:`Reset` is the text ``"!reset <epoch>:<offset> <reason>"``, the
    position after which the stream goes on. Joins and leaves are not sent
    (their offsets are simply not seen). The relay uses it for
    ``?since=`` clients.
    """

    lossless = True

    def publication(self, pub: Publication, room: RoomView) -> BroadcastMessage | None:
        head = f"{pub.position.epoch}:{pub.position.offset}\n"
        data = pub.data
        if isinstance(data, str):
            return head + data
        return head.encode("ascii") + data

    def reset(self, reset: Reset, room: RoomView) -> BroadcastMessage | None:
        return f"!reset {reset.position} {reset.reason}"


def _closed(ws: WebSocket) -> bool:
    return ws.state is State.CLOSED


def _render(envelope: Envelope, item: Item, room: RoomView) -> BroadcastMessage | None:
    if isinstance(item, Publication):
        return envelope.publication(item, room)
    if isinstance(item, PresenceEvent):
        return envelope.presence(item, room)
    return envelope.reset(item, room)


# ------------------------------------------------------------------ what a store provides


class _State(NamedTuple):
    epoch: str
    top: int
    clients: list[ClientInfo]


class _Fetched(NamedTuple):
    epoch: str
    top: int
    #: Every entry after the position asked for, up to ``top``; ``None``: cannot recover.
    entries: list[Entry] | None


class _Store:
    """Where a hub's rooms live: this process's memory, or Redis. Internal."""

    #: Whether the store answers now (Redis: connected).
    live = True

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def abort(self) -> None:
        """Stop at once, as a killed process would: no leaves, nothing flushed."""

    async def subscribe(self, room: str) -> None:
        """Start receiving the room's entries (they go to ``hub._receive``)."""

    def unsubscribe(self, room: str) -> None:
        """Stop receiving them (soon)."""

    async def state(self, room: str) -> _State:
        raise NotImplementedError

    async def join(
        self, room: str, info: ClientInfo, unique: bool, snapshot: bool
    ) -> tuple[StreamPosition, list[ClientInfo] | None]:
        raise NotImplementedError

    async def leave(self, room: str, address: str) -> None:
        raise NotImplementedError

    def leave_soon(self, room: str, address: str) -> None:
        raise NotImplementedError

    async def publish(self, room: str, data: str | bytes, excluded: str | None, wait: bool) -> PublishResult:
        raise NotImplementedError

    async def fetch(self, room: str, after: int) -> _Fetched:
        raise NotImplementedError

    async def presence(self, room: str) -> list[ClientInfo]:
        return (await self.state(room)).clients

    async def send(self, hub_id: str, address: str, message: BroadcastMessage) -> bool:
        return False

    async def new_epoch(self, room: str, old: str) -> _State:
        """The room's stream went back in time under ``old``: give it a new epoch."""
        return await self.state(room)


# ------------------------------------------------------------------ members and rooms

_JOINING, _BEHIND, _LIVE, _AHEAD, _GONE = range(5)


class _Member:
    """A connection in a room (``ws``), or a :class:`Subscription` (``sub``), in one process."""

    __slots__ = (
        "address",
        "envelope",
        "info",
        "paused",
        "pos",
        "reset",
        "resets",
        "room",
        "state",
        "sub",
        "unique",
        "ws",
    )

    def __init__(
        self,
        room: _Room,
        ws: WebSocket | None,
        sub: Subscription | None,
        envelope: Envelope,
        address: str,
    ) -> None:
        self.room = room
        self.ws = ws
        self.sub = sub
        self.envelope = envelope
        self.address = address
        self.info: ClientInfo | None = None
        self.unique = False
        #: The offset of the last entry it has (meaningful unless live: then it is the room's).
        self.pos = 0
        self.state = _JOINING
        #: A reset to send before anything else (set while catching up).
        self.reset: Reset | None = None
        self.resets = 0
        self.paused = False


class _Room:
    """One room in one process: its members here, and its stream as delivered here."""

    def __init__(self, hub: Hub, name: str, cache_size: int) -> None:
        self.hub = hub
        self._name = name
        self.epoch = ""
        self.offset = 0
        self.ready = False
        self.init: asyncio.Future[None] | None = None
        self._clients: dict[str, ClientInfo] = {}
        #: The last entries delivered here, contiguous up to ``offset``.
        self.cache: deque[Entry] = deque(maxlen=cache_size)
        #: Live connection members, by envelope (each group gets one broadcast per entry).
        self.groups: dict[Envelope, dict[WebSocket, _Member]] = {}
        #: Live subscriptions.
        self.subs: dict[_Member, None] = {}
        #: Members waiting for the room to reach their position.
        self.ahead: dict[_Member, None] = {}
        #: Every connection member here, in the order they joined.
        self.members: dict[WebSocket, _Member] = {}
        self.queues: dict[_Member, None] = {}
        #: Entries received out of order (a gap before them), by offset.
        self.pending: dict[int, Entry] = {}
        #: Entries received before the room was ready, or of another epoch.
        self.early: list[Entry] = []
        self.foreign: list[Entry] = []
        self.recheck = False
        self.want = 0
        self.repair: asyncio.Task[None] | None = None
        #: Joins in progress, members and subscriptions: the room goes at 0.
        self.users = 0

    # -- RoomView

    @property
    def name(self) -> str:
        return self._name

    @property
    def position(self) -> StreamPosition:
        return StreamPosition(self.epoch, self.offset)

    def clients(self) -> list[ClientInfo]:
        return list(self._clients.values())

    # -- the stream

    def start(self, state: _State) -> None:
        self.epoch, self.offset = state.epoch, state.top
        self._clients = {c.address: c for c in state.clients}
        self.ready = True
        early, self.early = self.early, []
        for entry in early:
            self.receive(entry)

    def receive(self, entry: Entry) -> BroadcastResult | None:
        """An entry from the store: delivered in order, once; a gap is repaired first."""
        if not self.ready:
            self.early.append(entry)
            return None
        position = entry.position
        if position.epoch != self.epoch:
            self.foreign.append(entry)
            self._start_repair()
            return None
        offset = position.offset
        if offset <= self.offset:
            return None
        if offset == self.offset + 1:
            result = self._apply(entry)
            if self.pending:
                self._drain()
            return result
        self.pending[offset] = entry
        self._start_repair()
        return None

    def check(self, epoch: str | None = None, top: int | None = None) -> None:
        """Compare with the store's ``epoch`` and ``top`` (unknown: ask it), repair if needed."""
        if not self.ready:
            return
        if epoch is None or epoch != self.epoch:
            self.recheck = True
        elif top is not None and top > self.offset:
            self.want = max(self.want, top)
        else:
            return
        self._start_repair()

    def _drain(self) -> None:
        pending = self.pending
        while self.offset + 1 in pending:
            self._apply(pending.pop(self.offset + 1))
        for offset in [o for o in pending if o <= self.offset]:
            del pending[offset]

    def _apply(self, entry: Entry) -> BroadcastResult | None:
        """Deliver the next entry to every live member here."""
        self.offset = entry.position.offset
        excluded: WebSocket | None = None
        if isinstance(entry, PresenceEvent):
            if entry.kind == "join":
                self._clients[entry.client.address] = entry.client
            else:
                self._clients.pop(entry.client.address, None)
        elif entry.excluded is not None:
            excluded = self.hub._by_address.get(entry.excluded)
        self.cache.append(entry)
        result: BroadcastResult | None = None
        hub = self.hub
        for envelope, group in self.groups.items():
            if not group:
                continue
            message = _render(envelope, entry, self)
            if message is None:
                continue
            targets: Iterable[WebSocket] = group
            if excluded is not None and excluded in group:
                targets = [ws for ws in group if ws is not excluded]
            outcome = broadcast(targets, message, policy=self._policy(envelope), limit=hub.limit)
            result = outcome if result is None else result + outcome
        if self.subs:
            for member in list(self.subs):
                assert member.sub is not None
                if not member.sub._put(entry):
                    del self.subs[member]
                    member.state = _BEHIND
                    member.paused = True
                    member.pos = self.offset - 1
        if self.ahead:
            for member in [m for m in self.ahead if m.pos <= self.offset]:
                del self.ahead[member]
                self._live(member)
        return result

    def _live(self, member: _Member) -> None:
        member.state = _LIVE
        if member.ws is not None:
            self.groups.setdefault(member.envelope, {})[member.ws] = member
        else:
            self.subs[member] = None

    def _start_repair(self) -> None:
        if self.repair is None and self.ready:
            self.repair = asyncio.ensure_future(self._repair())

    def _gap(self) -> bool:
        return bool(self.pending) and min(self.pending) > self.offset + 1

    async def _repair(self) -> None:
        """Fill a gap from the history; or, when the stream changed under us, reset."""
        store = self.hub._store
        try:
            while self.ready and (self.foreign or self.recheck or self._gap() or self.want > self.offset):
                if self.foreign or self.recheck:
                    foreign, self.foreign = self.foreign, []
                    self.recheck = False
                    # Pub/sub may deliver newer entries while the answer is on its way:
                    # compare with where the room was when it asked.
                    asked_at = self.offset
                    state = await store.state(self.name)
                    if state.epoch != self.epoch or state.top < asked_at:
                        if state.epoch == self.epoch:  # the store went back in time
                            state = await store.new_epoch(self.name, self.epoch)
                        # The new epoch's entries can all be delivered, if its history has them.
                        replay: list[Entry] | None = []
                        if state.top > 0:
                            fetched = await store.fetch(self.name, 0)
                            replay = fetched.entries if fetched.epoch == state.epoch else None
                        start = state.top if replay is None else 0
                        self._reset(_State(state.epoch, start, state.clients), "epoch changed")
                        for entry in replay or ():
                            self.receive(entry)
                    elif state.top > self.offset:
                        self.want = max(self.want, state.top)
                    for entry in foreign:
                        if entry.position.epoch == self.epoch:
                            self.receive(entry)
                    continue
                fetched = await store.fetch(self.name, self.offset)
                if fetched.epoch != self.epoch:
                    self.recheck = True
                    continue
                if fetched.entries is None:
                    self._reset(await store.state(self.name), "history trimmed")
                    continue
                for entry in fetched.entries:
                    if entry.position.offset == self.offset + 1:
                        self._apply(entry)
                self._drain()
                if fetched.top <= self.offset:
                    self.want = 0
                elif not fetched.entries:
                    self.want = 0  # nothing more to be had now; the heartbeat asks again
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the store is down: the reconnection repairs
            logger.debug("hub: repairing room %r failed: %r", self.name, exc)
            self.recheck = True
        finally:
            self.repair = None

    def _reset(self, state: _State, reason: str) -> None:
        """The stream here cannot be continued: every member gets a :class:`Reset` to ``state``."""
        old = self.position
        self.epoch, self.offset = state.epoch, state.top
        self._clients = {c.address: c for c in state.clients}
        self.cache.clear()
        self.pending.clear()
        self.want = 0
        position = self.position
        logger.warning("hub: room %r reset from %s to %s (%s)", self.name, old, position, reason)
        hub = self.hub
        ahead = list(self.ahead)
        self.ahead.clear()
        live_reset = Reset(self.name, position, old, reason)
        for envelope, group in self.groups.items():
            message = _render(envelope, live_reset, self)
            if message is not None and group:
                broadcast(list(group), message, policy=self._policy(envelope), limit=hub.limit)
            for member in group.values():
                member.resets += 1
        for member in self.subs:
            assert member.sub is not None
            member.resets += 1
            member.sub._put(live_reset, force=True)
        for member in ahead:  # its own position goes into its reset
            own = Reset(self.name, position, StreamPosition(old.epoch, member.pos), reason)
            member.resets += 1
            if member.sub is not None:
                member.sub._put(own, force=True)
            else:
                assert member.ws is not None
                message = _render(member.envelope, own, self)
                if message is not None:
                    broadcast([member.ws], message, policy=self._policy(member.envelope), limit=hub.limit)
            self._live(member)
        for member in itertools.chain(self.members.values(), self.queues):
            if member.state == _BEHIND:  # its catch-up sends the reset first
                member.reset = Reset(self.name, position, StreamPosition(old.epoch, member.pos), reason)
                member.pos = state.top

    def _policy(self, envelope: Envelope) -> Policy:
        return "close" if envelope.lossless else self.hub.policy

    # -- one member

    def _cached_after(self, pos: int) -> list[Entry] | None:
        if pos == self.offset:
            return []
        cache = self.cache
        if not cache:
            return None
        first = cache[0].position.offset
        if first > pos + 1:
            return None
        return list(itertools.islice(cache, pos + 1 - first, None))

    async def _send(self, member: _Member, item: Item) -> bool:
        """One item to one member, waiting for its connection to take it; False: it cannot."""
        if isinstance(item, Reset):
            member.resets += 1
        if member.sub is not None:
            if member.sub._put(item):
                return True
            member.paused = True
            return False
        assert member.ws is not None
        message = _render(member.envelope, item, self)
        if message is None:
            return True
        return await member.ws.send_guarded(message)

    async def catch_up(self, member: _Member) -> None:
        """Bring ``member`` from its position to the room's, then make it live."""
        member.state = _BEHIND
        while member.state == _BEHIND:
            if member.reset is not None:
                reset, member.reset = member.reset, None
                if not await self._send(member, reset):
                    return
                continue
            if member.paused:
                return
            if member.pos == self.offset:
                self._live(member)
                return
            if member.pos > self.offset:
                member.state = _AHEAD
                self.ahead[member] = None
                return
            epoch = self.epoch
            items = self._cached_after(member.pos)
            if items is None:
                try:
                    fetched = await self.hub._store.fetch(self.name, member.pos)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - cannot recover, say so
                    logger.debug("hub: recovery in room %r failed: %r", self.name, exc)
                    fetched = _Fetched(epoch, 0, None)
                    reason = "history unavailable"
                else:
                    reason = "history trimmed" if fetched.epoch == epoch else "epoch changed"
                if member.state != _BEHIND or self.epoch != epoch or member.reset is not None:
                    continue
                if fetched.epoch != epoch:
                    self.recheck = True
                    self._start_repair()
                if fetched.epoch != epoch or fetched.entries is None:
                    restart = self._restart(member)
                    member.reset = Reset(
                        self.name, StreamPosition(epoch, restart), StreamPosition(epoch, member.pos), reason
                    )
                    member.pos = restart
                    continue
                items = [e for e in fetched.entries if member.pos < e.position.offset <= self.offset]
                if not items:  # the answer is older than what pub/sub brought meanwhile: look again
                    continue
            for entry in items:
                if member.state != _BEHIND or self.epoch != epoch or member.reset is not None:
                    break
                if not await self._send(member, entry):
                    return
                member.pos = entry.position.offset

    def _restart(self, member: _Member) -> int:
        """Where a member that cannot recover goes on from: just before its own join, or now."""
        info = member.info
        if info is not None and member.pos < info.joined - 1 <= self.offset:
            return info.joined - 1
        return self.offset

    def resume(self, member: _Member) -> None:
        """A paused subscription has room again: catch it up (in the background)."""
        if member.state == _BEHIND and member.paused:
            member.paused = False
            self.hub._spawn(self.catch_up(member))

    def remove(self, member: _Member) -> None:
        member.state = _GONE
        if member.ws is not None:
            self.members.pop(member.ws, None)
            group = self.groups.get(member.envelope)
            if group is not None:
                group.pop(member.ws, None)
                if not group:
                    del self.groups[member.envelope]
        else:
            self.queues.pop(member, None)
            self.subs.pop(member, None)
        self.ahead.pop(member, None)


# ------------------------------------------------------------------ subscriptions


class Subscription:
    """This process's view of a room's stream: :meth:`Hub.subscribe`.

    Iterate over it (``async for item in sub``) for every entry in order --
    :class:`Publication` and :class:`PresenceEvent` -- and the occasional
    :class:`Reset`. A subscription is not a member (it is not in presence).
    At most ``max_queue`` items wait to be read; beyond that it stops taking
    entries and catches up from the history when read again (a
    :class:`Reset` if the history no longer has them). :attr:`position` is
    the position of the last item read; pass it as ``since=`` to subscribe
    again without missing anything. ``async with`` closes it.
    """

    def __init__(self, hub: Hub, room: str, max_queue: int) -> None:
        self.hub = hub
        self.room = room
        self.max_queue = max_queue
        self.position: StreamPosition | None = None
        self.closed = False
        self._items: deque[Item] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._member: _Member | None = None

    def _put(self, item: Item, force: bool = False) -> bool:
        if self.closed:
            return True
        if not force and len(self._items) >= self.max_queue:
            return False
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def pending(self) -> int:
        """How many items wait to be read."""
        return len(self._items)

    async def get(self, timeout: float | None = None) -> Item:
        """The next item (:class:`TimeoutError` after ``timeout`` s; :class:`EOFError` once closed)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self._items:
            if self.closed:
                raise EOFError("the subscription is closed")
            self._waiter = loop.create_future()
            try:
                if deadline is None:
                    await self._waiter
                else:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        raise TimeoutError(f"nothing in room {self.room!r} within {timeout} s")
                    await asyncio.wait_for(self._waiter, remaining)
            except asyncio.TimeoutError:
                raise TimeoutError(f"nothing in room {self.room!r} within {timeout} s") from None
            finally:
                self._waiter = None
        item = self._items.popleft()
        self.position = item.position
        member = self._member
        if member is not None and member.paused and len(self._items) <= self.max_queue // 2:
            member.room.resume(member)
        return item

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Item:
        try:
            return await self.get()
        except EOFError:
            raise StopAsyncIteration from None

    def close(self) -> None:
        """Stop receiving (what was received can still be read)."""
        if self.closed:
            return
        self.closed = True
        self.hub._unsubscribe(self)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# ------------------------------------------------------------------ the hub


class Hub:
    """Rooms of connections in this process: membership, presence, history, recovery, addresses.

    ``policy`` and ``limit`` are passed to :func:`wsline.broadcast` for
    members with the :data:`RAW` envelope (lossless envelopes close slow
    members). ``history_size`` entries per room younger than ``history_ttl``
    seconds, at most ``history_bytes`` of them, are kept for recovery (see
    the module's documentation). The methods are coroutines so that every
    hub (e.g. :class:`RedisHub`) has the same interface. Use it from one
    event loop.
    """

    #: Entries each room keeps here for members that catch up.
    cache_size = 256
    #: Seconds a room with nobody left here stays subscribed (a member may be back soon).
    linger = 0.0

    def __init__(
        self,
        *,
        policy: Policy = "drop",
        limit: int | None = None,
        history_size: int = 1000,
        history_ttl: float = 300.0,
        history_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        if policy not in ("drop", "close"):
            raise ValueError(f"policy must be 'drop' or 'close', not {policy!r}")
        if history_size < 0 or history_ttl <= 0:
            raise ValueError("history_size must be >= 0 and history_ttl > 0")
        self.policy: Policy = policy
        self.limit = limit
        self.history_size = history_size
        self.history_ttl = history_ttl
        # In memory the history is the limit of recovery; a few entries are always kept
        # for the members that join while entries are being delivered.
        self.cache_size = max(16, min(type(self).cache_size, history_size))
        #: This hub's name: the first part of its members' addresses.
        self.id = new_epoch()
        self._rooms: dict[str, _Room] = {}
        self._joined: dict[WebSocket, dict[str, _Member]] = {}
        self._by_address: dict[str, WebSocket] = {}
        self._watched: weakref.WeakSet[WebSocket] = weakref.WeakSet()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._store: _Store = _MemoryStore(self, history_size, history_ttl, history_bytes)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect to the backend (nothing to do in process)."""
        await self._store.start()

    async def close(self) -> None:
        """Disconnect from the backend; the members stay connected (and leave the presence lists)."""
        await self._store.close()
        self._cancel_tasks()

    def _abort(self) -> None:
        """Stop as a killed process would (for tests): nothing said, nothing flushed."""
        self._store.abort()
        self._cancel_tasks()

    def _cancel_tasks(self) -> None:
        for room in self._rooms.values():
            if room.repair is not None:
                room.repair.cancel()
        for task in list(self._tasks):
            task.cancel()

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("hub: a background task failed", exc_info=task.exception())

    # ------------------------------------------------------------ rooms here

    async def _acquire(self, name: str) -> _Room:
        room = self._rooms.get(name)
        if room is None:
            room = self._rooms[name] = _Room(self, name, self.cache_size)
            room.init = asyncio.ensure_future(self._init_room(room))
        room.users += 1
        try:
            assert room.init is not None
            await asyncio.shield(room.init)
        except BaseException:
            self._release(room)
            raise
        return room

    async def _init_room(self, room: _Room) -> None:
        await self._store.subscribe(room.name)
        room.start(await self._store.state(room.name))

    def _release(self, room: _Room) -> None:
        room.users -= 1
        if room.users > 0 or self._rooms.get(room.name) is not room:
            return
        if self.linger > 0 and room.ready:
            try:
                asyncio.get_running_loop().call_later(self.linger, self._drop, room)
                return
            except RuntimeError:  # called outside the event loop (e.g. Subscription.close())
                pass
        self._drop(room)

    def _drop(self, room: _Room) -> None:
        if room.users > 0 or self._rooms.get(room.name) is not room:
            return  # somebody came back
        del self._rooms[room.name]
        room.ready = False
        if room.repair is not None:
            room.repair.cancel()
        if room.init is not None and not room.init.done():
            room.init.cancel()
        self._store.unsubscribe(room.name)

    # ------------------------------------------------------------ membership

    async def join(
        self,
        room: str,
        ws: WebSocket,
        *,
        user: str | None = None,
        data: Any = None,
        unique: bool = False,
        since: StreamPosition | str | None = None,
        envelope: Envelope = RAW,
        snapshot: bool = False,
    ) -> Joined | None:
        """Make ``ws`` a member of ``room``, in the room's presence; ``None`` if it is one (or closed).

        ``user`` names who it is (several connections may share a user) and
        ``data`` (JSON-able) goes with it into presence. ``unique=True``
        refuses a ``user`` that is in the room already, in any process:
        :class:`UserTaken`. ``since`` (a :class:`StreamPosition` or its
        ``"epoch:offset"`` text) recovers: every entry after it is delivered
        before the live ones, or a :class:`Reset` (see the module's
        documentation); without it the member gets its own join and what
        follows. ``envelope`` decides what its connection receives
        (:data:`RAW`: publications as published). ``snapshot=True`` puts
        the presence right after the join in :attr:`Joined.members`.

        Returns once the missed entries are queued on the connection.
        :class:`HubUnavailable` if the backend cannot be reached.
        """
        if ws.state is State.CLOSED:
            return None
        rooms = self._joined.get(ws)
        if rooms is not None and room in rooms:
            return None
        if isinstance(since, str):
            since = StreamPosition.parse(since)
        if user is not None and not isinstance(user, str):
            raise TypeError("user must be a str or None")
        r = await self._acquire(room)
        address = self.address(ws)
        info = ClientInfo(address, user, data)
        try:
            position, members = await self._store.join(room, info, unique, snapshot)
        except BaseException:
            self._release(r)
            raise
        rooms = self._joined.get(ws)
        if _closed(ws) or (rooms is not None and room in rooms):
            if _closed(ws):
                self._store.leave_soon(room, address)
            self._release(r)
            return None
        if position.epoch != r.epoch:  # the room here is behind the store: catch up first
            r.check()
            if r.repair is not None:
                await asyncio.shield(r.repair)
        member = _Member(r, ws, None, envelope, address)
        member.info = ClientInfo(address, user, data, position.offset)
        member.unique = unique
        r.members[ws] = member
        if rooms is None:
            rooms = self._joined[ws] = {}
            if ws not in self._watched:  # once per connection, however often it joins
                self._watched.add(ws)
                ws.add_close_callback(self._connection_closed)
        rooms[room] = member
        if position.epoch != r.epoch:  # still: start where the room is, and say so
            member.pos = r.offset
            member.reset = Reset(room, r.position, since, "epoch changed")
        elif since is None:
            member.pos = position.offset - 1
        elif since.epoch == position.epoch and since.offset < position.offset:
            member.pos = since.offset
        else:
            member.pos = position.offset - 1
            reason = "epoch changed" if since.epoch != position.epoch else "position unknown"
            member.reset = Reset(room, StreamPosition(position.epoch, member.pos), since, reason)
        joined = Joined(room, address, position, members)
        welcome = envelope.joined(joined, r)
        if welcome is not None and not await ws.send_guarded(welcome):
            return joined
        await r.catch_up(member)
        recovered = None if since is None else member.resets == 0
        return Joined(room, address, position, members, recovered)

    async def leave(self, room: str, ws: WebSocket) -> None:
        """Take ``ws`` out of ``room`` (no-op if it is not a member); the others see it leave."""
        rooms = self._joined.get(ws)
        member = rooms.pop(room, None) if rooms is not None else None
        if member is None:
            return
        if not rooms:
            self._joined.pop(ws, None)
        member.room.remove(member)
        try:
            await self._store.leave(room, member.address)
        finally:
            self._release(member.room)

    def members(self, room: str) -> list[WebSocket]:
        """The members of ``room`` in this process, in the order they joined (see :meth:`presence`)."""
        r = self._rooms.get(room)
        return list(r.members) if r is not None else []

    def rooms(self) -> list[str]:
        """The rooms with members in this process."""
        return [name for name, r in self._rooms.items() if r.members]

    def rooms_of(self, ws: WebSocket) -> list[str]:
        """The rooms ``ws`` is in."""
        return sorted(self._joined.get(ws, ()))

    def _connection_closed(self, ws: WebSocket) -> None:
        for room, member in self._joined.pop(ws, {}).items():
            member.room.remove(member)
            self._store.leave_soon(room, member.address)
            self._release(member.room)

    # ------------------------------------------------------------ presence, positions

    async def presence(self, room: str) -> list[ClientInfo]:
        """The members of ``room`` in every process, in the order they joined, now.

        It asks the store (:class:`RedisHub`: one round trip), so that a join
        acknowledged in any process is in it. An :class:`Envelope` sees the
        members as of the entry it renders instead (:meth:`RoomView.clients`).
        """
        return await self._store.presence(room)

    async def position(self, room: str) -> StreamPosition:
        """The position of the last entry of ``room`` (offset 0: none yet in this epoch)."""
        state = await self._store.state(room)
        return StreamPosition(state.epoch, state.top)

    async def history(self, room: str, since: StreamPosition | str) -> list[Entry] | None:
        """The entries after ``since`` (``None``: the history no longer has them all, or another epoch)."""
        if isinstance(since, str):
            since = StreamPosition.parse(since)
        fetched = await self._store.fetch(room, since.offset)
        if fetched.epoch != since.epoch:
            return None
        return fetched.entries

    # ------------------------------------------------------------ addresses

    def address(self, ws: WebSocket) -> str:
        """The cluster-wide address of ``ws``: ``"<hub id>/<connection id>"`` (for :meth:`send_to`)."""
        address = f"{self.id}/{ws.id}"
        if address not in self._by_address and not _closed(ws):
            self._by_address[address] = ws

            def forget(ws: WebSocket) -> None:
                self._by_address.pop(address, None)

            ws.add_close_callback(forget)
        return address

    async def send_to(self, address: str, message: BroadcastMessage) -> bool:
        """Send ``message`` to the connection at ``address``, in whichever process it is.

        True if the message was queued on it (here) or reached its process
        (elsewhere: that process sends it if the connection is still open).
        False for an address no process answers for.
        """
        hub_id, sep, _ = address.partition("/")
        if not sep:
            raise ValueError(f"not a hub address (HUB/CONNECTION): {address!r}")
        if hub_id == self.id:
            return self._send_local(address, message)
        return await self._store.send(hub_id, address, message)

    def _send_local(self, address: str, message: BroadcastMessage) -> bool:
        ws = self._by_address.get(address)
        if ws is None:
            return False
        return broadcast([ws], message, policy=self.policy, limit=self.limit).sent == 1

    # ------------------------------------------------------------ publishing, subscribing

    async def publish(
        self,
        room: str,
        message: BroadcastMessage,
        *,
        exclude: WebSocket | None = None,
        wait: bool = True,
    ) -> PublishResult:
        """Add ``message`` to ``room``'s stream: every member but ``exclude`` gets it, in every process.

        ``str`` is a text message, bytes-like binary. Returns this process's
        delivery counts and the publication's position (:class:`PublishResult`).
        ``wait=False`` does not wait for the position (:class:`RedisHub`:
        it returns once the message is queued for Redis).
        """
        if isinstance(message, str):
            data: str | bytes = message
        elif isinstance(message, (bytes, bytearray, memoryview)):
            data = bytes(message)
        else:
            raise TypeError(f"cannot publish {type(message).__name__}; use str or a bytes-like object")
        excluded = self.address(exclude) if exclude is not None else None
        return await self._store.publish(room, data, excluded, wait)

    async def subscribe(
        self, room: str, *, since: StreamPosition | str | None = None, max_queue: int = 10_000
    ) -> Subscription:
        """This process's :class:`Subscription` to ``room``'s entries (after ``since``, or from now)."""
        if isinstance(since, str):
            since = StreamPosition.parse(since)
        r = await self._acquire(room)
        sub = Subscription(self, room, max_queue)
        member = _Member(r, None, sub, RAW, "")
        sub._member = member
        try:
            if since is not None:
                state = await self._store.state(room)
                if state.epoch != r.epoch:
                    r.check()
                    if r.repair is not None:
                        await asyncio.shield(r.repair)
                if since.epoch == r.epoch and since.offset <= max(state.top, r.offset):
                    member.pos = since.offset
                else:
                    reason = "epoch changed" if since.epoch != r.epoch else "position unknown"
                    member.pos = r.offset
                    member.reset = Reset(room, r.position, since, reason)
            else:
                member.pos = r.offset
        except BaseException:
            self._release(r)
            raise
        sub.position = StreamPosition(r.epoch, member.pos)
        r.queues[member] = None
        await r.catch_up(member)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        member = sub._member
        if member is None or member.state == _GONE:
            return
        member.room.remove(member)
        self._release(member.room)

    def _receive(self, room: str, entry: Entry) -> BroadcastResult | None:
        """An entry of ``room`` from the store."""
        r = self._rooms.get(room)
        return r.receive(entry) if r is not None else None


# ------------------------------------------------------------------ the in-process store


class _MemRoom:
    __slots__ = ("bytes", "clients", "epoch", "history", "top", "users")

    def __init__(self) -> None:
        self.epoch = new_epoch()
        self.top = 0
        self.history: deque[tuple[Entry, float, int]] = deque()
        self.bytes = 0
        self.clients: dict[str, ClientInfo] = {}
        self.users: dict[str, int] = {}


class _MemoryStore(_Store):
    """Rooms in this process's memory: history, presence, positions."""

    def __init__(self, hub: Hub, size: int, ttl: float, max_bytes: int) -> None:
        self.hub = hub
        self.size = size
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.rooms: dict[str, _MemRoom] = {}
        self._appends = 0

    def _room(self, name: str) -> _MemRoom:
        r = self.rooms.get(name)
        if r is None:
            r = self.rooms[name] = _MemRoom()
        return r

    def _trim(self, r: _MemRoom) -> None:
        history = r.history
        if not history:
            return
        cutoff = time.monotonic() - self.ttl
        while history and (len(history) > self.size or r.bytes > self.max_bytes or history[0][1] < cutoff):
            r.bytes -= history.popleft()[2]

    def _append(self, name: str, r: _MemRoom, entry: Entry, size: int) -> BroadcastResult | None:
        r.top = entry.position.offset
        if self.size > 0:
            r.history.append((entry, time.monotonic(), size))
            r.bytes += size
            self._trim(r)
        self._appends += 1
        if self._appends % 4096 == 0:
            self._forget_idle()
        return self.hub._receive(name, entry)

    def _forget_idle(self) -> None:
        """Forget rooms nobody is in whose history has expired (a new epoch if they come back)."""
        for name, r in list(self.rooms.items()):
            self._trim(r)
            if not r.clients and not r.history and name not in self.hub._rooms:
                del self.rooms[name]

    def unsubscribe(self, room: str) -> None:
        r = self.rooms.get(room)
        if r is not None:
            self._trim(r)
            if not r.clients and not r.history:
                del self.rooms[room]

    async def state(self, room: str) -> _State:
        r = self._room(room)
        return _State(r.epoch, r.top, list(r.clients.values()))

    async def join(
        self, room: str, info: ClientInfo, unique: bool, snapshot: bool
    ) -> tuple[StreamPosition, list[ClientInfo] | None]:
        r = self._room(room)
        if info.address in r.clients:
            self._remove(room, r, info.address)
        first = True
        if info.user is not None:
            count = r.users.get(info.user, 0)
            if unique and count:
                raise UserTaken(room, info.user)
            r.users[info.user] = count + 1
            first = count == 0
        position = StreamPosition(r.epoch, r.top + 1)
        client = ClientInfo(info.address, info.user, info.data, position.offset)
        r.clients[info.address] = client
        self._append(room, r, PresenceEvent(room, position, "join", client, first, False), 64)
        return position, (list(r.clients.values()) if snapshot else None)

    def _remove(self, room: str, r: _MemRoom, address: str) -> None:
        client = r.clients.pop(address)
        last = True
        if client.user is not None:
            count = r.users.get(client.user, 1) - 1
            if count > 0:
                r.users[client.user] = count
                last = False
            else:
                r.users.pop(client.user, None)
        position = StreamPosition(r.epoch, r.top + 1)
        self._append(room, r, PresenceEvent(room, position, "leave", client, False, last), 64)

    async def leave(self, room: str, address: str) -> None:
        self.leave_soon(room, address)

    def leave_soon(self, room: str, address: str) -> None:
        r = self.rooms.get(room)
        if r is not None and address in r.clients:
            self._remove(room, r, address)

    async def publish(self, room: str, data: str | bytes, excluded: str | None, wait: bool) -> PublishResult:
        r = self._room(room)
        position = StreamPosition(r.epoch, r.top + 1)
        result = self._append(room, r, Publication(room, position, data, excluded), len(data) + 64)
        if result is None:
            return PublishResult(position=position)
        return PublishResult(result.sent, result.dropped, result.closed, result.skipped, position)

    async def fetch(self, room: str, after: int) -> _Fetched:
        r = self._room(room)
        self._trim(r)
        if after > r.top:
            return _Fetched(r.epoch, r.top, None)
        if after == r.top:
            return _Fetched(r.epoch, r.top, [])
        history = r.history
        if not history or history[0][0].position.offset > after + 1:
            return _Fetched(r.epoch, r.top, None)
        start = after + 1 - history[0][0].position.offset
        return _Fetched(r.epoch, r.top, [e for e, _, _ in itertools.islice(history, start, None)])


def __getattr__(name: str) -> Any:
    if name == "RedisHub":  # importing it does not need redis; starting it does
        from .hub_redis import RedisHub

        return RedisHub
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
