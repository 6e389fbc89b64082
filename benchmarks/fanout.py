"""Fan-out: deliveries per second to N connected clients, wsline.broadcast vs websockets.broadcast.

    python benchmarks/fanout.py [--clients 1000] [--messages 200] [--size 64]
    python benchmarks/fanout.py --clients 10000 --messages 50
    python benchmarks/fanout.py --processes 2      # also across 2 relay processes on Redis

One process serves both libraries (each on its own port, compression off);
a second process holds the N raw client sockets, reads and counts bytes, and
reports when every client has received every message. A delivery is one
message reaching one client; the time runs from the first broadcast call to
the last byte at the last client. Messages dropped for slow clients (both
libraries skip connections whose buffers are full) are reported, not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import time
from typing import Any

HOST = "127.0.0.1"


# ------------------------------------------------------------------ client process


async def _client(port: int, n: int, expected: int) -> None:
    async def one() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
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
        conns += await asyncio.gather(*(one() for _ in range(min(100, n - i))))
    print("ready", flush=True)
    first = asyncio.get_running_loop().create_future()

    async def count(reader: asyncio.StreamReader) -> None:
        got = 0
        while got < expected:
            data = await reader.read(65536)
            if not data:
                return
            if not first.done():
                first.set_result(time.perf_counter())
            got += len(data)

    await asyncio.gather(*(count(r) for r, _ in conns))
    print("done", time.perf_counter(), flush=True)
    for _, w in conns:
        w.close()


# ------------------------------------------------------------------ server side


def _frame_size(size: int) -> int:
    return size + (2 if size < 126 else 4 if size < 65536 else 10)


async def _run(lib: str, clients: int, messages: int, size: int) -> tuple[float, int]:
    conns: list[Any] = []
    message = "x" * size
    if lib == "wsline":
        import wsline
        from wsline import broadcast

        async def handler(ws: Any) -> None:
            conns.append(ws)
            await ws.wait_closed()

        server_cm: Any = wsline.serve(handler, HOST, 0, compression=None, ping_interval=None, backlog=1024)

        def send() -> int:
            result = broadcast(conns, message)
            return result.dropped + result.skipped
    else:
        from websockets.asyncio.server import broadcast as ws_broadcast
        from websockets.asyncio.server import serve as ws_serve

        async def ws_handler(ws: Any) -> None:
            conns.append(ws)
            await ws.wait_closed()

        server_cm = ws_serve(ws_handler, HOST, 0, compression=None, ping_interval=None, backlog=1024)

        def send() -> int:
            before = sum(1 for ws in conns if ws.transport.get_write_buffer_size() > 64 * 1024)
            ws_broadcast(conns, message)
            return before  # websockets skips these (and logs a warning)

    async with server_cm as server:
        port = server.sockets[0].getsockname()[1] if lib != "wsline" else server.port
        expected = messages * _frame_size(size)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--client-port",
            str(port),
            "--clients",
            str(clients),
            "--expected",
            str(expected),
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert (await proc.stdout.readline()).strip() == b"ready"
        while len(conns) < clients:
            await asyncio.sleep(0.01)
        dropped = 0
        start = time.perf_counter()
        for i in range(messages):
            dropped += send()
            if i % 10 == 9:
                await asyncio.sleep(0)
        if dropped:
            proc.kill()
            await proc.wait()
            return time.perf_counter() - start, dropped
        line = await proc.stdout.readline()
        end = float(line.split()[1])
        await proc.wait()
        return end - start, dropped


async def _run_processes(clients: int, messages: int, size: int, processes: int) -> tuple[float, int]:
    """The same fan-out across ``processes`` relay workers sharing a port and a redis-server."""
    import shutil
    import socket
    import tempfile

    import wsline

    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("--processes needs redis-server (apt-get install redis-server)")

    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            return int(sock.getsockname()[1])

    redis_port, port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        redis = await asyncio.create_subprocess_exec(
            binary, "--port", str(redis_port), "--bind", HOST, "--save", "", "--appendonly", "no",
            "--dir", tmp, stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        relay = None
        try:
            await asyncio.sleep(0.3)
            src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
            relay = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "wsline", "relay", "--host", HOST, "--port", str(port),
                "--redis", f"redis://{HOST}:{redis_port}/0", "--workers", str(processes),
                env={**os.environ, "PYTHONPATH": src}, stdout=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            for _ in range(200):
                try:
                    _, w = await asyncio.open_connection(HOST, port)
                    w.close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            expected = messages * _frame_size(size)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--client-port", str(port), "--clients", str(clients),
                "--expected", str(expected), stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert proc.stdout is not None
            assert (await proc.stdout.readline()).strip() == b"ready"
            await asyncio.sleep(1.0)  # every worker has subscribed to the room
            async with wsline.connect(f"ws://{HOST}:{port}/", compression=None, ping_interval=None) as pub:
                message = "x" * size
                start = time.perf_counter()
                for _ in range(messages):
                    await pub.send(message)
                line = await asyncio.wait_for(proc.stdout.readline(), 120)
            end = float(line.split()[1])
            await proc.wait()
            return end - start, 0
        finally:
            if relay is not None:
                relay.terminate()
                await relay.wait()
            redis.terminate()
            await redis.wait()


def _raise_fd_limit(needed: int) -> None:
    """10,000 clients need more file descriptors than the usual soft limit of 1024."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--size", type=int, default=64, help="message size in bytes (ASCII text)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--processes", type=int, default=0, help="also run wsline's relay on N worker processes sharing Redis"
    )
    parser.add_argument("--client-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--expected", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    _raise_fd_limit(args.clients + 100)
    if args.client_port:
        asyncio.run(_client(args.client_port, args.clients, args.expected))
        return
    deliveries = args.clients * args.messages
    print(f"{args.clients} clients, {args.messages} messages of {args.size} bytes ({deliveries} deliveries)")
    for lib in ("wsline", "websockets"):
        best = None
        for _ in range(args.repeat):
            elapsed, dropped = asyncio.run(_run(lib, args.clients, args.messages, args.size))
            if dropped:
                print(f"  {lib}: {dropped} deliveries dropped (slow clients); run not counted")
                continue
            best = elapsed if best is None else min(best, elapsed)
        if best is not None:
            rate = deliveries / best
            print(f"  {lib:10s} {rate:12,.0f} deliveries/s  (best of {args.repeat}: {best:.3f} s)")
    if args.processes:
        best = min(
            asyncio.run(_run_processes(args.clients, args.messages, args.size, args.processes))[0]
            for _ in range(args.repeat)
        )
        label = f"wsline relay, {args.processes} processes + Redis"
        print(f"  {label}: {deliveries / best:12,.0f} deliveries/s  (best of {args.repeat}: {best:.3f} s)")


if __name__ == "__main__":
    main()
