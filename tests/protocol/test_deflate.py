"""Tests for permessage-deflate (RFC 7692): header parsing, negotiation, codec."""

from __future__ import annotations

import os
import random
import time
import tracemalloc
import zlib

import pytest

from wsline.errors import InvalidPayload, NegotiationError, PayloadTooBig
from wsline.protocol import deflate as deflate_module
from wsline.protocol.deflate import (
    DeflateConfig,
    PerMessageDeflate,
    client_negotiate,
    client_offer,
    parse_extensions,
    server_negotiate,
)

KiB = 1024
MiB = 1024 * KiB
UNLIMITED = 1 << 63  # what the core passes when max_size is None


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def negotiate(
    server: DeflateConfig | None = None, client: DeflateConfig | None = None
) -> tuple[str, PerMessageDeflate, PerMessageDeflate]:
    """Run the whole handshake: client offer -> server answer -> client check."""
    server = server or DeflateConfig()
    client = client or DeflateConfig()
    accepted = server_negotiate([client_offer(client)], server)
    assert accepted is not None
    response, server_side = accepted
    client_side = client_negotiate([response], client)
    assert client_side is not None
    return response, server_side, client_side


def params_of(pmd: PerMessageDeflate) -> tuple[bool, bool, int, int]:
    return (
        pmd.server_no_context_takeover,
        pmd.client_no_context_takeover,
        pmd.server_max_window_bits,
        pmd.client_max_window_bits,
    )


def inflate(pmd: PerMessageDeflate, payload: bytes, max_size: int = UNLIMITED) -> bytes:
    return pmd.decompress(payload, True, max_size)


def sample(size: int, seed: int = 0) -> bytes:
    """Text-like data: compressible, but not trivially."""
    rng = random.Random(seed)
    words = [b"alpha", b"beta", b"gamma", b"delta", b"websocket", b"deflate", b"{", b"}", b'"id":', b"\n"]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words)
        out += str(rng.randrange(10_000)).encode()
    return bytes(out[:size])


# ------------------------------------------------------------------ DeflateConfig


def test_config_defaults() -> None:
    config = DeflateConfig()
    assert config.server_no_context_takeover is False
    assert config.client_no_context_takeover is False
    assert config.server_max_window_bits is None
    assert config.client_max_window_bits is None
    assert config.compress_level == 6
    assert config.mem_level == 5
    assert config.threshold == 32


