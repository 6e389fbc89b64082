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
