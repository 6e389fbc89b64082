"""`--workers N`: N relay processes share one port (SO_REUSEPORT) and one Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import wsline
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
