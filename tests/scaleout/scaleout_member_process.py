"""A process with members in a room, for the SIGKILL test.

``python scaleout_member_process.py URL ROOM N HEARTBEAT TTL PREFIX``

It serves on a free port, connects N clients to itself, joins their server
sides to ROOM over a RedisHub (heartbeat H, presence_ttl TTL), prints
``ready`` and the members' addresses, and waits to be killed.
"""

from __future__ import annotations

import asyncio
import sys

import wsline
from wsline.hub_redis import RedisHub


async def main(url: str, room: str, n: int, heartbeat: float, ttl: float, prefix: str) -> None:
    accepted: list[wsline.WebSocket] = []

    async def handler(ws: wsline.WebSocket) -> None:
        accepted.append(ws)
        await ws.wait_closed()

    async with (
        RedisHub(url, heartbeat=heartbeat, presence_ttl=ttl, prefix=prefix) as hub,
        wsline.serve(handler, "127.0.0.1", 0, ping_interval=None) as server,
    ):
        clients = [
            await wsline.connect(f"ws://127.0.0.1:{server.port}/", ping_interval=None) for _ in range(n)
        ]
        while len(accepted) < n:
            await asyncio.sleep(0.01)
        addresses = []
        for i, ws in enumerate(accepted):
            joined = await hub.join(room, ws, user=f"user-{i}", data={"process": "doomed"})
            assert joined is not None
            addresses.append(joined.address)
        print("ready", *addresses, flush=True)
        await asyncio.Event().wait()  # until SIGKILL
        del clients


if __name__ == "__main__":
    url, room, n, heartbeat, ttl, prefix = sys.argv[1:7]
    asyncio.run(main(url, room, int(n), float(heartbeat), float(ttl), prefix))