@pytest.mark.parametrize(
    "kwargs",
    [
        {"server_max_window_bits": 7},
        {"server_max_window_bits": 16},
        {"client_max_window_bits": 0},
        {"client_max_window_bits": True},
        {"compress_level": 10},
        {"compress_level": -2},
        {"mem_level": 0},
        {"mem_level": 10},
        {"threshold": -1},
        {"server_no_context_takeover": 1},
        {"client_no_context_takeover": "yes"},
    ],
)
def test_config_rejects_out_of_range(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DeflateConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("bits", [7, 16])
def test_per_message_deflate_rejects_bad_window(bits: int) -> None:
    with pytest.raises(ValueError):
        PerMessageDeflate(True, server_max_window_bits=bits)


# ------------------------------------------------------------------ header parsing


def test_parse_single_token() -> None:
    assert parse_extensions(["permessage-deflate"]) == [("permessage-deflate", [])]


def test_parse_empty() -> None:
    assert parse_extensions([]) == []
    assert parse_extensions([""]) == []
    assert parse_extensions([" , ,\t"]) == []


def test_parse_params_and_whitespace() -> None:
    value = "permessage-deflate ;client_max_window_bits;  server_max_window_bits = 10 ;\tx=y"
    assert parse_extensions([value]) == [
        (
            "permessage-deflate",
            [("client_max_window_bits", None), ("server_max_window_bits", "10"), ("x", "y")],
        )
    ]


def test_parse_quoted_strings_are_unquoted() -> None:
    value = 'permessage-deflate; server_max_window_bits="10"; a="\\1\\2"; b="x"'
    assert parse_extensions([value]) == [
        ("permessage-deflate", [("server_max_window_bits", "10"), ("a", "12"), ("b", "x")])
    ]


def test_parse_several_offers_and_lines() -> None:
    values = [
        "permessage-deflate; client_max_window_bits=10, foo",
        "permessage-deflate,, bar; baz",
        " ",
        "permessage-deflate; server_no_context_takeover ,",
    ]
    assert parse_extensions(values) == [
        ("permessage-deflate", [("client_max_window_bits", "10")]),
        ("foo", []),
        ("permessage-deflate", []),
        ("bar", [("baz", None)]),
        ("permessage-deflate", [("server_no_context_takeover", None)]),
    ]


@pytest.mark.parametrize(
    "value",
    [
        ";",
        "permessage-deflate;",
        "permessage-deflate;;a",
        "permessage-deflate; =1",
        "permessage-deflate; a=",
        "permessage-deflate; a= ,",
        "permessage-deflate; a=1=2",
        "permessage-deflate; a=1 2",
        "permessage-deflate b",
        "permessage-deflate, ;a",
        "permessage deflate",
        'permessage-deflate; a="10',
        'permessage-deflate; a="1 0"',
        'permessage-deflate; a="1,0"',
        'permessage-deflate; a=""',
        'permessage-deflate; a="\x01"',
        'permessage-deflate; a="x"y',
        "permessage-deflate; a=[1]",
        "pérmessage-deflate",
        '"permessage-deflate"',
    ],
)
def test_parse_malformed(value: str) -> None:
    with pytest.raises(NegotiationError):
        parse_extensions([value])


def test_parse_malformed_in_a_later_line() -> None:
    with pytest.raises(NegotiationError):
        parse_extensions(["permessage-deflate", "permessage-deflate; ;"])


# ------------------------------------------------------------------ server negotiation


def accept(offer: str | list[str], config: DeflateConfig | None = None) -> tuple[str, PerMessageDeflate]:
    values = [offer] if isinstance(offer, str) else offer
    accepted = server_negotiate(values, config or DeflateConfig())
    assert accepted is not None
    return accepted


def test_server_accepts_bare_offer() -> None:
    response, pmd = accept("permessage-deflate")
    assert response == "permessage-deflate"
    assert pmd.is_server
    assert params_of(pmd) == (False, False, 15, 15)
    assert pmd.compress_level == 6 and pmd.mem_level == 5 and pmd.threshold == 32


def test_server_copies_codec_settings() -> None:
    _, pmd = accept("permessage-deflate", DeflateConfig(compress_level=1, mem_level=9, threshold=0))
    assert (pmd.compress_level, pmd.mem_level, pmd.threshold) == (1, 9, 0)


def test_server_no_context_takeover_echoed_when_offered() -> None:
    response, pmd = accept("permessage-deflate; server_no_context_takeover")
    assert response == "permessage-deflate; server_no_context_takeover"
    assert pmd.server_no_context_takeover


def test_server_no_context_takeover_from_config() -> None:
    response, pmd = accept("permessage-deflate", DeflateConfig(server_no_context_takeover=True))
    assert response == "permessage-deflate; server_no_context_takeover"
    assert pmd.server_no_context_takeover


def test_client_no_context_takeover_echoed_when_offered() -> None:
    response, pmd = accept("permessage-deflate; client_no_context_takeover")
    assert response == "permessage-deflate; client_no_context_takeover"
    assert pmd.client_no_context_takeover


def test_client_no_context_takeover_from_config() -> None:
    response, pmd = accept("permessage-deflate", DeflateConfig(client_no_context_takeover=True))
    assert response == "permessage-deflate; client_no_context_takeover"
    assert pmd.client_no_context_takeover


@pytest.mark.parametrize(
    ("offered", "configured", "expected"),
    [
        (None, None, None),
        ("10", None, 10),
        ("10", 12, 10),
        ("12", 10, 10),
        ("8", None, 8),
        (None, 11, 11),  # the server may announce its window unasked
        ("15", 9, 9),
    ],
)
def test_server_max_window_bits(offered: str | None, configured: int | None, expected: int | None) -> None:
    offer = "permessage-deflate" + (f"; server_max_window_bits={offered}" if offered else "")
    response, pmd = accept(offer, DeflateConfig(server_max_window_bits=configured))
    if expected is None:
        assert response == "permessage-deflate"
        assert pmd.server_max_window_bits == 15
    else:
        assert response == f"permessage-deflate; server_max_window_bits={expected}"
        assert pmd.server_max_window_bits == expected


@pytest.mark.parametrize(
    ("offered", "configured", "expected", "in_response"),
    [
        ("", None, 15, False),  # valueless, server has no limit: nothing to say
        ("", 10, 10, True),  # valueless: the server picks its value
        ("", 8, 8, True),
        ("=12", None, 12, True),  # echo the client's hint to inflate with a smaller window
        ("=12", 10, 10, True),
        ("=10", 14, 10, True),  # never above what the client offered
        (None, 10, 15, False),  # not offered: cannot be imposed, accept with a full window
        (None, None, 15, False),
    ],
)
def test_client_max_window_bits(
    offered: str | None, configured: int | None, expected: int, in_response: bool
) -> None:
    offer = "permessage-deflate" + ("" if offered is None else f"; client_max_window_bits{offered}")
    response, pmd = accept(offer, DeflateConfig(client_max_window_bits=configured))
    assert pmd.client_max_window_bits == expected
    if in_response:
        assert response == f"permessage-deflate; client_max_window_bits={expected}"
    else:
        assert response == "permessage-deflate"


def test_server_all_four_parameters() -> None:
    offer = (
        "permessage-deflate; client_max_window_bits; server_max_window_bits=10; "
        "client_no_context_takeover; server_no_context_takeover"
    )
    response, pmd = accept(offer, DeflateConfig(client_max_window_bits=9))
    assert response == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=10; client_max_window_bits=9"
    )
    assert params_of(pmd) == (True, True, 10, 9)


