"""wsline's comparative benchmark suite: its server and client against their peers, in one run.

    python3 benchmarks/run.py            # full mode, about 11-13 minutes
    python3 benchmarks/run.py --quick    # about 2.5 minutes
    python3 benchmarks/run.py --profile  # py-spy and cProfile of wsline's server (pipelined 32 B)

One command does everything: it creates ``benchmarks/.venv`` (wsline editable,
and the peers: websockets, aiohttp, picows, uvloop, matplotlib, py-spy, at
pinned versions), builds the C load generator ``benchmarks/loadgen/loadgen.c``
with ``gcc -O2`` into ``benchmarks/.build/``, runs, and writes
``benchmarks/results/results.md``, ``suite.json`` (every run, raw) and PNG plots.

Server benchmarks: every server under test runs in its own process pinned to
CPU 0 (the servers of a round are all started at the round's beginning and are
idle while another is measured; the suite waits for each to go idle again
after its turn); the C load generator runs pinned to CPU 1 and reports its
own CPU share and the server's, so one can see which side was saturated.
Client benchmarks: each library's client, pinned to CPU 1, against the C
reference server pinned to CPU 0.

Repetitions are interleaved: each round runs every scenario once against every
server, in shuffled orders; the report gives the median with min-max over the
rounds, and wsline's ratio to the best peer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV = HERE / ".venv"
BUILD = HERE / ".build"
RESULTS = HERE / "results"
LOADGEN_SRC = HERE / "loadgen" / "loadgen.c"
LOADGEN = BUILD / "loadgen"
SERVERS_PY = HERE / "suite_servers.py"
CLIENTS_PY = HERE / "suite_clients.py"

# Pinned so that runs stay comparable; bump deliberately.
REQUIREMENTS = [
    "websockets==17.4",
    "aiohttp==3.14.5",
    "picows==2.3.1",
    "uvloop==0.23.0",
    "matplotlib==3.11.2",
    "py-spy==0.4.3",
]

SERVER_CPU = 0
LOADGEN_CPU = 1


# ------------------------------------------------------------------ bootstrap


def venv_python() -> Path:
    return VENV / "bin" / "python"


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def bootstrap() -> None:
    """Create/update benchmarks/.venv, then re-run this script with it."""
    stamp = VENV / ".stamp-suite"
    key = hashlib.sha256(
        ("\n".join(REQUIREMENTS) + (ROOT / "pyproject.toml").read_text()).encode()
    ).hexdigest()
    if not venv_python().exists():
        print(f"creating {VENV}", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    if not stamp.exists() or stamp.read_text() != key:
        print("installing wsline (editable) and the peers into the venv", file=sys.stderr, flush=True)
        pip = [str(venv_python()), "-m", "pip", "--disable-pip-version-check", "-q"]
        subprocess.run([*pip, "install", "-e", str(ROOT), *REQUIREMENTS], check=True)
        stamp.write_text(key)
    os.execv(str(venv_python()), [str(venv_python()), str(Path(__file__).resolve()), *sys.argv[1:]])


def build_loadgen() -> None:
    BUILD.mkdir(parents=True, exist_ok=True)
    (BUILD / ".gitignore").write_text("*\n")  # build output and logs stay out of git
    if LOADGEN.exists() and LOADGEN.stat().st_mtime >= LOADGEN_SRC.stat().st_mtime:
        return
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise SystemExit("gcc is needed to build the load generator")
    cmd = [cc, "-O2", "-Wall", "-Wextra", "-o", str(LOADGEN), str(LOADGEN_SRC)]
    print(" ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def raise_fd_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ------------------------------------------------------------- what is tested


@dataclass(frozen=True)
class Impl:
    name: str  # shown in tables
    library: str  # wsline, websockets, aiohttp, picows, c
    loop: str  # asyncio, uvloop, epoll
    pyflags: tuple[str, ...] = ()
    note: str = ""
    env: tuple[tuple[str, str], ...] = ()  # extra environment variables

    def environ(self) -> dict[str, str]:
        return {**os.environ, **dict(self.env)}

    @property
    def is_wsline(self) -> bool:
        return self.library.startswith("wsline")

    @property
    def is_peer(self) -> bool:
        return not self.is_wsline and self.library != "c"


CALLBACKS_NOTE = "wsline's callback API (`wsline.Listener`: no task, no await per message); server only"
PURE_NOTE = "the pure-Python path (WSLINE_NO_EXTENSIONS=1): wsline without its C extension"

SERVER_IMPLS = [
    Impl("wsline", "wsline", "asyncio"),
    Impl("wsline uvloop", "wsline", "uvloop"),
    Impl("wsline pure", "wsline", "asyncio", note=PURE_NOTE, env=(("WSLINE_NO_EXTENSIONS", "1"),)),
    Impl("wsline callbacks", "wsline-callbacks", "asyncio", note=CALLBACKS_NOTE),
    Impl("wsline callbacks uvloop", "wsline-callbacks", "uvloop", note=CALLBACKS_NOTE),
    Impl("websockets", "websockets", "asyncio"),
    Impl("websockets uvloop", "websockets", "uvloop"),
    Impl("aiohttp", "aiohttp", "asyncio"),
    Impl("aiohttp uvloop", "aiohttp", "uvloop"),
    Impl("picows", "picows", "asyncio"),
    Impl("picows uvloop", "picows", "uvloop"),
    Impl("C reference", "c", "epoll", note="the load generator's own server (ceiling, not a peer)"),
]
CLIENT_IMPLS = [i for i in SERVER_IMPLS if i.library not in ("c", "wsline-callbacks")]


def baseline_impls(src: Path) -> list[Impl]:
    """Another wsline checkout (``--baseline-src DIR/src``, its C extension built in place) as extra impls."""
    env = (("PYTHONPATH", str(src)),)
    note = f"wsline from {src} (another commit, for before/after comparisons)"
    return [
        Impl("wsline base", "wsline", "asyncio", note=note, env=env),
        Impl("wsline base uvloop", "wsline", "uvloop", note=note, env=env),
        Impl("wsline base callbacks", "wsline-callbacks", "asyncio", note=note, env=env),
    ]


@dataclass(frozen=True)
class Scenario:
    name: str
    mode: str  # loadgen mode (server side) or rtt/pipe (client side)
    unit: str
    metric: str = "rate"  # result field: rate (msgs/s) or mbps
    size: int = 32
    window: int = 1
    conns: int = 1
    text: bool = False
    title: str = ""
    discard: bool = False  # bulk: the load generator has the kernel drop the echoed payloads

    def loadgen_args(self) -> list[str]:
        args = [self.mode, "--size", str(self.size), "--window", str(self.window), "--conns", str(self.conns)]
        if self.text:
            args.append("--text")
        if self.discard:
            args.append("--discard")
        return args


def server_scenarios(fanout_conns: int) -> list[Scenario]:
    return [
        Scenario("rtt 32 B", "rtt", "msg/s", title="round trips, 1 connection, 32 B binary"),
        Scenario("pipe 100 bin", "pipe", "msg/s", window=100, title="pipelined, 100 in flight, 32 B binary"),
        Scenario(
            "pipe 1000 bin", "pipe", "msg/s", window=1000, title="pipelined, 1000 in flight, 32 B binary"
        ),
        Scenario(
            "pipe 100 text",
            "pipe",
            "msg/s",
            window=100,
            text=True,
            title="pipelined, 100 in flight, 32 B text",
        ),
        Scenario(
            "pipe 1000 text",
            "pipe",
            "msg/s",
            window=1000,
            text=True,
            title="pipelined, 1000 in flight, 32 B text",
        ),
        Scenario(
            "bulk 64 KiB", "bulk", "MB/s", "mbps", size=65536, window=4, title="echo of 64 KiB, 4 in flight"
        ),
        Scenario(
            "bulk 1 MiB", "bulk", "MB/s", "mbps", size=1 << 20, window=2, title="echo of 1 MiB, 2 in flight"
        ),
        # The independent benchmark's set-up (issue 16): more in flight, and a
        # client that has the kernel drop each echo's payload (recv MSG_TRUNC)
        # instead of copying it out, so that the server alone limits the rate.
        Scenario(
            "bulk 64 KiB x8 drop",
            "bulk",
            "MB/s",
            "mbps",
            size=65536,
            window=8,
            discard=True,
            title="echo of 64 KiB, 8 in flight, the client drops the echoes in the kernel",
        ),
        Scenario(
            "bulk 1 MiB x2 drop",
            "bulk",
            "MB/s",
            "mbps",
            size=1 << 20,
            window=2,
            discard=True,
            title="echo of 1 MiB, 2 in flight, the client drops the echoes in the kernel",
        ),
        Scenario(
            f"fanout {fanout_conns}",
            "fanout",
            "deliveries/s",
            conns=fanout_conns,
            window=16,
            title=f"relay of 32 B to {fanout_conns} subscribers, 16 messages in flight",
        ),
        Scenario(
            "handshake 16",
            "handshake",
            "conn/s",
            conns=16,
            title="connect + 1 echo + close, 16 in parallel",
        ),
        Scenario(
            "handshake 8",
            "handshake",
            "conn/s",
            conns=8,
            title="connect + 1 echo + close, 8 in parallel",
        ),
    ]


CLIENT_SCENARIOS = [
    Scenario("client rtt 32 B", "rtt", "msg/s", title="client: round trips, 32 B binary"),
    Scenario("client pipe 100", "pipe", "msg/s", window=100, title="client: pipelined, 100 in flight, 32 B"),
    Scenario(
        "client pipe 1000", "pipe", "msg/s", window=1000, title="client: pipelined, 1000 in flight, 32 B"
    ),
    Scenario(
        "client bulk 64 KiB",
        "pipe",
        "MB/s",
        "mbps",
        size=65536,
        window=8,
        title="client: echo of 64 KiB, 8 in flight",
    ),
    Scenario(
        "client bulk 1 MiB",
        "pipe",
        "MB/s",
        "mbps",
        size=1 << 20,
        window=2,
        title="client: echo of 1 MiB, 2 in flight",
    ),
    Scenario(
        "client handshake 8",
        "handshake",
        "conn/s",
        window=8,
        title="client: connect + 1 echo + close, 8 in parallel",
    ),
]


# ------------------------------------------------------------------ processes


def proc_cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    except (OSError, IndexError, ValueError):
        return -1


class ServerProc:
    """A server under test, in its own process pinned to SERVER_CPU."""

    def __init__(self, impl: Impl, log_dir: Path) -> None:
        self.impl = impl
        safe = impl.name.replace(" ", "-")
        self.log_path = log_dir / f"server-{safe}.log"
        log = open(self.log_path, "ab")
        if impl.library == "c":
            cmd = [str(LOADGEN), "serve"]
        else:
            cmd = [sys.executable, *impl.pyflags, str(SERVERS_PY), impl.library, impl.loop]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            preexec_fn=lambda: os.sched_setaffinity(0, {SERVER_CPU}),
            text=True,
            env=impl.environ(),
        )
        log.close()
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"{impl.name} did not start (see {self.log_path})")
        self.port = int(line.split()[1])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until the server has finished the previous run's clean-up (CPU idle)."""
        deadline = time.monotonic() + timeout
        last = proc_cpu_ticks(self.pid)
        while time.monotonic() < deadline and self.alive():
            time.sleep(0.1)
            now = proc_cpu_ticks(self.pid)
            if now - last <= 1:  # at most one 10 ms tick in 100 ms
                return
            last = now

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_loadgen(sc: Scenario, server: ServerProc, duration: float, warmup: float) -> dict[str, Any]:
    cmd = [
        str(LOADGEN),
        *sc.loadgen_args(),
        "--port",
        str(server.port),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
        "--cpu",
        str(LOADGEN_CPU),
        "--watch-pid",
        str(server.pid),
        "--timeout",
        "60",
    ]
    return run_json(cmd, duration + warmup + 90)


