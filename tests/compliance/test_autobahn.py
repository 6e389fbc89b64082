"""Autobahn|Testsuite conformance runs, server side and client side, from pytest.

The suite (wstest, Python 2.7) is installed by the repository's
``compliance/autobahn/install.sh`` (into /opt/wsline-py27, downloads cached in
/var/cache/wsline-autobahn; ``WSLINE_AUTOBAHN_PREFIX`` and ``WSLINE_AUTOBAHN_CACHE``
move them); this module calls it, then ``compliance.autobahn.runner``, and never
skips: a suite that cannot be installed is a failure.

Every side runs at the same time (one wstest process each):

* server side: each of :data:`SERVER_TARGETS` (``python -m compliance.server PORT``;
  a Starlette echo endpoint under uvicorn with wsline's ``--ws`` protocol) is tested by
  ``python -m compliance.autobahn.runner fuzzingclient ws://127.0.0.1:PORT OUTDIR``;
* client side: ``python -m compliance.autobahn.runner fuzzingserver PORT2 OUTDIR2 --
  python -m compliance.client``.

By default the compression groups 12.x/13.x are left out (301 cases, about
30 s); ``WSLINE_AUTOBAHN_FULL=1`` runs all 517 (about 10 min per side).
Reports and summaries go to ``<repo>/.autobahn/<selection>/`` (gitignored):
``server/`` and ``client/`` (wstest's index.html, per-case reports, logs) and
``{server,client}-summary.{txt,json}``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALLER = REPO / "compliance" / "autobahn" / "install.sh"
RESULTS = REPO / ".autobahn"

FULL = os.environ.get("WSLINE_AUTOBAHN_FULL", "") == "1"
SELECTION = "full" if FULL else "no-compression"
EXCLUDE = "" if FULL else "12.*,13.*"
# Cases in wstest 25.10.1 (compliance/autobahn/requirements-py27.txt): 517 in all, 301 without 12.x/13.x.
EXPECTED_CASES = 517 if FULL else 301
# Overall limits (seconds): the runner's (--timeout), then ours on top of it.
# Four full runs at once (three servers and the client) on two cores: up to ~25 min.
WSTEST_TIMEOUT = 2400 if FULL else 400
RUN_DEADLINE = WSTEST_TIMEOUT + 60

#: The servers that wstest's fuzzingclient tests ({port}: where it listens), each
#: under its own name (the side in the reports and the test id): one entry each.
SERVER_TARGETS: dict[str, list[str]] = {
    "server": [sys.executable, "-m", "compliance.server", "{port}"],
    # benchmarks/asgi_ws.py's Starlette echo under uvicorn, on wsline.asgi.uvicorn.
    "uvicorn": [sys.executable, "-m", "uvicorn", "asgi_ws:app", "--app-dir", str(REPO / "benchmarks"),
                "--port", "{port}", "--ws", "wsline.asgi.uvicorn:WebSocketProtocol",
                "--ws-max-size", str(2**26), "--ws-ping-interval", "0", "--no-access-log",
                "--log-level", "warning", "--lifespan", "off"],
    # The same Starlette echo on wsline's own ASGI server (python -m wsline asgi).
    "wsline-asgi": [sys.executable, "-m", "wsline", "asgi", "benchmarks.asgi_ws:app", "--port", "{port}",
                    "--ws-max-size", str(2**26), "--ws-ping-interval", "0", "--lifespan", "off"],
}

# Anything but these, in behavior or behaviorClose, fails the gate
# (FAILED, NON-STRICT, WRONG CODE, UNCLEAN, FAILED BY CLIENT, UNIMPLEMENTED, ...).
ACCEPTED = {"OK", "INFORMATIONAL"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def child_env() -> dict[str, str]:
    """Environment for the drivers: this interpreter's wsline from src/, compliance/ from the repo."""
    env = dict(os.environ)
    paths = [str(REPO / "src"), str(REPO)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env["AUTOBAHN_AGENT"] = "wsline"  # the agent compliance.client names
    env["PYTHON3"] = sys.executable  # a Python 3 with pip, for the installer's bootstrap wheels
    return env


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop a process started in its own session, and everything it started."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass
class SideResult:
    side: str  # "server" or "client"
    outdir: Path
    log: Path
    rc: int | None = None
    summary_text: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


@dataclass
class Runs:
    error: str | None = None
    sides: dict[str, SideResult] = field(default_factory=dict)


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def summarize(result: SideResult, out: Path) -> None:
    """compliance.autobahn.summary's report (printed and saved) plus our own reading of index.json."""
    json_file = out / f"{result.side}-summary.json"
    proc = subprocess.run(
        [sys.executable, "-m", "compliance.autobahn.summary", str(result.outdir),
         "--accept", ",".join(sorted(ACCEPTED)), "--json", str(json_file)],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    header = (
        f"Autobahn|Testsuite, wsline {result.side} side, {SELECTION} "
        f"(excluded: {EXCLUDE!r}), runner exit status {result.rc}\n"
    )
    result.summary_text = header + proc.stdout + proc.stderr
    (out / f"{result.side}-summary.txt").write_text(result.summary_text)
    if json_file.is_file():
        result.summary = json.loads(json_file.read_text())

    index = result.outdir / "index.json"
    if not index.is_file():
        result.problems.append(f"no {index}: wstest wrote no report; log {result.log}:\n{tail(result.log)}")
        return
    agents: dict[str, dict[str, dict[str, Any]]] = json.loads(index.read_text())
    if len(agents) != 1:
        result.problems.append(f"expected one agent in {index}, found {sorted(agents)}")
    for agent_cases in agents.values():
        result.cases.update(agent_cases)

    if len(result.cases) != EXPECTED_CASES:
        result.problems.append(f"{len(result.cases)} cases ran, expected {EXPECTED_CASES}")
    bad = [
        (case_id, info)
        for case_id, info in sorted(result.cases.items(), key=lambda kv: case_key(kv[0]))
        if info.get("behavior") not in ACCEPTED or info.get("behaviorClose") not in ACCEPTED
    ]
    if bad:
        lines = [
            f"  {case_id:<10} behavior={info.get('behavior')!s:<14} "
            f"behaviorClose={info.get('behaviorClose')!s:<14} remoteCloseCode={info.get('remoteCloseCode')}"
            for case_id, info in bad
        ]
        result.problems.append(
            f"{len(bad)} case(s) not OK/INFORMATIONAL (reports in {result.outdir}):\n" + "\n".join(lines)
        )
    if result.rc != 0:
        result.problems.append(
            f"the runner exited with status {result.rc}; log {result.log}:\n{tail(result.log)}"
        )
    if proc.returncode != 0:
        result.problems.append(f"compliance.autobahn.summary exited with {proc.returncode}:\n{proc.stderr}")


def case_key(case_id: str) -> list[tuple[int, int | str]]:
    return [(0, int(p)) if p.isdigit() else (1, p) for p in case_id.split(".")]


def run_both() -> Runs:
    runs = Runs()
    out = RESULTS / SELECTION
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)

    env = child_env()
    setup_log = out / "setup.log"
    with setup_log.open("wb") as f:
        setup = subprocess.run(["bash", str(INSTALLER)], env=env, stdout=f, stderr=subprocess.STDOUT,
                               timeout=900, check=False)
    if setup.returncode != 0:
        runs.error = (
            f"{INSTALLER.relative_to(REPO)} failed with status {setup.returncode} (it installs wstest "
            f"into /opt/wsline-py27 and, the first time, needs Debian's package archive and PyPI); "
            f"log {setup_log}:\n{tail(setup_log, 40)}"
        )
        return runs

    for side in [*SERVER_TARGETS, "client"]:
        runs.sides[side] = SideResult(side, out / side, out / f"{side}-run.log")
    client = runs.sides["client"]
    echoes: dict[str, subprocess.Popen[bytes]] = {}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = []
    try:
        ports: set[int] = set()
        while len(ports) < len(SERVER_TARGETS) + 1:
            ports.add(free_port())
        port2, *target_ports = ports
        runner = [sys.executable, "-m", "compliance.autobahn.runner"]
        options = ["--exclude", EXCLUDE, "--timeout", str(WSTEST_TIMEOUT), "--no-summary"]
        commands = {}
        for (side, target), port in zip(SERVER_TARGETS.items(), target_ports, strict=True):
            echo_log = (out / f"{side}-echo.log").open("wb")
            logs.append(echo_log)
            echoes[side] = echo = subprocess.Popen(
                [arg.replace("{port}", str(port)) for arg in target],
                cwd=REPO, env=env, stdout=echo_log, stderr=subprocess.STDOUT, start_new_session=True,
            )
            if not wait_listening(port, echo, timeout=30):
                runs.error = (
                    f"the {side} target did not listen on 127.0.0.1:{port} "
                    f"(exit status {echo.poll()}); log:\n{tail(out / f'{side}-echo.log')}"
                )
                return runs
            agent = "wsline" if side == "server" else f"wsline-{side}"
            commands[side] = [*runner, "fuzzingclient", f"ws://127.0.0.1:{port}",
                              str(runs.sides[side].outdir), "--agent", agent, *options]
        commands["client"] = [*runner, "fuzzingserver", str(port2), str(client.outdir), *options, "--",
                              sys.executable, "-m", "compliance.client"]
        for side, cmd in commands.items():
            log = runs.sides[side].log.open("wb")
            logs.append(log)
            procs[side] = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True)
        deadline = time.monotonic() + RUN_DEADLINE
        for side, proc in procs.items():
            try:
                runs.sides[side].rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                runs.sides[side].problems.append(f"still running after {RUN_DEADLINE} s; stopped")
    finally:
        for proc in procs.values():
            stop(proc)
        for echo in echoes.values():
            stop(echo)
        for log in logs:
            log.close()

    for side, echo in echoes.items():
        if echo.returncode not in (0, -signal.SIGTERM):
            runs.sides[side].problems.append(
                f"the {side} target exited with status {echo.returncode}; "
                f"log:\n{tail(out / f'{side}-echo.log')}"
            )
    for result in runs.sides.values():
        summarize(result, out)
    return runs


@pytest.fixture(scope="module")
def autobahn() -> Runs:
    return run_both()


def check(runs: Runs, side: str) -> None:
    if runs.error:
        pytest.fail(runs.error, pytrace=False)
    result = runs.sides[side]
    print(result.summary_text)
    if result.problems:
        pytest.fail(
            f"Autobahn {side} side ({SELECTION}): " + "\n".join(result.problems)
            + f"\nsummary: {RESULTS / SELECTION / (side + '-summary.txt')}",
            pytrace=False,
        )


@pytest.mark.timeout(RUN_DEADLINE + 300)
@pytest.mark.parametrize("side", list(SERVER_TARGETS))
def test_autobahn_server(autobahn: Runs, side: str) -> None:
    """wstest fuzzingclient against each of SERVER_TARGETS (compliance.server: wsline.serve)."""
    check(autobahn, side)


@pytest.mark.timeout(RUN_DEADLINE + 300)
def test_autobahn_client(autobahn: Runs) -> None:
    """compliance.client (wsline.connect) against wstest fuzzingserver."""
    check(autobahn, "client")
