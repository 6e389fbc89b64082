"""Starlette and FastAPI applications on ``wsline.asgi.serve`` and ``python -m wsline asgi``.

Real applications (tests/asgi/apps.py) against real clients: httpx for HTTP,
``wsline.connect`` for WebSockets, subprocesses for the command line (its
banner, ``--workers``, ``--factory``, ``--root-path``, SIGTERM). The lifespan
(startup, state, shutdown, failures, the auto/on/off modes) and the graceful
shutdown (requests in progress finish, WebSockets get 1012) too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import wsline
from wsline.asgi.lifespan import LifespanFailed
from wsline.asgi.server import ASGIServer, serve

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.asgi import apps  # noqa: E402

HOST = "127.0.0.1"
FAST: dict[str, Any] = {
    "open_timeout": 2.0,
    "shutdown_timeout": 2.0,
    "ping_interval": None,
    "close_timeout": 1.0,
}
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]), "PYTHONUNBUFFERED": "1"}


@contextlib.asynccontextmanager
async def running(app: Any = apps.app, **kwargs: Any) -> AsyncIterator[tuple[ASGIServer, httpx.AsyncClient]]:
    async with serve(app, HOST, 0, **{**FAST, **kwargs}) as server:
        async with httpx.AsyncClient(base_url=f"http://{HOST}:{server.port}", timeout=5) as client:
            yield server, client


# ------------------------------------------------------------------ Starlette


async def test_starlette_routes_middleware_and_errors() -> None:
    async with running() as (server, client):
        response = await client.get("/")
        assert response.status_code == 200 and response.text == "hello, world"
        assert response.headers["x-middleware"] == "seen"
        assert response.headers["server"].startswith("wsline/")
        assert response.http_version == "HTTP/1.1"

        response = await client.get("/missing")
        assert response.status_code == 404

        response = await client.get("/teapot")
        assert response.status_code == 418 and "teapot" in response.text

        response = await client.get("/error")
        assert response.status_code == 500
        error = server.errors.get_nowait()
        assert error is not None and "always fails" in str(error.error)

        response = await client.get("/")  # the server goes on
        assert response.status_code == 200


async def test_starlette_streaming_response() -> None:
    async with running() as (_server, client):
        async with client.stream("GET", "/stream", params={"n": "4", "delay": "0.02"}) as response:
            assert response.headers["transfer-encoding"] == "chunked"
            pieces = [piece async for piece in response.aiter_text()]
        assert "".join(pieces) == "".join(f"piece {i}\n" for i in range(4))
        assert len(pieces) >= 2  # they came as they were made


async def test_starlette_file_response_and_head() -> None:
    expected = Path(apps.__file__).read_bytes()
    async with running() as (_server, client):
        response = await client.get("/file")
        assert response.status_code == 200 and response.content == expected
        assert response.headers["content-length"] == str(len(expected))
        assert "etag" in response.headers
        response = await client.head("/file")
        assert response.status_code == 200 and response.content == b""
        assert response.headers["content-length"] == str(len(expected))


async def test_starlette_request_bodies() -> None:
    async with running() as (_server, client):
        response = await client.post("/echo", content=b"x" * 300_000)
        assert response.content == b"x" * 300_000

        async def pieces() -> AsyncIterator[bytes]:
            for _ in range(5):
                yield b"y" * 1000
                await asyncio.sleep(0.1)

        response = await client.post("/upload", content=pieces())  # chunked, streamed
        assert response.json()["size"] == 5000
        assert response.json()["pieces"] >= 2  # read as it arrived, not all at the end


async def test_starlette_form_posts() -> None:
    async with running() as (_server, client):
        response = await client.post("/form", data={"name": "Ada", "lang": "en"})
        assert response.json() == {"name": "Ada", "lang": "en"}
        response = await client.post(
            "/form",
            data={"note": "hi"},
            files={"upload": ("a.bin", b"\x00" * 5000, "application/octet-stream")},
        )
        assert response.json() == {"note": "hi", "upload": {"filename": "a.bin", "size": 5000}}


async def test_starlette_background_task_runs_after_the_response() -> None:
    apps.EVENTS.clear()
    async with running() as (_server, client):
        response = await client.get("/background", params={"name": "task-1"})
        assert response.text == "accepted"
        for _ in range(100):
            if (await client.get("/background-done")).json() == ["task-1"]:
                break
            await asyncio.sleep(0.02)
        assert apps.EVENTS == ["task-1"]


async def test_lifespan_state_reaches_requests() -> None:
    async with running() as (server, client):
        assert server.lifespan.supported
        first = (await client.get("/state")).json()
        second = (await client.get("/state")).json()
        assert first == {"greeting": "hello from the lifespan", "counter": 1}
        assert second["counter"] == 2  # the state's objects are shared


async def test_scope_through_starlette() -> None:
    async with running(root_path="/base") as (server, client):
        data = (await client.get("/scope", params={"q": "a b"})).json()
        assert data["path"] == "/base/scope" and data["root_path"] == "/base"
        assert data["raw_path"] == "/base/scope" and data["query_string"] == "q=a+b"
        assert data["spec_version"] == "2.4" and data["scheme"] == "http"
        assert data["server"] == [HOST, server.port]


async def test_starlette_websocket() -> None:
    async with running() as (server, _client):
        async with wsline.connect(f"ws://{HOST}:{server.port}/ws") as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01")
            assert await ws.recv() == b"\x00\x01"
        with pytest.raises(wsline.InvalidStatus) as info:
            async with wsline.connect(f"ws://{HOST}:{server.port}/nowhere"):
                pass
        assert info.value.status == 403


async def test_many_concurrent_clients() -> None:
    async with running() as (_server, client):
        responses = await asyncio.gather(*(client.get("/", params={"i": str(i)}) for i in range(50)))
        assert {r.status_code for r in responses} == {200}


# ------------------------------------------------------------------ FastAPI


async def test_fastapi_app() -> None:
    async with running(apps.api) as (server, client):
        assert (await client.get("/hello")).json() == {"message": "hello from FastAPI"}
        response = await client.post("/items/7", json={"name": "pen", "price": 1.5, "tags": ["office"]})
        assert response.status_code == 201
        assert response.json() == {"id": 7, "name": "pen", "price": 1.5, "tags": ["office"]}
        assert (await client.get("/items/7")).json()["name"] == "pen"
        response = await client.get("/items/99")
        assert response.status_code == 404 and response.json() == {"detail": "no item 99"}
        response = await client.post("/items/8", json={"name": "no price"})
        assert response.status_code == 422
        assert (await client.get("/openapi.json")).json()["openapi"].startswith("3.")
        async with wsline.connect(f"ws://{HOST}:{server.port}/ws") as ws:
            await ws.send("ping")
            assert await ws.recv() == "api: ping"


# ------------------------------------------------------------------ lifespan


def lifespan_app(events: list[str], *, fail: str = "", raise_in: str = "") -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            phase = message["type"].split(".")[1]
            events.append(phase)
            if raise_in == phase:
                raise RuntimeError(f"{phase} exploded")
            if fail == phase:
                await send({"type": f"lifespan.{phase}.failed", "message": "no database"})
            else:
                await send({"type": f"lifespan.{phase}.complete"})
            if phase == "shutdown":
                return

    return app


async def test_lifespan_startup_and_shutdown_order() -> None:
    events: list[str] = []
    server = await serve(lifespan_app(events), HOST, 0, **FAST)
    assert events == ["startup"]
    await server.close()
    assert events == ["startup", "shutdown"]


async def test_lifespan_startup_failed_means_no_server() -> None:
    events: list[str] = []
    with pytest.raises(LifespanFailed, match="no database"):
        await serve(lifespan_app(events, fail="startup"), HOST, 0, **FAST)
    with pytest.raises(LifespanFailed, match="startup raised RuntimeError"):
        await serve(lifespan_app(events, raise_in="startup"), HOST, 0, lifespan="on", **FAST)


async def test_lifespan_auto_tolerates_apps_without_it(caplog: pytest.LogCaptureFixture) -> None:
    async def http_only(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http", "no lifespan here"
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"plain"})

    with caplog.at_level("INFO", "wsline.asgi"):
        async with running(http_only) as (server, client):
            assert not server.lifespan.supported
            assert (await client.get("/")).text == "plain"
    assert any("appears unsupported" in r.getMessage() for r in caplog.records)
    with pytest.raises(LifespanFailed, match="startup raised AssertionError"):
        await serve(http_only, HOST, 0, lifespan="on", **FAST)
    async with running(http_only, lifespan="off") as (server, client):
        assert (await client.get("/")).text == "plain"


async def test_lifespan_shutdown_failure_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    events: list[str] = []
    server = await serve(lifespan_app(events, fail="shutdown"), HOST, 0, **FAST)
    with caplog.at_level("ERROR", "wsline.asgi"):
        await server.close()
    assert any("shutdown failed: no database" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ graceful shutdown


async def test_close_lets_requests_finish_and_closes_websockets_with_1012() -> None:
    async with running() as (server, client):
        port = server.port
        slow = asyncio.create_task(client.get("/slow", params={"t": "0.3"}))
        ws = await wsline.connect(f"ws://{HOST}:{server.port}/ws", ping_interval=None)
        await asyncio.sleep(0.1)
        idle = await asyncio.open_connection(HOST, server.port)  # an idle keep-alive connection
        closing = asyncio.create_task(server.close())
        response = await slow
        assert response.status_code == 200 and response.text == "finally"
        assert response.headers["connection"] == "close"
        with pytest.raises(wsline.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 3)
        assert ws.close_code == 1012
        assert await asyncio.wait_for(idle[0].read(), 3) == b""
        await asyncio.wait_for(closing, 5)
        idle[1].close()
        with pytest.raises(OSError):
            await asyncio.open_connection(HOST, port)


async def test_close_cancels_requests_past_the_timeout() -> None:
    async with running(shutdown_timeout=0.2) as (server, client):
        slow = asyncio.create_task(client.get("/slow", params={"t": "30"}))
        await asyncio.sleep(0.1)
        start = time.monotonic()
        await server.close()
        assert time.monotonic() - start < 3
        with pytest.raises(httpx.HTTPError):
            await slow


async def test_serve_forever_returns_after_close() -> None:
    server = await serve(apps.app, HOST, 0, **FAST)
    forever = asyncio.create_task(server.serve_forever(stop_signals=()))
    await asyncio.sleep(0.05)
    assert not forever.done()
    await server.close()
    await asyncio.wait_for(forever, 5)


async def test_tls_gives_https_and_wss(tls: Any) -> None:
    async with serve(apps.app, HOST, 0, ssl=tls.server_context, **FAST) as server:
        url = f"https://{HOST}:{server.port}"
        async with httpx.AsyncClient(base_url=url, verify=tls.client_context) as client:
            data = (await client.get("/scope")).json()
            assert data["scheme"] == "https"
        async with wsline.connect(f"wss://{HOST}:{server.port}/ws", ssl=tls.client_context) as ws:
            await ws.send("secret")
            assert await ws.recv() == "secret"


# ------------------------------------------------------------------ the command line


class CLI:
    def __init__(self, *args: str, cwd: Path = REPO) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "wsline", "asgi", *args],
            cwd=cwd,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def banner(self, timeout: float = 30) -> re.Match[str]:
        assert self.popen.stdout is not None
        deadline = time.monotonic() + timeout
        lines = []
        while time.monotonic() < deadline:
            line = self.popen.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = re.search(r"on http://127\.0\.0\.1:(\d+)(/[^;\s]*)", line)
            if match:
                return match
        self.popen.kill()
        _out, err = self.popen.communicate()
        pytest.fail(f"no banner; stdout {lines!r}, stderr {err!r}")

    def stop(self, timeout: float = 20) -> tuple[int, str, str]:
        self.popen.send_signal(signal.SIGTERM)
        try:
            out, err = self.popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            out, err = self.popen.communicate()
            pytest.fail(f"did not stop on SIGTERM; stderr {err!r}")
        return self.popen.returncode, out, err

    def kill(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.communicate()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def test_cli_serves_the_app_and_stops_on_sigterm() -> None:
    cli = CLI("tests.asgi.apps:app", "--port", "0")
    try:
        match = cli.banner()
        assert "ASGI application tests.asgi.apps:app" in match.string
        port = int(match.group(1))
        with httpx.Client(base_url=f"http://{HOST}:{port}") as client:
            assert client.get("/").text == "hello, world"
            assert client.get("/state").json()["greeting"] == "hello from the lifespan"
        rc, out, err = cli.stop()
        assert rc == 0, err
        assert "shutting down" in out and "lifespan shutdown" in out
        assert "Traceback" not in err
    finally:
        cli.kill()


def test_cli_factory_and_root_path() -> None:
    cli = CLI("tests.asgi.apps:make_app", "--factory", "--port", "0", "--root-path", "/sub")
    try:
        match = cli.banner()
        assert match.group(2) == "/sub/"
        with httpx.Client(base_url=f"http://{HOST}:{match.group(1)}") as client:
            data = client.get("/scope").json()
            assert data["root_path"] == "/sub" and data["path"] == "/sub/scope"
        assert cli.stop()[0] == 0
    finally:
        cli.kill()


def test_cli_workers_share_one_port() -> None:
    port = free_port()
    cli = CLI("tests.asgi.apps:app", "--port", str(port), "--workers", "2")
    try:
        match = cli.banner(60)
        assert "in 2 worker processes" in match.string
        pids = set()
        for _ in range(60):
            with httpx.Client(base_url=f"http://{HOST}:{port}") as client:  # a new connection each
                pids.add(client.get("/pid").text)
            if len(pids) == 2:
                break
        assert len(pids) == 2  # the kernel spread the connections over both workers
        rc, out, err = cli.stop()
        assert rc == 0, err
        assert out.count("shutting down") == 1
        assert out.count("lifespan shutdown") == 2  # each worker's application
    finally:
        cli.kill()


def test_cli_errors() -> None:
    for args, message in [
        (["nosuchmodule:app"], "cannot import module 'nosuchmodule'"),
        (["tests.asgi.apps:nothing"], "has no attribute 'nothing'"),
        (["tests.asgi.apps"], "expected MODULE:APP"),
    ]:
        proc = subprocess.run(
            [sys.executable, "-m", "wsline", "asgi", *args, "--port", "0"],
            cwd=REPO,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 1, proc.stderr
        assert message in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "wsline", "asgi", "tests.asgi.apps:app", "--workers", "2", "--port", "0"],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "fixed --port" in proc.stderr


def test_cli_startup_failure_exits_1(tmp_path: Path) -> None:
    (tmp_path / "failing.py").write_text(
        "async def app(scope, receive, send):\n"
        "    await receive()\n"
        "    await send({'type': 'lifespan.startup.failed', 'message': 'no database'})\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "wsline", "asgi", "failing:app", "--port", "0"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert "application startup failed: the application's startup failed: no database" in proc.stderr
