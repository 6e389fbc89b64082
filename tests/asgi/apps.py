"""ASGI applications the ASGI server tests run: Starlette and FastAPI, as people write them.

``python -m wsline asgi tests.asgi.apps:app`` serves :data:`app` (the tests run
the CLI from the repository root). The lifespan prints ``lifespan startup`` and
``lifespan shutdown`` on stdout, so that a test of the CLI sees both.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi import WebSocket as FastAPIWebSocket
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

HERE = os.path.dirname(os.path.abspath(__file__))

#: What background tasks did (read back by GET /background-done).
EVENTS: list[str] = []


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
    print("lifespan startup", flush=True)
    yield {"greeting": "hello from the lifespan", "counter": [0]}
    print("lifespan shutdown", flush=True)


async def index(request: Request) -> Response:
    return PlainTextResponse("hello, world")


async def stream(request: Request) -> Response:
    count = int(request.query_params.get("n", "5"))
    delay = float(request.query_params.get("delay", "0"))

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(count):
            if delay:
                await asyncio.sleep(delay)
            yield f"piece {i}\n".encode()

    return StreamingResponse(pieces(), media_type="text/plain")


async def file(request: Request) -> Response:
    return FileResponse(os.path.join(HERE, "apps.py"), media_type="text/x-python")


async def echo(request: Request) -> Response:
    body = await request.body()
    return Response(body, media_type=request.headers.get("content-type", "application/octet-stream"))


async def upload(request: Request) -> Response:
    """Reads the body as it streams in: how many pieces, how many bytes."""
    pieces = size = 0
    async for chunk in request.stream():
        if chunk:
            pieces += 1
            size += len(chunk)
    return JSONResponse({"pieces": pieces, "size": size})


async def form(request: Request) -> Response:
    async with request.form() as data:
        fields: dict[str, Any] = {}
        for key, value in data.multi_items():
            if isinstance(value, str):
                fields[key] = value
            else:
                content = await value.read()
                fields[key] = {"filename": value.filename, "size": len(content)}
    return JSONResponse(fields)


async def background(request: Request) -> Response:
    async def task(name: str) -> None:
        await asyncio.sleep(0.05)
        EVENTS.append(name)

    return PlainTextResponse(
        "accepted", background=BackgroundTask(task, request.query_params.get("name", "x"))
    )


async def background_done(request: Request) -> Response:
    return JSONResponse(EVENTS)


async def state(request: Request) -> Response:
    request.state.counter[0] += 1
    return JSONResponse({"greeting": request.state.greeting, "counter": request.state.counter[0]})


async def error(request: Request) -> Response:
    raise RuntimeError("this route always fails")


async def teapot(request: Request) -> Response:
    raise StarletteHTTPException(status_code=418, detail="I'm a teapot")


async def slow(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params.get("t", "0.5")))
    return PlainTextResponse("finally")


async def scope_info(request: Request) -> Response:
    scope = request.scope
    return JSONResponse(
        {
            "path": scope["path"],
            "root_path": scope["root_path"],
            "raw_path": scope["raw_path"].decode("latin-1"),
            "query_string": scope["query_string"].decode("latin-1"),
            "http_version": scope["http_version"],
            "scheme": scope["scheme"],
            "method": scope["method"],
            "client": list(scope["client"]) if scope["client"] else None,
            "server": list(scope["server"]) if scope["server"] else None,
            "spec_version": scope["asgi"].get("spec_version"),
        }
    )


async def pid(request: Request) -> Response:
    return PlainTextResponse(str(os.getpid()))


async def ws_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            else:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        pass


class TagMiddleware(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers["x-middleware"] = "seen"
        return response


routes = [
    Route("/", index),
    Route("/stream", stream),
    Route("/file", file),
    Route("/echo", echo, methods=["POST", "PUT"]),
    Route("/upload", upload, methods=["POST"]),
    Route("/form", form, methods=["POST"]),
    Route("/background", background),
    Route("/background-done", background_done),
    Route("/state", state),
    Route("/error", error),
    Route("/teapot", teapot),
    Route("/slow", slow),
    Route("/scope", scope_info),
    Route("/pid", pid),
    WebSocketRoute("/ws", ws_echo),
]

#: The Starlette application (``tests.asgi.apps:app``).
app = Starlette(routes=routes, middleware=[Middleware(TagMiddleware)], lifespan=lifespan)


def make_app() -> Starlette:
    """For ``--factory``: a fresh application."""
    return Starlette(routes=routes, lifespan=lifespan)


# ------------------------------------------------------------------ FastAPI


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


api = FastAPI()
ITEMS: dict[int, Item] = {}


@api.get("/hello")
async def api_hello() -> dict[str, str]:
    return {"message": "hello from FastAPI"}


@api.post("/items/{item_id}", status_code=201)
async def api_create(item_id: int, item: Item) -> dict[str, Any]:
    ITEMS[item_id] = item
    return {"id": item_id, **item.model_dump()}


@api.get("/items/{item_id}")
async def api_read(item_id: int) -> Item:
    if item_id not in ITEMS:
        raise HTTPException(status_code=404, detail=f"no item {item_id}")
    return ITEMS[item_id]


@api.get("/where")
async def api_where(request: Request) -> dict[str, str]:
    return {"path": request.url.path, "root_path": request.scope["root_path"]}


@api.websocket("/ws")
async def api_ws(websocket: FastAPIWebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(f"api: {text}")
    except WebSocketDisconnect:
        pass


#: A FastAPI hello world (the benchmark's application).
hello = FastAPI()


@hello.get("/")
async def hello_root() -> dict[str, str]:
    return {"message": "Hello World"}
