"""wsline.hub.Hub (in process) and the relay's semantics in one process."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import wsline
from wsline.apps.relay import serve_relay
from wsline.hub import Hub

pytestmark = pytest.mark.asyncio

HOST = "127.0.0.1"
OPTS: dict[str, Any] = {"ping_interval": None, "close_timeout": 0.5}


async def test_join_leave_publish_and_auto_leave() -> None:
    hub = Hub()
    conns: list[wsline.WebSocket] = []

    async def handler(ws: wsline.WebSocket) -> None:
        conns.append(ws)
        await ws.wait_closed()

    async with hub, wsline.serve(handler, HOST, 0, **OPTS) as server:
        url = f"ws://{HOST}:{server.port}/"
        a = await wsline.connect(url, **OPTS)
        b = await wsline.connect(url, **OPTS)
        while len(conns) < 2:
            await asyncio.sleep(0.01)
        sa, sb = conns
        await hub.join("red", sa)
        await hub.join("red", sb)
        await hub.join("blue", sb)
        await hub.join("red", sa)  # twice: no effect
        assert hub.members("red") == [sa, sb]
        assert sorted(hub.rooms()) == ["blue", "red"]
        assert hub.rooms_of(sb) == ["blue", "red"]

        result = await hub.publish("red", "to red")
        assert result.sent == 2
        assert await asyncio.wait_for(a.recv(), 2) == "to red"
        assert await asyncio.wait_for(b.recv(), 2) == "to red"
        assert (await hub.publish("red", b"bin", exclude=sa)).sent == 1
        assert await asyncio.wait_for(b.recv(), 2) == b"bin"
        assert (await hub.publish("nobody-here", "x")).sent == 0

        await hub.leave("red", sa)
        await hub.leave("red", sa)  # not a member any more: no effect
        assert hub.members("red") == [sb]

        await b.close()  # sb leaves every room by itself
        await asyncio.wait_for(sb.wait_closed(), 2)
        await asyncio.sleep(0)
        assert hub.members("red") == [] and hub.members("blue") == []
        assert hub.rooms() == []
        await hub.join("red", sb)  # a closed connection does not join
        assert hub.rooms() == []
        await a.close()


async def test_relay_in_one_process() -> None:
    async with Hub() as hub, serve_relay(HOST, 0, hub=hub, **OPTS) as server:
        base = f"ws://{HOST}:{server.port}"
        a1 = await wsline.connect(f"{base}/one", **OPTS)
        a2 = await wsline.connect(f"{base}/one", **OPTS)
        a3 = await wsline.connect(f"{base}/one", **OPTS)
        b1 = await wsline.connect(f"{base}/two", **OPTS)
        while len(hub.members("/one")) < 3 or len(hub.members("/two")) < 1:
            await asyncio.sleep(0.01)
        await a1.send("hi from a1")
        assert await asyncio.wait_for(a2.recv(), 2) == "hi from a1"
        assert await asyncio.wait_for(a3.recv(), 2) == "hi from a1"
        await b1.send(b"\x01\x02")
        await a2.send("hi from a2")
        assert await asyncio.wait_for(a1.recv(), 2) == "hi from a2"
        assert await asyncio.wait_for(a3.recv(), 2) == "hi from a2"
        # Nobody else in /two, and the sender never gets its own messages back.
        with pytest.raises(TimeoutError):
            await b1.recv(timeout=0.2)
        with pytest.raises(TimeoutError):
            await a1.recv(timeout=0.1)
        await a3.close()
        while len(hub.members("/one")) > 2:
            await asyncio.sleep(0.01)
        for ws in (a1, a2, b1):
            await ws.close()


# ------------------------------------------------------------------ presence, positions, recovery

from collections.abc import AsyncIterator  # noqa: E402

import pytest_asyncio  # noqa: E402

from wsline.hub import (  # noqa: E402
    RAW,
    ClientInfo,
    PositionPrefix,
    PresenceEvent,
    Publication,
    Reset,
    StreamPosition,
    Subscription,
    UserTaken,
)

POSITIONS = PositionPrefix()


class Conns:
    """A server whose handler keeps every connection open, and clients to it."""

    def __init__(self, server: wsline.Server) -> None:
        self.server = server
        self.accepted: list[wsline.WebSocket] = []
        self.clients: list[wsline.WebSocket] = []

    async def pair(self) -> tuple[wsline.WebSocket, wsline.WebSocket]:
        """(client side, server side) of a new connection."""
        client = await wsline.connect(f"ws://{HOST}:{self.server.port}/", **OPTS)
        self.clients.append(client)
        while len(self.accepted) < len(self.clients):
            await asyncio.sleep(0.005)
        return client, self.accepted[-1]


@pytest_asyncio.fixture
async def conns() -> AsyncIterator[Conns]:
    holder: list[Conns] = []

    async def handler(ws: wsline.WebSocket) -> None:
        holder[0].accepted.append(ws)
        await ws.wait_closed()

    async with wsline.serve(handler, HOST, 0, **OPTS) as server:
        holder.append(Conns(server))
        yield holder[0]
        for ws in holder[0].clients:
            await ws.close()


async def items(sub: Subscription, n: int) -> list[Any]:
    return [await sub.get(timeout=2) for _ in range(n)]


def offsets(got: list[Any]) -> list[int]:
    return [item.position.offset for item in got]


async def test_positions_presence_and_events(conns: Conns) -> None:
    async with Hub() as hub:
        watch = await hub.subscribe("room")
        start = watch.position
        assert start is not None and start.offset == 0
        (ca, a), (cb, b) = await conns.pair(), await conns.pair()
        ja = await hub.join("room", a, user="ann", data={"name": "Ann"})
        jb = await hub.join("room", b, user="ann", data={"name": "Ann on her phone"}, snapshot=True)
        assert ja is not None and jb is not None
        assert ja.address == hub.address(a) and ja.address.startswith(hub.id + "/")
        assert ja.position == StreamPosition(start.epoch, 1) and jb.position.offset == 2
        assert jb.members is not None and [c.address for c in jb.members] == [ja.address, jb.address]
        assert [c.data for c in await hub.presence("room")] == [{"name": "Ann"}, {"name": "Ann on her phone"}]
        result = await hub.publish("room", "hi", exclude=a)
        assert result.sent == 1 and result.position == StreamPosition(start.epoch, 3)
        assert await cb.recv(timeout=2) == "hi"
        await hub.leave("room", b)
        await ca.close()
        got = await items(watch, 5)
        assert offsets(got) == [1, 2, 3, 4, 5]
        j1, j2, pub, l1, l2 = got
        assert isinstance(j1, PresenceEvent) and j1.kind == "join" and j1.first
        assert isinstance(j2, PresenceEvent) and not j2.first  # ann's second connection
        assert isinstance(pub, Publication) and pub.data == "hi" and pub.excluded == ja.address
        assert isinstance(l1, PresenceEvent) and l1.kind == "leave" and not l1.last
        assert isinstance(l2, PresenceEvent) and l2.last and l2.client.address == ja.address
        assert l2.client == ClientInfo(ja.address, "ann", {"name": "Ann"}, 1)
        assert await hub.presence("room") == []
        assert (await hub.position("room")) == StreamPosition(start.epoch, 5)
        watch.close()


async def test_unique_users(conns: Conns) -> None:
    async with Hub() as hub:
        (_, a), (_, b) = await conns.pair(), await conns.pair()
        await hub.join("room", a, user="ann", unique=True)
        with pytest.raises(UserTaken, match="'ann'"):
            await hub.join("room", b, user="ann", unique=True)
        assert hub.members("room") == [a]
        await hub.join("other", b, user="ann", unique=True)  # per room
        await hub.leave("room", a)
        await hub.join("room", b, user="ann", unique=True)
        assert [c.address for c in await hub.presence("room")] == [hub.address(b)]


async def test_join_since_recovers_what_was_missed(conns: Conns) -> None:
    async with Hub() as hub:
        ca, a = await conns.pair()
        await hub.join("room", a, envelope=POSITIONS)  # joins and leaves are not shown
        for i in range(3):
            await hub.publish("room", f"m{i}")
        seen = [await ca.recv(timeout=2) for _ in range(3)]
        assert [str(m).split("\n", 1)[1] for m in seen] == ["m0", "m1", "m2"]
        last = StreamPosition.parse(str(seen[-1]).split("\n", 1)[0])
        await ca.close()  # drops; meanwhile the room goes on
        await hub.publish("room", b"\x00binary")
        await hub.publish("room", "m4")
        cb, b = await conns.pair()
        joined = await hub.join("room", b, since=str(last), envelope=POSITIONS)
        assert joined is not None and joined.recovered is True
        # The leave of its old connection (not shown by this envelope), the two missed, then its own join.
        got = [await cb.recv(timeout=2) for _ in range(2)]
        assert got == [
            f"{last.epoch}:{last.offset + 2}\n".encode() + b"\x00binary",
            f"{last.epoch}:{last.offset + 3}\nm4",
        ]
        await hub.publish("room", "live")
        assert await cb.recv(timeout=2) == f"{last.epoch}:{last.offset + 5}\nlive"


async def test_cannot_recover_is_explicit(conns: Conns) -> None:
    async with Hub(history_size=3) as hub:
        c, ws = await conns.pair()
        position = await hub.position("room")
        for i in range(5):
            await hub.publish("room", f"m{i}")
        joined = await hub.join("room", ws, since=StreamPosition(position.epoch, 1), envelope=POSITIONS)
        assert joined is not None and joined.recovered is False
        assert await c.recv(timeout=2) == f"!reset {position.epoch}:5 history trimmed"
        await hub.publish("room", "next")
        assert await c.recv(timeout=2) == f"{position.epoch}:7\nnext"  # 6 is its own join
        c2, ws2 = await conns.pair()
        joined = await hub.join("room", ws2, since="0123456789ab:3", envelope=POSITIONS)
        assert joined is not None and joined.recovered is False
        assert await c2.recv(timeout=2) == f"!reset {position.epoch}:7 epoch changed"
        c3, ws3 = await conns.pair()
        joined = await hub.join("room", ws3, since=StreamPosition(position.epoch, 99), envelope=POSITIONS)
        assert joined is not None and joined.recovered is False
        assert await c3.recv(timeout=2) == f"!reset {position.epoch}:8 position unknown"
        # A new hub is a new epoch: what the old one had is gone, and it says so.
    async with Hub() as again:
        sub = await again.subscribe("room", since=StreamPosition(position.epoch, 7))
        reset = await sub.get(timeout=1)
        assert isinstance(reset, Reset) and reset.reason == "epoch changed"
        assert reset.since == StreamPosition(position.epoch, 7) and reset.position.epoch != position.epoch
        sub.close()
    with pytest.raises(ValueError):
        StreamPosition.parse("no-offset")
    with pytest.raises(ValueError):
        StreamPosition.parse("e:1x")


async def test_subscription_that_falls_behind_catches_up() -> None:
    async with Hub(history_size=100) as hub:
        sub = await hub.subscribe("room", max_queue=4)
        for i in range(20):
            await hub.publish("room", f"m{i}")
        got = await items(sub, 20)  # 4 queued, then the rest from the history as it is read
        assert [item.data for item in got] == [f"m{i}" for i in range(20)]
        assert offsets(got) == list(range(1, 21))
        for i in range(200):
            await hub.publish("room", f"n{i}")
        got = await items(sub, 5)
        assert [type(item) for item in got] == [Publication] * 4 + [Reset]
        assert got[-1].reason == "history trimmed"
        await hub.publish("room", "after")
        async for item in sub:  # live again after the reset
            assert isinstance(item, Publication) and item.data == "after"
            break
        sub.close()
        assert hub.rooms() == [] and "room" not in hub._rooms


async def test_send_to_an_address(conns: Conns) -> None:
    async with Hub() as hub:
        c, ws = await conns.pair()
        address = hub.address(ws)
        assert await hub.send_to(address, "just you")
        assert await c.recv(timeout=2) == "just you"
        assert not await hub.send_to(f"{hub.id}/nobody", "x")
        assert not await hub.send_to("otherhub/1", "x")
        with pytest.raises(ValueError):
            await hub.send_to("no-slash", "x")
        await c.close()
        await asyncio.wait_for(ws.wait_closed(), 2)
        await asyncio.sleep(0)
        assert not await hub.send_to(address, "gone")


async def test_lossless_members_are_closed_not_skipped(conns: Conns) -> None:
    async with Hub(limit=1) as hub:
        (_, raw), (_, pos) = await conns.pair(), await conns.pair()
        await hub.join("room", raw, envelope=RAW)
        await hub.join("room", pos, envelope=POSITIONS)
        for _ in range(200):  # nobody reads: backlogs grow past the 1-byte limit
            await hub.publish("room", "x" * 10_000)
        await asyncio.wait_for(pos.wait_closed(), 5)
        assert pos.close_code == 1008
        assert raw.state is not pos.state
