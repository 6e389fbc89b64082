"""An echo server: every message comes back as it was sent (text as text, binary as binary).

    python examples/echo_server.py --port 8000

Then, in another terminal: ``python examples/repl_client.py ws://127.0.0.1:8000/``.
``--port 0`` picks a free port; the first line printed says which.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import wsline


async def echo(ws: wsline.WebSocket) -> None:
    print(f"{ws.remote_address} connected to {ws.request.path}", flush=True)
    async for message in ws:  # ends quietly when the client closes normally
        await ws.send(message)
    print(f"{ws.remote_address} closed with {ws.close_code}", flush=True)


async def main(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async with wsline.serve(echo, host, port) as server:
        print(f"echo server on ws://{host}:{server.port}/ (Ctrl-C stops it)", flush=True)
        await stop.wait()
    print("stopped", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port))
