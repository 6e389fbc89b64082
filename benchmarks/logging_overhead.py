"""What wsline's logging costs, with the ``wsline`` logger off (WARNING) and on (DEBUG).

    PYTHONPATH=src python benchmarks/logging_overhead.py [--messages 5000] [--connections 300]

Two parts:

- per call: the time of one ``ws.logger.debug("... %s", arg)`` (the
  per-connection LoggerAdapter wsline uses) and, for comparison, of a plain
  ``logging.getLogger("wsline").debug(...)``: with the logger at WARNING (the
  call returns after a level check), and at DEBUG with a NullHandler (a
  LogRecord is built and dispatched, nothing formatted), with a text formatter
  and with ``wsline.log.JSONFormatter`` writing to a stream that discards;
- end to end, over loopback in one event loop: N echo round trips of a small
  text message on one connection, and M connections opened, used for one echo
  and closed, with wsline's loggers at WARNING, at DEBUG into a NullHandler,
  at DEBUG into text lines and into JSON lines written to a discarding stream.
  Each setting runs ``--rounds`` times, interleaved, in a rotating order; the
  median and the best run are reported. The server's one ``ws.logger.debug``
  call per connection is also timed in place (by wrapping the adapter's
  ``debug`` method for one extra pass; the wrapper adds some 0.2 µs), since a lone call with cold caches
  costs more than the same call in a hot loop. The number of
  records wsline emits per message and per connection at DEBUG is counted too.

The table is printed and written to benchmarks/results/logging.md. Takes about
20-40 seconds with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import logging
import os
import platform
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wsline
from wsline.aio.connection import _ConnLogger
from wsline.log import JSONFormatter

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "logging.md"
HOST = "127.0.0.1"
OPTS: dict[str, Any] = {"ping_interval": None, "compression": None}


class Discard:
    """A text stream that drops what it is given (formatting still happens)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def set_logging(mode: str) -> logging.Handler:
    """Configure the ``wsline`` logger for a mode; returns its only handler."""
    logger = logging.getLogger("wsline")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.propagate = False
    handler: logging.Handler
    if mode == "off":
        handler = logging.NullHandler()
        logger.setLevel(logging.WARNING)
    elif mode == "null":
        handler = logging.NullHandler()
        logger.setLevel(logging.DEBUG)
    elif mode == "text":
        handler = logging.StreamHandler(Discard())
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.setLevel(logging.DEBUG)
    elif mode == "json":
        handler = logging.StreamHandler(Discard())
        handler.setFormatter(JSONFormatter())
        logger.setLevel(logging.DEBUG)
    elif mode == "count":
        handler = Counter()
        logger.setLevel(logging.DEBUG)
    else:
        raise ValueError(mode)
    logger.addHandler(handler)
    return handler


MODES = {
    "off": "WARNING (DEBUG off)",
    "null": "DEBUG -> NullHandler",
    "text": "DEBUG -> text Formatter, discarded",
    "json": "DEBUG -> JSONFormatter, discarded",
}


def per_call_ns(func: Callable[[], None], number: int) -> float:
    timer = timeit.Timer(func)
    return min(timer.repeat(repeat=5, number=number)) / number * 1e9


