"""Plain HTTP of an ASGI application: ``python -m wsline asgi`` against uvicorn (httptools, h11).

    .venv/bin/python benchmarks/asgi_http.py              # ~4 min: 3 rounds, 5 s per run
    .venv/bin/python benchmarks/asgi_http.py --quick      # ~1 min: 2 rounds, 2 s per run
    .venv/bin/python benchmarks/asgi_http.py --only "c=64" --rounds 5

The application is this module's ``app``: FastAPI's hello world (``GET /``
answers ``{"message": "Hello World"}``), the same for every server. The servers,
all on uvloop, access logs off, one process each:

* ``wsline asgi``: ``python -m wsline asgi asgi_http:app`` (wsline's own
  server: RequestParser, ResponseFramer, the ASGI request loop);
* ``uvicorn httptools``: ``uvicorn asgi_http:app --http httptools`` (what
  ``uvicorn[standard]`` runs by default);
* ``uvicorn h11``: ``uvicorn asgi_http:app --http h11`` (pure Python, like wsline).

The load generator is ``wrk`` (Debian's package: ``apt-get install wrk``; the
repository's C load generator speaks WebSocket only), one thread. Scenarios:
``c=1`` (one keep-alive connection, one request at a time: latency-bound),
``c=64`` (64 keep-alive connections), ``pipe 16`` (16 connections with 16
pipelined requests each, through a small wrk script), ``close c=16`` (16
connections, a new TCP connection per request: ``Connection: close``).

The method is ``run.py``'s: each server process pinned to CPU 0 and wrk to CPU 1
(``taskset``), the server's CPU time read from ``/proc`` around each run; every
round runs every scenario against every server, in shuffled order, after a
short warm-up; the report gives the median over the rounds (with min-max), the
server's CPU share, requests per CPU-second of the server (the number that
other load on the machine disturbs least) and wsline's ratio to each uvicorn
row. Results: ``results/asgi_http.md`` and the raw runs in
``results/asgi_http.json`` (``--results DIR`` writes elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
SERVER_CPU = 0
LOADGEN_CPU = 1


# ------------------------------------------------------------------ the application


def _make_app() -> Any:
    from fastapi import FastAPI

    api = FastAPI()

    @api.get("/")
    async def root() -> dict[str, str]:
        return {"message": "Hello World"}

    return api


def __getattr__(name: str) -> Any:
    # ``asgi_http:app`` builds the application on first use (importing this
    # module for its harness needs no FastAPI).
    if name == "app":
        value = _make_app()
        globals()["app"] = value
        return value
    raise AttributeError(name)


# ------------------------------------------------------------------ servers


def servers() -> dict[str, list[str]]:
    py = sys.executable
    uvicorn = [py, "-m", "uvicorn", "asgi_http:app", "--app-dir", str(HERE), "--port", "{port}",
               "--loop", "uvloop", "--no-access-log", "--log-level", "warning", "--lifespan", "off",
               "--backlog", "2048"]
    return {
        "wsline asgi": [py, "-m", "wsline", "asgi", "asgi_http:app", "--port", "{port}", "--lifespan", "off",
                        "--keep-alive-timeout", "60"],
        "uvicorn httptools": [*uvicorn, "--http", "httptools", "--timeout-keep-alive", "60"],
        "uvicorn h11": [*uvicorn, "--http", "h11", "--timeout-keep-alive", "60"],
    }


#: name: (connections, pipeline depth, extra wrk arguments)
SCENARIOS: dict[str, tuple[int, int, list[str]]] = {
    "c=1": (1, 1, []),
    "c=64": (64, 1, []),
    "pipe 16": (16, 16, []),
    "close c=16": (16, 1, ["-H", "Connection: close"]),
}

PIPELINE_LUA = """
local depth = tonumber(os.getenv("WRK_DEPTH") or "16")
init = function(args)
  local r = {}
  for i = 1, depth do r[i] = wrk.format(nil, "/") end
  req = table.concat(r)
end
request = function() return req end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


