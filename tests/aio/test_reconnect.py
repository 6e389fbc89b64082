"""`async for ws in connect(uri)`: reconnection with jittered exponential backoff."""

from __future__ import annotations

import asyncio
import random
import socket

import pytest

import wsline
from wsline.aio.client import _retriable

HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@pytest.mark.asyncio
async def test_reconnects_after_the_server_goes_away_and_comes_back() -> None:
    port = _free_port()
    served: list[int] = []

    async def greet(ws: wsline.WebSocket) -> None:
        served.append(1)
        await ws.send(f"hello {len(served)}")
        await ws.close()  # every connection is closed by the server after one message

    async def bring_up_later() -> wsline.Server:
        await asyncio.sleep(0.3)  # the first attempts are refused
        return await wsline.serve(greet, HOST, port)

    starter = asyncio.create_task(bring_up_later())
    got: list[str] = []
    client = wsline.connect(f"ws://{HOST}:{port}/", backoff_initial=0.05, backoff_max=0.2, open_timeout=2)
    async with asyncio.timeout(10):
        async for ws in client:
            try:
                async for message in ws:
                    got.append(str(message))
            except wsline.ConnectionClosed:
                pass
            if len(got) == 3:
                break
    server = await starter
    await server.close()
    assert got == ["hello 1", "hello 2", "hello 3"]


@pytest.mark.asyncio
async def test_a_4xx_refusal_is_not_retried() -> None:
    async def never(ws: wsline.WebSocket) -> None:  # pragma: no cover - refused before
        await ws.close()

    async with wsline.serve(never, HOST, 0, origins=["https://ok.example"]) as server:
        with pytest.raises(wsline.InvalidStatus) as info:
            async with asyncio.timeout(5):
                async for _ws in wsline.connect(f"ws://{HOST}:{server.port}/", origin="https://evil.example"):
                    pytest.fail("connected although the origin is refused")
        assert info.value.status == 403


def test_backoff_is_jittered_exponential_and_capped() -> None:
    client = wsline.connect("ws://127.0.0.1:1/", backoff_initial=1.0, backoff_factor=2.0, backoff_max=5.0)
    random.seed(7)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 5.0), (10, 5.0)]:
        delays = [client.backoff_delay(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # jitter spreads over the whole range
        assert min(delays) < ceiling * 0.2


def test_which_errors_are_retried() -> None:
    assert _retriable(ConnectionRefusedError())
    assert _retriable(TimeoutError())
    assert _retriable(wsline.InvalidStatus(503, "Service Unavailable", [], b""))
    assert _retriable(wsline.InvalidStatus(429, "Too Many Requests", [], b""))
    assert not _retriable(wsline.InvalidStatus(403, "Forbidden", [], b""))
    assert not _retriable(wsline.InvalidURI("bad"))
    assert not _retriable(wsline.NegotiationError("bad"))
    assert not _retriable(ValueError("a bug"))
