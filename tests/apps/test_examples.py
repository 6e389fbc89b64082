"""The examples and the chat demo, run as real processes and driven over real sockets.

Every program here starts with ``sys.executable`` and ``PYTHONPATH=<repo>/src``
on a free port (``--port 0``: the program prints the one it got), exactly as
a user would run it from the repository root.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import wsline
from wsline.apps import chat as wsline_chat

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PYTHONUNBUFFERED": "1"}

#: Seconds to wait for a program to print something or to exit.
WAIT = 10.0
#: Seconds to wait for a chat event.
EVENT_WAIT = 3.0

#: The line a chat server prints once it listens.
CHAT_READY = re.compile(r"chat on http://127\.0\.0\.1:(\d+)/ \(WebSocket at ws://127\.0\.0\.1:\d+/ws\)")


# ------------------------------------------------------------------ processes


class Process:
    """A Python program in a subprocess, its stdout and stderr collected by threads."""

    def __init__(self, *args: str, stdin: str | None = None) -> None:
        self.args = args
        self.popen = subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO,
            env=ENV,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._read, args=(self.popen.stdout, self.stdout, True), daemon=True),
            threading.Thread(target=self._read, args=(self.popen.stderr, self.stderr, False), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        if stdin is not None:
            assert self.popen.stdin is not None
            self.popen.stdin.write(stdin)
            self.popen.stdin.close()

    def _read(self, stream: Any, into: list[str], signal_lines: bool) -> None:
        for line in stream:
            into.append(line)
            if signal_lines:
                self._lines.put(line)
        if signal_lines:
            self._lines.put(None)

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float = WAIT) -> re.Match[str]:
        """The first stdout line matching ``pattern`` (fails the test after ``timeout``)."""
        end = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:  # timed out, or the program's stdout ended
                if self.popen.poll() is None:
                    self.popen.kill()
                    self.popen.wait()
                pytest.fail(f"{self.describe()}\ndid not print a line matching {pattern.pattern!r}")
            match = pattern.search(line)
            if match is not None:
                return match

    def wait(self, timeout: float = WAIT) -> int:
        try:
            rc = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            pytest.fail(f"{self.describe()} did not exit within {timeout} s")
        for thread in self._threads:
            thread.join(2)
        return rc

    def stop(self) -> int:
        """SIGTERM, then the exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        return self.wait()

    def describe(self) -> str:
        return (
            f"`python {' '.join(self.args)}` (exit {self.popen.poll()})\n"
            f"--- stdout\n{''.join(self.stdout)}--- stderr\n{''.join(self.stderr)}"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a plain HTTP request (no proxy, whatever the environment says)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=WAIT)
    try:
        conn.request(method, parts.path or "/")
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


class Chat:
    """A running chat server process."""

    def __init__(self, proc: Process, port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}/"
        self.ws_url = f"ws://127.0.0.1:{port}/ws"


def start_chat(*args: str) -> Chat:
    """Start a chat server (``python -m wsline chat --port 0`` unless ``args`` say otherwise)."""
    proc = Process(*(args or ("-m", "wsline", "chat", "--port", "0")))
    port = int(proc.wait_for_line(CHAT_READY).group(1))
    return Chat(proc, port)


@pytest.fixture
def chat() -> Iterator[Chat]:
    server = start_chat()
    yield server
    assert server.proc.stop() == 0, server.proc.describe()


# ------------------------------------------------------------------ chat protocol helpers


async def recv_event(ws: wsline.WebSocket, timeout: float = EVENT_WAIT) -> dict[str, Any]:
    message = await ws.recv(timeout=timeout)
    assert isinstance(message, str)
    event = json.loads(message)
    assert isinstance(event, dict)
    return event


async def send_event(ws: wsline.WebSocket, **event: Any) -> None:
    await ws.send(json.dumps(event))


