"""The callback API: an echo server whose messages are handled without a task or an await.

    python listener_server.py [PORT]
"""

import asyncio
import sys

import wsline


class Echo(wsline.Listener):
    """One instance per connection; the callbacks run in the event loop's read callback."""

    def on_open(self) -> None:
        self.count = 0

    def on_message(self, message: wsline.Data) -> None:
        self.count += 1
        self.ws.send_nowait(message)  # queues the frame; never waits

    def on_close(self, exc: wsline.ConnectionClosed) -> None:
        print(f"closed with {exc.code} after {self.count} messages", flush=True)


async def main(port: int) -> None:
    async with wsline.serve(Echo, "127.0.0.1", port) as server:
        print(f"listening on ws://127.0.0.1:{server.port}/", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8000))
