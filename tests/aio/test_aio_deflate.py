"""permessage-deflate on real sockets: negotiation, per-message control, bounded inflate."""

from __future__ import annotations

import zlib

import pytest

import wsline
from conftest import RawPeer, client, echo, ws_url
from wsline.protocol.deflate import DEFAULT_SERVER_CONFIG, DeflateConfig

pytestmark = pytest.mark.asyncio

OFFER = ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")


def deflate_raw(data: bytes, wbits: int = 15) -> bytes:
    """Compress one message as RFC 7692 wants it (sync flush, tail removed)."""
    comp = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


async def test_default_negotiation_uses_12_bit_windows(echo_server):
    async with client(ws_url(echo_server)) as ws:
        header = ws.response.headers.get("Sec-WebSocket-Extensions")
        assert header is not None
        assert header.startswith("permessage-deflate")
        assert "server_max_window_bits=12" in header
        assert "client_max_window_bits=12" in header
        assert DEFAULT_SERVER_CONFIG.server_max_window_bits == 12
        text = "compress me " * 5000
        await ws.send(text)
        assert await ws.recv() == text


async def test_compression_off_on_either_side(start_server):
    server = await start_server(echo, compression=None)
    async with client(ws_url(server)) as ws:
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        await ws.send("x" * 1000)
        assert await ws.recv() == "x" * 1000
    server2 = await start_server(echo)
    async with client(ws_url(server2), compression=None) as ws:
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        assert "Sec-WebSocket-Extensions" not in ws.request.headers


async def test_server_compresses_above_threshold_only(start_server, raw_client):
    async def handler(ws: wsline.WebSocket) -> None:
        await ws.send("tiny")  # below the threshold
        await ws.send("a" * 1000)  # compressed
        await ws.send("b" * 1000, compress=False)  # opted out
        await ws.recv()

    server = await start_server(handler, deflate=DeflateConfig(threshold=32))
    peer: RawPeer = await raw_client(server.port)
    response = await peer.handshake("/", [OFFER])
    assert (response.get("Sec-WebSocket-Extensions") or "").startswith("permessage-deflate")
    tiny = await peer.read_frame()
    assert (tiny.rsv1, tiny.payload) == (False, b"tiny")
    big = await peer.read_frame()
    assert big.rsv1 is True
    assert len(big.payload) < 100
    inflater = zlib.decompressobj(-15)
    assert inflater.decompress(big.payload + b"\x00\x00\xff\xff") == b"a" * 1000
    plain = await peer.read_frame()
    assert (plain.rsv1, plain.payload) == (False, b"b" * 1000)
    await peer.send_close()


async def test_compression_bomb_closes_with_1009_before_inflating(start_server, raw_client):
    received: list[object] = []

    async def handler(ws: wsline.WebSocket) -> None:
        try:
            received.append(await ws.recv())
        except wsline.ConnectionClosedError as exc:
            received.append(exc)

    server = await start_server(handler, max_size=1 << 20)
    peer = await raw_client(server.port)
    await peer.handshake("/", [OFFER])
    bomb = deflate_raw(b"\x00" * (64 << 20))  # 64 MiB of zeros in about 64 KiB
    assert len(bomb) < 100_000
    await peer.send_frame(2, bomb, rsv1=True)
    code, reason = await peer.read_close()
    assert code == 1009
    assert "limit" in reason
    (exc,) = received
    assert isinstance(exc, wsline.ConnectionClosedError)
    assert exc.code == 1009


async def test_rsv1_without_negotiation_is_a_protocol_error(start_server, raw_client):
    server = await start_server(echo)
    peer = await raw_client(server.port)
    await peer.handshake("/")  # no extension offered
    await peer.send_frame(1, deflate_raw(b"hello"), rsv1=True)
    code, _ = await peer.read_close()
    assert code == 1002


async def test_corrupt_compressed_data_closes_with_1007(start_server, raw_client):
    server = await start_server(echo)
    peer = await raw_client(server.port)
    await peer.handshake("/", [OFFER])
    await peer.send_frame(2, b"\xff\xff\xff\xff garbage", rsv1=True)
    code, _ = await peer.read_close()
    assert code == 1007


async def test_invalid_offer_is_declined_not_fatal(start_server, raw_client):
    server = await start_server(echo)
    peer = await raw_client(server.port)
    response = await peer.handshake(
        "/", [("Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=99")]
    )
    assert response.get("Sec-WebSocket-Extensions") is None
    await peer.send_frame(1, b"plain")
    frame = await peer.read_frame()
    assert (frame.rsv1, frame.payload) == (False, b"plain")


async def test_malformed_extension_header_gets_400(start_server, raw_client):
    server = await start_server(echo)
    peer = await raw_client(server.port)
    request = (
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        'Sec-WebSocket-Extensions: permessage-deflate; x="unterminated\r\n\r\n'
    )
    await peer.send(request.encode())
    response = await peer.read_response()
    assert response.status == 400


@pytest.mark.parametrize(
    "extension, message",
    [
        ("permessage-deflate; server_max_window_bits=7", "server_max_window_bits"),
        ("permessage-deflate; client_max_window_bits=16", "client_max_window_bits"),
        ("permessage-deflate; bogus_param", "bogus_param"),
        (
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "server_no_context_takeover",
        ),
        ("x-unknown-extension", "x-unknown-extension"),
    ],
)
async def test_client_fails_on_invalid_extension_response(raw_server, extension, message):
    async def serve_bad(peer: RawPeer) -> None:
        await peer.accept([("Sec-WebSocket-Extensions", extension)])
        await peer.read_eof()

    port = await raw_server(serve_bad)
    with pytest.raises(wsline.InvalidHandshake) as info:
        await wsline.connect(f"ws://127.0.0.1:{port}/", open_timeout=2)
    assert message in str(info.value)


async def test_client_without_compression_rejects_an_unsolicited_extension(raw_server):
    async def serve_bad(peer: RawPeer) -> None:
        await peer.accept([("Sec-WebSocket-Extensions", "permessage-deflate")])
        await peer.read_eof()

    port = await raw_server(serve_bad)
    with pytest.raises(wsline.InvalidHandshake, match="did not offer"):
        await wsline.connect(f"ws://127.0.0.1:{port}/", compression=None, open_timeout=2)


@pytest.mark.parametrize("takeover", [True, False])
async def test_context_takeover_round_trips(start_server, takeover):
    config = DeflateConfig(server_no_context_takeover=not takeover, client_no_context_takeover=not takeover)
    server = await start_server(echo, deflate=config, max_size=8 << 20)
    async with client(ws_url(server), deflate=config, max_size=8 << 20) as ws:
        header = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
        assert ("server_no_context_takeover" in header) is (not takeover)
        for size in (0, 1, 31, 32, 1000, 65536, 4 << 20):
            text = ("wsline " * (size // 7 + 1))[:size]
            await ws.send(text)
            assert await ws.recv() == text
            data = bytes(range(256)) * (size // 256) + bytes(size % 256)
            await ws.send(data)
            assert await ws.recv() == data
