"""Command line: ``python -m wsline echo [--host H] [--port P] ...``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from importlib import resources
from typing import Sequence

from . import __version__, chat, connect_cli, loop, relay
from .aio.connection import WebSocket
from .aio.server import serve
from .errors import ConnectionClosed
from .protocol.handshake import Headers, Request, Response

__all__ = ["main", "echo_handler"]


async def echo_handler(ws: WebSocket) -> None:
    """Echo every message back: text as text, binary as binary."""
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass


def _page(name: str) -> bytes:
    return resources.files("wsline").joinpath("static").joinpath(name).read_bytes()


def _echo_page(request: Request) -> Response | None:
    """Serve the demo page on plain GET requests; let upgrades through."""
    if request.is_upgrade:
        return None
    if request.path not in ("/", "/index.html"):
        return Response(
            404,
            headers=Headers([("Content-Type", "text/plain"), ("Content-Length", "10")]),
            body=b"not found\n",
        )
    body = _page("echo.html")
    headers = Headers(
        [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
            ("Connection", "close"),
        ]
    )
    return Response(200, headers=headers, body=body if request.method != "HEAD" else b"")


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _run_echo(args: argparse.Namespace) -> int:
    stop = asyncio.get_running_loop().create_future()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _set_done, stop)
    max_size = None if args.max_size == 0 else args.max_size
    async with serve(
        echo_handler,
        args.host,
        args.port,
        subprotocols=args.subprotocol or None,
        compression=None if args.no_compression else "deflate",
        max_size=max_size,
        process_request=None if args.no_page else _echo_page,
        ping_interval=None if args.no_ping else 20.0,
    ) as server:
        host = args.host if ":" not in args.host else f"[{args.host}]"
        print(
            f"wsline {__version__} echo server on ws://{host}:{server.port}/ "
            f"(page at http://{host}:{server.port}/); Ctrl-C stops it",
            flush=True,
        )
        await stop
        print("shutting down", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m wsline``."""
    parser = argparse.ArgumentParser(prog="python -m wsline", description="wsline WebSocket tools")
    parser.add_argument("--version", action="version", version=f"wsline {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: frame traces)")
    sub = parser.add_subparsers(dest="command", required=True)
    echo = sub.add_parser("echo", help="run an echo server (with a demo page at /)")
    echo.add_argument("--host", default="127.0.0.1")
    echo.add_argument("--port", type=int, default=8000)
    echo.add_argument(
        "--subprotocol",
        action="append",
        metavar="NAME",
        help="select NAME when the client offers it (repeatable)",
    )
    echo.add_argument(
        "--max-size",
        type=int,
        default=2**20,
        metavar="BYTES",
        help="largest message accepted (0: no limit; default 1 MiB)",
    )
    echo.add_argument("--no-compression", action="store_true", help="decline permessage-deflate")
    echo.add_argument("--no-page", action="store_true", help="do not serve the demo page on /")
    echo.add_argument("--no-ping", action="store_true", help="no keepalive pings")
    connect_cli.add_parser(sub)
    chat.add_parser(sub)
    relay.add_parser(sub)
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * args.verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "echo":
            return loop.run(_run_echo(args))
        if args.command == "connect":
            return connect_cli.run(args)
        if args.command == "chat":
            return chat.run(args)
        if args.command == "relay":
            return relay.run(args)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
