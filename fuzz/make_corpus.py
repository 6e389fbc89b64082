"""Write the seed corpus of the fuzz targets into fuzz/corpus/<target>/ (deterministic).

Run ``python fuzz/make_corpus.py`` after changing an input layout; the output is
committed. Each seed is a valid input of its target (see the targets' docstrings).
"""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

from wsline.protocol import deflate as pmd
from wsline.protocol import handshake as hs
from wsline.protocol.frames import build_close_payload, build_frame

HERE = Path(__file__).resolve().parent
MASK = b"\x12\x34\x56\x78"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def peer_frames(to_client: bool) -> list[bytes]:
    """Streams a peer may send (some of them broken on purpose)."""
    mask = None if to_client else MASK

    def frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
        return build_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=mask)

    return [
        frame(1, "Hello, wörld".encode()),
        frame(2, bytes(range(200))),
        frame(1, b"frag", fin=False) + frame(9, b"ping") + frame(0, b"ment", fin=False) + frame(0, b"ed"),
        frame(10, b"pong") + frame(8, build_close_payload(1000, "bye")),
        frame(8, build_close_payload(4000, "é" * 10)),
        frame(8, b"\x03\xed"),  # 1005 may not be sent
        frame(8, b"\x03\xe8\xff"),  # reason not UTF-8
        frame(1, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"),  # a surrogate
        frame(1, b"\xf0\x9f", fin=False) + frame(0, b"\x98\x80"),  # a code point across frames
        bytes([0xA2]) + frame(2, b"x")[1:],  # RSV2 set
        bytes([0x83]) + frame(2, b"x")[1:],  # reserved opcode
        frame(2, b"a" * 2000),
        # A 64-bit length that would fit in 7 bits: announced, not all sent.
        bytes([0x82, (0 if to_client else 0x80) | 127]) + (5).to_bytes(8, "big") + (mask or b"") + b"abc",
    ]


def compressed(messages: list[bytes], bits: int = 15) -> list[bytes]:
    sender = pmd.PerMessageDeflate(False, client_max_window_bits=bits)
    return [sender.compress(m) for m in messages]


def frames_seeds() -> list[bytes]:
    seeds: list[bytes] = []
    for config in (0x00, 0x01, 0x09, 0x19):
        for i, stream in enumerate(peer_frames(bool(config & 1))):
            seeds.append(bytes([config, i % 3 * 7]) + stream)
    # permessage-deflate: whole and fragmented compressed messages, to a server (window 15).
    texts = [b"Hello, Hello, Hello, Hello!", bytes(300), "ünïcödé ".encode() * 20]
    payloads = compressed(texts)
    config = 0xE2  # server, deflate, window 8 + 7
    stream = b"".join(build_frame(1, p, rsv1=True, mask=MASK) for p in payloads)
    seeds.append(bytes([config, 5]) + stream)
    first, rest = payloads[1][:3], payloads[1][3:]
    stream = build_frame(2, first, fin=False, rsv1=True, mask=MASK) + build_frame(0, rest, mask=MASK)
    seeds.append(bytes([config, 0]) + stream)
    # to a client, no context takeover, max_size 1000: a message that inflates past the limit.
    bomb = compressed([bytes(5000)])[0]
    seeds.append(bytes([0xE7 | 0x08, 3]) + build_frame(2, bomb, rsv1=True))
    seeds.append(bytes([0x03, 1]) + build_frame(2, b"\x0a\x00\x00\x00\x00\x00\x00\x00?", rsv1=True))
    return seeds


def handshake_seeds() -> list[bytes]:
    seeds: list[bytes] = []
    offer = pmd.client_offer(pmd.DEFAULT_CLIENT_CONFIG)
    uri = hs.parse_uri("ws://example.com:8080/chat?room=1")
    request = hs.serialize_request(
        hs.make_request(uri, KEY, subprotocols=["chat", "v2.json"], extensions=offer, origin="null")
    )
    seeds.append(b"\x00" + request.partition(b"\r\n\r\n")[0])
    seeds.append(b"\x00GET * HTTP/1.0\r\nHost: a")
    seeds.append(b"\x01POST /x HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n folded")
    value, _ = pmd.server_negotiate([offer], pmd.DEFAULT_SERVER_CONFIG) or ("", None)
    response = hs.build_response(hs.accept_response(KEY, "chat", value))
    seeds.append(b"\x02" + response + b"\x81\x02hi")
    seeds.append(b"\x03" + hs.build_response(hs.reject_response(403, "go away")))
    seeds.append(b"\x03HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    seeds.append(
        b"\x04POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n"
        b" world\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n" + request
    )
    seeds.append(b"\x04GET /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.0\r\n\r\n")
    for text in ("wss://user:pw@[::1]:9443/a/b?c=d&e", "ws://example.com", "http://x/", "ws://h:99999/"):
        seeds.append(b"\x05" + text.encode())
    for text in (
        "permessage-deflate; client_max_window_bits, permessage-deflate",
        'permessage-deflate; server_max_window_bits="10"; client_no_context_takeover',
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=9\nx-other",
        'foo; bar="b\\"a", , baz',
    ):
        seeds.append(b"\x06" + text.encode("latin-1"))
    return seeds


def deflate_seeds() -> list[bytes]:
    seeds: list[bytes] = []
    messages = [b"abcabcabcabcabc", bytes(range(256)), b"", b"xyz" * 100]
    for config, bits in ((0x47, 15), (0x40, 8), (0x5A, 10), (0x2F, 15)):
        payloads = compressed(messages, max(bits, 9))
        seeds.append(bytes([config, 3]) + b"\xff\x00\xff".join(payloads))
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    final = raw.compress(b"final block then more") + raw.flush()
    seeds.append(bytes([0x07, 0]) + final + compressed([b"next"])[0])
    seeds.append(bytes([0x37, 1]) + b"\x0a\x00\x00\x00\x00\x00\x00\x00?")
    return seeds


def http11_seeds() -> list[bytes]:
    """Request and response streams for fuzz_http11 (byte 0: the configuration, byte 1: a piece size)."""
    uri = hs.parse_uri("ws://example.com:8080/chat?room=1")
    upgrade = hs.serialize_request(hs.make_request(uri, KEY, subprotocols=["chat"], origin="null"))
    requests = [
        upgrade + b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58",
        b"\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n"
        b"POST /b HTTP/1.1\r\nHost: h:80\r\nContent-Length: 5\r\n\r\nhello"
        b"PUT /c HTTP/1.1\r\nHost: [::1]\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'3;a=b;q="x\\"y"\r\nabc\r\n00 ; x\r\nX-Sum: 1\r\n\r\n',
        b"OPTIONS * HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        b"GET http://a.example/x?y HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
        b"1\r\nG\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: h\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\nb\r\n\r\n",
    ]
    responses = [
        (0, hs.build_response(hs.accept_response(KEY, "chat")) + b"\x81\x02hi"),
        (
            0,
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nfail\r\n0\r\nX: y\r\n\r\n"
            b"HTTP/1.0 403 Forbidden\r\n\r\nuntil the end",
        ),
        (1, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1 304 Not Modified\r\n\r\n"),
        (2, b"HTTP/1.0 200 Connection established\r\n\r\n\x16\x03\x01\x00\x05hello"),
        (
            2,
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n"
            b"Content-Length: 4\r\n\r\ndeny",
        ),
        (3, b"HTTP/1.1 201 Created\r\nContent-Length: 1x\r\n\r\n"),
    ]
    seeds = [bytes([small << 1, size]) + stream for stream in requests for small, size in ((0, 6), (1, 0))]
    for method, stream in responses:
        seeds += [bytes([1 | small << 1 | method << 2, 10]) + stream for small in (0, 1)]
    return seeds


def write(name: str, seeds: list[bytes]) -> None:
    folder = HERE / "corpus" / name
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("seed-*"):
        old.unlink()
    for seed in seeds:
        (folder / f"seed-{hashlib.sha1(seed).hexdigest()[:12]}").write_bytes(seed)


def main() -> None:
    write("frames", frames_seeds())
    write("handshake", handshake_seeds())
    write("deflate", deflate_seeds())
    write("http11", http11_seeds())


if __name__ == "__main__":
    main()
