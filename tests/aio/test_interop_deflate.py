"""permessage-deflate interop with independent implementations.

wsline talks, compression on, to:

- the Python ``websockets`` library (in this process): its server against
  wsline's client, its client against wsline's server;
- Node's ``ws`` package (npm, pinned in ``tests/interop/package.json``): the
  echo server ``tests/interop/ws_echo_server.js`` against wsline's client, the
  client ``tests/interop/ws_client.js`` against wsline's server.

Each case sets the negotiation one way (defaults, no context takeover asked
for by the client or imposed by the server, on either side's compressor,
smaller windows down to 8 bits) and sends the same messages in both
directions: 0 B to 4 MiB, text and binary, random and compressible, some with
``compress=`` forced, some fragmented. Every message must come back exactly,
the peer must have received exactly what was sent (checked by hash on its
side), the response's ``Sec-WebSocket-Extensions`` must show the negotiated
parameters, and a TCP relay in between that reads the frame headers checks
that each message crossed each way compressed (RSV1) exactly when its sender
should have compressed it, and shrank when it was compressible.

The Node side needs ``node`` and ``npm``: when ``tests/interop/node_modules``
is missing, the ``npm install`` runs once per session (the tests fail, not
skip, when node or npm is not there).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import random
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect as websockets_connect
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as websockets_serve
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)

import wsline
from wsline import DeflateConfig

pytestmark = pytest.mark.asyncio

HOST = "127.0.0.1"
KiB = 1024
MiB = 1024 * KiB
MAX_SIZE = 16 * MiB
INTEROP_DIR = Path(__file__).resolve().parents[1] / "interop"
#: How long one receive may take before a test fails (the largest message is 4 MiB).
RECV_TIMEOUT = 20.0

Data = str | bytes

# ------------------------------------------------------------------ messages


@dataclass(frozen=True)
class Msg:
    type: str  # "text" or "binary"
    size: int  # bytes (UTF-8 bytes for text)
    content: str  # "random" or "compressible"
    compress: bool | None = None  # send(..., compress=) on the wsline / Node side
    fragments: int = 1  # frames the original sender splits the message into (echoes send one)

    def spec(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "size": self.size,
            "content": self.content,
            "compress": self.compress,
            "fragments": self.fragments,
        }


MESSAGES: tuple[Msg, ...] = (
    Msg("text", 0, "random"),
    Msg("binary", 0, "random"),
    Msg("text", 1, "compressible"),
    Msg("binary", 1, "random", compress=True),
    Msg("text", 100, "compressible"),
    Msg("binary", 100, "random", compress=False),
    Msg("text", 64 * KiB, "compressible"),
    Msg("text", 64 * KiB, "random"),
    Msg("binary", 64 * KiB, "compressible"),
    Msg("binary", 64 * KiB, "random"),
    Msg("text", 1 * MiB, "compressible"),
    Msg("binary", 1 * MiB, "random"),
    Msg("binary", 1 * MiB, "compressible", compress=False),
    Msg("binary", 4 * MiB, "compressible"),
    Msg("text", 4 * MiB, "random"),
    Msg("text", 100, "compressible", compress=True),
    Msg("binary", 64 * KiB, "compressible", compress=False),
    Msg("binary", 256 * KiB, "compressible", fragments=4),
    # Node splits text at byte offsets, so fragments end inside UTF-8 sequences.
    Msg("text", 256 * KiB, "random", fragments=7),
    Msg("binary", 1, "random"),
)

_RANDOM_CHARS = "aZ7 {\u00e9\u00df\u03a9\u0416\u20ac\u6f22\u3042\U0001f600\U0001f389"


def _random_text(rng: random.Random, size: int) -> str:
    """Valid UTF-8 of exactly ``size`` bytes, 1- to 4-byte characters mixed."""
    chars = "".join(rng.choices(_RANDOM_CHARS, k=size))
    head = chars.encode("utf-8")[:size].decode("utf-8", "ignore")
    return head + "x" * (size - len(head.encode("utf-8")))


def _compressible(size: int) -> bytes:
    lines = []
    total = 0
    i = 0
    while total < size:
        line = f'{{"seq": {i}, "user": "user{i % 7}", "room": "lobby", "text": "hello {i % 13}"}}\n'
        lines.append(line)
        total += len(line)
        i += 1
    return "".join(lines).encode("ascii")[:size]


def make_payload(msg: Msg, rng: random.Random) -> Data:
    if msg.content == "compressible":
        raw = _compressible(msg.size)
        return raw.decode("ascii") if msg.type == "text" else raw
    if msg.type == "text":
        return _random_text(rng, msg.size)
    return rng.randbytes(msg.size)


@functools.cache
def payloads() -> tuple[Data, ...]:
    rng = random.Random(7692)
    out = tuple(make_payload(msg, rng) for msg in MESSAGES)
    for msg, data in zip(MESSAGES, out, strict=True):
        raw = data.encode("utf-8") if isinstance(data, str) else data
        assert len(raw) == msg.size and isinstance(data, str) == (msg.type == "text")
    return out


def split(data: Data, n: int) -> list[Data]:
    """``data`` in ``n`` pieces (of characters for text) for a fragmented send."""
    step = -(-len(data) // n)
    return [data[i : i + step] for i in range(0, len(data), step)]


def fingerprint(data: Data) -> tuple[str, int, str]:
    """(type, size, sha256) of a message, as both sides record it."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return ("text" if isinstance(data, str) else "binary", len(raw), hashlib.sha256(raw).hexdigest())


