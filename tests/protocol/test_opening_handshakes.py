"""Both sides of the opening handshake, sans-I/O: protocol.server and protocol.client.

The two run against each other in memory (request bytes through the strict
RequestParser, the 101 back through the ResponseParser), with every split of the
server's answer, and against hand-written responses for the client's failure paths.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsline.errors import HandshakeRejected, InvalidHandshake, InvalidStatus, NegotiationError
from wsline.protocol import deflate as pmd
from wsline.protocol.client import ClientHandshake, ClientOptions, connect_error, headers_from
from wsline.protocol.handshake import accept_key, parse_uri
from wsline.protocol.http11 import NEED_DATA, EndOfMessage, Headers, Request, RequestParser, Response
from wsline.protocol.server import AUTO, ServerHandshake, ServerOptions

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def request_from(handshake: ClientHandshake, options: ServerOptions | None = None) -> Request:
    """The client's request as the server's parser reads it."""
    parser = RequestParser((options or ServerOptions()).limits)
    parser.feed(handshake.data_to_send())
    request = parser.next_event()
    assert isinstance(request, Request)
    assert isinstance(parser.next_event(), EndOfMessage)
    return request


def open_pair(
    client_options: ClientOptions | None = None, server_options: ServerOptions | None = None
) -> tuple[ClientHandshake, bytes]:
    """A client handshake and the server's 101 for it."""
    uri = parse_uri("ws://example.com/chat?room=1")
    client = ClientHandshake(uri, client_options or ClientOptions(), KEY)
    server = ServerHandshake(server_options or ServerOptions())
    accepted = server.accept(request_from(client, server_options))
    return client, accepted.data