async def join(ws: wsline.WebSocket, name: str) -> dict[str, Any]:
    """Join as ``name``; returns the welcome (the joined notice to self is read too)."""
    await send_event(ws, type="join", name=name)
    welcome = await recv_event(ws)
    assert welcome["type"] == "welcome", welcome
    joined = await recv_event(ws)
    assert joined == {"type": "joined", "name": welcome["name"], "members": welcome["members"]}
    return welcome


async def no_event(ws: wsline.WebSocket, timeout: float = 0.2) -> None:
    with pytest.raises(TimeoutError):
        event = await ws.recv(timeout=timeout)
        pytest.fail(f"unexpected event {event!r}")


def client(url: str, **kwargs: Any) -> wsline.connect:
    return wsline.connect(url, ping_interval=None, close_timeout=2, **kwargs)


@pytest.fixture
async def clients(chat: Chat) -> AsyncIterator[Any]:
    """A factory of chat clients that are all closed at the end."""
    opened: list[wsline.WebSocket] = []

    async def open_client(**kwargs: Any) -> wsline.WebSocket:
        ws = await client(chat.ws_url, **kwargs)
        opened.append(ws)
        return ws

    yield open_client
    for ws in opened:
        await ws.close()


# ------------------------------------------------------------------ the chat


def test_chat_page(chat: Chat) -> None:
    status, headers, body = http_get(chat.url)
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    page = body.decode("utf-8")
    assert "<title>wsline chat</title>" in page
    assert '+ location.host + "/ws";' in page and "new WebSocket(url)" in page
    # The fields stop where the server does (filled in from the server's constants).
    assert f'id="message" maxlength="{wsline_chat.MAX_TEXT_LENGTH}"' in page
    assert f'id="name" maxlength="{wsline_chat.MAX_NAME_LENGTH}"' in page
    assert "%MAX_" not in page
    # No external resources: nothing loaded from another host, and the CSP forbids it anyway.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    # User text goes in through textContent only.
    assert not re.search(r"innerHTML\s*=|outerHTML|insertAdjacentHTML|document\.write", page)
    status, _, body = http_get(chat.url, "HEAD")
    assert (status, body) == (200, b"")
    assert http_get(chat.url + "ws")[0] == 426  # the WebSocket endpoint, asked for a page
    assert http_get(chat.url + "nope")[0] == 404


async def test_chat_two_clients(clients: Any) -> None:
    alice = await clients()
    bob = await clients()

    welcome = await join(alice, "alice")
    assert welcome == {"type": "welcome", "name": "alice", "members": ["alice"]}

    # Names are compared case-insensitively; the refused client may choose again.
    await send_event(bob, type="join", name="Alice")
    refused = await recv_event(bob)
    assert refused["type"] == "error" and refused["code"] == "name_taken"
    assert "Alice" in refused["message"] and "taken" in refused["message"]
    await no_event(alice)

    welcome = await join(bob, " bob ")  # trimmed
    assert welcome == {"type": "welcome", "name": "bob", "members": ["alice", "bob"]}
    assert await recv_event(alice) == {"type": "joined", "name": "bob", "members": ["alice", "bob"]}

    # Messages go to everyone, the sender included, with the sender's name.
    await send_event(alice, type="message", text="hi bob <b>&amp;</b>")
    relayed = {"type": "message", "name": "alice", "text": "hi bob <b>&amp;</b>"}
    assert await recv_event(alice) == relayed
    assert await recv_event(bob) == relayed
    await send_event(bob, type="message", text="hi alice ✓")
    relayed = {"type": "message", "name": "bob", "text": "hi alice ✓"}
    assert await recv_event(bob) == relayed
    assert await recv_event(alice) == relayed

    # Joining twice is an error; the connection stays usable.
    await send_event(bob, type="join", name="robert")
    assert (await recv_event(bob))["code"] == "already_joined"

    # Leaving (a normal close) is announced with the new member list; the name is free again.
    await bob.close()
    assert await recv_event(alice) == {"type": "left", "name": "bob", "members": ["alice"]}
    bob2 = await clients()
    assert (await join(bob2, "bob"))["members"] == ["alice", "bob"]
    assert (await recv_event(alice))["type"] == "joined"


