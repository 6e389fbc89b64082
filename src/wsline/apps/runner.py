"""What every ``python -m wsline`` server shares: the signal wait, worker processes, options.

* :func:`wait_for_signal` returns on SIGINT or SIGTERM (the servers then close
  every connection with 1001 and exit 0);
* :func:`run_workers` runs one coroutine function in N spawned processes that
  share a port (``SO_REUSEPORT``);
* :func:`add_worker_arguments` / :func:`run_command` give a subcommand
  ``--redis URL`` and ``--workers N`` and run it in one or N processes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import signal
import sys
from typing import TYPE_CHECKING, Any, Callable

from ..aio import loop
from ..hub import HubUnavailable

if TYPE_CHECKING:  # pragma: no cover
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    SubParsers = Any

__all__ = [
    "ServerMain",
    "SubParsers",
    "add_worker_arguments",
    "check_worker_arguments",
    "run_command",
    "run_workers",
    "url_host",
    "wait_for_signal",
]


def url_host(host: str) -> str:
    """``host`` as it goes into a URL (IPv6 addresses in brackets)."""
    return f"[{host}]" if ":" in host else host


def _stop(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def wait_for_signal() -> None:
    """Wait for SIGINT or SIGTERM."""
    running = asyncio.get_running_loop()
    stop: asyncio.Future[None] = running.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            running.add_signal_handler(sig, _stop, stop)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows, threads
            pass
    await stop


# ------------------------------------------------------------------ workers


def _worker_main(target: Callable[..., Any], args: tuple[Any, ...], log_level: int) -> None:
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the workers with SIGTERM
    try:
        loop.run(target(*args))
    except (HubUnavailable, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)


def run_workers(workers: int, target: Callable[..., Any], *args: Any) -> int:
    """Run ``asyncio.run(target(*args))`` in ``workers`` processes; wait for them all.

    ``target`` must be a module-level coroutine function and ``args``
    picklable (the processes are spawned). Each one typically calls
    ``serve(..., reuse_port=True)`` on the same port, and the kernel spreads
    connections over them. SIGINT or SIGTERM stops them all. Returns 0 if every
    worker exited cleanly, else 1.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    ctx = multiprocessing.get_context("spawn")
    level = logging.getLogger().getEffectiveLevel()
    procs = [
        ctx.Process(target=_worker_main, args=(target, args, level), name=f"wsline-worker-{i}")
        for i in range(workers)
    ]

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
    except KeyboardInterrupt:
        pass
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: a graceful stop
        for proc in procs:
            proc.join(15)
            if proc.is_alive():  # pragma: no cover - stuck worker
                proc.kill()
                proc.join()
        signal.signal(signal.SIGTERM, previous)
    return 0 if all(proc.exitcode in (0, -signal.SIGTERM) for proc in procs) else 1


# ------------------------------------------------------------------ command line


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """``--redis URL`` and ``--workers N``."""
    parser.add_argument(
        "--redis", metavar="URL", help="share rooms with other processes over Redis (redis://host:port/db)"
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


ServerMain = Callable[[str, int, "str | None", bool], Any]


def run_command(args: argparse.Namespace, target: ServerMain) -> int:
    """Run ``target(host, port, redis_url, reuse_port)`` for a command with worker options.

    One process by default; ``--workers N`` runs N sharing the port. Returns the
    exit code: 2 for bad options, 1 when Redis is unreachable.
    """
    error = check_worker_arguments(args)
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.workers > 1:
        return run_workers(args.workers, target, args.host, args.port, args.redis, True)
    try:
        loop.run(target(args.host, args.port, args.redis, False))
    except HubUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
