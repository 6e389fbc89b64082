"""Echo server for Autobahn's fuzzingclient: ``python -m compliance.server [PORT]``.

No size limit (case 9.x sends 16 MiB messages), no keepalive pings, and
compression on unless ``--no-compression``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import wsline
from wsline.apps.echo import echo_handler


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int, nargs="?", default=9001)
    parser.add_argument("--no-compression", action="store_true")
    args = parser.parse_args()
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.cancel)
    async with wsline.serve(
        echo_handler,
        "127.0.0.1",
        args.port,
        max_size=None,
        max_queue=None,
        ping_interval=None,
        compression=None if args.no_compression else "deflate",
        server_header="wsline",
    ):
        print(f"compliance echo server on ws://127.0.0.1:{args.port}", flush=True)
        try:
            await stop
        except asyncio.CancelledError:
            pass


if __name__ == "__main__":
    asyncio.run(main())
