"""wsline: WebSockets (RFC 6455) for Python, on a sans-I/O core.

The asyncio API::

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async with wsline.serve(echo, "127.0.0.1", 8000):
        async with wsline.connect("ws://127.0.0.1:8000") as ws:
            await ws.send("hello")
            print(await ws.recv())
"""

from __future__ import annotations

from . import gate, http, log
from ._version import __version__
from .aio.client import connect
from .aio.connection import Data, WebSocket
from .aio.fanout import BroadcastResult, broadcast
from .aio.listener import Listener
from .aio.router import Router
from .aio.server import ConnectionInfo, ErrorChannel, Server, ServerError, serve
from .errors import (
    ConcurrencyError,
    ConnectFailed,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    ConnectRefused,
    HandshakeRejected,
    InvalidHandshake,
    InvalidPayload,
    InvalidStatus,
    InvalidURI,
    KeepaliveTimeout,
    NegotiationError,
    OpenTimeout,
    PayloadTooBig,
    ProtocolError,
    ProxyError,
    WebSocketError,
)
from .protocol.connection import State
from .protocol.deflate import DeflateConfig
from .protocol.handshake import Headers, Request, Response

__all__ = [
    "__version__",
    "serve",
    "connect",
    "Router",
    "broadcast",
    "BroadcastResult",
    "gate",
    "http",
    "log",
    "Server",
    "ServerError",
    "ConnectionInfo",
    "ErrorChannel",
    "WebSocket",
    "Listener",
    "Data",
    "State",
    "Request",
    "Response",
    "Headers",
    "DeflateConfig",
    "WebSocketError",
    "ConnectionClosed",
    "ConnectionClosedOK",
    "ConnectionClosedError",
    "KeepaliveTimeout",
    "InvalidHandshake",
    "InvalidStatus",
    "InvalidURI",
    "NegotiationError",
    "HandshakeRejected",
    "ProxyError",
    "ConnectFailed",
    "ConnectRefused",
    "OpenTimeout",
    "ConcurrencyError",
    "ProtocolError",
    "PayloadTooBig",
    "InvalidPayload",
]
