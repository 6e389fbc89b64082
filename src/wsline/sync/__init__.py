"""A blocking WebSocket client for scripts and the REPL, on the same sans-I/O core.

::

    from wsline.sync import connect

    with connect("ws://127.0.0.1:8000/") as ws:
        ws.send("hello")
        print(ws.recv(timeout=5))
"""

from .client import ClientConnection, connect

__all__ = ["connect", "ClientConnection"]
