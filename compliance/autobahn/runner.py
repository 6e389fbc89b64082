"""Run wstest (installed by install.sh) against a WebSocket server or client.

Server side, wstest as the client (the server under test must be listening)::

    python -m compliance.autobahn.runner fuzzingclient ws://127.0.0.1:9001 OUTDIR

Client side, wstest as the server on 127.0.0.1:PORT; the command after ``--`` is the
client under test, started once wstest listens, with ``AUTOBAHN_FUZZINGSERVER_URL`` set::

    python -m compliance.autobahn.runner fuzzingserver 9002 OUTDIR -- python -m compliance.client

Options: ``--cases 1.*,2.*`` (default all), ``--exclude 12.*,13.*``, ``--agent NAME``
(fuzzingclient: the name in the reports), ``--timeout SECONDS`` (the whole run, default
3600), ``--no-summary``. OUTDIR gets wstest's spec, reports (``index.json``,
``index.html``, one report per case) and log (``wstest.log``); use a fresh one per run.
Unless ``--no-summary``, the verdicts are then printed (``compliance.autobahn.summary``).

Exit status: 0 the run completed and every case is OK or INFORMATIONAL (with
``--no-summary``: the run completed); 1 some case is not, or there are no results; 2
usage; 3 wstest not installed, or the fuzzingserver did not start; 124 the run hit
``--timeout``; else the exit status of wstest or of the client command.
``WSLINE_AUTOBAHN_PREFIX`` says where install.sh put wstest (default /opt/wsline-py27).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from compliance.autobahn import summary

INSTALLER = Path(__file__).resolve().parent / "install.sh"
TIMED_OUT = 124
NOT_INSTALLED = 3


def wstest() -> Path:
    return Path(os.environ.get("WSLINE_AUTOBAHN_PREFIX") or "/opt/wsline-py27") / "bin" / "wstest"


def patterns(text: str) -> list[str]:
    """``"1.*, 2.1.1"`` -> ``["1.*", "2.1.1"]``."""
    return [p.strip() for p in text.split(",") if p.strip()]


def write_spec(outdir: Path, mode: str, spec: dict[str, object]) -> Path:
    path = outdir / f"{mode}.json"
    path.write_text(json.dumps(spec, indent=2) + "\n")
    return path


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def fuzzingclient(url: str, outdir: Path, cases: Sequence[str] = ("*",), exclude: Sequence[str] = (),
                  agent: str | None = None, timeout: float = 3600) -> int:
    """wstest tests the server at ``url``; returns wstest's exit status (124: timed out)."""
    server: dict[str, str] = {"url": url}
    if agent:
        server["agent"] = agent
    spec = write_spec(outdir, "fuzzingclient", {
        "outdir": str(outdir), "servers": [server], "cases": list(cases),
        "exclude-cases": list(exclude), "exclude-agent-cases": {},
    })
    print(f"== wstest fuzzingclient against {url}; reports in {outdir}", flush=True)
    start = time.monotonic()
    with (outdir / "wstest.log").open("wb") as log:
        # From OUTDIR: wstest drops files into its working directory.
        proc = subprocess.Popen([str(wstest()), "-m", "fuzzingclient", "-s", str(spec)],
                                cwd=outdir, stdout=log, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = TIMED_OUT
        finally:
            stop(proc)
    print(f"== wstest exited with status {rc} after {time.monotonic() - start:.1f} s", flush=True)
    return rc


def fuzzingserver(port: int, outdir: Path, client: Sequence[str], cases: Sequence[str] = ("*",),
                  exclude: Sequence[str] = (), timeout: float = 3600) -> int:
    """wstest serves on 127.0.0.1:``port`` while ``client`` runs; returns the client's exit status."""
    url = f"ws://127.0.0.1:{port}"
    spec = write_spec(outdir, "fuzzingserver", {
        "url": url, "outdir": str(outdir), "cases": list(cases),
        "exclude-cases": list(exclude), "exclude-agent-cases": {},
    })
    deadline = time.monotonic() + timeout
    startup_deadline = time.monotonic() + min(60.0, timeout)
    print(f"== wstest fuzzingserver on {url}; reports in {outdir}", flush=True)
    with (outdir / "wstest.log").open("wb") as log:
        # -u 0: no embedded web server (it would take port 8080).
        server = subprocess.Popen([str(wstest()), "-m", "fuzzingserver", "-s", str(spec), "-u", "0"],
                                  cwd=outdir, stdout=log, stderr=subprocess.STDOUT)
        try:
            while not listening(port):
                if server.poll() is not None or time.monotonic() > startup_deadline:
                    print(f"error: wstest fuzzingserver did not listen on {url} "
                          f"(status {server.poll()}); log {outdir / 'wstest.log'}:\n"
                          + (outdir / "wstest.log").read_text(errors="replace")[-3000:],
                          file=sys.stderr)
                    return NOT_INSTALLED
                time.sleep(0.1)
            print(f"== client: {' '.join(client)}", flush=True)
            start = time.monotonic()
            proc = subprocess.Popen(list(client), env={**os.environ, "AUTOBAHN_FUZZINGSERVER_URL": url})
            try:
                rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                rc = TIMED_OUT
            finally:
                stop(proc)
            print(f"== client exited with status {rc} after {time.monotonic() - start:.1f} s", flush=True)
        finally:
            stop(server)
    return rc


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    client: list[str] = []
    if "--" in argv:
        client = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    parser = argparse.ArgumentParser(prog="python -m compliance.autobahn.runner",
                                     usage="%(prog)s {fuzzingclient URL | fuzzingserver PORT} OUTDIR "
                                           "[options] [-- CLIENT COMMAND]")
    parser.add_argument("mode", choices=["fuzzingclient", "fuzzingserver"])
    parser.add_argument("target", help="fuzzingclient: the server's ws:// URL; fuzzingserver: the port")
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--cases", default="*")
    parser.add_argument("--exclude", default="")
    parser.add_argument("--agent")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--no-summary", action="store_true")
    args = parser.parse_args(argv)
    if args.mode == "fuzzingclient" and (client or not args.target.startswith(("ws://", "wss://"))):
        parser.error("fuzzingclient takes a ws:// or wss:// URL and no client command")
    if args.mode == "fuzzingserver" and (not client or not args.target.isdigit()):
        parser.error("fuzzingserver takes a port number and a client command after --")
    if not os.access(wstest(), os.X_OK):
        print(f"error: {wstest()} not found: run {INSTALLER} first "
              "(or set WSLINE_AUTOBAHN_PREFIX to where it installed wstest)", file=sys.stderr)
        return NOT_INSTALLED

    outdir = args.outdir.resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    cases, exclude = patterns(args.cases), patterns(args.exclude)
    if args.mode == "fuzzingclient":
        rc = fuzzingclient(args.target, outdir, cases, exclude, args.agent, args.timeout)
    else:
        rc = fuzzingserver(int(args.target), outdir, client, cases, exclude, args.timeout)
    if rc != 0:
        print(f"error: the run failed (status {rc}); log {outdir / 'wstest.log'}", file=sys.stderr)
        return rc
    if args.no_summary:
        return 0
    return summary.main([str(outdir)])


if __name__ == "__main__":
    sys.exit(main())
