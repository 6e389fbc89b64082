"""The blocking client: no asyncio, for scripts and the REPL.

    python sync_client.py [URI]
"""

import sys

from wsline.sync import connect

uri = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8000/"

with connect(uri) as ws:  # leaving the block closes with 1000
    for text in ("one", "two", "three"):
        ws.send(text)
        print("received:", ws.recv(timeout=5))
    ws.send(b"\x00\x01")  # bytes go as a binary message
    print("received:", ws.recv(timeout=5))
    print(f"round trip: {ws.ping(timeout=5) * 1000:.1f} ms")
