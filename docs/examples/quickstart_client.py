"""A client for the echo server: sends one message and prints the answer.

    python quickstart_client.py [URI]
"""

import asyncio
import sys

import wsline


async def main(uri: str) -> None:
    async with wsline.connect(uri) as ws:  # leaving the block closes with 1000
        await ws.send("hello")
        print("received:", await ws.recv(timeout=5))
        rtt = await ws.ping()  # resolves when the pong comes back
        print(f"round trip: {rtt * 1000:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8000/"))