async def test_chat_refuses_bad_input(clients: Any) -> None:
    ws = await clients()
    for name in ["", "   ", "x" * 25, 42, None, "esc\x1b[31m", "bell\x07", "zero\u200bwidth"]:
        await send_event(ws, type="join", name=name)
        error = await recv_event(ws)
        assert error["type"] == "error" and error["code"] == "name_invalid", (name, error)
    await send_event(ws, type="message", text="before joining")
    assert (await recv_event(ws))["code"] == "not_joined"
    await ws.send("not json")
    assert (await recv_event(ws))["code"] == "bad_message"
    await ws.send(b"\x00binary")
    assert (await recv_event(ws))["code"] == "bad_message"

    await join(ws, "x" * 24)  # the longest name allowed
    for text in ["", "   ", "x" * 2001, 7, "bell\x07"]:
        await send_event(ws, type="message", text=text)
        error = await recv_event(ws)
        assert error["type"] == "error" and error["code"] == "text_invalid", (text, error)
    await send_event(ws, type="shout", text="hi")
    assert (await recv_event(ws))["code"] == "bad_message"
    for text in ["still here\nsecond line", "👩\u200d💻 emoji sequences stay whole"]:
        await send_event(ws, type="message", text=text)
        assert (await recv_event(ws))["text"] == text


async def test_chat_same_origin_check(chat: Chat, clients: Any) -> None:
    other = free_port()
    for origin in ["http://evil.example", f"http://127.0.0.1:{other}", "null"]:
        with pytest.raises(wsline.InvalidStatus) as info:
            await client(chat.ws_url, origin=origin)
        assert info.value.status == 403, origin
    # The page's own origin, and clients that send no Origin at all, get in.
    same = await clients(origin=f"http://127.0.0.1:{chat.port}")
    await join(same, "browser-like")
    cli = await clients()
    await join(cli, "cli")
    assert (await recv_event(same))["name"] == "cli"
    # The refusals are logged with the offending origin.
    for _ in range(50):
        if "evil.example" in "".join(chat.proc.stderr):
            break
        await asyncio.sleep(0.05)
    log = "".join(chat.proc.stderr)
    assert "refused WebSocket upgrade" in log and "403, Origin 'http://evil.example'" in log


async def test_chat_dead_client_does_not_break_relay(clients: Any) -> None:
    alice = await clients()
    bob = await clients()
    carol = await clients()
    await join(alice, "alice")
    await join(bob, "bob")
    await join(carol, "carol")
    assert (await recv_event(alice))["name"] == "bob"
    assert (await recv_event(alice))["name"] == "carol"
    assert (await recv_event(bob))["name"] == "carol"

    carol.abort()  # gone without a closing handshake
    await send_event(alice, type="message", text="anyone there?")
    for ws in (alice, bob):
        events = [await recv_event(ws), await recv_event(ws)]
        assert {"type": "message", "name": "alice", "text": "anyone there?"} in events
        assert {"type": "left", "name": "carol", "members": ["alice", "bob"]} in events


async def test_chat_many_clients(clients: Any) -> None:
    members = [await clients() for _ in range(20)]
    for i, ws in enumerate(members):
        await join(ws, f"user{i}")
    for i, ws in enumerate(members):  # the join notices of those who came later
        for j in range(i + 1, 20):
            assert await recv_event(ws) == {
                "type": "joined",
                "name": f"user{j}",
                "members": [f"user{k}" for k in range(j + 1)],
            }
    await send_event(members[7], type="message", text="to all")
    for ws in members:
        assert await recv_event(ws) == {"type": "message", "name": "user7", "text": "to all"}


