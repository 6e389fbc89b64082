"""An echo server: every message comes back to its sender. Ctrl-C stops it.

    python quickstart_server.py [PORT]
"""

import asyncio
import sys

import wsline


async def echo(ws: wsline.WebSocket) -> None:
    print("connection from", ws.remote_address, "to", ws.request.path)
    async for message in ws:  # str for a text message, bytes for a binary one
        await ws.send(message)


async def main(port: int) -> None:
    async with wsline.serve(echo, "127.0.0.1", port) as server:
        print(f"listening on ws://127.0.0.1:{server.port}/", flush=True)
        # Until Ctrl-C (SIGINT) or SIGTERM: then every client gets a close
        # frame with 1001 (going away), the handlers end, and this returns.
        await server.serve_forever()
    print("stopped")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8000))
