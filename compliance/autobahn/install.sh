#!/usr/bin/env bash
# Installs Autobahn|Testsuite's wstest for wsline's compliance tests, on Debian 12.
#
# wstest runs on Python 2.7 only, and Debian 12 has none. So:
#   - Debian 11 (bullseye) builds of python2.7 are downloaded with apt-get, through an
#     apt set-up of this script's own under $CACHE/apt (sources, lists, cache); the
#     system's apt configuration and package database are not touched;
#   - those .debs, and the bullseye libraries they depend on that this system lacks
#     (libssl1.1, libffi7, ...), are unpacked with dpkg-deb into $PREFIX/debian;
#     nothing is registered with dpkg;
#   - pip 20.3.4, setuptools 44.0.0 (what autobahntestsuite pins) and wheel 0.37.1
#     (the last with Python 2 support) are downloaded by a Python 3 pip, and that pip 20.3.4 then installs
#     requirements-py27.txt into the prefix, compiling the few sdists;
#   - $PREFIX/bin/python2.7 and $PREFIX/bin/wstest are small wrappers that point the
#     dynamic linker at the private libraries (wstest's listening modes bound to
#     127.0.0.1 by wstest_loopback.py).
# Every .deb and wheel stays in $CACHE: a later install (after --force, or into another
# prefix) needs no network. A run that finds the install complete and working checks it
# and exits within about a second.
#
# Usage: compliance/autobahn/install.sh [--force] [--offline] [--check]
#   --force    remove $PREFIX and install again (from the cache where possible)
#   --offline  never use the network: everything must be in $CACHE already
#   --check    only say whether the install is complete (exit 0) or not (exit 1)
#
# Environment (all optional):
#   WSLINE_AUTOBAHN_PREFIX   install prefix (default /opt/wsline-py27)
#   WSLINE_AUTOBAHN_CACHE    download cache (default /var/cache/wsline-autobahn)
#   WSLINE_AUTOBAHN_OFFLINE  1: as --offline
#   WSLINE_AUTOBAHN_MIRROR   Debian mirror for bullseye (default: the one this system's
#                            apt sources use; deb.debian.org when none is found)
#   WSLINE_AUTOBAHN_SECURITY_MIRROR  likewise for bullseye-security
#   PYTHON3                  a Python 3 with pip, for the Python 2 bootstrap wheels
#                            (default python3, else the repository's .venv/bin/python)
#
# Exit status: 0 installed and working; 1 the install failed (download, build or check;
# the message says which step); 2 usage; 3 a prerequisite is missing (a tool, write
# access to the prefix or cache, a mirror). Needs root only for the default paths.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PREFIX="${WSLINE_AUTOBAHN_PREFIX:-/opt/wsline-py27}"
CACHE="${WSLINE_AUTOBAHN_CACHE:-/var/cache/wsline-autobahn}"
OFFLINE="${WSLINE_AUTOBAHN_OFFLINE:-0}"
REQUIREMENTS="$HERE/requirements-py27.txt"
LAUNCHER="$HERE/wstest_loopback.py"
WSTEST_VERSION=25.10.1
BOOT_WHEELS=(pip==20.3.4 setuptools==44.0.0 wheel==0.37.1)
# The Debian 11 packages of Python 2.7 itself; the libraries they need come with them
# (see resolve_debs).
PY_DEBS=(python2.7 python2.7-minimal libpython2.7 libpython2.7-minimal libpython2.7-stdlib
         libpython2.7-dev)
# What must import for wstest to work (ssl and the C accelerators included).
IMPORT_CHECK='import ssl, zlib, ctypes, hashlib, wsaccel, ujson, OpenSSL, twisted, autobahn, autobahntestsuite.fuzzing'
# Bump when the layout of the prefix changes, so that older installs are redone.
LAYOUT=1

ROOT="$PREFIX/debian"          # the unpacked .debs
PY2="$PREFIX/bin/python2.7"    # wrapper
MARKER="$PREFIX/.wsline-autobahn"

