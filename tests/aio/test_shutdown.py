"""Graceful shutdown: SIGTERM/SIGINT or Server.close() closes every connection with 1001,
and every message a handler handed to the transport before that reaches the client first."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import wsline
from conftest import client, ws_url
from wsline.errors import ConnectionClosedOK

ROOT = Path(__file__).resolve().parents[2]

#: Makes each message 1 KB, so that the megabytes in socket buffers are few messages.
PADDING = "x" * 1000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def producer(ws: wsline.WebSocket) -> None:
    """Sends numbered messages as fast as the client takes them, until the connection closes."""
    i = 0
    while True:
        await ws.send(f"{i} {PADDING}")
        i += 1


async def read_until_closed(ws: Any) -> tuple[list[str], int]:
    received: list[str] = []
    try:
        while True:
            received.append(await asyncio.wait_for(ws.recv(), 10))
    except ConnectionClosedOK as exc:
        return received, exc.code


async def test_server_close_delivers_everything_sent_before_the_close_frame(start_server: Any) -> None:
    server = await start_server(producer, close_timeout=10, compression=None)
    clients = [await client(ws_url(server)) for _ in range(5)]
    await asyncio.sleep(0.2)  # the producers are running, their buffers full
    readers = [asyncio.ensure_future(read_until_closed(ws)) for ws in clients]
    await asyncio.sleep(0.05)
    await asyncio.wait_for(server.close(), 10)
    for reader in readers:
        received, code = await asyncio.wait_for(reader, 10)
        assert code == 1001
        assert len(received) > 100
        # No gap and no reordering: what was sent before the close frame all arrived.
        assert received == [f"{i} {PADDING}" for i in range(len(received))]
    for ws in clients:
        await ws.close()
    assert not server.connections


def start_cli(port: int, *args: str) -> subprocess.Popen[str]:
    """``python -m wsline echo`` on ``port``, once it says it is listening."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsline", "echo", "--host", "127.0.0.1", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "wsline ... echo server on ws://...": listening
    if "echo server on" not in line:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the echo server did not start: {line}{out}{err}")
    return proc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_cli_server_signal_closes_1001_after_pending_echoes_and_exits_0(sig: signal.Signals) -> None:
    port = free_port()
    proc = start_cli(port)
    try:
        conns = [await client(f"ws://127.0.0.1:{port}/", max_queue=None) for _ in range(3)]
        for ws in conns:
            await ws.send("warm-up")
            assert await ws.recv() == "warm-up"
        # Pipelined messages in flight when the signal arrives: the echoes the
        # server sent must all arrive, in order, before its 1001 close frame.
        for ws in conns:
            for i in range(2000):
                await ws.send(f"m{i}")
        proc.send_signal(sig)
        for ws in conns:
            received, code = await read_until_closed(ws)
            assert code == 1001
            assert received == [f"m{i}" for i in range(len(received))]
            await ws.close()
        rc = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 15)
        assert rc == 0, proc.stderr.read() if proc.stderr else ""
        # Once the server stopped, nothing listens any more.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


async def test_closed_connections_are_freed_without_the_cycle_collector(start_server: Any) -> None:
    """No reference cycle keeps a closed connection (and its compression state) alive."""
    import gc
    import weakref

    refs: list[weakref.ref[wsline.WebSocket]] = []

    async def handler(ws: wsline.WebSocket) -> None:
        refs.append(weakref.ref(ws))
        if ws.request.path == "/recv":
            try:
                while True:
                    await ws.send(await ws.recv())
            except wsline.ConnectionClosed:
                pass
        else:
            async for message in ws:
                await ws.send(message)

    server = await start_server(handler)
    client_refs: list[weakref.ref[wsline.WebSocket]] = []
    gc.collect()
    gc.disable()
    try:
        for path in ("/", "/recv") * 20:
            ws = await client(ws_url(server, path))
            client_refs.append(weakref.ref(ws))
            await ws.send("x" * 100)
            assert await ws.recv() == "x" * 100
            if path == "/recv":
                await ws.close(4000, "error close")
            else:
                await ws.close()
            del ws
        await asyncio.sleep(0.3)  # the handlers finish
        alive = sum(r() is not None for r in refs)
        alive_clients = sum(r() is not None for r in client_refs)
    finally:
        gc.enable()
    assert len(refs) == 40
    assert alive == 0, f"{alive} server connections alive without a GC pass"
    assert alive_clients == 0, f"{alive_clients} client connections alive without a GC pass"


async def test_close_completes_behind_a_full_receive_queue(start_server: Any) -> None:
    """A handler that stopped reading (queue full, reading paused) still gets the peer's close frame."""
    done = asyncio.get_running_loop().create_future()

    async def never_reads(ws: wsline.WebSocket) -> None:
        await asyncio.sleep(0.3)  # the client fills the queue meanwhile
        start = asyncio.get_running_loop().time()
        await ws.close(1000, "bye")
        done.set_result((asyncio.get_running_loop().time() - start, ws.close_code))

    server = await start_server(never_reads, max_queue=4, close_timeout=5)
    async with client(ws_url(server), close_timeout=5) as ws:
        for i in range(200):
            await ws.send(f"m{i}")
        with pytest.raises(ConnectionClosedOK):
            await asyncio.wait_for(ws.recv(), 5)
    elapsed, code = await asyncio.wait_for(done, 5)
    assert code == 1000
    assert elapsed < 1.0, f"close took {elapsed:.2f} s: the client's close frame was not read"