def check_echo(index: int, sent: Data, got: Data) -> None:
    """Compare without letting pytest diff megabytes."""
    if type(got) is type(sent) and got == sent:
        return
    a = sent.encode("utf-8") if isinstance(sent, str) else sent
    b = got.encode("utf-8") if isinstance(got, str) else got
    at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    msg = MESSAGES[index]
    raise AssertionError(
        f"message {index} ({msg}): sent {type(sent).__name__} of {len(a)} B, got "
        f"{type(got).__name__} of {len(b)} B back, first difference at byte {at}"
    )


def check_received(what: str, received: list[tuple[str, int, str]], sent: list[tuple[str, int, str]]) -> None:
    assert len(received) == len(sent), f"{what} received {len(received)} messages, {len(sent)} were sent"
    for i, (got, exp) in enumerate(zip(received, sent, strict=True)):
        assert got == exp, f"{what}: message {i} ({MESSAGES[i]}) arrived as {got[:2]}, sent as {exp[:2]}"


# ---------------------------------------------------------------------- cases

_NODE_NAMES = {
    "server_no_context_takeover": "serverNoContextTakeover",
    "client_no_context_takeover": "clientNoContextTakeover",
    "server_max_window_bits": "serverMaxWindowBits",
    "client_max_window_bits": "clientMaxWindowBits",
}


@dataclass(frozen=True)
class Case:
    id: str
    #: RFC 7692 parameters of the server's configuration (imposed / upper limits).
    server: dict[str, Any] = field(default_factory=dict)
    #: RFC 7692 parameters the client offers.
    client: dict[str, Any] = field(default_factory=dict)
    #: Parameters the response must carry, with this exact value (None: no value).
    required: dict[str, str | None] = field(default_factory=dict)
    #: Window-bits parameters that, when in the response, must not exceed this.
    max_bits: dict[str, int] = field(default_factory=dict)
    #: wsline's compression threshold (None: DeflateConfig's default).
    threshold: int | None = 0
    #: Only against Node's ws (the websockets library supports no 8-bit compressor window).
    node_only: bool = False

    def wsline_config(self, side: str) -> DeflateConfig:
        params = dict(self.server if side == "server" else self.client)
        if self.threshold is not None:
            params["threshold"] = self.threshold
        return DeflateConfig(**params)

    def node_options(self, side: str) -> dict[str, Any]:
        params = self.server if side == "server" else self.client
        return {_NODE_NAMES[name]: value for name, value in params.items()}


