# wsline developer tasks. Every target sets up what it needs in .venv (created
# with python3 -m venv); the installs are keyed on pyproject.toml through stamp
# files, so a second run installs nothing. make test also sets up the machine
# (Debian 12): first the system packages it needs (scripts/sysdeps.sh; only the
# missing ones, with apt-get as root; as another user it prints the one command
# to run as root and fails), then, in its Autobahn test, Autobahn|Testsuite
# (compliance/autobahn/install.sh). make itself must be there (apt-get install make).
#
#   make demo        the chat demo: page and WebSocket on one port (HOST=127.0.0.1 PORT=8000)
#   make test        system packages, then ruff + mypy + docs + pytest twice: with the C extension, then pure Python
#   make sysdeps     only the system packages make test needs (gcc, Python headers, chromium, redis, npm)
#   make lint        ruff + mypy only
#   make autobahn    only the Autobahn|Testsuite runs (FULL=0: without 12.x/13.x)
#   make venv        create/update .venv with the test extras, nothing else
#   make bench       wsline against its peers (about 11 min; bench-quick: 2.5 min)
#   make fuzz        atheris fuzz targets in fuzz/, FUZZ_SECONDS each (default 60)
#   make docs        the documentation site in docs/_build/html (warnings are errors)
#   make clean       remove .venv, .autobahn/ reports, caches and build output
#
# Variables: HOST, PORT (demo); PYTEST_ARGS (extra pytest arguments);
# FULL=0 (test, autobahn: skip Autobahn's compression groups 12.x/13.x, which
# take about 10 minutes); PYTHON3 (interpreter for the venv).

HOST = 127.0.0.1
PORT = 8000
PYTHON3 = python3
PYTEST_ARGS =
FULL = 1
# make test fails when the pure-Python run covers less of protocol/ than this.
COVERAGE_FLOOR = 95

VENV = .venv
PY = $(VENV)/bin/python
PIP = $(PY) -m pip --disable-pip-version-check
STAMP_BASE = $(VENV)/.stamp-install
STAMP_TEST = $(VENV)/.stamp-install-test
STAMP_DOCS = $(VENV)/.stamp-install-docs

# WSLINE_AUTOBAHN_FULL=1 runs the compression groups too (about 10 min per side).
AUTOBAHN_ENV = $(if $(filter 1,$(FULL)),WSLINE_AUTOBAHN_FULL=1,)

.PHONY: release-check demo test sysdeps lint autobahn venv clean help bench bench-quick fuzz docs
.DEFAULT_GOAL := help

help:
	@sed -n '8,22p' Makefile | sed 's/^# \{0,1\}//'

$(PY):
	$(PYTHON3) -m venv $(VENV) || { rm -rf $(VENV); exit 1; }

# wsline itself (editable): enough for the demo.
$(STAMP_BASE): pyproject.toml | $(PY)
	$(PIP) install -q -e .
	touch $@

# wsline with the test extras; also satisfies the base install.
$(STAMP_TEST): pyproject.toml | $(PY)
	$(PIP) install -q -e '.[test]'
	touch $@ $(STAMP_BASE)

# wsline with the docs extras (Sphinx, MyST, furo): for make docs and make test.
$(STAMP_DOCS): pyproject.toml | $(PY)
	$(PIP) install -q -e '.[docs]'
	touch $@

# The C extension, rebuilt in place (src/wsline/) when its source changes.
STAMP_EXT = $(VENV)/.stamp-ext
$(STAMP_EXT): src/wsline/_speedups.c setup.py $(STAMP_BASE)
	$(PIP) install -q --no-deps -e .
	touch $@

# Node's ws package for the interop tests (from the lock file).
NODE_WS = tests/interop/node_modules/.package-lock.json
$(NODE_WS): tests/interop/package-lock.json
	npm ci --prefix tests/interop --no-audit --no-fund --loglevel=error
	touch $@

venv: $(STAMP_TEST)

# What pip and npm do not bring (scripts/sysdeps.sh says what and why). A
# prerequisite of test, listed first: it also provides python3-venv for .venv.
sysdeps:
	@PYTHON3=$(PYTHON3) bash scripts/sysdeps.sh

demo: $(STAMP_BASE)
	$(PY) -m wsline chat --host $(HOST) --port $(PORT)

lint: $(STAMP_TEST)
	@rc=0; \
	echo "== ruff check src tests compliance benchmarks examples fuzz"; $(VENV)/bin/ruff check src tests compliance benchmarks examples fuzz || rc=1; \
	echo "== mypy"; $(VENV)/bin/mypy || rc=1; \
	exit $$rc

