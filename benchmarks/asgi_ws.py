"""WebSockets of an ASGI application under uvicorn: wsline's ``--ws`` against uvicorn's own.

    .venv/bin/python benchmarks/asgi_ws.py                 # ~8 min: 3 rounds, every scenario
    .venv/bin/python benchmarks/asgi_ws.py --quick         # ~2 min
    .venv/bin/python benchmarks/asgi_ws.py --only pipe fanout --rounds 5
    .venv/bin/python benchmarks/asgi_ws.py --server \
        "wsline asgi=python -m wsline asgi asgi_ws:app --port {port}"   # one more server row
    .venv/bin/python benchmarks/asgi_ws.py --profile "pipe 1000 text"   # py-spy of wsline's row

The application is this module's ``app``: one Starlette application for every
server, with an echo endpoint on every path (text as text, bytes as bytes) and
a relay for the fan-out: ``/sub`` subscribes, and what ``/pub`` sends goes to
every subscriber. The relay uses the ``wsline`` ASGI extension where the server
offers it (``publish``: framed once, queued on every subscriber without awaiting
any), and otherwise what a Starlette application does (``await
sub.send_bytes(m)`` for each subscriber in turn, as in FastAPI's documentation).
It is also the Autobahn|Testsuite target of ``tests/compliance/test_autobahn.py``
(``uvicorn asgi_ws:app --app-dir benchmarks --ws wsline.asgi.uvicorn:WebSocketProtocol``).

The servers (``--server NAME=COMMAND`` adds more; ``{port}`` is replaced):
uvicorn with ``--ws wsline.asgi.uvicorn:WebSocketProtocol``, ``--ws
websockets-sansio`` and ``--ws wsproto``, each with ``--http httptools --loop
uvloop`` (what ``uvicorn[standard]`` runs by default), keepalive pings off,
compression off (the load generator offers none anyway), access log off.

The method is ``run.py``'s, with its C load generator (``loadgen/loadgen.c``,
built into ``.build/``): each server process pinned to CPU 0, the load
generator to CPU 1 (it reads the server's CPU time); every round runs every
scenario against every server, in shuffled order; the report gives medians
(with min-max) over the rounds and wsline's ratio to each peer of the same run.
Memory per idle connection: a client process opens ``--idle`` connections (each
exchanges one message, then idles), and the server's RSS growth is divided by
them.

Results: ``results/asgi_ws.md`` (``--results DIR`` elsewhere), raw runs in
``.build/asgi_ws.json`` (``DIR/asgi_ws.json`` with ``--results``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import resource
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# ------------------------------------------------------------------ the application


def _make_app() -> Any:
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    subscribers: set[WebSocket] = set()

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            await websocket.send(
                {"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")}
            )

    async def sub(websocket: WebSocket) -> None:
        await websocket.accept()
        wsline_ext = websocket.scope.get("extensions", {}).get("wsline")
        if wsline_ext is not None:
            await wsline_ext["join"]("fanout")
        else:
            subscribers.add(websocket)
        try:
            while True:  # each subscriber sends one message and waits for its echo
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                await websocket.send(
                    {"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")}
                )
        finally:
            subscribers.discard(websocket)

    async def pub(websocket: WebSocket) -> None:
        await websocket.accept()
        wsline_ext = websocket.scope.get("extensions", {}).get("wsline")
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            payload = data if data is not None else message.get("text", "")
            if wsline_ext is not None:
                await wsline_ext["publish"]("fanout", payload)
                continue
            for subscriber in list(subscribers):
                try:
                    if isinstance(payload, str):
                        await subscriber.send_text(payload)
                    else:
                        await subscriber.send_bytes(payload)
                except (WebSocketDisconnect, RuntimeError, OSError):
                    subscribers.discard(subscriber)

    return Starlette(
        routes=[
            WebSocketRoute("/sub", sub),
            WebSocketRoute("/pub", pub),
            WebSocketRoute("/{path:path}", echo),
        ]
    )


def __getattr__(name: str) -> Any:
    # ``app`` is built when uvicorn imports it: the harness itself needs no Starlette.
    if name == "app":
        app = _make_app()
        globals()["app"] = app
        return app
    raise AttributeError(name)


# ------------------------------------------------------------------ servers

WS_WSLINE = "wsline.asgi.uvicorn:WebSocketProtocol"
UVICORN = [
    "-m",
    "uvicorn",
    "asgi_ws:app",
    "--app-dir",
    str(HERE),
    "--host",
    "127.0.0.1",
    "--port",
    "{port}",
    "--http",
    "httptools",
    "--loop",
    "uvloop",
    "--lifespan",
    "off",
    "--no-access-log",
    "--log-level",
    "warning",
    "--ws-ping-interval",
    "0",
    "--ws-per-message-deflate",
    "false",
    "--backlog",
    "4096",
]


def default_servers() -> dict[str, list[str]]:
    py = sys.executable
    return {
        "wsline": [py, *UVICORN, "--ws", WS_WSLINE],
        "websockets-sansio": [py, *UVICORN, "--ws", "websockets-sansio"],
        "wsproto": [py, *UVICORN, "--ws", "wsproto"],
    }


PEERS = ("websockets-sansio", "wsproto")
#: The targets of issue 12: wsline / websockets-sansio at least this (per scenario key prefix).
TARGETS = {"pipe": 2.0, "fanout": 2.0}
DEFAULT_TARGET = 1.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pinned(cpu: int) -> Any:
    def setup() -> None:
        os.sched_setaffinity(0, {cpu})
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    return setup


class Server:
    """One server under test: a process pinned to the server CPU, listening on a port of its own."""

    def __init__(self, name: str, command: list[str], log_dir: Path, cpu: int, wrap: list[str] = ()) -> None:
        self.name = name
        self.port = free_port()
        argv = [arg.replace("{port}", str(self.port)) for arg in command]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        }
        self.log_path = log_dir / f"server-{name.replace(' ', '-')}.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*wrap, *argv],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=env,
                preexec_fn=_pinned(cpu),
                cwd=ROOT,
            )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} did not start (see {self.log_path})")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def settle(self, suite: Any, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        last = suite.proc_cpu_ticks(self.pid)
        while time.monotonic() < deadline and self.alive():
            time.sleep(0.1)
            now = suite.proc_cpu_ticks(self.pid)
            if now - last <= 1:
                return
            last = now

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ------------------------------------------------------------------ idle connections


async def _idle_connections(port: int, count: int) -> list[Any]:
    """``count`` WebSocket connections, each after one echoed message; returned open."""
    loop = asyncio.get_running_loop()
    opened: list[Any] = []
    frame = (
        bytes([0x81, 0x80 | 20])
        + b"\x01\x02\x03\x04"
        + bytes(b ^ m for b, m in zip(b'{"msg": "hello 123"}', b"\x01\x02\x03\x04" * 5, strict=True))
    )
    sem = asyncio.Semaphore(64)

    async def one() -> None:
        async with sem:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write(
                f"GET /idle HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101"), head
            writer.write(frame)
            echoed = await reader.readexactly(22)
            assert echoed[2:] == b'{"msg": "hello 123"}', echoed
            opened.append((reader, writer))

    await asyncio.gather(*(one() for _ in range(count)))
    del loop
    return opened


def idle_client(port: int, count: int) -> None:
    """``--idle-client``: hold ``count`` connections; 'READY' on stdout; end when stdin closes."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def main() -> None:
        conns = await _idle_connections(port, count)
        print("READY", len(conns), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())


