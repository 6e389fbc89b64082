"""``python -m wsline connect``, run as a subprocess against servers started by the tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import wsline
from conftest import HOST, free_port
from wsline.apps import cli
from wsline.apps.connect import format_message
from wsline.protocol.handshake import reject_response

pytestmark = pytest.mark.timeout(20)

SRC = Path(__file__).resolve().parents[2] / "src"
ENV = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONIOENCODING": "utf-8"}
SERVER_DEFAULTS: dict[str, Any] = {"ping_interval": None, "close_timeout": 0.5, "open_timeout": 2.0}
WAIT = 15.0  # generous: CI machines can be loaded


def run_connect(
    *args: str, input: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m wsline connect ARGS`` with ``input`` on stdin (then EOF)."""
    return subprocess.run(
        [sys.executable, "-m", "wsline", "connect", *args],
        input=input,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env or ENV,
        timeout=15,
    )


def default_sigint() -> None:
    """In the child: Ctrl-C as in a terminal, even when the test run itself ignores SIGINT
    (a shell starts background jobs that way, and children inherit it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_connect(*args: str) -> subprocess.Popen[str]:
    """Start ``python -m wsline connect ARGS`` with stdin left open."""
    return subprocess.Popen(
        [sys.executable, "-m", "wsline", "connect", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env=ENV,
        preexec_fn=default_sigint,
    )


async def echo(ws: wsline.WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


class ServerThread:
    """wsline asyncio servers on an event loop in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[wsline.Server] = []

    def start(self, handler: Callable[[wsline.WebSocket], Any] = echo, **kwargs: Any) -> str:
        """Start a server; return its ws:// URL (wss:// with ``ssl=``)."""

        async def start() -> wsline.Server:
            return await wsline.serve(handler, HOST, 0, **{**SERVER_DEFAULTS, **kwargs})

        server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(5)
        self.servers.append(server)
        scheme = "wss" if kwargs.get("ssl") else "ws"
        return f"{scheme}://{HOST}:{server.port}/"

    def stop(self) -> None:
        for server in self.servers:
            asyncio.run_coroutine_threadsafe(server.close(timeout=0.5), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def servers() -> Iterator[ServerThread]:
    st = ServerThread()
    yield st
    st.stop()


def lines(text: str) -> list[str]:
    return text.splitlines()


# ---------------------------------------------------------------- sessions


def test_echo_lines_until_eof(servers):
    url = servers.start(echo)
    result = run_connect(url, input="hello\nwörld ✓\n\r\n\nlast line without newline")
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout) == [
        f"connected to {url} (subprotocol: none)",
        "< hello",
        "< wörld ✓",
        "< ",
        "< ",
        "< last line without newline",
        "connection closed: 1000",
    ]
    assert result.stderr == ""


def test_against_the_echo_command(tmp_path):
    """Both ends from the command line: ``python -m wsline echo`` and ``connect``."""
    server = subprocess.Popen(
        [sys.executable, "-m", "wsline", "echo", "--port", "0", "--no-page", "--no-ping"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        preexec_fn=default_sigint,
    )
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()
        match = re.search(r"ws://127\.0\.0\.1:(\d+)/", banner)
        assert match, banner
        url = f"ws://127.0.0.1:{match.group(1)}/"
        result = run_connect(url, "--wait", "0.2", input="one\ntwo\n")
        assert result.returncode == 0, result.stderr
        assert "< one\n< two\n" in result.stdout
        assert result.stdout.endswith("connection closed: 1000\n")
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            server.kill()
            server.wait()
        assert server.stdout is not None and server.stderr is not None
        server.stdout.close()
        server.stderr.close()


def test_binary_messages_are_shown_in_hex(servers):
    async def handler(ws):
        await ws.send(b"hello")
        await ws.send(bytes(range(40)))
        await ws.send(b"")
        await echo(ws)

    url = servers.start(handler)
    result = run_connect(url, "--wait", "0.2")
    assert result.returncode == 0, result.stderr
    out = lines(result.stdout)
    assert out[1] == "< [binary 5 bytes] 68 65 6c 6c 6f"
    assert out[2] == "< [binary 40 bytes] " + bytes(range(32)).hex(" ") + " ..."
    assert out[3] == "< [binary 0 bytes]"


def test_format_message():
    assert format_message("plain text") == "< plain text"
    assert format_message(b"\x00\xff") == "< [binary 2 bytes] 00 ff"
    assert format_message(b"x" * 33).endswith("78 78 ...")


def test_headers_subprotocol_origin_and_no_compression_reach_the_server(servers):
    async def handler(ws):
        headers = ws.request.headers
        await ws.send(
            f"{headers.get('X-Token')}|{headers.get('X-Other')}|{ws.subprotocol}|"
            f"{headers.get('Origin')}|{headers.get('Sec-WebSocket-Extensions')}"
        )
        await echo(ws)

    url = servers.start(handler, subprotocols=["chat"])
    result = run_connect(
        url,
        "--header",
        "X-Token: abc 123",
        "--header",
        "X-Other:x",
        "--subprotocol",
        "other",
        "--subprotocol",
        "chat",
        "--origin",
        "https://o.example",
        "--no-compression",
        "--wait",
        "0.2",
    )
    assert result.returncode == 0, result.stderr
    out = lines(result.stdout)
    assert out[0] == f"connected to {url} (subprotocol: chat)"
    assert out[1] == "< abc 123|x|chat|https://o.example|None"


def test_compression_offered_by_default(servers):
    async def handler(ws):
        await ws.send(str(ws.request.headers.get("Sec-WebSocket-Extensions")))

    url = servers.start(handler)
    result = run_connect(url, "--wait", "0.2")
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout)[1].startswith("< permessage-deflate")


