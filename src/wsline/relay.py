"""The relay: ``python -m wsline relay [--host H] [--port P] [--redis URL] [--workers N]``.

Every message a client sends goes to every *other* client connected to the
same URL path (the path is the room: ``ws://host:port/game-42``). With
``--redis URL`` the rooms are shared by every relay process using that Redis
server; ``--workers N`` runs N processes on the same port (``SO_REUSEPORT``),
which needs ``--redis`` so that clients of different processes meet.

:func:`run_workers` is the helper behind ``--workers`` (also used by
``python -m wsline chat --workers N``).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import multiprocessing
import signal
import sys
from typing import TYPE_CHECKING, Any, Callable

from . import __version__, loop
from .aio.connection import WebSocket
from .aio.server import Server, _Serve, serve
from .errors import ConnectionClosed
from .hub import Hub, HubUnavailable
from .protocol.deflate import DeflateConfig

if TYPE_CHECKING:  # pragma: no cover
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    SubParsers = Any

__all__ = ["add_parser", "make_hub", "relay_handler", "run", "run_relay", "run_workers", "serve_relay"]

logger = logging.getLogger("wsline.relay")

#: Without context takeover on the server side, one compressed frame fits every
#: client: :func:`wsline.broadcast.broadcast` compresses each message once.
RELAY_DEFLATE = DeflateConfig(server_no_context_takeover=True)


async def relay_handler(hub: Hub, ws: WebSocket) -> None:
    """Join the room named by the request path; pass every message on to the others in it."""
    room = ws.request.path
    await hub.join(room, ws)
    try:
        async for message in ws:
            await hub.publish(room, message, exclude=ws)
    except ConnectionClosed:
        pass
    finally:
        await hub.leave(room, ws)


def serve_relay(host: str | None, port: int | None, *, hub: Hub, **kwargs: Any) -> _Serve:
    """:func:`wsline.serve` for the relay (other keyword arguments go to ``serve``)."""
    kwargs.setdefault("deflate", RELAY_DEFLATE)
    return serve(functools.partial(relay_handler, hub), host, port, **kwargs)


def make_hub(redis_url: str | None) -> Hub:
    """A :class:`~wsline.hub.RedisHub` for ``redis_url``, or an in-process :class:`~wsline.hub.Hub`."""
    if redis_url:
        from .hub_redis import RedisHub

        return RedisHub(redis_url)
    return Hub()


def _stop(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def wait_for_signal() -> None:
    """Wait for SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, _stop, stop)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows, threads
            pass
    await stop


async def run_relay(host: str, port: int, redis_url: str | None = None, reuse_port: bool = False) -> None:
    """Serve the relay until SIGINT or SIGTERM, printing where it is."""
    server: Server
    async with make_hub(redis_url) as hub, serve_relay(host, port, hub=hub, reuse_port=reuse_port) as server:
        where = f"[{host}]" if ":" in host else host
        via = f" sharing rooms over {redis_url}" if redis_url else ""
        print(f"wsline {__version__} relay on ws://{where}:{server.port}/{via}; Ctrl-C stops it", flush=True)
        await wait_for_signal()


# ------------------------------------------------------------------ workers


def _worker_main(target: Callable[..., Any], args: tuple[Any, ...], log_level: int) -> None:
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the workers with SIGTERM
    try:
        loop.run(target(*args))
    except HubUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    except OSError as exc:
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


def add_parser(sub: SubParsers) -> argparse.ArgumentParser:
    """Add the ``relay`` subcommand to the ``python -m wsline`` parser."""
    parser = sub.add_parser(
        "relay",
        help="run a relay: each message goes to every other client on the same path",
        description="Run a relay: every message a client sends goes to every other client "
        "connected to the same URL path (the path is the room).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    add_worker_arguments(parser)
    return parser


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


def run(args: argparse.Namespace) -> int:
    """Run the relay for parsed :func:`add_parser` options."""
    return run_command(args, run_relay)