def measure_memory(
    name: str, command: list[str], count: int, log_dir: Path, args: argparse.Namespace
) -> float:
    """KiB of server RSS per idle connection (growth over ``count`` connections, after 100 first ones)."""
    server = Server(name, command, log_dir, args.server_cpu)
    try:
        warm = _hold(server.port, 100, args)
        time.sleep(0.5)
        before = server.rss_kib()
        held = _hold(server.port, count, args)
        time.sleep(1.0)
        after = server.rss_kib()
        for proc in (held, warm):
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(30)
        return (after - before) / count
    finally:
        server.stop()


def _hold(port: int, count: int, args: argparse.Namespace) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--idle-client", str(port), str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_pinned(args.loadgen_cpu),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        raise RuntimeError(f"idle client failed: {line!r}")
    return proc


# ------------------------------------------------------------------ the run


@dataclass(frozen=True)
class Row:
    name: str
    title: str


def scenarios(suite: Any, fanout: int) -> list[Any]:
    wanted = ("rtt 32 B", "pipe 100 bin", "pipe 1000 text", "bulk 64 KiB", f"fanout {fanout}", "handshake 16")
    by_name = {sc.name: sc for sc in suite.server_scenarios(fanout)}
    return [by_name[name] for name in wanted]


def run(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    import run as suite  # benchmarks/run.py: the load generator and its helpers

    suite.build_loadgen()
    servers = default_servers()
    for spec in args.server:
        name, _, command = spec.partition("=")
        servers[name.strip()] = [sys.executable if a == "python" else a for a in shlex.split(command)]
    if args.impls:
        servers = {k: v for k, v in servers.items() if k in args.impls}
    chosen = [
        sc for sc in scenarios(suite, args.fanout) if not args.only or any(o in sc.name for o in args.only)
    ]
    log_dir = HERE / ".build" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    runs: list[dict[str, Any]] = []
    memory: dict[str, list[float]] = {}
    started = time.monotonic()
    for rnd in range(args.rounds):
        procs = {name: Server(name, cmd, log_dir, args.server_cpu) for name, cmd in servers.items()}
        try:
            order = list(chosen)
            rng.shuffle(order)
            for sc in order:
                names = list(procs)
                rng.shuffle(names)
                for name in names:
                    srv = procs[name]
                    if not srv.alive():
                        srv = procs[name] = Server(name, servers[name], log_dir, args.server_cpu)
                    srv.settle(suite)
                    res = suite.run_loadgen(sc, srv, args.duration, args.warmup)
                    runs.append({"round": rnd, "scenario": sc.name, "impl": name, "result": res})
                    print(f"round {rnd + 1} {sc.name:<16} {name:<22} {suite.short(res, sc)}", file=sys.stderr)
        finally:
            for srv in procs.values():
                srv.stop()
        if args.idle and (not args.only or any(o in "memory" for o in args.only)):
            names = list(servers)
            rng.shuffle(names)
            for name in names:
                kib = measure_memory(name, servers[name], args.idle, log_dir, args)
                memory.setdefault(name, []).append(kib)
                print(f"round {rnd + 1} memory           {name:<22} {kib:.1f} KiB/conn", file=sys.stderr)
    return {
        "meta": {
            **suite.machine_info(),
            "uvicorn": _version("uvicorn"),
            "starlette": _version("starlette"),
            "wsproto": _version("wsproto"),
            "httptools": _version("httptools"),
            "loadavg": suite.loadavg(),
            "seconds": round(time.monotonic() - started),
            "rounds": args.rounds,
            "duration": args.duration,
            "warmup": args.warmup,
            "idle": args.idle,
            "servers": {k: shlex.join(v) for k, v in servers.items()},
        },
        "scenarios": [
            {"name": sc.name, "unit": sc.unit, "metric": sc.metric, "title": sc.title} for sc in chosen
        ],
        "runs": runs,
        "memory": memory,
    }


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


# ------------------------------------------------------------------ the report


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def summarize(data: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    metric = {sc["name"]: sc["metric"] for sc in data["scenarios"]}
    for run_ in data["runs"]:
        key = (run_["scenario"], run_["impl"])
        entry = out.setdefault(key, {"values": [], "per_cpu": [], "cpu": [], "failed": 0})
        res = run_["result"]
        if not res.get("ok"):
            entry["failed"] += 1
            continue
        value = float(res.get(metric[run_["scenario"]], 0.0))
        entry["values"].append(value)
        share = float(res.get("server_cpu_share", 0.0))
        entry["cpu"].append(share)
        if share > 0.02:
            entry["per_cpu"].append(value / share)
    return out


def fmt(v: float) -> str:
    if v != v:
        return "n/a"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e4:
        return f"{v / 1e3:.0f}k"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def target_of(scenario: str) -> float:
    for prefix, target in TARGETS.items():
        if scenario.startswith(prefix):
            return target
    return DEFAULT_TARGET


def render(data: dict[str, Any]) -> str:
    stats = summarize(data)
    impls = list(data["meta"]["servers"])
    peers = [p for p in PEERS if p in impls]
    meta = data["meta"]
    lines = [
        "# WebSockets of an ASGI application under uvicorn",
        "",
        f"`benchmarks/asgi_ws.py`, {meta['date']}: wsline {meta.get('wsline', '?')} "
        f"({meta.get('wsline_git', '?')}), uvicorn {meta['uvicorn']}, starlette {meta['starlette']}, "
        f"websockets {meta.get('websockets', '?')}, wsproto {meta['wsproto']}, "
        f"httptools {meta['httptools']}, "
        f"uvloop {meta.get('uvloop', '?')}, Python {meta['python']}, {meta.get('cpu_model', '?')} "
        f"({meta['cpus']} CPUs). {meta['rounds']} rounds of {meta['duration']} s (+{meta['warmup']} s "
        f"warm-up) per run, load average at the end {meta['loadavg']}, {meta['seconds']} s in all.",
        "",
        "Every server is the same Starlette application (`benchmarks/asgi_ws.py:app`) under uvicorn "
        "(`--http httptools --loop uvloop`, pings and compression off), pinned to CPU 0; the C load "
        "generator on CPU 1. Medians over the rounds (min-max in the second table); ratios are wsline's "
        "median over the peer's. The fan-out relay uses the `wsline` extension's `publish` (framed once) "
        "on wsline, and `await send_bytes()` per subscriber on the peers (which have nothing else).",
        "",
    ]
    header = ["scenario", "unit", *impls, *[f"wsline / {p}" for p in peers], "target", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    detail = [
        "| scenario | " + " | ".join(f"{i} (min-max, server CPU)" for i in impls) + " |",
        "|---|" + "---|" * len(impls),
    ]
    per_cpu = [
        "| scenario | " + " | ".join(impls) + " | " + " | ".join(f"wsline / {p}" for p in peers) + " |",
        "|---|" + "---|" * (len(impls) + len(peers)),
    ]
    for sc in data["scenarios"]:
        name = sc["name"]
        med = {i: _median(stats.get((name, i), {}).get("values", [])) for i in impls}
        cpu_med = {i: _median(stats.get((name, i), {}).get("per_cpu", [])) for i in impls}
        ratios = [med["wsline"] / med[p] if med.get(p) else float("nan") for p in peers]
        target = target_of(name)
        vs_sansio = ratios[0] if ratios else float("nan")
        verdict = "met" if vs_sansio >= target and all(r >= DEFAULT_TARGET for r in ratios) else "**missed**"
        lines.append(
            f"| {name} | {sc['unit']} | "
            + " | ".join(fmt(med[i]) for i in impls)
            + " | "
            + " | ".join(f"{r:.2f}x" for r in ratios)
            + f" | {target:.1f}x | {verdict} |"
        )
        cells = []
        for i in impls:
            entry = stats.get((name, i), {"values": [], "cpu": [], "failed": 0})
            vals = entry["values"]
            span = f"{fmt(min(vals))}-{fmt(max(vals))}" if vals else "n/a"
            failed = f", {entry['failed']} failed" if entry["failed"] else ""
            cells.append(f"{fmt(_median(vals))} ({span}, {_median(entry['cpu']) * 100:.0f}%{failed})")
        detail.append(f"| {name} | " + " | ".join(cells) + " |")
        cpu_ratios = [cpu_med["wsline"] / cpu_med[p] if cpu_med.get(p) else float("nan") for p in peers]
        per_cpu.append(
            f"| {name} | "
            + " | ".join(fmt(cpu_med[i]) for i in impls)
            + " | "
            + " | ".join(f"{r:.2f}x" for r in cpu_ratios)
            + " |"
        )
    memory = data.get("memory") or {}
    if memory:
        med = {i: _median(memory.get(i, [])) for i in impls}
        ratios = [med["wsline"] / med[p] if med.get(p) else float("nan") for p in peers]
        verdict = "met" if ratios and all(r < 1 for r in ratios) else "**missed**"
        lines.append(
            "| memory per idle connection | KiB RSS | "
            + " | ".join(f"{med[i]:.1f}" for i in impls)
            + " | "
            + " | ".join(f"{r:.2f}x" for r in ratios)
            + f" | < 1x | {verdict} |"
        )
    lines += [
        "",
        "Each run's median, its min-max over the rounds and the server's CPU share "
        "(near 100 %: the server was the bottleneck):",
        "",
        *detail,
        "",
        "Per CPU-second of the server process (less sensitive to other load on the machine):",
        "",
        *per_cpu,
        "",
    ]
    if memory:
        lines += [
            f"Memory: a fresh server per measurement; a client process opens {meta['idle']} connections "
            "(after 100 first ones), each exchanges one 20-byte message and idles; the server's RSS growth "
            "divided by them, per round: "
            + "; ".join(f"{i} " + ", ".join(f"{v:.1f}" for v in memory.get(i, [])) for i in impls)
            + " KiB.",
            "",
        ]
    lines += ["Servers:", "", *[f"- {k}: `{v}`" for k, v in meta["servers"].items()], ""]
    return "\n".join(lines)


# ------------------------------------------------------------------ profiling


def profile(args: argparse.Namespace) -> None:
    """cProfile of the wsline server under one scenario (SIGINT lets uvicorn end and cProfile write)."""
    sys.path.insert(0, str(HERE))
    import pstats

    import run as suite

    suite.build_loadgen()
    (sc,) = [s for s in scenarios(suite, args.fanout) if s.name == args.profile]
    log_dir = HERE / ".build" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    out = HERE / ".build" / "asgi_ws.prof"
    command = default_servers()[args.profile_impl]
    srv = Server(
        args.profile_impl,
        command[1:],
        log_dir,
        args.server_cpu,
        wrap=[sys.executable, "-m", "cProfile", "-o", str(out)],
    )
    try:
        res = suite.run_loadgen(sc, srv, args.duration, args.warmup)
        print(suite.short(res, sc), file=sys.stderr)
    finally:
        srv.stop(signal.SIGINT)
    stats = pstats.Stats(str(out))
    stats.sort_stats("tottime").print_stats(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=1.5)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 0.5 s, 1000 idle connections")
    parser.add_argument("--fanout", type=int, default=1000)
    parser.add_argument("--idle", type=int, default=2000, help="connections for the memory figure (0: none)")
    parser.add_argument("--only", nargs="*", default=[], help="scenarios whose name contains one of these")
    parser.add_argument("--impls", nargs="*", default=[], help="only these servers")
    parser.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="one more server; {port} in COMMAND is where it must listen",
    )
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--loadgen-cpu", type=int, default=1)
    parser.add_argument("--report-only", action="store_true", help="re-render asgi_ws.md from asgi_ws.json")
    parser.add_argument("--profile", metavar="SCENARIO", help="cProfile the wsline server under SCENARIO")
    parser.add_argument("--profile-impl", default="wsline")
    parser.add_argument("--idle-client", nargs=2, type=int, metavar=("PORT", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.idle_client:
        idle_client(*args.idle_client)
        return
    if args.quick:
        args.rounds, args.duration, args.warmup, args.idle = 2, 0.5, 0.3, min(args.idle, 1000)
    if args.profile:
        profile(args)
        return
    # The raw runs stay out of git (.build/) unless the report goes elsewhere.
    default = args.results == HERE / "results"
    json_path = (HERE / ".build" if default else args.results) / "asgi_ws.json"
    if args.report_only:
        data = json.loads(json_path.read_text())
    else:
        data = run(args)
        args.results.mkdir(parents=True, exist_ok=True)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(data, indent=1) + "\n")
    text = render(data)
    (args.results / "asgi_ws.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