def test_server_quoted_values() -> None:
    response, pmd = accept('permessage-deflate; server_max_window_bits="9"; client_max_window_bits="10"')
    assert response == "permessage-deflate; server_max_window_bits=9; client_max_window_bits=10"
    assert params_of(pmd) == (False, False, 9, 10)


@pytest.mark.parametrize(
    "params",
    [
        "; foo",  # unknown parameter
        "; foo=1",
        "; Server_No_Context_Takeover",  # names are case-sensitive
        "; server_no_context_takeover; server_no_context_takeover",  # duplicate
        "; client_max_window_bits; client_max_window_bits=10",
        "; server_max_window_bits=10; server_max_window_bits=10",
        "; server_no_context_takeover=1",  # takes no value
        '; client_no_context_takeover="x"',
        "; server_max_window_bits",  # needs a value in an offer
        "; server_max_window_bits=7",
        "; server_max_window_bits=16",
        "; server_max_window_bits=08",  # leading zero
        "; server_max_window_bits=010",
        "; server_max_window_bits=abc",
        '; server_max_window_bits="16"',
        "; client_max_window_bits=7",
        "; client_max_window_bits=-9",
        "; client_max_window_bits=9.0",
    ],
)
def test_server_declines_invalid_offer(params: str) -> None:
    assert server_negotiate(["permessage-deflate" + params], DeflateConfig()) is None


def test_server_first_acceptable_offer_wins() -> None:
    values = [
        "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; foo, permessage-deflate; server_max_window_bits=11; client_max_window_bits",
        "permessage-deflate; server_max_window_bits=9",
    ]
    response, pmd = accept(values)
    assert response == "permessage-deflate; server_max_window_bits=11"
    assert params_of(pmd) == (False, False, 11, 15)


def test_server_first_valid_offer_even_if_a_later_one_is_better() -> None:
    response, _ = accept("permessage-deflate, permessage-deflate; server_no_context_takeover")
    assert response == "permessage-deflate"


def test_server_ignores_other_extensions() -> None:
    assert server_negotiate(["foo; bar=1, baz"], DeflateConfig()) is None
    assert server_negotiate([], DeflateConfig()) is None
    assert server_negotiate(["permessage-deflate; foo", "permessage-deflate; x=1"], DeflateConfig()) is None


def test_server_malformed_header_raises_even_after_a_good_offer() -> None:
    with pytest.raises(NegotiationError):
        server_negotiate(["permessage-deflate", "permessage-deflate; a=="], DeflateConfig())


# ------------------------------------------------------------------ client offer / validation


def test_client_offer_default_is_valueless_client_max_window_bits() -> None:
    assert client_offer(DeflateConfig()) == "permessage-deflate; client_max_window_bits"


def test_client_offer_everything() -> None:
    config = DeflateConfig(
        server_no_context_takeover=True,
        client_no_context_takeover=True,
        server_max_window_bits=10,
        client_max_window_bits=12,
    )
    assert client_offer(config) == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=10; client_max_window_bits=12"
    )


def test_client_offer_round_trips_through_the_parser() -> None:
    offer = client_offer(DeflateConfig(server_max_window_bits=9))
    assert parse_extensions([offer]) == [
        ("permessage-deflate", [("server_max_window_bits", "9"), ("client_max_window_bits", None)])
    ]


def test_client_no_extension_accepted() -> None:
    assert client_negotiate([], DeflateConfig()) is None
    assert client_negotiate([""], DeflateConfig()) is None


def test_client_accepts_bare_response() -> None:
    pmd = client_negotiate(["permessage-deflate"], DeflateConfig())
    assert pmd is not None
    assert not pmd.is_server
    assert params_of(pmd) == (False, False, 15, 15)


@pytest.mark.parametrize(
    ("config", "response", "expected"),
    [
        (DeflateConfig(), "permessage-deflate; server_no_context_takeover", (True, False, 15, 15)),
        (DeflateConfig(), "permessage-deflate; client_no_context_takeover", (False, True, 15, 15)),
        (DeflateConfig(), "permessage-deflate; server_max_window_bits=10", (False, False, 10, 15)),
        (DeflateConfig(), "permessage-deflate; client_max_window_bits=8", (False, False, 15, 8)),
        (DeflateConfig(client_max_window_bits=10), "permessage-deflate", (False, False, 15, 10)),
        (
            DeflateConfig(client_max_window_bits=10),
            "permessage-deflate; client_max_window_bits=9",
            (False, False, 15, 9),
        ),
        (
            DeflateConfig(client_max_window_bits=10),
            "permessage-deflate; client_max_window_bits=10",
            (False, False, 15, 10),
        ),
        (
            DeflateConfig(server_max_window_bits=10),
            "permessage-deflate; server_max_window_bits=10",
            (False, False, 10, 15),
        ),
        (
            DeflateConfig(server_max_window_bits=10),
            "permessage-deflate; server_max_window_bits=8",
            (False, False, 8, 15),
        ),
        (
            DeflateConfig(server_no_context_takeover=True),
            "permessage-deflate; server_no_context_takeover",
            (True, False, 15, 15),
        ),
        # Offering client_no_context_takeover binds the client even if the answer omits it.
        (DeflateConfig(client_no_context_takeover=True), "permessage-deflate", (False, True, 15, 15)),
        (
            DeflateConfig(),
            'permessage-deflate;server_max_window_bits="12" ; client_max_window_bits=11',
            (False, False, 12, 11),
        ),
    ],
)
def test_client_accepts_valid_response(
    config: DeflateConfig, response: str, expected: tuple[bool, bool, int, int]
) -> None:
    pmd = client_negotiate([response], config)
    assert pmd is not None
    assert params_of(pmd) == expected


