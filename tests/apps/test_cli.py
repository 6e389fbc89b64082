"""``python -m wsline``: options, help, usage errors, banners and shutdown, run as a user would."""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_examples import CHAT_READY, ENV, REPO, Process, free_port

import wsline
from wsline.apps import cli
from wsline.apps.runner import REDIS_URL_FORMS, redacted_url, redis_url

pytestmark = pytest.mark.timeout(60)

COMMANDS = ["echo", "connect", "chat", "relay"]
RELAY_READY = re.compile(r"relay on ws://127\.0\.0\.1:(\d+)/")
ECHO_READY = re.compile(r"echo server on ws://127\.0\.0\.1:(\d+)/")


def run_wsline(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wsline", *args],
        cwd=REPO,
        env={**ENV, "COLUMNS": "500"},  # --help on long lines: no wrapping at hyphens
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
    )


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    (action,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


# ------------------------------------------------------------------ -v, --help


@pytest.mark.parametrize(
    ("argv", "verbosity"),
    [
        (["chat"], 0),
        (["-v", "chat"], 1),
        (["chat", "-v"], 1),
        (["chat", "-vv"], 2),
        (["-v", "relay", "--verbose"], 2),
        (["echo", "--port", "0", "-v"], 1),
        (["connect", "ws://x/", "-vv"], 2),
    ],
)
def test_verbose_before_or_after_the_command(argv: list[str], verbosity: int) -> None:
    args = cli.build_parser().parse_args(argv)
    assert args.verbose + args.verbose_after == verbosity


def test_verbose_after_the_command_logs() -> None:
    proc = Process("-m", "wsline", "echo", "--port", "0", "-v")
    port = int(proc.wait_for_line(ECHO_READY).group(1))
    assert proc.stop() == 0, proc.describe()
    assert f"INFO wsline.server: listening on ('127.0.0.1', {port})" in "".join(proc.stderr)


async def test_vv_after_the_command_traces_frames() -> None:
    proc = Process("-m", "wsline", "chat", "--port", "0", "-vv")
    try:
        port = int(proc.wait_for_line(CHAT_READY).group(1))
        async with wsline.connect(f"ws://127.0.0.1:{port}/ws", ping_interval=None) as ws:
            await ws.send('{"type": "join", "name": "tracer"}')
            await ws.recv(timeout=5)
    finally:
        assert proc.stop() == 0, proc.describe()
    log = "".join(proc.stderr)
    assert "DEBUG wsline" in log and "connection open: /ws" in log, proc.describe()


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help(command: str) -> None:
    parser = subcommands()[command]
    assert parser.description, f"{command}: no description"
    for action in parser._actions:
        assert action.help and action.help is not argparse.SUPPRESS, (command, action.option_strings)

    result = run_wsline(command, "--help")
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert " ".join(parser.description.split()) in out
    for action in parser._actions:
        assert " ".join(str(action.help).split("%")[0].split()) in out, (command, action.option_strings)


def test_top_level_help_lists_every_command() -> None:
    result = run_wsline("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\s+\S", result.stdout, re.M), command
    assert run_wsline("--version").stdout == f"wsline {wsline.__version__}\n"


# ------------------------------------------------------------------ --redis, --port


@pytest.mark.parametrize(
    "url",
    [
        "localhost:6379",
        "http://x",
        "redis://:bad:port",
        "redis:localhost",
        "redis://127.0.0.1:99999",
        "redis://[::1",
        "redis://",
        "redis://host/zero",
        "redis://host?db=x",
        "unix://",
    ],
)
@pytest.mark.parametrize("command", ["chat", "relay"])
def test_malformed_redis_url_is_a_usage_error(command: str, url: str) -> None:
    result = run_wsline(command, "--port", "0", "--redis", url)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert f"argument --redis: invalid Redis URL {url!r}" in errors[0]
    assert errors[0].endswith(f"expected {REDIS_URL_FORMS}")


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://localhost",
        "REDIS://localhost:6380/15",
        "rediss://user:p%40ss@redis.example:6380/1",
        "redis://:password@[::1]:6379",
        "redis://h/?db=3",
        "unix:///run/redis/redis.sock",
        "unix:///run/redis/redis.sock?db=2",
    ],
)
def test_valid_redis_urls(url: str) -> None:
    assert redis_url(url) == url


def test_passwords_stay_out_of_banners() -> None:
    assert redacted_url("redis://:hunter2@h:6379/0") == "redis://:***@h:6379/0"
    assert redacted_url("rediss://alice:hunter2@h/1") == "rediss://alice:***@h/1"
    assert redacted_url("redis://h:6379/0") == "redis://h:6379/0"


@pytest.mark.parametrize("port", ["-1", "65536", "http"])
def test_bad_port_is_a_usage_error(port: str) -> None:
    result = run_wsline("relay", "--port", port)
    assert result.returncode == 2
    assert "argument --port:" in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------ banners, shutdown, errors


def test_relay_says_it_is_shutting_down() -> None:
    proc = Process("-m", "wsline", "relay", "--port", "0")
    port = int(proc.wait_for_line(RELAY_READY).group(1))

    async def exchange() -> None:
        url = f"ws://127.0.0.1:{port}/room"
        async with wsline.connect(url) as a, wsline.connect(url) as b:
            await asyncio.sleep(0.1)
            await a.send("hi")
            assert await b.recv(timeout=5) == "hi"

    asyncio.run(exchange())
    assert proc.stop() == 0, proc.describe()
    out = proc.stdout
    assert len(out) == 2 and RELAY_READY.search(out[0]) and out[0].endswith("; Ctrl-C stops it\n"), out
    assert out[1] == "shutting down\n"
    assert proc.stderr == []


@pytest.mark.parametrize("command", ["echo", "chat", "relay"])
def test_port_taken(command: str) -> None:
    port = free_port()
    first = Process("-m", "wsline", command, "--port", str(port))
    try:
        first.wait_for_line(re.compile(rf"127\.0\.0\.1:{port}/"))
        result = run_wsline(command, "--port", str(port))
    finally:
        assert first.stop() == 0, first.describe()
    assert result.returncode == 1
    assert result.stdout == ""
    assert re.fullmatch(r"error: .*address already in use\n", result.stderr, re.I), result.stderr


def test_unreachable_redis_single_process() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = run_wsline("chat", "--port", "0", "--redis", url)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: cannot reach Redis at {url}: "), result.stderr


def test_readme_lists_every_command_and_option() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("The command line, once installed")
    section = readme[start : readme.index("\n## ", start)]
    block = section.split("```")[1]
    for command, parser in subcommands().items():
        assert f"python -m wsline {command} " in block, command
        for action in parser._actions:
            options = [o for o in action.option_strings if o.startswith("--")]
            if options and options[0] not in ("--help", "--verbose"):
                assert options[0] in block, (command, options[0])
    assert "-vv" in section and "--help" in section


def test_cli_module_runs_as_the_wsline_script() -> None:
    """``pyproject.toml`` names ``wsline.apps.cli:main`` as the ``wsline`` script."""
    pyproject = (Path(REPO) / "pyproject.toml").read_text(encoding="utf-8")
    assert 'wsline = "wsline.apps.cli:main"' in pyproject
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from wsline.apps.cli import main; sys.exit(main())", "--version"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.stdout == f"wsline {wsline.__version__}\n"
