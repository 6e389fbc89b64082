"""wsline.testing.TransportPair on its own: the asyncio transport contract, then each fault.

The protocols here only record what the transport does to them, so every
assertion is about the transport: when bytes arrive and in what reads, when
pause_writing/resume_writing, eof_received and connection_lost are called.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from wsline.testing import DEFAULT_WINDOW, FaultTransport, TransportPair


async def passes(count: int = 5) -> None:
    """Let the event loop run ``count`` passes."""
    for _ in range(count):
        await asyncio.sleep(0)


class Recorder(asyncio.BufferedProtocol):
    """Records everything; ``get_buffer`` gives a buffer of ``buffer_size`` bytes."""

    def __init__(self, buffer_size: int = 2**16, keep_open: bool = False) -> None:
        self.buffer = bytearray(buffer_size)
        self.keep_open = keep_open
        self.transport: FaultTransport | None = None
        self.data = bytearray()
        self.reads: list[int] = []
        self.events: list[Any] = []
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, FaultTransport)
        self.transport = transport
        self.events.append("made")

    def get_buffer(self, sizehint: int) -> bytearray:
        assert sizehint == -1  # as asyncio's socket transports ask
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data += self.buffer[:nbytes]
        self.reads.append(nbytes)

    def eof_received(self) -> bool:
        self.events.append("eof")
        return self.keep_open

    def pause_writing(self) -> None:
        self.events.append("pause_writing")

    def resume_writing(self) -> None:
        self.events.append("resume_writing")

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")
        self.lost.set_result(exc)

    @property
    def t(self) -> FaultTransport:
        assert self.transport is not None
        return self.transport


class PlainRecorder(asyncio.Protocol):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        assert type(data) is bytes
        self.chunks.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


def connected(**kwargs: Any) -> tuple[TransportPair, Recorder, Recorder]:
    pair = TransportPair(**kwargs)
    client, server = Recorder(), Recorder()
    pair.connect(client, server)
    return pair, client, server


# ------------------------------------------------------------------ the contract


async def test_connection_made_on_both_ends_with_the_addresses() -> None:
    pair = TransportPair(client_address=("10.1.2.3", 5555), server_address=("10.9.9.9", 443))
    client, server = Recorder(), Recorder()
    pair.connect(client, server)
    assert client.events == server.events == ["made"]
    assert isinstance(pair.client, asyncio.Transport)
    assert client.t is pair.client and server.t is pair.server
    assert pair.server.get_extra_info("peername") == ("10.1.2.3", 5555)
    assert pair.server.get_extra_info("sockname") == ("10.9.9.9", 443)
    assert pair.client.get_extra_info("peername") == ("10.9.9.9", 443)
    assert pair.client.get_extra_info("socket") is None
    assert pair.client.get_extra_info("sslcontext", "none") == "none"
    assert pair.client.get_protocol() is client
    with pytest.raises(RuntimeError, match="connected already"):
        pair.connect(Recorder(), Recorder())


async def test_default_client_addresses_differ_per_pair() -> None:
    a, b = TransportPair(), TransportPair()
    assert a.server.get_extra_info("peername")[0] == "127.0.0.1"
    assert a.server.get_extra_info("peername") != b.server.get_extra_info("peername")


async def test_bytes_arrive_in_a_later_loop_pass_never_inside_write() -> None:
    pair, client, server = connected()
    client.t.write(b"hello")
    client.t.writelines([b" ", bytearray(b"wor"), memoryview(b"ld")])
    assert server.data == b""  # nothing re-enters the peer from inside write()
    await passes(1)
    assert server.data == b"hello world"
    assert server.reads == [11]  # what was there, in one read
    assert pair.client_to_server.delivered == pair.client_to_server.written == 11


async def test_the_written_buffer_is_copied() -> None:
    _pair, client, server = connected()
    data = bytearray(b"abc")
    client.t.write(data)
    data[:] = b"xyz"
    await passes()
    assert server.data == b"abc"


async def test_a_plain_protocol_gets_data_received_in_reads_of_at_most_256_kib() -> None:
    pair = TransportPair()
    client, server = Recorder(), PlainRecorder()
    pair.connect(client, server)
    client.t.write(b"x" * (600 * 1024))
    await passes(1)
    assert [len(c) for c in server.chunks] == [256 * 1024]  # one read per pass
    await passes(3)
    assert [len(c) for c in server.chunks] == [256 * 1024, 256 * 1024, 88 * 1024]


async def test_a_buffered_protocol_gets_at_most_its_buffer_per_read() -> None:
    pair = TransportPair()
    client, server = Recorder(), Recorder(buffer_size=1000)
    pair.connect(client, server)
    client.t.write(b"y" * 2500)
    await passes(5)
    assert server.reads == [1000, 1000, 500]
    assert server.data == b"y" * 2500


async def test_write_checks_its_argument_and_ignores_empty_writes() -> None:
    pair, client, _server = connected()
    with pytest.raises(TypeError):
        client.t.write("text")  # type: ignore[arg-type]
    client.t.write(b"")
    assert pair.client_to_server.written == 0


async def test_pause_reading_holds_bytes_until_resume_reading() -> None:
    pair, client, server = connected()
    server.t.pause_reading()
    assert not server.t.is_reading()
    client.t.write(b"held")
    await passes()
    assert server.data == b""
    assert pair.client_to_server.in_flight == 4
    server.t.resume_reading()
    assert server.t.is_reading()
    await passes()
    assert server.data == b"held"


async def test_write_buffer_limits_like_asyncio() -> None:
    _pair, client, _ = connected()
    t = client.t
    assert t.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
    t.set_write_buffer_limits(high=1000)
    assert t.get_write_buffer_limits() == (250, 1000)
    t.set_write_buffer_limits(low=100)
    assert t.get_write_buffer_limits() == (100, 400)
    with pytest.raises(ValueError):
        t.set_write_buffer_limits(high=10, low=20)
    assert t.can_write_eof()


async def test_backpressure_past_the_window_and_high_water_mark() -> None:
    """A reader that does not read: first the window fills, then the writer's buffer, then pause_writing."""
    _pair, client, server = connected(window=1000)
    client.t.set_write_buffer_limits(high=500)
    server.t.pause_reading()
    client.t.write(b"a" * 1000)
    assert client.t.get_write_buffer_size() == 0  # within the window: the kernels hold it
    client.t.write(b"b" * 500)
    assert client.t.get_write_buffer_size() == 500
    assert "pause_writing" not in client.events  # at the mark, not above it
    client.t.write(b"c")
    assert client.events[-1] == "pause_writing"  # at once, inside write(), as asyncio does
    order: list[str] = []
    server.buffer_updated = lambda n: order.append(f"read {n}")  # type: ignore[method-assign]
    client.resume_writing = lambda: order.append("resume_writing")  # type: ignore[method-assign]
    server.t.resume_reading()
    await passes()
    assert order == ["read 1501", "resume_writing"]  # the writer hears after the read, not inside it
    assert server.buffer[:1501] == b"a" * 1000 + b"b" * 500 + b"c"
    assert client.t.get_write_buffer_size() == 0