def run_client(sc: Scenario, impl: Impl, port: int, duration: float, warmup: float) -> dict[str, Any]:
    cmd = [
        sys.executable,
        *impl.pyflags,
        str(CLIENTS_PY),
        impl.library,
        impl.loop,
        sc.mode,
        "--port",
        str(port),
        "--window",
        str(sc.window),
        "--size",
        str(sc.size),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
        "--cpu",
        str(LOADGEN_CPU),
    ]
    return run_json(cmd, duration + warmup + 60, impl.environ())


def run_json(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout:.0f} s"}
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            try:
                result: dict[str, Any] = json.loads(line)
                return result
            except json.JSONDecodeError:
                break
    return {"ok": False, "error": f"exit {out.returncode}: {out.stderr.strip()[-300:]}"}


# ------------------------------------------------------------------ the run


@dataclass
class Record:
    kind: str  # server or client
    scenario: str
    impl: str
    round: int
    result: dict[str, Any] = field(default_factory=dict)


def machine_info() -> dict[str, Any]:
    from importlib.metadata import version

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for pkg in ("wsline", "websockets", "aiohttp", "picows", "uvloop"):
        try:
            info[pkg] = version(pkg)
        except Exception:  # noqa: BLE001
            info[pkg] = "?"
    try:
        cc = subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        info["gcc"] = cc
    except (OSError, IndexError):
        pass
    info["wsline_git"] = git_describe()
    return info


