"""The documentation's programs, run as a reader would run them.

Every program that a page of ``docs/`` shows as runnable is a file in
``docs/examples/`` (the pages include it with ``literalinclude``), and each one
is run here as a real process on loopback sockets:

- the servers are started on a free port, driven by real clients, then stopped
  with SIGINT or SIGTERM: the clients must get a close frame with 1001, and the
  process must exit 0 without a traceback;
- the programs that run on their own must exit 0, and where a page shows
  their output, print what the page shows (numbers aside: ports, errno);
- the systemd unit of the deployment guide is run for its ``ExecStart``.

The last tests check that this stays true: every example file is run here, and
every ``literalinclude`` of the pages names a file that exists.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest

import wsline

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
EXAMPLES = DOCS / "examples"
HOST = "127.0.0.1"
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PYTHONUNBUFFERED": "1"}

#: Seconds to wait for a program to say something or to end.
WAIT = 15.0
#: What a server example prints once it listens.
LISTENING = re.compile(r"listening on (?:ws|http)://127\.0\.0\.1:(\d+)/")

#: The example files, and the test functions that run them (checked below).
RUN_BY: dict[str, str] = {
    "quickstart_server.py": "test_quickstart_server_and_clients",
    "quickstart_client.py": "test_quickstart_server_and_clients",
    "sync_client.py": "test_quickstart_server_and_clients",
    "listener_server.py": "test_listener_server",
    "broadcast_app.py": "test_broadcast_app",
    "broadcast_rooms.py": "test_broadcast_rooms_in_one_process",
    "gate_tokens.py": "test_gate_tokens_prints_what_the_page_shows",
    "errors_demo.py": "test_errors_demo_prints_what_the_page_shows",
    "reconnect.py": "test_reconnect_prints_what_the_page_shows",
    "logging_json.py": "test_logging_json_writes_json_lines",
    "deploy/wsline-chat.service": "test_systemd_unit_command",
}
#: Example files that are not run: configuration for programs the suite does not have.
NOT_RUN = {"deploy/nginx.conf": "needs nginx; the page says it is not run by the tests"}


# ------------------------------------------------------------------ processes


class Program:
    """A program in a subprocess; stdout and stderr are collected by threads."""

    def __init__(self, *argv: str) -> None:
        self.argv = argv
        self.popen = subprocess.Popen(
            argv,
            cwd=EXAMPLES,
            env=ENV,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._collect, args=(self.popen.stdout, self.stdout, True), daemon=True),
            threading.Thread(target=self._collect, args=(self.popen.stderr, self.stderr, False), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _collect(self, stream: Any, into: list[str], lines: bool) -> None:
        for line in stream:
            into.append(line)
            if lines:
                self._lines.put(line)
        if lines:
            self._lines.put(None)

    def describe(self) -> str:
        return (
            f"{' '.join(self.argv)}\n--- stdout\n{''.join(self.stdout)}--- stderr\n{''.join(self.stderr)}"
        )

    def wait_for(self, pattern: re.Pattern[str], timeout: float = WAIT) -> re.Match[str]:
        """The first stdout line matching ``pattern`` (the test fails after ``timeout``)."""
        end = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                self.kill()
                pytest.fail(f"no line matching {pattern.pattern!r} from:\n{self.describe()}")
            match = pattern.search(line)
            if match is not None:
                return match

    def wait(self, timeout: float = WAIT) -> int:
        try:
            rc = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"did not exit within {timeout} s:\n{self.describe()}")
        for reader in self._readers:
            reader.join(5)
        return rc

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def assert_clean_exit(self, rc: int) -> None:
        assert rc == 0, self.describe()
        assert "Traceback" not in "".join(self.stderr), self.describe()


def python(script: str, *args: str) -> Program:
    return Program(sys.executable, str(EXAMPLES / script), *args)


def run_to_end(script: str, *args: str, timeout: float = 60.0) -> Program:
    """Run a program that ends by itself; it must exit 0 without a traceback."""
    program = python(script, *args)
    program.assert_clean_exit(program.wait(timeout))
    return program


@contextmanager
def server_program(argv: list[str], ready: re.Pattern[str] = LISTENING) -> Iterator[tuple[Program, int]]:
    """A server program, and the port it says it listens on; killed if the test did not stop it."""
    program = Program(*argv)
    try:
        port = int(program.wait_for(ready).group(1))
        yield program, port
    finally:
        program.kill()


async def stop_with(program: Program, signum: int) -> None:
    """Send ``signum``; the program must exit 0 without a traceback."""
    program.popen.send_signal(signum)
    rc = await asyncio.to_thread(program.wait)
    program.assert_clean_exit(rc)


async def closed_code(ws: wsline.WebSocket, timeout: float = WAIT) -> int:
    """Read until the connection closes; the close code the server sent."""
    with pytest.raises(wsline.ConnectionClosed) as info:
        while True:
            await ws.recv(timeout=timeout)
    return info.value.code


@asynccontextmanager
async def clients(*uris: str) -> AsyncIterator[list[wsline.WebSocket]]:
    """Open connections (no keepalive, short timeouts); closed at the end if still open."""
    sockets = [await wsline.connect(uri, ping_interval=None, close_timeout=2) for uri in uris]
    try:
        yield sockets
    finally:
        for ws in sockets:
            await ws.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def page_block(page: str, command: str) -> str:
    """The ``text`` block of a page that starts with ``$ command``: what the page says it prints."""
    text = (DOCS / page).read_text(encoding="utf-8")
    match = re.search(r"```text\n\$ " + re.escape(command) + r"\n(.*?)```", text, re.DOTALL)
    assert match is not None, f"{page} shows no output of {command!r}"
    return match.group(1)


def without_numbers(text: str) -> str:
    return re.sub(r"\d+", "N", text)


# ------------------------------------------------------------------ the quick start


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_quickstart_server_and_clients(signum: int) -> None:
    with server_program([sys.executable, str(EXAMPLES / "quickstart_server.py"), "0"]) as (server, port):
        uri = f"ws://{HOST}:{port}/"

        client = await asyncio.to_thread(run_to_end, "quickstart_client.py", uri)
        assert client.stdout[0] == "received: hello\n"
        assert re.fullmatch(r"round trip: \d+\.\d ms\n", client.stdout[1])
        shown = page_block("quickstart.md", "python quickstart_client.py")
        assert without_numbers("".join(client.stdout)) == without_numbers(shown)

        sync = await asyncio.to_thread(run_to_end, "sync_client.py", uri)
        assert sync.stdout[:4] == [
            "received: one\n",
            "received: two\n",
            "received: three\n",
            "received: b'\\x00\\x01'\n",
        ]
        assert re.fullmatch(r"round trip: \d+\.\d ms\n", sync.stdout[4])

        # What Ctrl-C (SIGINT) and SIGTERM do: 1001 to every client, then a clean exit.
        async with clients(uri, uri + "chat") as (first, second):
            await first.send("still here?")
            assert await first.recv(timeout=5) == "still here?"
            server.popen.send_signal(signum)
            assert await closed_code(first) == 1001
            assert await closed_code(second) == 1001
        rc = await asyncio.to_thread(server.wait)
        server.assert_clean_exit(rc)
        assert server.stdout[-1] == "stopped\n"
        assert "connection from ('127.0.0.1', " in "".join(server.stdout)


async def test_quickstart_server_stops_when_its_clients_are_gone() -> None:
    """The last client left: Ctrl-C still ends the program cleanly.

    (A client comes and goes first. A signal sent within microseconds of the
    "listening" line can come before serve_forever() has installed its
    handlers, which happens on the event loop's next pass.)
    """
    with server_program([sys.executable, str(EXAMPLES / "quickstart_server.py"), "0"]) as (server, port):
        async with clients(f"ws://{HOST}:{port}/") as (ws,):
            await ws.send("bye")
            assert await ws.recv(timeout=5) == "bye"
        await stop_with(server, signal.SIGINT)
        assert server.stdout[-1] == "stopped\n"


async def test_quickstart_client_without_a_server_says_connect_refused() -> None:
    program = python("quickstart_client.py", f"ws://{HOST}:{free_port()}/")
    rc = await asyncio.to_thread(program.wait)
    assert rc == 1
    assert "wsline.errors.ConnectRefused" in "".join(program.stderr)


# ------------------------------------------------------------------ the callback API


async def test_listener_server() -> None:
    with server_program([sys.executable, str(EXAMPLES / "listener_server.py"), "0"]) as (server, port):
        async with clients(f"ws://{HOST}:{port}/") as (ws,):
            for message in ("a", b"b", "c"):
                await ws.send(message)
                assert await ws.recv(timeout=5) == message
            server.popen.send_signal(signal.SIGTERM)
            assert await closed_code(ws) == 1001
        rc = await asyncio.to_thread(server.wait)
        server.assert_clean_exit(rc)
        assert "closed with 1001 after 3 messages\n" in server.stdout


# ------------------------------------------------------------------ broadcast


async def test_broadcast_app() -> None:
    with server_program([sys.executable, str(EXAMPLES / "broadcast_app.py"), "0"]) as (server, port):
        conn = http.client.HTTPConnection(HOST, port, timeout=5)
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.status == 200
        assert "new WebSocket(`ws://${location.host}/ws`)" in response.read().decode()
        conn.close()

        uri = f"ws://{HOST}:{port}/ws"
        async with clients(uri, uri, uri) as everyone:
            await everyone[0].send("hello, wall")
            for ws in everyone:  # the sender included
                assert await ws.recv(timeout=5) == "hello, wall"
            await everyone[2].send(b"\x01\x02")
            for ws in everyone:
                assert await ws.recv(timeout=5) == b"\x01\x02"
            server.popen.send_signal(signal.SIGINT)
            for ws in everyone:
                assert await closed_code(ws) == 1001
        rc = await asyncio.to_thread(server.wait)
        server.assert_clean_exit(rc)


async def assert_silent(ws: wsline.WebSocket, wait: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        await ws.recv(timeout=wait)


async def test_broadcast_rooms_in_one_process() -> None:
    argv = [sys.executable, str(EXAMPLES / "broadcast_rooms.py"), "--port", "0"]
    with server_program(argv) as (server, port):
        base = f"ws://{HOST}:{port}"
        async with clients(f"{base}/lobby", f"{base}/lobby", f"{base}/other") as (alice, bob, carol):
            await alice.send("hi lobby")
            assert await bob.recv(timeout=5) == "hi lobby"
            await assert_silent(alice)  # exclude=ws: not back to the sender
            await assert_silent(carol)  # another room
            server.popen.send_signal(signal.SIGTERM)
            for ws in (alice, bob, carol):
                assert await closed_code(ws) == 1001
        rc = await asyncio.to_thread(server.wait)
        server.assert_clean_exit(rc)


# ------------------------------------------------------------------ Redis


class Redis:
    """A redis-server of its own on a free loopback port, for one test."""

    def __init__(self, tmp: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (make sysdeps installs it)")
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        argv = [binary, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no"]
        self.popen = subprocess.Popen(
            [*argv, "--dir", str(tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail("redis-server did not start")

    def stop(self) -> None:
        self.popen.terminate()
        self.popen.wait(10)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Redis]:
    server = Redis(tmp_path)
    try:
        yield server
    finally:
        server.stop()


async def test_broadcast_rooms_across_processes_over_redis(redis: Redis) -> None:
    """What the scale-out guide says: two processes on one Redis share the rooms."""
    script = str(EXAMPLES / "broadcast_rooms.py")
    with (
        server_program([sys.executable, script, "--port", "0", "--redis", redis.url]) as (one, port_one),
        server_program([sys.executable, script, "--port", "0", "--redis", redis.url]) as (two, port_two),
    ):
        async with clients(
            f"ws://{HOST}:{port_one}/lobby", f"ws://{HOST}:{port_two}/lobby", f"ws://{HOST}:{port_two}/other"
        ) as (alice, bob, carol):
            # Each process subscribes to the room when its first member joins:
            # publish until the other process has subscribed.
            deadline = time.monotonic() + 10
            for n in range(1000):
                await alice.send(f"hello {n}")
                try:
                    received = await bob.recv(timeout=0.2)
                except TimeoutError:
                    assert time.monotonic() < deadline, "nothing crossed over Redis"
                    continue
                assert received.startswith("hello ")
                break
            await bob.send("hello back")
            assert await alice.recv(timeout=5) == "hello back"
            await assert_silent(carol)
            for program in (one, two):
                program.popen.send_signal(signal.SIGTERM)
            assert await closed_code(alice) == 1001
            assert await closed_code(bob) == 1001
        for program in (one, two):
            program.assert_clean_exit(await asyncio.to_thread(program.wait))


# ------------------------------------------------------------------ programs that end by themselves


def test_gate_tokens_prints_what_the_page_shows() -> None:
    program = run_to_end("gate_tokens.py")
    assert "".join(program.stdout) == page_block("guides/gatekeeping.md", "python gate_tokens.py")


def test_errors_demo_prints_what_the_page_shows() -> None:
    program = run_to_end("errors_demo.py")
    shown = page_block("guides/errors.md", "python errors_demo.py")
    assert without_numbers("".join(program.stdout)) == without_numbers(shown)


def test_reconnect_prints_what_the_page_shows() -> None:
    program = run_to_end("reconnect.py")
    assert "".join(program.stdout) == page_block("guides/connections.md", "python reconnect.py")


def test_logging_json_writes_json_lines() -> None:
    program = run_to_end("logging_json.py")
    records = [json.loads(line) for line in program.stderr]
    assert records, program.describe()
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys()
        assert record["time"].endswith("Z")
    joined = [r for r in records if r["message"] == "joined /room"]
    assert len(joined) == 1
    assert joined[0]["logger"] == "wsline"
    assert joined[0]["room"] == "/room"
    assert re.fullmatch(r"\d{3}-[0-9a-f]+", joined[0]["conn_id"])
    assert re.fullmatch(r"127\.0\.0\.1:\d+", joined[0]["remote"])
    assert any(r["logger"] == "wsline.server" and r["message"].startswith("listening on") for r in records)
    # The page's sample output has the same shape.
    text = (DOCS / "guides" / "logging.md").read_text(encoding="utf-8")
    shown = re.search(r"```text\n(\{.*?)```", text, re.DOTALL)
    assert shown is not None
    for line in shown.group(1).splitlines():
        assert {"time", "level", "logger", "message"} <= json.loads(line).keys()


def test_readme_example_runs() -> None:
    """The README's one program (its "Using it" section), as printed there."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Using it\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    program = Program(sys.executable, "-c", match.group(1))
    program.assert_clean_exit(program.wait())
    lines = program.stdout
    assert lines[0].startswith("new connection to /chat from ('127.0.0.1', ")
    assert lines[1] == "hello\n"
    assert re.fullmatch(r"round trip [0-9.e-]+ s\n", lines[2])


# ------------------------------------------------------------------ the deployment guide


def exec_start(unit: Path) -> list[str]:
    for line in unit.read_text(encoding="utf-8").splitlines():
        if line.startswith("ExecStart="):
            return shlex.split(line.removeprefix("ExecStart="))
    raise AssertionError(f"no ExecStart in {unit}")


async def test_systemd_unit_command(redis: Redis) -> None:
    """The unit's command, with this machine's Python, a free port and a test Redis."""
    argv = exec_start(EXAMPLES / "deploy" / "wsline-chat.service")
    assert argv[0].endswith("/bin/python") and argv[1:3] == ["-m", "wsline"]
    port = free_port()
    options = {"--port": str(port), "--redis": redis.url}
    command = [sys.executable, *argv[1:]]
    for i, word in enumerate(command):
        if word in options:
            command[i + 1] = options[word]
    assert "--workers" in command
    ready = re.compile(r"chat on http://127\.0\.0\.1:(\d+)/ .* in 2 worker processes; Ctrl-C stops it")
    with server_program(command, ready) as (server, listening):
        assert listening == port
        async with clients(f"ws://{HOST}:{port}/ws") as (ws,):
            await ws.send(json.dumps({"type": "join", "name": "systemd"}))
            welcome = json.loads(await ws.recv(timeout=5))
            assert welcome["type"] == "welcome"
            server.popen.send_signal(signal.SIGTERM)  # systemctl stop
            assert await closed_code(ws) == 1001
        rc = await asyncio.to_thread(server.wait)
        server.assert_clean_exit(rc)
        assert "shutting down\n" in server.stdout


# ------------------------------------------------------------------ keeping it true


def example_files() -> set[str]:
    return {str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*") if p.is_file() and p.suffix != ".pyc"}


def test_every_example_is_run_here() -> None:
    files = example_files() - {f for f in example_files() if "__pycache__" in f}
    assert files == set(RUN_BY) | set(NOT_RUN)
    tests = {name for name in globals() if name.startswith("test_")}
    assert set(RUN_BY.values()) <= tests


def test_every_literalinclude_names_an_example() -> None:
    included: set[str] = set()
    for page in DOCS.rglob("*.md"):
        if "_build" in page.parts or "_generated" in page.parts:
            continue
        for target in re.findall(r"```\{literalinclude\}\s+(\S+)", page.read_text(encoding="utf-8")):
            path = (page.parent / target).resolve()
            assert path.is_file(), f"{page.relative_to(DOCS)} includes {target}, which does not exist"
            assert path.is_relative_to(EXAMPLES), f"{page.relative_to(DOCS)} includes {target}"
            included.add(str(path.relative_to(EXAMPLES)))
    assert included <= set(RUN_BY) | set(NOT_RUN)
    assert included == set(RUN_BY) | set(NOT_RUN), f"examples no page shows: {sorted(set(RUN_BY) - included)}"


def test_examples_pass_ruff() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", str(EXAMPLES)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
