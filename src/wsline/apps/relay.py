"""The relay: ``python -m wsline relay [--host H] [--port P] [--redis URL] [--workers N]``.

Every message a client sends goes to every *other* client connected to the
same URL path (the path is the room: ``ws://host:port/game-42``). With
``--redis URL`` the rooms are shared by every relay process using that Redis
server (or Redis Cluster); ``--workers N`` runs N processes on the same port
(``SO_REUSEPORT``), which needs ``--redis`` so that clients of different
processes meet.

Positions and resuming: a client that connects with ``?since=`` in its URL
(``ws://host:port/game-42?since=``) gets every message of the room --
its own included, that is how it learns their positions -- prefixed by its
position and a newline, ``"<epoch>:<offset>\n<message>"`` (text stays text,
binary stays binary). Reconnecting with ``?since=<epoch>:<offset>``, the
last position it got, delivers what it missed meanwhile exactly once, in
order, then the live messages -- or first ``"!reset <epoch>:<offset>
<reason>"`` when that is not possible (the history is shorter, or was lost):
some messages are missing, and the next ones follow that position. The
positions of joins and leaves are not shown, so offsets may skip.

:func:`wsline.apps.runner.run_workers` is the helper behind ``--workers`` (also
used by ``python -m wsline chat --workers N``).
"""

from __future__ import annotations

import argparse
import functools
import logging
from typing import Any

from ..aio.connection import WebSocket
from ..aio.server import Server, _Serve, serve
from ..errors import ConnectionClosed
from ..hub import Hub, HubUnavailable, PositionPrefix, StreamPosition
from ..protocol.deflate import DeflateConfig
from .runner import (
    Status,
    SubParsers,
    add_worker_arguments,
    catch_signals,
    port_number,
    redacted_url,
    run_command,
    url_host,
)

__all__ = ["POSITIONS", "add_parser", "make_hub", "relay_handler", "run", "run_relay", "serve_relay"]

logger = logging.getLogger("wsline.relay")

#: Without context takeover on the server side, one compressed frame fits every
#: client: :func:`wsline.broadcast.broadcast` compresses each message once.
RELAY_DEFLATE = DeflateConfig(server_no_context_takeover=True)


#: What ``?since=`` clients get: each message after its position (see the module's documentation).
POSITIONS = PositionPrefix()


async def relay_handler(hub: Hub, ws: WebSocket) -> None:
    """Join the room named by the request path; pass every message on to the others in it.

    With ``?since=[EPOCH:OFFSET]`` the client gets positions, its own
    messages, and what it missed after that position.
    """
    room = ws.request.path
    query = ws.request.query
    exclude: WebSocket | None = ws
    try:
        if "since" in query:
            try:
                since = StreamPosition.parse(query["since"]) if query["since"] else None
            except ValueError:
                await ws.close(1008, "since must be EPOCH:OFFSET")
                return
            await hub.join(room, ws, since=since, envelope=POSITIONS)
            exclude = None
        else:
            await hub.join(room, ws)
    except HubUnavailable as exc:
        logger.warning("relay: %s cannot join %r: %s", ws.remote_address, room, exc)
        await ws.close(1013, "the rooms are unavailable; try again")
        return
    try:
        async for message in ws:
            await hub.publish(room, message, exclude=exclude, wait=False)
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
        from ..hub_redis import RedisHub

        return RedisHub(redis_url)
    return Hub()


async def run_relay(
    host: str,
    port: int,
    redis_url: str | None = None,
    reuse_port: bool = False,
    status: Status | None = None,
) -> None:
    """Serve the relay until SIGINT or SIGTERM, saying where it is (``status``: printed by default)."""
    status = status if status is not None else Status()
    stop = catch_signals()
    server: Server
    async with make_hub(redis_url) as hub, serve_relay(host, port, hub=hub, reuse_port=reuse_port) as server:
        via = f" sharing rooms over {redacted_url(redis_url)}" if redis_url else ""
        status.ready(f"relay on ws://{url_host(host)}:{server.port}/{via}")
        await stop
        status.stopping()


def add_parser(sub: SubParsers) -> argparse.ArgumentParser:
    """Add the ``relay`` subcommand to the ``python -m wsline`` parser."""
    parser = sub.add_parser(
        "relay",
        help="run a relay: each message goes to every other client on the same path",
        description="Run a relay: every message a client sends goes to every other client "
        "connected to the same URL path (the path is the room).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=port_number, default=8000, help="port to listen on (default 8000; 0 picks a free one)"
    )
    add_worker_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the relay for parsed :func:`add_parser` options."""
    return run_command(args, run_relay)
