"""The blocking WebSocket client: ``wsline.sync.connect(uri)``.

Built on the same sans-I/O :class:`~wsline.protocol.connection.Connection` as
the asyncio client, with plain :mod:`socket` and :mod:`ssl`.

Threads
-------
Each connection has a background *reader thread*: it reads the socket, feeds
the protocol core and queues the messages for :meth:`ClientConnection.recv`.
Pings are therefore answered and the closing handshake completes while the
application is busy elsewhere, and ``recv(timeout=...)`` is a plain wait on a
condition variable. ``ping_interval`` adds a second thread for keepalive pings.

Every frame is made by the core under one lock and written by the thread that
holds the *write lock*, in the order the core made it (permessage-deflate with
context takeover depends on that order). Control frames made outside
:meth:`ClientConnection.send` (pongs and the close reply from the reader, and
:meth:`~ClientConnection.close`, :meth:`~ClientConnection.ping`) are queued and
written by whichever thread writes next: the reader never waits for the
``sendall`` of another thread, and a close frame can go out between the
fragments of a message.

All methods may be called from any thread.
"""

from __future__ import annotations

import collections
import logging
import socket
import ssl as ssl_module
import threading
import time
from types import TracebackType
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, Union

from .._status import ConnectionStatus, format_address
from .._version import __version__
from ..errors import (
    ConnectionClosed,
    ConnectionClosedOK,
    InvalidHandshake,
    ProxyError,
)
from ..protocol import deflate as pmd
from ..protocol.client import ClientHandshake, client_options
from ..protocol.connection import CloseFrame, Connection, Failure, InvalidState, Pong
from ..protocol.http11 import Request, Response
from ..protocol.proxy import Proxy, TunnelHandshake, proxy_tls_error, select_proxy
from ..protocol.session import Fragmenter, PingTracker, check_pieces

__all__ = ["connect", "ClientConnection", "Data"]

#: A received message: ``str`` for text, ``bytes`` for binary.
Data = Union[str, bytes]
Sendable = Union[str, bytes, bytearray, memoryview]
#: The pieces of one fragmented message (see :data:`wsline.aio.connection.Fragments`).
Fragments = Union[Sequence[Sendable], Iterator[Sendable]]

logger = logging.getLogger("wsline.sync")

_RECV_SIZE = 64 * 1024


# ---------------------------------------------------------------- connection


class _PingWaiter:
    __slots__ = ("error", "event", "rtt")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.rtt = 0.0
        self.error: ConnectionClosed | None = None


