"""A :class:`~wsline.hub.Hub` shared between processes and machines over Redis or a Redis Cluster.

``RedisHub(url)`` talks to one Redis server, or -- found out at start from
``INFO cluster``, or forced with ``cluster=True`` -- to a Redis Cluster
through ``redis.asyncio.cluster.RedisCluster`` with sharded pub/sub
(``SSUBSCRIBE``/``SPUBLISH``, Redis 7). What it promises is the module
:mod:`wsline.hub`'s: ordered positions, history and recovery, presence and
addresses, the same in every process.

Where things are
----------------

Each room has five keys and one channel, all with the same hash tag (the
room name between braces, ``{`` ``}`` and ``%`` percent-encoded), so that in
a cluster they are in one slot, and rooms spread over the shards::

    <prefix>{room}:m   hash: e = epoch, t = offset of the last entry
    <prefix>{room}:s   stream: the history (XADD MAXLEN ~ history_size, XTRIM MINID ~ now - history_ttl)
    <prefix>{room}:p   hash: member address -> "<join offset>|<JSON user and data>"
    <prefix>{room}:z   sorted set: member address -> expiry (ms, Redis clock)
    <prefix>{room}:u   hash: user -> how many connections it has in the room
    <prefix>{room}     the room's channel (PUBLISH, or SPUBLISH on a cluster)
    <prefix>hub:{id}   one channel per hub, for send_to()

Every change of a room is one Lua script, atomic in Redis: it appends the
entry (offset ``t + 1``) to the stream and publishes it on the channel as
``"<epoch>:<offset>\\n<kind>\\n<origin>\\n<flags>\\n<body>"`` (kind ``t``/``b``:
text/binary publication, ``j``/``l``: join/leave). A missing ``:m`` hash
means the stream is gone (a restart without persistence, eviction, expiry):
the next script starts a new epoch and deletes what is left of the old
stream, so nobody recovers across the loss. The keys of a room expire
``meta_ttl`` seconds (1 day) after its last entry or heartbeat.

Each process subscribes to the channels of the rooms it has members or
subscriptions in, delivers entries in offset order (a gap is filled from the
stream; see :mod:`wsline.hub`), and refreshes its members' expiry every
``heartbeat`` seconds; the same script removes (with a leave event) the
members of any process whose expiry has passed. ``presence_ttl`` defaults to
3 heartbeats: a process that stalls that long loses its members, and adds
them back (a new join) at its next heartbeat; one that dies is gone from
presence within ``presence_ttl + heartbeat`` seconds.

Redis going away
----------------

:meth:`RedisHub.start` raises :class:`~wsline.hub.HubUnavailable` when
Redis cannot be reached. Later, a lost connection is logged (WARNING) and
retried with exponential backoff up to ``max_backoff`` seconds; meanwhile
publications wait in memory (at most ``max_outbox``, then they are dropped
and counted in :attr:`RedisHub.unsent`) and nobody receives anything, joins
raise :class:`~wsline.hub.HubUnavailable`. Once back, the hub subscribes
again, delivers what it missed from the stream (nothing is lost if Redis
kept its data), or gives every member a :class:`~wsline.hub.Reset` (the
epoch changed: Redis restarted without persistence), re-adds its members to
presence, and sends what waited. A publication whose round trip was cut by
the failure is stored at most once: it may be lost, never doubled.
``redis`` is imported when the hub starts (``pip install 'wsline[redis]'``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections import deque
from typing import Any

from .aio.connection import WebSocket
from .aio.fanout import BroadcastMessage, Policy
from .hub import (
    ClientInfo,
    Entry,
    Hub,
    HubUnavailable,
    PresenceEvent,
    Publication,
    PublishResult,
    StreamPosition,
    UserTaken,
    _Fetched,
    _Room,
    _State,
    _Store,
    new_epoch,
)

__all__ = ["RedisHub"]

logger = logging.getLogger("wsline.hub")

#: Entries read per round trip when recovering.
FETCH_PAGE = 1000
#: Writes (publications, joins, leaves) sent in one pipelined round trip, at most.
BATCH = 512
#: publish(wait=False) waits when this many writes are queued, until half are sent.
OUTBOX_HIGH = 4096

# ------------------------------------------------------------------ the scripts

# KEYS: M (meta), S (stream), H (presence), Z (expiry), U (users).
# ARGV: 1 a new epoch (used if the stream has none), 2 the room's channel, 3 PUBLISH or
# SPUBLISH, 4 history length, 5 history age (ms), 6 key lifetime (ms); then each script's own.
_COMMON = """
local M, S, H, Z, U = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local NEW_EPOCH, CHAN, PUB = ARGV[1], ARGV[2], ARGV[3]
local HIST_LEN, HIST_MS, META_MS = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function epoch()
  local e = redis.call('HGET', M, 'e')
  if not e then
    e = NEW_EPOCH
    redis.call('HSET', M, 'e', e, 't', 0)
    redis.call('DEL', S)
  end
  return e
end
local function top()
  return tonumber(redis.call('HGET', M, 't'))