def git_describe() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
        )
        return out.stdout.strip()
    except OSError:
        return "?"


def loadavg() -> list[float]:
    try:
        with open("/proc/loadavg") as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return []


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def short(res: dict[str, Any], sc: Scenario) -> str:
    if not res.get("ok"):
        return f"FAILED: {res.get('error', '?')}"
    value = res.get(sc.metric, 0.0)
    text = f"{value:>12,.1f} {sc.unit}"
    if "cpu_share" in res:
        text += f"  loadgen/client cpu {res['cpu_share'] * 100:3.0f}%"
    if "server_cpu_share" in res:
        text += f"  server cpu {res['server_cpu_share'] * 100:3.0f}%"
    if "p99_us" in res:
        text += f"  p50 {res['p50_us']:.0f} us  p99 {res['p99_us']:.0f} us"
    return text


def run_suite(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    log_dir = BUILD / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("*.log"):
        old.unlink()
    scenarios = [s for s in server_scenarios(args.fanout_conns) if args.only in s.name]
    client_scenarios = [s for s in CLIENT_SCENARIOS if args.only in s.name]
    impls = [i for i in SERVER_IMPLS if not args.impls or any(k == i.name for k in args.impls)]
    clients = [i for i in CLIENT_IMPLS if not args.impls or any(k == i.name for k in args.impls)]
    if args.no_clients:
        client_scenarios = []
    if args.no_servers:
        scenarios = []
    records: list[Record] = []
    t_start = time.monotonic()
    load_before = loadavg()
    git_before = git_describe()
    for rnd in range(args.rounds):
        # ---- servers
        if scenarios:
            log(f"== round {rnd + 1}/{args.rounds}: servers")
            servers: dict[str, ServerProc] = {}
            for impl in impls:
                servers[impl.name] = ServerProc(impl, log_dir)
            try:
                order = scenarios[:]
                rng.shuffle(order)
                for sc in order:
                    names = list(servers)
                    rng.shuffle(names)
                    for name in names:
                        srv = servers[name]
                        if not srv.alive():
                            log(f"   {name} died; restarting it")
                            srv = servers[name] = ServerProc(srv.impl, log_dir)
                        srv.settle()
                        res = run_loadgen(sc, srv, args.duration, args.warmup)
                        res["loadavg1"] = (loadavg() or [-1.0])[0]
                        records.append(Record("server", sc.name, name, rnd, res))
                        log(f"   {sc.name:16} {name:18} {short(res, sc)}")
            finally:
                for srv in servers.values():
                    srv.stop()
        # ---- clients
        if client_scenarios and clients:
            log(f"== round {rnd + 1}/{args.rounds}: clients (against the C reference server)")
            ref = ServerProc(SERVER_IMPLS[-1], log_dir)
            try:
                order = client_scenarios[:]
                rng.shuffle(order)
                for sc in order:
                    names = clients[:]
                    rng.shuffle(names)
                    for impl in names:
                        res = run_client(sc, impl, ref.port, args.duration, args.warmup)
                        res["loadavg1"] = (loadavg() or [-1.0])[0]
                        records.append(Record("client", sc.name, impl.name, rnd, res))
                        log(f"   {sc.name:16} {impl.name:18} {short(res, sc)}")
            finally:
                ref.stop()
    return {
        "meta": {
            **machine_info(),
            "mode": "quick" if args.quick else "full",
            "rounds": args.rounds,
            "duration": args.duration,
            "warmup": args.warmup,
            "seed": args.seed,
            "loadavg_before": load_before,
            "loadavg_after": loadavg(),
            "elapsed_s": time.monotonic() - t_start,
            "command": " ".join(["benchmarks/run.py", *sys.argv[1:]]),
            "wsline_git_start": git_before,
        },
        "impls": [asdict(i) for i in SERVER_IMPLS],
        "scenarios": {
            "server": [asdict(s) for s in scenarios],
            "client": [asdict(s) for s in client_scenarios],
        },
        "runs": [asdict(r) for r in records],
    }


# ------------------------------------------------------------------ report


@dataclass
class Stat:
    median: float
    lo: float
    hi: float
    n: int
    failed: int
    extra: dict[str, float] = field(default_factory=dict)


def aggregate(data: dict[str, Any]) -> dict[tuple[str, str, str], Stat]:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for run in data["runs"]:
        groups.setdefault((run["kind"], run["scenario"], run["impl"]), []).append(run["result"])
    metric_of = {(kind, s["name"]): s["metric"] for kind, lst in data["scenarios"].items() for s in lst}
    out: dict[tuple[str, str, str], Stat] = {}
    for key, results in groups.items():
        ok = [r for r in results if r.get("ok")]
        metric = metric_of.get((key[0], key[1]), "rate")
        values = [float(r.get(metric, 0.0)) for r in ok]
        # The same, per CPU-second of the side under test (the server, or the
        # client): robust to other processes taking CPU time, where that side
        # is the bottleneck.
        side = "server_cpu_share" if key[0] == "server" else "cpu_share"
        per_cpu = [float(r.get(metric, 0.0)) / r[side] for r in ok if r.get(side, 0) > 0.02]
        if per_cpu:
            out[(key[0] + "/cpu", key[1], key[2])] = Stat(
                statistics.median(per_cpu),
                min(per_cpu),
                max(per_cpu),
                len(per_cpu),
                len(results) - len(per_cpu),
            )
        extra: dict[str, float] = {}
        for fld in ("cpu_share", "server_cpu_share", "p50_us", "p99_us", "p999_us"):
            xs = [float(r[fld]) for r in ok if fld in r]
            if xs:
                extra[fld] = statistics.median(xs)
                extra[fld + "_max"] = max(xs)
        if values:
            out[key] = Stat(
                statistics.median(values),
                min(values),
                max(values),
                len(values),
                len(results) - len(ok),
                extra,
            )
        else:
            out[key] = Stat(float("nan"), float("nan"), float("nan"), 0, len(results), extra)
    return out


def fmt(v: float) -> str:
    if v != v:  # nan
        return "n/a"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e4:
        return f"{v / 1e3:.0f}k"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.1f}"


