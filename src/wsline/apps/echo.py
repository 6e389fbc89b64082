"""The echo server: ``python -m wsline echo [--host H] [--port P] ...``.

Every message comes back as it was sent (text as text, binary as binary); a
plain GET of ``/`` gets a small page that talks to it.
"""

from __future__ import annotations

import argparse
from importlib import resources

from ..aio import loop
from ..aio.connection import WebSocket
from ..aio.server import serve
from ..errors import ConnectionClosed
from ..protocol.handshake import Headers, Request, Response
from .runner import Status, SubParsers, catch_signals, port_number, url_host

__all__ = ["add_parser", "echo_handler", "run"]


async def echo_handler(ws: WebSocket) -> None:
    """Echo every message back: text as text, binary as binary."""
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass


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
    body = resources.files("wsline.apps").joinpath("static").joinpath("echo.html").read_bytes()
    headers = Headers(
        [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
            ("Connection", "close"),
        ]
    )
    return Response(200, headers=headers, body=body if request.method != "HEAD" else b"")


async def run_echo(args: argparse.Namespace, status: Status | None = None) -> int:
    """Serve the echo server for parsed :func:`add_parser` options until SIGINT or SIGTERM."""
    status = status if status is not None else Status()
    max_size = None if args.max_size == 0 else args.max_size
    stop = catch_signals()
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
        where = f"{url_host(args.host)}:{server.port}"
        status.ready(f"echo server on ws://{where}/ (page at http://{where}/)")
        await stop
        status.stopping()
    return 0


def add_parser(sub: SubParsers) -> argparse.ArgumentParser:
    """Add the ``echo`` subcommand to the ``python -m wsline`` parser."""
    echo = sub.add_parser(
        "echo",
        help="run an echo server (with a demo page at /)",
        description="Run an echo server: every message comes back as it was sent (text as text, "
        "binary as binary), on any path; a plain GET of / gets a page that talks to it.",
    )
    echo.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    echo.add_argument(
        "--port", type=port_number, default=8000, help="port to listen on (default 8000; 0 picks a free one)"
    )
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
    return echo


def run(args: argparse.Namespace) -> int:
    """Run the echo server for parsed :func:`add_parser` options; 1 if it cannot (the port is taken)."""
    status = Status()
    try:
        return loop.run(run_echo(args, status))
    except OSError as exc:
        status.error(str(exc))
        return 1
