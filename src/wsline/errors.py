"""The exceptions wsline raises.

Everything derives from :class:`WebSocketError`. A connection that has closed
raises :class:`ConnectionClosed` (split into :class:`ConnectionClosedOK` for
codes 1000/1001 and :class:`ConnectionClosedError` otherwise); a failed opening
handshake raises :class:`InvalidHandshake` or one of its subclasses.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "WebSocketError",
    "ConnectionClosed",
    "ConnectionClosedOK",
    "ConnectionClosedError",
    "KeepaliveTimeout",
    "InvalidHandshake",
    "InvalidStatus",
    "InvalidURI",
    "NegotiationError",
    "ProtocolError",
    "PayloadTooBig",
    "InvalidPayload",
    "HandshakeRejected",
    "ProxyError",
    "ConnectFailed",
    "ConnectRefused",
    "OpenTimeout",
    "ConcurrencyError",
]

Initiator = Literal["local", "remote", "none"]

#: Human readable names of the registered close codes (RFC 6455 7.4.1, IANA).
CLOSE_CODE_NAMES: dict[int, str] = {
    1000: "normal closure",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status received",
    1006: "abnormal closure",
    1007: "invalid frame payload data",
    1008: "policy violation",
    1009: "message too big",
    1010: "mandatory extension missing",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
    1015: "TLS handshake failure",
}


class WebSocketError(Exception):
    """Base class of every wsline exception."""


class ConnectionClosed(WebSocketError):
    """The connection is closed (or closing); no more messages can be exchanged.

    ``code`` and ``reason`` are what the peer sent in its close frame (1005 when
    its close frame had no code, 1006 when no close frame arrived at all).
    ``initiator`` says which side started the closing: ``"local"``, ``"remote"``
    or ``"none"`` when the connection was lost without a closing handshake.
    ``sent_code`` is the code of the close frame this side sent, if it sent
    one (``None`` otherwise).
    """

    def __init__(
        self,
        code: int,
        reason: str = "",
        initiator: Initiator = "none",
        sent_code: int | None = None,
    ) -> None:
        self.code = code
        self.reason = reason
        self.initiator: Initiator = initiator
        self.sent_code = sent_code
        super().__init__(code, reason)

    def __str__(self) -> str:
        name = CLOSE_CODE_NAMES.get(self.code, "")
        text = f"{self.code} ({name})" if name else str(self.code)
        if self.reason:
            text += f" {self.reason!r}"
        who = {
            "local": "closed by this side",
            "remote": "closed by the peer",
            "none": "connection lost",
        }[self.initiator]
        return f"connection closed: {text}; {who}"


class ConnectionClosedOK(ConnectionClosed):
    """The connection closed normally (1000 or 1001)."""


class ConnectionClosedError(ConnectionClosed):
    """The connection closed abnormally: a protocol error, a reset, code 1006..."""


class KeepaliveTimeout(ConnectionClosedError):
    """No pong came back within ``ping_timeout``: the peer is considered dead.

    ``timeout`` is that ``ping_timeout``; ``last_rtt`` the round-trip time of
    the last ping that was answered, in seconds (``None`` if none was). The
    connection was dropped: ``code`` is 1006, ``sent_code`` 1011.
    """

    def __init__(self, timeout: float, last_rtt: float | None = None) -> None:
        super().__init__(1006, "keepalive ping timeout", "local", 1011)
        self.timeout = timeout
        self.last_rtt = last_rtt

    def __str__(self) -> str:
        rtt = "" if self.last_rtt is None else f"; last round trip {self.last_rtt * 1000:.1f} ms"
        return f"keepalive ping timeout: no pong within {self.timeout:g} s{rtt}"


class ProtocolError(WebSocketError):
    """The peer broke RFC 6455; ``code`` is the close code to fail with.

    ``reason`` says what was wrong (it goes into the close frame). The sans-I/O
    core reports it in a :class:`~wsline.protocol.connection.Failure` event;
    the I/O layers close the connection with ``code``.
    """

    code = 1002

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if code is not None:
            self.code = code


class PayloadTooBig(ProtocolError):
    """A message or frame exceeds the configured size limit (close code 1009)."""

    code = 1009


class InvalidPayload(ProtocolError):
    """A text message is not valid UTF-8, or compressed data is corrupt (1007)."""

    code = 1007


class InvalidHandshake(WebSocketError):
    """The opening handshake failed."""


class ConnectFailed(WebSocketError, OSError):
    """The TCP connection to the server could not be made: refused, unreachable, a name not found.

    An :class:`OSError` too: ``errno`` is the socket's error, and ``__cause__``
    the original exception (e.g. :class:`ConnectionRefusedError`).
    """


class ConnectRefused(ConnectFailed, ConnectionRefusedError):
    """Nothing listens on the server's port (also a :class:`ConnectionRefusedError`)."""