# ------------------------------------------------------------------ closing


async def test_close_sends_what_is_buffered_then_eof_then_both_are_lost() -> None:
    pair, client, server = connected()
    client.t.write(b"last words")
    client.t.close()
    assert client.t.is_closing()
    client.t.close()  # twice is fine
    assert await asyncio.wait_for(server.lost, 1) is None
    assert await asyncio.wait_for(client.lost, 1) is None
    assert server.data == b"last words"
    assert server.events == ["made", "eof", "lost"]  # eof_received returned False: it closed
    assert pair.closed


async def test_close_towards_a_reader_that_never_reads_never_completes_until_abort() -> None:
    pair, client, server = connected(window=100)
    server.t.pause_reading()
    client.t.write(b"z" * 1000)
    client.t.close()
    await asyncio.sleep(0.05)
    assert not client.lost.done()  # 900 bytes are still in its buffer
    client.t.abort()
    assert await asyncio.wait_for(client.lost, 1) is None
    assert pair.client_to_server.in_flight == 100  # the window's bytes still go out
    assert pair.client_to_server.lost == 900
    server.t.resume_reading()
    assert await asyncio.wait_for(server.lost, 1) is None
    assert server.data == b"z" * 100
    assert "eof" in server.events


async def test_a_closed_end_reads_no_more_and_what_is_sent_to_it_is_discarded() -> None:
    pair, client, server = connected()
    server.t.pause_reading()
    client.t.write(b"unread")
    server.t.close()
    await asyncio.wait_for(server.lost, 1)
    client.t.write(b"more")
    await passes()
    assert server.data == b""
    assert pair.client_to_server.lost == 10
    assert client.events[-2:] == ["eof", "lost"]  # the end of the stream, then it closed too


async def test_write_eof_and_a_half_closed_peer() -> None:
    """eof_received returning True keeps the peer open for writing, as asyncio does."""
    pair = TransportPair()
    client, server = Recorder(), Recorder(keep_open=True)
    pair.connect(client, server)
    client.t.write(b"request")
    client.t.write_eof()
    with pytest.raises(RuntimeError):
        client.t.write(b"after eof")
    await passes()
    assert server.events == ["made", "eof"]
    assert not server.t.is_closing()
    server.t.write(b"response")  # the half-closed client still reads
    server.t.close()
    assert await asyncio.wait_for(client.lost, 1) is None
    assert client.data == b"response"
    assert client.events == ["made", "eof", "lost"]
    assert await asyncio.wait_for(server.lost, 1) is None


