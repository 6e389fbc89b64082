"""The asyncio connection object shared by the server and the client."""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import threading
import time
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Hashable,
    Iterable,
    Iterator,
    Sequence,
    Union,
    cast,
)

from .._status import ConnectionStatus, format_address
from ..errors import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedOK,
)
from ..protocol.connection import CloseFrame, Connection, Failure, InvalidState, Ping, Pong, State
from ..protocol.handshake import Request, Response
from ..protocol.session import Fragmenter, PingTracker, check_pieces

__all__ = ["WebSocket", "Data"]

if TYPE_CHECKING:  # pragma: no cover
    from .listener import Listener

Data = Union[str, bytes]
Sendable = Union[str, bytes, bytearray, memoryview]
#: The pieces of one fragmented message: a list or tuple, or an iterator (a
#: generator). Not any iterable: a dict or a set is refused by the type checker
#: as well as at run time (a dict is most likely a message not yet serialized).
Fragments = Union[Sequence[Sendable], Iterator[Sendable]]

logger = logging.getLogger("wsline")
_debug_enabled = logger.isEnabledFor
DEBUG = logging.DEBUG

_READ_BUFFER_SIZE = 256 * 1024
_local = threading.local()


def _shared_read_buffer() -> memoryview:
    """One receive buffer per thread, shared by every connection of that thread.

    asyncio calls ``get_buffer`` and ``buffer_updated`` back to back in one
    callback, and the protocol core copies what it keeps, so connections never
    need a buffer of their own while idle.
    """
    view: memoryview | None = getattr(_local, "view", None)
    if view is None:
        view = memoryview(bytearray(_READ_BUFFER_SIZE))
        _local.view = view
    return view


_conn_counter = 0


def _next_id() -> str:
    global _conn_counter
    _conn_counter += 1
    return f"{os.getpid() % 1000:03d}-{_conn_counter:x}"


