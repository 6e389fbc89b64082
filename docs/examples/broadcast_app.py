"""A wall: every message a client sends goes to every connected client.

The application is an object. Its page and its WebSocket route are methods, and
the handler reaches the server's connections through ``self.server``, set as
soon as ``serve()`` has started it. No module globals.

    python broadcast_app.py [PORT]      # then open http://127.0.0.1:PORT/ in two tabs
"""

from __future__ import annotations

import asyncio
import sys

import wsline
from wsline.http import Router, html_response

PAGE = """<!doctype html>
<meta charset="utf-8"><title>wall</title>
<input id="text" autofocus placeholder="say something, press Enter">
<ul id="log"></ul>
<script>
const ws = new WebSocket(`ws://${location.host}/ws`);
const log = (text) => document.getElementById("log").append(Object.assign(
  document.createElement("li"), {textContent: text}));
ws.onmessage = (event) => log(event.data);
ws.onclose = (event) => log(`closed: ${event.code}`);
document.getElementById("text").onkeydown = (event) => {
  if (event.key === "Enter") { ws.send(event.target.value); event.target.value = ""; }
};
</script>
"""


class Wall:
    def __init__(self) -> None:
        self.server: wsline.Server | None = None  # set once serve() has started
        self.router = Router()
        self.router.get("/")(self.page)
        self.router.websocket("/ws")(self.connection)

    def page(self, request: wsline.Request) -> wsline.Response:
        return html_response(PAGE)

    async def connection(self, ws: wsline.WebSocket) -> None:
        assert self.server is not None
        async for message in ws:
            # Framed once for everyone; never waits for a slow client.
            result = wsline.broadcast(self.server.connections, message)
            if result.dropped:
                ws.logger.info("%d clients were too slow for this message", result.dropped)


async def main(port: int) -> None:
    wall = Wall()
    async with wsline.serve(wall.router, "127.0.0.1", port) as server:
        wall.server = server  # before any connection can be handled: nothing awaited since serve()
        print(f"listening on http://127.0.0.1:{server.port}/ (WebSocket at /ws)", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8000))
