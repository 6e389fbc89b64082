"""Request smuggling, tried against the running server on a real socket.

Each test sends what an attacker behind a lenient front-end would send and checks
what wsline's server does with it: a 4xx and a closed connection where RFC 9112
says so, or one request answered exactly once, so that no byte of one request is
ever read as the start of another. The parser's own rules are tested byte by byte
in tests/protocol/test_http11.py; these check that the server acts on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

import pytest

import wsline
from wsline.http import Router, text_response
from wsline.protocol.handshake import Request, Response

pytestmark = pytest.mark.asyncio

HOST = "127.0.0.1"
TIMEOUT = 3.0


def make_router(seen: list[Request]) -> Router:
    router = Router()

    @router.route("/echo", methods=("GET", "POST"))
    def echo(request: Request) -> Response:
        seen.append(request)
        return text_response(f"{request.method} {request.target} host={request.host} body={request.body!r}")

    @router.websocket("/ws")
    async def ws_route(ws: wsline.WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    return router


@contextlib.asynccontextmanager
async def running(**kwargs: object) -> AsyncIterator[tuple[wsline.Server, list[Request]]]:
    seen: list[Request] = []
    async with wsline.serve(
        make_router(seen), HOST, 0, ping_interval=None, close_timeout=0.5, open_timeout=2.0, **kwargs
    ) as server:
        yield server, seen


async def exchange(server: wsline.Server, data: bytes) -> bytes:
    """Send ``data`` on a fresh connection; everything the server sends until it closes (or goes quiet)."""
    reader, writer = await asyncio.open_connection(HOST, server.port)
    writer.write(data)
    await writer.drain()
    out = bytearray()
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), TIMEOUT)
            if not chunk:
                break
            out += chunk
    except (asyncio.TimeoutError, ConnectionResetError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return bytes(out)


def statuses(data: bytes) -> list[int]:
    """The status codes of the responses in ``data``, in order (the bodies never hold a status line)."""
    return [int(code) for code in re.findall(rb"HTTP/1\.1 ([0-9]{3}) ", data)]


def closes(data: bytes) -> bool:
    return b"\r\nConnection: close\r\n" in data


@pytest.mark.parametrize(
    "size_line",
    [b"5 ", b" 5", b"5\t", b"+5", b"0x5", b"5;a b", b"5;", b"5;=x", b'5;a="unterminated'],
)
async def test_bad_chunk_size_lines_are_400_and_close(size_line: bytes) -> None:
    # A front-end that trims the size or ignores a broken extension sees another body.
    smuggled = b"GET /echo?smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
    body = size_line + b"\r\nhello\r\n0\r\n\r\n" + smuggled
    head = b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    async with running() as (server, seen):
        reply = await exchange(server, head + body)
    assert statuses(reply) == [400], reply
    assert closes(reply)
    assert seen == []


@pytest.mark.parametrize("line_end", [b"\n", b"\r"])
async def test_bare_lf_or_cr_in_chunk_lines_is_400(line_end: bytes) -> None:
    head = b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b"5" + line_end + b"hello\r\n0\r\n\r\n"
    async with running() as (server, seen):
        reply = await exchange(server, head + body)
    assert statuses(reply) == [400]
    assert seen == []


async def test_good_chunk_extensions_are_accepted() -> None:
    head = b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    body = b'5 ; name="quoted \\" value" ;flag\r\nhello\r\n0\r\n\r\n'
    async with running() as (server, seen):
        reply = await exchange(server, head + body)
    assert statuses(reply) == [200]
    assert seen[0].body == b"hello"


async def test_transfer_encoding_with_content_length_is_framed_by_te_then_closed() -> None:
    # RFC 9112 6.1: the server MUST close the connection after responding.
    request = (
        b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
        b"GET /echo?second HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    async with running() as (server, seen):
        reply = await exchange(server, request)
    assert statuses(reply) == [200], reply
    assert closes(reply)
    assert [r.body for r in seen] == [b"hello"]  # the second request was never read


@pytest.mark.parametrize(
    "codings",
    ["chunked, gzip", "gzip, chunked", "chunked, chunked", "identity", "gzip"],
)
async def test_transfer_codings_other_than_chunked_are_refused(codings: str) -> None:
    request = f"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {codings}\r\n\r\n".encode()
    async with running() as (server, seen):
        reply = await exchange(server, request + b"5\r\nhello\r\n0\r\n\r\n")
    assert statuses(reply)[0] in (400, 501)
    assert len(statuses(reply)) == 1 and closes(reply)
    assert seen == []


@pytest.mark.parametrize("length", ["+5", "5, 6", "5 5", "-1", "0x5", "5" * 19])
async def test_bad_content_length_is_400(length: str) -> None:
    request = f"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: {length}\r\n\r\nhello".encode()
    async with running() as (server, seen):
        reply = await exchange(server, request)
    assert statuses(reply) == [400]
    assert closes(reply)
    assert seen == []


async def test_repeated_identical_content_length_is_accepted() -> None:
    request = b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\nConnection: close\r\n\r\nhello"
    async with running() as (server, seen):
        reply = await exchange(server, request)
    assert statuses(reply) == [200]
    assert seen[0].body == b"hello"


async def test_process_request_refusing_an_upgrade_with_a_body_does_not_read_the_body_as_a_request() -> None:
    # The refusal is keep-alive; the upgrade request carried a body. That body
    # used to be parsed as the next request.
    def refuse(request: Request) -> Response | None:
        if request.is_upgrade:
            return text_response("no upgrade for you", status=403)
        return None

    smuggled = b"GET /echo?smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
    upgrade = (
        b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        + f"Content-Length: {len(smuggled)}\r\n\r\n".encode()
        + smuggled
        + b"GET /echo?next HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    async with running(process_request=refuse) as (server, seen):
        reply = await exchange(server, upgrade)
    assert statuses(reply) == [403, 200], reply
    assert [r.target for r in seen] == ["/echo?next"]


@pytest.mark.parametrize(
    "hosts",
    [[], ["a.example", "b.example"], [""], ["bad host"], ["h:port"]],
    ids=["none", "two", "empty", "space", "bad-port"],
)
async def test_host_must_be_there_once_and_valid(hosts: list[str]) -> None:
    lines = "".join(f"Host: {h}\r\n" for h in hosts)
    async with running() as (server, seen):
        reply = await exchange(server, f"GET /echo HTTP/1.1\r\n{lines}\r\n".encode())
    assert statuses(reply) == [400]
    assert closes(reply)
    assert seen == []


async def test_http_1_0_needs_no_host_and_is_not_kept_alive() -> None:
    async with running() as (server, seen):
        reply = await exchange(server, b"GET /echo HTTP/1.0\r\n\r\nGET /echo?again HTTP/1.0\r\n\r\n")
    assert statuses(reply) == [200]
    assert closes(reply)
    assert len(seen) == 1


async def test_absolute_form_authority_wins_over_host() -> None:
    request = (
        b"GET http://target.example:8080/echo?q=1 HTTP/1.1\r\n"
        b"Host: other.example\r\nConnection: close\r\n\r\n"
    )
    async with running() as (server, seen):
        reply = await exchange(server, request)
    assert statuses(reply) == [200]
    assert seen[0].target == "/echo?q=1"
    assert seen[0].host == "target.example:8080"
    assert seen[0].headers.get_all("Host") == ["target.example:8080"]


async def test_empty_lines_before_a_request_are_ignored() -> None:
    # A client may send a CRLF after a POST body (RFC 9112 2.2).
    request = (
        b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi"
        b"\r\n"
        b"GET /echo?after HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    async with running() as (server, seen):
        reply = await exchange(server, b"\r\n" + request)
    assert statuses(reply) == [200, 200], reply
    assert [r.target for r in seen] == ["/echo", "/echo?after"]


@pytest.mark.parametrize(
    "line",
    [b"Host : h", b"X-A: a\r\n b", b"X-A: a\x00b", b"X-A\r\n", b"X A: b", b"X-A: a\rb"],
    ids=["space-before-colon", "obs-fold", "nul", "no-colon", "space-in-name", "bare-cr"],
)
async def test_malformed_header_lines_are_400(line: bytes) -> None:
    request = b"GET /echo HTTP/1.1\r\nHost: h\r\n" + line + b"\r\n\r\n"
    async with running() as (server, seen):
        reply = await exchange(server, request)
    assert statuses(reply) == [400]
    assert closes(reply)
    assert seen == []


async def test_pipelined_requests_are_answered_in_order() -> None:
    requests = b"".join(
        f"GET /echo?{i} HTTP/1.1\r\nHost: h\r\n{'Connection: close' if i == 4 else 'X: y'}\r\n\r\n".encode()
        for i in range(5)
    )
    async with running() as (server, seen):
        reply = await exchange(server, requests)
    assert statuses(reply) == [200] * 5
    assert [r.target for r in seen] == [f"/echo?{i}" for i in range(5)]
    assert re.findall(rb"GET /echo\?([0-9])", reply) == [str(i).encode() for i in range(5)]


async def test_body_limit_is_enforced_before_the_body_arrives() -> None:
    async with running(max_body_size=1000) as (server, seen):
        reply = await exchange(server, b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1001\r\n\r\n")
        chunked = await exchange(
            server,
            b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n",
        )
    assert statuses(reply) == [413]
    assert statuses(chunked) == [413]
    assert seen == []


async def test_websocket_upgrade_with_leftover_bytes_still_works() -> None:
    # The bytes after the upgrade request are the first WebSocket frames.
    async with running() as (server, _seen):
        async with wsline.connect(f"ws://{HOST}:{server.port}/ws", ping_interval=None) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