class _ConnLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Adds the connection id and remote address to each record."""

    def debug(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        # The common case, DEBUG off, costs one cached level check.
        if self.logger.isEnabledFor(logging.DEBUG):
            self.log(logging.DEBUG, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = cast(dict[str, Any], self.extra)
        kwargs.setdefault("extra", {}).update(extra)
        return f"[{extra['conn_id']} {extra['remote']}] {msg}", kwargs


_OPEN = State.OPEN

#: What :meth:`WebSocket._fanout` did with a message (see the fan-out interface).
FANOUT_SENT = 0
FANOUT_SKIPPED = 1  # not open (closing or closed): nothing queued
FANOUT_BUSY = 2  # a fragmented message is half sent: nothing may go between its fragments
FANOUT_OVER = 3  # the backlog is over the limit: nothing queued

#: Without a limit, a fan-out message is queued while the backlog is at most
#: this many times the write buffer's high-water mark (``write_limit``).
FANOUT_LIMIT_FACTOR = 16
#: The fan-out limit when a transport reports no high-water mark (1 MiB).
FANOUT_DEFAULT_LIMIT = FANOUT_LIMIT_FACTOR * 2**16


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Turn Nagle's algorithm off on a TCP transport."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - platform specific
            pass


class WebSocket(ConnectionStatus):
    """An open WebSocket connection.

    Receive with ``await ws.recv()`` or ``async for message in ws`` (``str`` for
    text, ``bytes`` for binary); send with ``await ws.send(message)``. When the
    connection closes, both raise :class:`~wsline.errors.ConnectionClosed`;
    :meth:`recv_guarded` and :meth:`send_guarded` report failure instead.

    Fan-out interface: :func:`wsline.broadcast` and the hubs
    (:mod:`wsline.hub`, :mod:`wsline.hub_redis`) use only the public API plus
    :attr:`backlog`, :meth:`add_close_callback` and the internal
    :meth:`_fanout`; nothing outside this module touches the rest.
    """

    # Slots: about 300 bytes per connection instead of a 1.5 KiB __dict__ (which
    # still appears, empty until used, for attributes an application adds).
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_close_handle",
        "_close_timer",
        "_core",
        "_cork_limit",
        "_drain_waiters",
        "_eager",
        "_input_held",
        "_keepalive_failed",
        "_keepalive_handle",
        "_keepalive_ping",
        "_listener",
        "_logger",
        "_loop",
        "_lost",
        "_lost_future",
        "_max_queue",
        "_messages",
        "_pings",
        "_reading_paused",
        "_recv_waiter",
        "_report_error",
        "_send_lock",
        "_transport",
        "_wbuf",
        "_wbuf_size",
        "_write_paused",
        "close_timeout",
        "id",
        "local_address",
        "ping_interval",
        "ping_timeout",
        "remote_address",
        "request",
        "response",
        "subprotocol",
    )


    def __init__(
        self,
        transport: asyncio.Transport,
        core: Connection,
        *,
        request: Request,
        response: Response,
        subprotocol: str | None,
        ping_interval: float | None,
        ping_timeout: float | None,
        close_timeout: float,
        max_queue: int | None,
        conn_id: str | None = None,
        write_limit: int = 2**16,
    ) -> None:
        self._transport = transport
        self._core = core
        self._loop = asyncio.get_running_loop()
        #: The upgrade request (sent by the client / received by the server).
        self.request = request
        #: The handshake response (the 101).
        self.response = response
        #: The negotiated subprotocol, or ``None``.
        self.subprotocol = subprotocol
        #: The peer's address as given by the socket.
        self.remote_address: Any = transport.get_extra_info("peername")
        #: This side's address.
        self.local_address: Any = transport.get_extra_info("sockname")
        #: A short id that tells connections apart in logs.
        self.id = conn_id or _next_id()
        self._logger: _ConnLogger | None = None  # created on demand (logger)
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self._max_queue = max_queue
        self._messages: collections.deque[Data] | None = None  # created when one must wait
        self._recv_waiter: asyncio.Future[Data] | None = None
        self._reading_paused = False
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._send_lock: asyncio.Lock | None = None  # held during fragmented sends
        self._wbuf: list[bytes] = []
        self._wbuf_size = 0
        self._cork_limit = max(1, min(write_limit, 1 << 16))
        self._eager = True  # the next frame may be written at once (see _write)
        self._input_held = False  # the core holds input back (see _feed)
        #: The callback API's listener (wsline.Listener), if the server runs one.
        self._listener: Listener | None = None
        self._report_error: Callable[[BaseException], None] | None = None
        self._lost = False
        self._lost_future: asyncio.Future[None] | None = None  # created on demand (_lost_fut)
        self._pings: PingTracker[asyncio.Future[float]] = PingTracker()
        self._keepalive_handle: asyncio.TimerHandle | None = None
        self._keepalive_ping: bytes | None = None
        self._keepalive_failed = False
        self._close_timer: asyncio.TimerHandle | None = None
        self._close_handle: asyncio.Handle | None = None
        if ping_interval is not None:
            self._keepalive_handle = self._loop.call_later(ping_interval, self._keepalive_tick)

    @property
    def logger(self) -> _ConnLogger:
        """A logger adapter whose records carry this connection's id and peer (``conn_id``, ``remote``)."""
        adapter = self._logger
        if adapter is None:
            extra = {"conn_id": self.id, "remote": format_address(self.remote_address)}
            adapter = self._logger = _ConnLogger(logger, extra)
        return adapter

    @property
    def _lost_fut(self) -> asyncio.Future[None]:
        """Resolved when the TCP connection is closed (created when first asked for)."""
        fut = self._lost_future
        if fut is None:
            fut = self._lost_future = self._loop.create_future()
            if self._lost:
                fut.set_result(None)
        return fut

    # ------------------------------------------------------------------ status

    @property
    def is_client(self) -> bool:
        """Whether this is the client side."""
        return self._core.is_client

    @property
    def open(self) -> bool:
        """True while messages can be sent."""
        return not self._lost and self._core.state is State.OPEN

    def __repr__(self) -> str:
        side = "client" if self.is_client else "server"
        return f"<WebSocket {self.id} {side} {format_address(self.remote_address)} {self.state.name}>"

    # --------------------------------------------------------- protocol input

    def _feed_direct(self, nbytes: int) -> None:
        """``nbytes`` were read straight into the core's :attr:`~Connection.direct` view."""
        self._on_events(self._core.receive_direct(nbytes))

    def _feed(self, data: memoryview) -> None:
        self._on_events(self._core.receive_data(data))

    def _on_events(self, events: list[Any]) -> None:
        core = self._core
        # One message in: its reply may go out at once. More: cork the replies.
        self._eager = len(events) < 2
        if core.input_held:
            # A read inflated to a lot of messages: hold the rest of it (and
            # stop reading) until the application has taken these.
            if not self._input_held:
                self._input_held = True
                self._transport.pause_reading()
            if not self._reading_paused:
                self._loop.call_soon(self._continue_input)
        elif self._input_held:
            self._input_held = False
            if not self._reading_paused and not self._lost:
                self._transport.resume_reading()
        if core.outbox:
            # While the peer does not read, only its latest ping is answered.
            self._write(core.take_outbox(hold_pongs=self._write_paused))
        if _debug_enabled(DEBUG):
            self._trace_events(events)
        for event in events:
            kind = type(event)
            if kind is str or kind is bytes:
                self._deliver(cast(Data, event))
            elif kind is Pong:
                self._on_pong(cast(Pong, event).payload)
            elif kind is Ping:
                pass
            elif kind is CloseFrame or kind is Failure:
                if kind is Failure:
                    err = cast(Failure, event).error
                    self.logger.info("failing connection with %d: %s", err.code, err.reason)
                # Let the application answer the messages that came before the
                # close (or the bad frame), then send our close frame: right
                # after it has read them, or after one second at most.
                if self._listener is not None or core.close_sent is not None:
                    # Callbacks have run already, or our close frame is out:
                    # there is nothing to let the application answer first.
                    self._send_pending_close()
                elif self._messages:
                    self._close_handle = self._loop.call_later(
                        min(1.0, self.close_timeout), self._send_pending_close
                    )
                else:
                    self._close_handle = self._loop.call_soon(self._send_pending_close)

    def _continue_input(self) -> None:
        """Parse input held back by the inflate budget (see Connection.receive_data)."""
        if self._input_held and not self._lost and not self._reading_paused:
            self._feed(memoryview(b""))

    def _send_pending_close(self) -> None:
        """Answer the peer's close frame, or fail the connection after a protocol error."""
        if self._close_handle is not None:
            self._close_handle.cancel()
            self._close_handle = None
        if not self._lost:
            self._write(self._core.close())  # the failure's close, or the reply to the peer's
        self._on_closing()

    def _trace_events(self, events: list[Any]) -> None:
        """Frame-level tracing at DEBUG (only called when DEBUG is enabled)."""
        log = self.logger.debug
        for event in events:
            if isinstance(event, str):
                log("< text message, %d characters", len(event))
            elif isinstance(event, bytes):
                log("< binary message, %d bytes", len(event))
            elif isinstance(event, Ping):
                log("< ping %r (pong sent)", event.payload)
            elif isinstance(event, Pong):
                log("< pong %r", event.payload)
            elif isinstance(event, CloseFrame):
                log("< close %d %r", event.code, event.reason)
            elif isinstance(event, Failure):
                log("< protocol error %d: %s", event.error.code, event.error.reason)

    def _deliver(self, message: Data) -> None:
        listener = self._listener
        if listener is not None:
            self._call_listener(listener.on_message, message)
            return
        waiter = self._recv_waiter
        if waiter is not None:
            self._recv_waiter = None
            if not waiter.done():
                waiter.set_result(message)
                return
        messages = self._messages
        if messages is None:
            messages = self._messages = collections.deque()
        elif (
            self._core.close_sent is not None
            and self._max_queue is not None
            and len(messages) >= self._max_queue
        ):
            # Sent by the peer after our close frame, past a full queue: dropped
            # (it will not be answered) so that waiting for its close costs no memory.
            return
        messages.append(message)
        if (
            self._max_queue is not None
            and len(messages) >= self._max_queue
            and not self._reading_paused
        ):
            self._reading_paused = True
            self._transport.pause_reading()

    def _on_closing(self) -> None:
        """A close frame arrived or the connection failed: no more messages."""
        waiter = self._recv_waiter
        if waiter is not None:
            self._recv_waiter = None
            if not waiter.done():
                waiter.set_exception(self._closed_error())
        if self._reading_paused:
            self._reading_paused = False
            self._transport.resume_reading()
        self._cancel_keepalive()
        core = self._core
        if not core.is_client and (core.state is State.CLOSED or core.failure is not None):
            # The server closes the TCP connection first (RFC 6455 7.1.1).
            self._flush()
            self._transport.close()
        self._start_close_timer()

    def _start_close_timer(self) -> None:
        if self._close_timer is None and not self._lost:
            self._close_timer = self._loop.call_later(self.close_timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        if not self._lost:
            self.logger.info("closing handshake timed out after %g s; aborting", self.close_timeout)
            self._transport.abort()

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._core.receive_eof()
        self._cancel_keepalive()
        if self._close_timer is not None:
            self._close_timer.cancel()
        if self._close_handle is not None:
            self._close_handle.cancel()
            self._close_handle = None
        closed = self._closed_error()
        if exc is not None:
            self.logger.debug("connection lost: %r", exc)
        waiter = self._recv_waiter
        self._recv_waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(closed)
        for drain in self._drain_waiters:
            if not drain.done():
                drain.set_exception(closed)
        self._drain_waiters.clear()
        for ping in self._pings.clear():
            if not ping.done():
                ping.set_exception(closed)
                ping.exception()  # nobody may await it: do not log "never retrieved"
        lost_future = self._lost_future
        if lost_future is not None and not lost_future.done():
            lost_future.set_result(None)
        listener = self._listener
        if listener is not None:
            self._call_listener(listener.on_close, closed)

    def _call_listener(self, callback: Callable[..., None], *args: Any) -> None:
        """Run a listener callback; an exception is logged, reported and closes with 1011."""
        try:
            callback(*args)
        except Exception as exc:
            self.logger.error("listener %s failed: %r", callback.__name__, exc, exc_info=True)
            if self._report_error is not None:
                self._report_error(exc)
            self.close_nowait(1011, "internal error")

    def _pause_writing(self) -> None:
        self._write_paused = True

    def _resume_writing(self) -> None:
        self._write_paused = False
        if not self._lost:
            self._write(self._core.release_held_pong())
        waiters = self._drain_waiters
        self._drain_waiters = []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        if self._listener is not None and not self._lost:
            self._call_listener(self._listener.on_writable)

    @property
    def writing_paused(self) -> bool:
        """True while the outgoing buffer is above its high-water mark (``write_limit``)."""
        return self._write_paused

    # -------------------------------------------------------------- receiving

    async def recv(self, timeout: float | None = None) -> Data:
        """Wait for the next message: ``str`` for text, ``bytes`` for binary.

        Raises :class:`~wsline.errors.ConnectionClosed` once the connection is
        closed and every received message was read, and :class:`TimeoutError`
        when ``timeout`` seconds pass without a message (the connection stays open).
        """
        messages = self._messages
        if messages:
            message = messages.popleft()
            if not messages and self._close_handle is not None:
                self._close_handle.cancel()
                self._close_handle = self._loop.call_soon(self._send_pending_close)
            if self._reading_paused and len(messages) <= (self._max_queue or 0) // 4:
                self._reading_paused = False
                if self._input_held:
                    self._loop.call_soon(self._continue_input)
                else:
                    self._transport.resume_reading()
            return message
        core = self._core
        if self._lost or core.close_rcvd is not None or core.failure is not None:
            raise self._closed_error()
        if self._recv_waiter is not None:
            raise ConcurrencyError(
                "recv() is already being awaited by another task: read messages from one task"
            )
        waiter: asyncio.Future[Data] = self._loop.create_future()
        self._recv_waiter = waiter
        # The finally clauses drop the future: an exception raised from it keeps
        # this frame in its traceback, and frame -> future -> exception -> frame
        # would be a cycle that keeps the connection alive until a full GC.
        if timeout is None:
            try:
                return await waiter
            finally:
                if self._recv_waiter is waiter:
                    self._recv_waiter = None
                del waiter
        handle = self._loop.call_later(timeout, _expire, waiter)
        try:
            return await waiter
        finally:
            handle.cancel()
            if self._recv_waiter is waiter:
                self._recv_waiter = None
            del waiter, handle

    async def recv_guarded(self, timeout: float | None = None) -> tuple[Data | None, bool]:
        """Like :meth:`recv` but never raises: ``(message, True)`` or ``(None, False)``.

        ``False`` means the connection is closed or broken, or ``timeout`` passed.
        """
        try:
            return await self.recv(timeout), True
        except (ConnectionClosed, TimeoutError, asyncio.TimeoutError):
            return None, False
        except Exception as exc:  # noqa: BLE001 - guarded by contract
            self.logger.debug("recv_guarded: %r", exc)
            return None, False

    def __aiter__(self) -> AsyncIterator[Data]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Data]:
        while True:
            try:
                yield await self.recv()
            except ConnectionClosedOK:
                return

    # ---------------------------------------------------------------- sending

    def _write(self, data: bytes) -> None:
        """Write a frame: at once when it is alone, corked when frames come in bursts.

        The first frame after a receive (a reply) goes straight to the
        transport: no extra loop pass on a round trip. Further frames written in
        the same loop pass, or replies to a batch of received messages, are
        queued and go out together in one write at the end of the pass (N small
        sends, one syscall). A full buffer, close and abort flush at once.
        """
        if not data:
            return
        if not self._wbuf and self._eager:
            self._eager = False
            if not self._lost:
                self._transport.write(data)
            return
        self._queue(data)

    def _write_parts(self, head: bytes, payload: Any) -> None:
        """Write a large frame as its header and its (immutable) payload, the payload not copied."""
        if not self._wbuf and self._eager:
            self._eager = False
            if not self._lost:
                transport = self._transport
                if type(transport).__module__.startswith("uvloop"):
                    transport.writelines((head, payload))  # one writev, no copy
                else:
                    # asyncio's writelines joins (a copy): two writes cost less.
                    transport.write(head)
                    transport.write(payload)
            return
        self._queue(head)
        self._queue(payload)

    def _queue(self, data: bytes) -> None:
        """Queue a frame for the end-of-pass write (never written at once)."""
        wbuf = self._wbuf
        wbuf.append(data)
        self._wbuf_size += len(data)
        if self._wbuf_size >= self._cork_limit:
            self._flush()
        elif len(wbuf) == 1:
            self._loop.call_soon(self._end_of_pass)

    def _end_of_pass(self) -> None:
        self._flush()
        self._eager = True

    def _flush(self) -> None:
        wbuf = self._wbuf
        if not wbuf:
            return
        self._wbuf = []
        self._wbuf_size = 0
        if self._lost:
            return
        if len(wbuf) == 1:
            self._transport.write(wbuf[0])
        else:
            self._transport.write(b"".join(wbuf))

    def _send_error(self) -> ConnectionClosed:
        return self._closed_error()

    async def send(
        self,
        message: Sendable | Fragments | AsyncIterable[Sendable],
        *,
        compress: bool | None = None,
    ) -> None:
        """Send a message: ``str`` as text; ``bytes``, ``bytearray`` or ``memoryview`` as binary.

        An iterable or async iterable of such pieces is sent as one fragmented
        message (all pieces of one kind). ``compress=False`` sends this message
        uncompressed even when compression was negotiated. Waits while the
        outgoing buffer is above its high-water mark.
        """
        if self._send_lock is not None and self._send_lock.locked():
            async with self._send_lock:
                pass
        if isinstance(message, (str, bytes, bytearray, memoryview)):
            self._send_message(message, compress)
        else:
            await self._send_fragments(message)
        if self._write_paused:
            await self._drain()

    def _send_message(self, message: Sendable, compress: bool | None) -> None:
        if self._lost:
            raise self._send_error()
        try:
            if type(message) is bytes:
                # A small frame is one copy of header + payload (cheaper than a
                # second write); a large one goes as header and payload apart,
                # the payload not copied (see Connection.send_message_parts).
                data, payload = self._core.send_message_parts(message, compress=compress)
            else:
                data, payload = self._core.send_message(message, compress=compress), None
        except InvalidState:
            raise self._send_error() from None
        if payload is None:
            self._write(data)
        else:
            self._write_parts(data, payload)
        if _debug_enabled(DEBUG):
            kind = "text" if isinstance(message, str) else "binary"
            self.logger.debug("> %s message, %d bytes in a %d-byte frame", kind, len(message), len(data))

    def send_nowait(self, message: Sendable, *, compress: bool | None = None) -> None:
        """Send one message without waiting (for :class:`~wsline.Listener` callbacks).

        Never blocks: the frame is queued even when :attr:`writing_paused` is
        true, so check it (and wait for ``on_writable``) when sending a lot.
        Raises :class:`~wsline.errors.ConnectionClosed` once closed.
        """
        if not isinstance(message, (str, bytes, bytearray, memoryview)):
            raise TypeError(f"cannot send {type(message).__name__}; use str or a bytes-like object")
        if self._send_lock is not None and self._send_lock.locked():
            raise RuntimeError("a fragmented message is being sent; use await send()")
        self._send_message(message, compress)

    async def _send_fragments(self, pieces: Iterable[Sendable] | AsyncIterable[Sendable]) -> None:
        check_pieces(pieces, allow_async=True)
        if self._send_lock is None:
            self._send_lock = asyncio.Lock()
        async with self._send_lock:
            fragmenter = Fragmenter(self._core)
            try:
                async for piece in _aiter(pieces):
                    data = fragmenter.push(piece)
                    if data:
                        self._write_fragment(data)
                        if self._write_paused:
                            await self._drain()
                self._write_fragment(fragmenter.finish())
            except BaseException as exc:
                close = b"" if self._lost else fragmenter.abort()
                if close:
                    # Half a message is on the wire and the rest will never
                    # come: the stream cannot carry another message. Close.
                    self.logger.info("fragmented send failed midway; closing with 1011")
                    self._write(close)
                    self._start_close_timer()
                if isinstance(exc, InvalidState):
                    raise self._send_error() from None
                raise

    def _write_fragment(self, data: bytes) -> None:
        self._write(data)
        if _debug_enabled(DEBUG) and data:
            self.logger.debug("> fragment in a %d-byte frame", len(data))

    async def send_guarded(self, message: Sendable, *, compress: bool | None = None) -> bool:
        """Like :meth:`send` but never raises: ``True`` when the message was handed to the transport."""
        try:
            await self.send(message, compress=compress)
            return True
        except ConnectionClosed:
            return False
        except Exception as exc:  # noqa: BLE001 - guarded by contract
            self.logger.debug("send_guarded: %r", exc)
            return False

    async def _drain(self) -> None:
        if self._lost:
            raise self._send_error()
        fut: asyncio.Future[None] = self._loop.create_future()
        self._drain_waiters.append(fut)
        try:
            await fut
        finally:
            del fut  # no frame -> future -> exception -> frame cycle (see recv)

    # ------------------------------------------------------------- ping / pong

    def ping(self, data: str | bytes | None = None) -> Awaitable[float]:
        """Send a ping; the returned awaitable resolves with the round-trip time in seconds.

        ``data`` is the ping payload (random 4 bytes by default, at most 125 bytes).
        """
        if self._lost:
            raise self._send_error()
        fut: asyncio.Future[float] = self._loop.create_future()
        pings = self._pings
        payload = pings.add(data, fut, time.monotonic())
        try:
            frame = self._core.send_ping(payload)
        except InvalidState:
            pings.discard(payload, fut)
            raise self._send_error() from None
        self._write(frame)
        if _debug_enabled(DEBUG):
            self.logger.debug("> ping %r", payload)
        return fut

    async def pong(self, data: str | bytes = b"") -> None:
        """Send an unsolicited pong (a unidirectional heartbeat)."""
        if self._lost:
            raise self._send_error()
        try:
            self._write(self._core.send_pong(data))
        except InvalidState:
            raise self._send_error() from None

    def _on_pong(self, payload: bytes) -> None:
        pings = self._pings
        for fut, rtt in pings.pong(payload, time.monotonic()):
            if not fut.done():
                fut.set_result(rtt)
        keepalive = self._keepalive_ping
        if keepalive is not None and keepalive not in pings:
            # Answered: by its own pong, or by one to a later ping.
            self._keepalive_ping = None
            if self._keepalive_handle is not None:
                self._keepalive_handle.cancel()
            if self.ping_interval is not None and not self._lost:
                self._keepalive_handle = self._loop.call_later(self.ping_interval, self._keepalive_tick)

    def _keepalive_tick(self) -> None:
        self._keepalive_handle = None
        if not self.open:
            return
        try:
            fut = self.ping()
        except ConnectionClosed:
            return
        cast(asyncio.Future[float], fut).add_done_callback(_consume_result)
        self._keepalive_ping = self._pings.newest()
        if self.ping_timeout is not None:
            self._keepalive_handle = self._loop.call_later(self.ping_timeout, self._keepalive_expired)

    def _keepalive_expired(self) -> None:
        self._keepalive_handle = None
        if self._lost:
            return
        self.logger.info("no pong within %g s: closing the connection", self.ping_timeout)
        self._keepalive_failed = True
        self._write(self._core.send_close(1011, "keepalive ping timeout"))  # b"" if one went out
        self._on_closing()
        self._flush()  # best effort: the close frame may still get out
        self._transport.abort()

    def _cancel_keepalive(self) -> None:
        if self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
            self._keepalive_handle = None

    # ------------------------------------------------------------------ close

    async def close(self, code: int = 1000, reason: str = "", timeout: float | None = None) -> None:
        """Run the closing handshake and wait until the TCP connection is closed.

        Waits ``timeout`` seconds (default ``close_timeout``) for the peer's
        close frame and the end of the connection, then aborts. Never raises
        because the connection is already closed.
        """
        if self._lost:
            return
        self.close_nowait(code, reason, timeout)
        await asyncio.shield(self._lost_fut)

    def close_nowait(self, code: int = 1000, reason: str = "", timeout: float | None = None) -> None:
        """Start the closing handshake without waiting for its end (see :meth:`close`)."""
        if self._lost:
            return
        core = self._core
        if core.close_sent is None:
            # A protocol error's code wins; when the peer closed first, its code is echoed.
            self._write(core.close(code, reason))
            if _debug_enabled(DEBUG) and core.close_sent is not None:
                self.logger.debug("> close %d %r", *core.close_sent)
        if core.state is State.CLOSED and not core.is_client:
            self._flush()
            self._transport.close()
        elif self._reading_paused:
            # The peer's close frame must get in, even behind a full queue of
            # unread messages (more data from it is dropped, see _deliver).
            self._reading_paused = False
            if not self._input_held:
                self._transport.resume_reading()
        if timeout is not None and self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        if self._close_timer is None:
            self._close_timer = self._loop.call_later(
                self.close_timeout if timeout is None else timeout, self._close_timed_out
            )

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is closed."""
        await asyncio.shield(self._lost_fut)

    def abort(self) -> None:
        """Drop the TCP connection at once, without a closing handshake.

        Messages already sent are handed to the kernel first (what fits).
        """
        if not self._lost:
            self._flush()
            self._transport.abort()

    # ---------------------------------------------------------------- fan-out
    #
    # The interface of wsline.broadcast and the hubs: backlog,
    # add_close_callback and _fanout (besides the public API).

    @property
    def backlog(self) -> int:
        """Bytes waiting to go out: in the transport's buffer plus queued for this loop pass's write."""
        return self._transport.get_write_buffer_size() + self._wbuf_size

    def add_close_callback(self, callback: Callable[[WebSocket], None]) -> None:
        """Call ``callback(ws)`` from the event loop once the TCP connection is closed.

        Soon after this call when it is closed already.
        """
        self._lost_fut.add_done_callback(lambda _: callback(self))

    def _fanout(
        self,
        opcode: int,
        payload: bytes,
        frames: dict[Hashable, bytes],
        compress: bool | None,
        limit: int | None,
    ) -> int:
        """Queue a message that many connections get alike; never waits (for :func:`wsline.broadcast`).

        ``opcode`` 1 (text, ``payload`` its UTF-8) or 2 (binary); ``frames``
        is shared by the connections of one broadcast, for one message (see
        :meth:`Connection.send_shared`). The frame goes out with this loop
        pass's write. Returns :data:`FANOUT_SENT`, or what kept it out:
        :data:`FANOUT_SKIPPED` (not open), :data:`FANOUT_BUSY` (a fragmented
        message is half sent) or :data:`FANOUT_OVER` (:attr:`backlog` over
        ``limit`` bytes; ``None``: :data:`FANOUT_LIMIT_FACTOR` x the write
        buffer's high-water mark).
        """
        core = self._core
        if self._lost or core.state is not _OPEN:
            return FANOUT_SKIPPED
        lock = self._send_lock
        if lock is not None and lock.locked():
            return FANOUT_BUSY
        backlog = self._transport.get_write_buffer_size() + self._wbuf_size
        if backlog and backlog > (limit if limit is not None else self._fanout_limit()):
            return FANOUT_OVER
        self._queue(core.send_shared(opcode, payload, frames, compress))
        return FANOUT_SENT

    def _fanout_limit(self) -> int:
        try:
            high = self._transport.get_write_buffer_limits()[1]
        except (AttributeError, NotImplementedError):  # pragma: no cover - exotic transports
            return FANOUT_DEFAULT_LIMIT
        return high * FANOUT_LIMIT_FACTOR if high > 0 else FANOUT_DEFAULT_LIMIT


async def _aiter(pieces: Iterable[Sendable] | AsyncIterable[Sendable]) -> AsyncIterator[Sendable]:
    if isinstance(pieces, AsyncIterable):
        async for piece in pieces:
            yield piece
    else:
        for piece in pieces:
            yield piece


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("recv() timed out"))


def _consume_result(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


def start(ws: WebSocket, received: bytes = b"") -> None:
    """Start a WebSocket its I/O layer has just made: feed the bytes that came
    after the handshake in the same reads, then let the transport read (unless
    those bytes already filled the receive queue)."""
    if received:
        ws._feed(memoryview(received))
    if not ws._reading_paused and not ws._lost:
        ws._transport.resume_reading()


def attach_listener(ws: WebSocket, listener: Any, report_error: Callable[[BaseException], None]) -> None:
    """The callback API: deliver ``ws``'s events to ``listener`` (before any message is fed).

    ``report_error`` receives the exceptions its callbacks raise (each closes the
    connection with 1011); ``on_open`` runs now.
    """
    ws._report_error = report_error
    listener.ws = ws
    ws._listener = listener
    ws._call_listener(listener.on_open)


class ProtocolBase(asyncio.BufferedProtocol):
    """Moves bytes between an asyncio transport and a :class:`WebSocket`."""

    transport: asyncio.Transport | None = None
    ws: WebSocket | None = None

    def get_buffer(self, sizehint: int) -> memoryview:
        ws = self.ws
        if ws is not None:
            # The rest of a large message is read straight into its place.
            direct = ws._core.direct
            if direct is not None:
                return direct
        return _shared_read_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        ws = self.ws
        if ws is not None:
            if ws._core.direct is not None:  # what get_buffer returned (nothing ran in between)
                ws._feed_direct(nbytes)
            else:
                ws._feed(_shared_read_buffer()[:nbytes])
        else:
            self.handshake_data(_shared_read_buffer()[:nbytes])

    def handshake_data(self, data: memoryview) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def pause_writing(self) -> None:
        if self.ws is not None:
            self.ws._pause_writing()

    def resume_writing(self) -> None:
        if self.ws is not None:
            self.ws._resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ws is not None:
            self.ws._connection_lost(exc)
