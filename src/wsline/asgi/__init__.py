"""ASGI: wsline under ASGI servers.

- :mod:`wsline.asgi.scope`: ASGI scopes built from a wsline request (shared by every ASGI layer);
- :mod:`wsline.asgi.websocket`: one ASGI WebSocket session on wsline's connection;
- :mod:`wsline.asgi.uvicorn`: ``uvicorn --ws wsline.asgi.uvicorn:WebSocketProtocol``.

Nothing here is imported by ``import wsline``: the ASGI layers cost nothing to
programs that do not use them.
"""

from .server import serve as serve
