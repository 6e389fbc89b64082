"""wsline runs on uvloop too (its transports are not asyncio's classes)."""

from __future__ import annotations

import pytest
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


def test_loop_run_picks_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """``wsline.aio.loop.run``: uvloop when importable, asyncio on request, errors for unknown names."""
    import asyncio

    from wsline.aio import loop

    async def which() -> str:
        async def echo(ws: wsline.WebSocket) -> None:
            async for message in ws:
                await ws.send(message)

        async with wsline.serve(echo, "127.0.0.1", 0) as server:
            async with wsline.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                await ws.send("hi")
                assert await ws.recv() == "hi"
        return type(asyncio.get_running_loop()).__module__

    monkeypatch.delenv("WSLINE_LOOP", raising=False)
    assert loop.loop_name() == "uvloop"
    assert loop.run(which()).startswith("uvloop")
    monkeypatch.setenv("WSLINE_LOOP", "asyncio")
    assert loop.loop_name() == "asyncio"
    assert loop.run(which()).startswith("asyncio")
    assert loop.run(which(), loop="uvloop").startswith("uvloop")
    with pytest.raises(ValueError, match="unknown event loop"):
        loop.loop_name("trio")
