"""Memory per idle WebSocket connection, wsline against the websockets library.

    PYTHONPATH=src python benchmarks/memory_per_connection.py [--connections 2000]

For each setting (no compression; permessage-deflate at several window sizes
and memLevels, with and without context takeover; the websockets library's
server without compression and with its default compression), one fresh
server process is started, and a client in another process (so that client
memory does not count) opens the connections. Every connection sends one
chat-like JSON message and gets it echoed, so that zlib objects exist where
they are created lazily, then stays idle. Two numbers per connection:

- RSS: growth of the server's resident set (``/proc/self/statm``) over
  ``--connections`` connections, after a warm-up and ``gc.collect()``;
- traced: growth of ``tracemalloc``'s traced memory over
  ``--trace-connections`` further connections (tracemalloc sees Python objects
  and zlib's state, which CPython allocates through PyMem_RawMalloc, but not
  kernel socket buffers). It runs after the RSS phase, so its own overhead does
  not inflate the RSS column.

The compression ratio column is measured without sockets, with each library's
own compressor at the same setting, on a stream of 200 chat-like JSON messages
(compressed bytes / raw bytes, lower is better; the server's side, which is
what sends most in a chat server), with the time per message.

The table is printed and written to benchmarks/results/memory.md. Linux only
(``/proc``). Takes about 1 to 2 minutes with the defaults on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
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
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "memory.md"
HOST = "127.0.0.1"
WARMUP_CONNECTIONS = 50
OPEN_CONCURRENCY = 100
STREAM_MESSAGES = 200


# ------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Setting:
    name: str
    impl: str  # "wsline" or "websockets"
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

    out = [Setting("wsline off", "wsline", False)]
    # serve()'s default: DEFAULT_SERVER_CONFIG (its window bits and mem_level).
    default_pair = (default.server_max_window_bits, default.mem_level)
    pairs = [(15, 8), (15, 5), (12, 5), (11, 4), (10, 3)]
    for bits, mem in pairs:
        for nct in (False, True):
            tag = " (default)" if (bits, mem) == default_pair and not nct else ""
            out.append(
                Setting(
                    f"wsline deflate {bits}/{mem}{' nct' if nct else ''}{tag}",
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
        Setting("websockets off", "websockets", False),
        # websockets' compression="deflate": 12-bit windows, memLevel 5, context takeover.
        Setting("websockets deflate (default)", "websockets", True, 12, 5),
    ]


def find_setting(name: str) -> Setting:
    for setting in all_settings():
        if setting.name == name:
            return setting
    raise SystemExit(f"unknown setting {name!r}")


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
    else:
        from websockets.extensions.permessage_deflate import PerMessageDeflate as WsPMD
        from websockets.frames import Frame, Opcode

        bits = setting.window_bits or 15
        nct = setting.no_context_takeover

        def run() -> list[bytes]:
            sender = WsPMD(nct, nct, bits, bits, {"memLevel": setting.mem_level or 8})
            return [bytes(sender.encode(Frame(Opcode.TEXT, m)).data) for m in messages]

        receiver_ws = WsPMD(nct, nct, bits, bits)

        def check(c: bytes) -> bytes:
            return bytes(receiver_ws.decode(Frame(Opcode.TEXT, c, rsv1=True)).data)

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
    want = need if hard == resource.RLIM_INFINITY else min(hard, max(need, soft))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < need:
        print(f"warning: the open-file limit is {soft}, below the {need} needed", file=sys.stderr)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def run_server(setting: Setting, fd_need: int) -> None:
    raise_fd_limit(fd_need)
    open_count = 0

    async def stdin_lines() -> asyncio.StreamReader:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        return reader

    if setting.impl == "wsline":
        import wsline

        async def handler(ws: Any) -> None:
            nonlocal open_count
            open_count += 1
            try:
                async for message in ws:
                    await ws.send(message)
            except wsline.ConnectionClosed:
                pass
            finally:
                open_count -= 1

        server_cm: Any = wsline.serve(
            handler,
            HOST,
            0,
            compression="deflate" if setting.compression else None,
            deflate=wsline_server_config(setting),
            backlog=1024,
        )
    else:
        from websockets.asyncio.server import serve
        from websockets.exceptions import ConnectionClosed

        async def handler(ws: Any) -> None:
            nonlocal open_count
            open_count += 1
            try:
                async for message in ws:
                    await ws.send(message)
            except ConnectionClosed:
                pass
            finally:
                open_count -= 1

        server_cm = serve(
            handler, HOST, 0, compression="deflate" if setting.compression else None, backlog=1024
        )

    async with server_cm as server:
        if setting.impl == "wsline":
            port = server.port
        else:
            port = server.sockets[0].getsockname()[1]
        reader = await stdin_lines()
        print(f"PORT {port}", flush=True)
        while line := (await reader.readline()).decode().strip():
            if line == "stats":
                for _ in range(3):
                    gc.collect()
                traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else -1
                print(f"STATS {rss_bytes()} {traced} {open_count}", flush=True)
            elif line == "trace":
                tracemalloc.start(1)
                print("OK", flush=True)
            elif line == "idle":
                deadline = time.monotonic() + 30
                while open_count and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.1)
                print(f"IDLE {open_count}", flush=True)
            elif line == "quit":
                break
    if tracemalloc.is_tracing():
        tracemalloc.stop()


# --------------------------------------------------------------------- client


async def run_client(port: int, setting: Setting, fd_need: int) -> None:
    import wsline

    raise_fd_limit(fd_need)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    url = f"ws://{HOST}:{port}/"
    message = chat_messages(1, seed=1)[0]
    conns: list[Any] = []
    header: str | None = None

    async def open_one(sem: asyncio.Semaphore) -> None:
        nonlocal header
        async with sem:
            ws = await wsline.connect(
                url,
                compression="deflate" if setting.compression else None,
                ping_interval=None,
                open_timeout=60,
            )
            await ws.send(message)
            echo = await ws.recv(timeout=60)
            assert echo == message, "bad echo"
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

    def __init__(self, args: list[str]) -> None:
        self.args = args
        env = dict(os.environ)
        src = str(HERE.parent / "src")
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), *args],
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
            self.proc.wait(10)
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


def measure(setting: Setting, connections: int, trace_connections: int) -> Result:
    fd_need = max(connections, trace_connections) + WARMUP_CONNECTIONS + 256
    server = Child(["_server", setting.name, str(fd_need)])
    client: Child | None = None
    try:
        port = server.ask(None, "PORT")[0]
        client = Child(["_client", port, setting.name, str(fd_need)])
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
            client.ask("close", "CLOSED")
    finally:
        if client is not None:
            client.stop()
        server.stop()
    ratio, us = compression_ratio(setting)
    return Result(setting, (rss1 - rss0) / connections, traced_per_conn, ratio, us, negotiated, open_seconds)


def render(results: list[Result], connections: int, trace_connections: int, elapsed: float) -> str:
    from importlib.metadata import version

    import wsline

    lines = [
        "# Memory per idle connection",
        "",
        f"`benchmarks/memory_per_connection.py --connections {connections} "
        f"--trace-connections {trace_connections}`: wsline {wsline.__version__}, "
        f"websockets {version('websockets')}, Python {platform.python_version()}, "
        f"zlib {zlib.ZLIB_RUNTIME_VERSION}, {platform.system()} {platform.machine()}, "
        f"{time.strftime('%Y-%m-%d')}; {elapsed:.0f} s in all.",
        "",
        "Server side only (the client runs in another process). Every connection exchanged one "
        "message each way, then stayed idle. KiB per connection: RSS growth over "
        f"{connections} connections, and tracemalloc's traced growth over {trace_connections} "
        "(Python objects and zlib state, no kernel buffers). Ratio: compressed / raw bytes "
        f"of {STREAM_MESSAGES} chat-like JSON messages sent by the server at that setting "
        "(lower is better); µs/msg: compression time per message.",
        "",
        "| server | window bits | memLevel | context takeover | RSS KiB/conn | traced KiB/conn "
        "| ratio | µs/msg |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        bits, mem, takeover = r.setting.describe()
        ratio = f"{r.ratio:.3f}" if r.setting.compression else "1"
        us = f"{r.us_per_msg:.1f}" if r.setting.compression else ""
        lines.append(
            f"| {r.setting.name} | {bits} | {mem} | {takeover} | {r.rss_per_conn / 1024:.1f} "
            f"| {r.traced_per_conn / 1024:.1f} | {ratio} | {us} |"
        )
    lines += ["", "Negotiated (`Sec-WebSocket-Extensions` of the response):", ""]
    for r in results:
        lines.append(f"- {r.setting.name}: `{r.negotiated}`")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=2000, help="connections for the RSS column")
    parser.add_argument(
        "--trace-connections", type=int, default=300, help="connections for the tracemalloc column (0: skip)"
    )
    parser.add_argument("--only", default="", help="run only settings whose name contains this text")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the markdown table")
    args = parser.parse_args()
    if not Path("/proc/self/statm").exists():
        raise SystemExit("this benchmark reads /proc: Linux only")
    raise_fd_limit(64)
    settings = [s for s in all_settings() if args.only in s.name]
    start = time.perf_counter()
    results = []
    for setting in settings:
        t0 = time.perf_counter()
        result = measure(setting, args.connections, args.trace_connections)
        results.append(result)
        print(
            f"{setting.name:38} RSS {result.rss_per_conn / 1024:6.1f} KiB/conn  traced "
            f"{result.traced_per_conn / 1024:6.1f} KiB/conn  ratio {result.ratio:.3f}  "
            f"({time.perf_counter() - t0:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
    table = render(results, args.connections, args.trace_connections, time.perf_counter() - start)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(table)
    print(table)
    print(f"written to {args.output}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_server":
        asyncio.run(run_server(find_setting(sys.argv[2]), int(sys.argv[3])))
    elif len(sys.argv) > 1 and sys.argv[1] == "_client":
        asyncio.run(run_client(int(sys.argv[2]), find_setting(sys.argv[3]), int(sys.argv[4])))
    else:
        main()