CASES = [
    Case("defaults", threshold=None),
    Case(
        "client-asks-server-nct",
        client={"server_no_context_takeover": True},
        required={"server_no_context_takeover": None},
    ),
    Case("client-offers-client-nct", client={"client_no_context_takeover": True}),
    Case(
        "server-imposes-server-nct",
        server={"server_no_context_takeover": True},
        required={"server_no_context_takeover": None},
    ),
    Case(
        "server-imposes-client-nct",
        server={"client_no_context_takeover": True},
        required={"client_no_context_takeover": None},
    ),
    Case(
        "client-asks-windows-10-9",
        client={"server_max_window_bits": 10, "client_max_window_bits": 9},
        required={"server_max_window_bits": "10"},
        max_bits={"client_max_window_bits": 9},
    ),
    Case(
        "server-imposes-windows-10-9",
        server={"server_max_window_bits": 10, "client_max_window_bits": 9},
        required={"server_max_window_bits": "10", "client_max_window_bits": "9"},
    ),
    Case(
        "client-asks-everything",
        client={
            "server_no_context_takeover": True,
            "client_no_context_takeover": True,
            "server_max_window_bits": 9,
            "client_max_window_bits": 9,
        },
        required={"server_no_context_takeover": None, "server_max_window_bits": "9"},
        max_bits={"client_max_window_bits": 9},
    ),
    Case(
        "client-asks-windows-8-8",
        client={"server_max_window_bits": 8, "client_max_window_bits": 8},
        required={"server_max_window_bits": "8"},
        max_bits={"client_max_window_bits": 8},
        node_only=True,
    ),
    Case(
        "server-imposes-windows-8-8-and-nct",
        server={
            "server_max_window_bits": 8,
            "client_max_window_bits": 8,
            "server_no_context_takeover": True,
            "client_no_context_takeover": True,
        },
        required={
            "server_max_window_bits": "8",
            "client_max_window_bits": "8",
            "server_no_context_takeover": None,
            "client_no_context_takeover": None,
        },
        node_only=True,
    ),
]

ALL_CASES = [pytest.param(case, id=case.id) for case in CASES]
PY_CASES = [pytest.param(case, id=case.id) for case in CASES if not case.node_only]


def parse_response_extensions(header: str | None) -> dict[str, str | None]:
    """``permessage-deflate; a; b=1`` -> ``{"a": None, "b": "1"}`` (a parser independent of wsline's)."""
    assert header, "compression was not negotiated: no Sec-WebSocket-Extensions in the response"
    extensions = [part.strip() for part in header.split(",") if part.strip()]
    assert len(extensions) == 1, f"expected one extension, got {header!r}"
    name, *params = (item.strip() for item in extensions[0].split(";"))
    assert name == "permessage-deflate", f"negotiated {header!r}"
    out: dict[str, str | None] = {}
    for param in params:
        key, eq, value = param.partition("=")
        out[key.strip()] = value.strip().strip('"') if eq else None
    return out


def check_negotiated(header: str | None, case: Case) -> None:
    params = parse_response_extensions(header)
    for name, value in case.required.items():
        assert name in params, f"{name} missing from the response {header!r}"
        assert params[name] == value, f"{name}={params[name]} in the response {header!r}, expected {value}"
    for name, limit in case.max_bits.items():
        bits = params.get(name)
        if bits is not None:
            assert int(bits) <= limit, f"{name} above {limit} in the response {header!r}"


# ------------------------------------------------------ wire-level accounting

#: A compressible message of at least 1 KiB must shrink at least this much.
COMPRESSED_RATIO = 0.2


@dataclass
class WireMessage:
    opcode: int  # 1 text, 2 binary
    rsv1: bool  # compressed (the first frame's RSV1)
    length: int  # payload bytes on the wire, all frames
    frames: int


class FrameTap:
    """Follows one direction of a WebSocket connection: the HTTP head, then frame headers.

    Payloads are skipped, not buffered; only their lengths are kept.
    """

    def __init__(self) -> None:
        self.buf = bytearray()
        self.head_done = False
        self.skip = 0
        self.bytes = 0
        self.messages: list[WireMessage] = []
        self._current: WireMessage | None = None

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        if self.skip:
            n = min(self.skip, len(data))
            self.skip -= n
            data = data[n:]
        self.buf += data
        buf = self.buf
        while True:
            if not self.head_done:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                del buf[: end + 4]
                self.head_done = True
            if len(buf) < 2:
                return
            b0, b1 = buf[0], buf[1]
            length, offset = b1 & 0x7F, 2
            if length == 126:
                offset = 4
            elif length == 127:
                offset = 10
            if b1 & 0x80:
                offset += 4
            if len(buf) < offset:
                return
            if length >= 126:
                length = int.from_bytes(buf[2 : 4 if length == 126 else 10], "big")
            self._frame(b0, length)
            if len(buf) - offset >= length:
                del buf[: offset + length]
            else:
                self.skip = length - (len(buf) - offset)
                buf.clear()
                return

    def _frame(self, b0: int, length: int) -> None:
        fin, rsv1, opcode = bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F
        if opcode >= 8:
            return  # control frame
        if opcode != 0:
            assert self._current is None, "a new message started inside a fragmented one"
            self._current = WireMessage(opcode, rsv1, 0, 0)
        assert self._current is not None, "a continuation frame outside a message"
        self._current.length += length
        self._current.frames += 1
        if fin:
            self.messages.append(self._current)
            self._current = None


