"""RedisHub against a real redis-server: rooms shared between processes, restarts, errors.

Needs the ``redis-server`` binary (Debian package ``redis-server``) and the
``redis`` Python package; without them these tests FAIL, they are not skipped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import wsline
from wsline.apps.relay import serve_relay
from wsline.hub import HubUnavailable
from wsline.hub_redis import RedisHub

pytestmark = pytest.mark.asyncio

HOST = "127.0.0.1"
OPTS: dict[str, Any] = {"ping_interval": None, "close_timeout": 0.5}
SRC = str(Path(__file__).resolve().parents[2] / "src")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(self, tmp: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(
                "redis-server is not installed (apt-get install redis-server): RedisHub tests need it"
            )
        self.binary = binary
        self.tmp = tmp
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((HOST, self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def recv(ws: wsline.WebSocket, timeout: float = 3.0) -> Any:
    return await ws.recv(timeout=timeout)


@pytest_asyncio.fixture
async def relay_process(redis_server: RedisServer) -> AsyncIterator[Any]:
    procs: list[asyncio.subprocess.Process] = []

    async def start() -> int:
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "wsline",
            "relay",
            "--port",
            str(port),
            "--redis",
            redis_server.url,
            env={**os.environ, "PYTHONPATH": SRC},
            stdout=asyncio.subprocess.PIPE,
        )
        procs.append(proc)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        assert b"relay on" in line, line
        return port

    yield start
    for proc in procs:
        proc.terminate()
        await proc.wait()


async def wait_members(hub: RedisHub, room: str, n: int) -> None:
    while len(hub.members(room)) < n:
        await asyncio.sleep(0.01)


async def test_two_relay_processes_share_rooms(relay_process: Any) -> None:
    port1 = await relay_process()
    port2 = await relay_process()
    a = await wsline.connect(f"ws://{HOST}:{port1}/room", **OPTS)
    b = await wsline.connect(f"ws://{HOST}:{port2}/room", **OPTS)
    c = await wsline.connect(f"ws://{HOST}:{port2}/room", **OPTS)
    other = await wsline.connect(f"ws://{HOST}:{port1}/elsewhere", **OPTS)
    try:
        # Subscriptions happen right after the handshake: retry until the first one arrives.
        for _ in range(50):
            await a.send("ping from a")
            try:
                assert await b.recv(timeout=0.1) == "ping from a"
                break
            except TimeoutError:
                continue
        while True:  # drain the retries
            try:
                await b.recv(timeout=0.2)
            except TimeoutError:
                break
        while True:
            try:
                await c.recv(timeout=0.2)
            except TimeoutError:
                break
        await a.send("hello from process 1")
        assert await recv(b) == "hello from process 1"
        assert await recv(c) == "hello from process 1"
        await b.send(b"binary from process 2")
        assert await recv(a) == b"binary from process 2"
        assert await recv(c) == b"binary from process 2"  # same process: delivered once
        with pytest.raises(TimeoutError):
            await c.recv(timeout=0.3)
        with pytest.raises(TimeoutError):
            await b.recv(timeout=0.05)  # not back to the sender
        with pytest.raises(TimeoutError):
            await other.recv(timeout=0.05)
    finally:
        for ws in (a, b, c, other):
            await ws.close()


async def test_redis_restart_reconnects_and_delivers_what_waited(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Publications made while Redis is down wait, then go out in order; the epoch changes."""
    caplog.set_level(logging.WARNING, "wsline.hub")
    async with (
        RedisHub(redis_server.url, max_backoff=0.2) as hub1,
        RedisHub(redis_server.url, max_backoff=0.2) as hub2,
        serve_relay(HOST, 0, hub=hub1, **OPTS) as s1,
        serve_relay(HOST, 0, hub=hub2, **OPTS) as s2,
    ):
        a = await wsline.connect(f"ws://{HOST}:{s1.port}/r", **OPTS)
        b = await wsline.connect(f"ws://{HOST}:{s2.port}/r", **OPTS)
        await wait_members(hub1, "/r", 1)
        await wait_members(hub2, "/r", 1)
        before = await hub1.position("/r")
        await a.send("before")
        assert await recv(b) == "before"

        redis_server.stop()
        while hub1.connected or hub2.connected:
            await asyncio.sleep(0.01)
        await a.send("waits 1")
        await a.send("waits 2")
        with pytest.raises(TimeoutError):
            await b.recv(timeout=0.2)  # nothing goes anywhere without Redis
        redis_server.start()
        deadline = time.monotonic() + 5
        while not (hub1.connected and hub2.connected):
            assert time.monotonic() < deadline, "the hubs did not reconnect"
            await asyncio.sleep(0.01)
        assert await recv(b) == "waits 1"
        assert await recv(b) == "waits 2"
        await a.send("after")
        assert await recv(b) == "after"
        await b.send("and back")
        assert await recv(a) == "and back"
        after = await hub1.position("/r")
        assert after.epoch != before.epoch  # Redis lost the stream: a new epoch
        text = caplog.text
        assert "lost the connection to Redis" in text
        assert "reconnected to Redis" in text and "0 publication(s) could not be stored" in text
        assert "reset from" in text and "(epoch changed)" in text
        assert hub1.reconnections == 1 and hub2.reconnections == 1
        # Both processes list both members again (re-added after the restart).
        for hub in (hub1, hub2):
            await eventually(lambda hub=hub: len(hub.members("/r")) == 1)
        assert len(await hub1.presence("/r")) == 2
        await a.close()
        await b.close()


async def eventually(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not true after {timeout} s"
        await asyncio.sleep(0.01)


async def test_unreachable_redis_is_a_clear_error() -> None:
    port = free_port()
    hub = RedisHub(f"redis://{HOST}:{port}/0", connect_timeout=1.0)
    with pytest.raises(HubUnavailable, match=f"cannot reach Redis at redis://{HOST}:{port}/0"):
        await hub.start()
    with pytest.raises(HubUnavailable):
        async with RedisHub(f"redis://{HOST}:{port}/0"):
            pass  # pragma: no cover
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wsline",
        "relay",
        "--port",
        "0",
        "--redis",
        f"redis://{HOST}:{port}/0",
        env={**os.environ, "PYTHONPATH": SRC},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 1
    assert b"error: cannot reach Redis at" in err
