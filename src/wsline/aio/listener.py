"""The low-level callback API: messages delivered to methods, no task and no await per message.

Pass a :class:`Listener` subclass to :func:`wsline.serve` instead of a handler
coroutine; one instance serves each connection::

    class Echo(wsline.Listener):
        def on_message(self, message):
            self.ws.send_nowait(message)

    await wsline.serve(Echo, "127.0.0.1", 8000)

The callbacks run inside the event loop's read callback: keep them short and
never block. Send with :meth:`WebSocket.send_nowait` (it never waits: watch
:attr:`WebSocket.writing_paused` and :meth:`Listener.on_writable` for
backpressure) and close with :meth:`WebSocket.close_nowait`. The coroutine
API stays the default; this one trades its comfort for the per-message
event-loop hop (a future and a task step per message).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConnectionClosed

if TYPE_CHECKING:  # pragma: no cover
    from .connection import Data, WebSocket

__all__ = ["Listener"]


class Listener:
    """Callbacks for one server connection. Subclass it and override what you need.

    An exception raised by a callback is logged, reported on the server's
    error channel, and closes the connection with 1011.
    """

    #: The connection (set before :meth:`on_open`).
    ws: WebSocket

    def on_open(self) -> None:
        """The opening handshake is done; ``self.ws`` is usable."""

    def on_message(self, message: Data) -> None:
        """A whole message arrived: ``str`` for text, ``bytes`` for binary."""

    def on_writable(self) -> None:
        """The outgoing buffer drained below its low-water mark after :attr:`WebSocket.writing_paused`."""

    def on_close(self, exc: ConnectionClosed) -> None:
        """The connection is closed (``exc`` says how); called once, last."""