end
local function append(e, kind, origin, flags, body)
  local n = redis.call('HINCRBY', M, 't', 1)
  if HIST_LEN > 0 then
    redis.call('XADD', S, 'MAXLEN', '~', HIST_LEN, '*', 'n', n, 'k', kind, 'o', origin, 'f', flags, 'd', body)
    redis.call('XTRIM', S, 'MINID', '~', now_ms() - HIST_MS)
    redis.call('PEXPIRE', S, META_MS)
  end
  redis.call('PEXPIRE', M, META_MS)
  redis.call(PUB, CHAN, e .. ':' .. n .. '\\n' .. kind .. '\\n' .. origin .. '\\n' .. flags .. '\\n' .. body)
  return n
end
local function remove(e, a)
  redis.call('ZREM', Z, a)
  local v = redis.call('HGET', H, a)
  if not v then return 0 end
  redis.call('HDEL', H, a)
  local flags = 'l'
  local info = cjson.decode(string.sub(v, string.find(v, '|', 1, true) + 1))
  if info.u then
    if redis.call('HINCRBY', U, info.u, -1) > 0 then flags = '' else redis.call('HDEL', U, info.u) end
  end
  return append(e, 'l', a, flags, v)
end
local function sweep(e, now)
  local dead = redis.call('ZRANGEBYSCORE', Z, '-inf', now, 'LIMIT', 0, 100)
  for _, a in ipairs(dead) do remove(e, a) end
end
local function touch()
  for _, k in ipairs({M, H, Z, U}) do redis.call('PEXPIRE', k, META_MS) end
end
"""

_SCRIPTS = {
    # ARGV 7 kind, 8 excluded address, 9 body -> {epoch, offset}
    "publish": """
local e = epoch()
return {e, append(e, ARGV[7], ARGV[8], '', ARGV[9])}
""",
    # ARGV 7 address, 8 user, 9 unique, 10 ttl (ms), 11 JSON, 12 snapshot -> {epoch, offset[, presence]}
    "join": """
local e = epoch()
local now = now_ms()
sweep(e, now)
local a, user = ARGV[7], ARGV[8]
if redis.call('HEXISTS', H, a) == 1 then remove(e, a) end
local flags = 'f'
if user ~= '' then
  if ARGV[9] == '1' and redis.call('HEXISTS', U, user) == 1 then return {e, -1} end
  if redis.call('HINCRBY', U, user, 1) > 1 then flags = '' end
end
local n = top() + 1
local v = n .. '|' .. ARGV[11]
redis.call('HSET', H, a, v)
redis.call('ZADD', Z, now + tonumber(ARGV[10]), a)
append(e, 'j', a, flags, v)
touch()
if ARGV[12] == '1' then return {e, n, redis.call('HGETALL', H)} end
return {e, n}
""",
    # ARGV 7 address -> offset of the leave (0: not a member)
    "leave": """
return remove(epoch(), ARGV[7])
""",
    # ARGV 7 ttl (ms), 8... addresses -> {epoch, top, missing addresses}
    "heartbeat": """
