"""Memory per idle WebSocket connection: wsline against websockets, aiohttp and picows.

    python benchmarks/memory_per_connection.py [--connections 10000] [--only KEY ...] [--uvloop]

For each setting (wsline without compression and with permessage-deflate at
several window sizes and memLevels, with and without context takeover; the
websockets library without compression and with its default compression;
aiohttp without compression and with its default, compression; picows, which
has no compression), one fresh server process is started, and a client in
another process (so that client memory does not count) opens the connections.
Every connection sends one chat-like JSON message and gets it echoed, so that
zlib objects exist where they are created lazily, then stays idle. Two numbers
per connection, in KiB (1024 bytes) and KB (1000 bytes):

- RSS: growth of the server's resident set (``/proc/self/statm``) over
  ``--connections`` connections (default 10,000), after a warm-up and
  ``gc.collect()``;
- traced: growth of ``tracemalloc``'s traced memory over
  ``--trace-connections`` further connections. tracemalloc sees what goes
  through CPython's allocators: Python objects, zlib's state (PyMem_RawMalloc),
  picows' Cython objects and buffers (PyMem_Malloc), uvloop's libuv handles
  (PyMem_RawMalloc); not kernel socket buffers nor a C library's own malloc.
  It runs after the RSS phase, so its own overhead does not inflate the RSS
  column.

The compression ratio column is measured without sockets, with each library's
own compressor at the same setting, on a stream of 200 chat-like JSON messages
(compressed bytes / raw bytes, lower is better; the server's side, which is
what sends most in a chat server), with the time per message.

Both processes raise their open-file limit; the client spreads its connections
over several loopback source addresses (127.0.0.1, 127.0.0.2, ...) so that
ephemeral ports do not run short. Servers run each library's defaults apart
from compression (so wsline and websockets keep their 20 s keepalive pings;
aiohttp and picows have none by default), on the default asyncio loop, or
uvloop with ``--uvloop``. ``--only`` takes setting keys (``--list`` shows
them) or key prefixes, e.g. ``--only wsline-off websockets-off aiohttp picows``.

The table is printed and written to benchmarks/results/memory.md (memory_uvloop.md
with ``--uvloop``). Linux only (``/proc``). The default set takes several minutes
on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import math
import os
import platform
import random
import resource
import socket
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "memory.md"
RESULTS_UVLOOP = HERE / "results" / "memory_uvloop.md"
HOST = "127.0.0.1"
WARMUP_CONNECTIONS = 50
OPEN_CONCURRENCY = 100
STREAM_MESSAGES = 200
TARGET_BYTES = 10_000  # issue #5: at most 10 KB per idle connection without compression
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
DEFLATE_TAIL = b"\x00\x00\xff\xff"


# ------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Setting:
    name: str  # shown in the table
    key: str  # for --only and the child processes
    impl: str  # "wsline", "websockets", "aiohttp" or "picows"
    compression: bool
    window_bits: int | None = None  # both directions; None: the library's default
    mem_level: int | None = None
    no_context_takeover: bool = False  # server_ and client_no_context_takeover

    def describe(self) -> tuple[str, str, str]:
        if not self.compression:
            return "off", "", ""
        bits = "" if self.window_bits is None else str(self.window_bits)
        mem = "" if self.mem_level is None else str(self.mem_level)
        return bits, mem, "no" if self.no_context_takeover else "yes"


def _wsline_settings() -> list[Setting]:
    from wsline.protocol.deflate import DEFAULT_SERVER_CONFIG as default

    out = [Setting("wsline off", "wsline-off", "wsline", False)]
    # serve()'s default: DEFAULT_SERVER_CONFIG (its window bits and mem_level).
    default_pair = (default.server_max_window_bits, default.mem_level)
    pairs = [(15, 8), (15, 5), (12, 5), (11, 4), (10, 3)]
    for bits, mem in pairs:
        for nct in (False, True):
            tag = " (default)" if (bits, mem) == default_pair and not nct else ""
            suffix = " nct" if nct else ""
            out.append(
                Setting(
                    f"wsline deflate {bits}/{mem}{suffix}{tag}",
                    f"wsline-deflate-{bits}/{mem}{'-nct' if nct else ''}",
                    "wsline",
                    True,
                    bits,
                    mem,
                    nct,
                )
            )
    return out


def all_settings() -> list[Setting]:
    return [
        *_wsline_settings(),
        Setting("websockets off", "websockets-off", "websockets", False),
        # websockets' compression="deflate": 12-bit windows, memLevel 5, context takeover.
        Setting("websockets deflate (default)", "websockets-deflate", "websockets", True, 12, 5),
        Setting("aiohttp off", "aiohttp", "aiohttp", False),
        # aiohttp's WebSocketResponse(compress=True), its default: 15-bit windows
        # (a client may ask for less), zlib level 1, memLevel 8, context takeover.
        Setting("aiohttp deflate (default)", "aiohttp-deflate", "aiohttp", True, 15, 8),
        Setting("picows (no deflate)", "picows", "picows", False),
    ]


def find_setting(key: str) -> Setting:
    for setting in all_settings():
        if setting.key == key:
            return setting
    raise SystemExit(f"unknown setting {key!r}")


def select_settings(tokens: list[str] | None) -> list[Setting]:
    """Settings chosen by --only: each token is a key, a name, or else a key prefix."""
    settings = all_settings()
    if not tokens:
        return settings
    chosen: set[str] = set()
    for token in tokens:
        exact = [s for s in settings if token in (s.key, s.name)]
        matched = exact or [s for s in settings if s.key.startswith(token)]
        if not matched:
            raise SystemExit(f"--only {token!r} matches no setting; --list shows the keys")
        chosen.update(s.key for s in matched)
    return [s for s in settings if s.key in chosen]


def wsline_server_config(setting: Setting) -> Any:
    from wsline import DeflateConfig
    from wsline.protocol.deflate import DEFAULT_SERVER_CONFIG as default

    if not setting.compression:
        return None
    if (setting.window_bits, setting.mem_level, setting.no_context_takeover) == (
        default.server_max_window_bits,
        default.mem_level,
        False,
    ):
        return default  # serve()'s real default, untouched
    return DeflateConfig(
        server_max_window_bits=setting.window_bits,
        client_max_window_bits=setting.window_bits,
        mem_level=setting.mem_level or DeflateConfig().mem_level,
        server_no_context_takeover=setting.no_context_takeover,
        client_no_context_takeover=setting.no_context_takeover,
    )


# ------------------------------------------------------------------- messages


_WORDS = (
    "the a to and of is in it you that was for on are with as I his they be at one have this from "
    "hey hi ok lol thanks sure yes no maybe tomorrow today meeting deploy build test server client "
    "message room channel ping latency bug fix release merge review please done great nice"
).split()
_USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]


def chat_messages(count: int = STREAM_MESSAGES, seed: int = 6455) -> list[str]:
    """Chat-like JSON messages, as a chat server would push them."""
    rng = random.Random(seed)
    out = []
    ts = 1_700_000_000.0
    for i in range(count):
        ts += rng.uniform(0.1, 30)
        user = rng.choice(_USERS)
        text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 30)))
        message = {
            "type": "message",
            "id": f"{rng.getrandbits(64):016x}",
            "room": rng.choice(["general", "random", "dev", "ops"]),
            "user": {"id": _USERS.index(user) + 1000, "name": user},
            "text": text,
            "ts": round(ts, 3),
            "seq": i,
        }
        if rng.random() < 0.2:
            message["reply_to"] = f"{rng.getrandbits(64):016x}"
        out.append(json.dumps(message, separators=(",", ":")))
    return out


def compression_ratio(setting: Setting) -> tuple[float, float]:
    """(compressed / raw, microseconds per message) of the server's outgoing stream."""
    if not setting.compression:
        return 1.0, 0.0
    messages = [m.encode() for m in chat_messages()]
    raw = sum(map(len, messages))
    bits = setting.window_bits or 15
    if setting.impl == "wsline":
        from wsline.protocol.deflate import PerMessageDeflate

        cfg = wsline_server_config(setting)
        params: dict[str, Any] = {
            "server_no_context_takeover": cfg.server_no_context_takeover,
            "client_no_context_takeover": cfg.client_no_context_takeover,
            "server_max_window_bits": cfg.server_max_window_bits or 15,
            "client_max_window_bits": cfg.client_max_window_bits or 15,
        }

        def run() -> list[bytes]:
            sender = PerMessageDeflate(
                True, **params, compress_level=cfg.compress_level, mem_level=cfg.mem_level
            )
            return [sender.compress(m) for m in messages]

        receiver = PerMessageDeflate(False, **params)

        def check(c: bytes) -> bytes:
            return receiver.decompress(c, True, 1 << 30)
    elif setting.impl == "websockets":
        from websockets.extensions.permessage_deflate import PerMessageDeflate as WsPMD
        from websockets.frames import Frame, Opcode

        nct = setting.no_context_takeover

        def run() -> list[bytes]:
            sender = WsPMD(nct, nct, bits, bits, {"memLevel": setting.mem_level or 8})
            return [bytes(sender.encode(Frame(Opcode.TEXT, m)).data) for m in messages]

        receiver_ws = WsPMD(nct, nct, bits, bits)

        def check(c: bytes) -> bytes:
            return bytes(receiver_ws.decode(Frame(Opcode.TEXT, c, rsv1=True)).data)
    else:  # aiohttp: what its WebSocketWriter does for each frame
        from aiohttp.compression_utils import ZLibBackend, ZLibCompressor

        def run() -> list[bytes]:
            sender = ZLibCompressor(level=ZLibBackend.Z_BEST_SPEED, wbits=-bits)
            return [
                (sender.compress_sync(m) + sender.flush(ZLibBackend.Z_SYNC_FLUSH)).removesuffix(DEFLATE_TAIL)
                for m in messages
            ]

        inflater = zlib.decompressobj(-bits)

        def check(c: bytes) -> bytes:
            return inflater.decompress(c + DEFLATE_TAIL)

    best = float("inf")
    for _ in range(5):  # best of 5: the time is small and noisy
        start = time.perf_counter()
        compressed = run()
        best = min(best, time.perf_counter() - start)
    for m, c in zip(messages, compressed, strict=True):
        assert check(c) == m, "the compressed stream does not round-trip"
    return sum(map(len, compressed)) / raw, best / len(messages) * 1e6


