"""wsline.http: routes, response helpers and static files, on real loopback sockets.

HTTP requests go through raw asyncio streams (hand-written HTTP/1.1, parsed
here without wsline's own parser); the WebSocket routes use wsline.connect on
the same port.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import wsline
from wsline.http import (
    Router,
    file_response,
    guess_content_type,
    html_response,
    json_response,
    redirect,
    text_response,
)
from wsline.protocol.handshake import Headers, Request, Response

pytestmark = pytest.mark.asyncio

HOST = "127.0.0.1"
TIMEOUT = 3.0
FAST: dict[str, Any] = {"ping_interval": None, "close_timeout": 0.5, "open_timeout": 2.0}
CLIENT: dict[str, Any] = {"ping_interval": None, "close_timeout": 0.5, "open_timeout": 2.0}


# ------------------------------------------------------------------ raw HTTP client


@dataclass
class Reply:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def get(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


class Conn:
    """One raw TCP connection speaking HTTP/1.1 by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def request(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes | None = None,
    ) -> None:
        await self.send(build(method, target, headers, body))

    async def response(self, head_only: bool = False) -> Reply:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        lines = head[:-4].decode("latin-1").split("\r\n")
        version, status, *reason = lines[0].split(" ", 2)
        assert version == "HTTP/1.1", lines[0]
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name, value.strip()))
        reply = Reply(int(status), reason[0] if reason else "", headers, b"")
        if head_only or reply.status in (204, 304) or reply.status < 200:
            return reply
        length = reply.get("Content-Length")
        assert length is not None, f"no Content-Length in {headers}"
        reply.body = await asyncio.wait_for(self.reader.readexactly(int(length)), TIMEOUT)
        return reply

    async def exchange(self, method: str, target: str, **kwargs: Any) -> Reply:
        await self.request(method, target, **kwargs)
        return await self.response(head_only=method == "HEAD")

    async def at_eof(self) -> bool:
        """Whether the server closed the connection (and sent nothing more)."""
        try:
            data = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
        except ConnectionResetError:
            return True
        return data == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def build(
    method: str, target: str, headers: Iterable[tuple[str, str]] = (), body: bytes | None = None
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {HOST}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body is not None and not any(n.lower() in ("content-length", "transfer-encoding") for n, _ in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


@contextlib.asynccontextmanager
async def running(router: Any, **kwargs: Any) -> AsyncIterator[wsline.Server]:
    async with wsline.serve(router, HOST, 0, **{**FAST, **kwargs}) as server:
        yield server


@contextlib.asynccontextmanager
async def connection(server: wsline.Server) -> AsyncIterator[Conn]:
    reader, writer = await asyncio.open_connection(HOST, server.port)
    conn = Conn(reader, writer)
    try:
        yield conn
    finally:
        await conn.close()


async def fetch(server: wsline.Server, method: str, target: str, **kwargs: Any) -> Reply:
    async with connection(server) as conn:
        return await conn.exchange(method, target, **kwargs)


# ------------------------------------------------------------------ an app


def make_app() -> Router:
    router = Router()

    @router.get("/")
    async def index(request: Request) -> Response:
        return html_response("<h1>hi</h1>")

    @router.get("/sync")
    def sync_page(request: Request) -> Response:
        return text_response(f"sync {request.query.get('q', '')}")

    @router.route("/echo", methods=("POST", "PUT"))
    async def echo_body(request: Request) -> Response:
        ctype = request.headers.get("Content-Type") or "application/octet-stream"
        return Response(200, headers=Headers([("Content-Type", ctype)]), body=request.body)

    @router.get("/item")
    def get_item(request: Request) -> Response:
        return json_response({"op": "get"})

    @router.post("/item")
    def post_item(request: Request) -> Response:
        return json_response({"op": "post", "data": json.loads(request.body)}, status=201)

    @router.get("/users/{name}")
    async def user(request: Request, name: str) -> Response:
        return json_response({"name": name})

    @router.get("/files/{folder}/{name}.txt")
    def file_in(request: Request, folder: str, name: str) -> Response:
        return text_response(f"{folder}|{name}")

    @router.get("/boom")
    async def boom(request: Request) -> Response:
        raise RuntimeError("kaboom")

    @router.get("/not-a-response")
    def not_a_response(request: Request) -> Any:
        return "oops"

    @router.get("/redirect")
    def go(request: Request) -> Response:
        return redirect("/")

    @router.websocket("/ws")
    async def ws_echo(ws: wsline.WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    @router.websocket("/rooms/{room}")
    async def ws_room(ws: wsline.WebSocket, room: str) -> None:
        await ws.send(f"room {room}")

    return router


# ------------------------------------------------------------------ basic HTTP


async def test_get_page() -> None:
    async with running(make_app()) as server:
        reply = await fetch(server, "GET", "/")
    assert reply.status == 200
    assert reply.reason == "OK"
    assert reply.get("Content-Type") == "text/html; charset=utf-8"
    assert reply.body == b"<h1>hi</h1>"
    assert reply.get("Content-Length") == str(len(reply.body))


async def test_head_has_headers_but_no_body() -> None:
    async with running(make_app()) as server, connection(server) as conn:
        # HEAD and GET pipelined: the GET reply must follow the HEAD head directly.
        await conn.send(build("HEAD", "/") + build("GET", "/item"))
        head = await conn.response(head_only=True)
        assert head.status == 200
        assert head.get("Content-Type") == "text/html; charset=utf-8"
        assert head.get("Content-Length") == str(len(b"<h1>hi</h1>"))
        reply = await conn.response()
        assert reply.status == 200
        assert json.loads(reply.body) == {"op": "get"}


async def test_keep_alive_then_connection_close() -> None:
    async with running(make_app()) as server, connection(server) as conn:
        first = await conn.exchange("GET", "/")
        second = await conn.exchange("GET", "/sync?q=2")
        assert (first.status, second.status) == (200, 200)
        assert first.get("Connection") is None
        assert second.body == b"sync 2"
        third = await conn.exchange("GET", "/item", headers=[("Connection", "close")])
        assert third.status == 200
        assert third.get("Connection") == "close"
        assert await conn.at_eof()


async def test_post_content_length_body_echoed() -> None:
    payload = bytes(range(256)) * 40
    async with running(make_app()) as server, connection(server) as conn:
        reply = await conn.exchange(
            "POST", "/echo", headers=[("Content-Type", "application/x-test")], body=payload
        )
        assert reply.status == 200
        assert reply.get("Content-Type") == "application/x-test"
        assert reply.body == payload
        # The connection is still usable afterwards.
        reply = await conn.exchange("PUT", "/echo", body=b"again")
        assert reply.body == b"again"


async def test_post_chunked_body() -> None:
    chunked = b"5;ext=1\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\nX-Trailer: yes\r\n\r\n"
    async with running(make_app()) as server, connection(server) as conn:
        reply = await conn.exchange("POST", "/echo", headers=[("Transfer-Encoding", "chunked")], body=chunked)
        assert reply.status == 200
        assert reply.body == b"hello world!"
        assert (await conn.exchange("GET", "/")).status == 200


async def test_json_post_and_status() -> None:
    async with running(make_app()) as server:
        reply = await fetch(server, "POST", "/item", body=b'{"a": [1, 2]}')
    assert reply.status == 201
    assert reply.reason == "Created"
    assert reply.get("Content-Type") == "application/json"
    assert reply.body == b'{"op":"post","data":{"a":[1,2]}}'


@pytest.mark.parametrize("chunked", [False, True])
async def test_body_too_large_413(chunked: bool) -> None:
    body = b"x" * 1000
    async with running(make_app(), max_body_size=100) as server, connection(server) as conn:
        if chunked:
            await conn.request(
                "POST",
                "/echo",
                headers=[("Transfer-Encoding", "chunked")],
                body=b"3e8\r\n" + body + b"\r\n0\r\n\r\n",
            )
        else:
            await conn.request("POST", "/echo", body=body)
        reply = await conn.response()
        assert reply.status == 413
        assert reply.body
        assert reply.get("Connection") == "close"
        assert await conn.at_eof()
        # A body exactly at the limit is fine.
        assert (await fetch(server, "POST", "/echo", body=b"y" * 100)).body == b"y" * 100


async def test_404_and_405() -> None:
    async with running(make_app()) as server, connection(server) as conn:
        missing = await conn.exchange("GET", "/nope")
        assert missing.status == 404
        assert missing.body
        assert missing.get("Content-Type") == "text/plain; charset=utf-8"
        assert missing.get("Connection") is None  # a 404 keeps the connection
        wrong = await conn.exchange("DELETE", "/")
        assert wrong.status == 405
        assert wrong.get("Allow") == "GET, HEAD"
        assert wrong.body
        # Two routes on one path: Allow lists both.
        both = await conn.exchange("PATCH", "/item")
        assert both.status == 405
        assert both.get("Allow") == "GET, HEAD, POST"
        post_only = await conn.exchange("GET", "/echo")
        assert post_only.status == 405
        assert post_only.get("Allow") == "POST, PUT"
        assert (await conn.exchange("HEAD", "/echo")).status == 405
        # Paths are exact.
        assert (await conn.exchange("GET", "/item/")).status == 404


async def test_path_parameters() -> None:
    async with running(make_app()) as server, connection(server) as conn:
        reply = await conn.exchange("GET", "/users/alice")
        assert json.loads(reply.body) == {"name": "alice"}
        reply = await conn.exchange("GET", "/users/%C3%A9l%20a")
        assert json.loads(reply.body) == {"name": "él a"}
        reply = await conn.exchange("GET", "/files/docs/readme.txt")
        assert reply.body == b"docs|readme"
        # A parameter is one non-empty segment.
        assert (await conn.exchange("GET", "/users/a/b")).status == 404
        assert (await conn.exchange("GET", "/users/")).status == 404
        assert (await conn.exchange("GET", "/files/docs/readme.md")).status == 404


async def test_sync_handler() -> None:
    async with running(make_app()) as server:
        reply = await fetch(server, "GET", "/sync?q=yes")
    assert reply.status == 200
    assert reply.body == b"sync yes"
    assert reply.get("Content-Type") == "text/plain; charset=utf-8"


async def test_handler_error_is_500_and_reported() -> None:
    async with running(make_app()) as server:
        async with connection(server) as conn:
            reply = await conn.exchange("GET", "/boom")
            assert reply.status == 500
            assert b"kaboom" not in reply.body  # no details leak to the client
        error, info = await asyncio.wait_for(server.errors.get(), TIMEOUT)
        assert isinstance(error, RuntimeError)
        assert str(error) == "kaboom"
        assert info.path == "/boom"
        reply = await fetch(server, "GET", "/not-a-response")
        assert reply.status == 500
        error, info = await asyncio.wait_for(server.errors.get(), TIMEOUT)
        assert isinstance(error, TypeError)
        assert "/not-a-response" in str(error)


async def test_handshake_rejected_from_handler_sets_status() -> None:
    router = Router()

    @router.get("/secret")
    def secret(request: Request) -> Response:
        raise wsline.HandshakeRejected(403, "go away")

    async with running(router) as server:
        reply = await fetch(server, "GET", "/secret")
        assert reply.status == 403
        assert b"go away" in reply.body
        assert server.errors.get_nowait() is None


async def test_redirect_route() -> None:
    async with running(make_app()) as server:
        reply = await fetch(server, "GET", "/redirect")
    assert reply.status == 302
    assert reply.get("Location") == "/"


async def test_http_and_websocket_on_same_connection() -> None:
    """A keep-alive HTTP exchange, then an upgrade on the same TCP connection."""
    async with running(make_app()) as server, connection(server) as conn:
        assert (await conn.exchange("GET", "/")).status == 200
        key = base64.b64encode(os.urandom(16)).decode()
        await conn.request(
            "GET",
            "/ws",
            headers=[
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", key),
                ("Sec-WebSocket-Version", "13"),
            ],
        )
        reply = await conn.response(head_only=True)
        assert reply.status == 101
        # A masked text frame "hi"; the echo comes back unmasked.
        mask = b"\x01\x02\x03\x04"
        await conn.send(b"\x81\x82" + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(b"hi")))
        assert await asyncio.wait_for(conn.reader.readexactly(4), TIMEOUT) == b"\x81\x02hi"


# ------------------------------------------------------------------ WebSocket routes


async def test_websocket_route() -> None:
    async with running(make_app()) as server:
        async with wsline.connect(f"ws://{HOST}:{server.port}/ws", **CLIENT) as ws:
            await ws.send("hello")
            assert await ws.recv(timeout=TIMEOUT) == "hello"
            await ws.send(b"\x00\x01")
            assert await ws.recv(timeout=TIMEOUT) == b"\x00\x01"
        async with wsline.connect(f"ws://{HOST}:{server.port}/rooms/blue?x=1", **CLIENT) as ws:
            assert await ws.recv(timeout=TIMEOUT) == "room blue"
        # Plain HTTP still works next to it.
        assert (await fetch(server, "GET", "/")).status == 200


async def test_upgrade_to_unknown_path_404() -> None:
    async with running(make_app()) as server:
        with pytest.raises(wsline.InvalidStatus) as info:
            async with wsline.connect(f"ws://{HOST}:{server.port}/nowhere", **CLIENT):
                pass
        assert info.value.status == 404
        # An HTTP-only path is no WebSocket route either.
        with pytest.raises(wsline.InvalidStatus) as info:
            async with wsline.connect(f"ws://{HOST}:{server.port}/", **CLIENT):
                pass
        assert info.value.status == 404
        assert server.errors.get_nowait() is None


async def test_plain_get_on_websocket_path_426() -> None:
    async with running(make_app()) as server:
        reply = await fetch(server, "GET", "/ws")
    assert reply.status == 426
    assert reply.get("Upgrade") == "websocket"
    assert reply.body


async def test_websocket_handler_error_reported() -> None:
    router = Router()

    @router.websocket("/bad")
    async def bad(ws: wsline.WebSocket) -> None:
        raise ValueError("ws failed")

    async with running(router) as server:
        async with wsline.connect(f"ws://{HOST}:{server.port}/bad", **CLIENT) as ws:
            with pytest.raises(wsline.ConnectionClosed):
                await ws.recv(timeout=TIMEOUT)
            assert ws.close_code == 1011
        error, info = await asyncio.wait_for(server.errors.get(), TIMEOUT)
        assert isinstance(error, ValueError)
        assert info.path == "/bad"


async def test_router_call_without_route_closes_1008() -> None:
    """The router as a plain handler (no check_upgrade): unknown paths close with 1008."""
    router = Router()

    async def handler(ws: wsline.WebSocket) -> None:
        await router(ws)

    async with wsline.serve(handler, HOST, 0, **FAST) as server:
        async with wsline.connect(f"ws://{HOST}:{server.port}/x", **CLIENT) as ws:
            with pytest.raises(wsline.ConnectionClosed):
                await ws.recv(timeout=TIMEOUT)
            assert ws.close_code == 1008


# ------------------------------------------------------------------ static files

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """tmp_path/public is served; tmp_path/secret.txt is outside it."""
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    root = tmp_path / "public"
    root.mkdir()
    (root / "index.html").write_text("<p>home</p>")
    (root / "style.css").write_text("body{}")
    (root / "app.js").write_text("console.log(1)")
    (root / "logo.png").write_bytes(PNG)
    (root / "data.bin").write_bytes(b"\x00\x01")
    (root / "café.txt").write_text("accent")
    (root / ".env").write_text("PASSWORD=1")
    docs = root / "docs"
    docs.mkdir()
    (docs / "index.html").write_text("<p>docs</p>")
    (root / "empty").mkdir()
    return root


def static_router(root: Path, prefix: str = "/static") -> Router:
    router = make_app()
    router.static(prefix, root)
    return router


async def test_static_content_types(site: Path) -> None:
    expected = {
        "/static/index.html": ("text/html; charset=utf-8", b"<p>home</p>"),
        "/static/style.css": ("text/css; charset=utf-8", b"body{}"),
        "/static/app.js": ("text/javascript; charset=utf-8", b"console.log(1)"),
        "/static/logo.png": ("image/png", PNG),
        "/static/data.bin": ("application/octet-stream", b"\x00\x01"),
        "/static/caf%C3%A9.txt": ("text/plain; charset=utf-8", b"accent"),
    }
    async with running(static_router(site)) as server, connection(server) as conn:
        for target, (ctype, body) in expected.items():
            reply = await conn.exchange("GET", target)
            assert reply.status == 200, target
            assert reply.get("Content-Type") == ctype, target
            assert reply.body == body, target
            assert reply.get("Content-Length") == str(len(body))
            assert reply.get("ETag")
            assert reply.get("Last-Modified")
            assert reply.get("X-Content-Type-Options") == "nosniff"


async def test_static_head(site: Path) -> None:
    async with running(static_router(site)) as server, connection(server) as conn:
        await conn.send(build("HEAD", "/static/logo.png") + build("GET", "/static/style.css"))
        head = await conn.response(head_only=True)
        assert head.status == 200
        assert head.get("Content-Length") == str(len(PNG))
        assert head.get("Content-Type") == "image/png"
        reply = await conn.response()
        assert reply.body == b"body{}"


async def test_static_directories(site: Path) -> None:
    async with running(static_router(site)) as server, connection(server) as conn:
        reply = await conn.exchange("GET", "/static/")
        assert reply.status == 200
        assert reply.body == b"<p>home</p>"
        assert reply.get("Content-Type") == "text/html; charset=utf-8"
        reply = await conn.exchange("GET", "/static/docs/")
        assert reply.body == b"<p>docs</p>"
        # Without the trailing slash: a redirect, so that relative links work.
        reply = await conn.exchange("GET", "/static/docs?v=1")
        assert reply.status == 301
        assert reply.get("Location") == "/static/docs/?v=1"
        reply = await conn.exchange("GET", "/static")
        assert reply.status == 301
        assert reply.get("Location") == "/static/"
        # No index, no listing.
        assert (await conn.exchange("GET", "/static/empty/")).status == 404
        # A file with a trailing slash is not that file.
        assert (await conn.exchange("GET", "/static/style.css/")).status == 404
        assert (await conn.exchange("GET", "/static/missing.css")).status == 404
        # The prefix is a whole segment.
        assert (await conn.exchange("GET", "/staticstyle.css")).status == 404


async def test_static_site_root(site: Path) -> None:
    router = static_router(site, "/")
    async with running(router) as server, connection(server) as conn:
        # Routes win over static files.
        assert (await conn.exchange("GET", "/")).body == b"<h1>hi</h1>"
        assert (await conn.exchange("GET", "/style.css")).body == b"body{}"
        assert (await conn.exchange("GET", "/docs/")).body == b"<p>docs</p>"
        assert (await conn.exchange("GET", "/nothing")).status == 404
    router = Router()
    router.static("/", site)
    async with running(router) as server:
        assert (await fetch(server, "GET", "/")).body == b"<p>home</p>"


async def test_static_methods(site: Path) -> None:
    async with running(static_router(site)) as server, connection(server) as conn:
        reply = await conn.exchange("POST", "/static/style.css", body=b"x")
        assert reply.status == 405
        assert reply.get("Allow") == "GET, HEAD"
        assert reply.body
        assert (await conn.exchange("DELETE", "/static/")).status == 405


async def test_static_conditional_get(site: Path) -> None:
    when = time.time() - 3600
    os.utime(site / "style.css", (when, when))
    async with running(static_router(site)) as server, connection(server) as conn:
        first = await conn.exchange("GET", "/static/style.css")
        etag, modified = first.get("ETag"), first.get("Last-Modified")
        assert etag and modified
        assert email.utils.parsedate_to_datetime(modified).timestamp() == int(when)

        reply = await conn.exchange("GET", "/static/style.css", headers=[("If-None-Match", etag)])
        assert reply.status == 304
        assert reply.get("ETag") == etag
        assert reply.get("Content-Length") is None
        # No body: the next response follows immediately on this connection.
        reply = await conn.exchange("GET", "/static/style.css", headers=[("If-None-Match", f'"x", W/{etag}')])
        assert reply.status == 304
        reply = await conn.exchange("GET", "/static/style.css", headers=[("If-None-Match", "*")])
        assert reply.status == 304
        reply = await conn.exchange("GET", "/static/style.css", headers=[("If-None-Match", '"other"')])
        assert reply.status == 200
        assert reply.body == b"body{}"

        reply = await conn.exchange("GET", "/static/style.css", headers=[("If-Modified-Since", modified)])
        assert reply.status == 304
        later = email.utils.formatdate(when + 100, usegmt=True)
        reply = await conn.exchange("HEAD", "/static/style.css", headers=[("If-Modified-Since", later)])
        assert reply.status == 304
        earlier = email.utils.formatdate(when - 100, usegmt=True)
        reply = await conn.exchange("GET", "/static/style.css", headers=[("If-Modified-Since", earlier)])
        assert reply.status == 200
        reply = await conn.exchange("GET", "/static/style.css", headers=[("If-Modified-Since", "garbage")])
        assert reply.status == 200
        # If-None-Match wins over If-Modified-Since.
        reply = await conn.exchange(
            "GET", "/static/style.css", headers=[("If-None-Match", '"other"'), ("If-Modified-Since", later)]
        )
        assert reply.status == 200

        # A changed file gets a new ETag.
        (site / "style.css").write_text("body{color:red}")
        reply = await conn.exchange("GET", "/static/style.css", headers=[("If-None-Match", etag)])
        assert reply.status == 200
        assert reply.body == b"body{color:red}"
        assert reply.get("ETag") != etag


TRAVERSALS = [
    "/static/../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2E/secret.txt",
    "/static/.%2e/secret.txt",
    "/static/..%2fsecret.txt",
    "/static/%2e%2e%2fsecret.txt",
    "/static/..%5csecret.txt",
    "/static/..\\secret.txt",
    "/static/%2e%2e%5c..%5csecret.txt",
    "/static/docs/../../secret.txt",
    "/static/docs/%2e%2e/%2e%2e/secret.txt",
    "/static/./../secret.txt",
    "/static/%252e%252e/secret.txt",
    "/static/..%c0%afsecret.txt",
    "/static/..%c1%9csecret.txt",
    "/static//..//secret.txt",
    "/static/%2f..%2fsecret.txt",
    "/static/index.html%00.png",
    "/static/%00",
    "/static/.env",
    "/static/%2eenv",
    "http://127.0.0.1/static/../secret.txt",
]


@pytest.mark.parametrize("target", TRAVERSALS)
async def test_static_traversal_never_served(site: Path, target: str) -> None:
    async with running(static_router(site)) as server:
        reply = await fetch(server, "GET", target)
        assert reply.status in (400, 404)
        assert b"SECRET" not in reply.body
        assert b"PASSWORD" not in reply.body
        assert server.errors.get_nowait() is None


@pytest.mark.parametrize(
    "target", ["/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt", "/%2fetc%2fpasswd", "//etc/passwd"]
)
async def test_static_root_traversal_never_served(site: Path, target: str) -> None:
    router = Router()
    router.static("/", site)
    async with running(router) as server:
        reply = await fetch(server, "GET", target)
        assert reply.status in (400, 404)
        assert b"SECRET" not in reply.body
        assert b"root:" not in reply.body


async def test_static_absolute_path_target(site: Path) -> None:
    """An absolute file system path in the URL stays under the root."""
    secret = site.parent / "secret.txt"
    router = Router()
    router.static("/", site)
    async with running(router) as server:
        reply = await fetch(server, "GET", "/" + str(secret).lstrip("/"))
        assert reply.status == 404
        reply = await fetch(server, "GET", "/" + str(secret))
        assert reply.status == 404


@pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32", reason="needs symlinks")
async def test_static_symlinks(site: Path) -> None:
    secret = site.parent / "secret.txt"
    (site / "escape.txt").symlink_to(secret)
    (site / "outside").symlink_to(site.parent, target_is_directory=True)
    (site / "alias.css").symlink_to(site / "style.css")
    (site / "docs" / "index.html").unlink()
    (site / "docs" / "index.html").symlink_to(secret)
    async with running(static_router(site)) as server, connection(server) as conn:
        for target in ("/static/escape.txt", "/static/outside/secret.txt", "/static/docs/"):
            reply = await conn.exchange("GET", target)
            assert reply.status == 404, target
            assert b"SECRET" not in reply.body
        # A symlink that stays inside the root is fine.
        reply = await conn.exchange("GET", "/static/alias.css")
        assert reply.status == 200
        assert reply.body == b"body{}"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
async def test_static_special_files_not_served(site: Path) -> None:
    os.mkfifo(site / "pipe.txt")
    async with running(static_router(site)) as server:
        reply = await fetch(server, "GET", "/static/pipe.txt")  # must not hang
        assert reply.status == 404


async def test_static_bad_directory(tmp_path: Path) -> None:
    router = Router()
    with pytest.raises(NotADirectoryError):
        router.static("/s", tmp_path / "missing")
    with pytest.raises(ValueError):
        router.static("s", tmp_path)


# ------------------------------------------------ helpers (no sockets; async because of pytestmark)


async def test_response_helpers() -> None:
    r = text_response("héllo")
    assert r.status == 200
    assert r.headers.get("Content-Type") == "text/plain; charset=utf-8"
    assert r.body == "héllo".encode()
    assert r.headers.get("Content-Length") == str(len(r.body))

    r = html_response("<b>x</b>", status=404, headers={"X-A": "1"})
    assert (r.status, r.reason) == (404, "Not Found")
    assert r.headers.get("X-A") == "1"
    assert r.headers.get("Content-Type") == "text/html; charset=utf-8"

    r = json_response({"a": [1, 2], "b": "é"}, status=202, headers=[("Content-Length", "999")])
    assert r.body == '{"a":[1,2],"b":"é"}'.encode()
    assert r.reason == "Accepted"
    assert r.headers.get_all("Content-Length") == [str(len(r.body))]
    assert r.headers.get("Content-Type") == "application/json"
    with pytest.raises(ValueError):
        json_response(float("nan"))

    # A Content-Type given in headers wins.
    r = text_response("x", headers=Headers([("Content-Type", "text/csv")]))
    assert r.headers.get_all("Content-Type") == ["text/csv"]

    r = redirect("/a b/é?x=1#f", 308)
    assert (r.status, r.reason) == (308, "Permanent Redirect")
    assert r.headers.get("Location") == "/a%20b/%C3%A9?x=1#f"
    assert r.headers.get("Content-Length") == str(len(r.body))
    assert redirect("/x\r\nSet-Cookie: a=b").headers.get("Location") == "/x%0D%0ASet-Cookie:%20a=b"
    with pytest.raises(ValueError):
        redirect("/", 200)
    with pytest.raises(ValueError):
        text_response("x", headers=[("X-Evil", "a\r\nSet-Cookie: b")])
    with pytest.raises(ValueError):
        text_response("x", headers=[("Bad Name", "v")])


async def test_guess_content_type() -> None:
    assert guess_content_type("a.html") == "text/html; charset=utf-8"
    assert guess_content_type("A.JS") == "text/javascript; charset=utf-8"
    assert guess_content_type("a.json") == "application/json; charset=utf-8"
    assert guess_content_type("a.svg") == "image/svg+xml"
    assert guess_content_type("a.wasm") == "application/wasm"
    assert guess_content_type("a.tar.gz") == "application/gzip"
    assert guess_content_type("noext") == "application/octet-stream"


async def test_file_response_direct(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    path.write_text("a,b\n")
    get = Request("GET", "/", Headers())
    r = file_response(path, get)
    assert r.status == 200
    assert r.body == b"a,b\n"
    assert r.headers.get("Content-Type") == "text/csv; charset=utf-8"
    r = file_response(path, get, content_type="application/x-custom", headers={"Cache-Control": "no-cache"})
    assert r.headers.get("Content-Type") == "application/x-custom"
    assert r.headers.get("Cache-Control") == "no-cache"
    head = file_response(str(path), Request("HEAD", "/", Headers()))
    assert (head.body, head.headers.get("Content-Length")) == (b"", "4")
    cond = Request("GET", "/", Headers([("If-None-Match", r.headers["ETag"])]))
    assert file_response(path, cond).status == 304
    # Conditions apply to GET and HEAD only.
    assert file_response(path, Request("POST", "/", Headers([("If-None-Match", "*")]))).status == 200
    assert file_response(tmp_path / "missing", get).status == 404
    assert file_response(tmp_path, get).status == 404


async def test_route_registration_errors() -> None:
    router = Router()
    with pytest.raises(ValueError):
        router.get("no-slash")
    with pytest.raises(ValueError):
        router.get("/{a}/{a}")
    with pytest.raises(ValueError):
        router.get("/{bad-name}")
    with pytest.raises(ValueError):
        router.route("/x", methods=())
    with pytest.raises(ValueError):
        router.route("/x", methods=("GE T",))

    def handler(request: Request) -> Response:
        return text_response("x")

    assert router.get("/ok")(handler) is handler  # decorators return the function
    assert router.route("/lower", methods="post")(handler) is handler


# ------------------------------------------------------------------ server edge cases (regressions)


async def test_bug_unicode_digit_content_length_gets_400() -> None:
    async with running(make_app()) as server, connection(server) as conn:
        await conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\nab")
        try:
            reply = await conn.response()
        except (asyncio.IncompleteReadError, ConnectionResetError):
            reply = None
        assert reply is not None and reply.status == 400
        assert server.errors.get_nowait() is None


async def test_bug_slow_handler_is_not_timed_out() -> None:
    router = Router()

    @router.get("/slow")
    async def slow(request: Request) -> Response:
        await asyncio.sleep(0.5)
        return text_response("done")

    async with running(router, open_timeout=0.2) as server, connection(server) as conn:
        reply = await conn.exchange("GET", "/slow")
        assert reply.status == 200
        assert reply.body == b"done"


async def test_bug_error_after_head_keeps_its_body() -> None:
    async with running(make_app()) as server, connection(server) as conn:
        await conn.send(build("HEAD", "/"))
        assert (await conn.response(head_only=True)).status == 200
        await conn.send(b"NOT A REQUEST\r\n\r\n")
        reply = await conn.response()  # reads Content-Length bytes of body
        assert reply.status == 400
        assert reply.body


async def test_bug_reused_response_not_mutated() -> None:
    cached = text_response("cached")
    router = Router()

    @router.get("/cached")
    def get_cached(request: Request) -> Response:
        return cached

    async with running(router) as server:
        reply = await fetch(server, "GET", "/cached", headers=[("Connection", "close")])
        assert reply.status == 200
        async with connection(server) as conn:
            first = await conn.exchange("GET", "/cached")
            assert first.get("Connection") is None
            second = await conn.exchange("GET", "/cached")
            assert second.body == b"cached"


@pytest.mark.parametrize("size, data", [(b"0x5", b"hello"), (b"+5", b"hello"), (b"5_0", b"a" * 80)])
async def test_bug_chunk_size_must_be_hex_digits(size: bytes, data: bytes) -> None:
    async with running(make_app()) as server, connection(server) as conn:
        await conn.request(
            "POST",
            "/echo",
            headers=[("Transfer-Encoding", "chunked")],
            body=size + b"\r\n" + data + b"\r\n0\r\n\r\n",
        )
        reply = await conn.response()
        assert reply.status == 400
