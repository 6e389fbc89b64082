"""Testing a wsline application with wsline.testing: no sockets, and a network that fails on demand.

Run it with pytest (pytest-asyncio runs the coroutines)::

    python -m pytest examples/test_app_example.py

or as a program: ``python examples/test_app_example.py``.

The application is a small chat: ``GET /health``, and a WebSocket at
``/chat/{room}`` whose first message is the member's name; everything the
member sends after it goes to everyone in the room, and the room hears who
joins and who leaves. The tests drive it through wsline's real server and
client code, in process; the last two break the network under one member.
"""

from __future__ import annotations

import json
import sys

import pytest

import wsline
from wsline.http import Router, text_response
from wsline.testing import TestClient, pair_of

pytestmark = pytest.mark.asyncio


# ------------------------------------------------------------------ the application


def make_app() -> Router:
    router = Router()
    rooms: dict[str, set[wsline.WebSocket]] = {}

    @router.get("/health")
    def health(request: wsline.Request) -> wsline.Response:
        return text_response("ok")

    @router.websocket("/chat/{room}")
    async def chat(ws: wsline.WebSocket, room: str) -> None:
        name = await ws.recv(timeout=10)
        if not isinstance(name, str) or not name.strip():
            await ws.close(1008, "send your name first")
            return
        members = rooms.setdefault(room, set())
        members.add(ws)
        wsline.broadcast(members, json.dumps({"type": "joined", "name": name}))
        try:
            async for text in ws:
                wsline.broadcast(members, json.dumps({"type": "message", "name": name, "text": text}))
        finally:
            members.discard(ws)
            wsline.broadcast(members, json.dumps({"type": "left", "name": name}))

    return router


# ------------------------------------------------------------------ the tests

#: The server's options, as the application would run with them, but with a
#: short keepalive so that a vanished client is found out in well under a second.
SERVER = {"ping_interval": 0.2, "ping_timeout": 0.2, "close_timeout": 0.5}
#: The test clients' options: no pings of their own.
CLIENT = {"ping_interval": None, "close_timeout": 0.5}


async def join(client: TestClient, room: str, name: str) -> wsline.WebSocket:
    """A member in ``room``: its WebSocket, once the room announced it."""
    ws = await client.websocket(f"/chat/{room}", **CLIENT)
    await ws.send(name)
    assert json.loads(await ws.recv(timeout=2)) == {"type": "joined", "name": name}
    return ws


async def test_health() -> None:
    async with TestClient(make_app()) as client:
        response = await client.get("/health")
        assert (response.status, response.body) == (200, b"ok")


async def test_messages_reach_everyone_in_the_room_and_no_one_else() -> None:
    async with TestClient(make_app(), **SERVER) as client:
        ada = await join(client, "lobby", "ada")
        bob = await join(client, "lobby", "bob")
        eve = await join(client, "elsewhere", "eve")
        assert json.loads(await ada.recv(timeout=2)) == {"type": "joined", "name": "bob"}
        await bob.send("hi all")
        for ws in (ada, bob):
            message = json.loads(await ws.recv(timeout=2))
            assert message == {"type": "message", "name": "bob", "text": "hi all"}
        with pytest.raises(TimeoutError):
            await eve.recv(timeout=0.1)  # another room heard nothing


async def test_a_member_must_say_its_name_first() -> None:
    async with TestClient(make_app(), **SERVER) as client:
        async with client.websocket("/chat/lobby", **CLIENT) as ws:
            await ws.send(b"\x00")
            with pytest.raises(wsline.ConnectionClosedError) as info:
                await ws.recv(timeout=2)
        assert (info.value.code, info.value.reason) == (1008, "send your name first")
        with pytest.raises(wsline.InvalidStatus) as refused:
            await client.websocket("/nowhere")
        assert refused.value.status == 404


async def test_a_member_whose_network_vanishes_is_dropped_and_the_room_is_told() -> None:
    async with TestClient(make_app(), **SERVER) as client:
        ada = await join(client, "lobby", "ada")
        bob = await join(client, "lobby", "bob")
        assert json.loads(await ada.recv(timeout=2)) == {"type": "joined", "name": "bob"}
        pair_of(bob).half_open("client")  # bob's Wi-Fi is gone: no FIN, no reset, nothing
        # Only the server's keepalive can tell: no pong within ping_timeout, bob is dropped.
        assert json.loads(await ada.recv(timeout=2)) == {"type": "left", "name": "bob"}
        bob.abort()


async def test_a_connection_reset_in_the_middle_of_a_message() -> None:
    async with TestClient(make_app(), **SERVER) as client:
        ada = await join(client, "lobby", "ada")
        bob = await join(client, "lobby", "bob")
        assert json.loads(await ada.recv(timeout=2)) == {"type": "joined", "name": "bob"}
        pair_of(bob).client_to_server.reset_after(bytes=8)  # bob's frame is cut after 8 bytes
        await bob.send("this message never arrives whole")
        with pytest.raises(wsline.ConnectionClosedError) as info:
            await bob.recv(timeout=2)
        assert info.value.code == 1006  # bob's side saw the reset
        # The room never got half a message: it hears that bob left, and that is all.
        assert json.loads(await ada.recv(timeout=2)) == {"type": "left", "name": "bob"}


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider"]))