# --------------------------------------------------------------------- server


def raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    if hard == resource.RLIM_INFINITY or hard >= need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    else:
        try:  # root (CAP_SYS_RESOURCE) may raise the hard limit, up to fs.nr_open
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < need:
        print(f"warning: the open-file limit is {soft}, below the {need} needed", file=sys.stderr)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Counter:
    """Connections whose handler (or listener) is live."""

    open = 0


@contextlib.asynccontextmanager
async def serving(setting: Setting, counter: Counter) -> AsyncIterator[int]:
    """Run ``setting``'s echo server on HOST; yields its port."""
    if setting.impl == "wsline":
        import wsline

        async def handler(ws: Any) -> None:
            counter.open += 1
            try:
                async for message in ws:
                    await ws.send(message)
            except wsline.ConnectionClosed:
                pass
            finally:
                counter.open -= 1

        async with wsline.serve(
            handler,
            HOST,
            0,
            compression="deflate" if setting.compression else None,
            deflate=wsline_server_config(setting),
            backlog=1024,
        ) as server:
            yield server.port

    elif setting.impl == "websockets":
        from websockets.asyncio.server import serve
        from websockets.exceptions import ConnectionClosed

        async def ws_handler(ws: Any) -> None:
            counter.open += 1
            try:
                async for message in ws:
                    await ws.send(message)
            except ConnectionClosed:
                pass
            finally:
                counter.open -= 1

        async with serve(
            ws_handler, HOST, 0, compression="deflate" if setting.compression else None, backlog=1024
        ) as ws_server:
            yield ws_server.sockets[0].getsockname()[1]

    elif setting.impl == "aiohttp":
        from aiohttp import WSMsgType, web

        async def aio_handler(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse(compress=setting.compression)
            await ws.prepare(request)
            counter.open += 1
            try:
                async for msg in ws:
                    if msg.type is WSMsgType.TEXT:
                        await ws.send_str(msg.data)
                    elif msg.type is WSMsgType.BINARY:
                        await ws.send_bytes(msg.data)
            except ConnectionError:
                pass
            finally:
                counter.open -= 1
            return ws

        app = web.Application()
        app.router.add_get("/{tail:.*}", aio_handler)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, HOST, 0, backlog=1024)
        await site.start()
        try:
            yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        finally:
            await runner.cleanup()

    else:
        from picows import WSListener, WSMsgType, ws_create_server

        close_type = WSMsgType.CLOSE
        data_types = (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION)

        class Echo(WSListener):  # type: ignore[misc]
            def on_ws_connected(self, transport: Any) -> None:
                counter.open += 1

            def on_ws_disconnected(self, transport: Any) -> None:
                counter.open -= 1

            def on_ws_frame(self, transport: Any, frame: Any) -> None:
                if frame.msg_type is close_type:
                    transport.send_close(frame.get_close_code(), frame.get_close_message())
                    transport.disconnect()
                elif frame.msg_type in data_types:
                    transport.send(frame.msg_type, frame.get_payload_as_memoryview(), frame.fin)

        pic_server = await ws_create_server(lambda request: Echo(), HOST, 0, backlog=1024)
        async with pic_server:
            yield pic_server.sockets[0].getsockname()[1]


