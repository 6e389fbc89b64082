"""``router.mount("/api", app)``: a FastAPI (or any ASGI) application next to wsline's own routes.

Under ``wsline.serve(router)`` as it is today, mounted HTTP requests are served
whole (Router.handle_http); through the ``take_request`` hook (the ASGI
server's request loop, which aio/server.py's would become) they stream both
ways and WebSockets work.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import wsline
from wsline.asgi.lifespan import Lifespan
from wsline.asgi.server import ASGIServer, _ASGIProtocol
from wsline.http import text_response
from wsline.protocol.server import ServerOptions

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.asgi import apps  # noqa: E402

HOST = "127.0.0.1"


def make_router() -> wsline.Router:
    router = wsline.Router()

    @router.get("/")
    async def index(request: wsline.Request) -> wsline.Response:
        return text_response("wsline's own page")

    @router.get("/api-docs")  # shares the prefix's first letters, not its path
    async def docs(request: wsline.Request) -> wsline.Response:
        return text_response("not the API")

    @router.websocket("/ws")
    async def ws_echo(ws: wsline.WebSocket) -> None:
        async for message in ws:
            await ws.send(f"wsline: {message}")

    router.mount("/api", apps.api)
    router.mount("/star", apps.make_app())
    return router


@contextlib.asynccontextmanager
async def wsline_server() -> AsyncIterator[tuple[wsline.Server, httpx.AsyncClient]]:
    async with wsline.serve(make_router(), HOST, 0, ping_interval=None, close_timeout=1) as server:
        async with httpx.AsyncClient(base_url=f"http://{HOST}:{server.port}", timeout=5) as client:
            yield server, client


@contextlib.asynccontextmanager
async def hooked_server() -> AsyncIterator[tuple[ASGIServer, httpx.AsyncClient]]:
    """The router behind the take_request hook (wsline.asgi's request loop)."""
    router = make_router()
    opts = ServerOptions(ping_interval=None, close_timeout=1.0)
    server = ASGIServer(
        apps.api,
        opts,
        lifespan=Lifespan(apps.api, "off"),
        root_path="",
        keep_alive_timeout=5.0,
        shutdown_timeout=1.0,
        take_request=router.take_request,
    )
    loop = asyncio.get_running_loop()
    server._server = await loop.create_server(lambda: _ASGIProtocol(server), HOST, 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://{HOST}:{server.port}", timeout=5) as client:
            yield server, client
    finally:
        await server.close()


async def test_fastapi_under_api_next_to_wsline_routes() -> None:
    async with wsline_server() as (server, client):
        assert (await client.get("/")).text == "wsline's own page"
        assert (await client.get("/api-docs")).text == "not the API"
        assert (await client.get("/api/hello")).json() == {"message": "hello from FastAPI"}
        response = await client.post("/api/items/3", json={"name": "mug", "price": 4})
        assert response.status_code == 201 and response.json()["name"] == "mug"
        assert (await client.get("/api/items/3")).json() == {"name": "mug", "price": 4.0, "tags": []}
        response = await client.get("/api/items/404")
        assert response.status_code == 404 and response.json() == {"detail": "no item 404"}
        assert (await client.get("/api/where")).json() == {"path": "/api/where", "root_path": "/api"}
        assert (await client.get("/api/openapi.json")).status_code == 200
        assert (await client.head("/api/hello")).status_code == 405  # FastAPI adds no HEAD to a GET
        # wsline's WebSocket route still works; the mounted app's needs the hook.
        async with wsline.connect(f"ws://{HOST}:{server.port}/ws") as ws:
            await ws.send("hi")
            assert await ws.recv() == "wsline: hi"
        with pytest.raises(wsline.InvalidStatus) as info:
            async with wsline.connect(f"ws://{HOST}:{server.port}/api/ws"):
                pass
        assert info.value.status == 501


async def test_starlette_under_a_prefix_whole() -> None:
    async with wsline_server() as (server, client):
        assert (await client.get("/star/")).text == "hello, world"
        response = await client.head("/star/")  # Starlette answers HEAD with the GET's headers
        assert response.status_code == 200 and response.content == b""
        assert response.headers["content-length"] == "12"
        response = await client.get("/star/stream", params={"n": "3"})
        assert response.text == "piece 0\npiece 1\npiece 2\n"  # collected, sent whole
        assert response.headers["content-length"] == str(len(response.content))
        assert (await client.post("/star/echo", content=b"body")).content == b"body"
        assert (await client.get("/star/error")).status_code == 500
        error = server.errors.get_nowait()
        assert error is not None and "always fails" in str(error.error)
        data = (await client.get("/star/scope")).json()
        assert data["path"] == "/star/scope" and data["root_path"] == "/star"


async def test_mount_through_the_take_request_hook_streams_and_upgrades() -> None:
    async with hooked_server() as (server, client):
        assert (await client.get("/api/hello")).json() == {"message": "hello from FastAPI"}
        assert (await client.get("/api/where")).json() == {"path": "/api/where", "root_path": "/api"}
        async with client.stream("GET", "/star/stream", params={"n": "3", "delay": "0.02"}) as response:
            assert response.headers["transfer-encoding"] == "chunked"
            assert [p async for p in response.aiter_text()] != []

        async def pieces() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b"z" * 100
                await asyncio.sleep(0.02)

        assert (await client.post("/star/upload", content=pieces())).json()["size"] == 400
        async with wsline.connect(f"ws://{HOST}:{server.port}/api/ws") as ws:
            await ws.send("ping")
            assert await ws.recv() == "api: ping"
        async with wsline.connect(f"ws://{HOST}:{server.port}/star/ws") as ws:
            await ws.send(b"\x01")
            assert await ws.recv() == b"\x01"
        # Not under a mount: this loop has no fallback (aio/server.py's has the router's routes).
        assert (await client.get("/")).status_code == 404


def test_mount_checks_its_prefix() -> None:
    router = wsline.Router()
    for bad in ("api", "/", "", "/{x}"):
        with pytest.raises(ValueError):
            router.mount(bad, apps.api)
    router.mount("/a/", apps.api)  # a trailing slash is dropped
    request: Any = wsline.Request("GET", "/a/b", wsline.Headers([("Host", "x")]))
    assert router.take_request(request) is not None
    request = wsline.Request("GET", "/ab", wsline.Headers([("Host", "x")]))
    assert router.take_request(request) is None
