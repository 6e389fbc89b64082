"""Tests for the message-level helpers shared by the I/O layers (wsline.protocol.session)."""

from __future__ import annotations

from typing import Any

import pytest

from wsline.protocol.connection import Connection, InvalidState
from wsline.protocol.frames import build_frame
from wsline.protocol.session import Fragmenter, PingTracker, check_pieces

MASK = b"\x5a\xa5\x0f\xf0"


def frames_of(conn: Connection, data: bytes) -> list[tuple[int, int, bytes]]:
    """(fin, opcode, payload) of each frame ``conn`` sent, as its peer sees them."""
    out = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        length = b1 & 0x7F
        pos += 2
        assert length < 126
        mask = None
        if b1 & 0x80:
            mask = data[pos : pos + 4]
            pos += 4
        payload = data[pos : pos + length]
        if mask is not None:
            payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        out.append((b0 >> 7, b0 & 0x0F, payload))
        pos += length
    return out


@pytest.fixture(params=[False, True], ids=["server", "client"])
def conn(request: pytest.FixtureRequest) -> Connection:
    return Connection(is_client=request.param)


def send_all(conn: Connection, pieces: list[Any]) -> bytes:
    fragmenter = Fragmenter(conn)
    out = b"".join(fragmenter.push(piece) for piece in pieces)
    return out + fragmenter.finish()


# ------------------------------------------------------------------ Fragmenter


def test_text_fragments(conn: Connection) -> None:
    data = send_all(conn, ["a", "bé", "c"])
    assert frames_of(conn, data) == [(0, 1, b"a"), (0, 0, "bé".encode()), (1, 0, b"c")]


def test_binary_fragments_of_every_bytes_like_kind(conn: Connection) -> None:
    data = send_all(conn, [b"a", bytearray(b"b"), memoryview(b"c")])
    assert frames_of(conn, data) == [(0, 2, b"a"), (0, 0, b"b"), (1, 0, b"c")]


def test_one_piece_is_one_whole_frame(conn: Connection) -> None:
    assert frames_of(conn, send_all(conn, [b"x"])) == [(1, 2, b"x")]


def test_no_pieces_send_nothing(conn: Connection) -> None:
    fragmenter = Fragmenter(conn)
    assert fragmenter.finish() == b"" and not fragmenter.started
    assert fragmenter.abort() == b""


def test_a_piece_goes_out_when_the_next_arrives(conn: Connection) -> None:
    fragmenter = Fragmenter(conn)
    assert fragmenter.push("a") == b"" and not fragmenter.started
    assert frames_of(conn, fragmenter.push("b")) == [(0, 1, b"a")]
    assert fragmenter.started


def test_fragments_round_trip_to_the_peer(conn: Connection) -> None:
    peer = Connection(is_client=not conn.is_client)
    assert peer.receive_data(send_all(conn, ["one ", "two ", "three"])) == ["one two three"]
    assert peer.receive_data(send_all(conn, [b"\x00", b"", b"\x01"])) == [b"\x00\x01"]


@pytest.mark.parametrize("pieces", [["a", b"b"], [b"a", "b"], [b"a", b"b", "c"]])
def test_mixed_kinds_are_refused_before_anything_is_framed(conn: Connection, pieces: list[Any]) -> None:
    fragmenter = Fragmenter(conn)
    sent = b""
    with pytest.raises(TypeError, match="all fragments"):
        for piece in pieces:
            sent += fragmenter.push(piece)
    assert len(frames_of(conn, sent)) == len(pieces) - 2  # the piece before the bad one is held


@pytest.mark.parametrize("bad", [1, None, {"a": 1}, ["a"]])
def test_pieces_of_other_types_are_refused(conn: Connection, bad: Any) -> None:
    with pytest.raises(TypeError, match="cannot send a fragment of type"):
        Fragmenter(conn).push(bad)


def test_abort_midway_closes_with_1011(conn: Connection) -> None:
    fragmenter = Fragmenter(conn)
    fragmenter.push("a")
    fragmenter.push("b")
    close = frames_of(conn, fragmenter.abort())
    assert close == [(1, 8, b"\x03\xf3incomplete fragmented message")]
    assert conn.close_sent == (1011, "incomplete fragmented message")


def test_abort_after_our_close_sends_nothing_more(conn: Connection) -> None:
    fragmenter = Fragmenter(conn)
    fragmenter.push("a")
    fragmenter.push("b")
    conn.send_close(1000)
    assert fragmenter.abort() == b""


def test_fragments_after_close_are_invalid(conn: Connection) -> None:
    fragmenter = Fragmenter(conn)
    fragmenter.push("a")
    conn.send_close()
    with pytest.raises(InvalidState):
        fragmenter.push("b")
    assert not fragmenter.started