async def test_an_exception_in_a_protocol_callback_goes_to_the_loop_and_closes_that_end() -> None:
    seen: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    try:

        class Broken(Recorder):
            def buffer_updated(self, nbytes: int) -> None:
                raise ValueError("broken protocol")

        pair = TransportPair()
        client, server = Recorder(), Broken()
        pair.connect(client, server)
        client.t.write(b"boom")
        exc = await asyncio.wait_for(server.lost, 1)
        assert isinstance(exc, ValueError)
        assert seen and isinstance(seen[0]["exception"], ValueError)
        assert "buffer_updated" in seen[0]["message"]
        assert await asyncio.wait_for(client.lost, 1) is None  # it saw the end of the stream
    finally:
        loop.set_exception_handler(previous)


# ------------------------------------------------------------------ faults


async def test_delay_is_latency_per_write_in_loop_time_and_keeps_order() -> None:
    pair, client, server = connected()
    loop = asyncio.get_running_loop()
    arrivals: list[tuple[bytes, float]] = []
    server.buffer_updated = lambda n: arrivals.append((bytes(server.buffer[:n]), loop.time()))  # type: ignore[method-assign]
    pair.client_to_server.delay(0.1)
    start = loop.time()
    client.t.write(b"1")
    pair.client_to_server.delay(0.0)  # a later write may not overtake an earlier one
    client.t.write(b"2")
    await asyncio.sleep(0.05)
    assert arrivals == []
    await asyncio.sleep(0.1)
    assert b"".join(data for data, _ in arrivals) == b"12"
    assert arrivals[0][1] - start >= 0.1
    with pytest.raises(ValueError):
        pair.client_to_server.delay(-1)


async def test_delay_applies_to_the_end_of_the_stream_too() -> None:
    pair, client, server = connected()
    pair.client_to_server.delay(0.1)
    client.t.close()
    await asyncio.sleep(0.05)
    assert "eof" not in server.events
    await asyncio.wait_for(server.lost, 1)
    assert "eof" in server.events


async def test_drop_after_loses_every_byte_past_the_budget_silently() -> None:
    pair, client, server = connected()
    client.t.set_write_buffer_limits(high=10)
    pair.client_to_server.drop_after(bytes=5)
    client.t.write(b"01234567")
    client.t.write(b"89")
    await passes()
    assert server.data == b"01234"
    assert pair.client_to_server.lost == 5
    assert client.t.get_write_buffer_size() == 0  # lost bytes do not hold the writer back
    assert "pause_writing" not in client.events
    client.t.close()  # the end of the stream is lost too
    assert await asyncio.wait_for(client.lost, 1) is None
    await asyncio.sleep(0.05)
    assert server.events == ["made"]
    pair.abort()


async def test_drop_after_zero_then_heal() -> None:
    pair, client, server = connected()
    pair.client_to_server.drop_after()
    client.t.write(b"lost")
    pair.client_to_server.heal()
    client.t.write(b"found")
    await passes()
    assert server.data == b"found"


async def test_stall_builds_backpressure_and_heal_lets_everything_through() -> None:
    pair, client, server = connected(window=1024)
    pair.client_to_server.stall()
    for _ in range(100):
        client.t.write(b"s" * 1024)
    await passes()
    assert server.data == b""
    assert client.t.get_write_buffer_size() == 99 * 1024
    assert client.events == ["made", "pause_writing"]
    pair.client_to_server.heal()
    await passes(10)
    assert len(server.data) == 100 * 1024
    assert client.events == ["made", "pause_writing", "resume_writing"]


async def test_slow_reader_reads_n_bytes_per_tick_and_the_writer_is_paused() -> None:
    pair, client, server = connected(window=100)
    client.t.set_write_buffer_limits(high=1000)
    pair.client_to_server.slow_reader(bytes_per_tick=100)
    client.t.write(b"r" * 5000)
    assert client.events[-1] == "pause_writing"
    await passes(10)
    assert server.reads == [100] * 10
    await passes(60)
    assert len(server.data) == 5000
    assert client.events[-1] == "resume_writing"


async def test_slow_reader_with_an_interval() -> None:
    pair, client, server = connected()
    loop = asyncio.get_running_loop()
    times: list[float] = []
    server.buffer_updated = lambda n: times.append(loop.time())  # type: ignore[method-assign]
    pair.client_to_server.slow_reader(10, interval=0.02)
    client.t.write(b"i" * 40)
    await asyncio.sleep(0.2)
    assert len(times) == 4
    assert all(b - a >= 0.019 for a, b in itertools.pairwise(times))
    pair.client_to_server.slow_reader(0)  # 0 bytes per tick: stalled
    client.t.write(b"i")
    await asyncio.sleep(0.05)
    assert len(times) == 4