async def echo(ws: wsline.WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


async def echo_run(url: str, messages: int) -> float:
    async with wsline.connect(url, **OPTS) as ws:
        started = time.perf_counter()
        for _ in range(messages):
            await ws.send("hello, world")
            await ws.recv()
        return time.perf_counter() - started


async def churn_run(url: str, connections: int) -> float:
    started = time.perf_counter()
    for _ in range(connections):
        async with wsline.connect(url, **OPTS) as ws:
            await ws.send("hi")
            await ws.recv()
    return time.perf_counter() - started


async def main(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    async with wsline.serve(echo, HOST, 0, **OPTS) as server:
        url = f"ws://{HOST}:{server.port}/"

        # ---------------------------------------------------------- per call
        async with wsline.connect(url, **OPTS) as ws:
            adapter = ws.logger
            plain = logging.getLogger("wsline")
            arg = "value"

            def adapter_call() -> None:
                adapter.debug("frame %s", arg)

            def plain_call() -> None:
                plain.debug("frame %s", arg)

            def nothing() -> None:
                pass

            base = per_call_ns(nothing, args.calls)
            rows: list[tuple[str, float, float]] = []
            for mode in MODES:
                set_logging(mode)
                number = args.calls if mode == "off" else args.calls // 20
                rows.append(
                    (
                        MODES[mode],
                        per_call_ns(adapter_call, number) - base,
                        per_call_ns(plain_call, number) - base,
                    )
                )
        out.append("### One `debug()` call\n")
        out.append("| wsline logger | `ws.logger.debug(...)` (adapter) | `logger.debug(...)` (plain) |")
        out.append("|---|---:|---:|")
        for name, adapter_ns, plain_ns in rows:
            out.append(f"| {name} | {fmt_ns(adapter_ns)} | {fmt_ns(plain_ns)} |")
        out.append(f"\n(Python function call overhead, {base:.0f} ns, subtracted.)\n")
        print("\n".join(out), flush=True)

        # ------------------------------------------------- records emitted
        counter = set_logging("count")
        assert isinstance(counter, Counter)
        await echo_run(url, 100)
        await asyncio.sleep(0.05)
        per_echo_conn = counter.count
        counter.count = 0
        await echo_run(url, 1100)
        await asyncio.sleep(0.05)
        per_message = (counter.count - per_echo_conn) / 1000
        counter.count = 0
        await churn_run(url, 100)
        await asyncio.sleep(0.05)
        per_connection = counter.count / 100

        # ------------------------------------- one debug() call, timed in place
        cold: dict[str, float] = {}
        original = _ConnLogger.debug
        spent: list[int] = []

        def timed_debug(self: _ConnLogger, msg: Any, *a: Any, **kw: Any) -> None:
            t = time.perf_counter_ns()
            original(self, msg, *a, **kw)
            spent.append(time.perf_counter_ns() - t)

        _ConnLogger.debug = timed_debug  # type: ignore[method-assign,assignment]
        try:
            for mode in MODES:
                set_logging(mode)
                spent.clear()
                await churn_run(url, args.connections)
                cold[mode] = statistics.median(spent)
        finally:
            _ConnLogger.debug = original  # type: ignore[method-assign]

        # -------------------------------------------------------- end to end
        results: dict[tuple[str, str], list[float]] = {}
        await echo_run(url, args.messages)  # warm-up
        await churn_run(url, args.connections // 2)
        modes = list(MODES)
        for i in range(args.rounds):
            for mode in modes[i % len(modes) :] + modes[: i % len(modes)]:  # rotate the order
                set_logging(mode)
                gc.collect()
                results.setdefault(("echo", mode), []).append(await echo_run(url, args.messages))
                gc.collect()
                results.setdefault(("churn", mode), []).append(await churn_run(url, args.connections))
        set_logging("off")

    e2e: list[str] = [
        f"### End to end over loopback ({args.rounds} rounds per setting: median, and best in brackets)\n"
    ]
    e2e.append(
        f"| wsline logger | {args.messages} echoes: µs per round trip | vs off "
        f"| {args.connections} connections: µs per connection | vs off |"
    )
    e2e.append("|---|---:|---:|---:|---:|")
    echo_off = statistics.median(results[("echo", "off")])
    churn_off = statistics.median(results[("churn", "off")])
    echo_best = min(results[("echo", "off")])
    churn_best = min(results[("churn", "off")])
    for mode, name in MODES.items():
        echo_t = statistics.median(results[("echo", mode)])
        churn_t = statistics.median(results[("churn", mode)])
        echo_b = min(results[("echo", mode)])
        churn_b = min(results[("churn", mode)])
        e2e.append(
            f"| {name} | {echo_t / args.messages * 1e6:.1f} ({echo_b / args.messages * 1e6:.1f}) "
            f"| {pct(echo_t, echo_off)} ({pct(echo_b, echo_best)}) "
            f"| {churn_t / args.connections * 1e6:.0f} ({churn_b / args.connections * 1e6:.0f}) "
            f"| {pct(churn_t, churn_off)} ({pct(churn_b, churn_best)}) |"
        )
    spread = (
        max((max(v) - min(v)) / statistics.median(v) * 100 for v in results.values() if len(v) > 1)
        if args.rounds > 1
        else 0.0
    )
    e2e.append(
        f"\nRecords wsline emits at DEBUG: {per_message:g} per echoed message, "
        f"{per_connection:g} per connection (server and client together, open to close). "
        f"Largest spread between rounds of one setting: {spread:.0f}%.\n"
    )
    extra = []
    for mode in MODES:
        if mode != "off":
            added = (statistics.median(results[("churn", mode)]) - churn_off) / args.connections * 1e6
            extra.append(f"{MODES[mode].split(' -> ')[-1]} {added:+.0f} µs")
    in_place = ", ".join(f"{MODES[mode].split(' -> ')[-1]} {fmt_ns(ns)}" for mode, ns in cold.items())
    e2e.append(
        "The per-call figures are for a hot loop. The record a connection emits comes from a lone "
        "call with cold caches, which costs several times more: the server's `ws.logger.debug` "
        f"call, timed in place (median over {args.connections} connections): {in_place}. "
        f"Extra time per connection at DEBUG in the table: {', '.join(extra)}. With no logging "
        "on the message path, echo times do not depend on the level beyond noise.\n"
    )
    print("\n".join(e2e), flush=True)
    return out + e2e


def fmt_ns(ns: float) -> str:
    return f"{ns:.0f} ns" if ns < 10_000 else f"{ns / 1000:.1f} µs"


def pct(value: float, base: float) -> str:
    return f"{(value / base - 1) * 100:+.1f}%"


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=5000, help="echo round trips per run")
    parser.add_argument("--connections", type=int, default=300, help="connections per churn run")
    parser.add_argument("--rounds", type=int, default=8, help="runs of each setting (median)")
    parser.add_argument("--calls", type=int, default=1_000_000, help="calls per timing, logger off")
    args = parser.parse_args()
    load = os.getloadavg()
    started = time.perf_counter()
    body = asyncio.run(main(args))
    took = time.perf_counter() - started
    header = [
        "# Logging overhead",
        "",
        f"`benchmarks/logging_overhead.py --messages {args.messages} --connections {args.connections} "
        f"--rounds {args.rounds}`, {datetime.date.today().isoformat()}: wsline {wsline.__version__}, "
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; "
        "client and server in one process and event loop, no compression; load average "
        f"before the run {load[0]:.2f}. Took {took:.0f} s.",
        "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(header + body) + "\n", encoding="utf-8")
    print(f"written to {RESULTS.relative_to(HERE.parent)}", file=sys.stderr)


if __name__ == "__main__":
    cli()
