#!/usr/bin/env bash
# The release check: build the sdist and the wheel, check their metadata, install
# each one in a clean virtual environment (outside the source tree) and smoke-test it.
#
#   scripts/release_check.sh            (make release-check; make test runs it too)
#
# PYTHON: the interpreter with `build` and `twine` (default .venv/bin/python);
# PYTHON3: the one the clean environments are made from (default python3).
# Exits non-zero on the first failure, saying which step failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
PYTHON3="${PYTHON3:-python3}"
work="$(mktemp -d "${TMPDIR:-/tmp}/wsline-release.XXXXXX")"
trap 'rm -rf "$work"' EXIT
step() { echo "== release check: $*"; }

step "build sdist and wheel"
"$PYTHON" -m build --sdist --wheel --outdir "$work/dist" . > "$work/build.log" 2>&1 \
    || { tail -30 "$work/build.log"; echo "error: python -m build failed" >&2; exit 1; }
sdist=$(ls "$work"/dist/*.tar.gz)
wheel=$(ls "$work"/dist/*.whl)
echo "   $(basename "$sdist"), $(basename "$wheel")"

step "twine check --strict"
"$PYTHON" -m twine check --strict "$sdist" "$wheel"

step "the sdist carries what a build needs"
members=$(tar -tzf "$sdist")
for member in pyproject.toml setup.py LICENSE README.md src/wsline/_speedups.c src/wsline/py.typed \
        src/wsline/apps/static/chat.html; do
    grep -q "/$member\$" <<< "$members" || { echo "error: $member missing from the sdist" >&2; exit 1; }
done

# The smoke test runs from an empty folder, so that it imports the installed
# package, never the source tree.
cat > "$work/smoke.py" <<'PY'
import asyncio, importlib.metadata, os, subprocess, sys

import wsline

expected = sys.argv[1]
assert wsline.__version__ == importlib.metadata.version("wsline") == expected, wsline.__version__
assert "site-packages" in wsline.__file__, wsline.__file__
from importlib import resources
assert resources.files("wsline.apps").joinpath("static", "chat.html").read_bytes().startswith(b"<!")
assert resources.files("wsline").joinpath("py.typed").is_file()
if os.environ.get("WANT_EXTENSION") == "1":
    from wsline import _speedups  # noqa: F401  (the wheel is built with the C extension)


async def main() -> None:
    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async with wsline.serve(echo, "127.0.0.1", 0) as server:
        async with wsline.connect(f"ws://127.0.0.1:{server.port}/", proxy=None) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"


asyncio.run(main())
out = subprocess.run([sys.executable, "-m", "wsline", "--version"], capture_output=True, text=True, check=True)
assert out.stdout.strip() == f"wsline {expected}", out.stdout
print("   smoke test passed:", wsline.__file__)
PY
version=$("$PYTHON" -c 'import sys; sys.path.insert(0, "src"); from wsline._version import __version__; print(__version__)')

for kind in wheel sdist; do
    step "install the $kind in a clean venv and smoke-test it"
    "$PYTHON3" -m venv "$work/venv-$kind"
    file=$([ "$kind" = wheel ] && echo "$wheel" || echo "$sdist")
    "$work/venv-$kind/bin/python" -m pip install -q --disable-pip-version-check "$file" > "$work/pip-$kind.log" 2>&1 \
        || { tail -30 "$work/pip-$kind.log"; echo "error: installing the $kind failed" >&2; exit 1; }
    mkdir -p "$work/run-$kind"
    (cd "$work/run-$kind" && WANT_EXTENSION=1 "$work/venv-$kind/bin/python" "$work/smoke.py" "$version")
done
step "passed"
