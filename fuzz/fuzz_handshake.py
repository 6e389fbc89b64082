"""Coverage-guided fuzz target for the opening handshake parsers.

Input layout: byte 0 picks the parser (its low 3 bits), the rest is its input.

* 0, 1: ``parse_request`` then ``check_request`` and the server side of the
  extension negotiation; a request that passes must be answered with a 101
  that ``check_response`` accepts.
* 2, 3: ``parse_response`` then ``check_response`` for a fixed key.
* 4: ``decode_chunked`` (whole and ``partial``).
* 5: ``parse_uri``; every URI it accepts must give a request
  ``parse_request``/``check_request`` accept for the same resource and Host.
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

from wsline.errors import HandshakeRejected, InvalidHandshake, InvalidURI, NegotiationError
from wsline.protocol import deflate as pmd
from wsline.protocol import handshake as hs

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
REQUEST_STATUSES = frozenset({400, 431, 505})
CHECK_STATUSES = frozenset({400, 405, 426, 505})
STRICT = os.environ.get("WSLINE_FUZZ_STRICT") == "1"
# What parse_request lets through: an origin-form target of visible ASCII but "#", or "*".
_TARGET = re.compile(r"/[\x21\x22\x24-\x7e]*|\*")
# A host parse_uri accepts: an IPv6 address, or RFC 3986 reg-name characters but "%".
_HOST = re.compile(r"[0-9a-f:.]+|[A-Za-z0-9\-._~!$&'()*+,;=]+")


#: Bugs documented as strict xfail tests, as (what, predicate on the input) pairs,
#: whose inputs are skipped unless STRICT. None is known in the handshake parsers.
KNOWN_BUGS: list[tuple[str, Callable[[str], bool]]] = []


def known_bug(text: str) -> bool:
    """Whether an input hits a bug already documented as a strict xfail test."""
    return not STRICT and any(hit(text) for _, hit in KNOWN_BUGS)


def fuzz_request(head: bytes) -> None:
    try:
        request = hs.parse_request(head)
    except HandshakeRejected as exc:
        assert exc.status in REQUEST_STATUSES, exc
        return
    if not _TARGET.fullmatch(request.target) or (request.target == "*") != (request.method == "OPTIONS"):
        if known_bug(request.target):
            return
        raise AssertionError(f"invalid request target {request.target!r} for {request.method}")
    request.path, request.query, request.is_upgrade, request.origin, request.host  # noqa: B018
    try:
        key = hs.check_request(request)
    except HandshakeRejected as exc:
        assert exc.status in CHECK_STATUSES, exc
        return
    assert key in request.headers.get_all("Sec-WebSocket-Key")
    subprotocols = request.subprotocols
    chosen = subprotocols[0] if subprotocols else None
    values = request.headers.get_all("Sec-WebSocket-Extensions")
    extensions = None
    try:
        negotiated = pmd.server_negotiate(values, pmd.DEFAULT_SERVER_CONFIG)
    except NegotiationError:
        negotiated = None
    if negotiated is not None:
        extensions = negotiated[0]
        assert pmd.parse_extensions([extensions])[0][0] == pmd.EXTENSION_NAME
    wire = hs.build_response(hs.accept_response(key, chosen, extensions))
    head_out, sep, body = wire.partition(b"\r\n\r\n")
    assert sep and not body
    response = hs.parse_response(head_out)
    assert response.status == 101
    assert hs.check_response(response, key, subprotocols) == chosen


def fuzz_response(head: bytes) -> None:
    try:
        response = hs.parse_response(head)
    except HandshakeRejected as exc:  # must have been turned into a client-side error
        raise AssertionError(f"server-side error from parse_response: {exc!r}") from None
    except InvalidHandshake:
        return
    assert 0 <= response.status <= 999
    try:
        chosen = hs.check_response(response, KEY, ["chat", "v2.json"])
    except HandshakeRejected as exc:
        raise AssertionError(f"server-side error from check_response: {exc!r}") from None
    except InvalidHandshake:
        return
    assert chosen in (None, "chat", "v2.json")
    assert response.headers.get("Sec-WebSocket-Accept") == hs.accept_key(KEY)


def fuzz_chunked(data: bytes) -> None:
    whole = hs.decode_chunked(data)
    partial = hs.decode_chunked(data, partial=True)
    assert partial is not None and len(partial) <= len(data)
    if whole is not None:
        assert len(whole) <= len(data)
        assert whole == partial


def fuzz_uri(text: str) -> None:
    try:
        uri = hs.parse_uri(text)
    except InvalidURI:
        return
    assert uri.resource.startswith("/") and _HOST.fullmatch(uri.host), uri
    assert 0 <= uri.port <= 65535
    if known_bug(text):
        return
    request = hs.parse_request(hs.build_request(uri, KEY).partition(b"\r\n\r\n")[0])
    assert request.target == uri.resource, (request.target, uri.resource)
    assert request.host == uri.host_header
    assert hs.check_request(request) == KEY


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
        fuzz_chunked(rest)
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