async def run_server(setting: Setting, fd_need: int, top: int) -> None:
    raise_fd_limit(fd_need)
    counter = Counter()
    baseline: tracemalloc.Snapshot | None = None

    async with serving(setting, counter) as port:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        print(f"PORT {port}", flush=True)
        while line := (await reader.readline()).decode().strip():
            if line == "stats":
                for _ in range(3):
                    gc.collect()
                traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else -1
                print(f"STATS {rss_bytes()} {traced} {counter.open}", flush=True)
            elif line == "trace":
                tracemalloc.start(1)
                if top:
                    baseline = tracemalloc.take_snapshot()
                print("OK", flush=True)
            elif line == "top":
                if baseline is not None:
                    gc.collect()
                    stats = tracemalloc.take_snapshot().compare_to(baseline, "lineno")
                    stats = [s for s in stats if s.size_diff > 0][:top]
                    for stat in stats:
                        print(
                            f"  {stat.size_diff:>10} B {stat.count_diff:>7} blocks  {stat.traceback[0]}",
                            file=sys.stderr,
                        )
                print("OK", flush=True)
            elif line == "idle":
                deadline = time.monotonic() + 60
                while counter.open and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.1)
                print(f"IDLE {counter.open}", flush=True)
            elif line == "quit":
                break
    if tracemalloc.is_tracing():
        tracemalloc.stop()