say() { echo "autobahn install: $*"; }
fail() { echo "autobahn install: error: $1" >&2; exit "${2:-1}"; }
usage() { sed -n '2,38p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit "${1:-2}"; }

FORCE=0 CHECK_ONLY=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        --offline) OFFLINE=1 ;;
        --check) CHECK_ONLY=1 ;;
        -h|--help) usage 0 ;;
        *) echo "autobahn install: unknown argument: $arg" >&2; usage ;;
    esac
done

case "$PREFIX" in
    /*/*) ;;
    *) fail "WSLINE_AUTOBAHN_PREFIX must be an absolute path at least two levels deep (got '$PREFIX'): the install removes it when it redoes it" 2 ;;
esac
case "$CACHE" in /*) ;; *) fail "WSLINE_AUTOBAHN_CACHE must be an absolute path (got '$CACHE')" 2 ;; esac

# What an install is made from: when any of it changes, the install is redone.
fingerprint() {
    {
        echo "layout $LAYOUT wstest $WSTEST_VERSION ${BOOT_WHEELS[*]} ${PY_DEBS[*]}"
        cat "$REQUIREMENTS"
    } | sha256sum | cut -d' ' -f1
}

installed_ok() {
    [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$(fingerprint)" ] && [ -x "$PREFIX/bin/wstest" ] \
        && "$PY2" -c "$IMPORT_CHECK" 2>/dev/null || return 1
    # The launcher is the repository's: keep the installed copy up to date.
    cmp -s "$LAUNCHER" "$PREFIX/bin/wstest_loopback.py" || [ "$CHECK_ONLY" = 1 ] \
        || cp "$LAUNCHER" "$PREFIX/bin/wstest_loopback.py"
}

if [ "$FORCE" = 0 ] && installed_ok; then
    say "wstest $WSTEST_VERSION is installed and working: $PREFIX/bin/wstest"
    exit 0
fi
if [ "$CHECK_ONLY" = 1 ]; then
    say "not installed (or incomplete, or made from other pins) in $PREFIX"
    exit 1
fi

# ------------------------------------------------------------------ prerequisites
for tool in apt-get dpkg-deb dpkg-query gcc flock sha256sum; do
    command -v "$tool" >/dev/null || fail "$tool not found (Debian 12 is assumed; make sysdeps installs gcc)" 3
done
[ -e /usr/include/stdio.h ] || fail "no C library headers (/usr/include/stdio.h): apt-get install libc6-dev" 3
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$KEYRING" ] || fail "$KEYRING not found: apt-get install debian-archive-keyring" 3
for dir in "$CACHE" "$(dirname "$PREFIX")"; do
    mkdir -p "$dir" 2>/dev/null && [ -w "$dir" ] \
        || fail "cannot write to $dir: run as root, or set WSLINE_AUTOBAHN_PREFIX and WSLINE_AUTOBAHN_CACHE to folders of yours" 3
done
mkdir -p "$CACHE/debs" "$CACHE/wheels"

# One install at a time (two test runs may start together); the second one then finds
# the first one's work done.
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
    say "another install holds $CACHE/.lock; waiting for it"
    flock 9
fi
if [ "$FORCE" = 0 ] && installed_ok; then
    say "wstest $WSTEST_VERSION is installed and working: $PREFIX/bin/wstest"
    exit 0
fi

if [ -e "$PREFIX" ]; then
    # Only ever remove a prefix this script made (or an empty one).
    if [ -e "$MARKER" ] || [ -e "$PREFIX/.wsline-autobahn-prefix" ] || [ -z "$(ls -A "$PREFIX")" ]; then
        say "removing the previous install in $PREFIX"
        rm -rf "$PREFIX"
    else
        fail "$PREFIX exists and was not made by this script; remove it or choose another WSLINE_AUTOBAHN_PREFIX" 3
    fi
fi
mkdir -p "$ROOT" "$PREFIX/bin"
touch "$PREFIX/.wsline-autobahn-prefix"

network() {  # WHAT: fail when offline
    [ "$OFFLINE" = 1 ] && fail "$1 is not in the cache $CACHE, and the network may not be used (--offline / WSLINE_AUTOBAHN_OFFLINE=1)"
    return 0
}

# ------------------------------------------------------------------ Debian 11 packages
ARCH="$(dpkg --print-architecture)"
MULTIARCH="$(gcc -print-multiarch)"
[ -n "$MULTIARCH" ] || fail "gcc -print-multiarch printed nothing" 3

# The mirrors this system's apt uses (one-line and deb822 sources).
system_mirror() {  # PATTERN (a regular expression the URL must end with)
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && sed -nE 's/^[[:space:]]*(deb[[:space:]]+(\[[^]]*\][[:space:]]+)?|URIs:[[:space:]]*)//p' "$f"
    done | tr ' ' '\n' | grep -E "^(https?|file)://.*$1/?\$" | head -1 || true
}

APT_DIR="$CACHE/apt"
apt_private() {  # apt-get with this script's own sources, lists and cache
    apt-get -q \
        -o Dir::Etc::SourceList="$APT_DIR/bullseye.sources" -o Dir::Etc::SourceParts="$APT_DIR/empty" \
        -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts="$APT_DIR/empty" \
        -o Dir::State="$APT_DIR/state" -o Dir::State::status=/dev/null -o Dir::Cache="$APT_DIR/cache" \
        -o APT::Architecture="$ARCH" -o APT::Architectures="$ARCH" \
        -o APT::Sandbox::User="$(id -un)" -o Acquire::Languages=none \
        -o Acquire::Check-Valid-Until=false -o Acquire::Retries=3 "$@"
}

apt_updated=0
apt_update() {
    [ "$apt_updated" = 1 ] && return 0
    local mirror security suites
    mirror="${WSLINE_AUTOBAHN_MIRROR:-$(system_mirror '/debian')}"
    mirror="${mirror:-http://deb.debian.org/debian}"
    security="${WSLINE_AUTOBAHN_SECURITY_MIRROR:-$(system_mirror '/debian-security')}"
    security="${security:-${mirror%/debian}/debian-security}"
    mkdir -p "$APT_DIR/empty" "$APT_DIR/state/lists/partial" "$APT_DIR/cache/archives/partial"
    # With the point-release and security suites first; bullseye alone if those are gone
    # from the mirror.
    for suites in "bullseye bullseye-updates|bullseye-security" "bullseye|"; do
        {
            printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' \
                "$mirror" "${suites%|*}" "$KEYRING"
            if [ -n "${suites#*|}" ]; then
                printf '\nTypes: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' \
                    "$security" "${suites#*|}" "$KEYRING"
            fi
        } > "$APT_DIR/bullseye.sources"
        say "apt-get update of Debian 11 ($(echo "${suites/|/ }" | xargs)) from $mirror"
        if apt_private update > "$APT_DIR/update.log" 2>&1 && ! grep -qE '^(E: |Err:|W: Failed to fetch)' "$APT_DIR/update.log"; then
            apt_updated=1
            return 0
        fi
        sed 's/^/    /' "$APT_DIR/update.log" | tail -6 >&2
    done
    fail "apt-get update of Debian 11 from $mirror failed (set WSLINE_AUTOBAHN_MIRROR to a mirror that still has bullseye)" 3
}

cached_deb() {  # PACKAGE: the newest cached .deb of it, or nothing
    compgen -G "$CACHE/debs/${1}_*_*.deb" | sort -V | tail -1 || true
}

fetch_debs() {  # PACKAGE...: download those not cached yet
    local pkg want=() i
    for pkg in "$@"; do [ -n "$(cached_deb "$pkg")" ] || want+=("$pkg"); done
    [ ${#want[@]} -eq 0 ] && return 0
    network "Debian 11 packages ${want[*]}"
    apt_update
    say "downloading ${want[*]}"
    for i in 1 2 3; do
        (cd "$CACHE/debs" && apt_private download "${want[@]}") && return 0
        sleep $((i * 5))
    done
    fail "apt-get download ${want[*]} failed three times"
}

host_has() {  # PACKAGE: installed on this system (any architecture)?
    dpkg-query -W -f='${db:Status-Status}\n' "$1" 2>/dev/null | grep -qx installed
}

# The packages to unpack: PY_DEBS and, recursively, the libraries they depend on that
# this system has not installed (bookworm has e.g. libssl3 and libffi8, not libssl1.1
# and libffi7). Read from the cached .debs' control fields, so it works offline.
resolve_debs() {
    local queue=("${PY_DEBS[@]}") pkg dep alt deps
    declare -gA UNPACK=()
    while [ ${#queue[@]} -gt 0 ]; do
        fetch_debs "${queue[@]}"
        local next=()
        for pkg in "${queue[@]}"; do
            UNPACK[$pkg]=1
            deps="$(dpkg-deb -f "$(cached_deb "$pkg")" Pre-Depends Depends | sed 's/^[A-Za-z-]*: //' | tr '\n' ',')"
            IFS=',' read -r -a alts <<< "$deps"
            for dep in "${alts[@]}"; do
                # "a (>= 1) | b" -> the first alternative, unless any is installed
                local first="" satisfied=0
                IFS='|' read -r -a choices <<< "$dep"
                for alt in "${choices[@]}"; do
                    alt="$(echo "$alt" | sed -E 's/\(.*\)//; s/:any//; s/[[:space:]]//g')"
                    [ -n "$alt" ] || continue
                    [ -n "$first" ] || first="$alt"
                    if host_has "$alt"; then satisfied=1; break; fi
                done
                [ "$satisfied" = 0 ] && [ -n "$first" ] || continue
                case "$first" in
                    *-dev) continue ;;           # headers of libraries: not needed to run
                    lib*|zlib1g) ;;
                    *) continue ;;               # mime-support and the like
                esac
                [ -n "${UNPACK[$first]:-}" ] || next+=("$first")
            done
        done
        mapfile -t queue < <(printf '%s\n' "${next[@]}" | sort -u | sed '/^$/d')
    done
}

resolve_debs
say "unpacking into $ROOT: $(printf '%s\n' "${!UNPACK[@]}" | sort | xargs)"
for pkg in "${!UNPACK[@]}"; do
    dpkg-deb -x "$(cached_deb "$pkg")" "$ROOT"
done
# Absolute symbolic links in the packages (to /etc/python2.7, /usr/lib/...) now have to
# point inside the root.
find "$ROOT" -type l -lname '/*' -print0 | while IFS= read -r -d '' link; do
    ln -sfn "$ROOT$(readlink "$link")" "$link"
done

LIBPATH="$ROOT/usr/lib/$MULTIARCH:$ROOT/lib/$MULTIARCH"
unresolved="$(for f in "$ROOT/usr/bin/python2.7" "$ROOT"/usr/lib/python2.7/lib-dynload/*.so; do
    LD_LIBRARY_PATH="$LIBPATH" ldd "$f" 2>/dev/null | awk '/not found/ { print $1 }'
done | sort -u | xargs)"
[ -z "$unresolved" ] || say "warning: libraries not found for some of Python 2.7's modules: $unresolved"

# ------------------------------------------------------------------ wrappers
cp "$LAUNCHER" "$PREFIX/bin/wstest_loopback.py"
cat > "$PY2" <<EOF
#!/bin/sh
# Debian 11's python2.7 unpacked in $ROOT, with its private libraries
# (written by wsline's compliance/autobahn/install.sh).
LD_LIBRARY_PATH="$LIBPATH\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" PYTHONNOUSERSITE=1
export LD_LIBRARY_PATH PYTHONNOUSERSITE
unset PYTHONHOME PYTHONPATH PYTHONSTARTUP
exec "$ROOT/usr/bin/python2.7" -W "ignore:Python 2 is no longer supported" "\$@"
EOF
cat > "$PREFIX/bin/wstest" <<EOF
#!/bin/sh
# Autobahn|Testsuite's wstest on the private python2.7; listening modes bound to 127.0.0.1
# (written by wsline's compliance/autobahn/install.sh).
exec "$PY2" -u "$PREFIX/bin/wstest_loopback.py" "\$@"
EOF
chmod 755 "$PY2" "$PREFIX/bin/wstest"
"$PY2" -c 'import ssl, zlib, ctypes, hashlib' \
    || fail "the unpacked python2.7 does not start or lacks ssl/zlib/ctypes/hashlib (see above)"

# ------------------------------------------------------------------ pip and the suite
pip2() {  # Python 2's pip, deaf to the Python 3 pip settings of the environment
    (
        for var in $(compgen -e); do case "$var" in PIP_*) unset "$var" ;; esac; done
        export PIP_CONFIG_FILE=/dev/null
        "$PY2" -m pip --disable-pip-version-check --no-python-version-warning --no-input --no-cache-dir "$@"
    )
}
CERT=()
[ -s /etc/ssl/certs/ca-certificates.crt ] && CERT=(--cert /etc/ssl/certs/ca-certificates.crt)

boot_cached() {
    local spec
    for spec in "${BOOT_WHEELS[@]}"; do
        compgen -G "$CACHE/wheels/${spec%==*}-${spec#*==}-*.whl" >/dev/null || return 1
    done
}
if ! boot_cached; then
    network "the bootstrap wheels ${BOOT_WHEELS[*]}"
    host_python=""
    for candidate in "${PYTHON3:-python3}" "$REPO/.venv/bin/python"; do
        if "$candidate" -m pip --version >/dev/null 2>&1; then host_python="$candidate"; break; fi
    done
    [ -n "$host_python" ] || fail "no Python 3 with pip found (tried ${PYTHON3:-python3}, $REPO/.venv/bin/python); set PYTHON3" 3
    say "downloading ${BOOT_WHEELS[*]} (for Python 2.7) with $host_python -m pip"
    "$host_python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
        --python-version 2.7 -d "$CACHE/wheels" "${BOOT_WHEELS[@]}" \
        || fail "pip download ${BOOT_WHEELS[*]} failed"
fi
pip_wheel="$(compgen -G "$CACHE/wheels/pip-20.3.4-*.whl" | head -1)"
say "bootstrapping ${BOOT_WHEELS[*]}"
# pip runs from its own wheel to install itself (the wheel is a zip on sys.path).
(
    for var in $(compgen -e); do case "$var" in PIP_*) unset "$var" ;; esac; done
    PIP_CONFIG_FILE=/dev/null "$PY2" "$pip_wheel/pip" install -q --disable-pip-version-check \
        --no-python-version-warning --no-cache-dir --no-index --find-links "$CACHE/wheels" --no-warn-script-location "${BOOT_WHEELS[@]}"
) || fail "bootstrapping pip from $pip_wheel failed"

# The sdists' C code includes Python.h, and Debian's pyconfig.h includes the multiarch one.
export CFLAGS="-I$ROOT/usr/include/python2.7 -I$ROOT/usr/include ${CFLAGS:-}"
from_cache() {
    pip2 install -q --no-index --find-links "$CACHE/wheels" --no-warn-script-location -r "$REQUIREMENTS"
}
if from_cache 2>/dev/null; then
    say "installed requirements-py27.txt from $CACHE/wheels"
else
    network "some wheel of requirements-py27.txt"
    say "downloading and building the wheels of requirements-py27.txt into $CACHE/wheels (PyPI)"
    for i in 1 2 3; do
        if pip2 wheel -q "${CERT[@]}" --find-links "$CACHE/wheels" -w "$CACHE/wheels" -r "$REQUIREMENTS"; then
            break
        fi
        [ "$i" = 3 ] && fail "pip wheel -r requirements-py27.txt failed three times (see above)"
        say "pip wheel failed; retrying in $((i * 10)) s"
        sleep $((i * 10))
    done
    from_cache || fail "pip install of requirements-py27.txt from $CACHE/wheels failed (see above)"
fi

# ------------------------------------------------------------------ check
"$PY2" -c "$IMPORT_CHECK" || fail "the installed suite does not import (see above)"
version="$("$PREFIX/bin/wstest" --autobahnversion 2>&1 | xargs || true)"
case "$version" in
    *"$WSTEST_VERSION"*) ;;
    *) fail "wstest --autobahnversion printed '$version', expected $WSTEST_VERSION" ;;
esac
fingerprint > "$MARKER"
say "done: $version at $PREFIX/bin/wstest (cache: $CACHE)"
