"""What wsline raises, shown by making each failure happen on this machine.

    python errors_demo.py
"""

from __future__ import annotations

import asyncio
import socket

import wsline
from wsline.http import text_response


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # accepts TCP, never answers the handshake, until the client gives up
    writer.close()


async def fails(ws: wsline.WebSocket) -> None:
    raise RuntimeError("a bug in the handler")


async def polite(ws: wsline.WebSocket) -> None:
    await ws.close(1008, "not allowed")


async def reader(ws: wsline.WebSocket) -> None:
    async for _message in ws:
        pass


async def main() -> None:
    # A failing handler is also logged (with its traceback) on the "wsline"
    # logger; only critical records are shown here, to keep the output short.
    wsline.log.configure("CRITICAL")

    try:
        wsline.connect("http://127.0.0.1/")
    except wsline.InvalidURI as exc:  # raised at once, before any connection
        print("InvalidURI:", exc)

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    try:
        await wsline.connect(f"ws://127.0.0.1:{free}/")
    except wsline.ConnectRefused as exc:
        print("ConnectRefused:", exc, "| OSError:", isinstance(exc, OSError))

    tcp = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    try:
        await wsline.connect(f"ws://127.0.0.1:{port}/", open_timeout=0.5)
    except wsline.OpenTimeout as exc:
        print("OpenTimeout:", exc, "| TimeoutError:", isinstance(exc, TimeoutError))
    tcp.close()

    refuse = lambda request: text_response("not today\n", 403)  # noqa: E731
    async with wsline.serve(polite, "127.0.0.1", 0, process_request=refuse) as server:
        try:
            await wsline.connect(f"ws://127.0.0.1:{server.port}/")
        except wsline.InvalidStatus as exc:
            print("InvalidStatus:", exc.status, exc.body)

    async with wsline.serve(polite, "127.0.0.1", 0) as server:
        async with wsline.connect(f"ws://127.0.0.1:{server.port}/") as ws:
            try:
                await ws.recv()
            except wsline.ConnectionClosedError as exc:  # 1008 is not a normal closure
                print("ConnectionClosedError:", exc.code, exc.reason, exc.initiator)

    async with wsline.serve(fails, "127.0.0.1", 0) as server:
        async with wsline.connect(f"ws://127.0.0.1:{server.port}/") as ws:
            message, ok = await ws.recv_guarded()  # never raises
            print("recv_guarded:", (message, ok), "close code", ws.close_code)
        error, info = await server.errors.get()  # the handler's exception, with its connection
        print("server.errors:", repr(error), "from", info.path)

    async with wsline.serve(reader, "127.0.0.1", 0) as server:
        async with wsline.connect(f"ws://127.0.0.1:{server.port}/") as ws:
            first = asyncio.create_task(ws.recv())  # one task waits for a message...
            await asyncio.sleep(0)
            try:
                await ws.recv()  # ...and another one asks too
            except wsline.ConcurrencyError as exc:
                print("ConcurrencyError:", exc, "| RuntimeError:", isinstance(exc, RuntimeError))
            first.cancel()

    async with wsline.serve(reader, "127.0.0.1", 0) as server:
        async with wsline.connect(f"ws://127.0.0.1:{server.port}/") as ws:
            await ws.close()
            try:
                await ws.send("too late")
            except wsline.ConnectionClosedOK as exc:  # closed with 1000 by this side
                print("ConnectionClosedOK:", exc)

    try:
        wsline.connect("ws://127.0.0.1:8000/", max_size=-1)  # checked at once too
    except ValueError as exc:
        print("ValueError:", exc)


if __name__ == "__main__":
    asyncio.run(main())
