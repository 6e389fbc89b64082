#!/usr/bin/env bash
# The system packages `make test` needs that pip and npm do not bring, on Debian 12
# (bookworm). Called by `make sysdeps` (a prerequisite of `make test`); safe to run
# by hand. Each one is checked first; only the missing ones are installed:
#
#   gcc, libc6-dev   wsline's C extension, and Autobahn's Python 2 wheels built from sdists
#   python3-dev      Python.h of $PYTHON3 (the C extension; the compiled test run requires it)
#   python3-venv     `python3 -m venv` with pip, for .venv (Debian's python3 lacks it)
#   chromium         the browser tests: Playwright drives Debian's /usr/bin/chromium,
#                    never a downloaded browser
#   redis-server     the scale-out tests (each test starts its own on a free port)
#   npm              Node's ws for the interop tests
#   ca-certificates  HTTPS to PyPI for the Autobahn installer's Python 2 pip
#
# make itself is not in the list: it is what runs this (`apt-get install make` first,
# if a machine lacks it).
#
# As root: `apt-get update`, then `apt-get install -y --no-install-recommends` of the
# missing packages, retried (on a machine that has just booted, apt may be locked by a
# boot-time job). As another user: prints the one command to run as root and fails.
#
# Environment: PYTHON3 (the interpreter .venv is made from; default python3).
# Exit status: 0 everything present (or now installed); 1 something missing and not
# root, or apt failed; 3 a need apt cannot meet (a non-Debian $PYTHON3 without headers).
set -euo pipefail

PYTHON3="${PYTHON3:-python3}"
LOG="${TMPDIR:-/tmp}/wsline-sysdeps.log"
say() { echo "sysdeps: $*"; }
fail() { echo "sysdeps: error: $*" >&2; exit "${2:-1}"; }

command -v "$PYTHON3" >/dev/null || fail "$PYTHON3 not found (Python 3.10 or newer is needed)" 3
command -v apt-get >/dev/null || fail "apt-get not found: this script knows Debian's packages only" 3

# A need of $PYTHON3 that a Debian package meets only when it is Debian's own Python
# (sys.prefix /usr); any other Python (pyenv, a build of one's own) has to bring it.
python_need() {  # PACKAGE WHAT
    if "$PYTHON3" -c 'import sys; sys.exit(sys.prefix != "/usr")'; then
        missing+=("$1")
    else
        fail "$("$PYTHON3" -c 'import sys; print(sys.executable)') has no $2, and it is not Debian's python3: install it for that interpreter, or run make with PYTHON3=/usr/bin/python3" 3
    fi
}

check() {
    missing=()
    command -v gcc >/dev/null || missing+=(gcc)
    [ -e /usr/include/stdio.h ] || missing+=(libc6-dev)
    "$PYTHON3" -c 'import os, sys, sysconfig
sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
        || python_need python3-dev "Python.h (C headers)"
    "$PYTHON3" -c 'import ensurepip, venv' 2>/dev/null || python_need python3-venv "venv/ensurepip module"
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v npm >/dev/null || missing+=(npm)
    [ -s /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
}

check
if [ ${#missing[@]} -eq 0 ]; then
    say "all present (gcc, libc6-dev, Python headers and venv, chromium, redis-server, npm, ca-certificates)"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    {
        echo "sysdeps: error: missing system packages: ${missing[*]}"
        echo "sysdeps: make test cannot install them without root. Run this once, then make test again:"
        echo "    sudo sh -c 'apt-get update && apt-get install -y --no-install-recommends ${missing[*]}'"
    } >&2
    exit 1
fi

say "installing ${missing[*]} (apt-get, Debian's packages; log $LOG)"
export DEBIAN_FRONTEND=noninteractive
: > "$LOG"
attempts=6
for i in $(seq 1 $attempts); do
    # DPkg::Lock::Timeout waits for dpkg's lock (unattended-upgrades at boot); the
    # retry covers the lists lock of apt-get update and flaky mirrors.
    if { apt-get -q -o DPkg::Lock::Timeout=60 update \
         && apt-get -q -y -o DPkg::Lock::Timeout=60 install --no-install-recommends "${missing[@]}"; } \
         >> "$LOG" 2>&1; then
        break
    fi
    tail -n 15 "$LOG" >&2
    [ "$i" = $attempts ] && fail "apt-get install ${missing[*]} failed $attempts times (log $LOG)"
    say "apt-get failed (attempt $i of $attempts; apt locked or mirror unreachable?); retrying in $((i * 10)) s"
    sleep $((i * 10))
done

wanted=("${missing[@]}")
check
[ ${#missing[@]} -eq 0 ] || fail "still missing after installing ${wanted[*]}: ${missing[*]}"
say "installed ${wanted[*]}"
