"""Servers under test for benchmarks/run.py: one library, one event loop, one process.

    python benchmarks/suite_servers.py LIBRARY LOOP [--port 0]

LIBRARY is wsline, websockets, aiohttp or picows; LOOP is asyncio or uvloop.
Prints ``PORT n`` once listening and serves until SIGTERM/SIGINT (or stdin EOF).
Every server offers the same three endpoints on one port:

- any path: echo each message back (text as text, binary as binary);
- ``/sub``: a fan-out subscriber: registered, then echoes like any path (the
  load generator sends one message and waits for its echo, which tells it the
  server has registered the connection);
- ``/pub``: each message from this connection is relayed to every subscriber.

Settings for fairness: no compression, no keepalive pings, no message size
limit (or a large one), access logs off. Each handler uses its library's usual
API: the coroutine API of wsline, websockets and aiohttp, picows' listener
callbacks. How the relay sends (the difference matters):

- wsline: ``await ws.send(message)`` in a loop over a snapshot of the
  subscribers. wsline has no synchronous send and no ``broadcast()`` yet;
  ``send`` only suspends when a subscriber's write buffer is above its limit.
- websockets: ``websockets.asyncio.server.broadcast(subscribers, message)``,
  its documented way to send one message to many without awaiting each.
- aiohttp: ``await ws.send_bytes(...)``/``send_str`` in a loop over a snapshot
  (aiohttp's send methods are coroutines).
- picows: ``transport.send(...)`` (synchronous) in a loop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any

HOST = "127.0.0.1"
BACKLOG = 4096


def raise_fd_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def wait_for_stop() -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    await stop


def announce(port: int) -> None:
    print(f"PORT {port}", flush=True)


# ------------------------------------------------------------------ wsline


async def serve_wsline(handler: Any, port: int) -> None:
    """wsline's server with the suite's settings, until told to stop."""
    import wsline

    async with wsline.serve(
        handler,
        HOST,
        port,
        compression=None,
        ping_interval=None,
        ping_timeout=None,
        max_size=None,
        backlog=BACKLOG,
    ) as server:
        announce(server.port)
        await wait_for_stop()


async def run_wsline(port: int) -> None:
    import wsline

    subs: set[Any] = set()

    async def handler(ws: wsline.WebSocket) -> None:
        path = ws.request.path
        try:
            if path == "/pub":
                async for message in ws:
                    wsline.broadcast(subs, message)  # framed once for all
                return
            if path == "/sub":
                subs.add(ws)
            async for message in ws:
                await ws.send(message)
        except wsline.ConnectionClosed:
            pass
        finally:
            subs.discard(ws)

    await serve_wsline(handler, port)


async def run_wsline_callbacks(port: int) -> None:
    """wsline's callback API (wsline.Listener): no task and no await per message."""
    import wsline

    subs: set[wsline.WebSocket] = set()

    class Echo(wsline.Listener):
        def on_open(self) -> None:
            path = self.ws.request.path
            if path == "/sub":
                subs.add(self.ws)
            self.publisher = path == "/pub"

        def on_message(self, message: wsline.Data) -> None:
            if self.publisher:
                for sub in tuple(subs):
                    try:
                        sub.send_nowait(message)
                    except wsline.ConnectionClosed:
                        pass
            else:
                self.ws.send_nowait(message)

        def on_close(self, exc: wsline.ConnectionClosed) -> None:
            subs.discard(self.ws)

    await serve_wsline(Echo, port)


# -------------------------------------------------------------- websockets


async def run_websockets(port: int) -> None:
    from websockets.asyncio.server import broadcast, serve
    from websockets.exceptions import ConnectionClosed

    subs: set[Any] = set()

    async def handler(ws: Any) -> None:
        path = ws.request.path
        try:
            if path == "/pub":
                async for message in ws:
                    broadcast(subs, message)
                return
            if path == "/sub":
                subs.add(ws)
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            pass
        finally:
            subs.discard(ws)

    async with serve(
        handler,
        HOST,
        port,
        compression=None,
        ping_interval=None,
        ping_timeout=None,
        max_size=None,
        backlog=BACKLOG,
    ) as server:
        announce(server.sockets[0].getsockname()[1])
        await wait_for_stop()


# ----------------------------------------------------------------- aiohttp


async def run_aiohttp(port: int) -> None:
    from aiohttp import WSMsgType, web

    subs: set[Any] = set()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, heartbeat=None, autoping=True, max_msg_size=0)
        await ws.prepare(request)
        path = request.path
        try:
            if path == "/pub":
                async for msg in ws:
                    if msg.type is WSMsgType.BINARY:
                        for sub in tuple(subs):
                            try:
                                await sub.send_bytes(msg.data)
                            except ConnectionError:
                                pass
                    elif msg.type is WSMsgType.TEXT:
                        for sub in tuple(subs):
                            try:
                                await sub.send_str(msg.data)
                            except ConnectionError:
                                pass
                return ws
            if path == "/sub":
                subs.add(ws)
            async for msg in ws:
                if msg.type is WSMsgType.BINARY:
                    await ws.send_bytes(msg.data)
                elif msg.type is WSMsgType.TEXT:
                    await ws.send_str(msg.data)
        except ConnectionError:
            pass
        finally:
            subs.discard(ws)
        return ws

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port, backlog=BACKLOG)
    await site.start()
    server = site._server
    assert server is not None
    announce(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    try:
        await wait_for_stop()
    finally:
        await runner.cleanup()


# ------------------------------------------------------------------ picows


async def run_picows(port: int) -> None:
    from picows import WSListener, WSMsgType, ws_create_server

    subs: set[Any] = set()
    CLOSE = WSMsgType.CLOSE
    CONTINUATION = WSMsgType.CONTINUATION

    class Echo(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            mt = frame.msg_type
            if mt is CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            elif mt.value <= 2 or mt is CONTINUATION:  # TEXT, BINARY, CONTINUATION
                transport.send(mt, frame.get_payload_as_memoryview(), frame.fin)

    class Sub(Echo):
        def on_ws_connected(self, transport: Any) -> None:
            subs.add(transport)

        def on_ws_disconnected(self, transport: Any) -> None:
            subs.discard(transport)

    class Pub(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            mt = frame.msg_type
            if mt is CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
                return
            if mt.value > 2 and mt is not CONTINUATION:
                return
            payload = frame.get_payload_as_memoryview()
            fin = frame.fin
            for sub in subs:
                sub.send(mt, payload, fin)

    def factory(request: Any) -> Any:
        path = request.path  # bytes in picows
        if path == b"/pub":
            return Pub()
        if path == b"/sub":
            return Sub()
        return Echo()

    server = await ws_create_server(
        factory,
        HOST,
        port,
        enable_auto_ping=False,
        max_frame_size=64 * 1024 * 1024,
        backlog=BACKLOG,
    )
    async with server:
        announce(server.sockets[0].getsockname()[1])
        await wait_for_stop()


RUNNERS = {
    "wsline": run_wsline,
    "websockets": run_websockets,
    "aiohttp": run_aiohttp,
    "picows": run_picows,
    "wsline-callbacks": run_wsline_callbacks,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("library", choices=sorted(RUNNERS))
    parser.add_argument("loop", choices=["asyncio", "uvloop"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    raise_fd_limit()
    if args.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        asyncio.run(RUNNERS[args.library](args.port))
    except KeyboardInterrupt:
        pass
    sys.stdout.flush()


if __name__ == "__main__":
    main()