local e = epoch()
local now = now_ms()
sweep(e, now)
local ttl = tonumber(ARGV[7])
local missing = {}
for i = 8, #ARGV do
  local a = ARGV[i]
  if redis.call('ZSCORE', Z, a) then
    redis.call('ZADD', Z, now + ttl, a)
  else
    missing[#missing + 1] = a
  end
end
touch()
if HIST_LEN > 0 and redis.call('EXISTS', S) == 1 then
  redis.call('XTRIM', S, 'MINID', '~', now - HIST_MS)
  redis.call('PEXPIRE', S, META_MS)
end
return {e, top(), missing}
""",
    # -> {epoch, top, presence}
    "state": """
local e = epoch()
sweep(e, now_ms())
return {e, top(), redis.call('HGETALL', H)}
""",
    # ARGV 7 after, 8 page, 9 end ("+", or "(<id>": before that entry) -> {epoch, top, records,
    # how many, id of the oldest}: the page's entries oldest first, each "<offset> <kind> <size>
    # <flags> <origin>\n<body>" (one string: far less for the client to parse than XREVRANGE's).
    "fetch": """
local e = epoch()
local t = top()
local after = tonumber(ARGV[7])
if after >= t then return {e, t, '', 0, ''} end
local rows = redis.call('XREVRANGE', S, ARGV[9], '-', 'COUNT', math.min(t - after, tonumber(ARGV[8])))
local parts = {}
for i = #rows, 1, -1 do
  local f = rows[i][2]
  parts[#parts + 1] = f[2] .. ' ' .. f[4] .. ' ' .. #f[10] .. ' ' .. f[8] .. ' ' .. f[6] .. '\\n' .. f[10]
end
local oldest = ''
if #rows > 0 then oldest = rows[#rows][1] end
return {e, t, table.concat(parts), #rows, oldest}
""",
    # ARGV 7 the epoch that went back in time -> {epoch, top, presence}
    "new_epoch": """
if redis.call('HGET', M, 'e') == ARGV[7] then redis.call('DEL', M, S) end
local e = epoch()
return {e, top(), redis.call('HGETALL', H)}
""",
}

SCRIPTS = {name: _COMMON + body for name, body in _SCRIPTS.items()}


def _tag(room: str) -> bytes:
    """The room's hash tag: no braces in it, never empty, one per room."""
    text = room.replace("%", "%25").replace("{", "%7B").replace("}", "%7D") or "%"
    return text.encode("utf-8")


def _clients(flat: list[bytes]) -> list[ClientInfo]:
    """Presence from HGETALL's address, value pairs, in join order."""
    clients = []
    for i in range(0, len(flat) - 1, 2):
        clients.append(_client(flat[i], flat[i + 1]))
    clients.sort(key=lambda c: c.joined)
    return clients


def _client(address: bytes, value: bytes) -> ClientInfo:
    joined, _, text = value.partition(b"|")
    info = json.loads(text)
    return ClientInfo(address.decode(), info.get("u"), info.get("d"), int(joined))


def _entry(
    room: str, position: StreamPosition, kind: bytes, origin: bytes, flags: bytes, body: bytes
) -> Entry:
    if kind == b"t":
        return Publication(room, position, body.decode("utf-8"), origin.decode() or None)
    if kind == b"b":
        return Publication(room, position, body, origin.decode() or None)
    client = _client(origin, body)
    return PresenceEvent(
        room, position, "join" if kind == b"j" else "leave", client, b"f" in flags, b"l" in flags
    )


def _records(room: str, epoch: str, blob: bytes) -> list[Entry]:
    """The entries of a page from the fetch script (oldest first)."""
    entries = []
    pos, size = 0, len(blob)
    while pos < size:
        newline = blob.index(b"\n", pos)
        offset, kind, length, flags, origin = blob[pos:newline].split(b" ", 4)
        start = newline + 1
        pos = start + int(length)
        entries.append(_entry(room, StreamPosition(epoch, int(offset)), kind, origin, flags, blob[start:pos]))
    return entries


#: Tasks that outlive their hub (closing sockets after an abort).
_BACKGROUND: set[asyncio.Task[None]] = set()


class _Write:
    """A script call waiting in the outbox."""

    __slots__ = ("args", "future", "keys", "script")

    def __init__(
        self, script: str, keys: list[bytes], args: list[Any], future: asyncio.Future[Any] | None
    ) -> None:
        self.script = script
        self.keys = keys
        self.args = args
        self.future = future


class _Shard:
    """One pub/sub connection: the server's, or one cluster node's."""

    def __init__(self, name: str, pubsub: Any, client: Any) -> None:
        self.name = name
        self.pubsub = pubsub
        self.client = client  # a client of its own (cluster nodes), closed with it
        self.task: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()
        self.waiters: dict[bytes, list[asyncio.Future[None]]] = {}


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.RedisError, OSError, asyncio.TimeoutError, RuntimeError)


class _RedisStore(_Store):
    """The rooms of a :class:`RedisHub`, in Redis."""

    def __init__(self, hub: RedisHub) -> None:
        self.hub = hub
        self.live = False
        self.cluster = False
        self.client: Any = None
        self.shards: dict[str, _Shard] = {}
        self.chan_room: dict[bytes, str] = {}
        self.shas: dict[str, str] = {}
        self.errors: tuple[type[BaseException], ...] = ()
        self.no_script: type[BaseException] = Exception
        self.outbox: deque[_Write] = deque()
        self.wakeup: asyncio.Event | None = None
        self.drained: asyncio.Event | None = None
        self.sending = False
        self.closing = False
        self.reconnecting: asyncio.Task[None] | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.prefix = hub.prefix.encode("utf-8")
        self.control = self._control(hub.id)
        self.pub = "PUBLISH"
        self.keys_cache: dict[str, list[bytes]] = {}
        self.node_kwargs: dict[str, Any] = {}
        self.unsent = 0
        self.reconnections = 0

    # -- names

    def _control(self, hub_id: str) -> bytes:
        return self.prefix + b"hub:{" + hub_id.encode() + b"}"

    def _keys(self, room: str) -> list[bytes]:
        keys = self.keys_cache.get(room)
        if keys is None:
            if len(self.keys_cache) > 10_000:
                self.keys_cache.clear()
            base = self.prefix + b"{" + _tag(room) + b"}"
            keys = self.keys_cache[room] = [
                base + b":m",
                base + b":s",
                base + b":p",
                base + b":z",
                base + b":u",
                base,
            ]
        return keys

    def _common(self, room: str) -> list[Any]:
        hub = self.hub
        return [
            new_epoch(),
            self._keys(room)[5],
            self.pub,
            hub.history_size,
            int(hub.history_ttl * 1000),
            int(hub.meta_ttl * 1000),
        ]

    # -- connecting

    async def start(self) -> None:
        try:
            import redis
            import redis.asyncio
        except ImportError as exc:
            raise HubUnavailable("RedisHub needs the redis package: pip install 'wsline[redis]'") from exc
        self.errors = _redis_errors()
        self.no_script = redis.exceptions.NoScriptError
        self.closing = False
        self.wakeup = asyncio.Event()
        self.drained = asyncio.Event()
        self.drained.set()
        try:
            await self._connect()
        except self.errors as exc:
            await self._drop_shards()
            await self._close_client()
            raise HubUnavailable(f"cannot reach Redis at {self.hub.url}: {exc}") from exc
        self.live = True
        self.tasks = [
            asyncio.ensure_future(self._send_loop()),
            asyncio.ensure_future(self._heartbeat_loop()),
        ]
        kind = "Redis Cluster" if self.cluster else "Redis"
        logger.info("hub %s connected to %s at %s", self.hub.id, kind, self.hub.url)

    async def _make_client(self) -> Any:
        import redis.asyncio as aioredis
        from redis.asyncio.cluster import RedisCluster
        from redis.asyncio.connection import parse_url
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        hub = self.hub
        options: dict[str, Any] = {"socket_connect_timeout": hub.connect_timeout, "health_check_interval": 0}
        cluster = hub.cluster
        if cluster is not True:
            # No silent retries inside redis-py: the hub reconnects itself, so it
            # knows about every gap.
            client = aioredis.Redis.from_url(hub.url, retry=Retry(NoBackoff(), 0), **options)
            if cluster is None:
                try:
                    cluster = bool((await client.info("cluster")).get("cluster_enabled"))
                except BaseException:
                    await client.aclose()
                    raise
            if not cluster:
                return client
            await client.aclose()
        self.cluster = True
        self.pub = "SPUBLISH"
        node_kwargs = dict(parse_url(hub.url))
        for name in ("host", "port", "db", "path"):
            node_kwargs.pop(name, None)
        self.node_kwargs = {**node_kwargs, **options, "retry": Retry(NoBackoff(), 0)}
        rc = RedisCluster.from_url(hub.url, socket_connect_timeout=hub.connect_timeout)
        try:
            await rc.initialize()
        except BaseException:
            await rc.aclose()
            raise
        return rc

    async def _connect(self) -> None:
        if self.client is None:
            self.client = await self._make_client()
        elif self.cluster:
            await self.client.nodes_manager.initialize()
        await self.client.ping()
        await self._load_scripts()
        await self._subscribe_channels([self.control, *self.chan_room])

    async def _load_scripts(self) -> None:
        for name, source in SCRIPTS.items():
            self.shas[name] = await self.client.script_load(source)

    async def _close_client(self) -> None:
        if self.client is not None:
            try:
                await self.client.aclose()
            except Exception:  # noqa: BLE001 - closing anyway
                pass
            self.client = None

    async def close(self) -> None:
        if self.client is None:
            return
        for room in list(self.hub._rooms.values()):
            for member in room.members.values():
                self.leave_soon(room.name, member.address)  # the others see them go now
        if self.live:
            deadline = time.monotonic() + 5
            while (self.outbox or self.sending) and self.live and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
        self.closing = True
        self.live = False
        tasks = [*self.tasks, *([self.reconnecting] if self.reconnecting else [])]
        for task in tasks:
            task.cancel()
        if self.wakeup is not None:
            self.wakeup.set()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        self.tasks = []
        for write in self.outbox:
            if write.future is not None and not write.future.done():
                write.future.set_result(None)
        self.outbox.clear()
        await self._drop_shards()
        await self._close_client()

    def abort(self) -> None:
        self.closing = True
        self.live = False
        for task in [*self.tasks, *([self.reconnecting] if self.reconnecting else [])]:
            task.cancel()
        for shard in self.shards.values():
            if shard.task is not None:
                shard.task.cancel()
        self.outbox.clear()
        client, shards = self.client, list(self.shards.values())
        self.client, self.shards = None, {}

        async def drop() -> None:
            for shard in shards:
                await self._close_shard(shard)
            if client is not None:
                try:
                    await client.aclose()
                except Exception:  # noqa: BLE001 - gone anyway
                    pass

        try:
            task = asyncio.get_running_loop().create_task(drop())
        except RuntimeError:  # no event loop running: the sockets go with the objects
            return
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)

    # -- pub/sub

    def _shard_for(self, channel: bytes) -> _Shard:
        if not self.cluster:
            name, node = "", None
        else:
            node = self.client.get_node_from_key(channel)
            name = node.name
        shard = self.shards.get(name)
        if shard is None:
            if node is None:
                shard = _Shard(name, self.client.pubsub(), None)
            else:
                import redis.asyncio as aioredis

                client = aioredis.Redis(host=node.host, port=node.port, **self.node_kwargs)
                shard = _Shard(name, client.pubsub(), client)
            self.shards[name] = shard
        return shard

    async def _subscribe_channels(self, channels: list[bytes]) -> None:
        """Subscribe, and wait until Redis confirms every channel."""
        loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[None]] = []
        by_shard: dict[str, list[bytes]] = {}
        for channel in channels:
            shard = self._shard_for(channel)
            by_shard.setdefault(shard.name, []).append(channel)
            future: asyncio.Future[None] = loop.create_future()
            shard.waiters.setdefault(channel, []).append(future)
            waits.append(future)
        try:
            for name, names in by_shard.items():
                shard = self.shards[name]
                async with shard.lock:
                    if self.cluster:
                        for channel in names:  # one slot per SSUBSCRIBE
                            await shard.pubsub.ssubscribe(channel)
                    else:
                        await shard.pubsub.subscribe(*names)
                if shard.task is None:
                    shard.task = asyncio.ensure_future(self._listen(shard))
            if waits:
                await asyncio.wait_for(asyncio.gather(*waits), self.hub.connect_timeout)
        finally:
            for future in waits:
                if not future.done():
                    future.cancel()

    async def subscribe(self, room: str) -> None:
        channel = self._keys(room)[5]
        self.chan_room[channel] = room
        if not self.live:
            raise HubUnavailable(f"Redis at {self.hub.url} is unreachable")
        try:
            await self._subscribe_channels([channel])
        except self.errors as exc:
            raise HubUnavailable(f"cannot subscribe on Redis at {self.hub.url}: {exc!r}") from exc

    def unsubscribe(self, room: str) -> None:
        channel = self._keys(room)[5]
        if self.chan_room.pop(channel, None) is None or not self.live:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # outside the event loop: its messages are ignored from now on
            return
        self.hub._spawn(self._unsubscribe(channel))

    async def _unsubscribe(self, channel: bytes) -> None:
        try:
            shard = self._shard_for(channel)
            async with shard.lock:
                if channel in self.chan_room or not self.live:
                    return  # wanted again meanwhile
                if self.cluster:
                    await shard.pubsub.sunsubscribe(channel)
                else:
                    await shard.pubsub.unsubscribe(channel)
        except self.errors:  # the listener notices and reconnects
            pass

    async def _listen(self, shard: _Shard) -> None:
        pubsub = shard.pubsub
        while True:
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=False, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except self.errors as exc:
                if not self.closing:
                    self._lost(exc)
                return
            if message is None:
                continue
            kind = message["type"]
            channel = message["channel"]
            if kind == "message" or kind == "smessage":
                try:
                    self._on_message(channel, message["data"])
                except Exception:  # pragma: no cover - a bug must not stop the listener
                    logger.exception("hub: delivering a message from Redis failed")
            elif kind == "subscribe" or kind == "ssubscribe":
                for future in shard.waiters.pop(channel, []):
                    if not future.done():
                        future.set_result(None)
            elif kind == "sunsubscribe" and channel in self.chan_room and not self.closing:
                # Not ours: the cluster moved the slot elsewhere.
                self._lost(HubUnavailable(f"Redis Cluster moved channel {channel!r}"))
                return

    def _on_message(self, channel: bytes, data: bytes) -> None:
        room = self.chan_room.get(channel)
        if room is None:
            if channel == self.control:
                self._on_control(data)
            return
        head, kind, origin, flags, body = data.split(b"\n", 4)
        epoch, _, offset = head.partition(b":")
        self.hub._receive(
            room, _entry(room, StreamPosition(epoch.decode(), int(offset)), kind, origin, flags, body)
        )

    def _on_control(self, data: bytes) -> None:
        kind = data[:1]
        address, _, body = data[1:].partition(b"\n")
        message: BroadcastMessage = body.decode("utf-8") if kind == b"t" else body
        self.hub._send_local(address.decode(), message)

    async def _close_shard(self, shard: _Shard) -> None:
        try:
            await shard.pubsub.aclose()
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        if shard.client is not None:
            try:
                await shard.client.aclose()
            except Exception:  # noqa: BLE001 - closing anyway
                pass

    async def _drop_shards(self) -> None:
        shards, self.shards = list(self.shards.values()), {}
        current = asyncio.current_task()
        for shard in shards:
            if shard.task is not None and shard.task is not current:
                shard.task.cancel()
            for futures in shard.waiters.values():
                for future in futures:
                    if not future.done():
                        future.cancel()
            await self._close_shard(shard)

    # -- losing Redis, and finding it again

    def _lost(self, exc: BaseException) -> None:
        if self.closing or self.reconnecting is not None:
            return
        self.live = False
        self.reconnecting = asyncio.ensure_future(self._reconnect(exc))

    async def _reconnect(self, exc: BaseException) -> None:
        hub = self.hub
        lost_at = time.monotonic()
        unsent_before = self.unsent
        logger.warning("hub: lost the connection to Redis at %s (%r); reconnecting", hub.url, exc)
        try:
            await self._drop_shards()
            await self._disconnect_pools()
            delay = 0.05
            attempts = 0
            while not self.closing:
                await asyncio.sleep(delay)
                delay = min(delay * 2, hub.max_backoff)
                attempts += 1
                try:
                    await self._connect()
                except self.errors as error:
                    if attempts == 1 or attempts % 10 == 0:
                        logger.warning("hub: Redis at %s still unreachable (%s)", hub.url, error)
                    await self._drop_shards()
                    await self._disconnect_pools()
                    continue
                break
            else:
                return
            self.live = True
            self.reconnections += 1
            lost = self.unsent - unsent_before
            logger.warning(
                "hub: reconnected to Redis at %s after %.1f s; %d publication(s) could not be stored "
                "meanwhile; %d wait(s) to be sent; rooms are checked for missed entries",
                hub.url,
                time.monotonic() - lost_at,
                lost,
                len(self.outbox),
            )
        finally:
            self.reconnecting = None
        if self.wakeup is not None:
            self.wakeup.set()
        for room in list(hub._rooms.values()):
            room.check()
        await self._beat()

    async def _disconnect_pools(self) -> None:
        client = self.client
        if client is None:
            return
        try:
            if self.cluster:
                for node in client.get_nodes():
                    await node.disconnect()
            else:
                await client.connection_pool.disconnect()
        except Exception:  # noqa: BLE001 - best effort
            pass

    # -- writes: one pipelined round trip per batch

    def _queue(self, write: _Write) -> None:
        self.outbox.append(write)
        assert self.wakeup is not None and self.drained is not None
        self.wakeup.set()
        if len(self.outbox) >= OUTBOX_HIGH:
            self.drained.clear()

    async def _send_loop(self) -> None:
        assert self.wakeup is not None and self.drained is not None
        while not self.closing:
            while not self.outbox or not self.live:
                self.wakeup.clear()
                await self.wakeup.wait()
                if self.closing:
                    return
            batch = [self.outbox.popleft() for _ in range(min(len(self.outbox), BATCH))]
            self.sending = True
            try:
                await self._send_batch(batch)
            finally:
                self.sending = False
            if len(self.outbox) <= OUTBOX_HIGH // 2:
                self.drained.set()

    async def _send_batch(self, batch: list[_Write]) -> None:
        try:
            pipe = self.client.pipeline(transaction=False) if not self.cluster else self.client.pipeline()
            for write in batch:
                pipe.evalsha(self.shas[write.script], 5, *write.keys[:5], *write.args)
            results = await pipe.execute(raise_on_error=False)
        except self.errors as exc:
            self._batch_failed(batch, exc)
            self._lost(exc)
            return
        retry: list[_Write] = []
        lost: BaseException | None = None
        for write, result in zip(batch, results, strict=True):
            if isinstance(result, self.no_script):
                retry.append(write)
            elif isinstance(result, BaseException):
                if (
                    isinstance(result, (OSError, asyncio.TimeoutError))
                    or "connect" in type(result).__name__.lower()
                ):
                    lost = result
                self._batch_failed([write], result)
            elif write.future is not None and not write.future.done():
                write.future.set_result(result)
        if retry:
            try:
                await self._load_scripts()
            except self.errors as exc:
                self._batch_failed(retry, exc)
                self._lost(exc)
                return
            self.outbox.extendleft(reversed(retry))
        if lost is not None:
            self._lost(lost)

    def _batch_failed(self, batch: list[_Write], exc: BaseException) -> None:
        for write in batch:
            if write.script == "leave":
                if write.future is None:
                    self.outbox.appendleft(write)  # idempotent: again once connected
                elif not write.future.done():
                    write.future.set_result(None)
            elif write.script == "publish":
                self.unsent += 1
                if write.future is not None and not write.future.done():
                    write.future.set_result(None)
            elif write.future is not None and not write.future.done():
                write.future.set_exception(HubUnavailable(f"Redis at {self.hub.url}: {exc!r}"))
        if batch:
            logger.debug("hub: %d write(s) to Redis failed: %r", len(batch), exc)

    # -- reads: one script call

    async def _call(self, script: str, room: str, args: list[Any]) -> Any:
        if not self.live:
            raise HubUnavailable(f"Redis at {self.hub.url} is unreachable")
        keys = self._keys(room)[:5]
        full = [*self._common(room), *args]
        try:
            try:
                return await self.client.evalsha(self.shas[script], 5, *keys, *full)
            except self.no_script:
                await self._load_scripts()
                return await self.client.evalsha(self.shas[script], 5, *keys, *full)
        except self.errors as exc:
            raise HubUnavailable(f"Redis at {self.hub.url}: {exc!r}") from exc

    async def state(self, room: str) -> _State:
        reply = await self._call("state", room, [])
        return _State(reply[0].decode(), int(reply[1]), _clients(reply[2]))

    async def new_epoch(self, room: str, old: str) -> _State:
        reply = await self._call("new_epoch", room, [old])
        return _State(reply[0].decode(), int(reply[1]), _clients(reply[2]))

    async def fetch(self, room: str, after: int) -> _Fetched:
        reply = await self._call("fetch", room, [after, FETCH_PAGE, "+"])
        epoch, top = reply[0].decode(), int(reply[1])
        if after > top:
            return _Fetched(epoch, top, None)
        if after == top:
            return _Fetched(epoch, top, [])
        pages = [_records(room, epoch, reply[2])]
        # Older pages, newest first, until the one with the entry after ``after`` (or the start).
        while pages[-1] and pages[-1][0].position.offset > after + 1 and int(reply[3]) == FETCH_PAGE:
            reply = await self._call("fetch", room, [after, FETCH_PAGE, b"(" + reply[4]])
            if reply[0].decode() != epoch:
                return _Fetched(epoch, top, None)  # the stream went away meanwhile
            pages.append(_records(room, epoch, reply[2]))
        entries = [entry for page in reversed(pages) for entry in page if entry.position.offset > after]
        if not entries or entries[0].position.offset != after + 1:
            return _Fetched(epoch, top, None)
        for previous, entry in itertools.pairwise(entries):
            if entry.position.offset != previous.position.offset + 1:
                return _Fetched(epoch, top, None)
        return _Fetched(epoch, top, entries)

    async def join(
        self, room: str, info: ClientInfo, unique: bool, snapshot: bool
    ) -> tuple[StreamPosition, list[ClientInfo] | None]:
        if not self.live:
            raise HubUnavailable(f"Redis at {self.hub.url} is unreachable")
        described: dict[str, Any] = {}
        if info.user is not None:
            described["u"] = info.user
        if info.data is not None:
            described["d"] = info.data
        text = json.dumps(described, ensure_ascii=False, separators=(",", ":"))
        args = [
            *self._common(room),
            info.address,
            info.user or "",
            "1" if unique and info.user is not None else "0",
            int(self.hub.presence_ttl * 1000),
            text,
            "1" if snapshot else "0",
        ]
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue(_Write("join", self._keys(room), args, future))
        reply = await future
        epoch, offset = reply[0].decode(), int(reply[1])
        if offset < 0:
            assert info.user is not None
            raise UserTaken(room, info.user)
        return StreamPosition(epoch, offset), (_clients(reply[2]) if snapshot else None)

    async def leave(self, room: str, address: str) -> None:
        if not self.live:  # goes out once connected again; nobody waits for Redis to come back
            self.leave_soon(room, address)
            return
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue(_Write("leave", self._keys(room), [*self._common(room), address], future))
        await future

    def leave_soon(self, room: str, address: str) -> None:
        if self.client is not None and not self.closing:
            self._queue(_Write("leave", self._keys(room), [*self._common(room), address], None))

    async def publish(self, room: str, data: str | bytes, excluded: str | None, wait: bool) -> PublishResult:
        if self.closing or self.client is None:
            raise HubUnavailable("the hub is closed" if self.closing else "the hub is not started")
        if len(self.outbox) >= self.hub.max_outbox:
            self.unsent += 1
            return PublishResult()
        if isinstance(data, str):
            kind, body = b"t", data.encode("utf-8")
        else:
            kind, body = b"b", data
        future: asyncio.Future[Any] | None = None
        if wait and self.live:
            future = asyncio.get_running_loop().create_future()
        args = [*self._common(room), kind, excluded or "", body]
        self._queue(_Write("publish", self._keys(room), args, future))
        if future is None:
            if self.live and len(self.outbox) >= OUTBOX_HIGH:
                assert self.drained is not None
                await self.drained.wait()
            return PublishResult()
        reply = await future
        if reply is None:
            return PublishResult()
        return PublishResult(position=StreamPosition(reply[0].decode(), int(reply[1])))

    async def send(self, hub_id: str, address: str, message: BroadcastMessage) -> bool:
        if not self.live:
            raise HubUnavailable(f"Redis at {self.hub.url} is unreachable")
        if isinstance(message, str):
            payload = b"t" + address.encode() + b"\n" + message.encode("utf-8")
        else:
            payload = b"b" + address.encode() + b"\n" + bytes(message)
        channel = self._control(hub_id)
        try:
            if self.cluster:
                receivers = await self.client.spublish(channel, payload)
            else:
                receivers = await self.client.publish(channel, payload)
        except self.errors as exc:
            raise HubUnavailable(f"Redis at {self.hub.url}: {exc!r}") from exc
        return bool(receivers)

    # -- heartbeats

    async def _heartbeat_loop(self) -> None:
        # Stops on ``closing`` as well as on cancellation: redis-py may turn a
        # cancellation in the middle of a call into a connection error.
        while not self.closing:
            await asyncio.sleep(self.hub.heartbeat)
            if self.live and not self.closing:
                try:
                    await self._beat()
                except Exception:  # pragma: no cover - logged, and the next beat tries again
                    logger.exception("hub: heartbeat failed")

    async def _beat(self) -> None:
        """Refresh this process's members in every room; sweep the expired; check positions."""
        rooms = [room for room in self.hub._rooms.values() if room.ready]
        ttl = int(self.hub.presence_ttl * 1000)
        for start in range(0, len(rooms), 256):
            chunk = rooms[start : start + 256]
            try:
                pipe = self.client.pipeline(transaction=False) if not self.cluster else self.client.pipeline()
                for room in chunk:
                    addresses = [member.address for member in room.members.values()]
                    pipe.evalsha(
                        self.shas["heartbeat"],
                        5,
                        *self._keys(room.name)[:5],
                        *self._common(room.name),
                        ttl,
                        *addresses,
                    )
                results = await pipe.execute(raise_on_error=False)
            except self.errors as exc:
                logger.debug("hub: heartbeat failed: %r", exc)
                return
            for room, result in zip(chunk, results, strict=True):
                if isinstance(result, self.no_script):
                    await self._load_scripts()
                    continue
                if isinstance(result, BaseException):
                    continue
                epoch, top, missing = result[0].decode(), int(result[1]), result[2]
                if self.hub._rooms.get(room.name) is not room:
                    continue
                room.check(epoch, top)
                for address in missing:
                    self._rejoin(room, address.decode())

    def _rejoin(self, room: _Room, address: str) -> None:
        """A member of ours expired (this process stalled, or Redis lost it): add it back."""
        for ws, member in room.members.items():
            if member.address == address and member.info is not None:
                info = ClientInfo(address, member.info.user, member.info.data)
                self.hub._spawn(self._add_back(room.name, ws, info, member.unique))
                return

    async def _add_back(self, room: str, ws: WebSocket, info: ClientInfo, unique: bool) -> None:
        try:
            await self.join(room, info, unique, False)
        except UserTaken:
            logger.warning(
                "hub: %s lost its place in %r to another connection; closing it", address_of(info), room
            )
            ws.close_nowait(1013, "presence lost; join again")
        except HubUnavailable:
            pass  # the next heartbeat after reconnecting tries again
        else:
            logger.info("hub: %s was missing from %r's presence; added back", address_of(info), room)


