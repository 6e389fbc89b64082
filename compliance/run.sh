#!/usr/bin/env bash
# Run one side of the Autobahn|Testsuite against wsline by hand.
#
# Usage: compliance/run.sh server|client [CASES]
#   server  start `python -m compliance.server PORT` (wsline.serve, echo) and
#           test it with wstest in fuzzingclient mode
#   client  start wstest in fuzzingserver mode and run `python -m compliance.client`
#           (wsline.connect) against it
#   CASES   comma-separated case patterns, default "*" (all 517 cases, ~10 min)
#
# Environment (optional):
#   AUTOBAHN_EXCLUDE     case patterns to leave out, e.g. "12.*,13.*" (no compression, ~20 s)
#   PYTHON               interpreter for the drivers (default .venv/bin/python, else python3)
#   PORT                 port of the echo server / of wstest (default 9001 / 9002)
#   OUTDIR               report folder (default .autobahn/manual/<side>; emptied first)
# wstest is installed first if needed (compliance/autobahn/install.sh; root, or
# WSLINE_AUTOBAHN_PREFIX and WSLINE_AUTOBAHN_CACHE set to folders of yours).
# Exit status: that of `python -m compliance.autobahn.runner` (0 = every case OK or
# INFORMATIONAL, 1 = some case not; see its docstring), or the installer's.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
usage() { sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
SIDE="$1"; CASES="${2:-*}"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$REPO/.venv/bin/python" ]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
cd "$REPO"
export PYTHONPATH="$REPO/src:$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
RUN=("$PYTHON" -m compliance.autobahn.runner)
OPTIONS=(--cases "$CASES" --exclude "${AUTOBAHN_EXCLUDE:-}")

PYTHON3="$PYTHON" bash "$REPO/compliance/autobahn/install.sh"

case "$SIDE" in
server)
    PORT="${PORT:-9001}"
    OUTDIR="${OUTDIR:-$REPO/.autobahn/manual/server}"
    rm -rf "$OUTDIR"; mkdir -p "$OUTDIR"
    "$PYTHON" -m compliance.server "$PORT" > "$OUTDIR/echo-server.log" 2>&1 &
    ECHO_PID=$!
    trap 'kill "$ECHO_PID" 2>/dev/null || true; wait "$ECHO_PID" 2>/dev/null || true' EXIT
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
        if ! kill -0 "$ECHO_PID" 2>/dev/null; then
            echo "error: compliance.server exited:" >&2; cat "$OUTDIR/echo-server.log" >&2; exit 3
        fi
        sleep 0.1
    done
    "${RUN[@]}" fuzzingclient "ws://127.0.0.1:$PORT" "$OUTDIR" --agent wsline "${OPTIONS[@]}"
    ;;
client)
    PORT="${PORT:-9002}"
    OUTDIR="${OUTDIR:-$REPO/.autobahn/manual/client}"
    rm -rf "$OUTDIR"; mkdir -p "$OUTDIR"
    "${RUN[@]}" fuzzingserver "$PORT" "$OUTDIR" "${OPTIONS[@]}" -- "$PYTHON" -m compliance.client
    ;;
*) usage ;;
esac
