"""A/B of wsline's server between two source trees, by server CPU time and page faults per message.

    benchmarks/.venv/bin/python benchmarks/ab.py --a /tmp/wsline-head/src --b src \\
        --impl wsline-callbacks --loop asyncio --mode bulk --size 1048576 --window 2 --discard

Wall-clock rates on a shared 2-core machine move with whatever else runs; the
server's CPU time per message and its minor page faults per message move far
less. Each round starts the A and the B server (``suite_servers.py``, pinned
to CPU 0, ``PYTHONPATH`` set to the tree), drives each with the load generator
(pinned to CPU 1) in alternating order, and reads the server's utime+stime and
minflt from ``/proc/PID/stat`` around the measured run. The report: medians
over the rounds of messages/s, server CPU-µs per message, and minor faults per
message. Needs ``benchmarks/.build/loadgen`` (``run.py`` builds it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LOADGEN = HERE / ".build" / "loadgen"
SERVERS_PY = HERE / "suite_servers.py"
HZ = os.sysconf("SC_CLK_TCK")


def proc_stat(pid: int) -> tuple[float, int]:
    """(CPU seconds, minor faults) of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ, int(fields[7])


class Server:
    def __init__(self, src: str, impl: str, loop: str, env_extra: dict[str, str]) -> None:
        env = {**os.environ, "PYTHONPATH": str(Path(src).resolve()), **env_extra}
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVERS_PY), impl, loop, "--cpu", "0"],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            raise SystemExit(f"server from {src} did not start")
        self.port = int(line.split()[1])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


def run(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        str(LOADGEN),
        args.mode,
        "--port",
        str(server.port),
        "--size",
        str(args.size),
        "--window",
        str(args.window),
        "--conns",
        str(args.conns),
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
        "--cpu",
        "1",
        "--watch-pid",
        str(server.proc.pid),
    ]
    if args.discard:
        cmd.append("--discard")
    if args.text:
        cmd.append("--text")
    # Warm-up is inside the loadgen run: sample the server around the whole
    # run and scale by the measured share (warm-up messages are not counted
    # by the loadgen, so count them from the rate).
    cpu0, flt0 = proc_stat(server.proc.pid)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + args.warmup + 60)
    wall = time.perf_counter() - t0
    cpu1, flt1 = proc_stat(server.proc.pid)
    res: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if not res.get("ok"):
        raise SystemExit(f"load generator failed: {res.get('error')}")
    # messages over the whole run (warm-up included), estimated from the rate
    msgs = res["rate"] * (args.duration + args.warmup)
    # CPU from the loadgen's --watch-pid (measured interval only); faults over the whole run
    res["cpu_us_per_msg"] = res["server_cpu_share"] * 1e6 / res["rate"] if res["rate"] else float("nan")
    res["cpu_us_per_msg_run"] = (cpu1 - cpu0) * 1e6 / msgs
    res["faults_per_msg"] = (flt1 - flt0) / msgs
    res["wall"] = wall
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a", required=True, help="src directory of A")
    p.add_argument("--b", required=True, help="src directory of B")
    p.add_argument("--impl", default="wsline", help="suite_servers.py library (wsline, wsline-callbacks)")
    p.add_argument("--loop", default="asyncio")
    p.add_argument("--mode", default="bulk")
    p.add_argument("--size", type=int, default=1 << 20)
    p.add_argument("--window", type=int, default=2)
    p.add_argument("--conns", type=int, default=1)
    p.add_argument("--discard", action="store_true")
    p.add_argument("--text", action="store_true")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=float, default=1.0)
    p.add_argument("--warmup", type=float, default=0.3)
    p.add_argument("--pure", action="store_true", help="WSLINE_NO_EXTENSIONS=1 on both")
    args = p.parse_args()
    extra = {"WSLINE_NO_EXTENSIONS": "1"} if args.pure else {}
    servers = {name: Server(src, args.impl, args.loop, extra) for name, src in (("A", args.a), ("B", args.b))}
    rows: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    try:
        for rnd in range(args.rounds):
            for name in ("AB" if rnd % 2 == 0 else "BA"):
                rows[name].append(run(servers[name], args))
    finally:
        for s in servers.values():
            s.stop()
    print(f"{args.impl} {args.loop} {args.mode} size {args.size} window {args.window}"
          f"{' discard' if args.discard else ''}, {args.rounds} rounds (medians)")
    for name, src in (("A", args.a), ("B", args.b)):
        r = rows[name]
        rate = statistics.median(x["rate"] for x in r)
        cpu = statistics.median(x["cpu_us_per_msg"] for x in r)
        flt = statistics.median(x["faults_per_msg"] for x in r)
        share = statistics.median(x.get("cpu_share", 0) for x in r)
        print(f"  {name} {src:32} {rate:12,.0f} msg/s  {cpu:9.1f} server CPU-us/msg  "
              f"{flt:8.1f} faults/msg  loadgen cpu {share * 100:3.0f}%")
    a = statistics.median(x["cpu_us_per_msg"] for x in rows["A"])
    b = statistics.median(x["cpu_us_per_msg"] for x in rows["B"])
    print(f"  B/A server CPU per message: {b / a:.3f}")


if __name__ == "__main__":
    main()
