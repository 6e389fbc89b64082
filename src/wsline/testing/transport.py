"""An in-memory connection with faults: :class:`TransportPair`, its two :class:`Link` s and ends.

::

    pair = TransportPair(window=4096)
    pair.connect(client_protocol, server_protocol)    # connection_made on both ends
    pair.server_to_client.stall()                     # the client stops reading
    pair.client_to_server.drop_after(bytes=100)       # ...and 100 bytes later its data is lost
    pair.reset()                                      # ConnectionResetError at both ends

Each end is a :class:`FaultTransport`, an :class:`asyncio.Transport` driven by
the event loop alone (no socket, no thread): what one end writes travels
through a :class:`Link` and reaches the other end's protocol in a later loop
pass, through ``get_buffer``/``buffer_updated`` for an
:class:`asyncio.BufferedProtocol` and ``data_received`` for a plain one, one
read (at most 256 KiB, or what the protocol's buffer holds) per pass, as an
asyncio socket transport does it.

The model of TCP it follows:

- a link holds the bytes in flight; its ``window`` (64 KiB by default) is
  what the kernels and the network absorb. What is in flight beyond it is the
  writer's transport buffer (:meth:`FaultTransport.get_write_buffer_size`),
  and past the high-water mark the writer's protocol gets ``pause_writing``
  (``resume_writing`` at the low-water mark), as with a real socket;
- a reader that stops reading (``pause_reading``, :meth:`Link.stall`, a slow
  reader) leaves the bytes in the link: backpressure builds up at the writer;
- ``close()`` stops reading at once, sends what is buffered, then the end of
  the stream: the other end gets ``eof_received`` after the last byte (and
  closes unless it returns true); the closing end gets ``connection_lost``
  once its own buffer is empty, so ``close()`` towards a reader that never
  reads never completes (``abort()`` does);
- ``abort()`` discards the transport buffer (the window's bytes still go
  out, then the end of the stream) and calls ``connection_lost(None)``;
- bytes sent to an end that has closed are discarded (a real kernel would
  answer them with a reset: not modelled), and a reset reaches an end at
  once, even one that is not reading.

Faults are set per direction (:attr:`TransportPair.client_to_server`,
:attr:`TransportPair.server_to_client`) or for the whole connection, at any
moment of a test; everything is scheduled on the running event loop, so a
test replays the same way every time.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from typing import Any, Iterable, Literal

__all__ = ["DEFAULT_WINDOW", "FaultTransport", "Link", "Side", "TransportPair"]

#: Which end of a :class:`TransportPair`.
Side = Literal["client", "server"]

#: Bytes a link absorbs before the writer's transport buffer grows (the kernels' share).
DEFAULT_WINDOW = 64 * 1024
#: The most one read hands a plain protocol's ``data_received`` (asyncio's own limit).
READ_SIZE = 256 * 1024

#: The most one read hands a buffered protocol (whatever its buffer's size).
_MAX_READ = 4 * 1024 * 1024

_ports = itertools.count(40000)


class Link:
    """One direction of a :class:`TransportPair`: what one end writes, on its way to the other.

    The faults (each can be set or changed at any moment):

    - :meth:`delay`: latency per write, in loop time;
    - :meth:`drop_after`: after N more bytes, everything written is lost, the
      end of the stream included: nobody is told;
    - :meth:`stall`: the reader stops reading: bytes pile up, the writer's
      buffer fills and its protocol gets ``pause_writing``;
    - :meth:`slow_reader`: the reader takes N bytes per tick;
    - :meth:`cut_after`: N more bytes arrive, then the connection ends (both
      ends see the end of the stream, or with ``reset=True`` a reset), in the
      middle of whatever the bytes were;
    - :meth:`heal` clears them all (not a cut that has happened).

    Counters for assertions: :attr:`written`, :attr:`delivered`, :attr:`lost`,
    :attr:`in_flight`.
    """

    def __init__(self, pair: TransportPair, name: str, window: int) -> None:
        _check_count("window", window)
        self.pair = pair
        #: ``"client_to_server"`` or ``"server_to_client"``.
        self.name = name
        #: Bytes in flight that do not count in the writer's transport buffer.
        self.window = window
        self.sender: FaultTransport
        self.receiver: FaultTransport
        #: Bytes written into this link by its sender (lost ones included).
        self.written = 0
        #: Bytes handed to the receiver's protocol.
        self.delivered = 0
        #: Bytes lost: dropped, discarded by a close, an abort, a reset or a cut.
        self.lost = 0
        self._chunks: collections.deque[tuple[float, memoryview]] = collections.deque()
        self._size = 0
        self._last_at = 0.0
        self._handle: asyncio.Handle | None = None
        self._latency = 0.0
        self._drop_budget: int | None = None
        self._stalled = False
        self._rate: int | None = None
        self._interval = 0.0
        self._next_tick = 0.0
        self._cut_budget: int | None = None
        self._cut_reset = False
        self._eof = False  # the sender ended the stream: EOF once the bytes before it are in
        self._eof_at = 0.0
        self._eof_done = False  # delivered or lost
        self._eof_delivered = False
        self._dead = False  # reset or cut: what is written from then on is lost

    def __repr__(self) -> str:
        return (
            f"<Link {self.name} in_flight={self._size} written={self.written} "
            f"delivered={self.delivered} lost={self.lost}{self._faults()}>"
        )

    def _faults(self) -> str:
        faults = []
        if self._latency:
            faults.append(f"delay={self._latency:g}")
        if self._drop_budget is not None:
            faults.append(f"drop_after={self._drop_budget}")
        if self._stalled:
            faults.append("stalled")
        if self._rate is not None:
            faults.append(f"slow_reader={self._rate}/{self._interval:g}s")
        if self._cut_budget is not None:
            faults.append(f"{'reset' if self._cut_reset else 'cut'}_after={self._cut_budget}")
        if self._dead:
            faults.append("dead")
        return "".join(" " + f for f in faults)

    # ------------------------------------------------------------------ faults

    @property
    def in_flight(self) -> int:
        """Bytes written and not delivered yet (nor lost)."""
        return self._size

    def delay(self, seconds: float) -> None:
        """Every write from now on arrives ``seconds`` later (loop time); ``0`` for none.

        Order is kept: a write never overtakes an earlier one.
        """
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
            raise ValueError(f"delay must be a number of seconds >= 0, not {seconds!r}")
        self._latency = float(seconds)

    def drop_after(self, bytes: int = 0) -> None:
        """The next ``bytes`` bytes written get through; every byte after them is silently lost.

        What is already on its way still arrives. Once it drops, the end of the
        stream is lost too: the receiver never hears from this link again
        (until :meth:`heal`), and the writer's buffer drains as if it were read.
        """
        _check_count("bytes", bytes)
        self._drop_budget = bytes

    def stall(self) -> None:
        """The receiver stops reading (its application hangs, or its host vanished).

        Nothing is lost: the bytes pile up in the link, past the window the
        writer's transport buffer grows and its protocol gets
        ``pause_writing``. :meth:`heal` lets them through.
        """
        self._stalled = True
        self._cancel()

    def slow_reader(self, bytes_per_tick: int, interval: float = 0.0) -> None:
        """The receiver takes at most ``bytes_per_tick`` bytes per read, one read every ``interval`` seconds.

        ``interval=0`` reads once per event-loop pass. The rest waits in the
        link: a writer faster than that sees its buffer grow and gets
        ``pause_writing``. ``bytes_per_tick=0`` is :meth:`stall`.
        """
        _check_count("bytes_per_tick", bytes_per_tick)
        if not isinstance(interval, (int, float)) or isinstance(interval, bool) or interval < 0:
            raise ValueError(f"interval must be a number of seconds >= 0, not {interval!r}")
        if bytes_per_tick == 0:
            self.stall()
            return
        self._rate = bytes_per_tick
        self._interval = float(interval)
        self._schedule()

    def cut_after(self, bytes: int = 0, *, reset: bool = False) -> None:
        """Deliver ``bytes`` more bytes (what is in flight counts), then end the connection.

        Both ends then get the end of the stream (``eof_received``, then
        ``connection_lost(None)`` once they close), or with ``reset=True``
        ``connection_lost(ConnectionResetError)``: a connection cut in the
        middle of a frame, a request, a handshake. What else was in flight,
        both ways, is lost.
        """
        _check_count("bytes", bytes)
        self._cut_budget = bytes
        self._cut_reset = reset
        if bytes == 0:
            self._loop().call_soon(self._cut_now)
        else:
            self._schedule()

    def reset_after(self, bytes: int = 0) -> None:
        """:meth:`cut_after` with ``reset=True``: ``bytes`` more bytes, then a reset at both ends."""
        self.cut_after(bytes, reset=True)

    def heal(self) -> None:
        """No more delay, drops, stall or slowness (a cut that has happened stays)."""
        self._latency = 0.0
        self._drop_budget = None
        self._stalled = False
        self._rate = None
        self._cut_budget = None
        self._schedule()

    # ------------------------------------------------------------------ moving bytes

    def _loop(self) -> asyncio.AbstractEventLoop:
        return self.pair._get_loop()

    def _cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    @property
    def _dropping(self) -> bool:
        return self._drop_budget == 0

    def _write(self, data: bytes) -> None:
        size = len(data)
        self.written += size
        if self._dead or self.receiver._closing:
            self.lost += size
            return
        budget = self._drop_budget
        if budget is not None:
            keep = min(size, budget)
            self._drop_budget = budget - keep
            if keep < size:
                self.lost += size - keep
                data = data[:keep]
                size = keep
        if not size:
            return
        loop = self._loop()
        when = max(loop.time() + self._latency, self._last_at)
        self._last_at = when
        self._chunks.append((when, memoryview(data)))
        self._size += size
        self._schedule()

    def _write_eof(self) -> None:
        if self._eof:
            self._schedule()
            return
        self._eof = True
        self._eof_at = max(self._loop().time() + self._latency, self._last_at)
        if self._dropping or self._dead:
            self._eof_done = True  # lost with the bytes before it
        self._schedule()

    def _can_deliver(self) -> bool:
        receiver = self.receiver
        return (
            not self._stalled
            and receiver._protocol is not None
            and not receiver._paused
            and not receiver._closing
        )

    def _schedule(self) -> None:
        """Arrange for the next read, if one can happen."""
        if self._handle is not None or not self._can_deliver():
            return
        loop = self._loop()
        if self._chunks:
            when = self._chunks[0][0]
        elif self._eof and not self._eof_done:
            when = self._eof_at
        else:
            return
        if self._rate is not None:
            when = max(when, self._next_tick)
        if when <= loop.time():
            self._handle = loop.call_soon(self._run)
        else:
            self._handle = loop.call_at(when, self._run)

    def _due(self, now: float, cap: int) -> int:
        """How many bytes have arrived by ``now`` (counting stops at ``cap``)."""
        due = 0
        for when, data in self._chunks:
            if when > now or due >= cap:
                break
            due += len(data)
        return min(due, cap)

    def _run(self) -> None:
        """One read by the receiver: what is due, within the faults' limits."""
        self._handle = None
        if not self._can_deliver():
            return
        if self._cut_budget == 0:
            self._cut_now()
            return
        loop = self._loop()
        now = loop.time()
        cap = _MAX_READ
        if self._rate is not None:
            cap = min(cap, self._rate)
        if self._cut_budget is not None:
            cap = min(cap, self._cut_budget)
        limit = self._due(now, cap)
        if not limit:
            if not self._chunks and self._eof and not self._eof_done and self._eof_at <= now:
                self._eof_done = self._eof_delivered = True
                self.receiver._eof_received()
            else:
                self._schedule()
            return
        if self._rate is not None:
            self._next_tick = now + self._interval
        taken = self.receiver._read(self, limit)
        if taken:
            self.sender._buffer_shrunk()  # after the read, as the writer's own callback would
        if self._cut_budget is not None:
            self._cut_budget -= taken
            if self._cut_budget == 0:
                self._cut_now()
                return
        self._schedule()

    def _take(self, count: int) -> list[memoryview]:
        """The next ``count`` bytes (all due), out of the link."""
        parts: list[memoryview] = []
        chunks = self._chunks
        need = count
        while need:
            when, data = chunks[0]
            if len(data) <= need:
                chunks.popleft()
                parts.append(data)
                need -= len(data)
            else:
                parts.append(data[:need])
                chunks[0] = (when, data[need:])
                need = 0
        self._size -= count
        self.delivered += count
        return parts

    def _discard(self, keep: int = 0) -> None:
        """Lose what is in flight, except the first ``keep`` bytes."""
        excess = self._size - keep
        if excess <= 0:
            return
        chunks = self._chunks
        while excess:
            when, data = chunks[-1]
            if len(data) <= excess:
                chunks.pop()
                excess -= len(data)
                self._size -= len(data)
                self.lost += len(data)
            else:
                chunks[-1] = (when, data[: len(data) - excess])
                self._size -= excess
                self.lost += excess
                excess = 0
        self._cancel()
        self._schedule()  # the head may have changed (or only the end of the stream is left)
        # Told from the loop, as a socket's writer would be: never inside the
        # call (a close, an abort, a fault) that discarded the bytes.
        self._loop().call_soon(self.sender._buffer_shrunk)

    def _cut_now(self) -> None:
        if self._cut_budget is None:  # healed meanwhile
            return
        self._cut_budget = None
        self.pair._cut(reset=self._cut_reset)


