"""Hypothesis state machine, real Redis: each subscriber sees every position once, in order, or a Reset.

Two hubs ("processes") share one room. The rules publish from either, open
subscriptions on either, drop them and reconnect them with ``since=`` the
last position they saw (on either hub), restart Redis (no persistence: the
stream is lost), and kill a hub (it stops as a SIGKILLed process would; a
fresh one takes its place). Members with a user join and leave too, so the
stream has presence events. After every step the subscribers are drained
until they reach the room's current position, and each one's whole history
is checked: offsets go up by exactly one within an epoch; a change of epoch
comes only as a :class:`Reset`, only when the old epoch was lost (a restart),
and the entries after it follow its position; the same position always holds
the same entry; every publication acknowledged with a position in the final
epoch was seen by the subscribers that covered it. Bounded and derandomized,
to keep CI fast and repeatable; run on one Redis (with restarts) and on the
three-primary cluster (without: restarting a shard is tested in
test_scaleout_cluster.py).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from scaleout_redis import HOST, RedisCluster, RedisServer

import wsline
from wsline.hub import PresenceEvent, Publication, Reset, StreamPosition, Subscription
from wsline.hub_redis import RedisHub

ROOM = "stateful"
OPTIONS: dict[str, Any] = {"heartbeat": 0.2, "presence_ttl": 0.6, "max_backoff": 0.05, "connect_timeout": 1.0}
SETTLE = 15.0


class Tracked:
    """One subscriber's life across its reconnections: what it saw, in order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sub: Subscription | None = None
        self.hub = 0
        #: Where it was when it (re)subscribed, then after each item: the cursor checked against.
        self.cursor: StreamPosition | None = None
        self.items: list[Any] = []


class Process:
    """A hub and a server for its members' connections."""

    def __init__(self, hub: RedisHub, serving: Any, server: wsline.Server, accepted: list[wsline.WebSocket]):
        self.hub = hub
        self.serving = serving
        self.server = server
        self.accepted = accepted
        self.members: list[tuple[wsline.WebSocket, wsline.WebSocket]] = []