def best_peer(
    stats: dict[tuple[str, str, str], Stat], kind: str, sc: str, impls: list[Impl], loop: str | None
) -> tuple[str, float]:
    best_name, best = "", float("nan")
    for impl in impls:
        if not impl.is_peer or (loop is not None and impl.loop != loop):
            continue
        st = stats.get((kind, sc, impl.name))
        if st is None or st.n == 0:
            continue
        if best != best or st.median > best:
            best_name, best = impl.name, st.median
    return best_name, best


def ratio_cell(num: Stat | None, best_name: str, best: float) -> str:
    if num is None or num.n == 0 or best != best or best <= 0:
        return "n/a"
    return f"**{num.median / best:.2f}** ({best_name})"


def value_table(
    stats: dict[tuple[str, str, str], Stat],
    kind: str,
    scs: list[dict[str, Any]],
    names: list[str],
    impl_by_name: dict[str, Impl],
    unit_suffix: str,
) -> list[str]:
    """One row per scenario: each implementation's median (min-max), then wsline's ratios."""
    wsl = [n for n in names if impl_by_name[n].is_wsline]
    head = (
        "| scenario | unit | "
        + " | ".join(names)
        + " | "
        + " | ".join(f"{w} / best peer | {w} / same loop" for w in wsl)
        + " |"
    )
    lines = [head, "|" + "---|" * (2 + len(names) + 2 * len(wsl))]
    impls = list(impl_by_name.values())
    for s in scs:
        cells = []
        for n in names:
            st = stats.get((kind, s["name"], n))
            if st is None or st.n == 0:
                cells.append("FAILED" if st is not None else "n/a")
            else:
                fail_note = f" ({st.failed} failed)" if st.failed else ""
                cells.append(f"{fmt(st.median)}<br><sub>{fmt(st.lo)}-{fmt(st.hi)}{fail_note}</sub>")
        ratios = []
        for w in wsl:
            any_name, any_best = best_peer(stats, kind, s["name"], impls, None)
            loop_name, loop_best = best_peer(stats, kind, s["name"], impls, impl_by_name[w].loop)
            st = stats.get((kind, s["name"], w))
            ratios += [ratio_cell(st, any_name, any_best), ratio_cell(st, loop_name, loop_best)]
        lines.append(
            f"| {s['name']} | {s['unit']}{unit_suffix} | "
            + " | ".join(cells)
            + " | "
            + " | ".join(ratios)
            + " |"
        )
    lines.append("")
    return lines


