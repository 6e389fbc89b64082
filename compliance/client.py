"""Client driver for Autobahn's fuzzingserver: ``python -m compliance.client [URL]``.

Asks the server how many cases there are, runs each one (echoing every message
until the server closes), then asks it to write the reports.
"""

from __future__ import annotations

import asyncio
import os
import sys

import wsline

AGENT = os.environ.get("AUTOBAHN_AGENT", "wsline")


async def run_case(base: str, case: int, compression: bool) -> None:
    try:
        async with wsline.connect(
            f"{base}/runCase?case={case}&agent={AGENT}",
            max_size=None,
            max_queue=None,
            ping_interval=None,
            compression="deflate" if compression else None,
            open_timeout=30,
        ) as ws:
            async for message in ws:
                await ws.send(message)
    except wsline.WebSocketError:
        pass  # many cases end by failing the connection on purpose


async def main() -> int:
    base = os.environ.get("AUTOBAHN_FUZZINGSERVER_URL") or (sys.argv[1] if len(sys.argv) > 1 else "")
    if not base:
        print("usage: python -m compliance.client ws://127.0.0.1:9002", file=sys.stderr)
        return 2
    compression = os.environ.get("WSLINE_COMPLIANCE_NO_COMPRESSION", "") == ""
    async with wsline.connect(f"{base}/getCaseCount", compression=None) as ws:
        count = int(await ws.recv())
    print(f"running {count} cases", flush=True)
    for case in range(1, count + 1):
        await run_case(base, case, compression)
    async with wsline.connect(f"{base}/updateReports?agent={AGENT}", compression=None) as ws:
        try:
            await ws.recv()
        except wsline.ConnectionClosed:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