class ClientConnection(ConnectionStatus):
    """An open client connection (made by :func:`connect`).

    ``recv()`` / ``for message in ws`` receive (``str`` for text, ``bytes`` for
    binary); ``send(message)`` sends; ``close()`` runs the closing handshake.
    Once the connection is closed, ``recv`` and ``send`` raise
    :class:`~wsline.errors.ConnectionClosedOK` (codes 1000/1001) or
    :class:`~wsline.errors.ConnectionClosedError`.

    Made by :func:`connect` (never constructed directly); ``ping_interval``,
    ``ping_timeout``, ``close_timeout`` and ``max_queue`` are the options given
    to it, kept as attributes.
    """

    def __init__(
        self,
        sock: socket.socket,
        core: Connection,
        *,
        request: Request,
        response: Response,
        subprotocol: str | None,
        ping_interval: float | None = None,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 10.0,
        max_queue: int | None = 32,
        received: bytes = b"",
    ) -> None:
        self._sock = sock
        self._core = core
        #: The upgrade request that was sent.
        self.request = request
        #: The server's 101 response.
        self.response = response
        #: The negotiated subprotocol, or ``None``.
        self.subprotocol = subprotocol
        #: The server's address as the socket gives it.
        self.remote_address: Any = _address(sock, "getpeername")
        #: This side's address.
        self.local_address: Any = _address(sock, "getsockname")
        #: Seconds between keepalive pings (``None``: no keepalive).
        self.ping_interval = ping_interval
        #: Seconds to wait for a keepalive ping's pong.
        self.ping_timeout = ping_timeout
        #: Seconds the closing handshake may take.
        self.close_timeout = close_timeout
        #: How many received messages may wait before the reader stops reading.
        self.max_queue = max_queue

        # The core and the frames waiting to be written (in the core's order).
        self._core_lock = threading.Lock()
        self._pending: list[bytes] = []
        # Held while writing to the socket; the socket is closed under it too.
        self._write_lock = threading.Lock()
        self._sock_closed = False
        # Received messages, pings, and the end of the connection.
        self._cond = threading.Condition()
        self._messages: collections.deque[Data] = collections.deque()
        self._ended = False  # no more messages: close frame, failure or lost
        self._lost = False  # the reader is done: the TCP connection is over
        self._draining = False  # closing: the reader ignores max_queue
        self._reader_waiting = False
        self._pings: PingTracker[_PingWaiter] = PingTracker()
        self._close_timer: threading.Timer | None = None
        self._keepalive_failed = False
        self._stop = threading.Event()

        sock.settimeout(None)
        if received:  # bytes that came in the same read as the 101
            self._process(memoryview(received))
        name = format_address(self.remote_address)
        self._reader = threading.Thread(target=self._read_loop, name=f"wsline-reader {name}", daemon=True)
        self._reader.start()
        self._keepalive_thread: threading.Thread | None = None
        if ping_interval is not None:
            self._keepalive_thread = threading.Thread(
                target=self._keepalive, name=f"wsline-keepalive {name}", daemon=True
            )
            self._keepalive_thread.start()

    # ------------------------------------------------------------------ status

    def __repr__(self) -> str:
        return f"<ClientConnection {format_address(self.remote_address)} {self.state.name}>"

    # --------------------------------------------------------------- reading

    def _read_loop(self) -> None:
        buf = bytearray(_RECV_SIZE)
        view = memoryview(buf)
        error: BaseException | None = None
        try:
            while True:
                if self.max_queue is not None:
                    self._wait_for_room(self.max_queue)
                try:
                    n = self._sock.recv_into(buf)
                except OSError as exc:  # reset, TLS error, or aborted by this side
                    error = exc
                    break
                if not n:
                    break
                self._process(view[:n])
        except Exception as exc:
            logger.error("reader thread failed: %r", exc, exc_info=True)
            error = exc
        finally:
            self._connection_lost(error)

    def _wait_for_room(self, max_queue: int) -> None:
        """Stop reading while ``max_queue`` messages wait (until one is read, or closing)."""
        with self._cond:
            while len(self._messages) >= max_queue and not self._draining:
                self._reader_waiting = True
                self._cond.wait()
            self._reader_waiting = False

    def _process(self, data: memoryview) -> None:
        """Feed received bytes to the core and act on the events."""
        core = self._core
        with self._core_lock:
            events = core.receive_data(data)
            if core.outbox:
                self._pending.append(core.take_outbox())
        if not events:
            self._flush()
            return
        closing = False
        with self._cond:
            for event in events:
                kind = type(event)
                if kind is str or kind is bytes:
                    self._messages.append(event)  # type: ignore[arg-type]
                elif kind is Pong:
                    self._on_pong(event.payload)  # type: ignore[union-attr]
                elif kind is CloseFrame:
                    closing = True
                elif kind is Failure:
                    err = event.error  # type: ignore[union-attr]
                    logger.info("failing connection with %d: %s", err.code, err.reason)
                    closing = True
            if closing:
                self._ended = True
            self._cond.notify_all()
        if closing:
            with self._core_lock:
                close = core.close()  # after a failure; the reply to a close frame went out already
                if close:
                    self._pending.append(close)
            # The server closes the TCP connection first (RFC 6455 7.1.1).
            self._start_close_timer()
        self._flush()

    def _on_pong(self, payload: bytes) -> None:
        # Called with self._cond held.
        for waiter, rtt in self._pings.pong(payload, time.monotonic()):
            waiter.rtt = rtt
            waiter.event.set()

    def _connection_lost(self, error: BaseException | None) -> None:
        if error is not None:
            logger.debug("connection lost: %r", error)
        with self._core_lock:
            self._core.receive_eof()
            self._pending.clear()
        with self._cond:
            self._lost = True
            self._ended = True
            self._draining = True
            closed = self._closed_error()
            for waiter in self._pings.clear():
                waiter.error = closed
                waiter.event.set()
            timer, self._close_timer = self._close_timer, None
            self._cond.notify_all()
        if timer is not None:
            timer.cancel()
        self._stop.set()
        self._shutdown()  # a writer blocked in sendall fails at once
        self._flush()  # closes the socket unless another thread is writing (then it does)

    # ------------------------------------------------------------- receiving

    def recv(self, timeout: float | None = None) -> Data:
        """Wait for the next message: ``str`` for text, ``bytes`` for binary.

        Raises :class:`TimeoutError` when ``timeout`` seconds pass without a
        message (the connection stays usable), and
        :class:`~wsline.errors.ConnectionClosed` once the connection is closed
        and every message received before was read.
        """
        with self._cond:
            messages = self._messages
            if not messages:
                deadline = None if timeout is None else time.monotonic() + timeout
                while not messages:
                    if self._ended:
                        raise self._closed_error().with_traceback(None)
                    if deadline is None:
                        self._cond.wait()
                    else:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise TimeoutError("recv() timed out")
                        self._cond.wait(left)
            message = messages.popleft()
            if self._reader_waiting:
                self._cond.notify_all()
            return message

    def __iter__(self) -> Iterator[Data]:
        """Yield messages until the connection closes; ends quietly on 1000/1001."""
        while True:
            try:
                yield self.recv()
            except ConnectionClosedOK:
                return

    # --------------------------------------------------------------- sending

    def send(self, message: Sendable | Fragments, *, compress: bool | None = None) -> None:
        """Send a message: ``str`` as text; ``bytes``, ``bytearray`` or ``memoryview`` as binary.

        An iterable of such pieces goes out as one fragmented message (all
        pieces of one kind; fragments are never compressed). ``compress=False``
        skips compression for this message. Blocks while the socket's send
        buffer is full.
        """
        if isinstance(message, (str, bytes, bytearray, memoryview)):
            self._send_message(message, compress)
        else:
            self._send_fragments(message)

    def _send_message(self, message: Sendable, compress: bool | None) -> None:
        try:
            with self._write_lock:
                self._write_frame(lambda core: core.send_message(message, compress=compress))
        finally:
            self._flush()

    def _send_fragments(self, pieces: Iterable[Sendable]) -> None:
        check_pieces(pieces, allow_async=False)
        try:
            with self._write_lock:
                fragmenter = Fragmenter(self._core)
                try:
                    for piece in pieces:
                        self._write_frame(lambda _: fragmenter.push(piece))  # noqa: B023 - called at once
                    self._write_frame(lambda _: fragmenter.finish())
                except BaseException:
                    # Half a message on the wire leaves the stream unusable: close (1011).
                    with self._core_lock:
                        close = fragmenter.abort()
                        if close:
                            self._pending.append(close)
                    if close:
                        self._start_close_timer()
                    raise
        finally:
            self._flush()

    def _write_frame(self, make: Callable[[Connection], bytes]) -> None:
        """Make a frame with the core and write it after the queued frames (write lock held)."""
        if self._lost:
            raise self._closed_error().with_traceback(None)
        frame: bytes | None = None
        with self._core_lock:
            try:
                frame = make(self._core)
            except InvalidState:
                pass
            chunks = self._pending
            self._pending = []
        if frame:
            chunks.append(frame)
        ok = self._write(b"".join(chunks) if len(chunks) > 1 else chunks[0]) if chunks else True
        if frame is None:
            raise self._closed_error().with_traceback(None)
        if not ok:
            self._reader.join(1.0)  # the reader sees the end and settles the close code
            raise self._closed_error().with_traceback(None)

    def _write(self, data: bytes) -> bool:
        """Write with the write lock held; on failure drop the connection."""
        try:
            self._sock.sendall(data)
            return True
        except OSError as exc:
            logger.debug("write failed: %r", exc)
            self._shutdown()
            return False

    def _flush(self) -> None:
        """Write queued frames unless another thread is writing (it will write them)."""
        while True:
            with self._core_lock:
                work = bool(self._pending) or (self._lost and not self._sock_closed)
            if not work or not self._write_lock.acquire(blocking=False):
                return
            try:
                with self._core_lock:
                    data = b"".join(self._pending)
                    self._pending.clear()
                if self._lost:
                    if not self._sock_closed:
                        self._sock_closed = True
                        self._sock.close()
                elif data:
                    self._write(data)
            finally:
                self._write_lock.release()

    # ------------------------------------------------------------ ping / pong

    def ping(self, data: str | bytes | None = None, *, timeout: float | None = None) -> float:
        """Send a ping and wait for its pong; return the round-trip time in seconds.

        ``data`` is the payload (4 random bytes by default, at most 125 bytes).
        Waits ``timeout`` seconds (default: ``ping_timeout``; ``None`` there
        waits for ever), then raises :class:`TimeoutError`.
        """
        waiter = _PingWaiter()
        with self._cond:
            if self._lost:
                raise self._closed_error().with_traceback(None)
            payload = self._pings.add(data, waiter, time.monotonic())
        frame = None
        with self._core_lock:
            try:
                frame = self._core.send_ping(payload)
            except InvalidState:
                pass
            else:
                self._pending.append(frame)
        if frame is None:
            with self._cond:
                self._pings.discard(payload, waiter)
            raise self._closed_error().with_traceback(None)
        self._flush()
        wait = self.ping_timeout if timeout is None else timeout
        if not waiter.event.wait(wait):
            with self._cond:
                self._pings.discard(payload, waiter)
            if not waiter.event.is_set():
                raise TimeoutError(f"no pong within {wait:g} s")
        if waiter.error is not None:
            raise waiter.error
        return waiter.rtt

    def pong(self, data: str | bytes = b"") -> None:
        """Send an unsolicited pong (a unidirectional heartbeat)."""
        try:
            with self._write_lock:
                self._write_frame(lambda core: core.send_pong(data))
        finally:
            self._flush()

    def _keepalive(self) -> None:
        interval = self.ping_interval
        assert interval is not None
        while not self._stop.wait(interval):
            try:
                self.ping(timeout=self.ping_timeout)
            except ConnectionClosed:
                return
            except TimeoutError:
                if self._lost:
                    return
                logger.info("no pong within %g s: closing the connection", self.ping_timeout)
                self._keepalive_failed = True
                self._queue_close(1011, "keepalive ping timeout")
                self._flush()
                self._abort()
                return

    # ----------------------------------------------------------------- close

    def _queue_close(self, code: int, reason: str) -> None:
        """Queue a close frame (unless one was sent) and start the close timer."""
        if self._lost:
            return
        with self._core_lock:
            data = self._core.close(code, reason)  # b"" when a close frame went out already
            if data:
                self._pending.append(data)
        self._start_close_timer()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Run the closing handshake and wait until the TCP connection is closed.

        Waits ``close_timeout`` seconds for the server's close frame and the
        end of the TCP connection, then drops the connection. Never raises
        because the connection is already closed.
        """
        if not self._lost:
            with self._cond:
                self._draining = True  # messages keep arriving until the server's close frame
                self._cond.notify_all()
            self._queue_close(code, reason)
            self._flush()
        if threading.current_thread() is not self._reader:
            self._reader.join(self.close_timeout + 1.0)
            if self._reader.is_alive():  # pragma: no cover - defensive
                logger.warning("reader thread still running after close()")

    def _start_close_timer(self) -> None:
        with self._cond:
            if self._close_timer is not None or self._lost:
                return
            timer = threading.Timer(self.close_timeout, self._close_timed_out)
            timer.daemon = True
            self._close_timer = timer
        timer.start()

    def _close_timed_out(self) -> None:
        if not self._lost:
            logger.info("closing handshake timed out after %g s; dropping the connection", self.close_timeout)
            self._abort()

    def _abort(self) -> None:
        """Drop the TCP connection without waiting; the reader sees the end."""
        with self._cond:
            self._draining = True
            self._cond.notify_all()
        self._shutdown()

    def _shutdown(self) -> None:
        # socket.socket.shutdown, not SSLSocket.shutdown: the latter drops the
        # TLS object under the feet of a concurrent reader or writer.
        try:
            socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
        except OSError:
            pass

    def __enter__(self) -> ClientConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _address(sock: socket.socket, method: str) -> Any:
    try:
        return getattr(sock, method)()
    except OSError:  # pragma: no cover - the peer is already gone
        return None


# ----------------------------------------------------------------- handshake


class _Deadline:
    def __init__(self, timeout: float | None) -> None:
        self.end = None if timeout is None else time.monotonic() + timeout

    def left(self) -> float | None:
        """Seconds left; raises :class:`TimeoutError` when none are."""
        if self.end is None:
            return None
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("open_timeout passed")
        return left


def connect(
    uri: str,
    *,
    subprotocols: Sequence[str] | None = None,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    origin: str | None = None,
    compression: str | None = "deflate",
    deflate: pmd.DeflateConfig | None = None,
    open_timeout: float | None = 10.0,
    ping_interval: float | None = None,
    ping_timeout: float | None = 20.0,
    close_timeout: float = 10.0,
    max_size: int | None = 2**20,
    max_queue: int | None = 32,
    ssl: ssl_module.SSLContext | bool | None = None,
    server_hostname: str | None = None,
    sock: socket.socket | None = None,
    host: str | None = None,
    port: int | None = None,
    user_agent: str | None = f"wsline/{__version__}",
    proxy: str | bool | None = True,
    proxy_ssl: ssl_module.SSLContext | None = None,
) -> ClientConnection:
    """Open a client connection; use as ``with connect(uri) as ws:`` or call ``ws.close()``.

    Connects (TCP, TLS for ``wss://``, the proxy's tunnel if there is one),
    runs the opening handshake and returns the open
    :class:`ClientConnection`; leaving the ``with`` block closes it with 1000.
    The options are those of :class:`wsline.connect` (asyncio), without
    ``write_limit`` and the reconnection backoff; the differences are
    keepalive (off here by default) and ``wss://`` through an ``https://``
    proxy (not done here). Only the ``uri`` is positional.

    :param uri: ``ws://host[:port]/path?query`` or ``wss://...``; anything else
        raises :class:`~wsline.errors.InvalidURI` (a :class:`ValueError`).
    :param subprotocols: subprotocol names to offer, in order of preference;
        the server's choice is ``ws.subprotocol``, and a choice that was not
        offered raises :class:`~wsline.errors.NegotiationError`.
    :param headers: extra request headers, as a mapping or ``(name, value)``
        pairs; a name or value HTTP cannot carry raises :class:`ValueError`.
    :param origin: the ``Origin`` header to send (by default none is sent).
    :param compression: ``"deflate"`` (the default) offers permessage-deflate;
        ``None`` does not. Anything else raises :class:`ValueError`.
    :param deflate: a :class:`~wsline.DeflateConfig` for the offer; the default
        is :data:`~wsline.protocol.deflate.DEFAULT_CLIENT_CONFIG`.
    :param open_timeout: seconds for the TCP connect, TLS, the proxy's tunnel
        and the HTTP handshake together; then :class:`TimeoutError`.
        ``None``: no limit.
    :param ping_interval: seconds between keepalive pings, sent from a
        background thread; ``None`` (the default here) sends none.
    :param ping_timeout: with ``ping_interval``, seconds to wait for a pong
        before the connection is considered dead and dropped
        (:class:`~wsline.errors.KeepaliveTimeout`); ``None`` waits forever.
    :param close_timeout: seconds the closing handshake may take before the
        TCP connection is dropped.
    :param max_size: the largest message accepted, in bytes, after
        decompression (1009 beyond); ``None``: no limit.
    :param max_queue: how many received messages may wait for
        :meth:`~ClientConnection.recv` before the reader thread stops reading
        (TCP then pushes back on the server); ``None``: no limit.
    :param ssl: for ``wss://``, the :class:`ssl.SSLContext` to use; by default
        (``None`` or ``True``) one from :func:`ssl.create_default_context`,
        which verifies the server's certificate and host name. Given for a
        ``ws://`` URI, it raises :class:`ValueError`.
    :param server_hostname: the name TLS checks the certificate against and
        sends as SNI (default: the URI's host).
    :param sock: an already connected socket to run the handshake on (no
        proxy is used then).
    :param host: connect to this host instead of the URI's (the ``Host``
        header still names the URI's).
    :param port: connect to this port instead of the URI's.
    :param user_agent: the ``User-Agent`` header; ``None`` sends none.
    :param proxy: as for :class:`wsline.connect`: ``True`` (the default) takes
        the proxy from the environment (``https_proxy`` for ``wss://``,
        ``http_proxy`` for ``ws://``, then ``all_proxy``; hosts listed in
        ``no_proxy`` are reached directly), ``None`` or ``False`` never uses
        one, a URL (``http://[user:password@]host[:port]``, ``https://...``,
        ``socks5://...``, ``socks5h://...``) uses that proxy. ``wss://``
        through an ``https://`` proxy (TLS inside TLS) raises
        :class:`ValueError`: use the asyncio client for it.
    :param proxy_ssl: the :class:`ssl.SSLContext` for an ``https://`` proxy.
    :raises ~wsline.errors.InvalidURI: for a URI that is not ``ws://`` or ``wss://``.
    :raises ValueError: for an invalid option.
    :raises OSError: when the server cannot be reached (e.g.
        :class:`ConnectionRefusedError`).
    :raises TimeoutError: after ``open_timeout``.
    :raises ~wsline.errors.InvalidStatus: the server answered with another
        status than 101 (``status``, ``headers`` and ``body`` tell more).
    :raises ~wsline.errors.InvalidHandshake: a bad 101, or a failed TLS
        certificate check.
    :raises ~wsline.errors.ProxyError: the proxy cannot be reached or refuses
        the tunnel.
    """
    wsuri, options = client_options(
        uri, ssl=ssl, compression=compression, deflate=deflate, subprotocols=subprotocols, headers=headers,
        origin=origin, user_agent=user_agent, max_size=max_size, max_queue=max_queue,
        open_timeout=open_timeout, ping_interval=ping_interval, ping_timeout=ping_timeout,
        close_timeout=close_timeout,
    )  # fmt: skip
    handshake = ClientHandshake(wsuri, options, defer_close_reply=False)
    proxy_info = None if sock is not None else select_proxy(proxy, wsuri.host, wsuri.port, wsuri.secure)
    if proxy_info is not None and proxy_info.tls and wsuri.secure:
        raise ValueError(
            f"the blocking client cannot open {uri} through the https:// proxy {proxy_info} "
            "(TLS inside TLS); use an http:// proxy or the asyncio client"
        )
    deadline = _Deadline(open_timeout)
    conn: socket.socket | None = sock
    try:
        if conn is None and proxy_info is not None:
            conn = _open_tunnel(
                proxy_info, host or wsuri.host, port or wsuri.port, deadline, proxy_ssl, user_agent
            )
        elif conn is None:
            conn = socket.create_connection((host or wsuri.host, port or wsuri.port), timeout=deadline.left())
        _set_nodelay(conn)
        if wsuri.secure:
            context = ssl if isinstance(ssl, ssl_module.SSLContext) else ssl_module.create_default_context()
            conn.settimeout(deadline.left())
            try:
                conn = context.wrap_socket(conn, server_hostname=server_hostname or wsuri.host)
            except ssl_module.SSLCertVerificationError as exc:
                raise InvalidHandshake(
                    f"TLS certificate verification failed for {wsuri.host}: {exc.verify_message}"
                ) from exc
        conn.settimeout(deadline.left())
        conn.sendall(handshake.data_to_send())
        _run_handshake(conn, handshake, deadline)
    except TimeoutError:
        if conn is not None:
            conn.close()
        via = f" via proxy {proxy_info}" if proxy_info is not None else ""
        raise TimeoutError(f"opening handshake with {uri}{via} timed out after {open_timeout:g} s") from None
    except BaseException:
        if conn is not None:
            conn.close()
        raise
    assert handshake.connection is not None and handshake.response is not None
    return ClientConnection(
        conn,
        handshake.connection,
        request=handshake.request,
        response=handshake.response,
        subprotocol=handshake.subprotocol,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        close_timeout=close_timeout,
        max_queue=max_queue,
        received=handshake.trailing_data(),
    )


def _run_handshake(sock: socket.socket, handshake: ClientHandshake, deadline: _Deadline) -> None:
    """Read the server's response into ``handshake`` until the connection is open.

    A refusal raises :class:`~wsline.errors.InvalidStatus` with its body, or with
    what arrived of it when the server stops sending (or the time runs out).
    """
    while True:
        sock.settimeout(deadline.left() if handshake.response is None else _left_or_zero(deadline))
        try:
            data = sock.recv(_RECV_SIZE)
        except TimeoutError:
            if handshake.response is None:
                raise
            data = b""  # a refusal's body stopped coming: report what came
        except OSError as exc:
            handshake.receive_eof(str(exc))  # raises
            raise  # pragma: no cover - not reached
        if not data:
            handshake.receive_eof()  # raises
        if handshake.receive_data(data):
            return


def _left_or_zero(deadline: _Deadline) -> float | None:
    try:
        return deadline.left()
    except TimeoutError:
        return 0.001


def _open_tunnel(
    proxy: Proxy,
    host: str,
    port: int,
    deadline: _Deadline,
    proxy_ssl: ssl_module.SSLContext | None,
    user_agent: str | None,
) -> socket.socket:
    """Connect to ``proxy`` and open a tunnel to ``host:port`` through it; return the socket."""
    if not proxy.remote_dns:  # socks5://: the client resolves the name
        try:
            host = str(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][0])
        except OSError as exc:
            raise ProxyError(
                f"cannot resolve {host} for SOCKS5 proxy {proxy.address}: {exc}",
                proxy=proxy.address,
                retriable=True,
            ) from exc
    try:
        sock = socket.create_connection((proxy.host, proxy.port), timeout=deadline.left())
    except TimeoutError:
        raise
    except OSError as exc:
        raise ProxyError(
            f"cannot reach proxy {proxy.address}: {exc}", proxy=proxy.address, retriable=True
        ) from exc
    try:
        _set_nodelay(sock)
        if proxy.tls:
            context = proxy_ssl or ssl_module.create_default_context()
            sock.settimeout(deadline.left())
            try:
                sock = context.wrap_socket(sock, server_hostname=proxy.host)
            except ssl_module.SSLError as exc:
                raise proxy_tls_error(proxy, exc) from exc
        handshake = TunnelHandshake(proxy, host, port, user_agent)
        while True:
            outgoing = handshake.data_to_send()
            if outgoing:
                sock.settimeout(deadline.left())
                sock.sendall(outgoing)
            sock.settimeout(deadline.left())
            try:
                data = sock.recv(_RECV_SIZE)
            except TimeoutError:
                raise
            except OSError as exc:
                handshake.receive_eof(exc)  # raises ProxyError
                raise  # pragma: no cover - not reached
            if not data:
                handshake.receive_eof()  # raises ProxyError
            if handshake.receive_data(data):
                break
        if handshake.extra:
            raise ProxyError(
                f"proxy {proxy.address} sent data through the tunnel before the request",
                proxy=proxy.address,
            )
    except BaseException:
        sock.close()
        raise
    return sock


def _set_nodelay(sock: socket.socket) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - platform specific
            pass