class HubMachine(RuleBasedStateMachine):
    url = ""
    restartable: RedisServer | None = None

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.prefix = f"s{uuid.uuid4().hex[:8]}:"
        self.processes = [self.run(self.start_process()) for _ in range(2)]
        self.live: list[Tracked] = []
        self.dropped: list[Tracked] = []
        self.finished: list[Tracked] = []
        self.acked: dict[StreamPosition, str] = {}
        self.seen: dict[StreamPosition, tuple[str, Any]] = {}
        self.lost_epochs: set[str] = set()
        self.count = 0
        self.disasters = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 30))

    async def start_process(self) -> Process:
        hub = RedisHub(self.url, prefix=self.prefix, **OPTIONS)
        await hub.start()
        accepted: list[wsline.WebSocket] = []

        async def handler(ws: wsline.WebSocket) -> None:
            accepted.append(ws)
            await ws.wait_closed()

        serving = wsline.serve(handler, HOST, 0, ping_interval=None, close_timeout=0.2)
        server = await serving.__aenter__()
        return Process(hub, serving, server, accepted)

    async def stop_process(self, process: Process, *, killed: bool) -> None:
        for client, _ in process.members:
            client.abort() if killed else await client.close()
        await process.serving.__aexit__(None, None, None)
        if not killed:
            await process.hub.close()

    # ------------------------------------------------------------ rules

    @initialize()
    def populate(self) -> None:
        """Someone to watch and someone present on each process, and a few entries."""
        for index in (0, 1):
            self.subscribe(index)
            self.join(index, ["ann", "bob"][index])
        self.publish(0, 2)

    @rule(index=st.integers(0, 1), n=st.integers(1, 3))
    def publish(self, index: int, n: int) -> None:
        async def go() -> None:
            event("publish")
            for _ in range(n):
                self.count += 1
                text = f"m{self.count}"
                result = await self.processes[index].hub.publish(ROOM, text)
                if result.position is not None:
                    self.acked[result.position] = text

        self.run(go())

    @precondition(lambda self: len(self.live) < 4)
    @rule(index=st.integers(0, 1))
    def subscribe(self, index: int) -> None:
        tracked = Tracked(f"s{len(self.live) + len(self.dropped) + len(self.finished)}")
        self.run(self.attach(tracked, index, None))
        self.live.append(tracked)

    async def attach(self, tracked: Tracked, index: int, since: StreamPosition | None) -> None:
        sub = await self.processes[index].hub.subscribe(ROOM, since=since)
        tracked.sub, tracked.hub = sub, index
        if since is None:
            tracked.cursor = sub.position

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data())
    def drop(self, data: st.DataObject) -> None:
        tracked = data.draw(st.sampled_from(self.live))
        self.live.remove(tracked)
        assert tracked.sub is not None
        tracked.sub.close()
        self.dropped.append(tracked)
        self.publish(1 - tracked.hub, 2)  # the room goes on while it is away

    @precondition(lambda self: bool(self.dropped))
    @rule(data=st.data(), index=st.integers(0, 1))
    def reconnect(self, data: st.DataObject, index: int) -> None:
        tracked = data.draw(st.sampled_from(self.dropped))
        event("reconnect with since")
        self.dropped.remove(tracked)
        self.run(self.attach(tracked, index, tracked.cursor))
        self.live.append(tracked)

    @precondition(lambda self: sum(len(p.members) for p in self.processes) < 4)
    @rule(index=st.integers(0, 1), user=st.sampled_from(["ann", "bob", "cy"]))
    def join(self, index: int, user: str) -> None:
        process = self.processes[index]

        async def go() -> None:
            client = await wsline.connect(f"ws://{HOST}:{process.server.port}/", ping_interval=None)
            while len(process.accepted) < len(process.members) + 1:
                await asyncio.sleep(0.005)
            ws = process.accepted[len(process.members)]
            process.members.append((client, ws))
            await process.hub.join(ROOM, ws, user=user)

        self.run(go())

    @precondition(lambda self: any(p.members for p in self.processes))
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        process = data.draw(st.sampled_from([p for p in self.processes if p.members]))
        client, ws = process.members.pop(0)
        process.accepted.remove(ws)

        async def go() -> None:
            await client.close()
            await asyncio.wait_for(ws.wait_closed(), 5)

        self.run(go())

    @precondition(lambda self: self.restartable is not None and self.disasters < 2)
    @rule()
    def restart_redis(self) -> None:
        server = self.restartable
        assert server is not None
        event("Redis restarted")
        self.disasters += 1

        async def go() -> None:
            self.lost_epochs.add((await self.processes[0].hub.position(ROOM)).epoch)
            server.stop()
            deadline = time.monotonic() + 5
            while any(p.hub.connected for p in self.processes):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.005)
            server.start()
            while not all(p.hub.connected for p in self.processes):
                assert time.monotonic() < deadline + 10, "the hubs did not reconnect"
                await asyncio.sleep(0.005)

        self.run(go())

    @precondition(lambda self: self.disasters < 2)
    @rule(index=st.integers(0, 1))
    def kill_process(self, index: int) -> None:
        process = self.processes[index]
        event("process killed")
        self.disasters += 1
        for tracked in [t for t in self.live if t.hub == index]:
            self.live.remove(tracked)
            self.dropped.append(tracked)

        async def go() -> None:
            process.hub._abort()  # no leaves, nothing flushed: as SIGKILL would
            await self.stop_process(process, killed=True)
            self.processes[index] = await self.start_process()

        self.publish(1 - index, 1)  # the other process goes on
        self.run(go())

    # ------------------------------------------------------------ checks

    def record(self, tracked: Tracked, item: Any) -> None:
        tracked.items.append(item)
        cursor = tracked.cursor
        assert cursor is not None
        if isinstance(item, Reset):
            event("reset seen")
            assert item.reason == "epoch changed", item
            assert item.since is not None and item.since.epoch in self.lost_epochs, (item, self.lost_epochs)
            assert item.position.epoch != item.since.epoch
            tracked.cursor = item.position
            return
        assert isinstance(item, (Publication, PresenceEvent))
        expected = StreamPosition(cursor.epoch, cursor.offset + 1)
        assert item.position == expected, (tracked.name, item, cursor, tracked.items[-6:])
        if isinstance(item, PresenceEvent):
            event(f"presence {item.kind} seen")
        what = (type(item).__name__, item.data if isinstance(item, Publication) else item.client.address)
        assert self.seen.setdefault(item.position, what) == what, (item, self.seen[item.position])
        if item.position in self.acked:
            assert isinstance(item, Publication) and item.data == self.acked[item.position]
        tracked.cursor = item.position

    async def settle(self) -> None:
        top = await self.processes[0].hub.position(ROOM)
        for tracked in self.live:
            assert tracked.sub is not None
            deadline = time.monotonic() + SETTLE
            while True:
                cursor = tracked.cursor
                if cursor is not None and cursor == top and not tracked.sub.pending():
                    break
                remaining = deadline - time.monotonic()
                assert remaining > 0, (tracked.name, cursor, top, tracked.items[-5:])
                try:
                    item = await tracked.sub.get(timeout=min(remaining, 0.5))
                except TimeoutError:
                    top = await self.processes[0].hub.position(ROOM)  # presence expiry may add entries
                    continue
                self.record(tracked, item)

    @invariant()
    def every_subscriber_has_every_position_once(self) -> None:
        self.run(self.settle())

    def teardown(self) -> None:
        try:
            self.run(self.settle())
            final = self.run(self.processes[0].hub.position(ROOM))
            # Every acknowledged publication of the final epoch reached every subscriber that covered it.
            for tracked in self.live:
                got = {item.position.offset for item in tracked.items if item.position.epoch == final.epoch}
                got.discard(0)
                if got:
                    span = range(min(got), max(got) + 1)
                    acked = {p.offset for p in self.acked if p.epoch == final.epoch and p.offset in span}
                    assert acked <= got, (tracked.name, sorted(acked - got))
            for tracked in self.live:
                assert tracked.sub is not None
                tracked.sub.close()
            for process in self.processes:
                self.run(self.stop_process(process, killed=False))
        finally:
            self.loop.run_until_complete(asyncio.sleep(0.05))
            self.loop.close()
            asyncio.set_event_loop(None)


SETTINGS = settings(
    max_examples=10,
    stateful_step_count=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
    # No shrinking: each step may restart Redis, so shrinking a failure takes minutes;
    # the failing run's steps are printed as they are.
    phases=[Phase.explicit, Phase.generate],
)


def test_positions_once_in_order_or_reset_on_one_redis(redis_server: RedisServer) -> None:
    machine = type("OneRedis", (HubMachine,), {"url": redis_server.url, "restartable": redis_server})
    run_state_machine_as_test(machine, settings=SETTINGS)


def test_positions_once_in_order_on_the_cluster(redis_cluster: RedisCluster) -> None:
    machine = type("Cluster", (HubMachine,), {"url": redis_cluster.url, "restartable": None})
    run_state_machine_as_test(machine, settings=settings(SETTINGS, max_examples=6))
