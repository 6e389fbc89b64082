"""Any ASGI 3 application on wsline's server: ``python -m wsline asgi MODULE:APP [options]``.

``MODULE:APP`` names the application like uvicorn does (``main:app``,
``pkg.web:make_app`` with ``--factory``, which calls it); the current directory
is on the import path. HTTP/1.1 and WebSockets on one port
(:func:`wsline.asgi.serve`), the application's lifespan around the server's
life, ``--workers N`` processes sharing the port (``SO_REUSEPORT``; the parent
prints the banner once). SIGINT or SIGTERM stops it gracefully: idle
connections close, requests in progress finish (``--shutdown-timeout``),
WebSockets get 1012, then the lifespan shutdown; exit status 0. An application
that cannot be imported or whose startup fails: exit status 1.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
from typing import Any

from ..aio import loop
from ..asgi.http import ASGIApp
from ..asgi.lifespan import LifespanFailed
from ..asgi.server import serve
from .runner import Status, SubParsers, catch_signals, port_number, run_workers, url_host

__all__ = ["AppImportError", "add_parser", "import_app", "run", "run_asgi"]


class AppImportError(Exception):
    """``MODULE:APP`` does not name an importable application."""


def import_app(spec: str, factory: bool = False) -> ASGIApp:
    """The application that ``MODULE:APP`` names (``APP`` may be dotted: ``main:api.app``).

    With ``factory``, ``APP`` is called (without arguments) and its result is
    the application. Raises :class:`AppImportError` saying what is wrong.
    """
    module_name, sep, attrs = spec.partition(":")
    if not sep or not module_name or not attrs:
        raise AppImportError(f"expected MODULE:APP (e.g. main:app), not {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name and not module_name.startswith(f"{exc.name}."):
            raise  # the module exists and failed to import something itself: show the traceback
        raise AppImportError(f"cannot import module {module_name!r}") from None
    obj: Any = module
    for attr in attrs.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise AppImportError(f"module {module_name!r} has no attribute {attrs!r}") from None
    if factory:
        if not callable(obj):
            raise AppImportError(f"{spec} is not callable (--factory calls it to make the application)")
        obj = obj()
    if not callable(obj):
        raise AppImportError(f"{spec} is not an ASGI application (not callable): {obj!r}")
    if inspect.isclass(obj):
        raise AppImportError(f"{spec} is a class; give an instance (or use --factory with a function)")
    app: ASGIApp = obj
    return app


async def run_asgi(
    spec: str,
    factory: bool,
    host: str,
    port: int,
    root_path: str,
    lifespan: str,
    options: dict[str, Any],
    reuse_port: bool,
    status: Status,
) -> int:
    """Serve ``spec``'s application until SIGINT or SIGTERM; 1 if it cannot (said through ``status``)."""
    try:
        app = import_app(spec, factory)
    except AppImportError as exc:
        status.error(str(exc))
        return 1
    stop = catch_signals()
    try:
        server = await serve(
            app,
            host,
            port,
            root_path=root_path,
            lifespan=lifespan,  # type: ignore[arg-type]
            reuse_port=reuse_port,
            **options,
        )
    except LifespanFailed as exc:
        stop.cancel()
        status.error(f"application startup failed: {exc}")
        return 1
    except BaseException:
        stop.cancel()
        raise
    try:
        where = f"http://{url_host(host)}:{server.port}{root_path}/"
        status.ready(f"ASGI application {spec} on {where}")
        await stop
        status.stopping()
    finally:
        stop.cancel()
        await server.close()
    return 0


async def _worker(
    spec: str,
    factory: bool,
    host: str,
    port: int,
    root_path: str,
    lifespan: str,
    options: dict[str, Any],
    status: Status,
) -> None:
    """One of ``--workers N``: exit status 1 when the application cannot run."""
    if await run_asgi(spec, factory, host, port, root_path, lifespan, options, True, status):
        sys.exit(1)