class TapProxy:
    """A TCP relay between a client and a server that watches the frames of each direction."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = FrameTap()  # client to server
        self.down = FrameTap()  # server to client
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, HOST, 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.append(up_writer)
        await asyncio.gather(self._pump(reader, up_writer, self.up), self._pump(up_reader, writer, self.down))
        for w in (writer, up_writer):
            w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tap: FrameTap) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(256 * KiB):
                tap.feed(data)
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()

    def check(self, client: Sender, server: Sender) -> None:
        """Every message crossed each way, compressed exactly when its sender should have."""
        for name, tap, sender in (
            ("client to server", self.up, client),
            ("server to client", self.down, server),
        ):
            got = tap.messages
            assert len(got) == len(MESSAGES), (
                f"{name}: {len(got)} messages on the wire, expected {len(MESSAGES)}"
            )
            for index, (msg, wire) in enumerate(zip(MESSAGES, got, strict=True)):
                where = f"{name}, message {index} ({msg})"
                assert wire.opcode == (1 if msg.type == "text" else 2), f"{where}: opcode {wire.opcode}"
                expected, frames = sender.expect(msg)
                assert wire.frames == frames, f"{where}: {wire.frames} frames, expected {frames}"
                assert wire.rsv1 == expected, (
                    f"{where}: sent {'compressed' if wire.rsv1 else 'uncompressed'}, "
                    f"expected {'compressed' if expected else 'uncompressed'}"
                )
                if not wire.rsv1:
                    assert wire.length == msg.size, f"{where}: {wire.length} payload bytes uncompressed"
                elif msg.content == "compressible" and msg.size >= KiB:
                    assert wire.length <= msg.size * COMPRESSED_RATIO, (
                        f"{where}: compressed to {wire.length} bytes only"
                    )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in self._writers:
            w.transport.abort()
        if self._server is not None:
            await asyncio.wait_for(self._server.wait_closed(), 5)


@contextlib.asynccontextmanager
async def tap_proxy(target_port: int) -> AsyncIterator[tuple[TapProxy, int]]:
    proxy = TapProxy(target_port)
    port = await proxy.start()
    try:
        yield proxy, port
    finally:
        await proxy.close()


@dataclass(frozen=True)
class Sender:
    """What one side puts on the wire for each message of :data:`MESSAGES`."""

    #: Sends ``msg.fragments`` frames (the original sender), or one frame (an echo).
    fragments: bool
    #: Applies ``msg.compress`` (wsline's send(compress=), ws's send({compress})).
    honours_compress: bool
    #: Messages shorter than this go uncompressed; None: every message is compressed.
    threshold: int | None
    #: Compresses fragmented messages too.
    compresses_fragments: bool = True
    #: Ends a fragmented message with an extra empty frame.
    empty_last_fragment: bool = False

    def expect(self, msg: Msg) -> tuple[bool, int]:
        """(compressed, frames) for ``msg``."""
        frames = msg.fragments if self.fragments else 1
        if frames > 1 and self.empty_last_fragment:
            frames += 1
        if frames > 1 and not self.compresses_fragments:
            return False, frames
        if self.honours_compress and msg.compress is not None:
            return msg.compress, frames
        return self.threshold is None or msg.size >= self.threshold, frames


def wsline_sender(case: Case, *, original: bool) -> Sender:
    """wsline: ``compress=`` or the size threshold; fragmented sends are never compressed."""
    threshold = DeflateConfig().threshold if case.threshold is None else case.threshold
    return Sender(fragments=original, honours_compress=True, threshold=threshold, compresses_fragments=False)


#: The websockets library compresses every frame of every message; it sends an
#: iterable's pieces, then an empty frame with FIN.
WEBSOCKETS_CLIENT = Sender(fragments=True, honours_compress=False, threshold=None, empty_last_fragment=True)
WEBSOCKETS_ECHO = Sender(fragments=False, honours_compress=False, threshold=None)
#: ws_client.js passes ``compress`` to ws.send when set; the threshold is 0.
NODE_CLIENT = Sender(fragments=True, honours_compress=True, threshold=None)
#: ws_echo_server.js echoes with ws.send's defaults: always compressed (threshold 0).
NODE_ECHO = Sender(fragments=False, honours_compress=False, threshold=None)


# ---------------------------------------------------------------- wsline ends

Record = list[tuple[str, int, str]]


def wsline_echo(record: Record) -> Callable[[wsline.WebSocket], Awaitable[None]]:
    """Echo handler that records what came and applies each message's ``compress=``."""

    async def handler(ws: wsline.WebSocket) -> None:
        async for message in ws:
            index = len(record)
            record.append(fingerprint(message))
            compress = MESSAGES[index].compress if index < len(MESSAGES) else None
            await ws.send(message, compress=compress)

    return handler


