"""Scale-out: RedisHub on one Redis and on a three-primary Redis Cluster.

    python benchmarks/scaleout.py [--clients 1000] [--messages 1000] [--size 64] [--missed 10000]
    python benchmarks/scaleout.py --quick          # smaller, about a minute

It starts its own ``redis-server`` (no persistence) and a three-primary
cluster (``redis-server --cluster-enabled yes`` x3 + ``redis-cli --cluster
create``) on free loopback ports, then measures, on each:

- **fan-out**: two worker processes, each a wsline server with a RedisHub,
  hold half of N raw client sockets (a third process reads and counts bytes)
  in one room; this process publishes M messages through its own RedisHub.
  Deliveries per second = N x M over the time from the first publish to the
  last byte at the last client, best of ``--repeat`` runs; with history on (``history_size`` = M, each
  publication XADDed to the room's stream) and off (``history_size=0``:
  positions only);
- **recovery**: M' messages are published while nobody listens; a
  subscription (``hub.subscribe(room, since=...)``), then a WebSocket
  member (``hub.join(..., since=..., envelope=PositionPrefix())``, its
  client in this process) on another hub get all of them: the time from the
  call to the last message;
- **presence churn**: two processes, each with 100 connections that join and
  leave 32 rooms (with a user) as fast as they can for a few seconds: joins +
  leaves per second, summed.

Prints a Markdown report (``benchmarks/results/scaleout.md`` holds one).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

HOST = "127.0.0.1"
ROOM = "bench"


# ------------------------------------------------------------------ Redis, started here


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _port(cluster: bool = False) -> int:
    while True:
        port = random.randint(20000, 54000)
        if _free(port) and (not cluster or _free(port + 10000)):
            return port


def _wait_ping(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"redis-server on {port} did not start")


class Redis:
    """One redis-server, or a three-primary cluster, in a temporary directory."""

    def __init__(self, cluster: bool) -> None:
        self.cluster = cluster
        self.dir = tempfile.mkdtemp(prefix="wsline-bench-redis-")
        self.procs: list[subprocess.Popen[bytes]] = []
        server = shutil.which("redis-server")
        if server is None:
            sys.exit("redis-server is needed: apt-get install redis-server")
        ports = [_port(cluster) for _ in range(3 if cluster else 1)]
        for port in ports:
            args = [server, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
            args += ["--dir", self.dir]
            if cluster:
                args += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"]
            self.procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            _wait_ping(port)
        if cluster:
            cli = shutil.which("redis-cli")
            if cli is None:
                sys.exit("redis-cli is needed: apt-get install redis-tools")
            addresses = [f"{HOST}:{port}" for port in ports]
            subprocess.run(
                [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
                check=True,
                capture_output=True,
            )
            for port in ports:
                while (
                    b"cluster_state:ok"
                    not in subprocess.run(
                        [cli, "-p", str(port), "cluster", "info"], capture_output=True
                    ).stdout
                ):
                    time.sleep(0.05)
        self.ports = ports
        self.url = f"redis://{HOST}:{ports[0]}/0"

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------------ the processes


async def _worker(url: str, history: int) -> None:
    """Serve one room over a RedisHub until killed; print the port."""
    import wsline
    from wsline.hub_redis import RedisHub

    hub = RedisHub(url, history_size=history, limit=64 * 1024 * 1024)

    async def handler(ws: Any) -> None:
        await hub.join(ROOM, ws)
        await ws.wait_closed()

    async with (
        hub,
        wsline.serve(handler, HOST, 0, compression=None, ping_interval=None, backlog=4096) as server,
    ):
        print("ready", server.port, flush=True)
        await asyncio.Event().wait()


async def _clients(ports: list[int], n: int, expected: int) -> None:
    """Hold n raw client sockets spread over ``ports``; print when each got ``expected`` bytes."""

    async def one(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(HOST, port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return reader, writer

    conns = []
    for i in range(0, n, 100):
        conns += await asyncio.gather(*(one(ports[j % len(ports)]) for j in range(i, min(n, i + 100))))
    print("ready", flush=True)
    totals = [0]

    async def count(reader: asyncio.StreamReader) -> None:
        got = 0
        while got < expected:
            data = await reader.read(65536)
            if not data:
                return
            got += len(data)
        totals[0] += got

    try:
        await asyncio.wait_for(asyncio.gather(*(count(r) for r, _ in conns)), 120)
    except asyncio.TimeoutError:
        pass
    print("done", time.perf_counter(), totals[0], flush=True)
    for _, w in conns:
        w.close()


async def _churn(url: str, seconds: float, conns: int, rooms: int) -> None:
    """Join and leave as fast as possible; print the number of joins + leaves."""
    import wsline
    from wsline.hub_redis import RedisHub

    accepted: list[Any] = []

    async def handler(ws: Any) -> None:
        accepted.append(ws)
        await ws.wait_closed()

    async with (
        RedisHub(url) as hub,
        wsline.serve(handler, HOST, 0, ping_interval=None, backlog=4096) as server,
    ):
        clients = [
            await wsline.connect(f"ws://{HOST}:{server.port}/", ping_interval=None) for _ in range(conns)
        ]
        while len(accepted) < conns:
            await asyncio.sleep(0.01)
        print("ready", flush=True)
        sys.stdin.readline()  # go
        stop = time.perf_counter() + seconds
        ops = [0]
        tag = os.getpid()

        async def loop(i: int, ws: Any) -> None:
            room = f"churn-{i % rooms}"
            while time.perf_counter() < stop:
                await hub.join(room, ws, user=f"{tag}-{i}")
                await hub.leave(room, ws)
                ops[0] += 2

        await asyncio.gather(*(loop(i, ws) for i, ws in enumerate(accepted)))
        print("ops", ops[0], flush=True)
        for ws in clients:
            await ws.close()


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(HERE.parent / "src")},
    )


def _line(proc: subprocess.Popen[str], prefix: str) -> list[str]:
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"process {proc.args} ended before {prefix!r}")
        if line.startswith(prefix):
            return line.split()


# ------------------------------------------------------------------ the measures


async def fanout(url: str, clients: int, messages: int, size: int, history: bool) -> tuple[float, float]:
    """(deliveries per second, fraction delivered) to ``clients`` over two worker processes."""
    from wsline.hub_redis import RedisHub

    workers = [_spawn("--worker", url, str(messages if history else 0)) for _ in range(2)]
    try:
        ports = [int(_line(w, "ready")[1]) for w in workers]
        expected = messages * (size + 2)
        reader = _spawn("--reader", ",".join(map(str, ports)), str(clients), str(expected))
        try:
            _line(reader, "ready")
            async with RedisHub(url, history_size=messages if history else 0) as hub:
                deadline = time.monotonic() + 60
                while len(await hub.presence(ROOM)) < clients:
                    assert time.monotonic() < deadline, "the clients did not all join"
                    await asyncio.sleep(0.1)
                message = "x" * size
                start = time.perf_counter()
                for _ in range(messages - 1):
                    await hub.publish(ROOM, message, wait=False)
                await hub.publish(ROOM, message)
                done = await asyncio.get_running_loop().run_in_executor(None, _line, reader, "done")
            seconds = float(done[1]) - start
            fraction = int(done[2]) / (expected * clients)
            return clients * messages * fraction / seconds, fraction
        finally:
            reader.kill()
            reader.wait()
    finally:
        for w in workers:
            w.kill()
            w.wait()


async def recovery(url: str | None, missed: int, size: int) -> tuple[float, float]:
    """(subscription, WebSocket member) seconds to receive ``missed`` messages published while away."""
    import wsline
    from wsline.hub import Hub, PositionPrefix
    from wsline.hub_redis import RedisHub

    def make() -> Any:
        return Hub(history_size=missed + 10) if url is None else RedisHub(url, history_size=missed + 10)

    publisher = make()
    reader_hub = publisher if url is None else make()
    room = f"recover-{os.getpid()}-{random.random()}"
    accepted: list[Any] = []

    async def handler(ws: Any) -> None:
        accepted.append(ws)
        await ws.wait_closed()

    async with publisher:
        await reader_hub.start()
        try:
            before = await publisher.position(room)
            body = "x" * size
            for _ in range(missed - 1):
                await publisher.publish(room, body, wait=False)
            await publisher.publish(room, body)

            start = time.perf_counter()
            sub = await reader_hub.subscribe(room, since=before, max_queue=missed + 10)
            for _ in range(missed):
                await sub.get(timeout=60)
            by_subscription = time.perf_counter() - start
            sub.close()

            async with wsline.serve(handler, HOST, 0, compression=None, ping_interval=None) as server:
                async with wsline.connect(
                    f"ws://{HOST}:{server.port}/", ping_interval=None, compression=None
                ) as c:
                    while not accepted:
                        await asyncio.sleep(0.001)
                    start = time.perf_counter()
                    joining = asyncio.ensure_future(
                        reader_hub.join(room, accepted[0], since=before, envelope=PositionPrefix())
                    )
                    for _ in range(missed):
                        await c.recv(timeout=60)
                    by_member = time.perf_counter() - start
                    joined = await joining
                    assert joined is not None and joined.recovered
        finally:
            if reader_hub is not publisher:
                await reader_hub.close()
    return by_subscription, by_member


async def script_work(backend: Redis) -> list[tuple[int, int, float]]:
    """(port, scripts run, microseconds spent in them) of each Redis process."""
    import redis.asyncio as aioredis

    out = []
    for port in backend.ports:
        client = aioredis.Redis(host=HOST, port=port)
        try:
            stats = (await client.info("commandstats")).get("cmdstat_evalsha", {})
        finally:
            await client.aclose()
        out.append((port, int(stats.get("calls", 0)), float(stats.get("usec", 0))))
    return out


def churn(url: str, seconds: float) -> float:
    """Joins + leaves per second of two processes."""
    procs = [_spawn("--churn", url, str(seconds)) for _ in range(2)]
    try:
        for proc in procs:
            _line(proc, "ready")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        return sum(int(_line(proc, "ops")[1]) for proc in procs) / seconds
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------ the report


def _load() -> str:
    try:
        one, five, _ = os.getloadavg()
        return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"
    except OSError:  # pragma: no cover
        return f"{os.cpu_count()} CPUs"


async def report(args: argparse.Namespace) -> None:
    import redis

    import wsline

    version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
    print(f"wsline {wsline.__version__}, redis-py {redis.__version__}, redis-server {version}; {_load()}")
    print()
    rows: dict[str, dict[str, str]] = {}
    spread: list[tuple[str, list[tuple[int, int, float]]]] = []
    memory = await recovery(None, args.missed, args.size)
    for name, cluster in (("one Redis", False), ("3-primary cluster", True)):
        backend = Redis(cluster)
        try:
            row: dict[str, str] = {}
            for history in (False, True):
                runs = [
                    await fanout(backend.url, args.clients, args.messages, args.size, history)
                    for _ in range(args.repeat)
                ]
                rate, fraction = max(runs)
                note = "" if fraction >= 0.9999 else f" ({fraction:.1%} delivered)"
                row["history on" if history else "history off"] = f"{rate:,.0f} /s{note}"
                print(
                    f"  {name}: fan-out, history {'on' if history else 'off'}: {rate:,.0f} deliveries/s",
                    flush=True,
                )
            by_sub, by_member = await recovery(backend.url, args.missed, args.size)
            row["recover sub"] = f"{by_sub * 1000:,.0f} ms"
            row["recover member"] = f"{by_member * 1000:,.0f} ms"
            print(f"  {name}: recovery {by_sub:.3f} s (subscription), {by_member:.3f} s (member)", flush=True)
            rate = churn(backend.url, args.churn_seconds)
            row["churn"] = f"{rate:,.0f} /s"
            print(f"  {name}: presence churn {rate:,.0f} joins+leaves/s", flush=True)
            rows[name] = row
            spread.append((name, await script_work(backend)))
        finally:
            backend.close()
    print()
    fan = f"fan-out, {args.clients:,} clients x {args.messages} msgs ({args.size} B)"
    print(
        f"| | {fan}, history off | history on | recover {args.missed:,} missed: subscription "
        "| WebSocket member | presence churn (joins + leaves) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['history off']} | {row['history on']} | {row['recover sub']} "
            f"| {row['recover member']} | {row['churn']} |"
        )
    print(f"| in-process Hub (reference) | | | {memory[0] * 1000:,.0f} ms | {memory[1] * 1000:,.0f} ms | |")
    print()
    print("Script work per Redis process over the whole run (INFO commandstats, evalsha):")
    print()
    print("| | node | scripts | Redis CPU in scripts | per script |")
    print("|---|---|---:|---:|---:|")
    for name, nodes in spread:
        for port, calls, usec in nodes:
            print(f"| {name} | :{port} | {calls:,} | {usec / 1e6:.2f} s | {usec / max(calls, 1):.1f} us |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="fan-out runs per case; the best is reported")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--missed", type=int, default=10_000)
    parser.add_argument("--churn-seconds", type=float, default=5.0)
    parser.add_argument(
        "--quick", action="store_true", help="200 clients, 100 messages once, 2,000 missed, 2 s churn"
    )
    parser.add_argument("--worker", nargs=2, metavar=("URL", "HISTORY"), help=argparse.SUPPRESS)
    parser.add_argument("--reader", nargs=3, metavar=("PORTS", "N", "BYTES"), help=argparse.SUPPRESS)
    parser.add_argument("--churn", nargs=2, metavar=("URL", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(_worker(args.worker[0], int(args.worker[1])))
        return
    if args.churn:
        asyncio.run(_churn(args.churn[0], float(args.churn[1]), conns=100, rooms=32))
        return
    if args.reader:
        ports, n, expected = args.reader
        asyncio.run(_clients([int(p) for p in ports.split(",")], int(n), int(expected)))
        return
    if args.quick:
        args.clients, args.messages, args.missed, args.churn_seconds, args.repeat = 200, 100, 2000, 2.0, 1
    asyncio.run(report(args))


if __name__ == "__main__":
    main()
