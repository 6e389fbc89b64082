"""What the asyncio and the blocking connection classes share above the protocol core.

The protocol logic itself is in :mod:`wsline.protocol` (the connection state
machine, fragmented sends and ping bookkeeping); this is only how the two
connection classes present it.
"""

from __future__ import annotations

from typing import Any

from .errors import ConnectionClosed
from .protocol.connection import Connection, State
from .protocol.session import PingTracker


def format_address(addr: Any) -> str:
    """``host:port`` (``[host]:port`` for IPv6) for a socket address tuple; ``str(addr)`` otherwise."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = addr[0]
        return f"[{host}]:{addr[1]}" if ":" in str(host) else f"{host}:{addr[1]}"
    return str(addr)


class ConnectionStatus:
    """Mixin: ``state``, ``close_code``, ``close_reason``, ``latency`` and the closed exception.

    The class using it sets ``_core``, ``_lost``, ``_keepalive_failed``,
    ``_pings`` and ``ping_timeout``.
    """

    __slots__ = ()

    _core: Connection
    _lost: bool
    _keepalive_failed: bool
    _pings: PingTracker[Any]
    ping_timeout: float | None

    @property
    def state(self) -> State:
        """OPEN, CLOSING or CLOSED (CLOSED once the TCP connection is gone)."""
        return State.CLOSED if self._lost else self._core.state

    @property
    def latency(self) -> float | None:
        """Round-trip time of the last answered ping, in seconds (``None`` before the first)."""
        return self._pings.latency

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