# All steps run even when one fails (so pytest's summaries are always there);
# the exit status is non-zero if any of them failed. pytest runs twice: with
# the C extension (required: a failed build fails the run) and with the
# pure-Python twin forced by WSLINE_NO_EXTENSIONS=1. The second run leaves out
# Autobahn's compression groups 12.x/13.x (10 minutes): compressed frames take
# the same Python path with or without the extension.
test: sysdeps $(STAMP_TEST) $(STAMP_EXT) $(STAMP_DOCS) $(NODE_WS)
	@rc=0; ruff=ok; mypy=ok; docs=ok; compiled=ok; pure=ok; coverage=ok; release=ok; \
	echo "== ruff check src tests compliance benchmarks examples fuzz"; $(VENV)/bin/ruff check src tests compliance benchmarks examples fuzz || { rc=1; ruff=FAILED; }; \
	echo "== mypy"; $(VENV)/bin/mypy || { rc=1; mypy=FAILED; }; \
	echo "== docs: $(SPHINX_BUILD)"; $(SPHINX_BUILD) || { rc=1; docs=FAILED; }; \
	echo "== pytest, compiled path $(PYTEST_ARGS)"; WSLINE_REQUIRE_EXTENSIONS=1 $(AUTOBAHN_ENV) $(PY) -m pytest $(PYTEST_ARGS) || { rc=1; compiled=FAILED; }; \
	echo "== pytest, pure-Python path (WSLINE_NO_EXTENSIONS=1), with coverage $(PYTEST_ARGS)"; WSLINE_NO_EXTENSIONS=1 $(PY) -m pytest --cov=wsline --cov-report= $(PYTEST_ARGS) || { rc=1; pure=FAILED; }; \
	echo "== coverage (pure-Python run): protocol/ at least $(COVERAGE_FLOOR) %, the rest reported"; $(PY) -m coverage report --include='src/wsline/protocol/*' --fail-under=$(COVERAGE_FLOOR) || { rc=1; coverage=FAILED; }; $(PY) -m coverage report --omit='src/wsline/protocol/*' --skip-covered | tail -n 25; \
	echo "== release check"; PYTHON=$(PY) bash scripts/release_check.sh || { rc=1; release=FAILED; }; \
	echo "== make test: ruff $$ruff, mypy $$mypy, docs $$docs, pytest compiled $$compiled, pytest pure-Python $$pure, coverage $$coverage, release check $$release"; \
	exit $$rc

# The documentation site: every warning fails the build (-W, all of them
# reported: --keep-going), every cross-reference must resolve (-n), and the
# environment is read afresh (-E) so that a second run reports them again.
SPHINX_BUILD = $(VENV)/bin/sphinx-build -E -W --keep-going -n -q -b html docs docs/_build/html
docs: $(STAMP_DOCS)
	$(SPHINX_BUILD)
	@echo "docs: open docs/_build/html/index.html"

autobahn: $(STAMP_TEST)
	$(AUTOBAHN_ENV) $(PY) -m pytest -v -s tests/compliance/test_autobahn.py $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .autobahn build dist .pytest_cache .mypy_cache .ruff_cache docs/_build docs/_generated
	find . -path ./.git -prune -o \( -name __pycache__ -o -name '*.egg-info' \) -type d -print \
		| xargs -r rm -rf

# The benchmark suite builds its own venv (peers pinned) in benchmarks/.venv.
bench:
	$(PYTHON3) benchmarks/run.py

bench-quick:
	$(PYTHON3) benchmarks/run.py --quick

# Coverage-guided fuzzing (atheris, installed into the venv on first use). New
# inputs go to $(VENV)/fuzz-corpus/<target> (the committed seeds in fuzz/corpus
# are only read); a crash stops the run and leaves fuzz/<target>-crash-<hash>.
FUZZ_SECONDS = 60
FUZZ_TARGETS = frames handshake deflate http11
fuzz: $(STAMP_TEST)
	@$(PY) -c 'import atheris' 2>/dev/null || $(PIP) install -q atheris
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p $(VENV)/fuzz-corpus/$$t; \
		echo "== fuzz_$$t ($(FUZZ_SECONDS) s)"; \
		$(PY) fuzz/fuzz_$$t.py -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
			-print_final_stats=1 -artifact_prefix=fuzz/$$t- \
			$(VENV)/fuzz-corpus/$$t fuzz/corpus/$$t || exit 1; \
	done

# Build the sdist and the wheel, check them, install each in a clean venv and smoke-test it.
release-check: $(STAMP_TEST)
	PYTHON=$(PY) bash scripts/release_check.sh