def wsline_server(case: Case, record: Record) -> Any:
    return wsline.serve(
        wsline_echo(record),
        HOST,
        0,
        compression="deflate",
        deflate=case.wsline_config("server"),
        max_size=MAX_SIZE,
        ping_interval=None,
        close_timeout=2,
    )


async def wsline_client_exchange(url: str, case: Case) -> str | None:
    """Connect with wsline, send every message, check every echo; returns the extensions header."""
    async with wsline.connect(
        url,
        compression="deflate",
        deflate=case.wsline_config("client"),
        max_size=MAX_SIZE,
        ping_interval=None,
        close_timeout=2,
    ) as ws:
        header = ws.response.headers.get("Sec-WebSocket-Extensions")
        for index, (msg, data) in enumerate(zip(MESSAGES, payloads(), strict=True)):
            if msg.fragments > 1:
                await ws.send(split(data, msg.fragments))
            else:
                await ws.send(data, compress=msg.compress)
            check_echo(index, data, await asyncio.wait_for(ws.recv(), RECV_TIMEOUT))
    return header


# ------------------------------------------------------- websockets (Python)


def websockets_server_factory(case: Case) -> ServerPerMessageDeflateFactory:
    return ServerPerMessageDeflateFactory(**case.server)


def websockets_client_factory(case: Case) -> ClientPerMessageDeflateFactory:
    params = dict(case.client)
    params.setdefault("client_max_window_bits", True)  # offer the valueless parameter, as by default
    return ClientPerMessageDeflateFactory(**params)