async def test_half_open_nothing_arrives_nobody_is_told_and_the_survivor_fills_up() -> None:
    pair, client, server = connected(window=1000)
    server.t.set_write_buffer_limits(high=2000)
    client.t.write(b"in flight when the client vanished")
    pair.half_open("client")
    client.t.write(b"the vanished client's last write")
    for _ in range(4):
        server.t.write(b"v" * 1000)  # into the void: unacknowledged
    await asyncio.sleep(0.05)
    assert server.data == client.data == b""
    assert server.t.get_write_buffer_size() == 3000
    assert server.events == ["made", "pause_writing"]
    client.t.close()  # its FIN never arrives either
    await asyncio.sleep(0.05)
    assert "eof" not in server.events and not server.lost.done()
    server.t.abort()
    assert await asyncio.wait_for(server.lost, 1) is None
    with pytest.raises(ValueError):
        pair.half_open("nobody")  # type: ignore[arg-type]


async def test_cut_after_delivers_exactly_k_bytes_then_ends_both_sides() -> None:
    pair, client, server = connected()
    pair.client_to_server.cut_after(bytes=7)
    client.t.write(b"\x81\x85\x00\x00\x00\x00hello")  # a frame: cut in its payload
    server.t.write(b"in flight the other way")
    assert await asyncio.wait_for(server.lost, 1) is None
    assert await asyncio.wait_for(client.lost, 1) is None
    assert bytes(server.data) == b"\x81\x85\x00\x00\x00\x00h"
    assert server.events == ["made", "eof", "lost"]
    assert client.events == ["made", "eof", "lost"]
    assert client.data == b""
    assert pair.client_to_server.lost == 4


async def test_cut_after_counts_what_is_in_flight_and_waits_for_more() -> None:
    pair, client, server = connected()
    server.t.pause_reading()
    client.t.write(b"abc")
    pair.client_to_server.cut_after(bytes=5)
    server.t.resume_reading()
    await passes()
    assert server.data == b"abc" and not server.lost.done()
    client.t.write(b"defgh")
    await asyncio.wait_for(server.lost, 1)
    assert server.data == b"abcde"


async def test_cut_after_zero_reaches_a_paused_reader_when_it_reads_again() -> None:
    pair, client, server = connected()
    server.t.pause_reading()
    pair.server_to_client.cut_after(0)
    assert await asyncio.wait_for(client.lost, 1) is None
    await passes()
    assert not server.lost.done()  # a paused reader sees the end of the stream when it reads
    server.t.resume_reading()
    assert await asyncio.wait_for(server.lost, 1) is None


async def test_reset_after_and_reset() -> None:
    pair, client, server = connected()
    pair.server_to_client.reset_after(bytes=3)
    server.t.write(b"abcdef")
    assert isinstance(await asyncio.wait_for(client.lost, 1), ConnectionResetError)
    assert isinstance(await asyncio.wait_for(server.lost, 1), ConnectionResetError)
    assert client.data == b"abc"
    assert "eof" not in client.events and "eof" not in server.events

    pair, client, server = connected()
    server.t.pause_reading()  # a reset reaches even an end that is not reading
    client.t.write(b"never read")
    pair.reset()
    assert isinstance(await asyncio.wait_for(server.lost, 1), ConnectionResetError)
    assert isinstance(await asyncio.wait_for(client.lost, 1), ConnectionResetError)
    assert server.data == b""
    client.t.write(b"after the reset")  # ignored, as on a lost socket transport
    assert pair.closed


async def test_one_end_resets() -> None:
    pair, client, server = connected()
    pair.client.reset()
    assert await asyncio.wait_for(client.lost, 1) is None
    assert isinstance(await asyncio.wait_for(server.lost, 1), ConnectionResetError)


async def test_faults_check_their_arguments_and_show_in_repr() -> None:
    pair, _, _ = connected()
    link = pair.link(towards="server")
    assert link is pair.client_to_server and pair.end("client") is pair.client
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError):
            link.drop_after(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        link.slow_reader(10, interval=-1)
    with pytest.raises(ValueError):
        TransportPair(window=-1)
    link.delay(0.5)
    link.slow_reader(10)
    assert "delay=0.5" in repr(link) and "slow_reader=10" in repr(link)
    assert DEFAULT_WINDOW == 64 * 1024
    assert "open" in repr(pair.client)
    pair.abort()
