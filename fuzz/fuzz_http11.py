"""Coverage-guided fuzz target for the HTTP/1.1 parsers (wsline.protocol.http11).

Input layout: byte 0 is the configuration, byte 1 a piece size, the rest the
stream the parser reads.

* byte 0, bit 0: 0 for :class:`RequestParser`, 1 for :class:`ResponseParser`;
* bit 1: small limits (so that the limits are reached), else the defaults;
* bits 2-3: the method the responses answer (GET, HEAD, CONNECT, POST);
* byte 1: the size of the pieces of one of the splits (1 to 256).

The stream is fed whole, a byte at a time, in pieces of the given size, and cut
in two at every offset (or at 64 of them for long streams); each time the
parser is drained after each piece (``start_next`` after each message), then
gets EOF. Asserted:

* only :class:`HandshakeRejected` with 400/413/431/501/505 comes out of a
  request parser, only :class:`InvalidHandshake` (never ``HandshakeRejected``)
  out of a response parser, and after one every call raises the same exception;
* whether the stream is refused does not depend on the split, and when it is
  not, the events are the same (Data merged per message);
* the events keep their grammar (head, Data..., EndOfMessage, PAUSED; CLOSED
  last), Data is non-empty bytes, a body stays within ``max_body``, and what the
  parser holds when it asks for data stays within its limits;
* a request that asks for an upgrade is taken as accepted: what follows it is
  ``trailing_data``;
* an accepted request has an origin-form target (or ``*`` for OPTIONS), one
  valid Host if HTTP/1.1, header values without controls, and its head parses
  back to itself once serialized; a response's status is 100 to 999.
"""

from __future__ import annotations

import re
import sys

from wsline.errors import HandshakeRejected, InvalidHandshake
from wsline.protocol.http11 import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    Data,
    EndOfMessage,
    Limits,
    Request,
    RequestParser,
    Response,
    ResponseParser,
    Sentinel,
    parse_request,
)

REQUEST_STATUSES = frozenset({400, 413, 431, 501, 505})
METHODS = ("GET", "HEAD", "CONNECT", "POST")
SMALL = Limits(max_head=300, max_headers=8, max_body=400, max_chunk_line=24, max_trailers=80)
DEFAULT = Limits()
_TARGET = re.compile(r"/[\x21\x22\x24-\x7e]*|\*")
_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")

Norm = tuple[object, ...]


def norm(event: object) -> Norm:
    if isinstance(event, Request):
        return ("request", event.method, event.target, event.version, tuple(event.headers))
    if isinstance(event, Response):
        return ("response", event.status, event.reason, tuple(event.headers))
    if isinstance(event, Data):
        return ("data", event.data)
    if isinstance(event, EndOfMessage):
        return ("end", tuple(event.trailers))
    assert isinstance(event, Sentinel), event
    return (event.value,)


def check_request(request: Request) -> None:
    target = request.target
    assert _TARGET.fullmatch(target), target
    assert target != "*" or request.method == "OPTIONS", request
    assert request.version[0] == 1
    hosts = request.headers.get_all("Host")
    assert len(hosts) <= 1 and (hosts or request.version < (1, 1)), request
    for name, value in request.headers:
        assert name and _VALUE.fullmatch(value) and value == value.strip(" \t"), (name, value)
    # Serialized again, the head gives the same request.
    head = f"{request.method} {target} HTTP/1.{request.version[1]}\r\n".encode("latin-1")
    again = parse_request(head + request.headers.encode())
    assert norm(again) == norm(request), (again, request)


def run(pieces: list[bytes], response: bool, limits: Limits, method: str) -> tuple[object, ...]:
    """Feed ``pieces``; ("events", ...) or ("error",)."""
    parser: RequestParser | ResponseParser
    parser = ResponseParser(limits, request_method=method) if response else RequestParser(limits)
    bound = max(limits.max_head, limits.max_chunk_line + 1, limits.max_trailers + 2)
    out: list[Norm] = []
    state = "idle"
    size = 0
    upgrade = False

    def take() -> bool:
        nonlocal state, size, upgrade
        while True:
            event = parser.next_event()
            if event is NEED_DATA:
                assert parser.buffered <= bound, (parser.buffered, bound)
                return True
            item = norm(event)
            if isinstance(event, Data):
                assert state == "body" and type(event.data) is bytes and event.data
                size += len(event.data)
                assert size <= limits.max_body
                if out[-1][0] == "data":
                    out[-1] = ("data", out[-1][1] + event.data)  # type: ignore[operator]
                    continue
            elif isinstance(event, (Request, Response)):
                assert state == "idle", out
                if isinstance(event, Request):
                    check_request(event)
                    upgrade = event.is_upgrade
                    state, size = "body", 0
                else:
                    assert 100 <= event.status <= 999
                    if not (event.status < 200 and event.status != 101):
                        state, size = "body", 0
            elif isinstance(event, EndOfMessage):
                assert state == "body", out
                state = "ended"
            elif event is PAUSED:
                assert state == "ended", out
                state = "idle"
            out.append(item)
            if event is PAUSED:
                if response:
                    status = next(e[1] for e in reversed(out) if e[0] == "response")
                    switched = status == 101 or (method == "CONNECT" and 200 <= status < 300)  # type: ignore[operator]
                else:  # as a server that accepts every upgrade
                    switched = upgrade
                if switched:
                    parser.trailing_data()
                    out.append(("switched",))
                    return False
                parser.start_next()
            elif event is CLOSED:
                assert state == "idle"
                return False

    try:
        for piece in pieces:
            parser.feed(piece)
            if not take():
                return ("events", *out)
        parser.feed_eof()
        take()
    except HandshakeRejected as exc:
        assert not response, f"server-side error from the response parser: {exc!r}"
        assert exc.status in REQUEST_STATUSES, exc
        dead(parser, exc)
        return ("error",)
    except InvalidHandshake as exc:
        assert response, f"client-side error from the request parser: {exc!r}"
        dead(parser, exc)
        return ("error",)
    return ("events", *out)


def dead(parser: RequestParser | ResponseParser, exc: Exception) -> None:
    assert not parser.keep_alive and parser.buffered == 0
    try:
        parser.next_event()
    except InvalidHandshake as again:
        assert again is exc
    else:
        raise AssertionError("a parser went on after an error")


def splits(data: bytes, size: int) -> list[list[bytes]]:
    out = [[data], [data[i : i + 1] for i in range(len(data))]]
    out.append([data[i : i + size] for i in range(0, len(data), size)])
    step = max(1, len(data) // 64)
    out += [[data[:cut], data[cut:]] for cut in range(1, len(data), step)]
    return out


def TestOneInput(data: bytes) -> None:  # the name atheris calls
    if len(data) < 2:
        return
    config, size, stream = data[0], data[1] + 1, data[2:]
    response = bool(config & 1)
    limits = SMALL if config & 2 else DEFAULT
    method = METHODS[(config >> 2) & 3]
    results = [run(pieces, response, limits, method) for pieces in splits(stream, size)]
    verdicts = {result[0] for result in results}
    assert len(verdicts) == 1, (verdicts, stream)
    if verdicts == {"events"}:
        assert all(result == results[0] for result in results), stream


def main() -> None:
    import atheris  # type: ignore[import-untyped]  # only here: the tests import TestOneInput without it

    atheris.instrument_all()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
