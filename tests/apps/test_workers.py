"""`--workers N`: N relay or chat processes share one port (SO_REUSEPORT) and one Redis.

The parent process speaks for them: one banner once they all listen, one
"shutting down", and an error they all hit (the port is taken, Redis is
unreachable) said once.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import wsline

# The redis-server fixture lives with the RedisHub tests (tests/aio); this makes it
# importable when tests/apps runs on its own too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "aio"))
from test_examples import Process
from test_redis_hub import SRC, RedisServer, free_port, redis_server  # noqa: F401 - fixture

HOST = "127.0.0.1"


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("PPid:") and int(line.split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


def test_relay_workers_share_port_and_rooms(redis_server: RedisServer) -> None:  # noqa: F811
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wsline",
            "relay",
            "--port",
            str(port),
            "--redis",
            redis_server.url,
            "--workers",
            "2",
        ],
        env={**os.environ, "PYTHONPATH": SRC},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_port(port)
        deadline = time.monotonic() + 10
        while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_children(proc.pid)) >= 2, "expected two worker processes"

        async def chat() -> dict[int, set[str]]:
            clients = [await wsline.connect(f"ws://{HOST}:{port}/room", ping_interval=None) for _ in range(8)]
            await asyncio.sleep(0.5)  # every worker has subscribed to the room
            for i, ws in enumerate(clients):
                await ws.send(f"m{i}")
            got: dict[int, set[str]] = {}
            for i, ws in enumerate(clients):
                got[i] = {str(await ws.recv(timeout=5)) for _ in range(7)}
            for ws in clients:
                await ws.close()
            return got

        got = asyncio.run(chat())
        for i, messages in got.items():
            assert messages == {f"m{j}" for j in range(8) if j != i}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, proc.stderr.read().decode() if proc.stderr else code
    assert _children(proc.pid) == []


@pytest.mark.parametrize("args", [["--workers", "2"], ["--workers", "2", "--port", "0"]])
def test_workers_need_redis_and_a_fixed_port(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wsline", "relay", *args],
        env={**os.environ, "PYTHONPATH": SRC},
        capture_output=True,
        timeout=20,
    )
    assert result.returncode != 0
    assert b"redis" in result.stderr.lower() or b"port" in result.stderr.lower()


READY = re.compile(r"(relay|chat) on .* sharing rooms over redis://\S+ in (\d) worker processes; ")


@pytest.mark.parametrize("command", ["relay", "chat"])
def test_workers_print_one_banner_and_one_shutdown(
    command: str,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    port = free_port()
    proc = Process("-m", "wsline", command, "--port", str(port), "--redis", redis_server.url, "--workers=3")
    match = proc.wait_for_line(READY)
    assert match.group(1) == command and match.group(2) == "3"
    assert f"127.0.0.1:{port}/" in match.string
    assert len(_children(proc.popen.pid)) >= 3  # and multiprocessing's resource tracker
    time.sleep(0.5)  # nothing more comes from the workers
    assert proc.stop() == 0, proc.describe()
    assert len(proc.stdout) == 2, proc.describe()
    assert proc.stdout[1] == "shutting down\n"
    assert _quiet(proc.stderr) == [], proc.describe()


def test_workers_port_taken_said_once(redis_server: RedisServer) -> None:  # noqa: F811
    with socket.create_server((HOST, 0)) as taken:  # no SO_REUSEPORT: nobody else gets the port
        port = taken.getsockname()[1]
        args = ("chat", "--port", str(port), "--redis", redis_server.url, "--workers", "3")
        proc = Process("-m", "wsline", *args)
        assert proc.wait(30) == 1, proc.describe()
    assert proc.stdout == [], proc.describe()
    errors = _quiet(proc.stderr)
    assert len(errors) == 1 and re.match(r"error: .*address already in use", errors[0], re.I), proc.describe()


def test_workers_unreachable_redis_said_once() -> None:
    url = f"redis://{HOST}:{free_port()}/0"
    proc = Process("-m", "wsline", "relay", "--port", str(free_port()), "--redis", url, "--workers", "3")
    assert proc.wait(30) == 1, proc.describe()
    assert proc.stdout == [], proc.describe()
    errors = _quiet(proc.stderr)
    assert len(errors) == 1 and errors[0].startswith(f"error: cannot reach Redis at {url}: "), proc.describe()


def _quiet(stderr: list[str]) -> list[str]:
    """stderr without the redis package's deprecation warning (two lines per process).

    The warning comes from wsline.hub_redis handing redis's asyncio client a
    synchronous ``Retry``; it is not the runner's to silence.
    """
    lines = [line for line in stderr if "_to_async_retry(retry)" not in line]
    return [line for line in lines if "A synchronous redis.retry.Retry was passed" not in line]


# ------------------------------------------------------------------ one chat, one relay, over two workers


async def _chat_client(port: int) -> tuple[wsline.WebSocket, str]:
    """A protocol-2 chat client and the worker (hub id) it landed on."""
    ws = await wsline.connect(f"ws://{HOST}:{port}/ws", ping_interval=None)
    await ws.send(json.dumps({"type": "hello", "protocol": 2}))
    hello = json.loads(str(await ws.recv(timeout=5)))
    assert hello["type"] == "hello" and hello["protocol"] == 2
    return ws, str(hello["node"])


async def _event(ws: wsline.WebSocket) -> dict[str, object]:
    event = json.loads(str(await ws.recv(timeout=5)))
    assert isinstance(event, dict)
    return event


def test_chat_workers_share_names_and_member_lists(redis_server: RedisServer) -> None:  # noqa: F811
    port = free_port()
    proc = Process("-m", "wsline", "chat", "--port", str(port), "--redis", redis_server.url, "--workers", "2")
    proc.wait_for_line(READY)

    async def run() -> None:
        by_node: dict[str, list[wsline.WebSocket]] = {}
        opened = []
        for _ in range(40):  # the kernel spreads connections over the workers
            ws, node = await _chat_client(port)
            opened.append(ws)
            by_node.setdefault(node, []).append(ws)
            if len(by_node) == 2 and all(len(v) >= 2 for v in by_node.values()):
                break
        (a1, a2), (b1, b2) = (v[:2] for v in by_node.values())
        try:
            await a1.send(json.dumps({"type": "join", "name": "alice", "since": None}))
            welcome = await _event(a1)
            assert welcome["type"] == "welcome" and welcome["members"] == ["alice"]
            assert (await _event(a1))["type"] == "joined"  # its own join
            for ws, name in ((b1, "ALICE"), (a2, "Alice"), (b2, "alice")):  # taken, in any case, anywhere
                await ws.send(json.dumps({"type": "join", "name": name}))
                assert (await _event(ws))["code"] == "name_taken"
            await b1.send(json.dumps({"type": "join", "name": "bob"}))
            welcome = await _event(b1)
            assert welcome["members"] == ["alice", "bob"]
            own = await _event(b1)
            joined = await _event(a1)  # on the other worker, once
            assert own == joined and joined["name"] == "bob" and joined["members"] == ["alice", "bob"]
            with pytest.raises(TimeoutError):
                await a1.recv(timeout=0.3)  # and only once
            await b1.close()
            left = await _event(a1)
            assert left["type"] == "left" and left["members"] == ["alice"]
        finally:
            for ws in opened:
                await ws.close()

    try:
        asyncio.run(run())
    finally:
        assert proc.stop() == 0, proc.describe()


def test_relay_workers_resume_with_since(redis_server: RedisServer) -> None:  # noqa: F811
    port = free_port()
    proc = Process(
        "-m", "wsline", "relay", "--port", str(port), "--redis", redis_server.url, "--workers", "2"
    )
    proc.wait_for_line(READY)

    async def run() -> None:
        url = f"ws://{HOST}:{port}/game"
        sender = await wsline.connect(url, ping_interval=None)
        reader = await wsline.connect(url + "?since=", ping_interval=None)
        await asyncio.sleep(0.3)  # both joined (whichever worker they are on)
        for i in range(3):
            await sender.send(f"m{i}")
        got = [str(await reader.recv(timeout=5)) for _ in range(3)]
        assert [m.split("\n", 1)[1] for m in got] == ["m0", "m1", "m2"]
        last = got[-1].split("\n", 1)[0]
        await reader.close()
        for i in range(3, 6):
            await sender.send(f"m{i}")
        await sender.send(b"\x00\x01")
        await asyncio.sleep(0.2)
        for _ in range(3):  # reconnect anywhere: what was missed, once, in order
            back = await wsline.connect(f"{url}?since={last}", ping_interval=None)
            missed = [await back.recv(timeout=5) for _ in range(4)]
            assert [str(m).split("\n", 1)[1] for m in missed[:3]] == ["m3", "m4", "m5"]
            assert isinstance(missed[3], bytes) and missed[3].endswith(b"\n\x00\x01")
            with pytest.raises(TimeoutError):
                await back.recv(timeout=0.2)
            await back.close()
        gone = await wsline.connect(f"{url}?since=0123456789ab:7", ping_interval=None)
        assert str(await gone.recv(timeout=5)).startswith("!reset ")  # another epoch: cannot recover
        await gone.close()
        await sender.close()

    try:
        asyncio.run(run())
    finally:
        assert proc.stop() == 0, proc.describe()
