"""The asyncio I/O layer: ``serve``, ``connect`` and the ``WebSocket`` object."""

from .client import connect
from .connection import WebSocket
from .server import Server, serve

__all__ = ["connect", "serve", "Server", "WebSocket"]
