"""RedisHub on a three-primary Redis Cluster: sharded pub/sub, per-room hash tags, the same guarantees."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio.cluster import RedisCluster as ClusterClient
from redis.crc import key_slot
from scaleout_redis import HOST, RedisCluster

import wsline
from wsline.hub import PositionPrefix, PresenceEvent, Publication, Reset, UserTaken
from wsline.hub_redis import RedisHub, _tag

pytestmark = pytest.mark.asyncio

OPTS: dict[str, Any] = {"ping_interval": None, "close_timeout": 0.5}
FAST = {"heartbeat": 0.2, "presence_ttl": 0.6, "max_backoff": 0.1}
ROOMS = [f"room-{i}" for i in range(12)]


class Node:
    def __init__(self, hub: RedisHub, server: wsline.Server) -> None:
        self.hub = hub
        self.server = server
        self.accepted: list[wsline.WebSocket] = []
        self.clients: list[wsline.WebSocket] = []

    async def pair(self) -> tuple[wsline.WebSocket, wsline.WebSocket]:
        client = await wsline.connect(f"ws://{HOST}:{self.server.port}/", **OPTS)
        self.clients.append(client)
        while len(self.accepted) < len(self.clients):
            await asyncio.sleep(0.005)
        return client, self.accepted[-1]


@pytest_asyncio.fixture
async def nodes(redis_cluster: RedisCluster, prefix: str) -> AsyncIterator[Any]:
    started: list[tuple[Node, Any]] = []

    async def start(**kwargs: Any) -> Node:
        hub = RedisHub(redis_cluster.url, prefix=prefix, **{**FAST, **kwargs})
        await hub.start()
        holder: list[Node] = []

        async def handler(ws: wsline.WebSocket) -> None:
            holder[0].accepted.append(ws)
            await ws.wait_closed()

        serving = wsline.serve(handler, HOST, 0, **OPTS)
        node = Node(hub, await serving.__aenter__())
        holder.append(node)
        started.append((node, serving))
        return node

    yield start
    for node, serving in started:
        for ws in node.clients:
            await ws.close()
        await serving.__aexit__(None, None, None)
        await node.hub.close()


async def test_a_room_is_one_slot_and_rooms_spread_over_the_shards(
    nodes: Any, redis_cluster: RedisCluster
) -> None:
    node = await nodes()
    assert node.hub.on_cluster
    client = ClusterClient.from_url(redis_cluster.url)
    try:
        await client.initialize()
        owners = set()
        for room in [*ROOMS, "", "{braces}", "50%"]:
            keys = node.hub._redis_store._keys(room)
            assert len({key_slot(key) for key in keys}) == 1, room  # keys and channel: one slot
            assert b"{" + _tag(room) + b"}" in keys[0]
            owners.add(client.get_node_from_key(keys[0]).name)
        assert len(owners) == 3  # every shard holds some of the rooms
        for room in ROOMS:
            await node.hub.publish(room, "x")
        stored = [await client.exists(node.hub._redis_store._keys(room)[1]) for room in ROOMS]
        assert stored == [1] * len(ROOMS)
    finally:
        await client.aclose()


async def test_presence_order_recovery_and_addresses_on_a_cluster(nodes: Any) -> None:
    one, two = await nodes(), await nodes()
    watches = {room: await two.hub.subscribe(room) for room in ROOMS}
    envelope = PositionPrefix()
    clients = {}
    for room in ROOMS:
        c, ws = await one.pair()
        await one.hub.join(room, ws, user=f"u-{room}", unique=True, envelope=envelope)
        clients[room] = (c, ws)
    _, other = await two.pair()
    with pytest.raises(UserTaken):
        await two.hub.join(ROOMS[0], other, user=f"u-{ROOMS[0]}", unique=True)
    for i in range(5):
        for room in ROOMS:
            await two.hub.publish(room, f"{room} m{i}", wait=False)
    for room in ROOMS:
        c, _ = clients[room]
        got = [str(await c.recv(timeout=3)).split("\n", 1)[1] for _ in range(5)]
        assert got == [f"{room} m{i}" for i in range(5)]
        items = [await watches[room].get(timeout=3) for _ in range(6)]
        assert isinstance(items[0], PresenceEvent)
        assert [i.position.offset for i in items] == list(range(1, 7))
        assert [c.user for c in await two.hub.presence(room)] == [f"u-{room}"]
    # Recovery on another process, across shards.
    room = ROOMS[3]
    c, ws = clients[room]
    last = await one.hub.position(room)
    await c.close()
    for i in range(5, 8):
        await one.hub.publish(room, f"{room} m{i}")
    c2, ws2 = await two.pair()
    joined = await two.hub.join(room, ws2, since=last, envelope=envelope)
    assert joined is not None and joined.recovered
    assert [str(await c2.recv(timeout=3)).split("\n", 1)[1] for _ in range(3)] == [
        f"{room} m{i}" for i in range(5, 8)
    ]
    # Direct addressing across processes (control channels sit on their own shards).
    c3, ws3 = clients[ROOMS[5]]
    assert await two.hub.send_to(one.hub.address(ws3), "direct")
    assert await c3.recv(timeout=3) == "direct"
    for watch in watches.values():
        watch.close()


async def test_a_restarted_shard_is_a_reset_on_its_rooms_only(
    nodes: Any, redis_cluster: RedisCluster
) -> None:
    one, two = await nodes(), await nodes()
    client = ClusterClient.from_url(redis_cluster.url)
    await client.initialize()
    try:
        owner = {room: client.get_node_from_key(one.hub._redis_store._keys(room)[0]).port for room in ROOMS}
    finally:
        await client.aclose()
    port = owner[ROOMS[0]]
    hit = [room for room in ROOMS if owner[room] == port]
    watches = {room: await one.hub.subscribe(room) for room in ROOMS}
    for room in ROOMS:
        await two.hub.publish(room, "before")
    for room in ROOMS:
        assert isinstance(await watches[room].get(timeout=3), Publication)
    redis_cluster.restart(port)
    # The first write to the restarted shard finds the broken connection: that one publication
    # is stored at most once (lost here, and counted); later ones wait for the reconnection.
    for room in ROOMS:
        await two.hub.publish(room, "after")
    deadline = time.monotonic() + 15
    while not (one.hub.connected and two.hub.connected):
        assert time.monotonic() < deadline, "the hubs did not reconnect"
        await asyncio.sleep(0.02)
    for room in ROOMS:
        await two.hub.publish(room, "again")
    for room in ROOMS:
        got: list[Any] = []
        while not (got and isinstance(got[-1], Publication) and got[-1].data == "again"):
            got.append(await watches[room].get(timeout=10))
        if room in hit:  # the shard lost the stream: the epoch changed, and the hub says so
            resets = [i for i, item in enumerate(got) if isinstance(item, Reset)]
            assert resets and got[resets[-1]].reason == "epoch changed", (room, got)
            after = got[resets[-1] + 1 :]
            start = got[resets[-1]].position.offset
            assert [item.position.offset for item in after] == list(range(start + 1, start + 1 + len(after)))
        else:
            assert [item.data for item in got] == ["after", "again"], (room, got)
    assert two.hub.unsent <= 1
    position = await one.hub.position(hit[0])
    assert position.offset <= 2  # the new epoch has "again", and "after" if it got through
    for watch in watches.values():
        watch.close()
