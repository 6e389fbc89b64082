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


# ------------------------------------------------------------------ presence, history, addresses across hubs

from wsline.hub import PositionPrefix, PresenceEvent, Publication, Reset, StreamPosition, UserTaken  # noqa: E402

FAST = {"heartbeat": 0.2, "presence_ttl": 0.6, "max_backoff": 0.1}


class Node:
    """One "process": a RedisHub and a server whose connections stay open until closed."""

    def __init__(self, hub: RedisHub, server: wsline.Server) -> None:
        self.hub = hub
        self.server = server
        self.accepted: list[wsline.WebSocket] = []
        self.clients: list[wsline.WebSocket] = []

    async def pair(self, path: str = "/") -> tuple[wsline.WebSocket, wsline.WebSocket]:
        client = await wsline.connect(f"ws://{HOST}:{self.server.port}{path}", **OPTS)
        self.clients.append(client)
        while len(self.accepted) < len(self.clients):
            await asyncio.sleep(0.005)
        return client, self.accepted[-1]


@pytest_asyncio.fixture
async def nodes(redis_server: RedisServer) -> AsyncIterator[Any]:
    started: list[tuple[Node, Any]] = []

    async def start(**kwargs: Any) -> Node:
        hub = RedisHub(redis_server.url, **{**FAST, **kwargs})
        await hub.start()
        holder: list[Node] = []

        async def handler(ws: wsline.WebSocket) -> None:
            holder[0].accepted.append(ws)
            await ws.wait_closed()

        serving = wsline.serve(handler, HOST, 0, **OPTS)
        server = await serving.__aenter__()
        node = Node(hub, server)
        holder.append(node)
        started.append((node, serving))
        return node

    yield start
    for node, serving in started:
        for ws in node.clients:
            await ws.close()
        await serving.__aexit__(None, None, None)
        await node.hub.close()


async def test_presence_is_the_whole_cluster(nodes: Any) -> None:
    one, two = await nodes(), await nodes()
    watch1 = await one.hub.subscribe("room")
    watch2 = await two.hub.subscribe("room")
    _, a = await one.pair()
    _, b = await two.pair()
    _, b2 = await two.pair()
    await one.hub.join("room", a, user="ann", data={"name": "Ann"})
    await two.hub.join("room", b, user="bob")
    await two.hub.join("room", b2, user="bob")
    expected = [one.hub.address(a), two.hub.address(b), two.hub.address(b2)]
    for hub in (one.hub, two.hub):
        assert [c.address for c in await hub.presence("room")] == expected
    assert [c.user for c in await two.hub.presence("room")] == ["ann", "bob", "bob"]
    await two.hub.leave("room", b)
    await one.hub.publish("room", "after the leave")
    events1 = [await watch1.get(timeout=3) for _ in range(5)]
    events2 = [await watch2.get(timeout=3) for _ in range(5)]
    assert [e.position for e in events1] == [e.position for e in events2]  # one order everywhere
    assert [e.position.offset for e in events1] == [1, 2, 3, 4, 5]
    kinds = [(e.kind, e.first, e.last) if isinstance(e, PresenceEvent) else "pub" for e in events1]
    assert kinds == [
        ("join", True, False),
        ("join", True, False),
        ("join", False, False),
        ("leave", False, False),
        "pub",
    ]
    assert events1[0].client.data == {"name": "Ann"}
    watch1.close()
    watch2.close()


async def test_unique_user_across_processes(nodes: Any) -> None:
    one, two = await nodes(), await nodes()
    _, a = await one.pair()
    _, b = await two.pair()
    await one.hub.join("chat", a, user="alice", unique=True)
    with pytest.raises(UserTaken):
        await two.hub.join("chat", b, user="alice", unique=True)
    assert two.hub.members("chat") == []
    await one.hub.leave("chat", a)
    assert await two.hub.join("chat", b, user="alice", unique=True) is not None