class Server:
    def __init__(self, name: str, command: list[str], env: dict[str, str], logdir: Path) -> None:
        self.name = name
        self.port = free_port()
        cmd = [c.replace("{port}", str(self.port)) for c in command]
        self.log = (logdir / (re.sub(r"\W+", "_", name) + ".log")).open("wb")
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(SERVER_CPU), *cmd], cwd=HERE, env=env, stdout=self.log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_listening(self.port, self.proc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    match = re.search(r"Requests/sec:\s+([\d.]+)", text)
    out["rps"] = float(match.group(1)) if match else 0.0
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        out[f"p{pct}_ms"] = float(m.group(1)) * _UNITS[m.group(2)] if m else None
    m = re.search(r"(\d+) requests in", text)
    out["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    out["socket_errors"] = sum(map(int, m.groups())) if m else 0
    return out


def run_wrk(server: Server, scenario: str, duration: float, lua: Path) -> dict[str, Any]:
    conns, depth, extra = SCENARIOS[scenario]
    cmd = ["taskset", "-c", str(LOADGEN_CPU), "wrk", "-t1", f"-c{conns}", f"-d{max(1, round(duration))}s",
           "--latency", "--timeout", "5s", *extra]
    env = dict(os.environ)
    if depth > 1:
        cmd += ["-s", str(lua)]
        env["WRK_DEPTH"] = str(depth)
    cmd.append(f"http://127.0.0.1:{server.port}/")
    before = cpu_seconds(server.proc.pid)
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 30)
    elapsed = time.monotonic() - start
    used = cpu_seconds(server.proc.pid) - before
    result = parse_wrk(proc.stdout)
    result.update(
        server=server.name,
        scenario=scenario,
        server_cpu=used / elapsed,
        rps_per_cpu=(result["requests"] / used) if used > 0 else 0.0,
        wrk_rc=proc.returncode,
    )
    if proc.returncode != 0 or not result["rps"]:
        result["error"] = (proc.stdout + proc.stderr)[-500:]
    return result


# ------------------------------------------------------------------ report


def _fmt(values: list[float], digits: int = 0) -> str:
    if not values:
        return ""
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:,.{digits}f}"
    return f"{med:,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def report(runs: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    names = list(dict.fromkeys(r["server"] for r in runs))
    scenarios = [s for s in SCENARIOS if any(r["scenario"] == s for r in runs)]

    def vals(server: str, scenario: str, key: str) -> list[float]:
        return [r[key] for r in runs if r["server"] == server and r["scenario"] == scenario and r.get(key)]

    lines = [
        "# ASGI HTTP: FastAPI hello world, `python -m wsline asgi` against uvicorn",
        "",
        f"Generated by `benchmarks/asgi_http.py` on {meta['date']}: {meta['rounds']} rounds of "
        f"{meta['duration']} s per run (median, min-max); wsline {meta['wsline']} ({meta['commit']}), "
        f"uvicorn {meta['uvicorn']}, FastAPI {meta['fastapi']}, Starlette {meta['starlette']}, "
        f"httptools {meta['httptools']}, h11 {meta['h11']}, uvloop {meta['uvloop']}, "
        f"Python {meta['python']}, "
        f"wrk {meta['wrk']}; {meta['cpus']} CPUs, server pinned to CPU {SERVER_CPU}, wrk (1 thread) to CPU "
        f"{LOADGEN_CPU}; load average before: {meta['loadavg']}.",
        "",
        "## Requests per second",
        "",
        "| scenario | " + " | ".join(names) + " | wsline / httptools | wsline / h11 |",
        "|---|" + "---:|" * (len(names) + 2),
    ]
    for sc in scenarios:
        row = [sc] + [_fmt(vals(n, sc, "rps")) for n in names]
        w = statistics.median(vals("wsline asgi", sc, "rps") or [0])
        for peer in ("uvicorn httptools", "uvicorn h11"):
            p = statistics.median(vals(peer, sc, "rps") or [0])
            row.append(f"{w / p:.2f}" if p else "")
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "## Requests per CPU-second of the server (server CPU share)",
        "",
        "| scenario | " + " | ".join(names) + " | wsline / httptools | wsline / h11 |",
        "|---|" + "---:|" * (len(names) + 2),
    ]
    for sc in scenarios:
        row = [sc]
        for n in names:
            cpu = statistics.median(vals(n, sc, "server_cpu") or [0])
            row.append(f"{_fmt(vals(n, sc, 'rps_per_cpu'))} ({cpu:.0%})")
        w = statistics.median(vals("wsline asgi", sc, "rps_per_cpu") or [0])
        for peer in ("uvicorn httptools", "uvicorn h11"):
            p = statistics.median(vals(peer, sc, "rps_per_cpu") or [0])
            row.append(f"{w / p:.2f}" if p else "")
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "## Latency, ms (p50 / p99, wrk)",
        "",
        "| scenario | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for sc in scenarios:
        if SCENARIOS[sc][1] > 1:
            continue  # wrk does not time pipelined requests one by one
        row = [sc]
        for n in names:
            p50, p99 = vals(n, sc, "p50_ms"), vals(n, sc, "p99_ms")
            row.append(
                f"{statistics.median(p50):.2f} / {statistics.median(p99):.2f}" if p50 and p99 else "n/a"
            )
        lines.append("| " + " | ".join(row) + " |")
    bad = [r for r in runs if r.get("error") or r.get("non_2xx") or r.get("socket_errors")]
    lines += ["", "Errors: " + (", ".join(
        f"{r['server']} {r['scenario']}: non-2xx {r.get('non_2xx')}, socket errors {r.get('socket_errors')}"
        + (" (wrk failed)" if r.get("error") else "") for r in bad) or "none") + "."]
    lines += [
        "",
        "Scenarios: `c=1` one keep-alive connection, one request at a time; `c=64` 64 keep-alive "
        "connections; `pipe 16` 16 connections with 16 pipelined requests each (a wrk script); "
        "`close c=16` 16 connections, `Connection: close` (a new TCP connection per request). The "
        "server's CPU share is its CPU time over the run's duration: near 100 % the server was the "
        "bottleneck; well below, other processes on the machine took CPU 0 from it (then the rates "
        "fall and the per-CPU-second figures are the ones to compare). No latency for `pipe 16`: wrk "
        "does not time pipelined requests one by one.",
        "",
    ]
    return "\n".join(lines)


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - a report detail
        return "?"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s runs")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--duration", type=float)
    parser.add_argument("--only", nargs="*", help="scenario names (or prefixes)")
    parser.add_argument("--servers", nargs="*", help="server names (or prefixes)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 1
    if (os.cpu_count() or 1) < 2:
        print("needs 2 CPUs (server and load generator pinned apart)", file=sys.stderr)
        return 1
    rounds = args.rounds or (2 if args.quick else 3)
    duration = args.duration or (2.0 if args.quick else 5.0)
    scenarios = [s for s in SCENARIOS if not args.only or any(s.startswith(o) for o in args.only)]
    chosen = {
        n: c for n, c in servers().items() if not args.servers or any(n.startswith(s) for s in args.servers)
    }
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(HERE), env.get("PYTHONPATH", "")])
    env["WSLINE_LOOP"] = "uvloop"
    logdir = Path(tempfile.mkdtemp(prefix="asgi_http_"))
    lua = logdir / "pipeline.lua"
    lua.write_text(PIPELINE_LUA)
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split(" [")[0]
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rounds": rounds,
        "duration": duration,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "wrk": wrk_version.replace("wrk ", "") or "?",
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                 text=True).stdout.strip(),
        **{m: _version(m) for m in ("wsline", "uvicorn", "fastapi", "starlette", "httptools", "h11")},
        "uvloop": _version("uvloop"),
    }
    runs: list[dict[str, Any]] = []
    started = {name: Server(name, cmd, env, logdir) for name, cmd in chosen.items()}
    try:
        for server in started.values():  # warm-up
            run_wrk(server, "c=64", 1.0, lua)
        for rnd in range(rounds):
            plan = [(sc, name) for sc in scenarios for name in started]
            random.shuffle(plan)
            for sc, name in plan:
                result = run_wrk(started[name], sc, duration, lua)
                result["round"] = rnd
                runs.append(result)
                print(f"round {rnd + 1}/{rounds} {sc:<11} {name:<18} {result['rps']:>10,.0f} req/s "
                      f"server CPU {result['server_cpu']:.0%}", flush=True)
                time.sleep(0.5)
    finally:
        for server in started.values():
            server.stop()
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "asgi_http.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    text = report(runs, meta)
    (args.results / "asgi_http.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