async def test_chat_drops_a_client_that_does_not_read(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """In process: a member that stops reading is dropped; the others never wait on it for long."""
    caplog.set_level(logging.INFO, "wsline")
    monkeypatch.setattr(wsline_chat, "SEND_TIMEOUT", 0.3)
    async with wsline_chat.serve_chat("127.0.0.1", 0, ping_interval=None) as server:
        url = f"ws://127.0.0.1:{server.port}/ws"
        async with client(url) as alice, client(url) as carol:
            await join(alice, "alice")
            await join(carol, "carol")
            assert (await recv_event(alice))["name"] == "carol"

            # A raw client with a tiny receive buffer joins, then never reads again.
            loop = asyncio.get_running_loop()
            sleeper = socket.socket()
            sleeper.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sleeper.setblocking(False)
            try:
                await loop.sock_connect(sleeper, ("127.0.0.1", server.port))
                key = base64.b64encode(os.urandom(16)).decode()
                await loop.sock_sendall(
                    sleeper,
                    f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n".encode(),
                )
                head = b""
                while b"\r\n\r\n" not in head:
                    head += await loop.sock_recv(sleeper, 1024)
                assert head.startswith(b"HTTP/1.1 101 ")
                payload = json.dumps({"type": "join", "name": "sleeper"}).encode()
                # A masked text frame; the all-zero mask leaves the payload as it is.
                await loop.sock_sendall(sleeper, bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
                for ws in (alice, carol):
                    assert (await recv_event(ws))["name"] == "sleeper"

                # Chat until the server gives up on the sleeper.
                text = "x" * 2000
                sent = 0
                left = None
                while left is None and sent < 5000:
                    for _ in range(50):
                        await send_event(alice, type="message", text=text)
                    sent += 50
                    for ws in (alice, carol):
                        got = 0
                        while got < 50:
                            event = await recv_event(ws)
                            if event["type"] == "left":
                                left = event
                            else:
                                assert event == {"type": "message", "name": "alice", "text": text}
                                got += 1
                assert left == {"type": "left", "name": "sleeper", "members": ["alice", "carol"]}
                assert "chat: 'sleeper' is not reading; dropping the connection" in caplog.text
                await send_event(carol, type="message", text="still fine")
                for ws in (alice, carol):
                    event = await recv_event(ws)
                    while event["type"] == "left":  # the one not read yet
                        event = await recv_event(ws)
                    assert event == {"type": "message", "name": "carol", "text": "still fine"}
            finally:
                sleeper.close()


def test_python_m_wsline_chat_port() -> None:
    port = free_port()
    server = start_chat("-m", "wsline", "chat", "--host", "127.0.0.1", "--port", str(port))
    try:
        assert server.port == port
        status, _, body = http_get(f"http://127.0.0.1:{port}/")
        assert status == 200 and b"wsline chat" in body
    finally:
        assert server.proc.stop() == 0, server.proc.describe()
    assert "shutting down" in "".join(server.proc.stdout)


async def test_chat_example_server() -> None:
    server = start_chat(str(EXAMPLES / "chat" / "server.py"), "--port", "0")
    try:
        status, _, body = http_get(server.url)
        assert status == 200 and b"<title>wsline chat</title>" in body
        async with client(server.ws_url) as ws:
            await join(ws, "example")
            await send_event(ws, type="message", text="ping")
            assert (await recv_event(ws))["text"] == "ping"
    finally:
        assert server.proc.stop() == 0, server.proc.describe()
    assert "example joined" in "".join(server.proc.stderr)  # INFO logging is on


# ------------------------------------------------------------------ echo, repl, inbox/outbox

ECHO_READY = re.compile(r"echo server on ws://127\.0\.0\.1:(\d+)/")


@pytest.fixture
def echo_port() -> Iterator[int]:
    proc = Process(str(EXAMPLES / "echo_server.py"), "--port", "0")
    yield int(proc.wait_for_line(ECHO_READY).group(1))
    assert proc.stop() == 0, proc.describe()


async def test_echo_server(echo_port: int) -> None:
    async with client(f"ws://127.0.0.1:{echo_port}/anything") as ws:
        for message in ["hello", "", "ünïcödé", b"\x00\x01\xff", b"x" * 100_000]:
            await ws.send(message)
            assert await ws.recv(timeout=EVENT_WAIT) == message
    assert ws.close_code == 1000


def test_repl_client(echo_port: int) -> None:
    proc = Process(
        str(EXAMPLES / "repl_client.py"), f"ws://127.0.0.1:{echo_port}/", stdin="hello\nwörld\n\nlast\n"
    )
    assert proc.wait() == 0, proc.describe()
    assert proc.stdout == ["< hello\n", "< wörld\n", "< \n", "< last\n"], proc.describe()
    assert "closed: 1000" in "".join(proc.stderr)


def test_repl_client_talks_to_the_chat(chat: Chat) -> None:
    lines = [
        json.dumps({"type": "join", "name": "cli"}),
        json.dumps({"type": "message", "text": "hello from the terminal"}),
    ]
    proc = Process(str(EXAMPLES / "repl_client.py"), chat.ws_url, stdin="\n".join(lines) + "\n")
    assert proc.wait() == 0, proc.describe()
    events = [json.loads(line.removeprefix("< ")) for line in proc.stdout]
    assert events == [
        {"type": "welcome", "name": "cli", "members": ["cli"]},
        {"type": "joined", "name": "cli", "members": ["cli"]},
        {"type": "message", "name": "cli", "text": "hello from the terminal"},
    ]


def test_repl_client_server_goes_away() -> None:
    proc = Process(str(EXAMPLES / "echo_server.py"), "--port", "0")
    port = int(proc.wait_for_line(ECHO_READY).group(1))
    repl = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "repl_client.py"), f"ws://127.0.0.1:{port}/"],
        cwd=REPO,
        env=ENV,
        stdin=subprocess.PIPE,  # left open: the client waits for input
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert repl.stdin is not None and repl.stdout is not None
        repl.stdin.write("one\n")
        repl.stdin.flush()
        assert repl.stdout.readline() == "< one\n"
        assert proc.stop() == 0  # the server closes with 1001
        _, err = repl.communicate(timeout=WAIT)
        assert repl.returncode == 0, err
        assert "closed: 1001" in err
    finally:
        if repl.poll() is None:
            repl.kill()
            repl.communicate()


