"""A client that reconnects by itself: ``async for ws in wsline.connect(uri)``.

The client starts before the server exists (its attempts are refused and
retried), the server drops the first connection with 1012 (service restart),
and the client connects again. Runs both and exits.

    python reconnect.py
"""

from __future__ import annotations

import asyncio
import itertools
import socket

import wsline


async def client(uri: str) -> None:
    async for ws in wsline.connect(uri, backoff_initial=0.2, backoff_max=1.0):
        try:
            async for message in ws:  # ends quietly on 1000 or 1001
                print("received:", message)
                if message == "that's all":
                    return
        except wsline.ConnectionClosedError as exc:
            print(f"dropped with {exc.code}; connecting again")


async def server(port: int) -> None:
    await asyncio.sleep(0.5)  # not up yet: the client's first attempts are refused
    count = itertools.count(1)

    async def handler(ws: wsline.WebSocket) -> None:
        n = next(count)
        await ws.send(f"hello, connection {n}")
        if n == 1:
            await ws.close(1012, "restarting")
        else:
            await ws.send("that's all")
            await ws.wait_closed()

    async with wsline.serve(handler, "127.0.0.1", port):
        await asyncio.sleep(3)


async def main() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server_task = asyncio.create_task(server(port))
    await asyncio.wait_for(client(f"ws://127.0.0.1:{port}/"), 10)
    server_task.cancel()


if __name__ == "__main__":
    asyncio.run(main())
