"""The asyncio WebSocket client: ``connect(uri)``."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl as ssl_module
from typing import Any, AsyncIterator, Generator, Iterable, Mapping, Sequence, cast

from .._version import __version__
from ..errors import InvalidHandshake, InvalidStatus, InvalidURI, NegotiationError, OpenTimeout, ProxyError
from ..protocol import deflate as pmd
from ..protocol.client import ClientHandshake, client_options, connect_error
from ..protocol.proxy import Proxy, TunnelHandshake, proxy_tls_error, select_proxy
from .connection import ProtocolBase, WebSocket, set_nodelay, start

__all__ = ["connect"]

_logger = logging.getLogger("wsline.client")


def _retriable(exc: BaseException) -> bool:
    """Whether reconnecting may help after ``exc``."""
    if isinstance(exc, ProxyError):
        return exc.retriable
    if isinstance(exc, InvalidStatus):
        return exc.status >= 500 or exc.status in (408, 429)
    if isinstance(exc, (InvalidURI, NegotiationError, ssl_module.SSLCertVerificationError)):
        return False
    if isinstance(exc, InvalidHandshake):
        return "certificate verification" not in str(exc)
    return isinstance(exc, (OSError, TimeoutError, asyncio.TimeoutError))


class _ClientProtocol(ProtocolBase):
    """Runs the opening handshake (in :class:`ClientHandshake`); the transport then carries the WebSocket."""

    def __init__(self, handshake: ClientHandshake) -> None:
        self.handshake = handshake
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.transport = transport
        set_nodelay(transport)
        transport.write(self.handshake.data_to_send())

    def handshake_data(self, data: memoryview) -> None:
        if self.done.done():
            return
        try:
            opened = self.handshake.receive_data(data)
        except InvalidStatus as exc:  # a refusal, whole: nothing more to read
            self.done.set_exception(exc)
            if self.transport is not None:
                self.transport.close()
            return
        except InvalidHandshake as exc:
            self._fail(exc)
            return
        if opened:
            assert self.transport is not None
            self.transport.pause_reading()
            self.done.set_result(None)

    def _fail(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        # Without connection_made (TLS failed first), create_connection raises the error itself.
        if not self.done.done() and self.transport is not None:
            try:
                self.handshake.receive_eof(str(exc) if exc else "")
            except InvalidHandshake as error:
                self.done.set_exception(error)
        super().connection_lost(exc)


class _TunnelProtocol(asyncio.Protocol):
    """Runs the proxy's tunnel handshake; the transport then goes to the WebSocket protocol."""

    def __init__(self, handshake: TunnelHandshake) -> None:
        self.handshake = handshake
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        set_nodelay(self.transport)
        self._flush()

    def _flush(self) -> None:
        data = self.handshake.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            self.handshake.receive_data(data)  # kept in handshake.extra
            return
        try:
            opened = self.handshake.receive_data(data)
        except (ProxyError, ValueError) as exc:
            self._fail(exc)
            return
        if opened:
            assert self.transport is not None
            self.transport.pause_reading()
            self.done.set_result(None)
        else:
            self._flush()

    def eof_received(self) -> bool | None:
        try:
            self.handshake.receive_eof()
        except ProxyError as exc:
            self._fail(exc)
        return None

    def _fail(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            try:
                self.handshake.receive_eof(exc)
            except ProxyError as error:
                self.done.set_exception(error)


class connect:
    """Open a client connection: ``async with connect(uri) as ws`` or ``ws = await connect(uri)``.

    Awaiting it (or entering ``async with``) runs the TCP connect, TLS, the
    proxy's tunnel if there is one, and the opening handshake, and gives the
    open :class:`~wsline.WebSocket`; leaving the ``async with`` block closes
    it with 1000. ``async for ws in connect(uri)`` reconnects after each drop
    (see :meth:`__aiter__`). The URI and the options are checked when
    ``connect(...)`` is called, before any connection is made. Only the
    ``uri`` is positional.

    :param uri: ``ws://host[:port]/path?query`` or ``wss://...``; anything else
        raises :class:`~wsline.errors.InvalidURI` (a :class:`ValueError`).
    :param subprotocols: subprotocol names to offer, in order of preference;
        the server's choice is ``ws.subprotocol``, and a choice that was not
        offered raises :class:`~wsline.errors.NegotiationError`.
    :param headers: extra request headers, as a mapping or ``(name, value)``
        pairs (a token, a cookie); a name or value HTTP cannot carry raises
        :class:`ValueError`.
    :param origin: the ``Origin`` header to send (browsers always send one;
        by default this client sends none).
    :param compression: ``"deflate"`` (the default) offers permessage-deflate;
        ``None`` does not. Anything else raises :class:`ValueError`.
    :param deflate: a :class:`~wsline.DeflateConfig` for the offer; the default
        is :data:`~wsline.protocol.deflate.DEFAULT_CLIENT_CONFIG`.
    :param open_timeout: seconds for the TCP connect, TLS, the proxy's tunnel
        and the HTTP handshake together; then
        :class:`~wsline.errors.OpenTimeout` (a :class:`TimeoutError`).
        ``None``: no limit.
    :param ping_interval: seconds between keepalive pings; ``None`` sends none.
    :param ping_timeout: seconds to wait for a keepalive ping's pong before the
        connection is considered dead and dropped
        (:class:`~wsline.errors.KeepaliveTimeout`); ``None`` waits forever.
    :param close_timeout: seconds the closing handshake may take before the
        TCP connection is aborted.
    :param max_size: the largest message accepted, in bytes, after
        decompression (1009 beyond); ``None``: no limit.
    :param max_queue: how many received messages may wait unread before
        reading from the socket pauses; ``None``: no limit.
    :param write_limit: the write buffer's high-water mark, in bytes:
        :meth:`WebSocket.send` waits while more than this is buffered.
    :param ssl: for ``wss://``, the :class:`ssl.SSLContext` to use; by default
        (``None`` or ``True``) one from :func:`ssl.create_default_context`,
        which verifies the server's certificate and host name. Given for a
        ``ws://`` URI, it raises :class:`ValueError`.
    :param server_hostname: the name TLS checks the certificate against and
        sends as SNI (default: the URI's host); useful with ``host=``.
    :param sock: an already connected socket to run the handshake on (no
        proxy is used then).
    :param host: connect to this host instead of the URI's (the ``Host``
        header still names the URI's).
    :param port: connect to this port instead of the URI's.
    :param user_agent: the ``User-Agent`` header; ``None`` sends none.
    :param backoff_initial: reconnection (``async for``): the first retry
        waits up to this many seconds.
    :param backoff_max: reconnection: no wait is longer than this.
    :param backoff_factor: reconnection: each failed attempt multiplies the
        longest wait by this.
    :param proxy: an HTTP ``CONNECT`` or SOCKS5 proxy. ``True`` (the default)
        takes it from the environment: ``https_proxy`` for ``wss://``,
        ``http_proxy`` for ``ws://``, then ``all_proxy`` (lowercase names
        first), except for the hosts listed in ``no_proxy``. ``None`` or
        ``False`` never uses one. A URL uses that proxy:
        ``http://[user:password@]host[:port]``, ``https://...`` (TLS to the
        proxy), ``socks5://...`` (this side resolves the server's name) or
        ``socks5h://...`` (the proxy does). TLS to the server runs end to end
        through the tunnel. The proxy chosen is the :attr:`proxy` attribute
        (a :class:`~wsline.protocol.proxy.Proxy`, or ``None``).
    :param proxy_ssl: the :class:`ssl.SSLContext` for an ``https://`` proxy
        (default: :func:`ssl.create_default_context`).
    :raises ~wsline.errors.InvalidURI: for a URI that is not ``ws://`` or
        ``wss://`` (when ``connect(...)`` is called).
    :raises ValueError: for an invalid option (when ``connect(...)`` is called).
    :raises ~wsline.errors.ConnectRefused: (when awaited) nothing listens on
        the server's port; :class:`~wsline.errors.ConnectFailed` for other
        failures to connect (unreachable, a name not found). Both are
        :class:`OSError` subclasses.
    :raises ~wsline.errors.OpenTimeout: after ``open_timeout``.
    :raises ~wsline.errors.InvalidStatus: the server answered with another
        status than 101 (``status``, ``headers`` and ``body`` tell more).
    :raises ~wsline.errors.InvalidHandshake: a bad 101, a failed TLS
        handshake or certificate check; :class:`~wsline.errors.NegotiationError`
        for a bad subprotocol or extension answer.
    :raises ~wsline.errors.ProxyError: the proxy cannot be reached or refuses
        the tunnel (``status`` is e.g. 407 when it wants credentials).
    """

    def __init__(
        self,
        uri: str,
        *,
        subprotocols: Sequence[str] | None = None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        origin: str | None = None,
        compression: str | None = "deflate",
        deflate: pmd.DeflateConfig | None = None,
        open_timeout: float | None = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 10.0,
        max_size: int | None = 2**20,
        max_queue: int | None = 32,
        write_limit: int = 2**16,
        ssl: ssl_module.SSLContext | bool | None = None,
        server_hostname: str | None = None,
        sock: socket.socket | None = None,
        host: str | None = None,
        port: int | None = None,
        user_agent: str | None = f"wsline/{__version__}",
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        backoff_factor: float = 1.618,
        proxy: str | bool | None = True,
        proxy_ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        #: The URI, as given.
        self.uri = uri
        self._wsuri, self.options = client_options(
            uri, ssl=ssl, compression=compression, deflate=deflate, subprotocols=subprotocols,
            headers=headers, origin=origin, user_agent=user_agent, max_size=max_size, max_queue=max_queue,
            write_limit=write_limit, open_timeout=open_timeout, ping_interval=ping_interval,
            ping_timeout=ping_timeout, close_timeout=close_timeout,
        )  # fmt: skip
        self.ssl = ssl
        self.server_hostname = server_hostname
        self.sock = sock
        self.host = host
        self.port = port
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.backoff_factor = backoff_factor
        self._ws: WebSocket | None = None
        #: The proxy the connections go through (a :class:`~wsline.protocol.proxy.Proxy`), or ``None``.
        self.proxy: Proxy | None = None
        if sock is None:
            self.proxy = select_proxy(proxy, self._wsuri.host, self._wsuri.port, self._wsuri.secure)
        self.proxy_ssl = proxy_ssl

    def __aiter__(self) -> AsyncIterator[WebSocket]:
        """Reconnect forever: ``async for ws in connect(uri): ...``.

        Each iteration gets a fresh connection (closed when the iteration ends).
        Failed attempts (refused, reset, timed out, 5xx, 429) are retried after
        a jittered exponential backoff: a random delay up to ``backoff_initial``
        x ``backoff_factor`` ** attempt, capped at ``backoff_max`` seconds, reset
        after each successful connection. Errors a retry cannot cure (a bad URI,
        a 4xx refusal, a failed negotiation or TLS verification) are raised.
        """
        return self._reconnecting()

    def backoff_delay(self, attempt: int) -> float:
        """The delay before retry number ``attempt`` (0-based): full jitter."""
        ceiling = min(self.backoff_max, self.backoff_initial * self.backoff_factor**attempt)
        return random.uniform(0, ceiling)

    async def _reconnecting(self) -> AsyncIterator[WebSocket]:
        attempt = 0
        while True:
            try:
                ws = await self._connect()
            except Exception as exc:
                if not _retriable(exc):
                    raise
                delay = self.backoff_delay(attempt)
                attempt += 1
                _logger.info(
                    "connecting to %s failed (%s); retry %d in %.2f s", self.uri, exc, attempt, delay
                )
                await asyncio.sleep(delay)
                continue
            attempt = 0
            try:
                yield ws
            finally:
                await ws.close()

    def __await__(self) -> Generator[Any, None, WebSocket]:
        return self._connect().__await__()

    async def __aenter__(self) -> WebSocket:
        self._ws = await self._connect()
        return self._ws

    def __enter__(self) -> None:
        raise TypeError(
            "use 'async with wsline.connect(...)' inside a coroutine, "
            "or the blocking client: 'with wsline.sync.connect(...)'"
        )

    def __exit__(self, *exc: object) -> None:  # pragma: no cover - __enter__ always raises
        pass

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()

    async def _connect(self) -> WebSocket:
        open_timeout = self.options.open_timeout
        if open_timeout is None:
            return await self._open()
        try:
            return await asyncio.wait_for(self._open(), open_timeout)
        except asyncio.TimeoutError:
            via = f" via proxy {self.proxy}" if self.proxy is not None else ""
            raise OpenTimeout(
                f"opening handshake with {self.uri}{via} timed out after {open_timeout:g} s"
            ) from None

    async def _open(self) -> WebSocket:
        loop = asyncio.get_running_loop()
        wsuri = self._wsuri
        handshake = ClientHandshake(wsuri, self.options)
        ssl_context: ssl_module.SSLContext | None = None
        if wsuri.secure:
            if isinstance(self.ssl, ssl_module.SSLContext):
                ssl_context = self.ssl
            else:
                ssl_context = ssl_module.create_default_context()
        kwargs: dict[str, Any] = {}
        if ssl_context is not None:
            kwargs["ssl"] = ssl_context
            kwargs["server_hostname"] = self.server_hostname or wsuri.host
        protocol = _ClientProtocol(handshake)
        transport: asyncio.Transport
        try:
            if self.proxy is not None:
                transport = await self._open_tunnel(self.proxy, protocol, ssl_context)
            elif self.sock is not None:
                transport, _ = await loop.create_connection(lambda: protocol, sock=self.sock, **kwargs)
            else:
                transport, _ = await loop.create_connection(
                    lambda: protocol,
                    self.host or wsuri.host,
                    self.port or wsuri.port,
                    **kwargs,
                )
        except OSError as exc:  # refused, unreachable, TLS failed...
            raise connect_error(exc, self.host or wsuri.host, self.port or wsuri.port) from exc
        try:
            await protocol.done
        except BaseException:
            transport.abort()
            raise
        core = handshake.connection
        response = handshake.response
        assert core is not None and response is not None
        options = self.options
        ws = WebSocket(
            transport,
            core,
            request=handshake.request,
            response=response,
            subprotocol=handshake.subprotocol,
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_timeout,
            close_timeout=options.close_timeout,
            max_queue=options.max_queue,
            write_limit=options.write_limit,
        )
        transport.set_write_buffer_limits(high=options.write_limit)
        protocol.ws = ws
        start(ws, handshake.trailing_data())
        return ws

    async def _open_tunnel(
        self, proxy: Proxy, protocol: _ClientProtocol, ssl_context: ssl_module.SSLContext | None
    ) -> asyncio.Transport:
        """Connect to the proxy, open a tunnel to the server, run TLS through it; hand it to ``protocol``."""
        loop = asyncio.get_running_loop()
        wsuri = self._wsuri
        host = self.host or wsuri.host
        port = self.port or wsuri.port
        if not proxy.remote_dns:  # socks5://: the client resolves the name
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise ProxyError(
                    f"cannot resolve {host} for SOCKS5 proxy {proxy.address}: {exc}",
                    proxy=proxy.address,
                    retriable=True,
                ) from exc
            host = str(infos[0][4][0])
        tunnel = _TunnelProtocol(TunnelHandshake(proxy, host, port, self.options.user_agent))
        proxy_kwargs: dict[str, Any] = {}
        if proxy.tls:
            proxy_kwargs["ssl"] = self.proxy_ssl or ssl_module.create_default_context()
            proxy_kwargs["server_hostname"] = proxy.host
        try:
            proxy_transport, _ = await loop.create_connection(
                lambda: tunnel, proxy.host, proxy.port, **proxy_kwargs
            )
        except ssl_module.SSLError as exc:
            raise proxy_tls_error(proxy, exc) from exc
        except OSError as exc:
            raise ProxyError(
                f"cannot reach proxy {proxy.address}: {exc}", proxy=proxy.address, retriable=True
            ) from exc
        transport = proxy_transport
        try:
            await tunnel.done
            if tunnel.handshake.extra:
                raise ProxyError(
                    f"proxy {proxy.address} sent data through the tunnel before the request",
                    proxy=proxy.address,
                )
            if ssl_context is not None:
                tls_transport = await loop.start_tls(
                    transport,
                    protocol,
                    ssl_context,
                    server_hostname=self.server_hostname or wsuri.host,
                )
                if tls_transport is None:  # pragma: no cover - only for a closed transport
                    raise ProxyError(
                        f"proxy {proxy.address} closed the tunnel", proxy=proxy.address, retriable=True
                    )
                transport = tls_transport
                protocol.connection_made(transport)
            else:
                transport.set_protocol(protocol)
                protocol.connection_made(transport)
                transport.resume_reading()
        except BaseException:
            transport.abort()
            raise
        return transport