def test_repl_client_cannot_connect() -> None:
    proc = Process(str(EXAMPLES / "repl_client.py"), f"ws://127.0.0.1:{free_port()}/", stdin="")
    assert proc.wait() == 1
    assert "cannot connect" in "".join(proc.stderr)


def test_inbox_outbox() -> None:
    proc = Process(str(EXAMPLES / "inbox_outbox.py"))
    assert proc.wait() == 0, proc.describe()
    out = "".join(proc.stdout)
    assert re.match(r"server on ws://127\.0\.0\.1:\d+/\n", out)
    for question in ["hello", "how are you?", "bye"]:
        assert f"outbox: sent {question!r}\n" in out
        assert f"inbox: got {f'reply to {question!r}'!r}\n" in out
    for n in (1, 2, 3):
        assert f"inbox: got 'notice {n}'\n" in out
    assert out.endswith("done: 3 sent, 3 replies, 3 notices\n")
    assert proc.stderr == []


def test_examples_readme_lists_every_example() -> None:
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    programs = sorted(p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.rglob("*.py"))
    assert programs == [
        "chat/server.py",
        "echo_server.py",
        "inbox_outbox.py",
        "repl_client.py",
        "test_app_example.py",
    ]
    for program in programs:
        assert f"`python examples/{program}" in readme, program
