"""What every ``python -m wsline`` server shares: the signal wait, worker processes, options.

* :func:`catch_signals` / :func:`wait_for_signal`: SIGINT or SIGTERM stops a
  server (it then closes every connection with 1001 and exits 0);
* :class:`Status` is how a server says where it listens, that it is shutting
  down, or what went wrong: printed by a lone process, gathered by the parent
  when there are workers (so that each thing is said once);
* :func:`run_workers` runs one coroutine function in N spawned processes that
  share a port (``SO_REUSEPORT``);
* :func:`add_worker_arguments` / :func:`run_command` give a subcommand
  ``--redis URL`` and ``--workers N`` and run it in one or N processes;
  :func:`redis_url` and :func:`port_number` check option values (a bad one is
  a usage error, exit status 2).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import multiprocessing.connection
import signal
import sys
import urllib.parse
from typing import TYPE_CHECKING, Any, Callable, Coroutine

from .._version import __version__
from ..aio import loop
from ..aio.loop import catch_signals, wait_for_signal
from ..hub import HubUnavailable

if TYPE_CHECKING:  # pragma: no cover
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    SubParsers = Any

__all__ = [
    "REDIS_URL_FORMS",
    "ServerMain",
    "Status",
    "SubParsers",
    "add_worker_arguments",
    "catch_signals",
    "check_worker_arguments",
    "port_number",
    "redacted_url",
    "redis_url",
    "run_command",
    "run_workers",
    "url_host",
    "wait_for_signal",
]


def url_host(host: str) -> str:
    """``host`` as it goes into a URL (IPv6 addresses in brackets)."""
    return f"[{host}]" if ":" in host else host


# ------------------------------------------------------------------ what a server says


class Status:
    """What a server tells its user: where it listens, that it stops, what went wrong.

    This one prints (the banner and "shutting down" on stdout, errors on
    stderr). Under ``--workers N`` each worker gets one that reports to the
    parent process instead, and the parent prints the banner once all the
    workers listen, and each distinct error once.
    """

    def ready(self, what: str, workers: int = 1) -> None:
        """The server listens: ``what`` is e.g. ``"relay on ws://127.0.0.1:8000/"``."""
        processes = f" in {workers} worker processes" if workers > 1 else ""
        print(f"wsline {__version__} {what}{processes}; Ctrl-C stops it", flush=True)

    def stopping(self) -> None:
        """The server got SIGINT or SIGTERM and is closing its connections."""
        print("shutting down", flush=True)

    def error(self, message: str) -> None:
        """The server cannot run (or stopped) because of ``message``."""
        print(f"error: {message}", file=sys.stderr, flush=True)


class _WorkerStatus(Status):
    """A worker's :class:`Status`: reports go to the parent process, nothing is printed."""

    def __init__(self, conn: multiprocessing.connection.Connection) -> None:
        self._conn = conn

    def _send(self, kind: str, text: str) -> None:
        try:
            self._conn.send((kind, text))
        except OSError:  # pragma: no cover - the parent is gone
            pass

    def ready(self, what: str, workers: int = 1) -> None:
        self._send("ready", what)

    def stopping(self) -> None:
        pass  # the parent says it, once

    def error(self, message: str) -> None:
        self._send("error", message)


# ------------------------------------------------------------------ workers


def _worker_main(
    target: Callable[..., Coroutine[Any, Any, Any]],
    args: tuple[Any, ...],
    log_level: int,
    conn: multiprocessing.connection.Connection,
) -> None:
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the workers with SIGTERM
    status = _WorkerStatus(conn)
    try:
        loop.run(target(*args, status))
    except (HubUnavailable, OSError) as exc:
        status.error(str(exc))
        sys.exit(1)
    finally:
        conn.close()


class _Interrupted(Exception):
    """SIGTERM in the parent of the workers."""