@pytest.mark.parametrize(
    ("config", "values", "message"),
    [
        (DeflateConfig(), ["foo"], "not offered"),
        (DeflateConfig(), ["permessage-deflate, permessage-deflate"], "more than once"),
        (DeflateConfig(), ["permessage-deflate", "permessage-deflate"], "more than once"),
        (DeflateConfig(), ["permessage-deflate, foo"], "several extensions"),
        (DeflateConfig(), ["permessage-deflate; foo"], "unknown parameter"),
        (
            DeflateConfig(),
            ["permessage-deflate; server_no_context_takeover; server_no_context_takeover"],
            "duplicate",
        ),
        (DeflateConfig(), ["permessage-deflate; server_no_context_takeover=1"], "takes no value"),
        (DeflateConfig(), ["permessage-deflate; client_max_window_bits"], "needs a value"),
        (DeflateConfig(), ["permessage-deflate; server_max_window_bits"], "needs a value"),
        (
            DeflateConfig(),
            ["permessage-deflate; server_max_window_bits=16"],
            "invalid server_max_window_bits",
        ),
        (
            DeflateConfig(),
            ["permessage-deflate; client_max_window_bits=07"],
            "invalid client_max_window_bits",
        ),
        (
            DeflateConfig(server_no_context_takeover=True),
            ["permessage-deflate"],
            "server_no_context_takeover was requested",
        ),
        (DeflateConfig(server_max_window_bits=10), ["permessage-deflate"], "does not include"),
        (
            DeflateConfig(server_max_window_bits=10),
            ["permessage-deflate; server_max_window_bits=11"],
            "larger than the requested 10",
        ),
        (
            DeflateConfig(client_max_window_bits=10),
            ["permessage-deflate; client_max_window_bits=11"],
            "larger than the offered 10",
        ),
        (DeflateConfig(), ["permessage-deflate; "], "expected a parameter name"),
    ],
)
def test_client_rejects_invalid_response(config: DeflateConfig, values: list[str], message: str) -> None:
    with pytest.raises(NegotiationError, match=message):
        client_negotiate(values, config)


def test_client_rejects_client_max_window_bits_it_did_not_offer(monkeypatch: pytest.MonkeyPatch) -> None:
    # client_offer always offers client_max_window_bits today; check the rule
    # holds if the offer ever stops including it.
    monkeypatch.setattr(deflate_module, "_offer_params", lambda config: [])
    with pytest.raises(NegotiationError, match="client_max_window_bits was not offered"):
        client_negotiate(["permessage-deflate; client_max_window_bits=10"], DeflateConfig())


CONFIG_PAIRS = [
    (DeflateConfig(), DeflateConfig()),
    (DeflateConfig(server_no_context_takeover=True), DeflateConfig()),
    (DeflateConfig(), DeflateConfig(server_no_context_takeover=True)),
    (DeflateConfig(client_no_context_takeover=True), DeflateConfig()),
    (DeflateConfig(), DeflateConfig(client_no_context_takeover=True)),
    (DeflateConfig(server_max_window_bits=12), DeflateConfig(server_max_window_bits=10)),
    (DeflateConfig(server_max_window_bits=9), DeflateConfig(server_max_window_bits=10)),
    (DeflateConfig(client_max_window_bits=9), DeflateConfig()),
    (DeflateConfig(client_max_window_bits=12), DeflateConfig(client_max_window_bits=10)),
    (DeflateConfig(client_max_window_bits=8), DeflateConfig(client_max_window_bits=11)),
    (
        DeflateConfig(server_max_window_bits=11, client_max_window_bits=10),
        DeflateConfig(
            server_no_context_takeover=True, client_no_context_takeover=True, server_max_window_bits=8
        ),
    ),
]


@pytest.mark.parametrize(("server", "client"), CONFIG_PAIRS)
def test_both_sides_agree(server: DeflateConfig, client: DeflateConfig) -> None:
    _, server_side, client_side = negotiate(server, client)
    assert server_side.is_server and not client_side.is_server
    assert params_of(server_side) == params_of(client_side)


# ------------------------------------------------------------------ RFC 7692 7.2.3 examples


