"""Testing wsline applications in process: a test client, and a network that misbehaves on demand.

::

    from wsline.testing import TestClient

    async def test_echo() -> None:
        async with TestClient(router, ping_interval=None) as client:
            async with client.websocket("/ws", subprotocols=["chat"]) as ws:
                await ws.send("hello")
                assert await ws.recv() == "hello"
            response = await client.get("/health")
            assert (response.status, response.body) == (200, b"ok")

:class:`TestClient` serves a handler, a :class:`~wsline.Router`, a
:class:`~wsline.Listener` subclass or an ASGI application (FastAPI, Starlette)
with no socket: each connection is wsline's real server protocol, on a real
:class:`~wsline.Server` built from :func:`wsline.serve`'s own options (the
same checks, the same defaults), talking to wsline's real client (the
:class:`~wsline.protocol.client.ClientHandshake` and a
:class:`~wsline.WebSocket`) over an in-memory :class:`TransportPair`. What a
test sees is what a client on the network would see: the close codes
(1011 when a handler raises), :class:`~wsline.InvalidStatus` with the status and
body of a refused handshake, the HTTP responses as they went over the wire.

The :class:`TransportPair` is an :class:`asyncio.Transport` pair that any
protocol can use, with faults set per direction, at any moment of a test::

    async with client.websocket("/feed", close_timeout=0.5) as ws:
        pair = pair_of(ws)
        pair.server_to_client.stall()                 # the client stops reading
        pair.client_to_server.drop_after(bytes=100)   # ...and 100 bytes later its data is lost
        pair.half_open("client")                      # the client's host vanished: no FIN, no reset
        pair.server_to_client.cut_after(bytes=5)      # the connection ends 5 bytes later (mid-frame)
        pair.reset()                                  # ConnectionResetError at both ends
        pair.client_to_server.delay(0.05)             # 50 ms of latency per write
        pair.server_to_client.slow_reader(100)        # the client reads 100 bytes per loop pass

There are no threads and no timers of its own beyond the event loop's: a test
runs the same way every time.

The pieces, for tests of other shapes: :func:`open_websocket` (a wsline client
to any server-side protocol), :func:`open_connection` (a raw stream client, to
write bytes by hand), :func:`stream_server` (a raw server end, for a wsline
client against a misbehaving server), :meth:`TestClient.server_protocol` (a
new server end, for a pair of your own) and :func:`pair_of`.
"""

from __future__ import annotations

from .client import TestClient, WebSocketConnect, open_connection, open_websocket, pair_of, stream_server
from .transport import DEFAULT_WINDOW, FaultTransport, Link, Side, TransportPair

__all__ = [
    "DEFAULT_WINDOW",
    "FaultTransport",
    "Link",
    "Side",
    "TestClient",
    "TransportPair",
    "WebSocketConnect",
    "open_connection",
    "open_websocket",
    "pair_of",
    "stream_server",
]