# --------------------------------------------------------------------- client


async def run_client(port: int, setting: Setting, fd_need: int, sources: int) -> None:
    import wsline

    raise_fd_limit(fd_need)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    url = f"ws://{HOST}:{port}/"
    message = chat_messages(1, seed=1)[0]
    addresses = itertools.cycle([f"127.0.0.{i + 1}" for i in range(sources)])
    conns: list[Any] = []
    header: str | None = None

    async def open_one(sem: asyncio.Semaphore) -> None:
        nonlocal header
        async with sem:
            # Bind a loopback source address; the port is chosen at connect()
            # (IP_BIND_ADDRESS_NO_PORT), so each address has its own ephemeral range.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((next(addresses), 0))
                await asyncio.wait_for(loop.sock_connect(sock, (HOST, port)), 60)
            except BaseException:
                sock.close()
                raise
            ws = await wsline.connect(
                url,
                sock=sock,
                compression="deflate" if setting.compression else None,
                ping_interval=None,
                open_timeout=60,
            )
            await ws.send(message)
            echo = await ws.recv(timeout=60)
            if echo != message:
                raise RuntimeError(f"bad echo: {echo!r}")
            if header is None:
                header = ws.response.headers.get("Sec-WebSocket-Extensions") or "none"
            conns.append(ws)

    while line := (await reader.readline()).decode().strip():
        command, _, arg = line.partition(" ")
        if command == "open":
            start = time.perf_counter()
            sem = asyncio.Semaphore(OPEN_CONCURRENCY)
            await asyncio.gather(*(open_one(sem) for _ in range(int(arg))))
            print(f"READY {time.perf_counter() - start:.3f} {header}", flush=True)
        elif command == "close":
            for ws in conns:
                sock = ws._transport.get_extra_info("socket")
                if sock is not None:  # RST instead of FIN: no TIME_WAIT pile-up
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                ws.abort()
            conns.clear()
            await asyncio.sleep(0.05)
            print("CLOSED", flush=True)
        elif command == "quit":
            break