def test_rfc_example_hello() -> None:
    # 7.2.3.1: c1 07 f2 48 cd c9 c9 07 00 -- the payload is after the 2-byte header.
    frame = h("c1 07 f2 48 cd c9 c9 07 00")
    payload = frame[2:]
    assert payload == h("f2 48 cd c9 c9 07 00")
    assert PerMessageDeflate(True).compress(b"Hello") == payload
    assert inflate(PerMessageDeflate(False), payload) == b"Hello"


def test_rfc_example_fragmented_hello() -> None:
    # 7.2.3.1, fragmented: 41 03 f2 48 cd / 80 04 c9 c9 07 00
    pmd = PerMessageDeflate(False)
    first = pmd.decompress(h("f2 48 cd"), False, UNLIMITED)
    second = pmd.decompress(h("c9 c9 07 00"), True, UNLIMITED)
    assert first + second == b"Hello"


def test_rfc_example_sharing_the_window() -> None:
    # 7.2.3.2: with context takeover the second "Hello" is f2 00 11 00 00.
    sender = PerMessageDeflate(True)
    assert sender.compress(b"Hello") == h("f2 48 cd c9 c9 07 00")
    assert sender.compress(b"Hello") == h("f2 00 11 00 00")
    receiver = PerMessageDeflate(False)
    assert inflate(receiver, h("f2 48 cd c9 c9 07 00")) == b"Hello"
    assert inflate(receiver, h("f2 00 11 00 00")) == b"Hello"


def test_rfc_example_without_context_takeover() -> None:
    sender = PerMessageDeflate(True, server_no_context_takeover=True)
    assert sender.compress(b"Hello") == h("f2 48 cd c9 c9 07 00")
    assert sender.compress(b"Hello") == h("f2 48 cd c9 c9 07 00")


def test_rfc_example_stored_block() -> None:
    # 7.2.3.3: a DEFLATE block with no compression.
    assert inflate(PerMessageDeflate(False), h("00 05 00 fa ff 48 65 6c 6c 6f 00")) == b"Hello"


def test_rfc_example_bfinal_block() -> None:
    # 7.2.3.4: a final block, then one octet so the appended tail parses.
    receiver = PerMessageDeflate(False)
    assert inflate(receiver, h("f3 48 cd c9 c9 07 00 00")) == b"Hello"
    # The connection goes on: next message, from a fresh stream.
    assert inflate(receiver, h("f2 48 cd c9 c9 07 00")) == b"Hello"


def test_bfinal_block_without_the_extra_octet() -> None:
    receiver = PerMessageDeflate(False)
    assert inflate(receiver, h("f3 48 cd c9 c9 07 00")) == b"Hello"
    assert inflate(receiver, h("f2 48 cd c9 c9 07 00")) == b"Hello"


def test_bfinal_block_then_more_data_in_the_same_message() -> None:
    receiver = PerMessageDeflate(False)
    assert inflate(receiver, h("f3 48 cd c9 c9 07 00") + h("f2 48 cd c9 c9 07 00")) == b"HelloHello"


def test_rfc_example_two_blocks() -> None:
    # 7.2.3.5: two DEFLATE blocks in one message.
    assert inflate(PerMessageDeflate(False), h("f2 48 05 00 00 00 ff ff ca c9 c9 07 00")) == b"Hello"


def test_empty_message() -> None:
    # 7.2.3.6: an empty message compresses to a single 00 octet.
    sender = PerMessageDeflate(True)
    assert sender.compress(b"") == b"\x00"
    receiver = PerMessageDeflate(False)
    assert inflate(receiver, b"\x00") == b""
    assert inflate(receiver, b"\x00", 0) == b""


def test_empty_payload_is_tolerated_and_keeps_the_window() -> None:
    sender, receiver = PerMessageDeflate(True), PerMessageDeflate(False)
    assert inflate(receiver, sender.compress(b"Hello")) == b"Hello"
    assert inflate(receiver, b"") == b""  # not RFC-conformant, but harmless
    assert inflate(receiver, sender.compress(b"Hello")) == b"Hello"


# ------------------------------------------------------------------ round trips


def exchange(sender: PerMessageDeflate, receiver: PerMessageDeflate, message: bytes) -> bytes:
    payload = sender.compress(message)
    assert isinstance(payload, bytes)
    assert not payload.endswith(b"\x00\x00\xff\xff") or len(message) == 0
    return inflate(receiver, payload)


MESSAGES = [b"", b"x", sample(31), sample(1000, 1), os.urandom(3000), sample(70 * KiB, 2), b"\x00" * 5000]


@pytest.mark.parametrize("bits", range(8, 16))
@pytest.mark.parametrize("takeover", [True, False])
def test_round_trip_window_bits(bits: int, takeover: bool) -> None:
    server = DeflateConfig(
        server_max_window_bits=bits,
        client_max_window_bits=bits,
        server_no_context_takeover=not takeover,
        client_no_context_takeover=not takeover,
    )
    _, server_side, client_side = negotiate(server, DeflateConfig())
    assert params_of(client_side) == (not takeover, not takeover, bits, bits)
    for _ in range(2):
        for message in MESSAGES:
            assert exchange(server_side, client_side, message) == message
            assert exchange(client_side, server_side, message) == message