# ------------------------------------------------------ how sessions end


def test_server_closing_normally_exits_0(servers):
    async def handler(ws):
        await ws.send("bye soon")
        await ws.close(1000, "done")

    result = run_connect(servers.start(handler))
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout)[1:] == ["< bye soon", "connection closed: 1000 done"]


def test_server_closing_normally_while_waiting_for_input(servers):
    release: queue.Queue[None] = queue.Queue()

    async def handler(ws):
        await ws.send("ready")
        await asyncio.get_running_loop().run_in_executor(None, release.get, True, WAIT)
        await ws.close(1001, "going away")

    proc = start_connect(servers.start(handler))
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert proc.stdout.readline().startswith("connected to")
        assert proc.stdout.readline() == "< ready\n"
        release.put(None)  # the server closes while stdin stays open
        assert proc.wait(WAIT) == 0
        assert proc.stdout.read() == "connection closed: 1001 going away\n"
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()
        assert proc.stderr is not None
        proc.stderr.close()


def test_server_closing_with_an_error_exits_1(servers):
    async def handler(ws):
        await ws.close(1011, "boom")

    result = run_connect(servers.start(handler), input="")
    assert result.returncode == 1
    assert lines(result.stdout)[-1] == "connection closed: 1011 boom"


def test_ctrl_c_closes_and_exits_130(servers):
    server_saw: queue.Queue[Any] = queue.Queue()

    async def handler(ws):
        await ws.send("ready")
        with contextlib.suppress(wsline.ConnectionClosed):
            await echo(ws)
        server_saw.put(ws.close_code)

    proc = start_connect(servers.start(handler))
    assert proc.stdout is not None and proc.stdin is not None and proc.stderr is not None
    try:
        proc.stdout.readline()
        assert proc.stdout.readline() == "< ready\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(WAIT) == 130
        assert "interrupted" in proc.stderr.read()
        assert server_saw.get(timeout=WAIT) == 1000
    finally:
        proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()


# ------------------------------------------------------------------ errors


def test_rejected_handshake_exits_4_with_status_and_body(servers):
    url = servers.start(echo, process_request=lambda request: reject_response(403, "members only\n"))
    result = run_connect(url)
    assert result.returncode == 4
    assert result.stdout == ""
    assert "403" in result.stderr and "members only" in result.stderr
    assert len(lines(result.stderr)) == 1


def test_bad_handshake_answer_exits_4():
    with socket.create_server((HOST, 0)) as listener:

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: wrong\r\n\r\n"
                )
                conn.recv(65536)

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        result = run_connect(f"ws://{HOST}:{listener.getsockname()[1]}/")
        thread.join(WAIT)
    assert result.returncode == 4
    assert "Sec-WebSocket-Accept" in result.stderr


@pytest.mark.parametrize("url", ["http://example.com/", "ws://", "ws://host/#frag", "nonsense"])
def test_bad_uri_exits_2(url):
    result = run_connect(url)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and len(lines(result.stderr)) == 1


@pytest.mark.parametrize("option", [["--header", "no colon"], ["--header", ": empty name"], ["--wait", "-1"]])
def test_bad_option_exits_2(option):
    result = run_connect(f"ws://{HOST}:1/", *option)
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_unsendable_subprotocol_exits_2():
    result = run_connect(f"ws://{HOST}:1/", "--subprotocol", "has space")
    assert result.returncode == 2
    assert "invalid subprotocol" in result.stderr


def test_refused_port_exits_3():
    port = free_port()
    result = run_connect(f"ws://{HOST}:{port}/")
    assert result.returncode == 3
    assert result.stderr == f"error: connection refused by {HOST}:{port}\n"


def test_open_timeout_exits_3():
    with socket.create_server((HOST, 0)) as listener:  # never accepts
        result = run_connect(f"ws://{HOST}:{listener.getsockname()[1]}/", "--open-timeout", "0.3")
    assert result.returncode == 3
    assert "timed out after 0.3 s" in result.stderr


def test_tls_verification(servers, tls, tmp_path):
    url = servers.start(echo, ssl=tls.server_context)
    env_without_ca = {k: v for k, v in ENV.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    result = run_connect(url, env=env_without_ca)
    assert result.returncode == 5
    assert "certificate verification failed" in result.stderr and "--insecure" in result.stderr

    result = run_connect(url, "--insecure", "--wait", "0.2", input="secret\n")
    assert result.returncode == 0, result.stderr
    assert "< secret" in lines(result.stdout)

    ca_file = tmp_path / "ca.pem"
    tls.ca.cert_pem.write_to_path(str(ca_file))
    result = run_connect(url, "--wait", "0.2", input="verified\n", env={**ENV, "SSL_CERT_FILE": str(ca_file)})
    assert result.returncode == 0, result.stderr
    assert "< verified" in lines(result.stdout)


def test_tls_to_a_plain_http_server_exits_5():
    with socket.create_server((HOST, 0)) as listener:

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)  # a TLS ClientHello; answer in plain HTTP
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        result = run_connect(f"wss://{HOST}:{listener.getsockname()[1]}/")
        thread.join(WAIT)
    assert result.returncode == 5
    assert result.stderr.startswith(f"error: TLS handshake with {HOST}:")
    assert "wrong version number" in result.stderr and "ws://" in result.stderr


def test_help_documents_exit_codes(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["connect", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for line in ("0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "130 "):
        assert re.search(rf"^\s+{line}", out, re.MULTILINE), line
    assert "--subprotocol" in out and "--insecure" in out