def _root_path(value: str) -> str:
    if value and (not value.startswith("/") or value.endswith("/")):
        raise argparse.ArgumentTypeError(f"a root path starts with '/' and does not end with one: {value!r}")
    return value


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {value!r}")
    return seconds


def add_parser(sub: SubParsers) -> argparse.ArgumentParser:
    """Add the ``asgi`` subcommand to the ``python -m wsline`` parser."""
    parser = sub.add_parser(
        "asgi",
        help="serve an ASGI application (FastAPI, Starlette, ...): HTTP/1.1 and WebSockets",
        description="Serve an ASGI 3 application on wsline's server: HTTP/1.1 (keep-alive, "
        "pipelining, streamed bodies) and WebSockets on one port, with its lifespan.",
    )
    parser.add_argument("app", metavar="MODULE:APP", help="the application, e.g. main:app (as for uvicorn)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=port_number, default=8000, help="port to listen on (default 8000; 0 picks a free one)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, metavar="N",
        help="serve from N processes on the same port (SO_REUSEPORT; needs a fixed --port)",
    )
    parser.add_argument(
        "--root-path", type=_root_path, default="", metavar="PATH",
        help="the path the application is mounted at behind a proxy (scope['root_path'])",
    )
    parser.add_argument(
        "--factory", action="store_true", help="APP is a function that returns the application"
    )
    parser.add_argument(
        "--lifespan", choices=("auto", "on", "off"), default="auto",
        help="run the application's lifespan startup/shutdown: auto (if it supports it; default), on, off",
    )
    parser.add_argument(
        "--keep-alive-timeout", type=_seconds, default=5.0, metavar="SECONDS",
        help="how long an idle keep-alive connection stays open (default 5)",
    )
    parser.add_argument(
        "--shutdown-timeout", type=_seconds, default=10.0, metavar="SECONDS",
        help="on SIGINT/SIGTERM, how long requests in progress may take to finish (default 10)",
    )
    parser.add_argument(
        "--max-body-size", type=int, default=2**26, metavar="BYTES",
        help="largest request body accepted, streamed or not (413 beyond; default 64 MiB)",
    )
    parser.add_argument(
        "--ws-max-size", type=int, default=2**20, metavar="BYTES",
        help="largest WebSocket message accepted (0: no limit; default 1 MiB)",
    )
    parser.add_argument(
        "--ws-ping-interval", type=float, default=20.0, metavar="SECONDS",
        help="WebSocket keepalive ping interval (0: no pings; default 20)",
    )
    parser.add_argument(
        "--ws-ping-timeout", type=float, default=20.0, metavar="SECONDS",
        help="close a WebSocket whose ping is not answered within this (0: never; default 20)",
    )
    parser.add_argument("--no-compression", action="store_true", help="decline permessage-deflate")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``python -m wsline asgi`` for parsed :func:`add_parser` options."""
    status = Status()
    if args.workers < 1:
        status.error("--workers must be at least 1")
        return 2
    if args.workers > 1 and args.port == 0:
        status.error("--workers N > 1 needs a fixed --port")
        return 2
    for name in ("max_body_size", "ws_max_size", "ws_ping_interval", "ws_ping_timeout"):
        if getattr(args, name) < 0:
            status.error(f"--{name.replace('_', '-')} must be at least 0")
            return 2
    options: dict[str, Any] = {
        "keep_alive_timeout": args.keep_alive_timeout,
        "shutdown_timeout": args.shutdown_timeout,
        "max_body_size": args.max_body_size,
        "compression": None if args.no_compression else "deflate",
        "max_size": args.ws_max_size or None,
        "ping_interval": args.ws_ping_interval or None,
        "ping_timeout": args.ws_ping_timeout or None,
    }
    common = (args.app, args.factory, args.host, args.port, args.root_path, args.lifespan, options)
    if args.workers > 1:
        return run_workers(args.workers, _worker, *common, status=status)
    try:
        return loop.run(run_asgi(*common, False, status))
    except OSError as exc:
        status.error(str(exc))
        return 1