def address_of(info: ClientInfo) -> str:
    return info.address


class RedisHub(Hub):
    """The :class:`~wsline.hub.Hub` interface over Redis at ``url`` (a server, or a cluster node).

    ``await hub.start()`` (or ``async with RedisHub(url) as hub``) raises
    :class:`~wsline.hub.HubUnavailable` if Redis cannot be reached (or the
    ``redis`` package is missing). ``cluster``: ``None`` asks the server
    (``INFO cluster``), ``True``/``False`` says. ``prefix`` namespaces the
    keys and channels. ``heartbeat`` (seconds) is how often this process
    refreshes its members; ``presence_ttl`` (default ``3 * heartbeat``) how
    long they live without a refresh. ``history_size``, ``history_ttl``:
    see :mod:`wsline.hub`; ``meta_ttl``: how long an idle room's keys live.
    ``max_backoff`` caps the wait between reconnection attempts;
    ``max_outbox`` the publications waiting for Redis.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "wsline:",
        policy: Policy = "drop",
        limit: int | None = None,
        connect_timeout: float = 2.0,
        max_backoff: float = 5.0,
        cluster: bool | None = None,
        heartbeat: float = 5.0,
        presence_ttl: float | None = None,
        history_size: int = 1000,
        history_ttl: float = 300.0,
        meta_ttl: float = 86400.0,
        max_outbox: int = 100_000,
    ) -> None:
        super().__init__(policy=policy, limit=limit, history_size=history_size, history_ttl=history_ttl)
        if heartbeat <= 0 or (presence_ttl is not None and presence_ttl <= heartbeat):
            raise ValueError("heartbeat must be > 0 and presence_ttl longer than the heartbeat")
        self.url = url
        self.prefix = prefix
        self.connect_timeout = connect_timeout
        self.max_backoff = max_backoff
        self.cluster = cluster
        self.heartbeat = heartbeat
        self.presence_ttl = presence_ttl if presence_ttl is not None else 3 * heartbeat
        self.meta_ttl = max(meta_ttl, history_ttl, self.presence_ttl)
        #: How many publications may wait for Redis while it is unreachable (then they are dropped).
        self.max_outbox = max_outbox
        self.cache_size = type(self).cache_size
        #: A room nobody is in here any more stays subscribed this long (joins and
        #: leaves in quick succession then cost no subscription round trips).
        self.linger = 2.0
        self._redis_store = _RedisStore(self)
        self._store = self._redis_store

    @property
    def connected(self) -> bool:
        """Whether the hub is connected to Redis right now."""
        return self._redis_store.live

    @property
    def on_cluster(self) -> bool:
        """Whether the hub talks to a Redis Cluster (known once started)."""
        return self._redis_store.cluster

    @property
    def unsent(self) -> int:
        """Publications that could not be stored (Redis unreachable, :attr:`max_outbox` full)."""
        return self._redis_store.unsent

    @property
    def reconnections(self) -> int:
        """How many times the hub reconnected to Redis."""
        return self._redis_store.reconnections

    @property
    def leave_bound(self) -> float:
        """Seconds within which the members of a dead process leave: ``presence_ttl + heartbeat``."""
        return self.presence_ttl + self.heartbeat

    async def publish(
        self,
        room: str,
        message: BroadcastMessage,
        *,
        exclude: WebSocket | None = None,
        wait: bool = True,
    ) -> PublishResult:
        """Add ``message`` to ``room``'s stream in Redis; the members get it when it comes back.

        Returns once Redis has stored it, with its position (``wait=False``:
        once it is queued; then the publisher waits only when many are
        queued). Never raises because Redis is down: the message then waits
        for the connection (:attr:`max_outbox` at most) and the position is
        ``None``; :attr:`unsent` counts the ones that could not be stored.
        """
        return await super().publish(room, message, exclude=exclude, wait=wait)