@pytest.mark.parametrize("size", [1 * MiB, 3 * MiB])
@pytest.mark.parametrize("takeover", [True, False])
def test_round_trip_large_messages(size: int, takeover: bool) -> None:
    server = DeflateConfig(server_no_context_takeover=not takeover, client_no_context_takeover=not takeover)
    _, server_side, client_side = negotiate(server, DeflateConfig())
    text = sample(size, size)
    noise = os.urandom(size)
    for message in (text, noise, text):
        assert exchange(server_side, client_side, message) == message
        assert exchange(client_side, server_side, message) == message


def test_round_trip_accepts_bytearray_and_memoryview() -> None:
    _, server_side, client_side = negotiate()
    data = sample(5000)
    payload = client_side.compress(bytearray(data))
    assert server_side.decompress(memoryview(payload), True, UNLIMITED) == data
    payload = server_side.compress(memoryview(data))
    assert client_side.decompress(bytearray(payload), True, UNLIMITED) == data


def split(payload: bytes, sizes: list[int]) -> list[bytes]:
    frames, pos = [], 0
    for size in sizes:
        frames.append(payload[pos : pos + size])
        pos += size
    frames.append(payload[pos:])
    return frames


@pytest.mark.parametrize("takeover", [True, False])
def test_fragmented_decompression(takeover: bool) -> None:
    server = DeflateConfig(server_no_context_takeover=not takeover)
    _, server_side, client_side = negotiate(server, DeflateConfig())
    rng = random.Random(7)
    for round_ in range(6):
        message = sample(rng.randrange(1, 200 * KiB), round_)
        payload = server_side.compress(message)
        cuts = sorted(rng.sample(range(len(payload)), min(8, len(payload))))
        frames = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
        frames.insert(1, b"")  # empty frames in the middle are fine
        received = [client_side.decompress(frame, False, UNLIMITED) for frame in frames[:-1]]
        received.append(client_side.decompress(frames[-1], True, UNLIMITED))
        assert b"".join(received) == message


def test_fragmented_one_byte_frames() -> None:
    sender, receiver = PerMessageDeflate(True), PerMessageDeflate(False)
    for message in (sample(3000), sample(3000)):
        payload = sender.compress(message)
        out = b"".join(receiver.decompress(payload[i : i + 1], False, UNLIMITED) for i in range(len(payload)))
        out += receiver.decompress(b"", True, UNLIMITED)
        assert out == message


def test_context_takeover_makes_the_second_message_smaller() -> None:
    message = sample(2000, 3)
    _, server_side, client_side = negotiate()
    first = client_side.compress(message)
    second = client_side.compress(message)
    assert len(second) < len(first) // 4
    assert inflate(server_side, first) == message
    assert inflate(server_side, second) == message


@pytest.mark.parametrize(
    "config",
    [DeflateConfig(client_no_context_takeover=True), DeflateConfig(server_no_context_takeover=True)],
)
def test_no_context_takeover_keeps_sizes_equal(config: DeflateConfig) -> None:
    message = sample(2000, 3)
    _, server_side, client_side = negotiate(config, DeflateConfig())
    sender, receiver = (
        (client_side, server_side) if config.client_no_context_takeover else (server_side, client_side)
    )
    first = sender.compress(message)
    second = sender.compress(message)
    assert first == second
    assert inflate(receiver, first) == message
    assert inflate(receiver, second) == message


def test_each_side_uses_its_own_window_and_takeover() -> None:
    # Server window 9 without takeover, client window 15 with takeover.
    _, server_side, client_side = negotiate(
        DeflateConfig(server_no_context_takeover=True, server_max_window_bits=9), DeflateConfig()
    )
    message = sample(4000, 4)
    assert server_side.compress(message) == server_side.compress(message)
    first, second = client_side.compress(message), client_side.compress(message)
    assert len(second) < len(first)
    assert inflate(server_side, first) == message
    assert inflate(server_side, second) == message


# ------------------------------------------------------------------ 8-bit windows


def strict_inflate(payload: bytes, bits: int) -> bytes:
    """Inflate one byte of output per call, so that only the window can serve matches."""
    decompressor = zlib.decompressobj(-bits)
    data = payload + b"\x00\x00\xff\xff"
    out = bytearray()
    while True:
        chunk = decompressor.decompress(data, 1)
        out += chunk
        data = decompressor.unconsumed_tail
        if not chunk and not data:
            return bytes(out)


def window_torture(seed: int) -> bytes:
    rng = random.Random(seed)
    block = rng.randbytes(320)
    pieces = [block[:n] for n in (250, 251, 255, 256, 257, 260, 300, 320) for _ in range(3)]
    rng.shuffle(pieces)
    return b"".join(pieces)