# ------------------------------------------------------------------ options


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ping_interval": 0},
        {"ping_interval": -1},
        {"ping_timeout": 0},
        {"open_timeout": -5},
        {"close_timeout": None},
        {"max_size": 0},
        {"max_queue": 0},
        {"write_limit": -1},
        {"max_header_size": 10},
        {"max_connections_per_client": 0},
        {"server_header": "evil\r\nX-Injected: 1"},
        {"subprotocols": ("",)},
    ],
)
def test_server_options_are_checked_once(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ServerOptions(**kwargs)  # type: ignore[arg-type]


def test_server_options_are_frozen_and_give_the_parser_limits() -> None:
    options = ServerOptions(max_header_size=4096, max_body_size=100)
    assert options.limits.max_head == 4096
    assert options.limits.max_body == 100
    with pytest.raises(AttributeError):
        options.max_size = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"subprotocols": ("bad name",)},
        {"subprotocols": ("a,b",)},
        {"headers": (("Bad Name", "x"),)},
        {"headers": (("X-Ok", "line\r\nbreak"),)},
        {"headers": (("X-Ok", "caf\u20ac"),)},
        {"origin": "http://a\nb"},
        {"user_agent": "x\x00y"},
        {"ping_interval": 0},
        {"close_timeout": 0},
        {"max_size": -1},
        {"write_limit": -1},
    ],
)
def test_client_options_refuse_what_http_cannot_carry(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ClientOptions(**kwargs)  # type: ignore[arg-type]


def test_headers_from_a_mapping_or_pairs() -> None:
    assert headers_from(None) == ()
    assert headers_from({"A": "1"}) == (("A", "1"),)
    assert headers_from([("A", "1"), ("A", "2")]) == (("A", "1"), ("A", "2"))


# ------------------------------------------------------------------ server side


def test_the_client_request_carries_everything_configured() -> None:
    options = ClientOptions(
        subprotocols=("chat.v2", "chat.v1"),
        headers=(("Authorization", "Bearer t"),),
        origin="https://example.com",
        user_agent="tester/1",
    )
    client = ClientHandshake(parse_uri("ws://user:pw@example.com:8080/chat?q=1"), options, KEY)
    request = request_from(client)
    assert request.method == "GET"
    assert request.target == "/chat?q=1"
    assert request.host == "example.com:8080"
    assert request.subprotocols == ["chat.v2", "chat.v1"]
    assert request.origin == "https://example.com"
    assert request.headers.get("User-Agent") == "tester/1"
    assert request.headers.get_all("Authorization") == ["Basic dXNlcjpwdw==", "Bearer t"]
    assert request.headers.get("Sec-WebSocket-Key") == KEY
    assert "permessage-deflate" in (request.headers.get("Sec-WebSocket-Extensions") or "")
    assert client.request.headers.items() == request.headers.items()  # what WebSocket.request shows


def test_accept_gives_the_101_and_a_ready_server_connection() -> None:
    client = ClientHandshake(parse_uri("ws://h/"), ClientOptions(subprotocols=("b", "a")), KEY)
    accepted = ServerHandshake(ServerOptions(subprotocols=("a", "b"))).accept(request_from(client))
    assert accepted.response.status == 101
    assert accepted.subprotocol == "a"  # the server's preference
    assert accepted.response.headers.get("Sec-WebSocket-Accept") == accept_key(KEY)
    assert accepted.response.headers.get("Server", "").startswith("wsline/")
    assert accepted.data.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert not accepted.connection.is_client
    assert accepted.connection.deflate is not None


def test_accept_with_an_application_chosen_subprotocol_and_headers() -> None:
    client = ClientHandshake(parse_uri("ws://h/"), ClientOptions(subprotocols=("x", "y")), KEY)
    handshake = ServerHandshake(ServerOptions(server_header=None))
    request = request_from(client)
    accepted = handshake.accept(request, subprotocol="y", extra_headers=[("Set-Cookie", "s=1")])
    assert accepted.subprotocol == "y"
    assert accepted.response.headers.get("Set-Cookie") == "s=1"
    assert "Server" not in accepted.response.headers
    assert handshake.accept(request, subprotocol=None).subprotocol is None
    with pytest.raises(HandshakeRejected) as info:
        handshake.accept(request, subprotocol="z")
    assert info.value.status == 500


def test_select_subprotocol_hook_and_its_mistakes() -> None:
    client = ClientHandshake(parse_uri("ws://h/"), ClientOptions(subprotocols=("x", "y")), KEY)
    request = request_from(client)
    pick_last = ServerHandshake(ServerOptions(select_subprotocol=lambda req, offered: offered[-1]))
    assert pick_last.accept(request, subprotocol=AUTO).subprotocol == "y"
    wrong = ServerHandshake(ServerOptions(select_subprotocol=lambda req, offered: "nope"))
    with pytest.raises(HandshakeRejected) as info:
        wrong.accept(request)
    assert info.value.status == 500


def test_origins_are_checked() -> None:
    request = request_from(ClientHandshake(parse_uri("ws://h/"), ClientOptions(origin="https://evil"), KEY))
    handshake = ServerHandshake(ServerOptions(origins=("https://good",)))
    with pytest.raises(HandshakeRejected) as info:
        handshake.accept(request)
    assert info.value.status == 403
    assert handshake.accept(request, check_origin=False).response.status == 101
    no_origin = request_from(ClientHandshake(parse_uri("ws://h/"), ClientOptions(), KEY))
    assert ServerHandshake(ServerOptions(origins=(None,))).accept(no_origin).response.status == 101


def test_a_malformed_extension_offer_is_400_and_compression_off_declines() -> None:
    client = ClientHandshake(parse_uri("ws://h/"), ClientOptions(deflate=None), KEY)
    request = request_from(client)
    request.headers.add("Sec-WebSocket-Extensions", "permessage-deflate; =oops")
    with pytest.raises(HandshakeRejected) as info:
        ServerHandshake(ServerOptions()).accept(request)
    assert info.value.status == 400
    accepted = ServerHandshake(ServerOptions(deflate=None)).accept(request)
    assert accepted.connection.deflate is None
    assert "Sec-WebSocket-Extensions" not in accepted.response.headers


def plain_headers() -> Headers:
    return Headers([("Host", "h")])


def test_serialize_adds_what_http_needs() -> None:
    handshake = ServerHandshake(ServerOptions(server_header="srv"))
    get = Request("GET", "/", plain_headers())
    head = Request("HEAD", "/", get.headers)
    page = Response(200, body=b"hello")
    data = handshake.serialize(page, get, keep_alive=True)
    assert data.endswith(b"\r\n\r\nhello")
    assert b"Content-Length: 5\r\n" in data and b"Server: srv\r\n" in data
    assert b"Connection: close" not in data
    assert b"Connection: close\r\n" in handshake.serialize(page, get, keep_alive=False)
    assert handshake.serialize(page, head, keep_alive=True).endswith(b"\r\n\r\n")  # no body for HEAD
    assert b"Content-Length" not in handshake.serialize(Response(204), get, keep_alive=True)
    assert page.headers.items() == []  # the application's Response is left as it was


def test_keep_alive_takes_the_request_and_the_response() -> None:
    request = Request("GET", "/", plain_headers())
    closing = Response(200)
    closing.headers.add("Connection", "close")
    assert ServerHandshake.keep_alive(request, Response(200), True)
    assert not ServerHandshake.keep_alive(request, Response(200), False)
    assert not ServerHandshake.keep_alive(request, closing, True)


# ------------------------------------------------------------------ client side


def test_the_client_opens_on_the_servers_101_and_keeps_the_frames_after_it() -> None:
    client, answer = open_pair(ClientOptions(subprotocols=("chat",)), ServerOptions(subprotocols=("chat",)))
    assert client.receive_data(answer + b"\x81\x02hi")
    assert client.subprotocol == "chat"
    assert client.response is not None and client.response.status == 101
    assert client.connection is not None and client.connection.is_client
    rest = client.trailing_data()
    assert rest == b"\x81\x02hi"
    assert client.connection.receive_data(rest) == ["hi"]
    with pytest.raises(RuntimeError):
        client.receive_data(b"more")


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.data())
def test_every_split_of_the_answer_opens_the_same_connection(data: st.DataObject) -> None:
    client, answer = open_pair()
    wire = answer + b"\x82\x03abc"
    cuts = sorted(data.draw(st.sets(st.integers(1, len(wire) - 1), max_size=6)))
    pieces = iter([wire[i:j] for i, j in zip([0, *cuts], [*cuts, len(wire)], strict=True)])
    for piece in pieces:
        if client.receive_data(piece):
            break
    connection = client.connection
    assert connection is not None
    events = connection.receive_data(client.trailing_data())
    for piece in pieces:
        events += connection.receive_data(piece)
    assert events == [b"abc"]


