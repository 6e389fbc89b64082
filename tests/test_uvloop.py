"""wsline runs on uvloop too (its transports are not asyncio's classes)."""

from __future__ import annotations

import uvloop

import wsline


async def _echo(ws: wsline.WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


def test_echo_on_uvloop() -> None:
    async def main() -> list[object]:
        async with wsline.serve(_echo, "127.0.0.1", 0) as server:
            async with wsline.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                await ws.send("text")
                await ws.send(b"\x00" * 100_000)
                got = [await ws.recv(), len(await ws.recv())]
                got.append(await ws.ping() >= 0)
                return got

    assert uvloop.run(main()) == ["text", 100_000, True]