def test_control_frames_may_go_between_fragments(conn: Connection) -> None:
    fragmenter = Fragmenter(conn)
    data = fragmenter.push(b"a") + fragmenter.push(b"b") + conn.send_ping(b"p") + fragmenter.finish()
    peer = Connection(is_client=not conn.is_client)
    events = peer.receive_data(data)
    assert events[-1] == b"ab" and len(events) == 2


@pytest.mark.parametrize("ok", [[], (), iter([]), (x for x in "")])
def test_check_pieces_accepts_iterables(ok: object) -> None:
    check_pieces(ok, allow_async=False)


def test_check_pieces_refuses_mappings_and_scalars() -> None:
    with pytest.raises(TypeError, match="mapping"):
        check_pieces({"a": 1}, allow_async=True)
    with pytest.raises(TypeError, match="cannot send int"):
        check_pieces(42, allow_async=True)

    async def agen() -> Any:
        yield "x"

    gen = agen()
    check_pieces(gen, allow_async=True)
    with pytest.raises(TypeError, match="cannot send async_generator"):
        check_pieces(gen, allow_async=False)


# ------------------------------------------------------------------ PingTracker


def test_pong_answers_its_ping_with_the_rtt() -> None:
    tracker: PingTracker[str] = PingTracker()
    assert tracker.latency is None
    tracker.add(b"a", "waiter-a", now=10.0)
    assert b"a" in tracker and len(tracker) == 1
    assert list(tracker.pong(b"a", now=10.25)) == [("waiter-a", 0.25)]
    assert tracker.latency == 0.25 and len(tracker) == 0


def test_pong_answers_every_earlier_ping() -> None:
    tracker: PingTracker[str] = PingTracker()
    for i, name in enumerate("abcd"):
        tracker.add(name.encode(), name, now=float(i))
    assert list(tracker.pong(b"c", now=5.0)) == [("a", 5.0), ("b", 4.0), ("c", 3.0)]
    assert tracker.latency == 3.0
    assert b"d" in tracker and len(tracker) == 1


def test_unknown_pong_answers_nothing() -> None:
    tracker: PingTracker[str] = PingTracker()
    tracker.add(b"a", "a", now=0.0)
    assert list(tracker.pong(b"zzz", now=1.0)) == []
    assert tracker.latency is None and b"a" in tracker


def test_add_returns_the_payload() -> None:
    tracker: PingTracker[str] = PingTracker()
    random = tracker.add(None, "r", now=0.0)
    assert isinstance(random, bytes) and len(random) == 4 and random in tracker
    assert tracker.add("hé", "t", now=0.0) == "hé".encode()
    assert tracker.add(bytearray(b"x"), "x", now=0.0) == b"x"
    assert tracker.newest() == b"x"
    with pytest.raises(ValueError, match="already waiting"):
        tracker.add(b"x", "again", now=0.0)
    with pytest.raises(ValueError, match="125"):
        tracker.add(b"y" * 126, "long", now=0.0)
    assert tracker.add(b"y" * 125, "ok", now=0.0) == b"y" * 125
    assert len(tracker) == 4 and tracker.newest() == b"y" * 125
    assert PingTracker().newest() is None


def test_random_payloads_avoid_waiting_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    from wsline.protocol import session

    draws = iter([b"same", b"same", b"new!"])
    monkeypatch.setattr(session.os, "urandom", lambda n: next(draws))
    tracker: PingTracker[str] = PingTracker()
    assert tracker.add(None, "first", now=0.0) == b"same"
    assert tracker.add(None, "second", now=0.0) == b"new!"


def test_discard_and_clear() -> None:
    tracker: PingTracker[str] = PingTracker()
    tracker.add(b"a", "a", now=0.0)
    tracker.add(b"b", "b", now=0.0)
    tracker.discard(b"a", "someone else")  # not its waiter: kept
    assert b"a" in tracker
    tracker.discard(b"a", "a")
    tracker.discard(b"a", "a")  # gone already: no error
    assert b"a" not in tracker
    tracker.add(b"c", "c", now=0.0)
    assert tracker.clear() == ["b", "c"] and len(tracker) == 0


def test_a_tracked_ping_round_trip_between_cores() -> None:
    client, server = Connection(True), Connection(False)
    tracker: PingTracker[int] = PingTracker()
    payload = tracker.add(None, 7, now=1.0)
    server.receive_data(client.send_ping(payload))
    (pong,) = client.receive_data(server.take_outbox())
    assert list(tracker.pong(pong.payload, now=1.5)) == [(7, 0.5)]  # type: ignore[union-attr]


def test_frames_of_helper_reads_masked_frames() -> None:
    assert frames_of(Connection(False), build_frame(1, b"ab", mask=MASK)) == [(1, 1, b"ab")]