def test_compression_is_negotiated_end_to_end() -> None:
    client, answer = open_pair(ClientOptions(deflate=pmd.DeflateConfig()), ServerOptions())
    assert client.receive_data(answer)
    assert client.connection is not None and client.connection.deflate is not None


def refused(wire: bytes, *, eof: bool = False, options: ClientOptions | None = None) -> InvalidStatus:
    client = ClientHandshake(parse_uri("ws://h/"), options or ClientOptions(), KEY)
    client.data_to_send()
    with pytest.raises(InvalidStatus) as info:
        client.receive_data(wire)
        if eof:
            client.receive_eof()
    return info.value


def test_a_refusal_with_content_length_is_raised_with_its_body() -> None:
    exc = refused(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\nX-Why: origin\r\n\r\nno way!")
    assert (exc.status, exc.reason_phrase, exc.body) == (403, "Forbidden", b"no way!")
    assert ("X-Why", "origin") in exc.headers


def test_a_chunked_refusal_and_one_read_until_close() -> None:
    chunked = refused(
        b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    assert chunked.body == b"abcde"
    until_close = refused(b"HTTP/1.1 503 Busy\r\n\r\ntry later", eof=True)
    assert until_close.body == b"try later"


def test_a_refusal_body_is_cut_at_max_rejection_body() -> None:
    exc = refused(
        b"HTTP/1.1 400 Bad\r\nContent-Length: 100000\r\n\r\n" + b"x" * 5000,
        options=ClientOptions(max_rejection_body=1000),
    )
    assert exc.body == b"x" * 1000


def test_a_refusal_cut_by_eof_keeps_what_came_and_a_bad_body_keeps_the_status() -> None:
    cut = refused(b"HTTP/1.1 401 No\r\nContent-Length: 10\r\n\r\nabc", eof=True)
    assert (cut.status, cut.body) == (401, b"abc")
    bad = refused(b"HTTP/1.1 404 Nope\r\nContent-Length: x\r\n\r\n")
    assert bad.status == 404


def test_an_interim_response_comes_before_the_101() -> None:
    client, answer = open_pair()
    assert client.receive_data(b"HTTP/1.1 100 Continue\r\n\r\n" + answer)
    assert client.response is not None and client.response.status == 101


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"SSH-2.0-OpenSSH\r\n", "malformed HTTP status line"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         b"Sec-WebSocket-Accept: wrong\r\n\r\n", "Sec-WebSocket-Accept"),
        (b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n", "Upgrade: websocket"),
    ],
)
def test_a_bad_answer_is_invalid_handshake(wire: bytes, message: str) -> None:
    client = ClientHandshake(parse_uri("ws://h/"), ClientOptions(), KEY)
    with pytest.raises(InvalidHandshake, match=message):
        client.receive_data(wire)


def test_an_unoffered_subprotocol_or_extension_is_refused() -> None:
    client = ClientHandshake(parse_uri("ws://h/"), ClientOptions(deflate=None), KEY)
    base = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(KEY)}\r\n"
    )
    with pytest.raises(NegotiationError):
        client.receive_data((base + "Sec-WebSocket-Protocol: chat\r\n\r\n").encode())
    other = ClientHandshake(parse_uri("ws://h/"), ClientOptions(deflate=None), KEY)
    with pytest.raises(InvalidHandshake, match="extension we did not offer"):
        other.receive_data((base + "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n").encode())


def test_eof_before_the_answer() -> None:
    client = ClientHandshake(parse_uri("ws://h/"), ClientOptions(), KEY)
    assert not client.receive_data(b"HTTP/1.1 101 Swi")
    with pytest.raises(InvalidHandshake, match="closed the connection during the opening handshake: reset"):
        client.receive_eof("reset")


def test_a_response_head_above_the_limit_fails_without_waiting() -> None:
    client = ClientHandshake(parse_uri("ws://h/"), ClientOptions(max_response_head=1024), KEY)
    with pytest.raises(InvalidHandshake, match="larger than"):
        client.receive_data(b"HTTP/1.1 101 OK\r\nX: " + b"a" * 2000)


def test_connect_error_names_the_failure() -> None:
    import ssl

    from wsline.errors import ConnectFailed, ConnectRefused

    refused_error = connect_error(ConnectionRefusedError(111, "Connection refused"), "::1", 80)
    assert isinstance(refused_error, ConnectRefused) and "[::1]:80" in str(refused_error)
    assert isinstance(connect_error(OSError(113, "No route"), "h", 1), ConnectFailed)
    tls = ssl.SSLError(1, "x")
    tls.reason = "WRONG_VERSION_NUMBER"  # type: ignore[misc]
    assert "ws:// server" in str(connect_error(tls, "h", 443))


def test_need_data_until_the_head_is_in() -> None:
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\nHost: h\r\n")
    assert parser.next_event() is NEED_DATA
