"""WebSockets of an ASGI application under uvicorn: wsline's ``--ws`` against uvicorn's own.

    .venv/bin/python benchmarks/asgi_ws.py                 # ~8 min: 3 rounds, every scenario
    .venv/bin/python benchmarks/asgi_ws.py --quick         # ~2 min
    .venv/bin/python benchmarks/asgi_ws.py --only pipe fanout --rounds 5
    .venv/bin/python benchmarks/asgi_ws.py --server \
        "wsline asgi=python -m wsline asgi asgi_ws:app --port {port}"   # one more server row
    .venv/bin/python benchmarks/asgi_ws.py --profile "pipe 1000 text"   # py-spy of wsline's row

The application is this module's ``app``: one Starlette application for every
server, with an echo endpoint on every path (text as text, bytes as bytes) and
a relay for the fan-out: ``/sub`` subscribes, and what ``/pub`` sends goes to
every subscriber. The relay uses the ``wsline`` ASGI extension where the server
offers it (``publish``: framed once, queued on every subscriber without awaiting
any), and otherwise what a Starlette application does (``await
sub.send_bytes(m)`` for each subscriber in turn, as in FastAPI's documentation).
It is also the Autobahn|Testsuite target of ``tests/compliance/test_autobahn.py``
(``uvicorn asgi_ws:app --app-dir benchmarks --ws wsline.asgi.uvicorn:WebSocketProtocol``).

The servers (``--server NAME=COMMAND`` adds more; ``{port}`` is replaced):
uvicorn with ``--ws wsline.asgi.uvicorn:WebSocketProtocol``, ``--ws
websockets-sansio`` and ``--ws wsproto``, each with ``--http httptools --loop
uvloop`` (what ``uvicorn[standard]`` runs by default), keepalive pings off,
compression off (the load generator offers none anyway), access log off.

The method is ``run.py``'s, with its C load generator (``loadgen/loadgen.c``,
built into ``.build/``): each server process pinned to CPU 0, the load
generator to CPU 1 (it reads the server's CPU time); every round runs every
scenario against every server, in shuffled order; the report gives medians
(with min-max) over the rounds and wsline's ratio to each peer of the same run.
Memory per idle connection: a client process opens ``--idle`` connections (each
exchanges one message, then idles), and the server's RSS growth is divided by
them.

Results: ``results/asgi_ws.md`` (``--results DIR`` elsewhere), raw runs in
``results/asgi_ws.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# ------------------------------------------------------------------ the application


def _make_app() -> Any:
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    subscribers: set[WebSocket] = set()

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            await websocket.send(
                {"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")}
            )

    async def sub(websocket: WebSocket) -> None:
        await websocket.accept()
        wsline_ext = websocket.scope.get("extensions", {}).get("wsline")
        if wsline_ext is not None:
            await wsline_ext["join"]("fanout")
        else:
            subscribers.add(websocket)
        try:
            while True:  # each subscriber sends one message and waits for its echo
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                await websocket.send(
                    {"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")}
                )
        finally:
            subscribers.discard(websocket)

    async def pub(websocket: WebSocket) -> None:
        await websocket.accept()
        wsline_ext = websocket.scope.get("extensions", {}).get("wsline")
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            payload = data if data is not None else message.get("text", "")
            if wsline_ext is not None:
                await wsline_ext["publish"]("fanout", payload)
                continue
            for subscriber in list(subscribers):
                try:
                    if isinstance(payload, str):
                        await subscriber.send_text(payload)
                    else:
                        await subscriber.send_bytes(payload)
                except (WebSocketDisconnect, RuntimeError, OSError):
                    subscribers.discard(subscriber)

    return Starlette(
        routes=[
            WebSocketRoute("/sub", sub),
            WebSocketRoute("/pub", pub),
            WebSocketRoute("/{path:path}", echo),
        ]
    )


def __getattr__(name: str) -> Any:
    # ``app`` is built when uvicorn imports it: the harness itself needs no Starlette.
    if name == "app":
        app = _make_app()
        globals()["app"] = app
        return app
    raise AttributeError(name)