def run_workers(
    workers: int, target: Callable[..., Coroutine[Any, Any, Any]], *args: Any, status: Status | None = None
) -> int:
    """Run ``target(*args, worker_status)`` in ``workers`` processes; wait for them all.

    ``target`` must be a module-level coroutine function and ``args``
    picklable (the processes are spawned). Each one typically calls
    ``serve(..., reuse_port=True)`` on the same port, and the kernel spreads
    connections over them. The last argument ``target`` gets is a
    :class:`Status` that reports to this process: once every worker has
    called its ``ready``, ``status`` (printing, by default) announces the
    server once; errors are passed on once each, however many workers hit
    them. A worker that fails before they all listen stops them all.
    SIGINT or SIGTERM stops them all (``status.stopping()``). Returns 0 if
    every worker exited cleanly, else 1.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    status = status if status is not None else Status()
    ctx = multiprocessing.get_context("spawn")
    level = logging.getLogger().getEffectiveLevel()
    pipes = [ctx.Pipe(duplex=False) for _ in range(workers)]
    procs = [
        ctx.Process(target=_worker_main, args=(target, args, level, send), name=f"wsline-worker-{i}")
        for i, (_, send) in enumerate(pipes)
    ]
    readers: dict[int, multiprocessing.connection.Connection] = {i: recv for i, (recv, _) in enumerate(pipes)}
    ready: set[int] = set()
    reported: set[int] = set()  # workers that said what went wrong
    errors: list[str] = []
    failed = False

    def report(index: int, message: str) -> None:
        reported.add(index)
        if message not in errors:
            errors.append(message)
            status.error(message)

    def receive(index: int) -> None:
        """Take what worker ``index`` sent; forget its pipe once it is closed."""
        reader = readers[index]
        try:
            while reader.poll():
                kind, text = reader.recv()
                if kind == "error":
                    report(index, text)
                elif kind == "ready":
                    ready.add(index)
                    if len(ready) == workers and not errors:
                        status.ready(text, workers)
        except (EOFError, OSError):
            reader.close()
            del readers[index]

    def terminate(signum: int, frame: object) -> None:
        raise _Interrupted

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        for proc in procs:
            proc.start()
        for _, send in pipes:
            send.close()  # the workers hold the writing ends now
        running = dict(enumerate(procs))
        while running:
            waitables: list[Any] = [*readers.values(), *(proc.sentinel for proc in running.values())]
            multiprocessing.connection.wait(waitables)
            for index in list(readers):
                receive(index)
            for index, proc in list(running.items()):
                if proc.is_alive():
                    continue
                proc.join()
                if index in readers:
                    receive(index)
                del running[index]
                if proc.exitcode not in (0, -signal.SIGTERM) and index not in reported:
                    report(index, f"worker process {index} exited with status {proc.exitcode}")
            if errors and len(ready) < workers and not failed:
                failed = True  # they cannot all serve: stop the others
                for proc in running.values():
                    proc.terminate()
    except (KeyboardInterrupt, _Interrupted):
        status.stopping()
    finally:
        signal.signal(signal.SIGTERM, previous)
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: a graceful stop
        for proc in procs:
            proc.join(15)
            if proc.is_alive():  # pragma: no cover - stuck worker
                proc.kill()
                proc.join()
        for reader in readers.values():
            reader.close()
    if failed or errors:
        return 1
    return 0 if all(proc.exitcode in (0, -signal.SIGTERM) for proc in procs) else 1


# ------------------------------------------------------------------ command line

#: What ``--redis`` takes (the forms the redis package accepts).
REDIS_URL_FORMS = (
    "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], rediss://... (TLS) or unix:///PATH/TO/SOCKET[?db=DB]"
)

_REDIS_SCHEMES = ("redis", "rediss", "unix")


def _redis_url_problem(value: str) -> str | None:
    """What is wrong with ``value`` as a Redis URL, or None."""
    scheme, sep, _ = value.partition("://")
    if not sep or scheme.lower() not in _REDIS_SCHEMES:
        return "no redis://, rediss:// or unix:// scheme"
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port
    except ValueError as exc:  # a port that is not a number, a broken [IPv6] address
        text = str(exc)
        if "IPv6" in text:
            return "a broken [IPv6] address"
        if "range" in text:
            return "the port is out of range"
        return "the port is not a number"
    query = urllib.parse.parse_qs(parts.query)
    if "db" in query and not query["db"][0].isdigit():
        return "the database ?db= is not a number"
    if parts.scheme.lower() == "unix":
        if not parts.path or parts.path == "/":
            return "no socket path"
        return None
    if not parts.hostname:
        return "no host"
    if port == 0:
        return "the port is out of range"
    db = urllib.parse.unquote(parts.path).strip("/")
    if db and not db.isdigit():
        return f"the database /{db} is not a number"
    return None


def redis_url(value: str) -> str:
    """``--redis``: ``value`` if it is a Redis URL (as the redis package takes them).

    Raises :class:`argparse.ArgumentTypeError` (a usage error) saying what a
    valid URL looks like otherwise.
    """
    problem = _redis_url_problem(value)
    if problem is not None:
        message = f"invalid Redis URL {value!r} ({problem}); expected {REDIS_URL_FORMS}"
        raise argparse.ArgumentTypeError(message)
    return value


def redacted_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, for banners and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}"))


def port_number(value: str) -> int:
    """``--port``: a TCP port number, 0 to 65535 (0: the system picks a free one)."""
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range (0 to 65535)")
    return port


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """``--redis URL`` and ``--workers N``."""
    parser.add_argument(
        "--redis",
        metavar="URL",
        type=redis_url,
        help="share rooms with other processes over Redis: redis://HOST[:PORT][/DB], rediss://... "
        "or unix:///PATH (needs the redis package: pip install 'wsline[redis]')",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="serve from N processes on the same port (SO_REUSEPORT); needs --redis when N > 1",
    )


def check_worker_arguments(args: argparse.Namespace) -> str | None:
    """The error message for a bad ``--workers``/``--redis``/``--port`` combination, or None."""
    if args.workers < 1:
        return "--workers must be at least 1"
    if args.workers > 1 and not args.redis:
        return "--workers N > 1 needs --redis URL (processes share rooms over Redis)"
    if args.workers > 1 and args.port == 0:
        return "--workers N > 1 needs a fixed --port"
    return None


#: ``target(host, port, redis_url, reuse_port, status)``: serve until SIGINT or
#: SIGTERM, calling ``status.ready(...)`` once listening and ``status.stopping()``
#: when stopped.
ServerMain = Callable[[str, int, "str | None", bool, Status], Coroutine[Any, Any, None]]


def run_command(args: argparse.Namespace, target: ServerMain) -> int:
    """Run ``target`` for a command with worker options (``--redis``, ``--workers``).

    One process by default; ``--workers N`` runs N sharing the port, and this
    process speaks for them. Returns the exit code: 2 for bad options, 1 when
    the server cannot run (the port is taken, Redis is unreachable).
    """
    error = check_worker_arguments(args)
    status = Status()
    if error is not None:
        status.error(error)
        return 2
    if args.workers > 1:
        return run_workers(args.workers, target, args.host, args.port, args.redis, True, status=status)
    try:
        loop.run(target(args.host, args.port, args.redis, False, status))
    except (HubUnavailable, OSError) as exc:
        status.error(str(exc))
        return 1
    return 0
