"""Coverage-guided fuzz target for both opening handshakes (protocol.server, protocol.client).

Input layout: byte 0 picks the target (its low 3 bits), the rest is its input.

* 0, 1: a request head through ``RequestParser`` and ``ServerHandshake.accept``;
  a request that is accepted must get a 101 that a ``ClientHandshake`` with the
  same key opens on, however the 101 is split, with the subprotocol chosen.
* 2, 3: a server's answer through ``ClientHandshake.receive_data`` (split where
  the second byte says) and ``receive_eof``: it opens, or raises
  ``InvalidStatus`` / ``InvalidHandshake``, nothing else.
* 4: a stream of pipelined requests answered as the asyncio server does
  (``accept`` for upgrades, ``serialize`` and ``keep_alive`` for the rest).
* 5: ``parse_uri``; every URI it accepts must give a request the server
  accepts for the same resource and Host.
* 6, 7: ``parse_extensions`` and both negotiate functions on header values.

Only the documented exceptions may come out: :class:`HandshakeRejected` with a
client-error status (or 505 for another HTTP version) on the server side,
:class:`InvalidHandshake` (and its subclasses) on the client side,
:class:`InvalidURI` for URIs, :class:`NegotiationError` for extensions.

Known bugs (see tests/test_properties.py) are skipped so that the fuzzer can
look for new ones; set ``WSLINE_FUZZ_STRICT=1`` to make them crash too. (None
is known in the handshake now: ``known_bug`` is where the next one goes.)
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable

from wsline.errors import HandshakeRejected, InvalidHandshake, InvalidStatus, InvalidURI, NegotiationError
from wsline.protocol import deflate as pmd
from wsline.protocol import handshake as hs
from wsline.protocol.client import ClientHandshake, ClientOptions
from wsline.protocol.http11 import CLOSED, NEED_DATA, PAUSED, Data, EndOfMessage, Request, RequestParser
from wsline.protocol.server import ServerHandshake, ServerOptions

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
REQUEST_STATUSES = frozenset({400, 413, 431, 501, 505})
CHECK_STATUSES = frozenset({400, 405, 426, 505})
STRICT = os.environ.get("WSLINE_FUZZ_STRICT") == "1"
# What parse_request lets through: an origin-form target of visible ASCII but "#", or "*".
_TARGET = re.compile(r"/[\x21\x22\x24-\x7e]*|\*")
# A host parse_uri accepts: an IPv6 address, or RFC 3986 reg-name characters but "%".
_HOST = re.compile(r"[0-9a-f:.]+|[A-Za-z0-9\-._~!$&'()*+,;=]+")


#: Bugs documented as strict xfail tests, as (what, predicate on the input) pairs,
#: whose inputs are skipped unless STRICT. None is known in the handshake parsers.
KNOWN_BUGS: list[tuple[str, Callable[[str], bool]]] = []

SERVER = ServerHandshake(ServerOptions(subprotocols=("chat", "v2.json")))
URI = hs.parse_uri("ws://example.com/chat")


def known_bug(text: str) -> bool:
    """Whether an input hits a bug already documented as a strict xfail test."""
    return not STRICT and any(hit(text) for _, hit in KNOWN_BUGS)


def fuzz_request(head: bytes) -> None:
    parser = RequestParser(SERVER.options.limits)
    parser.feed(head if head.endswith(b"\r\n\r\n") else head + b"\r\n\r\n")
    try:
        request = parser.next_event()
    except HandshakeRejected as exc:
        assert exc.status in REQUEST_STATUSES, exc
        return
    if request is NEED_DATA:
        return
    assert isinstance(request, Request), request
    if not _TARGET.fullmatch(request.target) or (request.target == "*") != (request.method == "OPTIONS"):
        if known_bug(request.target):
            return
        raise AssertionError(f"invalid request target {request.target!r} for {request.method}")
    request.path, request.query, request.is_upgrade, request.origin, request.host  # noqa: B018
    try:
        accepted = SERVER.accept(request)
    except HandshakeRejected as exc:
        assert exc.status in CHECK_STATUSES, exc
        return
    key = request.headers.get("Sec-WebSocket-Key")
    assert key is not None
    offered = tuple(request.subprotocols)
    assert accepted.subprotocol in (None, *offered)
    client = ClientHandshake(URI, ClientOptions(subprotocols=offered), key)
    cut = len(head) % max(1, len(accepted.data))
    opened = client.receive_data(accepted.data[:cut]) if cut else False
    assert not opened
    assert client.receive_data(accepted.data[cut:])
    assert client.subprotocol == accepted.subprotocol
    assert client.connection is not None


def fuzz_response(data: bytes) -> None:
    client = ClientHandshake(URI, ClientOptions(subprotocols=("chat", "v2.json")), KEY)
    cut = data[0] % (len(data) + 1) if data else 0
    try:
        for piece in (data[:cut], data[cut:]):
            if client.receive_data(piece):
                break
        else:
            client.receive_eof()
    except HandshakeRejected as exc:  # must have been turned into a client-side error
        raise AssertionError(f"server-side error from the client handshake: {exc!r}") from None
    except InvalidStatus as exc:
        assert 100 <= exc.status <= 999 and exc.status != 101, exc
        assert len(exc.body) <= client.options.max_rejection_body
        return
    except InvalidHandshake:
        return
    assert client.connection is not None and client.response is not None
    assert client.response.status == 101
    assert client.subprotocol in (None, "chat", "v2.json")
    assert client.response.headers.get("Sec-WebSocket-Accept") == hs.accept_key(KEY)


def fuzz_server_stream(data: bytes) -> None:
    """Pipelined requests answered one at a time, as the asyncio server answers them."""
    parser = RequestParser(SERVER.options.limits)
    parser.feed(data)
    parser.feed_eof()
    request: Request | None = None
    answers = 0
    try:
        while answers < 64:
            event = parser.next_event()
            if event is NEED_DATA or event is CLOSED:
                return
            if isinstance(event, Request):
                request = event
            elif isinstance(event, Data):
                assert request is not None and len(event.data) <= SERVER.options.max_body_size
            elif isinstance(event, EndOfMessage):
                assert request is not None
                if request.is_upgrade:
                    try:
                        SERVER.accept(request)
                    except HandshakeRejected as exc:
                        assert exc.status in CHECK_STATUSES | {500}, exc
                    return  # the connection is the WebSocket's (or closed) from here on
                response = hs.reject_response(404) if request.path != "/" else hs.Response(200)
                keep_alive = SERVER.keep_alive(request, response, parser.keep_alive)
                wire = SERVER.serialize(response, request, keep_alive)
                assert wire.startswith(b"HTTP/1.1 ")
                answers += 1
                if not keep_alive:
                    return
                parser.start_next()
            else:
                assert event is PAUSED, event
                return
    except HandshakeRejected as exc:
        assert exc.status in REQUEST_STATUSES, exc


def fuzz_uri(text: str) -> None:
    try:
        uri = hs.parse_uri(text)
    except InvalidURI:
        return
    assert uri.resource.startswith("/") and _HOST.fullmatch(uri.host), uri
    assert 0 <= uri.port <= 65535
    if known_bug(text):
        return
    parser = RequestParser()
    parser.feed(ClientHandshake(uri, ClientOptions(deflate=None), KEY).data_to_send())
    request = parser.next_event()
    assert isinstance(request, Request), request
    assert request.target == uri.resource, (request.target, uri.resource)
    assert request.host == uri.host_header
    assert SERVER.accept(request).response.status == 101


def fuzz_extensions(text: str) -> None:
    values = text.split("\n")
    try:
        parsed = pmd.parse_extensions(values)
    except NegotiationError:
        parsed = None
    for config in (pmd.DEFAULT_SERVER_CONFIG, pmd.DeflateConfig(server_no_context_takeover=True)):
        try:
            result = pmd.server_negotiate(values, config)
        except NegotiationError:
            assert parsed is None
            continue
        if result is not None:
            assert parsed is not None and any(name == pmd.EXTENSION_NAME for name, _ in parsed)
    for config in (pmd.DEFAULT_CLIENT_CONFIG, pmd.DeflateConfig(server_max_window_bits=10)):
        try:
            client = pmd.client_negotiate(values, config)
        except NegotiationError:
            continue
        assert parsed is not None
        if client is None:
            assert parsed == []
        else:
            assert parsed and parsed[0][0] == pmd.EXTENSION_NAME


def TestOneInput(data: bytes) -> None:  # the name atheris calls
    if not data:
        return
    which, rest = data[0] & 7, data[1:]
    if which <= 1:
        fuzz_request(rest)
    elif which <= 3:
        fuzz_response(rest)
    elif which == 4:
        fuzz_server_stream(rest)
    elif which == 5:
        fuzz_uri(rest.decode("utf-8", "replace"))
    else:
        fuzz_extensions(rest.decode("latin-1"))


def main() -> None:
    import atheris  # type: ignore[import-untyped]  # only here: the tests import TestOneInput without it

    atheris.instrument_all()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
