"""Soak test: N concurrent connections against one wsline server process, with traffic and churn.

    PYTHONPATH=src python benchmarks/soak.py                      # 10,000 connections, 300 s
    PYTHONPATH=src python benchmarks/soak.py --connections 2000 --duration 60 --rate 2000
    PYTHONPATH=src python benchmarks/soak.py --duration 600 --write   # also writes results/soak.md

One server process (``soak.py --serve``, an echo handler on wsline's ``serve``)
and one load process (this one: wsline's ``connect``, which also samples the
server from ``/proc``). Each of the N connection slots connects from one of
several loopback source addresses (127.0.0.1, .2, ...), exchanges a small and a
large message (so that both sides' zlib state is in use), then sends messages
at random (exponential) intervals, ``--rate`` messages per second over all
connections, about 1 in ``--large-every`` of them a ``--large-size`` binary
message, the others ``--size`` byte chat-like text. A ``--churn`` fraction of
the slots close their connection normally (1000) after a random lifetime around
``--lifetime`` seconds and connect again, for the whole run; the others stay
connected throughout. At the end every connection stops sending, waits for its
last echoes and closes with 1000.

Checks (any failure makes the exit status 1):

- errors: 0. Client side: failed connects, exceptions from ``send``/``recv``,
  closes that were not a clean 1000, closes that hung; server side: the
  ``server.errors`` channel, abnormal closes seen by the handler, and any record
  of the ``wsline`` logger at INFO or above (wsline logs only anomalies at INFO:
  timeouts, failed connections, refusals) or of any logger at WARNING or above,
  and exceptions reaching the event loop's exception handler.
- message loss: 0. Every message carries its connection and sequence number;
  the client checks that the echoes arrive exactly once, in order, intact.
  Messages whose loss was signalled by an exception are counted apart
  ("reported"); they also count as errors.
- memory growth: the server's RSS, sampled every ``--sample-interval`` seconds
  during the steady phase, must not grow by more than ``--max-growth`` percent
  between the first and the last samples after ``--warmup`` seconds.
- leaks after the run: no connection, handler task or protocol left in the
  server once every client closed.

Memory per connection is the server's RSS (``/proc/<pid>/status``, no
tracemalloc) after all N connections were open and had exchanged their first
messages, minus its RSS before, divided by N (both after ``gc.collect()``).
Linux only. The script raises its open-file limit to the hard limit in both
processes and stops at once if the hard limit is too low for N.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import collections
import contextlib
import gc
import json
import logging
import math
import os
import platform
import random
import resource
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "soak.md"
HOST = "127.0.0.1"
FD_MARGIN = 100
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ shared helpers


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft open-file limit to the hard one; return (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def rss_kib(pid: int | str = "self") -> int:
    """VmRSS of a process, in KiB, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU-seconds spent busy by the whole machine since boot (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


class CountingHandler(logging.Handler):
    """Counts log records (the soak's definition of an anomaly) and keeps the first few."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0
        self.kinds: collections.Counter[str] = collections.Counter()
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "wsline.server" and record.msg == "listening on %s":
            return
        self.count += 1
        self.kinds[f"{record.name} {record.levelname}: {record.msg}"] += 1
        if len(self.first) < 5:
            with contextlib.suppress(Exception):
                self.first.append(f"{record.name} {record.levelname}: {self.format(record)}"[:600])


def install_anomaly_logging() -> CountingHandler:
    """wsline's INFO records and everyone's WARNINGs count as anomalies."""
    handler = CountingHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    root.addHandler(handler)
    logging.getLogger("wsline").setLevel(logging.INFO)
    return handler


def install_loop_handler(counter: collections.Counter[str], first: list[str]) -> None:
    def on_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        key = f"loop: {context.get('message')} {type(exc).__name__ if exc else ''}"
        counter[key] += 1
        if len(first) < 5:
            first.append(f"{key} {exc!r}"[:600])

    asyncio.get_running_loop().set_exception_handler(on_error)


class Stalls:
    """Event-loop lag (a 50 ms ticker's overshoot) and garbage-collector pauses, per process.

    ``take()`` returns the worst since the previous call, and resets it.
    """

    TICK = 0.05

    def __init__(self) -> None:
        self.lag_max = 0.0
        self.lag_max_all = 0.0
        self.gc_max = 0.0
        self.gc_max_all = 0.0
        self.gc_full = 0
        self.gc_seconds = 0.0
        self._gc_start = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.create_task(self._tick())

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
            return
        pause = time.perf_counter() - self._gc_start
        self.gc_seconds += pause
        self.gc_max = max(self.gc_max, pause)
        self.gc_max_all = max(self.gc_max_all, pause)
        if info.get("generation") == 2:
            self.gc_full += 1

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.TICK)
            lag = time.perf_counter() - before - self.TICK
            self.lag_max = max(self.lag_max, lag)
            self.lag_max_all = max(self.lag_max_all, lag)

    def take(self) -> dict[str, float]:
        out = {
            "lag_max": self.lag_max,
            "lag_max_all": self.lag_max_all,
            "gc_max": self.gc_max,
            "gc_max_all": self.gc_max_all,
            "gc_full": self.gc_full,
            "gc_seconds": self.gc_seconds,
        }
        self.lag_max = self.gc_max = 0.0
        return out


def run(coro: Any, use_uvloop: bool) -> Any:
    if use_uvloop:
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


# --------------------------------------------------------------------- the server


async def serve_main(args: argparse.Namespace) -> int:
    import wsline

    soft, _hard = raise_fd_limit()
    anomalies = install_anomaly_logging()
    loop_errors: collections.Counter[str] = collections.Counter()
    loop_first: list[str] = []
    install_loop_handler(loop_errors, loop_first)
    stalls = Stalls()
    stalls.start()
    stats: dict[str, Any] = {"opened": 0, "closed": 0, "echoed": 0, "abnormal": 0, "channel_errors": 0}
    close_codes: collections.Counter[str] = collections.Counter()
    abnormal_first: list[str] = []

    async def echo(ws: wsline.WebSocket) -> None:
        stats["opened"] += 1
        try:
            async for message in ws:
                await ws.send(message)
                stats["echoed"] += 1
            close_codes[str(ws.close_code)] += 1
        except wsline.ConnectionClosed as exc:
            stats["abnormal"] += 1
            close_codes[str(exc.code)] += 1
            if len(abnormal_first) < 5:
                abnormal_first.append(f"{ws.id} {ws.remote_address}: {exc!r}")
        finally:
            stats["closed"] += 1

    keepalive = args.keepalive or None
    async with wsline.serve(
        echo,
        HOST,
        0,
        compression=None if args.no_compression else "deflate",
        ping_interval=keepalive,
        ping_timeout=keepalive,
        backlog=4096,
    ) as server:
        channel_first: list[str] = []

        async def read_errors() -> None:
            async for error, info in server.errors:
                stats["channel_errors"] += 1
                if len(channel_first) < 5:
                    channel_first.append(f"{info.id} {info.remote_address}: {error!r}")

        errors_task = asyncio.create_task(read_errors())
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        print(f"PORT {server.port} {soft}", flush=True)
        while True:
            line = (await reader.readline()).decode().strip()
            if not line or line == "quit":
                break
            if line == "objects":
                print(json.dumps({"objects": len(gc.get_objects())}), flush=True)
            elif line.startswith("stats"):
                if line == "stats gc":
                    gc.collect()
                reply = {
                    **stats,
                    "connections": len(server.connections),
                    "protocols": len(getattr(server, "_protocols", ())),
                    "tasks": len(asyncio.all_tasks()),
                    "close_codes": dict(close_codes),
                    "log_records": anomalies.count,
                    "log_kinds": dict(anomalies.kinds),
                    "log_first": anomalies.first,
                    "loop_errors": dict(loop_errors),
                    "loop_first": loop_first,
                    "channel_first": channel_first,
                    "abnormal_first": abnormal_first,
                    "errors_dropped": server.errors.dropped,
                    "rss_kib": rss_kib(),
                    **stalls.take(),
                }
                print(json.dumps(reply), flush=True)
        errors_task.cancel()
    return 0


# ------------------------------------------------------------------------- load


_WORDS = (
    "the a to and of is in it you that was for on are with as I they be at one have this from hey "
    "ok thanks sure yes no maybe tomorrow today meeting deploy build test server client message room "
    "channel ping latency bug fix release merge review please done great nice"
).split()


def make_fillers(size: int, count: int = 64) -> list[str]:
    rng = random.Random(7)
    out = []
    for _ in range(count):
        words: list[str] = []
        while sum(len(w) + 1 for w in words) < size:
            words.append(rng.choice(_WORDS))
        out.append(" ".join(words)[:size])
    return out


@dataclass
class Totals:
    handshakes: int = 0
    sent: int = 0
    received: int = 0
    bytes_received: int = 0
    lost: int = 0  # never echoed, no exception told the sender
    lost_reported: int = 0  # outstanding when an exception ended the connection
    mismatched: int = 0  # echoes out of order, duplicated, corrupted or unexpected
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    first_errors: list[str] = field(default_factory=list)
    latencies: array.array[float] = field(default_factory=lambda: array.array("d"))
    close_times: array.array[float] = field(default_factory=lambda: array.array("d"))
    close_frame_times: array.array[float] = field(default_factory=lambda: array.array("d"))
    close_fin_times: array.array[float] = field(default_factory=lambda: array.array("d"))

    def error(self, kind: str, detail: str = "") -> None:
        self.errors[kind] += 1
        if len(self.first_errors) < 10:
            self.first_errors.append(f"{kind}: {detail}"[:600])


class Conn:
    """One client connection, its reader task, and what it still expects back."""

    __slots__ = ("closing", "drained", "outstanding", "read_ended", "reader", "seq", "tag", "ws")

    def __init__(self, ws: Any, tag: str) -> None:
        self.ws = ws
        self.tag = tag
        self.seq = 0
        self.outstanding: collections.deque[tuple[Any, float]] = collections.deque()
        self.drained: asyncio.Future[None] | None = None
        self.closing = False
        self.reader: asyncio.Task[None] | None = None
        self.read_ended = 0.0  # when the reader saw the end: the peer's close frame, or a failure


class Load:
    def __init__(self, args: argparse.Namespace, port: int) -> None:
        self.args = args
        self.url = f"ws://{HOST}:{port}/soak"
        self.port = port
        self.t = Totals()
        self.fillers = make_fillers(args.size)
        rng = random.Random(11)
        self.large = bytes(rng.getrandbits(8) for _ in range(args.large_size))
        self.sources = [f"127.0.0.{1 + i}" for i in range(args.sources)]
        self.open_sem = asyncio.Semaphore(args.open_concurrency)
        self.go = asyncio.Event()
        self.stop = asyncio.Event()
        self.initial_open = 0
        self.open_now = 0
        self.per_conn_rate = args.rate / args.connections
        self.churn_slots = round(args.connections * args.churn)
        self.churn_closes = 0

    def message(self, c: Conn, large: bool) -> Any:
        c.seq += 1
        head = f"{c.tag}.{c.seq}|"
        if large:
            return head.encode() + self.large
        return head + self.fillers[c.seq % len(self.fillers)]

    async def read(self, c: Conn) -> None:
        t = self.t
        import wsline

        try:
            async for message in c.ws:
                now = time.perf_counter()
                if not c.outstanding:
                    t.mismatched += 1
                    t.error("unexpected message", f"{c.tag}: {str(message)[:60]}")
                    continue
                expected, sent_at = c.outstanding.popleft()
                if message != expected:
                    t.mismatched += 1
                    t.error("out of order or corrupted echo", f"{c.tag}: got {str(message)[:40]}")
                    continue
                t.received += 1
                t.bytes_received += len(message)
                if self.go.is_set() and not self.stop.is_set():  # round trips of the steady phase
                    t.latencies.append(now - sent_at)
                if not c.outstanding and c.drained is not None and not c.drained.done():
                    c.drained.set_result(None)
        except wsline.ConnectionClosed as exc:
            t.lost_reported += len(c.outstanding)
            c.outstanding.clear()
            t.error("connection closed abnormally (client recv)", f"{c.tag}: {exc!r}")
        except Exception as exc:  # noqa: BLE001 - every unexpected exception is counted
            t.error(f"recv raised {type(exc).__name__}", f"{c.tag}: {exc!r}")
        finally:
            c.read_ended = time.perf_counter()
            if c.drained is not None and not c.drained.done():
                c.drained.set_result(None)

    async def send(self, c: Conn, large: bool) -> bool:
        import wsline

        message = self.message(c, large)
        c.outstanding.append((message, time.perf_counter()))
        self.t.sent += 1
        try:
            await c.ws.send(message)
        except wsline.ConnectionClosed as exc:
            self.t.lost_reported += len(c.outstanding)
            c.outstanding.clear()
            self.t.error("send raised ConnectionClosed", f"{c.tag}: {exc!r}")
            return False
        except Exception as exc:  # noqa: BLE001
            self.t.error(f"send raised {type(exc).__name__}", f"{c.tag}: {exc!r}")
            return False
        return True

    async def drain(self, c: Conn, timeout: float) -> bool:
        """Wait until every message sent on ``c`` came back; count the rest as lost."""
        if c.outstanding:
            c.drained = asyncio.get_running_loop().create_future()
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(c.drained), timeout)
        if c.outstanding:
            self.t.lost += len(c.outstanding)
            self.t.error("echo missing", f"{c.tag}: {len(c.outstanding)} messages never came back")
            c.outstanding.clear()
            return False
        return True

    async def open(self, slot: int, generation: int) -> Conn | None:
        import wsline

        loop = asyncio.get_running_loop()
        args = self.args
        source = self.sources[slot % len(self.sources)]
        async with self.open_sem:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((source, 0))
                await asyncio.wait_for(loop.sock_connect(sock, (HOST, self.port)), 30)
                ws = await wsline.connect(
                    self.url,
                    sock=sock,
                    compression=None if args.no_compression else "deflate",
                    ping_interval=args.keepalive or None,
                    ping_timeout=args.keepalive or None,
                    open_timeout=30,
                )
            except Exception as exc:  # noqa: BLE001
                sock.close()
                self.t.error(f"connect failed: {type(exc).__name__}", f"slot {slot} from {source}: {exc!r}")
                return None
        self.t.handshakes += 1
        c = Conn(ws, f"{slot}.{generation}")
        c.reader = asyncio.create_task(self.read(c))
        # A small and a large message first: both sides' zlib state is then in use.
        if not await self.send(c, False) or not await self.send(c, True):
            await self.finish(c, abort=True)
            return None
        if not await self.drain(c, 60):
            await self.finish(c, abort=True)
            return None
        return c

    async def finish(self, c: Conn, abort: bool = False) -> None:
        """Close with 1000 (or abort after a failure) and check how it ended."""
        ws = c.ws
        c.closing = True
        if abort:
            ws.abort()
        else:
            start = time.perf_counter()
            try:
                await asyncio.wait_for(ws.close(1000), ws.close_timeout + 5)
            except Exception as exc:  # noqa: BLE001
                self.t.error(f"close raised {type(exc).__name__}", f"{c.tag}: {exc!r}")
            end = time.perf_counter()
            self.t.close_times.append(end - start)
            if c.read_ended >= start:  # split: until the server's close frame, then until its FIN
                self.t.close_frame_times.append(c.read_ended - start)
                self.t.close_fin_times.append(end - c.read_ended)
            if ws.close_code != 1000:
                self.t.error("close code not 1000", f"{c.tag}: {ws.close_code} {ws.close_reason!r}")
        if c.reader is not None:
            try:
                await asyncio.wait_for(c.reader, 15)
            except Exception as exc:  # noqa: BLE001
                self.t.error("reader did not end after close", f"{c.tag}: {exc!r}")

    async def slot(self, slot: int) -> None:
        churny = slot < self.churn_slots
        generation = 0
        first = True
        while True:
            c = await self.open(slot, generation)
            generation += 1
            if first:
                first = False
                self.initial_open += 1
                await self.go.wait()
            if c is None:
                if self.stop.is_set():
                    return
                await asyncio.sleep(1)
                continue
            self.open_now += 1
            # Lifetimes between 0.5 and 1.5 x --lifetime; the first ones spread from 0, so that
            # the churning connections do not all reconnect in waves.
            low = 0.0 if generation == 1 else 0.5
            lifetime = random.uniform(low, 1.5) * self.args.lifetime if churny else math.inf
            ends = time.monotonic() + lifetime
            healthy = True
            while not self.stop.is_set() and healthy:
                wait = random.expovariate(self.per_conn_rate) if self.per_conn_rate > 0 else 3600.0
                wait = min(wait, ends - time.monotonic())
                while wait > 0 and not self.stop.is_set():  # plain sleeps: no task per wait
                    await asyncio.sleep(min(wait, 2.0))
                    wait -= 2.0
                if self.stop.is_set() or time.monotonic() >= ends:
                    break
                large = self.args.large_every > 0 and random.randrange(self.args.large_every) == 0
                healthy = await self.send(c, large) and c.ws.open
            healthy = await self.drain(c, 60) and healthy
            await self.finish(c, abort=not healthy)
            self.open_now -= 1
            if self.stop.is_set():
                return
            self.churn_closes += 1


# ----------------------------------------------------------------- orchestration


class ServerProcess:
    def __init__(self, proc: asyncio.subprocess.Process, port: int, soft_limit: int) -> None:
        self.proc = proc
        self.port = port
        self.soft_limit = soft_limit
        self.lock = asyncio.Lock()

    @classmethod
    async def start(cls, args: argparse.Namespace) -> ServerProcess:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", "--keepalive", str(args.keepalive)]
        if args.no_compression:
            cmd.append("--no-compression")
        if args.uvloop:
            cmd.append("--uvloop")
        env = dict(os.environ)
        src = str(HERE.parent / "src")
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env, limit=2**22
        )
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().split()
        if not line or line[0] != "PORT":
            raise SystemExit(f"the server did not start: {line!r}")
        return cls(proc, int(line[1]), int(line[2]))

    async def stats(self, collect: bool = False, command: str = "") -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        command = command or ("stats gc" if collect else "stats")
        async with self.lock:
            self.proc.stdin.write(command.encode() + b"\n")
            await self.proc.stdin.drain()
            line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        if not line:
            raise RuntimeError("the server process went away")
        return dict(json.loads(line))

    async def quit(self) -> int:
        assert self.proc.stdin is not None
        with contextlib.suppress(ConnectionError):
            self.proc.stdin.write(b"quit\n")
            await self.proc.stdin.drain()
        try:
            return await asyncio.wait_for(self.proc.wait(), 60)
        except (asyncio.TimeoutError, TimeoutError):
            self.proc.kill()
            await self.proc.wait()
            return -9


def tcp_states(port: int) -> collections.Counter[str]:
    """States of the TCP sockets on the server's port (/proc/net/tcp), for the report."""
    states = (
        "ESTABLISHED SYN_SENT SYN_RECV FIN_WAIT1 FIN_WAIT2 TIME_WAIT CLOSE CLOSE_WAIT LAST_ACK LISTEN CLOSING"
    )
    names = {f"{i:02X}": name for i, name in enumerate(states.split(), 1)}
    out: collections.Counter[str] = collections.Counter()
    hexport = f"{port:04X}"
    with contextlib.suppress(OSError), open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[1].endswith(":" + hexport) or parts[2].endswith(":" + hexport):
                out[names.get(parts[3], parts[3])] += 1
    return out


def git_commit() -> str:
    """The checkout's commit, with "+ changes in src" when src/ differs from it."""
    import subprocess

    root = HERE.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + (" + changes in src/" if dirty else "")


def final_stalls(samples: list[dict[str, Any]], key: str) -> dict[str, float]:
    """Worst lag and GC pause of the steady phase, and the process's GC totals."""
    steady = [r[key] for r in samples if r["phase"] == "steady"][1:]
    last = samples[-1][key]
    return {
        "lag_max": max((r["lag_max"] for r in steady), default=0.0),
        "gc_max": max((r["gc_max"] for r in steady), default=0.0),
        "gc_full": last["gc_full"],
        "gc_seconds": last["gc_seconds"],
    }


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return 60 * sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


async def load_main(args: argparse.Namespace) -> dict[str, Any]:
    soft, hard = raise_fd_limit()
    need = args.connections + FD_MARGIN
    report: dict[str, Any] = {"args": vars(args), "fd_soft": soft, "fd_hard": hard, "commit": git_commit()}
    if soft < need:
        raise SystemExit(
            f"the open-file hard limit is {hard}, too low for {args.connections} connections "
            f"(needs about {need}); raise it (ulimit -Hn) or lower --connections"
        )
    anomalies = install_anomaly_logging()
    loop_errors: collections.Counter[str] = collections.Counter()
    loop_first: list[str] = []
    install_loop_handler(loop_errors, loop_first)
    stalls = Stalls()
    stalls.start()
    server = await ServerProcess.start(args)
    report["server_fd_soft"] = server.soft_limit
    if server.soft_limit < need:
        await server.quit()
        raise SystemExit(f"the server's open-file limit is {server.soft_limit}, too low for {need}")
    pid = server.proc.pid
    load = Load(args, server.port)
    t = load.t
    log = print if not args.quiet else (lambda *a, **k: None)
    samples: list[dict[str, Any]] = []
    t0 = time.monotonic()
    phase = "warm-up"

    async def sample() -> dict[str, Any]:
        s = await server.stats(collect=args.collect)
        row = {
            "t": time.monotonic() - t0,
            "phase": phase,
            "server_rss": rss_kib(pid),
            "client_rss": rss_kib(),
            "server_cpu": cpu_seconds(pid),
            "client_cpu": cpu_seconds(),
            "busy": machine_busy_seconds(),
            "open": load.open_now,
            "server_conns": s["connections"],
            "server_tasks": s["tasks"],
            "handshakes": t.handshakes,
            "sent": t.sent,
            "received": t.received,
            "errors": sum(t.errors.values()),
            "server_errors": s["abnormal"] + s["channel_errors"] + s["log_records"],
            "server_stalls": {k: v for k, v in s.items() if k.startswith(("lag_", "gc_"))},
            "client_stalls": stalls.take(),
        }
        samples.append(row)
        return row

    # Warm-up: some connections come and go, so that the code paths and caches are warm.
    warm = await asyncio.gather(*(load.open(-1 - i, 0) for i in range(min(50, args.connections))))
    await asyncio.gather(*(load.finish(c) for c in warm if c is not None))
    await asyncio.sleep(1)
    base = await server.stats(collect=True)
    rss_before = rss_kib(pid)
    client_before = rss_kib()
    objects_before = (await server.stats(command="objects"))["objects"]
    report["server_rss_before"] = rss_before
    await sample()

    # Open N connections (each exchanges a small and a large message).
    phase = "connect"
    log(f"opening {args.connections} connections from {len(load.sources)} source addresses ...", flush=True)
    start = time.perf_counter()
    slots = [asyncio.create_task(load.slot(i)) for i in range(args.connections)]
    while load.initial_open < args.connections:
        await asyncio.sleep(0.05)
    report["open_seconds"] = time.perf_counter() - start
    report["open_failures"] = sum(v for k, v in t.errors.items() if k.startswith("connect failed"))
    after = await server.stats(collect=True)
    gc.collect()
    rss_after = rss_kib(pid)
    report.update(
        server_rss_after=rss_after,
        server_conns_after=after["connections"],
        client_rss_after=rss_kib(),
        mem_per_conn_kib=(rss_after - rss_before) / args.connections,
        client_mem_per_conn_kib=(rss_kib() - client_before) / args.connections,
    )
    objects_after = (await server.stats(command="objects"))["objects"]
    report["gc_objects_per_conn"] = (objects_after - objects_before) / args.connections
    report["gc_objects_after"] = objects_after
    log(
        f"  {after['connections']} open in {report['open_seconds']:.1f} s; server RSS {rss_before / 1024:.1f}"
        f" -> {rss_after / 1024:.1f} MiB = {report['mem_per_conn_kib']:.1f} KiB per connection",
        flush=True,
    )
    await sample()

    # The load process's own objects (N connections) leave the GC's view, so that its full
    # collections do not stall the load; the server is left as it is.
    gc.freeze()

    # Steady phase: traffic and churn.
    phase = "steady"
    load.go.set()
    steady_start = await sample()
    steady_t0 = time.monotonic()
    interval = args.sample_interval
    log(f"steady phase: {args.duration:g} s, {args.rate:g} msg/s, churn {args.churn:g}", flush=True)
    while (elapsed := time.monotonic() - steady_t0) < args.duration:
        await asyncio.sleep(min(interval, args.duration - elapsed))
        row = await sample()
        log(
            f"  {row['t']:7.1f} s  server RSS {row['server_rss'] / 1024:8.1f} MiB  open {row['open']:6d}"
            f"  server conns {row['server_conns']:6d}  handshakes {row['handshakes']:7d}  "
            f"echoes {row['received']:9d}  errors {row['errors']}/{row['server_errors']}  lag "
            f"{1000 * row['server_stalls']['lag_max']:.0f}/{1000 * row['client_stalls']['lag_max']:.0f} ms",
            flush=True,
        )
    steady_end = samples[-1]
    report["tcp_states"] = dict(tcp_states(server.port))

    # Drain and close everything with 1000.
    phase = "close"
    log("stopping: draining echoes and closing every connection with 1000 ...", flush=True)
    close_start = time.perf_counter()
    load.stop.set()
    done, pending = await asyncio.wait(slots, timeout=180)
    for task in pending:
        task.cancel()
        t.error("slot did not finish within 180 s of the stop", "")
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            t.error(f"slot task raised {type(task.exception()).__name__}", repr(task.exception()))
    report["close_seconds"] = time.perf_counter() - close_start
    final: dict[str, Any] = {}
    for _ in range(100):  # the server closes its side a moment after the clients
        final = await server.stats(collect=True)
        if (
            final["connections"] == 0
            and final["protocols"] == 0
            and final["closed"] == final["opened"]
            and final["tasks"] <= base["tasks"]
        ):
            break
        await asyncio.sleep(0.1)
    report["server_rss_final"] = rss_kib(pid)
    report["server_final"] = final
    report["server_base"] = base
    report["server_exit"] = await server.quit()

    # Figures.
    steady_rows = [r for r in samples if r["phase"] == "steady"]
    after_warmup = [r for r in steady_rows if r["t"] - steady_start["t"] >= args.warmup]
    if len(after_warmup) < 4:
        after_warmup = steady_rows[len(steady_rows) // 2 :]
    k = max(1, min(3, len(after_warmup) // 3))
    first_rss = sum(r["server_rss"] for r in after_warmup[:k]) / k
    last_rss = sum(r["server_rss"] for r in after_warmup[-k:]) / k
    steady_seconds = steady_end["t"] - steady_start["t"]
    lat = sorted(t.latencies)
    closes = sorted(t.close_times)
    other_cpu = (steady_end["busy"] - steady_start["busy"]) - (
        steady_end["server_cpu"]
        - steady_start["server_cpu"]
        + steady_end["client_cpu"]
        - steady_start["client_cpu"]
    )
    server_errors = (
        final.get("abnormal", 0)
        + final.get("channel_errors", 0)
        + final.get("log_records", 0)
        + sum(final.get("loop_errors", {}).values())
    )
    leaks = {
        "connections": final.get("connections"),
        "protocols": final.get("protocols"),
        "handlers running": final.get("opened", 0) - final.get("closed", 0),
        "tasks above the start": final.get("tasks", 0) - base.get("tasks", 0),
    }
    client_errors = sum(t.errors.values()) + anomalies.count + sum(loop_errors.values())
    report.update(
        steady_seconds=steady_seconds,
        growth_first_kib=first_rss,
        growth_last_kib=last_rss,
        growth_pct=100 * (last_rss - first_rss) / first_rss if first_rss else 0.0,
        growth_slope_kib_min=slope_per_minute([(r["t"], r["server_rss"]) for r in after_warmup]),
        growth_window=(after_warmup[0]["t"] - steady_start["t"], after_warmup[-1]["t"] - steady_start["t"]),
        peak_rss=max(r["server_rss"] for r in samples),
        messages_per_s=(steady_end["received"] - steady_start["received"]) / steady_seconds,
        handshakes_per_s=(steady_end["handshakes"] - steady_start["handshakes"]) / steady_seconds,
        steady_handshakes=steady_end["handshakes"] - steady_start["handshakes"],
        server_cpu_pct=100 * (steady_end["server_cpu"] - steady_start["server_cpu"]) / steady_seconds,
        client_cpu_pct=100 * (steady_end["client_cpu"] - steady_start["client_cpu"]) / steady_seconds,
        other_cpu_pct=100 * other_cpu / steady_seconds,
        min_open=min(r["server_conns"] for r in steady_rows),
        max_open=max(r["server_conns"] for r in steady_rows),
        latency_ms={q: 1000 * percentile(lat, q) for q in (0.5, 0.99, 0.999)}
        | {"max": 1000 * lat[-1] if lat else 0},
        closes_slow={
            "over 1 s": sum(1 for x in closes if x > 1),
            "over 9.5 s": sum(1 for x in closes if x > 9.5),
        },
        close_split_ms={
            name: {q: 1000 * percentile(v, q) for q in (0.5, 0.99, 1.0)}
            for name, v in (
                ("frame", sorted(t.close_frame_times)),
                ("fin", sorted(t.close_fin_times)),
            )
        },
        close_ms={q: 1000 * percentile(closes, q) for q in (0.5, 0.99)}
        | {"max": 1000 * closes[-1] if closes else 0},
        totals={
            "handshakes": t.handshakes,
            "sent": t.sent,
            "received": t.received,
            "bytes_received": t.bytes_received,
            "lost": t.lost,
            "lost_reported": t.lost_reported,
            "mismatched": t.mismatched,
        },
        server_stalls_all=final_stalls(samples, "server_stalls"),
        client_stalls_all=final_stalls(samples, "client_stalls"),
        client_errors=client_errors,
        client_error_kinds=dict(t.errors) | dict(anomalies.kinds) | dict(loop_errors),
        client_first_errors=t.first_errors + anomalies.first + loop_first,
        server_errors=server_errors,
        leaks=leaks,
        loadavg=os.getloadavg(),
        samples=samples,
    )
    failures = []
    if client_errors or server_errors:
        failures.append(f"errors: {client_errors} client, {server_errors} server")
    if t.lost or t.mismatched or t.sent != t.received + t.lost + t.lost_reported:
        failures.append(f"message loss: {t.lost} lost, {t.mismatched} out of order/duplicated/corrupted")
    if report["growth_pct"] > args.max_growth:
        failures.append(f"memory growth {report['growth_pct']:.2f} % > {args.max_growth:g} %")
    if any(leaks.values()):
        failures.append(f"left in the server after the run: {leaks}")
    if t.handshakes != final.get("opened"):
        failures.append(f"handshakes: client {t.handshakes}, server {final.get('opened')}")
    if report["server_exit"] != 0:
        failures.append(f"server exit status {report['server_exit']}")
    if report["min_open"] < args.connections - load.churn_slots:
        failures.append(f"the server held only {report['min_open']} connections at some point")
    report["failures"] = failures
    return report


# ----------------------------------------------------------------------- report


def render(r: dict[str, Any]) -> str:
    a = r["args"]
    tot = r["totals"]
    lat = r["latency_ms"]
    final = r["server_final"]
    ss, cs = r["server_stalls_all"], r["client_stalls_all"]
    verdict = "PASS" if not r["failures"] else "FAIL: " + "; ".join(r["failures"])
    loop = "uvloop" if a["uvloop"] else "asyncio"
    compression = "off" if a["no_compression"] else "permessage-deflate (defaults)"
    lines = [
        f"# Soak: {a['connections']:,} connections, {r['steady_seconds']:.0f} s",
        "",
        "`" + " ".join(["python benchmarks/soak.py", *a["argv"]]) + "`",
        "",
        f"wsline at {r.get('commit', 'unknown')}; "
        f"Python {platform.python_version()}, {loop}, Linux {platform.release()}, {os.cpu_count()} CPUs; "
        f"one server process (wsline `serve`, echo handler) and one load process (wsline `connect`), "
        f"loopback from {a['sources']} source addresses; compression {compression}; keepalive "
        f"{'off' if not a['keepalive'] else str(a['keepalive']) + ' s'}"
        f"{'; gc.collect() in the server before each sample' if a['collect'] else ''}. "
        f"Open-file limits: load {r['fd_soft']}, server {r['server_fd_soft']} (hard {r['fd_hard']}).",
        "",
        f"Traffic: {a['rate']:g} messages/s over all connections at exponential intervals, {a['size']} B "
        f"chat-like text, 1 in {a['large_every']} a {a['large_size'] // 1024} KiB binary message; "
        f"{100 * a['churn']:g} % of the connections churn (close with 1000 and reconnect after "
        f"{a['lifetime']:g} s on average), the others stay open all along. Each connection exchanges a "
        f"small and a {a['large_size'] // 1024} KiB message when it opens.",
        "",
        f"**Result: {verdict}**",
        "",
        "| | |",
        "|---|---:|",
        f"| connections held (server side, steady phase) | {r['min_open']:,} to {r['max_open']:,} |",
        f"| time to open {a['connections']:,} connections | {r['open_seconds']:.1f} s "
        f"({a['connections'] / r['open_seconds']:,.0f}/s) |",
        f"| server RSS before / with all connections | {r['server_rss_before'] / 1024:.1f} / "
        f"{r['server_rss_after'] / 1024:.1f} MiB |",
        f"| **server memory per connection** (RSS) | **{r['mem_per_conn_kib']:.1f} KiB** |",
        f"| objects tracked by the server's GC per connection | {r['gc_objects_per_conn']:.0f} "
        f"({r['gc_objects_after']:,} in all with every connection open) |",
        f"| client memory per connection (RSS) | {r['client_mem_per_conn_kib']:.1f} KiB |",
        f"| server RSS after warm-up ({r['growth_window'][0]:.0f} s) / at the end "
        f"({r['growth_window'][1]:.0f} s) | {r['growth_first_kib'] / 1024:.1f} / "
        f"{r['growth_last_kib'] / 1024:.1f} MiB |",
        f"| **memory growth** (threshold {a['max_growth']:g} %) | **{r['growth_pct']:+.2f} %** "
        f"({r['growth_slope_kib_min'] / 1024:+.2f} MiB/min by regression) |",
        f"| server RSS peak / after every client closed | {r['peak_rss'] / 1024:.1f} / "
        f"{r['server_rss_final'] / 1024:.1f} MiB |",
        f"| **errors** (client / server) | **{r['client_errors']} / {r['server_errors']}** |",
        f"| **messages lost** (silently / reported by an exception) | **{tot['lost']} / "
        f"{tot['lost_reported']}** |",
        f"| echoes out of order, duplicated or corrupted | {tot['mismatched']} |",
        f"| messages sent / echoed back | {tot['sent']:,} / {tot['received']:,} "
        f"({tot['bytes_received'] / 2**20:,.0f} MiB) |",
        f"| **echoes per second** (steady phase) | **{r['messages_per_s']:,.0f}** |",
        f"| round trip p50 / p99 / p99.9 / max | {lat[0.5]:.1f} / {lat[0.99]:.1f} / {lat[0.999]:.1f} / "
        f"{lat['max']:.0f} ms |",
        f"| **handshakes** (all / during the steady phase) | **{tot['handshakes']:,} / "
        f"{r['steady_handshakes']:,}** ({r['handshakes_per_s']:.0f}/s) |",
        f"| handshakes seen by the server | {final.get('opened', 0):,} |",
        f"| close codes seen by the server | {final.get('close_codes')} |",
        f"| left in the server after the run | {r['leaks']} |",
        f"| TCP sockets on the server port at the end of the steady phase | {r['tcp_states']} |",
        f"| client `close()` time p50 / p99 / max (all closes) | {r['close_ms'][0.5]:.0f} / "
        f"{r['close_ms'][0.99]:.0f} / {r['close_ms']['max']:.0f} ms ({r['closes_slow']}) |",
        "| of which until the server's close frame / then until its FIN, p50 / p99 / max | "
        + " and ".join(
            " / ".join(f"{r['close_split_ms'][k][q]:.0f}" for q in (0.5, 0.99, 1.0)) for k in ("frame", "fin")
        )
        + " ms |",
        f"| closing every connection at the end | {r['close_seconds']:.1f} s |",
        f"| worst event-loop lag in the steady phase: server / load | {1000 * ss['lag_max']:.0f} / "
        f"{1000 * cs['lag_max']:.0f} ms |",
        f"| longest GC pause in the steady phase: server / load | {1000 * ss['gc_max']:.0f} / "
        f"{1000 * cs['gc_max']:.0f} ms |",
        f"| full (generation 2) collections, whole run: server / load | {ss['gc_full']} / {cs['gc_full']} "
        f"({ss['gc_seconds']:.1f} / {cs['gc_seconds']:.1f} s in the GC, all generations) |",
        f"| CPU, steady phase: server / load / other processes | {r['server_cpu_pct']:.0f} % / "
        f"{r['client_cpu_pct']:.0f} % / {r['other_cpu_pct']:.0f} % of one core |",
        f"| load average at the end (1/5/15 min) | {' / '.join(f'{x:.2f}' for x in r['loadavg'])} |",
    ]
    if r["client_error_kinds"] or r["client_first_errors"]:
        lines += ["", "Client errors:", ""]
        lines += [f"- {k}: {v}" for k, v in r["client_error_kinds"].items()]
        lines += [f"- e.g. `{e}`" for e in r["client_first_errors"]]
    server_detail = [
        *(f"- {k}: {v}" for k, v in final.get("log_kinds", {}).items()),
        *(f"- {k}: {v}" for k, v in final.get("loop_errors", {}).items()),
        *(f"- e.g. `{e}`" for key in ("log_first", "loop_first", "channel_first", "abnormal_first")
          for e in final.get(key, [])),
    ]  # fmt: skip
    if server_detail:
        lines += ["", "Server errors:", "", *server_detail]
    lines += [
        "",
        f"Server RSS over time (every {a['sample_interval']:g} s; t from the start of the script):",
        "",
        "| t (s) | phase | server RSS MiB | load RSS MiB | server conns | server tasks | handshakes "
        "| echoes | errors (client/server) | max loop lag ms (server/load) | max GC pause ms (server/load) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = r["samples"]
    step = max(1, math.ceil(len(rows) / 40))
    shown = rows[::step] + ([rows[-1]] if (len(rows) - 1) % step else [])
    for s in shown:
        lines.append(
            f"| {s['t']:.0f} | {s['phase']} | {s['server_rss'] / 1024:.1f} | {s['client_rss'] / 1024:.1f} "
            f"| {s['server_conns']:,} | {s['server_tasks']:,} | {s['handshakes']:,} | {s['received']:,} "
            f"| {s['errors']}/{s['server_errors']} | {1000 * s['server_stalls']['lag_max']:.0f}/"
            f"{1000 * s['client_stalls']['lag_max']:.0f} | {1000 * s['server_stalls']['gc_max']:.0f}/"
            f"{1000 * s['client_stalls']['gc_max']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--connections", type=int, default=10_000, help="concurrent connections")
    p.add_argument("--duration", type=float, default=300.0, help="seconds of steady traffic and churn")
    p.add_argument("--rate", type=float, default=3000.0, help="messages per second, all connections together")
    p.add_argument(
        "--churn", type=float, default=0.1, help="fraction of connections that close and reconnect"
    )
    p.add_argument("--lifetime", type=float, default=10.0, help="mean lifetime (s) of a churning connection")
    p.add_argument("--size", type=int, default=128, help="size of the small text messages (bytes)")
    p.add_argument("--large-size", type=int, default=16384, help="size of the large binary messages")
    p.add_argument("--large-every", type=int, default=100, help="1 in this many messages is large (0: none)")
    p.add_argument("--warmup", type=float, default=None, help="seconds of the steady phase left out of the "
                   "growth check (default: a fifth of --duration, at most 60)")  # fmt: skip
    p.add_argument("--sample-interval", type=float, default=None, help="seconds between RSS samples "
                   "(default: 5, or --duration/10 if shorter)")  # fmt: skip
    p.add_argument("--max-growth", type=float, default=2.0, help="allowed RSS growth after warm-up (%%)")
    p.add_argument("--sources", type=int, default=4, help="loopback source addresses (127.0.0.1 ...)")
    p.add_argument("--open-concurrency", type=int, default=200, help="handshakes in flight while opening")
    p.add_argument("--keepalive", type=float, default=20.0, help="ping interval and timeout (0: off)")
    p.add_argument("--no-compression", action="store_true", help="no permessage-deflate")
    p.add_argument(
        "--collect",
        action="store_true",
        help="gc.collect() in the server before each RSS sample (tells leaks from garbage awaiting the GC)",
    )
    p.add_argument("--uvloop", action="store_true", help="run both processes on uvloop")
    p.add_argument(
        "--write", action="store_true", help=f"write the summary to {RESULTS.relative_to(HERE.parent)}"
    )
    p.add_argument("--output", type=Path, default=RESULTS, help="where --write writes")
    p.add_argument("--json", type=Path, default=None, help="also dump every figure and sample as JSON here")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = argv
    if args.warmup is None:
        args.warmup = min(60.0, args.duration / 5)
    if args.sample_interval is None:
        args.sample_interval = min(5.0, args.duration / 10)
    if not 0 <= args.churn <= 1 or args.connections < 1 or args.duration <= 0 or args.sources < 1:
        p.error("need --connections >= 1, --duration > 0, 0 <= --churn <= 1, --sources >= 1")
    if args.sources > 254:
        p.error("--sources: at most 254 (127.0.0.1 to 127.0.0.254)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not Path("/proc/self/status").exists():
        raise SystemExit("this script reads /proc: Linux only")
    if args.serve:
        return int(run(serve_main(args), args.uvloop))
    report = run(load_main(args), args.uvloop)
    text = render(report)
    print(text)
    if args.write:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        print(f"written to {args.output}", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps(report, default=str, indent=1))
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
