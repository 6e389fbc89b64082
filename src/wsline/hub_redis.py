"""A :class:`~wsline.hub.Hub` shared between processes over Redis pub/sub.

Each process subscribes to one channel per room it has members in
(``prefix + room``). :meth:`RedisHub.publish` delivers to the local members
at once and publishes to Redis; every other process delivers what it
receives to its own members. A process ignores its own messages coming back
from Redis (each message carries the id of the hub that sent it), so nobody
gets a message twice.

When the connection to Redis is lost, the hub logs a WARNING, reconnects with
exponential backoff, subscribes again and logs a WARNING saying what was lost:
messages published here meanwhile reached only this process's members, and
messages published elsewhere meanwhile never arrive here. ``redis`` is
imported when the hub starts (``pip install 'wsline[redis]'``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from .aio.connection import WebSocket
from .aio.fanout import BroadcastMessage, BroadcastResult, Policy
from .hub import Hub, HubUnavailable

__all__ = ["RedisHub"]

logger = logging.getLogger("wsline.hub")

_TEXT = b"t"
_BINARY = b"b"
_ID_SIZE = 16
_MAX_OUTBOX = 100_000  # publishes waiting for Redis; beyond it they are counted as unsent


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.RedisError, OSError, asyncio.TimeoutError)


class RedisHub(Hub):
    """The :class:`~wsline.hub.Hub` interface over Redis pub/sub at ``url``.

    ``await hub.start()`` (or ``async with RedisHub(url) as hub``) raises
    :class:`~wsline.hub.HubUnavailable` if Redis cannot be reached (or the
    ``redis`` package is missing). ``url`` is a ``redis://``, ``rediss://``
    or ``unix://`` URL, as the ``redis`` package takes them. ``prefix``
    namespaces the channels (hubs with the same Redis and prefix share their
    rooms); ``policy`` and ``limit`` are passed to :func:`wsline.broadcast`
    for the local delivery, as for :class:`~wsline.hub.Hub`;
    ``connect_timeout`` bounds connecting to Redis, in seconds;
    ``max_backoff`` caps the wait between reconnection attempts.
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
    ) -> None:
        super().__init__(policy=policy, limit=limit)
        self.url = url
        self.prefix = prefix
        self.connect_timeout = connect_timeout
        self.max_backoff = max_backoff
        self._id = os.urandom(_ID_SIZE)
        self._prefix_b = prefix.encode("utf-8")
        # Always subscribed, even without rooms: the listener notices a lost connection.
        self._control = self._prefix_b + b"\x00hub:" + self._id.hex().encode()
        self._redis: Any = None
        self._pubsub: Any = None
        self._errors: tuple[type[BaseException], ...] = ()
        self._listener: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connected = False
        self._closing = False
        #: Messages published here that did not reach Redis since the last reconnection.
        self.unsent = 0
        # Publishes wait here and go to Redis in pipelined batches, so that a
        # relay never waits for one Redis round trip per message.
        self._outbox: list[tuple[bytes, bytes]] = []
        self._outbox_waiter: asyncio.Future[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        #: How many times the hub reconnected to Redis.
        self.reconnections = 0

    @property
    def connected(self) -> bool:
        """Whether the hub is connected to Redis right now."""
        return self._connected

    def _channel(self, room: str) -> bytes:
        return self._prefix_b + room.encode("utf-8")

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        try:
            import redis.asyncio as aioredis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:
            raise HubUnavailable("RedisHub needs the redis package: pip install 'wsline[redis]'") from exc
        self._errors = _redis_errors()
        # No silent retries inside redis-py: the hub reconnects itself, so it
        # knows about every gap and can say what was lost.
        self._redis = aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=self.connect_timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        try:
            self._pubsub = await self._subscribe_all()
        except self._errors as exc:
            await self._close_client()
            raise HubUnavailable(f"cannot reach Redis at {self.url}: {exc}") from exc
        self._connected = True
        self._closing = False
        self._listener = asyncio.create_task(self._listen())
        self._sender = asyncio.create_task(self._send_loop())
        logger.info("hub connected to Redis at %s", self.url)

    async def close(self) -> None:
        if self._sender is not None and self._outbox and self._connected:
            await self._flush_outbox()  # what was published before close() goes out
        self._closing = True
        self._connected = False
        if self._sender is not None:
            self._sender.cancel()
            try:
                await self._sender
            except asyncio.CancelledError:
                pass
            self._sender = None
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except asyncio.CancelledError:
                pass
            self._listener = None
        for task in list(self._tasks):
            task.cancel()
        await self._close_pubsub(self._pubsub)
        self._pubsub = None
        await self._close_client()

    async def _close_client(self) -> None:
        if self._redis is not None:
            try:
                await self._redis.aclose()
            except Exception:  # noqa: BLE001 - closing anyway
                pass
            self._redis = None

    async def _close_pubsub(self, pubsub: Any) -> None:
        if pubsub is not None:
            try:
                await pubsub.aclose()
            except Exception:  # noqa: BLE001 - closing anyway
                pass

    async def _subscribe_all(self) -> Any:
        """A new pub/sub connection subscribed to every room with local members."""
        await self._redis.ping()
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(self._control, *(self._channel(room) for room in self._rooms))
        except BaseException:
            await self._close_pubsub(pubsub)
            raise
        return pubsub

    # ------------------------------------------------------------ receiving

    async def _listen(self) -> None:
        while not self._closing:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except self._errors as exc:
                await self._reconnect(exc)
                continue
            if message is not None and message.get("type") == "message":
                try:
                    self._on_message(message["channel"], message["data"])
                except Exception:  # pragma: no cover - a bug must not stop the listener
                    logger.exception("hub: delivering a message from Redis failed")

    def _on_message(self, channel: bytes, data: bytes) -> None:
        if len(data) <= _ID_SIZE or data[:_ID_SIZE] == self._id:
            return  # our own message: the local members have it already
        if not channel.startswith(self._prefix_b):
            return
        room = channel[len(self._prefix_b) :].decode("utf-8", "replace")
        kind = data[_ID_SIZE : _ID_SIZE + 1]
        payload = data[_ID_SIZE + 1 :]
        message: BroadcastMessage = payload.decode("utf-8") if kind == _TEXT else payload
        self._deliver(room, message, None)

    async def _reconnect(self, exc: BaseException) -> None:
        self._connected = False
        lost_at = time.monotonic()
        logger.warning("hub: lost the connection to Redis at %s (%r); reconnecting", self.url, exc)
        await self._close_pubsub(self._pubsub)
        self._pubsub = None
        try:  # the publishing connections are as dead: start afresh
            await self._redis.connection_pool.disconnect()
        except Exception:  # noqa: BLE001 - best effort
            pass
        delay = 0.05
        attempts = 0
        while not self._closing:
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_backoff)
            attempts += 1
            try:
                self._pubsub = await self._subscribe_all()
            except self._errors as error:
                if attempts == 1 or attempts % 10 == 0:
                    logger.warning("hub: Redis at %s still unreachable (%s)", self.url, error)
                continue
            break
        else:
            return
        self._connected = True
        self.reconnections += 1
        unsent, self.unsent = self.unsent, 0
        logger.warning(
            "hub: reconnected to Redis at %s after %.1f s; %d message(s) published here while "
            "disconnected were not delivered to other processes, and messages published by other "
            "processes meanwhile were lost",
            self.url,
            time.monotonic() - lost_at,
            unsent,
        )

    # ------------------------------------------------------------ rooms

    async def _room_added(self, room: str) -> None:
        if self._connected and self._pubsub is not None:
            try:
                await self._pubsub.subscribe(self._channel(room))
            except self._errors:  # the listener reconnects and subscribes to every room
                pass

    async def _room_removed(self, room: str) -> None:
        if self._connected and self._pubsub is not None and room not in self._rooms:
            try:
                await self._pubsub.unsubscribe(self._channel(room))
            except self._errors:
                pass

    def _room_emptied(self, room: str) -> None:
        if self._closing:
            return
        task = asyncio.ensure_future(self._room_removed(room))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ publishing

    async def publish(
        self, room: str, message: BroadcastMessage, *, exclude: WebSocket | None = None
    ) -> BroadcastResult:
        """Deliver to the local members of ``room`` now, and to the other processes' through Redis.

        Never raises because Redis is down: the message then reaches only the
        local members, and the loss is counted (:attr:`unsent`) and reported
        in the reconnection warning.
        """
        result = self._deliver(room, message, exclude)
        if isinstance(message, str):
            envelope = self._id + _TEXT + message.encode("utf-8")
        else:
            envelope = self._id + _BINARY + bytes(message)
        if not self._connected or self._redis is None or len(self._outbox) >= _MAX_OUTBOX:
            self.unsent += 1
            return result
        self._outbox.append((self._channel(room), envelope))
        waiter = self._outbox_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return result

    async def _send_loop(self) -> None:
        """Send queued publishes, each batch in one pipelined round trip."""
        while True:
            if not self._outbox:
                self._outbox_waiter = asyncio.get_running_loop().create_future()
                await self._outbox_waiter
                self._outbox_waiter = None
            await self._flush_outbox()

    async def _flush_outbox(self) -> None:
        batch, self._outbox = self._outbox, []
        if not batch:
            return
        if not self._connected or self._redis is None:
            self.unsent += len(batch)
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            for channel, envelope in batch:
                pipe.publish(channel, envelope)
            await pipe.execute()
        except self._errors as exc:
            self.unsent += len(batch)
            logger.debug("hub: publishing %d message(s) to Redis failed: %r", len(batch), exc)
