"""Rooms: a message goes to the other clients connected to the same path.

The hub is passed to the handler with functools.partial. With ``--redis URL``
it is a RedisHub, and processes sharing that Redis server share the rooms.

    python broadcast_rooms.py [--port PORT] [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import functools

import wsline
from wsline.hub import Hub
from wsline.hub_redis import RedisHub


async def member(hub: Hub, ws: wsline.WebSocket) -> None:
    room = ws.request.path  # ws://host:port/lobby is the room "/lobby"
    await hub.join(room, ws)  # it leaves by itself when the connection closes
    async for message in ws:
        await hub.publish(room, message, exclude=ws)


async def main(port: int, redis_url: str | None) -> None:
    hub = RedisHub(redis_url) if redis_url else Hub()
    async with hub, wsline.serve(functools.partial(member, hub), "127.0.0.1", port) as server:
        print(f"listening on ws://127.0.0.1:{server.port}/", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--redis", metavar="URL", help="share the rooms over Redis")
    args = parser.parse_args()
    asyncio.run(main(args.port, args.redis))