def test_strict_inflate_catches_a_too_large_window() -> None:
    # The check below would fail if the compressor used more than 8 bits' worth of distance.
    compressor = zlib.compressobj(9, zlib.DEFLATED, -10, 9)
    payload = compressor.compress(window_torture(0)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(zlib.error):
        strict_inflate(payload[:-4], 8)


@pytest.mark.parametrize("level", [1, 6, 9])
def test_window_bits_8_output_fits_an_8_bit_window(level: int) -> None:
    # zlib refuses an 8-bit raw compressor; ours uses 9 bits, whose matches
    # never reach further than 250 bytes back.
    server = DeflateConfig(compress_level=level, mem_level=9)
    _, server_side, client_side = negotiate(server, DeflateConfig(server_max_window_bits=8))
    assert server_side.server_max_window_bits == 8 == client_side.server_max_window_bits
    for seed in range(3):
        message = window_torture(seed)
        payload = server_side.compress(message)
        assert strict_inflate(payload, 8) == message
        assert inflate(client_side, payload) == message


def test_window_bits_8_both_directions() -> None:
    _, server_side, client_side = negotiate(
        DeflateConfig(client_max_window_bits=8, server_max_window_bits=8), DeflateConfig()
    )
    assert params_of(client_side) == (False, False, 8, 8)
    for message in (window_torture(5), sample(50 * KiB), window_torture(6)):
        assert exchange(server_side, client_side, message) == message
        assert exchange(client_side, server_side, message) == message


# ------------------------------------------------------------------ bounded inflate


def bomb(size: int) -> bytes:
    """A compressed message of ``size`` zero bytes, built without holding them all."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    chunk = bytes(MiB)
    parts = [compressor.compress(chunk) for _ in range(size // MiB)]
    parts.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(parts)[:-4]


def test_bomb_raises_before_allocating() -> None:
    payload = bomb(100 * MiB)
    assert len(payload) < 150 * KiB  # deflate tops out around 1000:1
    receiver = PerMessageDeflate(False)
    tracemalloc.start()
    try:
        started = time.perf_counter()
        with pytest.raises(PayloadTooBig) as info:
            receiver.decompress(payload, True, MiB)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.code == 1009
    assert peak < 8 * MiB
    assert elapsed < 2.0


def test_bomb_in_fragments_with_a_shrinking_budget() -> None:
    # What the core does: each frame may produce what is left of max_size.
    payload = bomb(100 * MiB)
    receiver = PerMessageDeflate(False)
    limit, produced = 2 * MiB, 0
    frames = split(payload, [1000] * (len(payload) // 1000))
    with pytest.raises(PayloadTooBig):
        for i, frame in enumerate(frames):
            produced += len(receiver.decompress(frame, i == len(frames) - 1, limit - produced))
    assert produced <= limit


def test_exact_limit_passes_and_one_less_fails() -> None:
    message = sample(100 * KiB)
    payload = PerMessageDeflate(True).compress(message)
    assert inflate(PerMessageDeflate(False), payload, len(message)) == message
    with pytest.raises(PayloadTooBig):
        inflate(PerMessageDeflate(False), payload, len(message) - 1)


def test_exact_limit_across_fragments() -> None:
    message = sample(20 * KiB)
    payload = PerMessageDeflate(True).compress(message)
    for limit, ok in ((len(message), True), (len(message) - 1, False)):
        receiver, produced = PerMessageDeflate(False), 0
        frames = split(payload, [len(payload) // 3, len(payload) // 3])
        try:
            for i, frame in enumerate(frames):
                produced += len(receiver.decompress(frame, i == 2, limit - produced))
        except PayloadTooBig:
            assert not ok
        else:
            assert ok and produced == len(message)


def test_pending_output_with_empty_unconsumed_tail_is_caught() -> None:
    # 'a' then a 258-byte match: after 5 bytes zlib has consumed all input but
    # still holds match output. unconsumed_tail alone would miss it.
    payload = h("4a 4c 1c f1 00")
    probe = zlib.decompressobj(-15)
    assert len(probe.decompress(payload, 10)) == 10 and probe.unconsumed_tail == b""
    with pytest.raises(PayloadTooBig):
        PerMessageDeflate(False).decompress(payload, False, 10)
    assert PerMessageDeflate(False).decompress(payload, False, 259) == b"a" * 259


def test_zero_and_negative_budgets() -> None:
    payload = PerMessageDeflate(True).compress(b"x")
    with pytest.raises(PayloadTooBig):
        inflate(PerMessageDeflate(False), payload, 0)
    with pytest.raises(PayloadTooBig):
        inflate(PerMessageDeflate(False), payload, -5)


def test_unlimited_budget() -> None:
    message = sample(10 * KiB)
    payload = PerMessageDeflate(True).compress(message)
    assert inflate(PerMessageDeflate(False), payload, UNLIMITED) == message
    assert inflate(PerMessageDeflate(False), payload, 1 << 80) == message


# ------------------------------------------------------------------ corrupt data


@pytest.mark.parametrize(
    "payload",
    [
        h("ff ff ff ff"),  # reserved block type 11
        h("07 00 00"),  # block type 11 again
        h("00 05 00 00 00 48 65 6c 6c 6f 00"),  # stored block with a bad NLEN
        h("f2 00 11 00 00"),  # refers to history that does not exist
    ],
)
def test_corrupt_data(payload: bytes) -> None:
    with pytest.raises(InvalidPayload) as info:
        inflate(PerMessageDeflate(False), payload)
    assert info.value.code == 1007


def test_corrupt_data_in_a_middle_frame() -> None:
    receiver = PerMessageDeflate(False)
    with pytest.raises(InvalidPayload):
        assert receiver.decompress(h("f2 48 cd c9 c9 07 00"), False, UNLIMITED) == b"Hello"
        # Stored block lengths that do not match (LEN 0x3412, NLEN 0x7856).
        receiver.decompress(h("12 34 56 78"), False, UNLIMITED)


# ------------------------------------------------------------------ lazy state / memory


def test_zlib_objects_are_created_lazily() -> None:
    _, server_side, client_side = negotiate()
    for pmd in (server_side, client_side):
        assert pmd._compressor is None and pmd._decompressor is None
    payload = client_side.compress(b"hello hello hello")
    assert client_side._compressor is not None  # kept for context takeover
    assert client_side._decompressor is None
    assert inflate(server_side, payload) == b"hello hello hello"
    assert server_side._decompressor is not None
    assert server_side._compressor is None


def test_no_context_takeover_drops_zlib_objects_between_messages() -> None:
    config = DeflateConfig(server_no_context_takeover=True, client_no_context_takeover=True)
    _, server_side, client_side = negotiate(config, DeflateConfig())
    payload = client_side.compress(sample(1000))
    assert client_side._compressor is None
    server_side.decompress(payload[:10], False, UNLIMITED)
    assert server_side._decompressor is not None  # mid-message
    server_side.decompress(payload[10:], True, UNLIMITED)
    assert server_side._decompressor is None


def test_window_8_compressor_is_created_with_9_bits() -> None:
    pmd = PerMessageDeflate(True, server_max_window_bits=8)
    assert pmd._compress_bits == 9
    assert pmd._inflate_bits == 15
    assert (
        inflate(PerMessageDeflate(False, server_max_window_bits=8), pmd.compress(b"abc" * 100))
        == b"abc" * 100
    )


def test_repr() -> None:
    text = repr(PerMessageDeflate(False, client_max_window_bits=10))
    assert "client" in text and "client_max_window_bits=10" in text


# ---------------------------------------------------------------- what the core reads


def test_both_sides_carry_the_configured_threshold() -> None:
    _, server, client = negotiate(DeflateConfig(threshold=7), DeflateConfig(threshold=99))
    assert server.threshold == 7 and client.threshold == 99


def test_pmd_fits_the_core_deflate_protocol() -> None:
    from wsline.protocol.connection import Connection

    _, server, client = negotiate(DeflateConfig(threshold=0))
    sender, receiver = Connection(False, deflate=server), Connection(True, deflate=client)
    frame = sender.send_message("x" * 100)
    assert frame[0] & 0x40 and len(frame) < 20  # compressed: the threshold is 0
    assert receiver.receive_data(frame) == ["x" * 100]


@pytest.mark.parametrize(
    ("server_nct", "client_nct", "server_key", "client_key"),
    [
        (False, False, False, False),
        (True, False, True, False),
        (False, True, False, True),
        (True, True, True, True),
    ],
)
def test_shared_key_only_without_our_context_takeover(
    server_nct: bool, client_nct: bool, server_key: bool, client_key: bool
) -> None:
    config = DeflateConfig(server_no_context_takeover=server_nct, client_no_context_takeover=client_nct)
    _, server, client = negotiate(config, config)
    assert (server.shared_key is not None, client.shared_key is not None) == (server_key, client_key)


def test_equal_shared_keys_compress_alike() -> None:
    config = DeflateConfig(server_no_context_takeover=True, server_max_window_bits=10, compress_level=3)
    servers = [negotiate(config)[1] for _ in range(2)]
    assert servers[0].shared_key == servers[1].shared_key == (10, 3, 5)
    servers[0].compress(b"some history " * 10)  # no context is kept: history does not matter
    for message in (b"abc" * 50, b"abc" * 50, b"other"):
        assert servers[0].compress(message) == servers[1].compress(message)
    other = negotiate(DeflateConfig(server_no_context_takeover=True, compress_level=9))[1]
    assert other.shared_key != servers[0].shared_key
    # 8-bit windows compress with 9 bits: the key says what the compressor uses.
    eight = negotiate(DeflateConfig(server_no_context_takeover=True, server_max_window_bits=8))[1]
    nine = negotiate(DeflateConfig(server_no_context_takeover=True, server_max_window_bits=9))[1]
    assert eight.shared_key == nine.shared_key
