"""The callback API (wsline.Listener) on real loopback sockets."""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any, ClassVar

import pytest

import wsline
from conftest import HOST, client, ws_url
from wsline.errors import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK


class Recorder(wsline.Listener):
    """Echoes, and records every callback in a class-level log."""

    log: ClassVar[list[tuple[str, Any]]] = []
    instances: ClassVar[list[Recorder]] = []

    def __init__(self) -> None:
        Recorder.instances.append(self)

    def on_open(self) -> None:
        self.log.append(("open", self.ws.request.path))

    def on_message(self, message: wsline.Data) -> None:
        self.log.append(("message", message))
        if message == "close me":
            self.ws.close_nowait(4000, "asked")
        elif message == "boom":
            raise RuntimeError("listener bug")
        else:
            self.ws.send_nowait(message)

    def on_close(self, exc: ConnectionClosed) -> None:
        self.log.append(("close", (type(exc).__name__, exc.code)))


@pytest.fixture(autouse=True)
def fresh_log() -> None:
    Recorder.log = []
    Recorder.instances = []


async def wait_for(predicate: Any, timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def test_echo_and_callbacks_in_order(start_server: Any) -> None:
    server = await start_server(Recorder)
    async with client(ws_url(server, "/room?x=1")) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        await ws.send(b"\x00\x01")
        assert await ws.recv() == b"\x00\x01"
        # Fragmented messages arrive whole.
        await ws.send(["frag", "ments"])
        assert await ws.recv() == "fragments"
        assert len(server.connections) == 1
    await wait_for(lambda: Recorder.log and Recorder.log[-1][0] == "close")
    assert Recorder.log == [
        ("open", "/room"),
        ("message", "hello"),
        ("message", b"\x00\x01"),
        ("message", "fragments"),
        ("close", ("ConnectionClosedOK", 1000)),
    ]
    await wait_for(lambda: not server.connections)
    assert not server._tasks  # no task per connection


async def test_compressed_messages(start_server: Any) -> None:
    server = await start_server(Recorder)
    async with client(ws_url(server)) as ws:
        assert ws.response.headers.get("Sec-WebSocket-Extensions", "").startswith("permessage-deflate")
        text = "compress me " * 500
        await ws.send(text)
        assert await ws.recv() == text


async def test_frames_in_the_handshake_packet_are_delivered(start_server: Any, raw_client: Any) -> None:
    """A message sent in the same segment as the upgrade request reaches on_message."""
    server = await start_server(Recorder)
    raw = await raw_client(server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET / HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    await raw.send(request + raw.frame(1, b"early") + raw.frame(1, b"bird"))
    response = await raw.read_response()
    assert response.status == 101
    assert (await raw.read_frame()).payload == b"early"
    assert (await raw.read_frame()).payload == b"bird"
    await raw.send_close()
    assert await raw.read_close() == (1000, "")


async def test_close_nowait_from_a_callback(start_server: Any) -> None:
    server = await start_server(Recorder)
    async with client(ws_url(server)) as ws:
        await ws.send("close me")
        with pytest.raises(ConnectionClosedError) as info:  # 4000 is not a normal close
            await ws.recv()
        assert info.value.code == 4000
        assert info.value.reason == "asked"
    await wait_for(lambda: Recorder.log[-1][0] == "close")
    assert Recorder.log[-1] == ("close", ("ConnectionClosedError", 4000))


async def test_send_nowait_after_close_raises(start_server: Any) -> None:
    server = await start_server(Recorder)
    async with client(ws_url(server)) as ws:
        await ws.send("x")
        await ws.recv()
    await wait_for(lambda: Recorder.log[-1][0] == "close")
    listener = Recorder.instances[0]
    with pytest.raises(ConnectionClosed):
        listener.ws.send_nowait("too late")
    with pytest.raises(TypeError):
        listener.ws.send_nowait({"not": "sendable"})  # type: ignore[arg-type]


async def test_callback_exception_closes_1011_and_is_reported(start_server: Any, caplog: Any) -> None:
    server = await start_server(Recorder)
    async with client(ws_url(server)) as ws:
        await ws.send("boom")
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert info.value.code == 1011
    error = await asyncio.wait_for(server.errors.get(), 2)
    assert isinstance(error.error, RuntimeError)
    assert str(error.error) == "listener bug"
    assert "listener on_message failed" in caplog.text


class FailsToOpen(wsline.Listener):
    def on_open(self) -> None:
        raise ValueError("cannot open")


class FailsToInit(wsline.Listener):
    def __init__(self) -> None:
        raise ValueError("cannot init")


@pytest.mark.parametrize("cls", [FailsToOpen, FailsToInit])
async def test_failing_listener_setup_closes_1011(start_server: Any, cls: type[wsline.Listener]) -> None:
    server = await start_server(cls)
    async with client(ws_url(server)) as ws:
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert info.value.code == 1011
    error = await asyncio.wait_for(server.errors.get(), 2)
    assert isinstance(error.error, ValueError)


async def test_protocol_error_reaches_on_close(start_server: Any, raw_client: Any) -> None:
    server = await start_server(Recorder)
    raw = await raw_client(server.port)
    await raw.handshake()
    await raw.send_frame(1, b"\xff\xfe")  # invalid UTF-8
    assert (await raw.read_close())[0] == 1007
    await wait_for(lambda: Recorder.log and Recorder.log[-1][0] == "close")
    assert Recorder.log[-1] == ("close", ("ConnectionClosedError", 1007))


async def test_server_close_sends_1001_to_listener_connections(start_server: Any) -> None:
    server = await start_server(Recorder)
    ws = await client(ws_url(server))
    await ws.send("x")
    await ws.recv()
    await asyncio.wait_for(server.close(), 3)
    with pytest.raises(ConnectionClosedOK) as info:
        await ws.recv()
    assert info.value.code == 1001
    assert Recorder.log[-1] == ("close", ("ConnectionClosedOK", 1001))


async def test_peer_vanishing_calls_on_close_with_1006(start_server: Any, raw_client: Any) -> None:
    server = await start_server(Recorder)
    raw = await raw_client(server.port)
    await raw.handshake()
    raw.reset()
    await wait_for(lambda: Recorder.log and Recorder.log[-1][0] == "close")
    assert Recorder.log[-1] == ("close", ("ConnectionClosedError", 1006))
    await wait_for(lambda: not server.connections)


PAYLOAD = bytes(65536)


class Flooder(wsline.Listener):
    """Sends until the buffer is full, then waits for on_writable to send more."""

    paused_seen = 0
    writable_calls = 0
    sent = 0

    def on_open(self) -> None:
        self.pump()

    def pump(self) -> None:
        while not self.ws.writing_paused and Flooder.sent < 1000:
            self.ws.send_nowait(PAYLOAD)
            Flooder.sent += 1
        if self.ws.writing_paused:
            Flooder.paused_seen += 1
        elif Flooder.sent >= 1000:
            self.ws.close_nowait()

    def on_writable(self) -> None:
        Flooder.writable_calls += 1
        self.pump()


async def test_backpressure_with_writing_paused_and_on_writable(start_server: Any, raw_client: Any) -> None:
    server = await start_server(Flooder, write_limit=2**16)
    raw = await raw_client(server.port, rcvbuf=4096)  # small buffers: the pipe fills up
    await raw.handshake()
    await asyncio.sleep(0.2)
    assert Flooder.paused_seen >= 1
    assert 0 < Flooder.sent < 1000
    received = 0
    while True:
        frame = await raw.read_frame(timeout=5)
        if frame.opcode == 8:
            break
        assert frame.payload == PAYLOAD
        received += 1
    assert received == 1000
    assert Flooder.writable_calls >= 1
