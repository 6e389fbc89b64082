"""Tests for the opening handshake (wsline.protocol.handshake), without I/O."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from wsline.errors import HandshakeRejected, InvalidHandshake, InvalidURI, NegotiationError
from wsline.protocol.client import ClientOptions
from wsline.protocol.handshake import (
    GUID,
    WSURI,
    Headers,
    Request,
    Response,
    accept_key,
    accept_response,
    build_response,
    check_request,
    check_response,
    generate_key,
    make_request,
    parse_request,
    parse_response,
    parse_token_list,
    parse_uri,
    reject_response,
    serialize_request,
)

# RFC 6455 1.3 / 4.2.2 example key and accept value.
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

REQUEST_LINE = "GET /chat HTTP/1.1"
VALID_HEADERS = [
    "Host: server.example.com",
    "Upgrade: websocket",
    "Connection: Upgrade",
    f"Sec-WebSocket-Key: {KEY}",
    "Origin: http://example.com",
    "Sec-WebSocket-Protocol: chat, superchat",
    "Sec-WebSocket-Version: 13",
]


def make_head(lines: list[str], request_line: str = REQUEST_LINE) -> bytes:
    """A request head as the server passes it: no final blank line."""
    return "\r\n".join([request_line, *lines]).encode("latin-1")


def replace_header(name: str, *values: str) -> list[str]:
    """VALID_HEADERS with every ``name`` line replaced by ``values`` lines."""
    out = [line for line in VALID_HEADERS if line.split(":", 1)[0].lower() != name.lower()]
    out.extend(f"{name}: {v}" for v in values)
    return out


def rejection(lines: list[str], request_line: str = REQUEST_LINE) -> HandshakeRejected:
    """Parse and check a request that must be rejected; return the rejection."""
    with pytest.raises(HandshakeRejected) as info:
        check_request(parse_request(make_head(lines, request_line)))
    return info.value


def accepted_key(lines: list[str], request_line: str = REQUEST_LINE) -> str:
    return check_request(parse_request(make_head(lines, request_line)))


# ------------------------------------------------------------------ accept key


def test_accept_key_rfc_example() -> None:
    assert accept_key(KEY) == ACCEPT


def test_accept_key_uses_guid() -> None:
    assert GUID == "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    key = "x3JJHMbDL1EzLkh9GBhXDw=="
    expected = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    assert accept_key(key) == expected
    assert expected == "HSmrc0sMlYUkAGmm5OPpG2HaGWk="


def test_generate_key_is_16_random_bytes() -> None:
    keys = {generate_key() for _ in range(20)}
    assert len(keys) == 20
    for key in keys:
        assert len(base64.b64decode(key, validate=True)) == 16
        # A generated key passes the server's validation.
        assert accepted_key(replace_header("Sec-WebSocket-Key", key)) == key


# ------------------------------------------------------------------ Headers


def test_headers_case_insensitive_and_multi_values() -> None:
    headers = Headers([("Content-Type", "a"), ("X-Multi", "1"), ("x-multi", "2"), ("X-MULTI", "3")])
    assert headers.get("content-type") == "a"
    assert headers.get("CONTENT-TYPE") == "a"
    assert headers["Content-type"] == "a"
    assert headers.get("x-Multi") == "1"
    assert headers.get_all("X-Multi") == ["1", "2", "3"]
    assert headers.get_all("missing") == []
    assert headers.get("missing") is None
    assert headers.get("missing", "dflt") == "dflt"
    assert "x-multi" in headers
    assert "Missing" not in headers
    assert 42 not in headers
    assert len(headers) == 4
    with pytest.raises(KeyError):
        headers["missing"]


def test_headers_add_order_items_and_encode() -> None:
    headers = Headers({"A": "1"})
    headers.add("B", "2")
    headers.add("a", "3")
    assert headers.items() == [("A", "1"), ("B", "2"), ("a", "3")]
    assert list(headers) == [("A", "1"), ("B", "2"), ("a", "3")]
    assert headers.get_all("A") == ["1", "3"]
    assert headers.encode() == b"A: 1\r\nB: 2\r\na: 3\r\n"
    # items() is a copy.
    headers.items().append(("C", "4"))
    assert len(headers) == 3


def test_headers_empty_value_is_present() -> None:
    headers = Headers([("X-Empty", "")])
    assert "X-Empty" in headers
    assert headers["x-empty"] == ""


def test_parse_token_list() -> None:
    assert parse_token_list(["a, b", "c,,d ,\t e", ""]) == ["a", "b", "c", "d", "e"]
    with pytest.raises(NegotiationError):
        parse_token_list(["good, b@d"])
    assert parse_token_list(["good, b@d"], strict=False) == ["good", "b@d"]


# ------------------------------------------------------------------ parse_request


def test_parse_request_happy_path() -> None:
    request = parse_request(make_head(VALID_HEADERS))
    assert request.method == "GET"
    assert request.target == "/chat"
    assert request.version == (1, 1)
    assert request.path == "/chat"
    assert request.query_string == ""
    assert request.query == {}
    assert request.host == "server.example.com"
    assert request.origin == "http://example.com"
    assert request.subprotocols == ["chat", "superchat"]
    assert request.is_upgrade
    assert request.headers["sec-websocket-key"] == KEY
    assert check_request(request) == KEY


def test_parse_request_with_trailing_crlf() -> None:
    head = make_head(VALID_HEADERS) + b"\r\n"
    request = parse_request(head)
    assert len(request.headers) == len(VALID_HEADERS)
    assert check_request(request) == KEY


def test_request_path_and_query() -> None:
    request = parse_request(make_head(VALID_HEADERS, "GET /chat%20room/x?a=1&b=%20two&a=3&empty= HTTP/1.1"))
    assert request.target == "/chat%20room/x?a=1&b=%20two&a=3&empty="
    assert request.path == "/chat room/x"
    assert request.query_string == "a=1&b=%20two&a=3&empty="
    assert request.query == {"a": "1", "b": " two", "empty": ""}


def test_request_properties_absent() -> None:
    lines = [line for line in VALID_HEADERS if not line.startswith(("Origin", "Sec-WebSocket-Protocol"))]
    request = parse_request(make_head(lines))
    assert request.origin is None
    assert request.subprotocols == []


def test_request_subprotocols_over_several_lines() -> None:
    lines = replace_header("Sec-WebSocket-Protocol", "a, b", "c")
    assert parse_request(make_head(lines)).subprotocols == ["a", "b", "c"]


def test_request_is_upgrade() -> None:
    assert Request("GET", "/", Headers([("Upgrade", "h2c, WebSocket")])).is_upgrade
    assert not Request("GET", "/", Headers([("Upgrade", "h2c")])).is_upgrade
    assert not Request("GET", "/", Headers()).is_upgrade


def test_parse_request_absolute_form_target() -> None:
    request = parse_request(make_head(VALID_HEADERS, "GET http://server.example.com/chat?x=1 HTTP/1.1"))
    assert request.target == "/chat?x=1"
    assert request.path == "/chat"
    assert request.query == {"x": "1"}


def test_parse_request_header_value_whitespace_stripped() -> None:
    lines = replace_header("X-Padded", "")
    lines[-1] = "X-Padded:  \t value with  inner  spaces \t "
    request = parse_request(make_head(lines))
    assert request.headers["x-padded"] == "value with  inner  spaces"


@pytest.mark.parametrize(
    "request_line",
    [
        "GET /chat",
        "GET  /chat HTTP/1.1",
        "GET /chat HTTP/1.1 extra",
        "",
        "GET /chat HTTP/11",
        "G@T / HTTP/1.1",
        "GET /chat http/1.1",
    ],
)
def test_parse_request_malformed_request_line(request_line: str) -> None:
    with pytest.raises(HandshakeRejected) as info:
        parse_request(make_head(VALID_HEADERS, request_line))
    assert info.value.status == 400


@pytest.mark.parametrize("target", ["chat", "?x", "%2F"])
def test_parse_request_invalid_target(target: str) -> None:
    with pytest.raises(HandshakeRejected) as info:
        parse_request(make_head(VALID_HEADERS, f"GET {target} HTTP/1.1"))
    assert info.value.status == 400


def test_parse_request_non_ascii_target() -> None:
    head = b"GET /caf\xe9 HTTP/1.1\r\n" + "\r\n".join(VALID_HEADERS).encode()
    with pytest.raises(HandshakeRejected) as info:
        parse_request(head)
    assert info.value.status == 400


@pytest.mark.parametrize("version", ["0.9", "2.0", "3.1"])
def test_parse_request_unsupported_http_version(version: str) -> None:
    with pytest.raises(HandshakeRejected) as info:
        parse_request(make_head(VALID_HEADERS, f"GET /chat HTTP/{version}"))
    assert info.value.status == 505


def test_parse_request_http_1_2_is_accepted() -> None:
    request = parse_request(make_head(VALID_HEADERS, "GET /chat HTTP/1.2"))
    assert request.version == (1, 2)


@pytest.mark.parametrize(
    "line",
    [
        "NoColonHere",
        "Bad Name: value",
        ": empty name",
        "Name\t: tab before colon",
        "Na(me: value",
        "X-Ctl: a\x00b",
        "X-Ctl: a\x7fb",
        "X-Ctl: a\x1bb",
        "X-Cr: a\rb",
    ],
)
def test_parse_request_malformed_header_lines(line: str) -> None:
    with pytest.raises(HandshakeRejected) as info:
        parse_request(make_head([*VALID_HEADERS, line]))
    assert info.value.status == 400


def test_parse_request_allows_tab_and_obs_text_in_values() -> None:
    request = parse_request(make_head([*VALID_HEADERS, "X-Val: a\tb \xe9"]))
    assert request.headers["X-Val"] == "a\tb \xe9"


@pytest.mark.parametrize("fold", [" continued", "\tcontinued"])
def test_parse_request_obs_fold_rejected(fold: str) -> None:
    lines = [*VALID_HEADERS[:2], fold, *VALID_HEADERS[2:]]
    with pytest.raises(HandshakeRejected) as info:
        parse_request(make_head(lines))
    assert info.value.status == 400
    assert "fold" in info.value.reason


def test_parse_request_too_many_headers() -> None:
    extra = [f"X-Extra-{i}: {i}" for i in range(200)]
    with pytest.raises(HandshakeRejected) as info:
        parse_request(make_head([*VALID_HEADERS, *extra]))
    assert info.value.status == 431


def test_parse_request_max_headers_boundary() -> None:
    lines = [*VALID_HEADERS, "X-A: 1", "X-B: 2", "X-C: 3"]
    assert len(lines) == 10
    assert len(parse_request(make_head(lines), max_headers=10).headers) == 10
    with pytest.raises(HandshakeRejected) as info:
        parse_request(make_head([*lines, "X-D: 4"]), max_headers=10)
    assert info.value.status == 431


def test_parse_request_max_headers_boundary_with_trailing_crlf() -> None:
    lines = [*VALID_HEADERS, "X-A: 1", "X-B: 2", "X-C: 3"]
    request = parse_request(make_head(lines) + b"\r\n", max_headers=10)
    assert len(request.headers) == 10


# ------------------------------------------------------------------ check_request


@pytest.mark.parametrize("method", ["POST", "PUT", "HEAD", "get", "OPTIONS"])
def test_check_request_non_get(method: str) -> None:
    exc = rejection(VALID_HEADERS, f"{method} /chat HTTP/1.1")
    assert exc.status == 405
    assert ("Allow", "GET") in exc.headers


def test_parse_request_accepts_http_1_0() -> None:
    # Plain HTTP/1.0 requests are answered (RFC 9112 allows them)...
    assert parse_request(make_head(VALID_HEADERS, "GET /chat HTTP/1.0")).version == (1, 0)


def test_check_request_http_1_0_rejected_505() -> None:
    # ...but a WebSocket handshake needs HTTP/1.1 (RFC 6455 4.1).
    with pytest.raises(HandshakeRejected) as info:
        check_request(parse_request(make_head(VALID_HEADERS, "GET /chat HTTP/1.0")))
    assert info.value.status == 505


def test_check_request_missing_host() -> None:
    exc = rejection(replace_header("Host"))
    assert exc.status == 400
    assert "Host" in exc.reason


def test_check_request_duplicate_host() -> None:
    assert rejection(replace_header("Host", "a.example", "b.example")).status == 400


def test_check_request_empty_host() -> None:
    assert rejection(replace_header("Host", "")).status == 400


def test_check_request_missing_upgrade() -> None:
    exc = rejection(replace_header("Upgrade"))
    assert exc.status == 426
    names = {name.lower(): value for name, value in exc.headers}
    assert names.get("upgrade", "").lower() == "websocket"


@pytest.mark.parametrize("value", ["h2c", "websockets", "web socket", ""])
def test_check_request_wrong_upgrade(value: str) -> None:
    assert rejection(replace_header("Upgrade", value)).status == 426


@pytest.mark.parametrize("value", ["websocket", "WebSocket", "WEBSOCKET", "h2c, websocket", "websocket, h2c"])
def test_check_request_upgrade_token_list_case_insensitive(value: str) -> None:
    assert accepted_key(replace_header("Upgrade", value)) == KEY


def test_check_request_upgrade_over_several_lines() -> None:
    assert accepted_key(replace_header("Upgrade", "h2c", "websocket")) == KEY


@pytest.mark.parametrize("values", [(), ("keep-alive",), ("close",), ("upgrades",), ("",)])
def test_check_request_connection_without_upgrade(values: tuple[str, ...]) -> None:
    assert rejection(replace_header("Connection", *values)).status == 400


@pytest.mark.parametrize(
    "values",
    [
        ("keep-alive, Upgrade",),
        ("Upgrade, keep-alive",),
        ("upgrade",),
        ("UPGRADE",),
        ("keep-alive", "Upgrade"),
    ],
)
def test_check_request_connection_token_list(values: tuple[str, ...]) -> None:
    assert accepted_key(replace_header("Connection", *values)) == KEY


@pytest.mark.parametrize("values", [(), ("12",), ("8",), ("14",), ("13, 8",), ("13", "13"), ("",)])
def test_check_request_bad_version(values: tuple[str, ...]) -> None:
    exc = rejection(replace_header("Sec-WebSocket-Version", *values))
    assert exc.status == 426
    assert ("Sec-WebSocket-Version", "13") in exc.headers


@pytest.mark.parametrize(
    "key",
    [
        base64.b64encode(b"x" * 15).decode(),
        base64.b64encode(b"x" * 17).decode(),
        "",
        "not base64 at all!!!!!!!",
        "dGhlIHNhbXBsZSBub25jZQ",  # missing padding
        "dGhlIHNhbXBsZSBub25jZQ=!",
        "dGhlIHNhbXBs ZSBub25jZQ==",
        "dGhlIHNhbXBsZSBub25jZ\xe9==",
    ],
)
def test_check_request_bad_key(key: str) -> None:
    exc = rejection(replace_header("Sec-WebSocket-Key", key))
    assert exc.status == 400


def test_check_request_missing_key() -> None:
    assert rejection(replace_header("Sec-WebSocket-Key")).status == 400


def test_check_request_duplicate_key() -> None:
    other = base64.b64encode(b"y" * 16).decode()
    exc = rejection(replace_header("Sec-WebSocket-Key", KEY, other))
    assert exc.status == 400
    # Even the same key twice is a duplicate.
    assert rejection(replace_header("Sec-WebSocket-Key", KEY, KEY)).status == 400


def test_check_request_invalid_subprotocol_syntax() -> None:
    assert rejection(replace_header("Sec-WebSocket-Protocol", "chat, b@d")).status == 400


def test_check_request_minimal_headers() -> None:
    lines = [
        "host: h",
        "upgrade: websocket",
        "connection: upgrade",
        f"sec-websocket-key: {KEY}",
        "sec-websocket-version: 13",
    ]
    assert accepted_key(lines) == KEY


def test_handshake_rejected_fields() -> None:
    exc = HandshakeRejected(418, "teapot")
    assert exc.status == 418
    assert exc.reason == "teapot"
    assert exc.headers == []
    assert isinstance(exc, InvalidHandshake)


# ------------------------------------------------------------------ responses (server side)


def test_accept_response_and_build_response() -> None:
    response = accept_response(KEY, subprotocol="chat", extensions="permessage-deflate")
    assert response.status == 101
    assert response.reason == "Switching Protocols"
    assert response.headers["Sec-WebSocket-Accept"] == ACCEPT
    assert response.headers["Upgrade"] == "websocket"
    assert response.headers["Connection"] == "Upgrade"
    assert response.headers["Sec-WebSocket-Protocol"] == "chat"
    assert response.headers["Sec-WebSocket-Extensions"] == "permessage-deflate"
    data = build_response(response)
    assert data.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert data.endswith(b"\r\n\r\n")
    assert f"Sec-WebSocket-Accept: {ACCEPT}\r\n".encode() in data


def test_accept_response_without_options() -> None:
    response = accept_response(KEY, extra_headers=[("Server", "wsline")])
    assert "Sec-WebSocket-Protocol" not in response.headers
    assert "Sec-WebSocket-Extensions" not in response.headers
    assert response.headers["Server"] == "wsline"


def test_reject_response_content_length_and_body() -> None:
    response = reject_response(403, "go away ✋")
    body = "go away ✋".encode()
    assert response.status == 403
    assert response.reason == "Forbidden"
    assert response.body == body
    assert response.headers["Content-Length"] == str(len(body))
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Connection"] == "close"
    data = build_response(response)
    assert data.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    head, _, rest = data.partition(b"\r\n\r\n")
    assert rest == body
    assert f"Content-Length: {len(body)}".encode() in head


def test_reject_response_default_body() -> None:
    response = reject_response(426)
    assert response.body == b"426 Upgrade Required\n"
    assert response.headers["Content-Length"] == str(len(response.body))


def test_reject_response_bytes_body_and_custom_headers() -> None:
    response = reject_response(
        400, b"\x00\x01binary", headers=[("content-type", "application/octet-stream"), ("X-A", "1")]
    )
    assert response.body == b"\x00\x01binary"
    assert response.headers.get_all("Content-Type") == ["application/octet-stream"]
    assert response.headers["X-A"] == "1"
    assert response.headers["Content-Length"] == "8"


def test_response_unknown_status_reason() -> None:
    assert Response(599).reason == ""
    assert Response(404).reason == "Not Found"
    assert Response(404, "Nope").reason == "Nope"


# ------------------------------------------------------------------ URIs


def test_parse_uri_ws_default_port() -> None:
    uri = parse_uri("ws://example.com/chat")
    assert uri == WSURI(False, "example.com", 80, "/chat", None)
    assert uri.host_header == "example.com"


def test_parse_uri_wss_default_port() -> None:
    uri = parse_uri("wss://example.com")
    assert uri.secure
    assert uri.port == 443
    assert uri.resource == "/"
    assert uri.host_header == "example.com"


def test_parse_uri_explicit_ports() -> None:
    uri = parse_uri("ws://example.com:8080/")
    assert uri.port == 8080
    assert uri.host_header == "example.com:8080"
    uri = parse_uri("wss://example.com:80/")
    assert uri.port == 80
    assert uri.host_header == "example.com:80"
    uri = parse_uri("ws://example.com:443/")
    assert uri.host_header == "example.com:443"


def test_parse_uri_ipv6() -> None:
    uri = parse_uri("ws://[::1]:8765/x")
    assert uri.host == "::1"
    assert uri.port == 8765
    assert uri.host_header == "[::1]:8765"
    uri = parse_uri("wss://[2001:db8::1]/")
    assert uri.host == "2001:db8::1"
    assert uri.host_header == "[2001:db8::1]"


def test_parse_uri_query_kept_in_resource() -> None:
    assert parse_uri("ws://h/path/x?a=1&b=2").resource == "/path/x?a=1&b=2"
    assert parse_uri("ws://h?a=1").resource == "/?a=1"
    assert parse_uri("ws://h/p%20q").resource == "/p%20q"


def test_parse_uri_user_info() -> None:
    uri = parse_uri("ws://us%40er:p%3Ass@h/")
    assert uri.user_info == ("us@er", "p:ss")
    assert parse_uri("ws://user@h/").user_info == ("user", "")


@pytest.mark.parametrize("uri", ["ws://h/#frag", "ws://h/path?q=1#frag", "wss://h#x"])
def test_parse_uri_fragment_rejected(uri: str) -> None:
    with pytest.raises(InvalidURI):
        parse_uri(uri)


@pytest.mark.parametrize(
    "uri",
    ["http://h/", "https://h/", "ftp://h/", "h/chat", "/chat", "", "ws:/chat", "ws:///chat", "wss://:80/"],
)
def test_parse_uri_bad_scheme_or_host(uri: str) -> None:
    with pytest.raises(InvalidURI) as info:
        parse_uri(uri)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, InvalidHandshake)


@pytest.mark.parametrize("uri", ["ws://h:99999/", "ws://h:port/", "ws://[::1/"])
def test_parse_uri_bad_port_or_brackets(uri: str) -> None:
    with pytest.raises(InvalidURI):
        parse_uri(uri)


# ------------------------------------------------------------------ make_request


def build_request(uri: WSURI, key: str, **kwargs: Any) -> bytes:
    """The request a client sends, as bytes."""
    return serialize_request(make_request(uri, key, **kwargs))


def parse_built_request(data: bytes) -> Request:
    assert data.endswith(b"\r\n\r\n")
    return parse_request(data[:-4])


def test_build_request_contents() -> None:
    uri = parse_uri("ws://example.com:8080/chat?room=1")
    data = build_request(uri, KEY)
    assert data.startswith(b"GET /chat?room=1 HTTP/1.1\r\n")
    request = parse_built_request(data)
    assert request.headers["Host"] == "example.com:8080"
    assert request.headers["Upgrade"] == "websocket"
    assert request.headers["Connection"] == "Upgrade"
    assert request.headers["Sec-WebSocket-Key"] == KEY
    assert request.headers["Sec-WebSocket-Version"] == "13"
    for absent in ("Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions", "Origin", "Authorization"):
        assert absent not in request.headers
    # The server side accepts what the client side builds.
    assert check_request(request) == KEY


def test_build_request_options() -> None:
    uri = parse_uri("wss://alice:s3cret@[::1]/")
    data = build_request(
        uri,
        KEY,
        subprotocols=["chat", "superchat"],
        extensions="permessage-deflate",
        origin="https://example.com",
        extra_headers=[("X-Token", "abc")],
        user_agent="wsline-test/1",
    )
    request = parse_built_request(data)
    assert request.target == "/"
    assert request.headers["Host"] == "[::1]"
    assert request.headers["Sec-WebSocket-Protocol"] == "chat, superchat"
    assert request.subprotocols == ["chat", "superchat"]
    assert request.headers["Sec-WebSocket-Extensions"] == "permessage-deflate"
    assert request.origin == "https://example.com"
    assert request.headers["X-Token"] == "abc"
    assert request.headers["User-Agent"] == "wsline-test/1"
    expected = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert request.headers["Authorization"] == expected
    assert check_request(request) == KEY


@pytest.mark.parametrize("protocol", ["bad proto", "a,b", "", "caf\xe9"])
def test_client_options_refuse_an_invalid_subprotocol(protocol: str) -> None:
    with pytest.raises(ValueError):
        ClientOptions(subprotocols=(protocol,))


@pytest.mark.parametrize("header", [("Bad Name", "v"), ("X-Ok", "line\r\nInjected: yes"), ("X-Ok", "a\x00")])
def test_client_options_refuse_an_invalid_extra_header(header: tuple[str, str]) -> None:
    with pytest.raises(ValueError):
        ClientOptions(headers=(header,))


# ------------------------------------------------------------------ parse_response / check_response


def response_head(lines: list[str], status_line: str = "HTTP/1.1 101 Switching Protocols") -> bytes:
    return "\r\n".join([status_line, *lines]).encode("latin-1")


GOOD_RESPONSE = ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Accept: {ACCEPT}"]


def test_parse_response_basic() -> None:
    response = parse_response(response_head([*GOOD_RESPONSE, "Sec-WebSocket-Protocol: chat"]))
    assert response.status == 101
    assert response.reason == "Switching Protocols"
    assert response.headers["sec-websocket-accept"] == ACCEPT
    assert check_response(response, KEY, ["superchat", "chat"]) == "chat"


def test_parse_response_without_reason_phrase() -> None:
    response = parse_response(response_head(GOOD_RESPONSE, "HTTP/1.1 101"))
    assert response.status == 101
    # An empty reason falls back to the standard phrase.
    assert response.reason == "Switching Protocols"


@pytest.mark.parametrize("status_line", ["HTTP/1.1 1O1 Bad", "HTTP/1.1", "ICY 200 OK", "HTTP/1.1 1011 X"])
def test_parse_response_malformed_status_line(status_line: str) -> None:
    with pytest.raises(InvalidHandshake):
        parse_response(response_head(GOOD_RESPONSE, status_line))


def test_parse_response_malformed_header() -> None:
    with pytest.raises(InvalidHandshake) as info:
        parse_response(response_head([*GOOD_RESPONSE, "broken header"]))
    assert not isinstance(info.value, HandshakeRejected)


def test_check_response_round_trip_with_accept_response() -> None:
    data = build_response(accept_response(KEY))
    response = parse_response(data.split(b"\r\n\r\n", 1)[0])
    assert check_response(response, KEY) is None


def test_check_response_no_subprotocol_returns_none() -> None:
    response = Response(101, headers=Headers([tuple(line.split(": ", 1)) for line in GOOD_RESPONSE]))
    assert check_response(response, KEY, ["chat"]) is None


def test_check_response_bad_accept() -> None:
    lines = ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Accept: " + accept_key("other")]
    with pytest.raises(InvalidHandshake) as info:
        check_response(parse_response(response_head(lines)), KEY)
    assert not isinstance(info.value, NegotiationError)


def test_check_response_missing_or_duplicate_accept() -> None:
    with pytest.raises(InvalidHandshake):
        check_response(parse_response(response_head(GOOD_RESPONSE[:2])), KEY)
    with pytest.raises(InvalidHandshake):
        check_response(parse_response(response_head([*GOOD_RESPONSE, GOOD_RESPONSE[2]])), KEY)


def test_check_response_accept_for_wrong_key() -> None:
    other_key = base64.b64encode(b"z" * 16).decode()
    with pytest.raises(InvalidHandshake):
        check_response(parse_response(response_head(GOOD_RESPONSE)), other_key)


def test_check_response_missing_upgrade() -> None:
    with pytest.raises(InvalidHandshake):
        check_response(parse_response(response_head(GOOD_RESPONSE[1:])), KEY)
    lines = ["Upgrade: h2c", *GOOD_RESPONSE[1:]]
    with pytest.raises(InvalidHandshake):
        check_response(parse_response(response_head(lines)), KEY)


def test_check_response_missing_connection_upgrade() -> None:
    lines = [GOOD_RESPONSE[0], "Connection: keep-alive", GOOD_RESPONSE[2]]
    with pytest.raises(InvalidHandshake):
        check_response(parse_response(response_head(lines)), KEY)


def test_check_response_token_lists_case_insensitive() -> None:
    lines = ["upgrade: WebSocket", "connection: keep-alive, UPGRADE", f"sec-websocket-accept: {ACCEPT}"]
    assert check_response(parse_response(response_head(lines)), KEY) is None


def test_check_response_unoffered_subprotocol() -> None:
    response = parse_response(response_head([*GOOD_RESPONSE, "Sec-WebSocket-Protocol: other"]))
    with pytest.raises(NegotiationError):
        check_response(response, KEY, ["chat", "superchat"])
    with pytest.raises(NegotiationError):
        check_response(response, KEY)


def test_check_response_several_subprotocols() -> None:
    response = parse_response(response_head([*GOOD_RESPONSE, "Sec-WebSocket-Protocol: chat, superchat"]))
    with pytest.raises(NegotiationError):
        check_response(response, KEY, ["chat", "superchat"])
    response = parse_response(
        response_head([*GOOD_RESPONSE, "Sec-WebSocket-Protocol: chat", "Sec-WebSocket-Protocol: superchat"])
    )
    with pytest.raises(NegotiationError):
        check_response(response, KEY, ["chat", "superchat"])


def test_check_response_invalid_subprotocol_token() -> None:
    response = parse_response(response_head([*GOOD_RESPONSE, "Sec-WebSocket-Protocol: ch@t"]))
    with pytest.raises(NegotiationError):
        check_response(response, KEY, ["ch@t"])


# ------------------------------------------------------------------ request targets (RFC 9112 3.2)


def request_target(target: bytes, method: bytes = b"GET") -> str:
    """The target parse_request gives for a request line with ``target``."""
    return parse_request(method + b" " + target + b" HTTP/1.1\r\nHost: h").target


def target_rejection(target: bytes, method: bytes = b"GET") -> HandshakeRejected:
    with pytest.raises(HandshakeRejected) as info:
        request_target(target, method)
    return info.value


@pytest.mark.parametrize(
    "target", [b"http://[/", b"http://[::1/x", b"http://[v1.x]/", b"http://[::g]/", b"ws://]/", b"http://h]/"]
)
def test_absolute_form_target_with_a_bad_authority_is_a_400(target: bytes) -> None:
    # Bug 1: urlsplit's ValueError ("Invalid IPv6 URL") got out of parse_request.
    assert target_rejection(target).status == 400


@pytest.mark.parametrize(
    "target", [b"http://", b"http:///x", b"http://:80/x", b"http://u@h/", b"http://u:p@h/", b"http://h h/"]
)
def test_absolute_form_target_needs_a_host_and_no_user_info(target: bytes) -> None:
    assert target_rejection(target).status == 400


@pytest.mark.parametrize("target", [b"//x://y", b"/a?u=http://h/", b"/http://h/x", b"//h/p"])
def test_origin_form_target_is_kept_whatever_it_holds(target: bytes) -> None:
    # Bug 2: "//x://y" was taken for absolute-form and became "//y".
    assert request_target(target) == target.decode()


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"http://h/chat?x=1", "/chat?x=1"),
        (b"HTTPS://h:8443/a%20b?q=%2F", "/a%20b?q=%2F"),
        (b"ws://[::1]:80//double//slash?a://b", "//double//slash?a://b"),
        (b"wss://127.0.0.1", "/"),
        (b"http://h?x=1", "/?x=1"),
        (b"http://h:/p", "/p"),
        (b"http://xn--bcher-kva.example/%C3%A9", "/%C3%A9"),
    ],
)
def test_absolute_form_target_keeps_path_and_query_exactly(target: bytes, expected: str) -> None:
    assert request_target(target) == expected


@pytest.mark.parametrize(
    "target", [b"-x?y=://", b"x://y", b"ftp://h/", b"file:///etc/passwd", b"1http://h/", b"h:443", b"?x=://"]
)
def test_target_neither_origin_nor_absolute_form_is_a_400(target: bytes) -> None:
    # Bug 3: any target holding "://" was accepted ("-x?y=://" as it was).
    assert target_rejection(target).status == 400


def test_asterisk_form_only_for_options() -> None:
    assert request_target(b"*", b"OPTIONS") == "*"
    for method in (b"GET", b"POST", b"CONNECT"):
        assert target_rejection(b"*", method).status == 400
    for target in (b"**", b"*/x", b"*?x"):
        assert target_rejection(target, b"OPTIONS").status == 400
    assert request_target(b"/*") == "/*"


def test_authority_form_connect_is_refused() -> None:
    # CONNECT is for proxies; the status stays 400, as for any target parse_request refuses.
    rejection = target_rejection(b"example.com:443", b"CONNECT")
    assert rejection.status == 400
    assert "CONNECT" in rejection.reason
    assert target_rejection(b"[::1]:443", b"CONNECT").status == 400


@pytest.mark.parametrize(
    "target",
    [
        b"/a\x00b\x01",
        b"/a\x00",
        b"/\x1b[2J",
        b"/a\x7fb",
        b"/a\x0bb",
        b"/a\x0cb",
        b"/x?\x01",
        b"/a#b",
        b"/\xc3\xa9",
    ],
)
def test_control_characters_in_target_are_a_400(target: bytes) -> None:
    # Bug 4: NUL and other control characters were accepted in the target.
    assert target_rejection(target).status == 400


def test_target_characters_clients_send_unescaped_are_accepted() -> None:
    # Browsers leave these as they are in a query (WHATWG URL), other clients in a path too.
    target = '/a|b^c[d]e\\f/x?q={1}&r=`a`&s="<b>"&t=%zz&u=%41&v=!$\'()*+,;=:@~'
    assert request_target(target.encode("ascii")) == target


# ------------------------------------------------------------------ URIs: hosts, paths and queries


@pytest.mark.parametrize(
    "uri",
    [
        "ws:// h/",
        "ws://h /",
        "ws://a b/",
        "ws://h\x00/",
        "ws://h\x7f/",
        "ws://h%41/",
        "ws://h%20/",
        'ws://h"/',
        "ws://h<>/",
        "ws://h{x}/",
        "ws://h\\x/",
    ],
)
def test_parse_uri_rejects_invalid_host_characters(uri: str) -> None:
    # Bug 5: "ws:// h/" gave the host " h", and the Host header " h", which the server reads as "h".
    with pytest.raises(InvalidURI):
        parse_uri(uri)


@pytest.mark.parametrize(
    "uri", ["ws://[v1.x]/", "ws://[fe80::1%25eth0]/", "ws://[1.2.3.4]/", "ws://[::1::2]/", "ws://[h]/"]
)
def test_parse_uri_rejects_invalid_ip_literals(uri: str) -> None:
    with pytest.raises(InvalidURI):
        parse_uri(uri)


@pytest.mark.parametrize(
    ("uri", "host", "host_header"),
    [
        ("ws://[::1]/", "::1", "[::1]"),
        ("ws://[::FFFF:1.2.3.4]:81/", "::ffff:1.2.3.4", "[::ffff:1.2.3.4]:81"),
        ("ws://a_b.example-1.com/", "a_b.example-1.com", "a_b.example-1.com"),
        ("ws://EXAMPLE.com/", "example.com", "example.com"),
        ("wss://10.0.0.1:8443/", "10.0.0.1", "10.0.0.1:8443"),
    ],
)
def test_parse_uri_valid_hosts(uri: str, host: str, host_header: str) -> None:
    parsed = parse_uri(uri)
    assert parsed.host == host
    assert parsed.host_header == host_header
    request = parse_built_request(build_request(parsed, KEY))
    assert request.host == host_header


def test_parse_uri_international_host_is_idna_encoded() -> None:
    # The idna codec, as the socket functions use it: the Host header names the host connected to.
    uri = parse_uri("wss://B\u00fccher.example:8443/")
    assert uri.host == "xn--bcher-kva.example"
    assert uri.host_header == "xn--bcher-kva.example:8443"
    assert parse_built_request(build_request(uri, KEY)).host == "xn--bcher-kva.example:8443"
    assert parse_uri("ws://\u4f8b\u3048.\u30c6\u30b9\u30c8/").host == "xn--r8jz45g.xn--zckzah"
    assert parse_uri("ws://xn--bcher-kva.example/").host == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    "uri",
    [
        "ws://stra\u00dfe.de/",  # IDNA 2003 gives strasse.de, IDNA 2008 (browsers) xn--strae-oqa.de
        "ws://\u03c3\u03bf\u03c6\u03af\u03b1\u03c2.gr/",  # final sigma
        "ws://a\u200db.example/",
        "ws://" + "\u00e9" * 70 + ".example/",  # a label over 63 bytes
        "ws://\u00e9..example/",  # an empty label
    ],
)
def test_parse_uri_rejects_ambiguous_or_invalid_international_hosts(uri: str) -> None:
    with pytest.raises(InvalidURI):
        parse_uri(uri)


@pytest.mark.parametrize(
    ("uri", "resource", "path"),
    [
        ("ws://h/a b", "/a%20b", "/a b"),
        ("ws://h/a b?q=c d", "/a%20b?q=c%20d", "/a b"),
        ("ws://h/\u00e9", "/%C3%A9", "/\u00e9"),
        ("ws://h/\u20ac/\U0001f600?x=\u00e9", "/%E2%82%AC/%F0%9F%98%80?x=%C3%A9", "/\u20ac/\U0001f600"),
        ("ws://h/a\x00b\x7fc", "/a%00b%7Fc", "/a\x00b\x7fc"),
        ('ws://h/"<>`{}?q="<>`{}|', "/%22%3C%3E%60%7B%7D?q=%22%3C%3E`{}|", '/"<>`{}'),
        ("ws://h/%20%zz%", "/%20%zz%", "/ %zz%"),
        ("ws://h/p%C3%A9?x=%41", "/p%C3%A9?x=%41", "/p\u00e9"),
        ("ws://h/|^[]\\!$&'()*+,;=:@~", "/|^[]\\!$&'()*+,;=:@~", "/|^[]\\!$&'()*+,;=:@~"),
    ],
)
def test_parse_uri_percent_encodes_what_a_request_line_cannot_carry(
    uri: str, resource: str, path: str
) -> None:
    # Bugs 6 and 7: "/a b" made the request line "GET /a b HTTP/1.1", which the server
    # refuses, and "/é" made build_request raise UnicodeEncodeError.
    parsed = parse_uri(uri)
    assert parsed.resource == resource
    assert parse_uri(f"ws://h{resource}").resource == resource  # encoding twice changes nothing
    data = build_request(parsed, KEY)
    assert data.startswith(f"GET {resource} HTTP/1.1\r\n".encode("ascii"))
    request = parse_built_request(data)
    assert request.target == resource
    assert request.path == path
    assert check_request(request) == KEY


def test_parse_uri_encoded_query_decodes_to_the_original() -> None:
    uri = parse_uri("ws://h/chat?room=caf\u00e9 cr\u00e8me&n=1")
    request = parse_built_request(build_request(uri, KEY))
    assert request.query == {"room": "caf\u00e9 cr\u00e8me", "n": "1"}


def test_build_request_encodes_a_hand_made_resource() -> None:
    # A WSURI made without parse_uri gets the same encoding on the wire.
    uri = WSURI(False, "h", 80, "/a b/\u00e9?q=#1")
    data = build_request(uri, KEY)
    assert data.startswith(b"GET /a%20b/%C3%A9?q=%231 HTTP/1.1\r\n")
    request = parse_built_request(data)
    assert request.path == "/a b/\u00e9"
    assert request.query == {"q": "#1"}


def test_parse_uri_rejects_lone_surrogates() -> None:
    # Not encodable as UTF-8: build_request could not send them.
    with pytest.raises(InvalidURI):
        parse_uri("ws://h/\ud800")
    with pytest.raises(InvalidURI):
        parse_uri("ws://h/?q=\udfff")
    with pytest.raises(InvalidURI):
        parse_uri("ws://\ud800:p@h/")


def test_parse_uri_user_info_with_non_ascii_still_works() -> None:
    uri = parse_uri("ws://al%C3%AFce:p\u00e4ss@h/")
    assert uri.user_info == ("al\u00efce", "p\u00e4ss")
    request = parse_built_request(build_request(uri, KEY))
    expected = "Basic " + base64.b64encode("al\u00efce:p\u00e4ss".encode()).decode()
    assert request.headers["Authorization"] == expected
