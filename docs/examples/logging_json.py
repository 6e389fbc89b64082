"""wsline's log records as JSON lines: one connection, from open to close.

    python logging_json.py 2> log.jsonl
"""

from __future__ import annotations

import asyncio

import wsline


async def echo(ws: wsline.WebSocket) -> None:
    # ws.logger: the "wsline" logger, with this connection's conn_id and remote.
    ws.logger.info("joined %s", ws.request.path, extra={"room": ws.request.path})
    async for message in ws:
        await ws.send(message)


async def main() -> None:
    wsline.log.configure("INFO", json=True)  # one JSON object per line, on stderr
    async with wsline.serve(echo, "127.0.0.1", 0) as server:
        async with wsline.connect(f"ws://127.0.0.1:{server.port}/room") as ws:
            await ws.send("hello")
            await ws.recv(timeout=5)


if __name__ == "__main__":
    asyncio.run(main())