class FaultTransport(asyncio.Transport):
    """One end of a :class:`TransportPair`, an :class:`asyncio.Transport` without a socket.

    ``get_extra_info`` knows ``peername``, ``sockname`` (the addresses given to
    the pair) and ``socket`` (``None``). :meth:`reset` is this end resetting
    the connection (like closing a socket with ``SO_LINGER`` 0).
    """

    def __init__(self, pair: TransportPair, side: Side, extra: dict[str, Any]) -> None:
        super().__init__(extra)
        self.pair = pair
        #: ``"client"`` or ``"server"``.
        self.side = side
        self._protocol: asyncio.BaseProtocol | None = None
        self._out: Link
        self._in: Link
        self._paused = False
        self._closing = False  # close(), abort() or the end: no more reading
        self._eof_written = False
        self._lost = False  # connection_lost is called (or about to be)
        self._lost_called = False
        self._high = 64 * 1024
        self._low = 16 * 1024
        self._writing_paused = False

    def __repr__(self) -> str:
        state = "lost" if self._lost else "closing" if self._closing else "open"
        return f"<FaultTransport {self.side} {state} buffer={self.get_write_buffer_size()}>"

    # ------------------------------------------------------------ the transport API

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None, "the pair is not connected yet"
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol
        self._in._schedule()

    def is_closing(self) -> bool:
        return self._closing

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    def pause_reading(self) -> None:
        if self._closing or self._paused:
            return
        self._paused = True
        self._in._cancel()

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._in._schedule()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
        if self._eof_written:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data:
            return
        if self._lost:
            self._out.written += len(data)
            self._out.lost += len(data)
            return
        self._out._write(bytes(data))
        self._maybe_pause()

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._closing or self._eof_written:
            return
        self._eof_written = True
        self._out._write_eof()

    def get_write_buffer_size(self) -> int:
        if self._lost:
            return 0
        return max(0, self._out._size - self._out.window)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = 4 * low if low is not None else 64 * 1024
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self._maybe_pause()

    def close(self) -> None:
        """Stop reading; send what is buffered, then the end of the stream; then ``connection_lost(None)``."""
        if self._closing:
            return
        self._closing = True
        self._in._cancel()
        self._in._discard()
        self._out._write_eof()
        self._buffer_shrunk()

    def abort(self) -> None:
        """Drop the connection now: the transport buffer is lost (the window's bytes still go out)."""
        self._force_close(None, keep=self._out.window)

    def reset(self) -> None:
        """This end resets the connection: ``connection_lost(None)`` here, ``ConnectionResetError`` there."""
        self.pair._reset(self)

    # ------------------------------------------------------------ internals

    def _force_close(self, exc: Exception | None, keep: int = 0) -> None:
        if self._lost:
            return
        self._closing = True
        self._lost = True
        self._in._cancel()
        self._in._discard()
        self._out._discard(keep)
        self._out._write_eof()
        self._loop().call_soon(self._call_connection_lost, exc)

    def _loop(self) -> asyncio.AbstractEventLoop:
        return self.pair._get_loop()

    def _call_connection_lost(self, exc: Exception | None) -> None:
        if self._lost_called:
            return
        self._lost_called = True
        protocol = self._protocol
        if protocol is None:
            return
        try:
            protocol.connection_lost(exc)
        except Exception as error:  # noqa: BLE001 - reported as asyncio does
            self._report(error, "protocol.connection_lost() failed")

    def _report(self, exc: BaseException, message: str) -> None:
        self._loop().call_exception_handler(
            {"message": message, "exception": exc, "transport": self, "protocol": self._protocol}
        )

    def _fatal(self, exc: Exception, message: str) -> None:
        self._report(exc, f"Fatal error: {message}")
        self._force_close(exc)

    def _maybe_pause(self) -> None:
        if self._writing_paused or self._lost or self.get_write_buffer_size() <= self._high:
            return
        self._writing_paused = True
        protocol = self._protocol
        if protocol is not None:
            try:
                protocol.pause_writing()
            except Exception as exc:  # noqa: BLE001 - reported as asyncio does
                self._report(exc, "protocol.pause_writing() failed")

    def _buffer_shrunk(self) -> None:
        """Bytes left the outgoing link: resume the writer; a closing end may now be done."""
        if self._lost:
            return
        size = self.get_write_buffer_size()
        if self._closing:  # no resume_writing once closing, as asyncio
            if size == 0:
                self._lost = True
                self._loop().call_soon(self._call_connection_lost, None)
            return
        if self._writing_paused and size <= self._low:
            self._writing_paused = False
            protocol = self._protocol
            if protocol is not None:
                try:
                    protocol.resume_writing()
                except Exception as exc:  # noqa: BLE001 - reported as asyncio does
                    self._report(exc, "protocol.resume_writing() failed")

    def _read(self, link: Link, limit: int) -> int:
        """One read of at most ``limit`` bytes into the protocol; returns how many it took."""
        protocol = self._protocol
        assert protocol is not None
        if isinstance(protocol, asyncio.BufferedProtocol):
            try:
                buffer = memoryview(protocol.get_buffer(-1)).cast("B")
                if not len(buffer):
                    raise RuntimeError("get_buffer() returned an empty buffer")
            except Exception as exc:  # noqa: BLE001 - what asyncio does with it
                self._fatal(exc, "protocol.get_buffer() call failed.")
                return 0
            count = min(len(buffer), limit)
            offset = 0
            for part in link._take(count):
                buffer[offset : offset + len(part)] = part
                offset += len(part)
            try:
                protocol.buffer_updated(count)
            except Exception as exc:  # noqa: BLE001 - what asyncio does with it
                self._fatal(exc, "protocol.buffer_updated() call failed.")
            return count
        count = min(READ_SIZE, limit)
        parts = link._take(count)
        data = bytes(parts[0]) if len(parts) == 1 else b"".join(parts)
        try:
            protocol.data_received(data)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - what asyncio does with it
            self._fatal(exc, "protocol.data_received() call failed.")
        return count

    def _eof_received(self) -> None:
        protocol = self._protocol
        assert protocol is not None
        try:
            keep_open = protocol.eof_received()  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - what asyncio does with it
            self._fatal(exc, "protocol.eof_received() call failed.")
            return
        if keep_open:
            self.pause_reading()  # half-closed: nothing more to read, writing goes on
        else:
            self.close()