class OpenTimeout(WebSocketError, TimeoutError):
    """The opening handshake (TCP, TLS, proxy and HTTP together) took longer than ``open_timeout``.

    A :class:`TimeoutError` too.
    """


class ConcurrencyError(WebSocketError, RuntimeError):
    """Two coroutines (or threads) called ``recv()`` at once on one connection.

    A connection's messages come in one order; read them from one place (a
    :class:`RuntimeError` too).
    """


class InvalidURI(InvalidHandshake, ValueError):
    """The URI is not a valid ws:// or wss:// URI."""


class NegotiationError(InvalidHandshake):
    """Subprotocol or extension negotiation failed."""


class HandshakeRejected(InvalidHandshake):
    """A server-side handshake error: answer the request with ``status``.

    ``reason`` is the text of the answer (its body), ``headers`` extra header
    fields for it (e.g. ``Allow``). Raised by request validation, and by a
    ``process_request`` hook or an HTTP route that wants to answer with a
    status (``raise HandshakeRejected(401, "log in first")``); the server turns
    it into an HTTP response.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason
        self.headers = headers or []


class InvalidStatus(InvalidHandshake):
    """The server answered the opening handshake with something other than 101.

    ``status`` and ``reason_phrase`` are its status line, ``headers`` its
    header fields as ``(name, value)`` pairs, ``body`` its body (up to 64 KiB:
    a refusal usually says why).
    """

    def __init__(
        self,
        status: int,
        reason_phrase: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> None:
        self.status = status
        self.reason_phrase = reason_phrase
        self.headers = headers
        self.body = body
        super().__init__(status, reason_phrase)

    def __str__(self) -> str:
        text = f"server rejected WebSocket connection: expected 101, got {self.status}"
        if self.reason_phrase:
            text += f" {self.reason_phrase}"
        body = self.body[:500].decode("utf-8", "replace").strip()
        if body:
            text += f": {body}"
        return text


class ProxyError(InvalidHandshake):
    """Going through a proxy failed: unreachable, refused the tunnel, or answered garbage.

    ``proxy`` is the proxy's ``host:port`` (never its credentials). ``status``,
    ``reason`` and ``headers`` are those of an HTTP proxy's answer to
    ``CONNECT`` (``status`` is ``None`` when there was none: the proxy could
    not be reached, closed the connection, answered garbage, or is a SOCKS5
    proxy). ``retriable`` says whether trying again may help: ``False`` for a
    407 (authentication required), a 403 and other refusals, ``True`` for
    5xx answers (502: the proxy could not reach the server), an unreachable
    proxy or one that closed the connection.
    """

    def __init__(
        self,
        message: str,
        *,
        proxy: str = "",
        status: int | None = None,
        reason: str = "",
        headers: list[tuple[str, str]] | None = None,
        retriable: bool = False,
    ) -> None:
        super().__init__(message)
        self.proxy = proxy
        self.status = status
        self.reason = reason
        self.headers = headers or []
        self.retriable = retriable