# --------------------------------------------------------------- orchestrator


class Child:
    """A child process spoken to line by line over stdin/stdout."""

    def __init__(self, args: list[str], python_flags: list[str] | None = None) -> None:
        self.args = args
        env = dict(os.environ)
        src = str(HERE.parent / "src")
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(
            [sys.executable, *(python_flags or []), str(Path(__file__).resolve()), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def ask(self, command: str | None, expect: str) -> list[str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line.startswith(expect):
            raise RuntimeError(f"expected {expect!r} from {self.args}, got {line!r}")
        return line.split()[1:]

    def stop(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Result:
    setting: Setting
    rss_per_conn: float
    traced_per_conn: float
    ratio: float
    us_per_msg: float
    negotiated: str
    open_seconds: float


def source_addresses(connections: int) -> int:
    """Loopback source addresses for ``connections``: at most half an ephemeral range each."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = map(int, f.read().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    per_address = max(1000, (high - low + 1) // 2)
    return max(2, min(254, math.ceil(connections / per_address)))


def measure(setting: Setting, connections: int, trace_connections: int, loop: str, top: int) -> Result:
    fd_need = max(connections, trace_connections) + WARMUP_CONNECTIONS + 256
    sources = source_addresses(max(connections, trace_connections))
    # wsline's connection_made asserts an asyncio.Transport, which uvloop's are not: -O.
    flags = ["-O"] if loop == "uvloop" and setting.impl == "wsline" else []
    server = Child(["_server", setting.key, str(fd_need), loop, str(top)], flags)
    client: Child | None = None
    try:
        port = server.ask(None, "PORT")[0]
        client = Child(["_client", port, setting.key, str(fd_need), str(sources)])
        # Warm-up: one-time allocations (read buffer, zlib code, caches) out of the way.
        client.ask(f"open {WARMUP_CONNECTIONS}", "READY")
        client.ask("close", "CLOSED")
        server.ask("idle", "IDLE")
        rss0 = int(server.ask("stats", "STATS")[0])
        ready = client.ask(f"open {connections}", "READY")
        open_seconds, negotiated = float(ready[0]), " ".join(ready[1:])
        time.sleep(0.2)
        rss1, _, open_now = (int(x) for x in server.ask("stats", "STATS"))
        if open_now != connections:
            raise RuntimeError(f"{setting.name}: {open_now} connections open, expected {connections}")
        client.ask("close", "CLOSED")
        server.ask("idle", "IDLE")
        traced_per_conn = float("nan")
        if trace_connections:
            server.ask("trace", "OK")
            traced0 = int(server.ask("stats", "STATS")[1])
            client.ask(f"open {trace_connections}", "READY")
            time.sleep(0.2)
            traced1 = int(server.ask("stats", "STATS")[1])
            traced_per_conn = (traced1 - traced0) / trace_connections
            if top:
                print(
                    f"{setting.name}: largest traced growths over {trace_connections} connections",
                    file=sys.stderr,
                )
                server.ask("top", "OK")
            client.ask("close", "CLOSED")
    finally:
        if client is not None:
            client.stop()
        server.stop()
    ratio, us = compression_ratio(setting)
    return Result(setting, (rss1 - rss0) / connections, traced_per_conn, ratio, us, negotiated, open_seconds)


def _wsline_revision() -> str:
    """`` (commit)`` of the wsline tree measured, and whether its src/ had uncommitted changes."""
    git = ["git", "-C", str(HERE.parent)]
    try:
        rev = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "src"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    if not rev:
        return ""
    return f" ({rev}{' + uncommitted changes in src/' if dirty else ''})"


def _versions(loop: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    import wsline

    parts = [f"wsline {wsline.__version__}{_wsline_revision()}"]
    for package in ("websockets", "aiohttp", "picows", *(["uvloop"] if loop == "uvloop" else [])):
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package} (not installed)")
    return ", ".join(parts)


def _kib_kb(value: float) -> tuple[str, str]:
    if math.isnan(value):
        return "n/a", "n/a"
    return f"{value / 1024:.1f}", f"{value / 1000:.1f}"


def render(
    results: list[Result],
    failures: list[tuple[Setting, str]],
    command: str,
    connections: int,
    trace_connections: int,
    loop: str,
    elapsed: float,
) -> str:
    lines = [
        "# Memory per idle connection",
        "",
        f"`{command}`: {_versions(loop)}, Python {platform.python_version()}, "
        f"zlib {zlib.ZLIB_RUNTIME_VERSION}, {platform.system()} {platform.machine()}, "
        f"server on the {loop} event loop, {time.strftime('%Y-%m-%d')}; {elapsed:.0f} s in all.",
        "",
        "Server side only (the client, wsline, runs in another process). Every connection exchanged "
        "one message each way, then stayed idle. Per connection, in KiB (1024 bytes) and KB "
        f"(1000 bytes): RSS growth over {connections:,} connections, and tracemalloc's traced growth "
        f"over {trace_connections:,} more. Ratio: compressed / raw bytes of {STREAM_MESSAGES} "
        "chat-like JSON messages sent by the server at that setting, with that library's compressor "
        f"(lower is better); µs/msg: compression time per message. Issue #5's target: at most "
        f"{TARGET_BYTES / 1000:.0f} KB per idle connection without compression.",
        "",
        "| server | window bits | memLevel | context takeover | RSS KiB/conn | RSS KB/conn "
        "| traced KiB/conn | traced KB/conn | ratio | µs/msg |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        bits, mem, takeover = r.setting.describe()
        ratio = f"{r.ratio:.3f}" if r.setting.compression else "1"
        us = f"{r.us_per_msg:.1f}" if r.setting.compression else ""
        rss_kib, rss_kb = _kib_kb(r.rss_per_conn)
        traced_kib, traced_kb = _kib_kb(r.traced_per_conn)
        lines.append(
            f"| {r.setting.name} | {bits} | {mem} | {takeover} | {rss_kib} | {rss_kb} "
            f"| {traced_kib} | {traced_kb} | {ratio} | {us} |"
        )
    lines += [
        "",
        "Notes:",
        "",
        "- Each server runs its library's defaults apart from compression: wsline and websockets "
        "send keepalive pings every 20 s (a timer per connection), aiohttp (`heartbeat=None`) and "
        "picows (`enable_auto_ping=False`) send none. aiohttp's default is compression "
        "(`WebSocketResponse(compress=True)`: accepted when the client offers it, 15-bit windows, "
        "zlib level 1, memLevel 8); its no-compression row passes `compress=False`. picows has "
        "no permessage-deflate.",
        "- The traced column counts what goes through CPython's allocators. That includes zlib's "
        "state (PyMem_RawMalloc), picows' Cython objects (`tp_alloc`) and its read buffer "
        "(PyMem_Malloc), and uvloop's libuv handles (PyMem_RawMalloc), so it is comparable across "
        "the four libraries; it does not include kernel socket buffers, the allocator's own "
        "overhead and fragmentation (which RSS shows), nor memory a C library takes from `malloc` "
        "directly. RSS is lower than traced with large zlib windows: zlib's buffers are big "
        "enough to be mmapped by malloc and only the pages written count.",
        "- picows' figure is mostly the read buffer it allocates per connection "
        "(`read_buffer_init_size`, 16 KiB by default).",
        "",
        "Negotiated (`Sec-WebSocket-Extensions` of the response):",
        "",
    ]
    for r in results:
        lines.append(f"- {r.setting.name}: `{r.negotiated}`")
    if failures:
        lines += ["", "Failed:", ""]
        lines += [f"- {s.name}: {error}" for s, error in failures]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--connections", type=int, default=10_000, help="connections for the RSS column (default 10000)"
    )
    parser.add_argument(
        "--trace-connections",
        type=int,
        default=1000,
        help="connections for the tracemalloc column (default 1000; 0: skip)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="KEY",
        help="run only these settings: keys (see --list), names, or key prefixes (e.g. wsline-deflate)",
    )
    parser.add_argument("--uvloop", action="store_true", help="run the servers on uvloop")
    parser.add_argument(
        "--top",
        type=int,
        default=0,
        metavar="N",
        help="print the N largest traced growths (file:line) of each server to stderr",
    )
    parser.add_argument("--list", action="store_true", help="list the settings' keys and names, then exit")
    parser.add_argument("--output", type=Path, help="where to write the markdown table")
    args = parser.parse_args()
    if args.list:
        for setting in all_settings():
            print(f"{setting.key:28} {setting.name}")
        return
    if not Path("/proc/self/statm").exists():
        raise SystemExit("this benchmark reads /proc: Linux only")
    loop = "uvloop" if args.uvloop else "asyncio"
    output = args.output or (RESULTS_UVLOOP if args.uvloop else RESULTS)
    settings = select_settings(args.only)
    raise_fd_limit(64)
    command = "benchmarks/memory_per_connection.py " + " ".join(
        [f"--connections {args.connections}", f"--trace-connections {args.trace_connections}"]
        + (["--uvloop"] if args.uvloop else [])
        + (["--only " + " ".join(args.only)] if args.only else [])
    )
    start = time.perf_counter()
    results: list[Result] = []
    failures: list[tuple[Setting, str]] = []
    for setting in settings:
        t0 = time.perf_counter()
        try:
            result = measure(setting, args.connections, args.trace_connections, loop, args.top)
        except (RuntimeError, OSError) as exc:
            failures.append((setting, str(exc)))
            print(f"{setting.name:34} FAILED: {exc}", file=sys.stderr, flush=True)
            continue
        results.append(result)
        print(
            f"{setting.name:34} RSS {result.rss_per_conn / 1024:6.1f} KiB/conn  traced "
            f"{result.traced_per_conn / 1024:6.1f} KiB/conn  ratio {result.ratio:.3f}  "
            f"(opened in {result.open_seconds:.1f} s; {time.perf_counter() - t0:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
    table = render(
        results,
        failures,
        command,
        args.connections,
        args.trace_connections,
        loop,
        time.perf_counter() - start,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(table)
    print(table)
    print(f"written to {output}", file=sys.stderr)


def _child_main() -> None:
    role, args = sys.argv[1], sys.argv[2:]
    if role == "_server":
        if args[2] == "uvloop":
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        asyncio.run(run_server(find_setting(args[0]), int(args[1]), int(args[3])))
    else:
        asyncio.run(run_client(int(args[0]), find_setting(args[1]), int(args[2]), int(args[3])))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("_server", "_client"):
        _child_main()
    else:
        main()