def git_note(meta: dict[str, Any]) -> str:
    start, end = meta.get("wsline_git_start"), meta.get("wsline_git", "?")
    if start and start != end:
        return f"git {start} at the start, {end} at the end: wsline changed during the run"
    return f"git {end}"


def render_markdown(data: dict[str, Any], stats: dict[tuple[str, str, str], Stat], plots: list[str]) -> str:
    meta = data["meta"]
    loads = [float(r["result"]["loadavg1"]) for r in data["runs"] if r["result"].get("loadavg1", -1) >= 0]
    impl_by_name = {
        i["name"]: Impl(**{k: (tuple(v) if k == "pyflags" else v) for k, v in i.items()})
        for i in data["impls"]
    }
    lines = [
        "# wsline against its peers",
        "",
        f"`python3 {meta['command']}` ({meta['mode']} mode): {meta['rounds']} rounds, "
        f"{meta['duration']} s measured after {meta['warmup']} s of warm-up per run; "
        f"{meta['elapsed_s'] / 60:.1f} min in all, {meta['date']}.",
        "",
        f"Python {meta['python']}, {meta.get('cpu_model', '?')}, {meta['cpus']} CPUs, {meta['platform']}; "
        f"wsline {meta['wsline']} ({git_note(meta)}), websockets {meta['websockets']}, "
        f"aiohttp {meta['aiohttp']}, picows {meta['picows']}, uvloop {meta['uvloop']}; "
        f"load average before/after: {meta['loadavg_before']} / {meta['loadavg_after']}"
        + (
            f"; 1-min load average after each run: median {statistics.median(loads):.2f}, "
            f"max {max(loads):.2f} "
            "(the suite itself accounts for about 1-2; more means other processes competed)."
            if loads
            else "."
        ),
        "",
        "Each cell: median over the rounds, (min-max) below it. Higher is better everywhere. "
        "**wsline / best peer**: wsline's median over the best median among websockets, aiohttp and "
        "picows on any loop; **same loop**: over the best peer on the same event loop as that "
        "wsline row (asyncio for `wsline`, uvloop for `wsline uvloop`). The C reference server is "
        "the load generator's ceiling, not a peer.",
        "",
    ]
    for kind, title in (
        ("server", "Servers (C load generator on CPU 1, server on CPU 0)"),
        ("client", "Clients (each client on CPU 1, C reference server on CPU 0)"),
    ):
        scs = data["scenarios"][kind]
        if not scs:
            continue
        names = [n for n in impl_by_name if any((kind, s["name"], n) in stats for s in scs)]
        lines += [f"## {title}", ""]
        lines += value_table(stats, kind, scs, names, impl_by_name, "")
        lines += [
            f"The same per CPU-second of the {'server' if kind == 'server' else 'client'} process "
            "(throughput / its CPU share): how much work each CPU-second buys. Less sensitive to other "
            "processes on the machine; meaningful where that side is the bottleneck (CPU share table below).",
            "",
        ]
        lines += value_table(stats, kind + "/cpu", scs, names, impl_by_name, " per CPU-s")
        # latency
        rtt = [s for s in scs if s["mode"] == "rtt"]
        for s in rtt:
            lines += [
                f"Round-trip latency, `{s['name']}` (µs, median over rounds of each run's percentile):",
                "",
                "| | " + " | ".join(names) + " |",
                "|---|" + "---|" * len(names),
            ]
            for fld, label in (("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")):
                row = []
                for n in names:
                    st = stats.get((kind, s["name"], n))
                    row.append(f"{st.extra[fld]:.0f}" if st is not None and fld in st.extra else "n/a")
                lines.append(f"| {label} | " + " | ".join(row) + " |")
            lines.append("")
        # CPU
        who = "load generator" if kind == "server" else "client"
        other = "server" if kind == "server" else ""
        lines += [
            f"CPU share during the measured interval (median over rounds; 100% = one core): "
            f"{who}" + (f" / {other}" if other else "") + ". A side near 100% was the bottleneck.",
            "",
            "| scenario | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
        ]
        for s in scs:
            row = []
            for n in names:
                st = stats.get((kind, s["name"], n))
                if st is None or "cpu_share" not in st.extra:
                    row.append("n/a")
                    continue
                cell = f"{st.extra['cpu_share'] * 100:.0f}%"
                if "server_cpu_share" in st.extra:
                    cell += f" / {st.extra['server_cpu_share'] * 100:.0f}%"
                row.append(cell)
            lines.append(f"| {s['name']} | " + " | ".join(row) + " |")
        lines.append("")
    lines += ["## Scenarios", ""]
    for kind in ("server", "client"):
        for s in data["scenarios"][kind]:
            lines.append(f"- `{s['name']}` ({s['unit']}): {s['title']}.")
    lines += ["", "## Notes", ""]
    for i in impl_by_name.values():
        if i.note:
            lines.append(f"- `{i.name}`: {i.note}.")
    failures = [r for r in data["runs"] if not r["result"].get("ok")]
    if failures:
        lines += ["", "Failed runs:", ""]
        for r in failures:
            lines.append(
                f"- {r['kind']} `{r['scenario']}` {r['impl']} round {r['round'] + 1}: "
                f"{r['result'].get('error')}"
            )
    if plots:
        lines += ["", "Plots: " + ", ".join(f"[{p}]({p})" for p in plots) + "."]
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any], stats: dict[tuple[str, str, str], Stat]) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is missing: no plots")
        return []
    impl_by_name = {i["name"]: i for i in data["impls"]}
    colors = {
        "wsline": "#d62728",
        "wsline-callbacks": "#ff7f0e",
        "wsline pure": "#f2a5a5",
        "websockets": "#1f77b4",
        "aiohttp": "#2ca02c",
        "picows": "#9467bd",
        "c": "#7f7f7f",
    }
    written = []
    for kind in ("server", "client", "server/cpu", "client/cpu"):
        scs = data["scenarios"][kind.split("/")[0]]
        if not scs:
            continue
        per_cpu = kind.endswith("/cpu")
        names = [n for n in impl_by_name if any((kind, s["name"], n) in stats for s in scs)]
        cols = min(3, len(scs))
        rows = (len(scs) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.9 * rows), squeeze=False)
        for ax, s in zip(list(axes.flat)[: len(scs)], scs, strict=True):
            meds, los, his, cs, hatches = [], [], [], [], []
            for n in names:
                st = stats.get((kind, s["name"], n))
                m = st.median if st is not None and st.n else 0.0
                meds.append(m)
                los.append(m - st.lo if st is not None and st.n else 0.0)
                his.append(st.hi - m if st is not None and st.n else 0.0)
                lib = impl_by_name[n]["library"]
                cs.append(colors.get(n, colors.get(lib, "#333333")))
                hatches.append("//" if impl_by_name[n]["loop"] == "uvloop" else "")
            x = range(len(names))
            bars = ax.bar(x, meds, yerr=[los, his], color=cs, capsize=3, edgecolor="black", linewidth=0.5)
            for bar, h in zip(bars, hatches, strict=True):
                bar.set_hatch(h)
            ax.set_xticks(list(x))
            ax.set_xticklabels(names, rotation=40, ha="right", fontsize=8)
            ax.set_title(f"{s['name']}: {s['unit']}" + (" per CPU-s" if per_cpu else ""), fontsize=10)
            ax.tick_params(axis="y", labelsize=8)
            ax.grid(axis="y", alpha=0.3)
            # The C reference can be 10-20 times the Python servers: clip it so
            # that the others stay readable, and print its value.
            others = [
                m + h for n, m, h in zip(names, meds, his, strict=True) if impl_by_name[n]["library"] != "c"
            ]
            top = 1.25 * max(others) if others and max(others) > 0 else 0.0
            clipped = top > 0 and any(
                m + h > 1.6 * top / 1.25
                for n, m, h in zip(names, meds, his, strict=True)
                if impl_by_name[n]["library"] == "c"
            )
            if clipped:
                ax.set_ylim(0, top)
            for i, m in enumerate(meds):
                if m <= 0:
                    continue
                off_scale = clipped and m + his[i] > top
                if off_scale:  # inside the clipped bar, reading upwards
                    ax.text(
                        i, top * 0.97, fmt(m) + " (off scale)", ha="center", va="top",
                        fontsize=7, rotation=90, color="white",
                    )  # fmt: skip
                    continue
                ax.annotate(
                    fmt(m),
                    (i, m + his[i]),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
            if not clipped:
                ax.margins(y=0.12)
        for ax in list(axes.flat)[len(scs) :]:
            ax.axis("off")
        side = kind.split("/")[0]
        what = f"per CPU-second of the {side} process" if per_cpu else "throughput"
        fig.suptitle(
            f"wsline vs peers, {side} side, {what} "
            f"(median; bars: min-max over {data['meta']['rounds']} rounds; "
            "hatched: uvloop)",
            fontsize=11,
        )
        fig.tight_layout()
        path = RESULTS / f"suite_{side}{'_per_cpu' if per_cpu else ''}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path.name)
    # latency percentiles of the round-trip scenarios
    rtts = [(k, s) for k in ("server", "client") for s in data["scenarios"][k] if s["mode"] == "rtt"]
    if rtts:
        fig, axes = plt.subplots(1, len(rtts), figsize=(7 * len(rtts), 4), squeeze=False)
        for ax, (kind, s) in zip(axes.flat, rtts, strict=True):
            names = [
                n for n in impl_by_name if (kind, s["name"], n) in stats and stats[(kind, s["name"], n)].n
            ]
            width = 0.27
            for j, (fld, label) in enumerate((("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9"))):
                vals = [stats[(kind, s["name"], n)].extra.get(fld, 0.0) for n in names]
                ax.bar([i + (j - 1) * width for i in range(len(names))], vals, width, label=label)
            ax.set_yscale("log")
            ax.set_xticks(list(range(len(names))))
            ax.set_xticklabels(names, rotation=40, ha="right", fontsize=8)
            ax.set_title(f"{s['name']} ({kind}): round-trip latency, µs (lower is better)", fontsize=10)
            ax.legend(fontsize=8)
            ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path = RESULTS / "suite_latency.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path.name)
    return written


def report(data: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "suite.json").write_text(json.dumps(data, indent=1) + "\n")
    stats = aggregate(data)
    plots = plot(data, stats)
    md = render_markdown(data, stats, plots)
    (RESULTS / "results.md").write_text(md)
    print(md)
    log(
        f"written: {RESULTS / 'results.md'}, {RESULTS / 'suite.json'}, "
        + ", ".join(str(RESULTS / p) for p in plots)
    )


# ------------------------------------------------------------------ profile


def profile(args: argparse.Namespace) -> None:
    """Profile wsline's server (asyncio) under one scenario (default: pipelined 32 B, 100 in flight)."""
    wanted = args.only or "pipe 100 bin"
    matches = [s for s in server_scenarios(args.fanout_conns) if wanted in s.name]
    if not matches:
        raise SystemExit(f"no scenario matches {wanted!r}")
    sc = matches[0]
    BUILD.mkdir(parents=True, exist_ok=True)
    out_lines = [f"# wsline server profile: `{sc.name}` ({sc.title})", ""]
    pyspy = shutil.which("py-spy", path=str(VENV / "bin")) or shutil.which("py-spy")
    duration = max(args.duration, 5.0)
    log_dir = BUILD / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    # 1. py-spy (sampling, low overhead) on an unmodified server process
    if pyspy:
        srv = ServerProc(SERVER_IMPLS[0], log_dir)
        raw = BUILD / "pyspy.txt"
        try:
            spy = subprocess.Popen(
                [
                    pyspy,
                    "record",
                    "--pid",
                    str(srv.pid),
                    "--format",
                    "raw",
                    "--rate",
                    "500",
                    "--duration",
                    str(int(duration + 3)),
                    "--output",
                    str(raw),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=lambda: os.sched_setaffinity(0, {LOADGEN_CPU}),
            )
            time.sleep(1.0)
            res = run_loadgen(sc, srv, duration, 1.0)
            spy.wait(60)
        finally:
            srv.stop()
        out_lines += [f"Rate while sampled by py-spy: {short(res, sc)}.", ""]
        if raw.exists():
            out_lines += pyspy_tables(raw.read_text())
        else:
            out_lines += ["py-spy wrote nothing: " + (spy.stderr.read().decode() if spy.stderr else "")]
    # 2. cProfile (deterministic: exact call counts, inflated times)
    prof = BUILD / "wsline-server.prof"
    impl = Impl("wsline cProfile", "wsline", "asyncio")
    log_path = log_dir / "server-cprofile.log"
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cProfile", "-o", str(prof), str(SERVERS_PY), "wsline", "asyncio"],
            stdout=subprocess.PIPE,
            stderr=logf,
            text=True,
            preexec_fn=lambda: os.sched_setaffinity(0, {SERVER_CPU}),
        )
    assert proc.stdout is not None
    port = int(proc.stdout.readline().split()[1])
    fake = ServerProc.__new__(ServerProc)
    fake.impl, fake.proc, fake.port, fake.log_path = impl, proc, port, log_path
    res = run_loadgen(sc, fake, duration, 1.0)
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    import io
    import pstats

    buf = io.StringIO()
    st = pstats.Stats(str(prof), stream=buf)
    st.sort_stats("tottime").print_stats(25)
    text = buf.getvalue()
    body = text[text.find("   ncalls") :] if "   ncalls" in text else text
    out_lines += [
        "## cProfile, top 25 by own time",
        "",
        f"Rate under cProfile (deterministic profiling slows it down): {short(res, sc)}.",
        "",
        "```",
        body.rstrip(),
        "```",
        "",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    slug = "".join(ch if ch.isalnum() else "_" for ch in sc.name).strip("_")
    path = RESULTS / (
        "profile_wsline_server.md" if sc.name == "pipe 100 bin" else f"profile_wsline_server_{slug}.md"
    )
    path.write_text("\n".join(out_lines) + "\n")
    print("\n".join(out_lines))
    log(f"written: {path}")


def _short_frame(frame: str) -> str:
    """``func (/long/path/pkg/mod.py:123)`` -> ``func (pkg/mod.py)``: lines merged per function."""
    name, sep, where = frame.partition(" (")
    if not sep:
        return frame
    path = where.rstrip(")").rsplit(":", 1)[0]
    pyver = f"/python{sys.version_info[0]}.{sys.version_info[1]}/"
    for cut in ("/site-packages/", pyver, str(ROOT) + "/src/", str(ROOT) + "/"):
        if cut in path:
            path = path.split(cut, 1)[1]
    return f"{name} ({path})"


def pyspy_tables(raw: str, top: int = 25) -> list[str]:
    """Own and inclusive sample counts per function from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        frames = [_short_frame(f) for f in stack.split(";")[1:] if f]  # [0] is the process
        if frames:
            own[frames[-1]] = own.get(frames[-1], 0) + count
        for f in set(frames):
            incl[f] = incl.get(f, 0) + count
    if not total:
        return ["py-spy collected no samples."]
    lines = [
        f"## py-spy, {total} samples (idle samples excluded)",
        "",
        "Own time (the function itself, not its callees):",
        "",
        "| % | function (file) |",
        "|---:|---|",
    ]
    for name, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"| {100 * n / total:.1f} | `{name}` |")
    lines += ["", "Inclusive time (with callees):", "", "| % | function (file) |", "|---:|---|"]
    for name, n in sorted(incl.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"| {100 * n / total:.1f} | `{name}` |")
    lines.append("")
    return lines


# ------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, 2 rounds (about 3 minutes)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--duration", type=float, default=None, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds per run")
    parser.add_argument("--fanout-conns", type=int, default=1000)
    parser.add_argument("--only", default="", help="only scenarios whose name contains this text")
    parser.add_argument("--impls", nargs="*", default=None, help='only these (e.g. "wsline" "picows uvloop")')
    parser.add_argument("--no-clients", action="store_true", help="skip the client benchmarks")
    parser.add_argument("--no-servers", action="store_true", help="skip the server benchmarks")
    parser.add_argument("--seed", type=int, default=None, help="shuffle seed (default: random)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile wsline's server instead (py-spy, cProfile), under the first scenario matching "
        "--only (default: pipe 100 bin)",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="re-render results.md and plots from suite.json"
    )
    parser.add_argument(
        "--results", type=Path, default=None, help="write results here (default: benchmarks/results)"
    )
    parser.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="also run the wsline in this src/ directory (another commit's checkout with its C "
        "extension built in place) as 'wsline base', 'wsline base uvloop', 'wsline base callbacks'",
    )
    args = parser.parse_args()
    if args.baseline_src is not None:
        global CLIENT_IMPLS
        SERVER_IMPLS[-1:-1] = baseline_impls(args.baseline_src.resolve())
        CLIENT_IMPLS = [i for i in SERVER_IMPLS if i.library not in ("c", "wsline-callbacks")]
    if args.results is not None:
        global RESULTS
        RESULTS = args.results.resolve()
    if args.rounds is None:
        args.rounds = 2 if args.quick else 3
    if args.duration is None:
        args.duration = 0.4 if args.quick else 1.5
    if args.warmup is None:
        args.warmup = 0.15 if args.quick else 0.5
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    if not sys.platform.startswith("linux"):
        raise SystemExit("the suite needs Linux (epoll, /proc, CPU affinity)")
    if not in_venv():
        bootstrap()  # does not return
    if args.report_only:
        report(json.loads((RESULTS / "suite.json").read_text()))
        return
    if len(os.sched_getaffinity(0)) < 2 or (os.cpu_count() or 1) < 2:
        raise SystemExit("the suite needs two CPUs (0: server, 1: load generator)")
    raise_fd_limit()
    build_loadgen()
    if args.profile:
        profile(args)
        return
    load = loadavg()
    if load and load[0] > 0.5:
        log(f"warning: load average {load[0]:.2f} before the run: other processes compete for the CPUs")
    data = run_suite(args)
    report(data)


if __name__ == "__main__":
    main()
