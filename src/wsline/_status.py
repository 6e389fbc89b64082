"""How a connection ended: shared by the asyncio and the blocking connection classes."""

from __future__ import annotations

from .errors import ConnectionClosed
from .protocol.connection import Connection, State


class ConnectionStatus:
    """Mixin: ``state``, ``close_code``, ``close_reason`` and the closed exception.

    The class using it sets ``_core``, ``_lost``, ``_keepalive_failed``,
    ``ping_timeout`` and ``latency``.
    """

    __slots__ = ()

    _core: Connection
    _lost: bool
    _keepalive_failed: bool
    ping_timeout: float | None
    latency: float | None

    @property
    def state(self) -> State:
        """CONNECTING, OPEN, CLOSING or CLOSED."""
        return State.CLOSED if self._lost else self._core.state

    @property
    def close_code(self) -> int | None:
        """The close code, once the connection is closed (1006: closed abnormally)."""
        if self._core.close_rcvd is not None:
            return self._core.close_rcvd.code
        if self._lost:
            return self._closed_error().code
        return None

    @property
    def close_reason(self) -> str:
        """The close reason, once the connection is closed."""
        if self._core.close_rcvd is not None:
            return self._core.close_rcvd.reason
        if self._lost:
            return self._closed_error().reason
        return ""

    def _closed_error(self) -> ConnectionClosed:
        """The exception that describes how the connection ended (or is ending).

        A new one at each call: a cached exception would keep, through its
        traceback, the frames that raised it and the connection they refer to.
        """
        timeout = (self.ping_timeout or 0.0) if self._keepalive_failed else None
        return self._core.closed_exception(timeout, self.latency)