async def test_recovery_across_processes(nodes: Any) -> None:
    one, two = await nodes(history_size=5000), await nodes(history_size=5000)
    envelope = PositionPrefix()
    ca, a = await one.pair()
    await one.hub.join("room", a, envelope=envelope)
    for i in range(3):
        await two.hub.publish("room", f"m{i}")
    seen = [str(await ca.recv(timeout=3)) for _ in range(3)]
    last = StreamPosition.parse(seen[-1].split("\n", 1)[0])
    await ca.close()
    for i in range(3, 2500):  # more than one page of the stream
        await two.hub.publish("room", f"m{i}", wait=i % 500 == 0)
    cb, b = await two.pair()
    joined = await two.hub.join("room", b, since=last, envelope=envelope)
    assert joined is not None and joined.recovered
    got = [str(await cb.recv(timeout=5)) for _ in range(2497)]
    assert [m.split("\n", 1)[1] for m in got] == [f"m{i}" for i in range(3, 2500)]
    offsets = [StreamPosition.parse(m.split("\n", 1)[0]).offset for m in got]
    assert offsets == sorted(set(offsets)) and offsets[0] == last.offset + 2  # +1 is a's leave


async def test_members_of_a_dead_process_leave_within_the_bound(nodes: Any) -> None:
    one, two = await nodes(), await nodes()
    watch = await two.hub.subscribe("room")
    _, a = await one.pair()
    await one.hub.join("room", a, user="ghost")
    assert isinstance(await watch.get(timeout=2), PresenceEvent)
    one.hub._abort()  # as if killed: nobody says the member left
    start = time.monotonic()
    leave = await watch.get(timeout=5)
    took = time.monotonic() - start
    assert isinstance(leave, PresenceEvent) and leave.kind == "leave" and leave.client.user == "ghost"
    assert took <= two.hub.leave_bound + 0.5, took
    assert await two.hub.presence("room") == []
    watch.close()


async def test_send_to_another_process(nodes: Any) -> None:
    one, two = await nodes(), await nodes()
    ca, a = await one.pair()
    joined = await one.hub.join("room", a)
    assert joined is not None
    assert await two.hub.send_to(joined.address, "psst")
    assert await ca.recv(timeout=2) == "psst"
    assert await two.hub.send_to(joined.address, b"\x01bytes")
    assert await ca.recv(timeout=2) == b"\x01bytes"
    assert not await two.hub.send_to("nobody000000/1", "x")  # no such process


async def test_a_lost_subscription_connection_loses_nothing(nodes: Any, redis_server: RedisServer) -> None:
    one, two = await nodes(), await nodes()
    watch = await one.hub.subscribe("room")
    await two.hub.publish("room", "m0")
    assert (await watch.get(timeout=2)).data == "m0"
    import redis.asyncio as aioredis

    admin = aioredis.Redis.from_url(redis_server.url)
    try:
        await admin.client_kill_filter(_type="pubsub")  # every pub/sub connection
        for i in range(1, 6):
            await two.hub.publish("room", f"m{i}")
        got = [await watch.get(timeout=5) for _ in range(5)]
    finally:
        await admin.aclose()
    assert [g.data for g in got] == [f"m{i}" for i in range(1, 6)]  # no Reset: Redis kept them
    assert [g.position.offset for g in got] == [2, 3, 4, 5, 6]
    watch.close()


async def test_history_trimmed_in_redis_is_a_reset(nodes: Any) -> None:
    one = await nodes(history_size=5)
    start = await one.hub.position("room")
    for i in range(300):
        await one.hub.publish("room", f"m{i}", wait=False)
    await one.hub.publish("room", "last")
    sub = await one.hub.subscribe("room", since=StreamPosition(start.epoch, 2))
    first = await sub.get(timeout=2)
    assert isinstance(first, Reset) and first.reason == "history trimmed"
    await one.hub.publish("room", "live")
    nxt = await sub.get(timeout=2)
    assert isinstance(nxt, Publication) and nxt.data == "live"
    sub.close()