class TransportPair:
    """Two connected :class:`FaultTransport` ends, the :attr:`client` and the :attr:`server`.

    ``window`` is how many bytes each direction absorbs before the writer's
    transport buffer grows (a small one makes backpressure come early, as a
    small ``SO_RCVBUF`` does). ``client_address`` and ``server_address`` are
    what ``get_extra_info("peername")`` and ``("sockname")`` say on each end
    (by default 127.0.0.1, a fresh port per pair, and 127.0.0.1:80).
    """

    def __init__(
        self,
        *,
        window: int = DEFAULT_WINDOW,
        client_address: tuple[str, int] | None = None,
        server_address: tuple[str, int] = ("127.0.0.1", 80),
    ) -> None:
        if client_address is None:
            client_address = ("127.0.0.1", next(_ports))
        self._loop: asyncio.AbstractEventLoop | None = None
        #: The client's end (what it writes goes through :attr:`client_to_server`).
        self.client = FaultTransport(
            self, "client", {"peername": server_address, "sockname": client_address, "socket": None}
        )
        #: The server's end (what it writes goes through :attr:`server_to_client`).
        self.server = FaultTransport(
            self, "server", {"peername": client_address, "sockname": server_address, "socket": None}
        )
        #: What the client writes, on its way to the server.
        self.client_to_server = Link(self, "client_to_server", window)
        #: What the server writes, on its way to the client.
        self.server_to_client = Link(self, "server_to_client", window)
        for link, sender, receiver in (
            (self.client_to_server, self.client, self.server),
            (self.server_to_client, self.server, self.client),
        ):
            link.sender, link.receiver = sender, receiver
            sender._out = link
            receiver._in = link

    def __repr__(self) -> str:
        return f"<TransportPair {self.client_to_server!r} {self.server_to_client!r}>"

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def link(self, towards: Side) -> Link:
        """The link that carries bytes to ``towards`` (``"server"``: :attr:`client_to_server`)."""
        return self.client_to_server if _side(towards) == "server" else self.server_to_client

    def end(self, side: Side) -> FaultTransport:
        """The :attr:`client` or :attr:`server` end."""
        return self.client if _side(side) == "client" else self.server

    def connect(self, client: asyncio.BaseProtocol, server: asyncio.BaseProtocol) -> None:
        """Attach the protocols: ``connection_made`` on the server's end, then on the client's.

        Needs a running event loop; what ``connection_made`` raises is raised here.
        """
        if self.client._protocol is not None or self.server._protocol is not None:
            raise RuntimeError("this pair is connected already")
        self._get_loop()
        self.server._protocol = server
        self.client._protocol = client
        server.connection_made(self.server)
        client.connection_made(self.client)

    @property
    def closed(self) -> bool:
        """Whether both ends are closed (``connection_lost`` called or about to be)."""
        return self.client._lost and self.server._lost

    def heal(self) -> None:
        """:meth:`Link.heal` both ways."""
        self.client_to_server.heal()
        self.server_to_client.heal()

    def half_open(self, vanished: Side) -> None:
        """The ``vanished`` end's host is gone without a word (power cut, cable pulled, NAT timeout).

        Nothing from it arrives any more (what it had in flight included), and
        what the other end sends piles up unacknowledged (past the window: its
        buffer grows and its protocol gets ``pause_writing``). Nobody gets an
        end of stream or a reset: only a timeout (keepalive, close_timeout)
        or :meth:`reset` ends it.
        """
        away = self.link(towards="server" if _side(vanished) == "client" else "client")
        away._discard()
        away.drop_after(0)
        if away._eof:
            away._eof_done = True
        self.link(towards=vanished).stall()

    def reset(self) -> None:
        """The network resets the connection: ``connection_lost(ConnectionResetError)`` at both ends now."""
        self._reset(None)

    def abort(self) -> None:
        """Abort both ends (what a test's teardown does with what is left)."""
        self.client.abort()
        self.server.abort()

    def _reset(self, by: FaultTransport | None) -> None:
        for link in (self.client_to_server, self.server_to_client):
            link._dead = True
        for end in (self.client, self.server):
            end._force_close(None if end is by else ConnectionResetError(104, "Connection reset by peer"))

    def _cut(self, *, reset: bool) -> None:
        if reset:
            self._reset(None)
            return
        now = self._get_loop().time()
        for link in (self.client_to_server, self.server_to_client):
            link._dead = True  # what the ends write from now on goes nowhere
            link._cancel()
            link._discard()
            link._latency = 0.0
            link._drop_budget = None
            link._stalled = False
            link._rate = None
            link._cut_budget = None
            if not link._eof_delivered:  # the end of the stream, as the cutting middlebox sends it
                link._eof = True
                link._eof_at = now
                link._eof_done = False
            link._schedule()


def _side(side: str) -> Side:
    if side == "client":
        return "client"
    if side == "server":
        return "server"
    raise ValueError(f"side must be 'client' or 'server', not {side!r}")


def _check_count(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, not {value!r}")
