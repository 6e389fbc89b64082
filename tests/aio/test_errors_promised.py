"""Errors as promised: every failure a user meets is a wsline.WebSocketError; misuse gets a hint at once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import wsline
from conftest import HOST, echo, free_port

SRC = str(Path(__file__).resolve().parents[2] / "src")


async def test_refused_connection_is_a_websocket_error_and_a_connection_refused_error() -> None:
    port = free_port()
    with pytest.raises(wsline.ConnectRefused) as info:
        await wsline.connect(f"ws://{HOST}:{port}/", proxy=None)
    exc = info.value
    assert isinstance(exc, wsline.WebSocketError)
    assert isinstance(exc, wsline.ConnectFailed)
    assert isinstance(exc, ConnectionRefusedError)  # code that catches the OSError keeps working
    assert f"{HOST}:{port}" in str(exc)
    assert isinstance(exc.__cause__, ConnectionRefusedError)


async def test_unknown_host_is_connect_failed() -> None:
    with pytest.raises(wsline.ConnectFailed) as info:
        await wsline.connect("ws://no-such-host.invalid/", proxy=None, open_timeout=5)
    assert isinstance(info.value, OSError)
    assert "no-such-host.invalid" in str(info.value)


async def test_wss_to_a_plain_server_fails_fast_with_a_hint() -> None:
    async with wsline.serve(echo, HOST, 0, ping_interval=None) as server:
        start = time.monotonic()
        with pytest.raises(wsline.InvalidHandshake) as info:
            await wsline.connect(f"wss://{HOST}:{server.port}/", proxy=None, open_timeout=5)
    assert time.monotonic() - start < 3  # the plain server answers 400 at once: no timeout
    assert "TLS handshake" in str(info.value)
    assert "ws:// server" in str(info.value)


async def test_open_timeout_is_a_websocket_error_and_a_timeout_error() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    server = await asyncio.start_server(silent, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(wsline.OpenTimeout) as info:
            await wsline.connect(f"ws://{HOST}:{port}/", proxy=None, open_timeout=0.3)
    finally:
        server.close()
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, wsline.WebSocketError)
    assert "timed out after 0.3 s" in str(info.value)


async def test_with_connect_says_async_with_or_sync() -> None:
    with pytest.raises(TypeError, match=r"async with wsline\.connect.*wsline\.sync\.connect"):
        with wsline.connect(f"ws://{HOST}:1/"):  # type: ignore[attr-defined]
            pass


async def test_with_serve_says_async_with() -> None:
    with pytest.raises(TypeError, match=r"async with wsline\.serve"):
        with wsline.serve(echo, HOST, 0):  # type: ignore[attr-defined]
            pass


def test_asyncio_run_of_serve_names_no_private_class() -> None:
    with pytest.raises(ValueError) as info:
        asyncio.run(wsline.serve(echo, HOST, 0))  # type: ignore[arg-type]
    text = str(info.value)
    assert "_Serve" not in text
    assert "async with wsline.serve(...)" in text


def test_a_plain_def_handler_is_refused_at_serve_time() -> None:
    def handler(ws: wsline.WebSocket) -> None:  # forgot "async"
        pass

    with pytest.raises(TypeError, match="async def"):
        wsline.serve(handler, HOST, 0)  # type: ignore[arg-type]


def test_async_callables_of_every_kind_are_accepted() -> None:
    import functools

    async def handler(ws: wsline.WebSocket, extra: int) -> None:
        pass

    class Callable:
        async def __call__(self, ws: wsline.WebSocket) -> None:
            pass

    wsline.serve(functools.partial(handler, extra=1), HOST, 0)
    wsline.serve(Callable(), HOST, 0)
    wsline.serve(wsline.Router(), HOST, 0)


SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    import wsline

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async def main():
        async with wsline.serve(echo, "127.0.0.1", 0, ping_interval=None) as server:
            print(server.port, flush=True)
            await server.serve_forever()
        print("stopped", flush=True)

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_serve_forever_script_stops_cleanly_on_signals(signum: int) -> None:
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None
        port = int(await asyncio.to_thread(proc.stdout.readline))
        async with wsline.connect(f"ws://{HOST}:{port}/", ping_interval=None, proxy=None) as ws:
            await ws.send("before")
            assert await ws.recv() == "before"
            proc.send_signal(signum)
            with pytest.raises(wsline.ConnectionClosedOK) as info:
                await asyncio.wait_for(ws.recv(), 5)
        assert info.value.code == 1001
        out, err = await asyncio.to_thread(proc.communicate, timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.strip() == "stopped"
    assert "Traceback" not in err


async def test_two_concurrent_recv_calls_are_a_concurrency_error() -> None:
    async with wsline.serve(echo, HOST, 0, ping_interval=None) as server:
        async with wsline.connect(f"ws://{HOST}:{server.port}/", ping_interval=None, proxy=None) as ws:
            first = asyncio.ensure_future(ws.recv())
            await asyncio.sleep(0)
            with pytest.raises(wsline.ConcurrencyError) as info:
                await ws.recv()
            assert isinstance(info.value, RuntimeError)
            await ws.send("x")
            assert await first == "x"


TYPED_USE = '''
import wsline
from wsline.sync import connect as sync_connect


async def main(ws: wsline.WebSocket) -> None:
    await ws.send({"a": 1})
    await ws.send(["a", "b"])
    await ws.send(piece for piece in [b"a", b"b"])
    await ws.send("text")


def blocking() -> None:
    with sync_connect("ws://h/") as ws:
        ws.send({"a": 1})
        ws.send((b"a", b"b"))
'''


def test_the_types_refuse_send_of_a_dict(tmp_path: Path) -> None:
    from mypy import api

    source = tmp_path / "use.py"
    source.write_text(TYPED_USE)
    out, err, status = api.run(["--strict", "--no-incremental", "--python-version", "3.10", str(source)])
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert status == 1, out + err
    lines = sorted(int(line.split(":")[1]) for line in errors)
    assert lines == [7, 15], out  # the two dicts, nothing else
