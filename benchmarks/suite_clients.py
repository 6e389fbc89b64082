"""Client benchmarks for benchmarks/run.py: one library's client against a fixed server.

    python benchmarks/suite_clients.py LIBRARY LOOP MODE --port P [--window W]
        [--size 32] [--duration S] [--warmup S] [--cpu K]

LIBRARY is wsline, websockets, aiohttp or picows; LOOP asyncio or uvloop; MODE
``rtt`` (send one binary message, wait for its echo, repeat; latency
percentiles) or ``pipe`` (keep W messages in flight: each echo sends one
more; with ``--size 65536`` or more, the bulk scenarios) or ``handshake`` (W
parallel loops of: connect, send one 32 B message, wait for its echo, closing
handshake; a new connection each time). The server is the C reference server (``loadgen serve``), so the
client is the bottleneck. Prints one JSON object like the load generator's,
with this process's CPU share during the measured interval.

Each client uses its library's usual API with compression and keepalive off:
``await ws.send()``/``await ws.recv()`` (wsline, websockets), ``await
ws.send_bytes()``/``await ws.receive()`` (aiohttp), and picows' listener
callbacks (``on_ws_frame`` sends the next message).

Phases are switched by ``loop.call_later`` timers (warm-up, then the measured
interval); the loops test a flag, so every library pays the same for timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from typing import Any


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class Phase:
    """Warm-up, then the measured interval; counts and latencies only in the latter."""

    def __init__(self, warmup: float, duration: float) -> None:
        self.warmup = warmup
        self.duration = duration
        self.running = True  # the pump loops run while this is set
        self.measuring = False
        self.count = 0  # echoes received (all phases)
        self.lat: list[int] = []  # rtt mode: ns per round trip (all phases)
        self.start_count = self.end_count = 0
        self.start_lat = self.end_lat = 0
        self.t0 = self.t1 = self.cpu0 = self.cpu1 = 0.0
        self.done: asyncio.Future[None] | None = None

    def arm(self) -> None:
        loop = asyncio.get_running_loop()
        self.done = loop.create_future()
        loop.call_later(self.warmup, self._start)

    def _start(self) -> None:
        self.measuring = True
        self.start_count = self.count
        self.start_lat = len(self.lat)
        self.t0 = time.perf_counter()
        self.cpu0 = cpu_seconds()
        asyncio.get_running_loop().call_later(self.duration, self._stop)

    def _stop(self) -> None:
        self.t1 = time.perf_counter()
        self.cpu1 = cpu_seconds()
        self.end_count = self.count
        self.end_lat = len(self.lat)
        self.measuring = False
        self.running = False
        assert self.done is not None
        if not self.done.done():
            self.done.set_result(None)

    def result(self, args: argparse.Namespace, error: str | None) -> dict[str, Any]:
        secs = self.t1 - self.t0
        msgs = self.end_count - self.start_count
        out: dict[str, Any] = {
            "ok": error is None and msgs > 0,
            "mode": args.mode,
            "size": args.size,
            "window": args.window if args.mode != "rtt" else 1,
            "secs": secs,
            "msgs": msgs,
            "rate": msgs / secs if secs > 0 else 0.0,
            "mbps": msgs * args.size / secs / 1e6 if secs > 0 else 0.0,
            "cpu": self.cpu1 - self.cpu0,
            "cpu_share": (self.cpu1 - self.cpu0) / secs if secs > 0 else 0.0,
        }
        lat = sorted(self.lat[self.start_lat : self.end_lat])
        if lat:

            def pct(q: float) -> float:
                return lat[min(len(lat) - 1, int(q * (len(lat) - 1) + 0.5))] / 1000.0

            out.update(
                samples=len(lat),
                p50_us=pct(0.5),
                p90_us=pct(0.9),
                p99_us=pct(0.99),
                p999_us=pct(0.999),
                max_us=pct(1.0),
            )
        if error is not None:
            out["error"] = error
        elif msgs == 0:
            out["error"] = "no message during the measurement"
        return out


def payload_of(size: int) -> bytes:
    return bytes((97 + i % 26) for i in range(size))


# --------------------------------------------------------------- coroutine APIs


async def pump_coroutines(send: Any, recv: Any, ph: Phase, mode: str, window: int, payload: bytes) -> None:
    """The same loop for wsline and websockets (send/recv coroutines)."""
    if mode == "rtt":
        lat = ph.lat
        clock = time.perf_counter_ns
        while ph.running:
            t = clock()
            await send(payload)
            await recv()
            lat.append(clock() - t)
            ph.count += 1
    else:
        for _ in range(window):
            await send(payload)
        while ph.running:
            await recv()
            ph.count += 1
            await send(payload)


async def handshake_loops(ph: Phase, window: int, once: Any) -> None:
    """``window`` parallel loops of ``once()`` (one connection's life) until the end of the measurement."""

    async def loop() -> None:
        while ph.running:
            await once()
            ph.count += 1

    ph.arm()
    await asyncio.gather(*(loop() for _ in range(window)))


async def run_wsline(args: argparse.Namespace, ph: Phase) -> None:
    import wsline

    url = f"ws://127.0.0.1:{args.port}/"
    if args.mode == "handshake":
        payload = payload_of(32)

        async def once() -> None:
            ws = await wsline.connect(
                url, compression=None, ping_interval=None, ping_timeout=None, max_size=None
            )
            await ws.send(payload)
            await ws.recv()
            await ws.close()

        await handshake_loops(ph, args.window, once)
        return
    ws = await wsline.connect(
        f"ws://127.0.0.1:{args.port}/", compression=None, ping_interval=None, ping_timeout=None, max_size=None
    )
    ph.arm()
    await pump_coroutines(ws.send, ws.recv, ph, args.mode, args.window, payload_of(args.size))


async def run_websockets(args: argparse.Namespace, ph: Phase) -> None:
    from websockets.asyncio.client import connect

    if args.mode == "handshake":
        payload = payload_of(32)
        url = f"ws://127.0.0.1:{args.port}/"

        async def once() -> None:
            ws = await connect(url, compression=None, ping_interval=None, ping_timeout=None, max_size=None)
            await ws.send(payload)
            await ws.recv()
            await ws.close()

        await handshake_loops(ph, args.window, once)
        return
    ws = await connect(
        f"ws://127.0.0.1:{args.port}/", compression=None, ping_interval=None, ping_timeout=None, max_size=None
    )
    ph.arm()
    await pump_coroutines(ws.send, ws.recv, ph, args.mode, args.window, payload_of(args.size))


async def run_aiohttp(args: argparse.Namespace, ph: Phase) -> None:
    import aiohttp

    payload = payload_of(args.size)
    if args.mode == "handshake":
        async with aiohttp.ClientSession() as session:
            url = f"ws://127.0.0.1:{args.port}/"

            async def once() -> None:
                ws = await session.ws_connect(url, autoping=True, heartbeat=None, compress=0, max_msg_size=0)
                await ws.send_bytes(payload[:32])
                await ws.receive()
                await ws.close()

            await handshake_loops(ph, args.window, once)
        return
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(
            f"ws://127.0.0.1:{args.port}/", autoping=True, heartbeat=None, compress=0, max_msg_size=0
        ) as ws:
            ph.arm()
            send = ws.send_bytes
            receive = ws.receive
            binary = aiohttp.WSMsgType.BINARY
            if args.mode == "rtt":
                lat = ph.lat
                clock = time.perf_counter_ns
                while ph.running:
                    t = clock()
                    await send(payload)
                    msg = await receive()
                    if msg.type is not binary:
                        raise RuntimeError(f"unexpected {msg.type}")
                    lat.append(clock() - t)
                    ph.count += 1
            else:
                for _ in range(args.window):
                    await send(payload)
                while ph.running:
                    msg = await receive()
                    if msg.type is not binary:
                        raise RuntimeError(f"unexpected {msg.type}")
                    ph.count += 1
                    await send(payload)


async def run_picows(args: argparse.Namespace, ph: Phase) -> None:
    from picows import WSListener, WSMsgType, ws_connect

    payload = payload_of(args.size)
    BINARY = WSMsgType.BINARY
    rtt = args.mode == "rtt"
    clock = time.perf_counter_ns
    if args.mode == "handshake":
        url = f"ws://127.0.0.1:{args.port}/"
        loop = asyncio.get_running_loop()

        class Once(WSListener):  # type: ignore[misc]
            def __init__(self) -> None:
                self.echo: asyncio.Future[None] = loop.create_future()

            def on_ws_frame(self, transport: Any, frame: Any) -> None:
                if frame.msg_type is BINARY and not self.echo.done():
                    self.echo.set_result(None)

        async def once() -> None:
            transport, listener = await ws_connect(Once, url, enable_auto_ping=False)
            transport.send(BINARY, payload[:32])
            await listener.echo
            transport.send_close()
            await transport.wait_disconnected()

        await handshake_loops(ph, args.window, once)
        return

    class Client(WSListener):  # type: ignore[misc]
        t = 0

        def on_ws_connected(self, transport: Any) -> None:
            ph.arm()
            if rtt:
                self.t = clock()
                transport.send(BINARY, payload)
            else:
                for _ in range(args.window):
                    transport.send(BINARY, payload)

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type is not BINARY:
                return
            if rtt:
                now = clock()
                ph.lat.append(now - self.t)
                ph.count += 1
                if ph.running:
                    self.t = clock()
                    transport.send(BINARY, payload)
            else:
                ph.count += 1
                if ph.running:
                    transport.send(BINARY, payload)

    transport, _ = await ws_connect(Client, f"ws://127.0.0.1:{args.port}/", enable_auto_ping=False)
    while ph.done is None:
        await asyncio.sleep(0.001)
    await ph.done
    transport.disconnect()


RUNNERS = {"wsline": run_wsline, "websockets": run_websockets, "aiohttp": run_aiohttp, "picows": run_picows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("library", choices=sorted(RUNNERS))
    parser.add_argument("loop", choices=["asyncio", "uvloop"])
    parser.add_argument("mode", choices=["rtt", "pipe", "handshake"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    ph = Phase(args.warmup, args.duration)

    async def go() -> str | None:
        try:
            await asyncio.wait_for(RUNNERS[args.library](args, ph), args.warmup + args.duration + 30)
            return None
        except Exception as exc:  # noqa: BLE001 - reported in the JSON
            return f"{type(exc).__name__}: {exc}"

    error = asyncio.run(go())
    if error is None and ph.running:
        error = "the client stopped before the end of the measurement"
    print(json.dumps(ph.result(args, error)), flush=True)
    sys.stdout.flush()
    os._exit(0)  # no closing handshakes: the measurement is over


if __name__ == "__main__":
    main()