@pytest.mark.parametrize("case", PY_CASES)
async def test_wsline_client_websockets_server(case: Case) -> None:
    record: Record = []

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            record.append(fingerprint(message))
            await ws.send(message)

    async with websockets_serve(
        echo,
        HOST,
        0,
        compression=None,
        extensions=[websockets_server_factory(case)],
        max_size=MAX_SIZE,
        ping_interval=None,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        async with tap_proxy(port) as (proxy, proxy_port):
            header = await wsline_client_exchange(f"ws://{HOST}:{proxy_port}/", case)
            check_negotiated(header, case)
            check_received("the websockets server", record, [fingerprint(d) for d in payloads()])
            proxy.check(wsline_sender(case, original=True), WEBSOCKETS_ECHO)


@pytest.mark.parametrize("case", PY_CASES)
async def test_websockets_client_wsline_server(case: Case) -> None:
    record: Record = []
    async with wsline_server(case, record) as server, tap_proxy(server.port) as (proxy, proxy_port):
        async with websockets_connect(
            f"ws://{HOST}:{proxy_port}/",
            compression=None,
            extensions=[websockets_client_factory(case)],
            max_size=MAX_SIZE,
            ping_interval=None,
        ) as ws:
            assert ws.response is not None
            header = ws.response.headers.get("Sec-WebSocket-Extensions")
            check_negotiated(header, case)
            for index, (msg, data) in enumerate(zip(MESSAGES, payloads(), strict=True)):
                await ws.send(split(data, msg.fragments) if msg.fragments > 1 else data)
                check_echo(index, data, await asyncio.wait_for(ws.recv(), RECV_TIMEOUT))
        check_received("the wsline server", record, [fingerprint(d) for d in payloads()])
        proxy.check(WEBSOCKETS_CLIENT, wsline_sender(case, original=False))


# ------------------------------------------------------------------ Node's ws


@dataclass(frozen=True)
class NodeEnv:
    node: str
    dir: Path


@pytest.fixture(scope="session")
def node_env() -> NodeEnv:
    """``node`` and the ``ws`` package of tests/interop, installed with npm when missing."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None:
        pytest.fail("node is not installed: the interop tests need Node.js (20 or later) on PATH")
    wanted = json.loads((INTEROP_DIR / "package.json").read_text())["dependencies"]["ws"]
    installed = INTEROP_DIR / "node_modules" / "ws" / "package.json"
    if not installed.exists() or json.loads(installed.read_text()).get("version") != wanted:
        if npm is None:
            pytest.fail(
                "npm is not installed and tests/interop/node_modules is missing: "
                "install Node.js with npm, or run `npm install` in tests/interop"
            )
        proc = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund"],
            cwd=INTEROP_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0 or not installed.exists():
            pytest.fail(
                f"`npm install --no-audit --no-fund` in {INTEROP_DIR} failed "
                f"(exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
    return NodeEnv(node, INTEROP_DIR)


class NodeEchoServer:
    """tests/interop/ws_echo_server.js as a subprocess: its port and its event lines."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port
        self.events: list[dict[str, Any]] = []
        self._new = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.events.append(json.loads(line))
            self._new.set()
        self._new.set()

    async def wait_for(self, event: str, timeout: float = 10.0) -> dict[str, Any]:
        async def wait() -> dict[str, Any]:
            while True:
                for item in self.events:
                    if item["event"] == event:
                        return item
                if self._reader.done():
                    raise AssertionError(f"the Node server exited before a {event!r} event: {self.events}")
                self._new.clear()
                await self._new.wait()

        return await asyncio.wait_for(wait(), timeout)

    def messages(self) -> Record:
        return [
            ("binary" if e["binary"] else "text", e["length"], e["sha256"])
            for e in self.events
            if e["event"] == "message"
        ]


@contextlib.asynccontextmanager
async def node_echo_server(env: NodeEnv, options: dict[str, Any]) -> AsyncIterator[NodeEchoServer]:
    proc = await asyncio.create_subprocess_exec(
        env.node,
        str(env.dir / "ws_echo_server.js"),
        json.dumps(options),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        first = await asyncio.wait_for(proc.stdout.readline(), 15)
        if not first.strip().isdigit():
            assert proc.stderr is not None
            err = await asyncio.wait_for(proc.stderr.read(), 5)
            raise AssertionError(
                f"the Node echo server did not start: {first!r} {err.decode(errors='replace')}"
            )
        server = NodeEchoServer(proc, int(first))
        yield server
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize("case", ALL_CASES)
async def test_wsline_client_node_server(case: Case, node_env: NodeEnv) -> None:
    async with node_echo_server(node_env, case.node_options("server")) as node:
        async with tap_proxy(node.port) as (proxy, proxy_port):
            header = await wsline_client_exchange(f"ws://{HOST}:{proxy_port}/", case)
            check_negotiated(header, case)
            opened = await node.wait_for("connection")
            assert "permessage-deflate" in (opened["extensions"] or ""), opened
            await node.wait_for("close")
            assert not [e for e in node.events if e["event"] == "error"], node.events
            check_received("the Node server", node.messages(), [fingerprint(d) for d in payloads()])
            proxy.check(wsline_sender(case, original=True), NODE_ECHO)


@pytest.mark.parametrize("case", ALL_CASES)
async def test_node_client_wsline_server(case: Case, node_env: NodeEnv) -> None:
    record: Record = []
    spec = {
        "perMessageDeflate": case.node_options("client"),
        "messages": [msg.spec() for msg in MESSAGES],
        "timeout": 40,
    }
    async with wsline_server(case, record) as server, tap_proxy(server.port) as (proxy, proxy_port):
        proc = await asyncio.create_subprocess_exec(
            node_env.node,
            str(node_env.dir / "ws_client.js"),
            f"ws://{HOST}:{proxy_port}/",
            json.dumps(spec),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 50)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        detail = f"exit {proc.returncode}\nstdout: {out.decode(errors='replace')}\nstderr: {err.decode()}"
        assert out.strip(), f"the Node client printed nothing: {detail}"
        result = json.loads(out)
        assert proc.returncode == 0 and result["ok"], f"the Node client failed: {detail}"
        check_negotiated(result["extensions"], case)
        sent = [(s["type"], s["size"], s["sha256"]) for s in result["sent"]]
        assert [(t, n) for t, n, _ in sent] == [(m.type, m.size) for m in MESSAGES]
        check_received("the wsline server", record, sent)
        proxy.check(NODE_CLIENT, wsline_sender(case, original=False))
