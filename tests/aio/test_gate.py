"""wsline.gate (tokens, origin checks, chain) and the server's own admission limits.

Unit tests drive the hooks with hand-built requests and an injected clock; the
rest run real servers and clients on loopback.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from typing import Any
from urllib.parse import quote

import pytest

import wsline
from conftest import HOST, OpenRaw, RawPeer, StartServer, client, eventually, ws_url
from wsline.gate import InvalidToken, TokenSigner, allow_origins, chain, require_token, same_origin
from wsline.protocol.handshake import Headers, Request, Response, reject_response

SECRET = b"0123456789abcdef-test-secret"
T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def signer(ttl: float = 60.0, clock: FakeClock | None = None, secret: bytes | str = SECRET) -> TokenSigner:
    return TokenSigner(secret, ttl, clock=clock or FakeClock())


def reason_of(signer: TokenSigner, token: Any, **kwargs: Any) -> str:
    with pytest.raises(InvalidToken) as info:
        signer.verify(token, **kwargs)
    return info.value.reason


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ---------------------------------------------------------------- TokenSigner


def test_secret_must_be_16_bytes() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        TokenSigner(b"x" * 15)
    with pytest.raises(ValueError):
        TokenSigner("")
    TokenSigner(b"x" * 16)
    TokenSigner("é" * 8)  # 16 bytes of UTF-8


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf")])
def test_ttl_must_be_positive(ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        TokenSigner(SECRET, ttl)


def test_generate_secret() -> None:
    a, b = TokenSigner.generate_secret(), TokenSigner.generate_secret()
    assert isinstance(a, str) and a != b and len(a.encode()) >= 32
    assert re.fullmatch(r"[A-Za-z0-9_-]+", a)
    s = TokenSigner(a)
    assert s.verify(s.issue("x")) == "x"
    with pytest.raises(ValueError):
        TokenSigner.generate_secret(8)


def test_repr_hides_the_secret() -> None:
    assert "0123456789" not in repr(signer()) and "ttl=60" in repr(signer())


@pytest.mark.parametrize("subject", ["", "alice", "room:42/user=7", "ünïcødé ✓", "x" * 300])
def test_issue_verify_round_trip(subject: str) -> None:
    s = signer()
    token = s.issue(subject)
    assert s.verify(token) == subject
    assert s.verify(token, subject=subject) == subject


def test_token_is_url_safe_and_compact() -> None:
    token = signer().issue("alice")
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)
    assert quote(token, safe="") == token  # no escaping needed in a query string
    assert "=" not in token
    assert len(signer().issue()) <= 60


def test_tokens_use_the_clock_and_now() -> None:
    clock = FakeClock()
    s = signer(ttl=10, clock=clock)
    token = s.issue("a")
    clock.now += 9.5
    assert s.verify(token) == "a"
    clock.now += 0.5
    assert reason_of(s, token) == "expired"
    # an explicit ``now`` overrides the clock, on both sides
    late = s.issue("b", now=T0 + 1000)
    assert s.verify(late, now=T0 + 1005) == "b"
    assert s.verify(late) == "b"  # the clock is still at T0 + 10


def test_expiry_boundary_whole_seconds() -> None:
    s = signer(ttl=60)
    token = s.issue(now=T0)  # T0 is a whole second: expires at T0 + 60
    assert s.verify(token, now=T0 + 59.999) == ""
    assert reason_of(s, token, now=T0 + 60) == "expired"
    assert reason_of(s, token, now=T0 + 61) == "expired"


def test_expiry_rounds_up() -> None:
    s = signer(ttl=60)
    token = s.issue(now=T0 + 0.5)  # valid for at least ttl: until T0 + 61
    assert s.verify(token, now=T0 + 60.5) == ""
    assert s.verify(token, now=T0 + 60.999) == ""
    assert reason_of(s, token, now=T0 + 61) == "expired"


def test_fractional_ttl() -> None:
    s = signer(ttl=0.25)
    token = s.issue(now=T0)
    assert s.verify(token, now=T0 + 0.2) == ""
    assert reason_of(s, token, now=T0 + 1) == "expired"


def test_tokens_issued_in_the_future_expire_ttl_after_their_issue() -> None:
    s = signer(ttl=5)
    token = s.issue(now=T0 + 100)
    assert s.verify(token, now=T0) == ""  # no "not before": only the expiry is checked
    assert reason_of(s, token, now=T0 + 105) == "expired"


def test_issue_rejects_bad_inputs() -> None:
    s = signer()
    with pytest.raises(TypeError):
        s.issue(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        s.issue(now=-1e9)
    with pytest.raises(ValueError):
        s.issue(now=1e30)


def test_wrong_subject() -> None:
    s = signer()
    token = s.issue("alice")
    assert reason_of(s, token, subject="bob") == "wrong subject"
    assert reason_of(s, token, subject="") == "wrong subject"
    assert reason_of(s, token, subject="alice ") == "wrong subject"
    assert reason_of(s, s.issue(""), subject="alice") == "wrong subject"
    assert reason_of(s, token, subject="\udcff") == "wrong subject"


def test_wrong_secret() -> None:
    token = signer().issue("alice")
    assert reason_of(signer(secret=b"another-secret-of-16+bytes"), token) == "bad signature"


def test_tampered_payload_with_another_subject() -> None:
    s = signer()
    payload, sig = s.issue("alice").split(".")
    raw = unb64(payload)
    forged = b64(raw[:9] + b"admin") + "." + sig
    assert reason_of(s, forged) == "bad signature"


def test_tampered_expiry() -> None:
    s = signer()
    payload, sig = s.issue("alice", now=T0).split(".")
    raw = bytearray(unb64(payload))
    raw[8] += 100  # the last byte of the expiry: 100 s later
    assert reason_of(s, b64(bytes(raw)) + "." + sig, now=T0 + 120) == "bad signature"


def test_swapped_signature() -> None:
    s = signer()
    a, b = s.issue("alice"), s.issue("bob")
    assert reason_of(s, a.split(".")[0] + "." + b.split(".")[1]) == "bad signature"
    # a truncated or extended signature
    payload, sig = a.split(".")
    assert reason_of(s, payload + "." + sig[:-2]) in ("bad signature", "malformed")
    assert reason_of(s, payload + "." + sig + "AA") in ("bad signature", "malformed")
    assert reason_of(s, payload + "." + b64(unb64(sig) + b"\0")) == "bad signature"


def test_every_single_character_change_is_refused() -> None:
    s = signer()
    token = s.issue("alice")
    alphabet = "ABCabc019_-.=+/ "
    for i, ch in enumerate(token):
        for repl in alphabet:
            if repl == ch:
                continue
            forged = token[:i] + repl + token[i + 1 :]
            assert reason_of(s, forged) in ("malformed", "bad signature"), (i, repl)


def test_expired_and_forged_reports_the_signature() -> None:
    s = signer()
    payload, _ = s.issue("alice", now=T0 - 1000).split(".")
    forged = payload + "." + b64(bytes(32))
    assert reason_of(s, forged) == "bad signature"


@pytest.mark.parametrize(
    "token",
    [
        "",
        ".",
        "abc",
        "abc.",
        ".abc",
        "a.b.c",
        "a..b",
        "a b.cd",
        "abcd.ef gh",
        "====.====",
        "abc=.def",
        "a+b/.cd",
        "é.é",
        "\x00.\x00",
        "x" * 10_000,
        "A.A",  # one base64 character cannot encode anything
    ],
)
def test_malformed_strings(token: str) -> None:
    assert reason_of(signer(), token) == "malformed"


@pytest.mark.parametrize("token", [None, 123, b"abc.def", ["a", "b"], object()])
def test_malformed_types(token: Any) -> None:
    assert reason_of(signer(), token) == "malformed"


def test_padding_or_whitespace_around_a_good_token_is_malformed() -> None:
    s = signer()
    token = s.issue("al")  # lengths that would need padding
    payload, sig = token.split(".")
    assert reason_of(s, payload + "." + sig + "=") == "malformed"
    assert reason_of(s, " " + token) == "malformed"
    assert reason_of(s, token + "\n") == "malformed"


def test_non_canonical_base64_is_malformed() -> None:
    s = signer()
    payload, sig = s.issue("alice").split(".")
    # 32 bytes -> 43 characters: the last one carries 2 unused bits; set them.
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(sig[-1])
    if last & 3 == 0:
        variant = sig[:-1] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last | 1]
        assert unb64(variant) == unb64(sig)  # the same bytes...
        assert reason_of(s, payload + "." + variant) == "malformed"  # ...but not the same token


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x01",
        b"\x01" + bytes(7),  # shorter than version + expiry
        b"\x02" + (2**40).to_bytes(8, "big"),  # unknown version
        b"\x01" + (2**40).to_bytes(8, "big") + b"\xff\xfe",  # subject not UTF-8
    ],
)
def test_signed_but_malformed_payloads(raw: bytes) -> None:
    s = signer()
    payload = b64(raw) or "AA"
    token = payload + "." + b64(s._sign(payload))
    assert reason_of(s, token) == "malformed"


def test_invalid_token_is_a_websocket_error() -> None:
    exc = InvalidToken("expired")
    assert isinstance(exc, wsline.WebSocketError)
    assert str(exc) == "invalid token: expired" and exc.reason == "expired"


# ------------------------------------------------------------ hooks, no sockets


def make_request(
    target: str = "/", headers: list[tuple[str, str]] | None = None, *, upgrade: bool = True
) -> Request:
    items = [("Host", "example.com")]
    if upgrade:
        items += [("Upgrade", "websocket"), ("Connection", "Upgrade")]
    return Request("GET", target, Headers(items + (headers or [])))


def assert_forbidden(response: Response | None, text: str) -> None:
    assert response is not None
    assert response.status == 403
    assert text in response.body.decode()
    assert response.headers.get("Connection") == "close"


def test_require_token_hook() -> None:
    clock = FakeClock()
    s = signer(ttl=30, clock=clock)
    hook = require_token(s)
    token = s.issue("alice")
    assert hook(make_request(f"/chat?token={token}")) is None
    assert hook(make_request(f"/chat?room=1&token={token}&x=")) is None
    assert_forbidden(hook(make_request("/chat")), "missing token")
    assert_forbidden(hook(make_request("/chat?token=")), "missing token")
    assert_forbidden(hook(make_request("/chat?token=garbage")), "malformed")
    assert_forbidden(hook(make_request(f"/chat?token={token[:-1]}")), "invalid token")
    clock.now += 30
    assert_forbidden(hook(make_request(f"/chat?token={token}")), "expired")
    # plain HTTP requests are not the hook's business
    assert hook(make_request("/index.html", upgrade=False)) is None


def test_require_token_custom_param_and_percent_encoding() -> None:
    s = signer()
    hook = require_token(s, param="auth")
    token = s.issue("bob")
    assert hook(make_request(f"/?auth={quote(token)}")) is None
    assert hook(make_request(f"/?auth={token.replace('-', '%2D')}")) is None
    assert_forbidden(hook(make_request(f"/?token={token}")), "missing token")


@pytest.mark.parametrize(
    ("origin", "admitted"),
    [
        ("https://example.com", True),
        ("HTTPS://EXAMPLE.COM", True),
        ("https://example.com:443", True),
        ("https://example.com/", True),
        ("http://example.com", False),
        ("https://example.com:8443", False),
        ("https://evil.example.com", False),
        ("https://example.com.evil.net", False),
        ("http://localhost:8000", True),
        ("http://LOCALHOST:8000", True),
        ("http://localhost", False),
        ("http://localhost:8001", False),
        ("http://[::1]:8000", True),
        ("http://[::1]", False),
        ("null", False),
        ("", False),
        ("example.com", False),
        ("https://example.com/path", False),
        ("https://user@example.com", False),
        ("https://example.com?x", False),
        ("https://example.com:99999", False),
    ],
)
def test_allow_origins_matching(origin: str, admitted: bool) -> None:
    hook = allow_origins(["https://Example.com:443", "http://localhost:8000", "http://[::1]:8000"])
    response = hook(make_request(headers=[("Origin", origin)]))
    if admitted:
        assert response is None
    else:
        assert_forbidden(response, "origin")


def test_allow_origins_missing_and_repeated_origin() -> None:
    strict = allow_origins(["https://example.com"])
    lenient = allow_origins(["https://example.com"], allow_missing=True)
    assert_forbidden(strict(make_request()), "missing Origin")
    assert lenient(make_request()) is None
    twice = [("Origin", "https://example.com"), ("Origin", "https://evil.example")]
    assert_forbidden(strict(make_request(headers=twice)), "more than one Origin")
    assert_forbidden(lenient(make_request(headers=twice)), "more than one Origin")
    assert strict(make_request(upgrade=False)) is None  # page loads send no Origin


def test_allow_origins_accepts_a_single_string_and_idn() -> None:
    assert (
        allow_origins("https://example.com")(make_request(headers=[("Origin", "https://example.com")]))
        is None
    )
    hook = allow_origins(["https://bücher.de"])
    assert hook(make_request(headers=[("Origin", "https://xn--bcher-kva.de")])) is None


@pytest.mark.parametrize(
    "bad", ["null", "example.com", "https://example.com/app", "https://", "*", "https://a.com:x", ""]
)
def test_allow_origins_refuses_bad_configuration(bad: str) -> None:
    with pytest.raises(ValueError):
        allow_origins(["https://ok.example", bad])


@pytest.mark.parametrize(
    ("origin", "host", "admitted"),
    [
        ("http://example.com", "example.com", True),
        ("https://example.com", "example.com", True),  # TLS terminated by a proxy
        ("https://EXAMPLE.com", "Example.COM", True),
        ("http://example.com:80", "example.com", True),
        ("http://example.com", "example.com:80", True),
        ("https://example.com", "example.com:443", True),
        ("http://example.com:8000", "example.com:8000", True),
        ("https://example.com:8000", "example.com:8000", True),
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
        ("http://[::1]:8000", "[::1]:8000", True),
        ("http://example.com:8000", "example.com", False),
        ("http://example.com", "example.com:8000", False),
        ("https://example.com", "example.com:80", False),
        ("http://example.com:8001", "example.com:8000", False),
        ("http://evil.example", "example.com", False),
        ("http://example.com.evil.net", "example.com", False),
        ("http://sub.example.com", "example.com", False),
        ("ws://example.com", "example.com", False),
        ("file://example.com", "example.com", False),
        ("null", "example.com", False),
        ("http://example.com", "", False),
        ("http://example.com", "example.com:xyz", False),
        ("http://example.com", "user@example.com", False),
    ],
)
def test_same_origin_matching(origin: str, host: str, admitted: bool) -> None:
    request = Request("GET", "/", Headers([("Host", host), ("Upgrade", "websocket"), ("Origin", origin)]))
    response = same_origin()(request)
    if admitted:
        assert response is None
    else:
        assert_forbidden(response, "cross-origin" if origin != "null" else "")


def test_same_origin_missing_origin_and_plain_http() -> None:
    assert_forbidden(same_origin()(make_request()), "missing Origin")
    assert same_origin(allow_missing=True)(make_request()) is None
    assert same_origin()(make_request(upgrade=False)) is None
    two_hosts = Request(
        "GET",
        "/",
        Headers(
            [
                ("Host", "example.com"),
                ("Host", "evil.example"),
                ("Upgrade", "websocket"),
                ("Origin", "http://example.com"),
            ]
        ),
    )
    assert_forbidden(same_origin()(two_hosts), "cross-origin")


@pytest.mark.asyncio
async def test_chain_runs_in_order_and_first_response_wins() -> None:
    calls: list[str] = []

    def first(request: Request) -> Response | None:
        calls.append("first")
        return None

    async def second(request: Request) -> Response | None:
        calls.append("second")
        await asyncio.sleep(0)
        return reject_response(401, "second says no\n") if "deny" in request.target else None

    def third(request: Request) -> Response | None:
        calls.append("third")
        return reject_response(403, "third says no\n")

    hook = chain(first, second, third)
    response = await hook(make_request("/deny"))
    assert response is not None and response.status == 401 and calls == ["first", "second"]
    calls.clear()
    response = await hook(make_request("/ok"))
    assert response is not None and response.status == 403 and calls == ["first", "second", "third"]
    calls.clear()
    assert await chain(first, second)(make_request("/ok")) is None
    assert calls == ["first", "second"]
    assert await chain()(make_request()) is None


@pytest.mark.asyncio
async def test_chain_checks_its_hooks() -> None:
    with pytest.raises(TypeError):
        chain(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a Response"):
        await chain(lambda request: "nope")(make_request())  # type: ignore[arg-type,return-value]


@pytest.mark.asyncio
async def test_chain_propagates_hook_errors() -> None:
    def broken(request: Request) -> Response | None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await chain(broken)(make_request())


# --------------------------------------------------------------- real sockets


async def expect_status(url: str, status: int, **kwargs: Any) -> wsline.InvalidStatus:
    with pytest.raises(wsline.InvalidStatus) as info:
        async with client(url, **kwargs):
            pass
    assert info.value.status == status, info.value
    return info.value


async def expect_open(url: str, **kwargs: Any) -> None:
    async with client(url, **kwargs) as ws:
        await ws.send("ping")
        assert await asyncio.wait_for(ws.recv(), 2) == "ping"


@pytest.mark.asyncio
async def test_token_over_sockets(start_server: StartServer) -> None:
    s = TokenSigner(SECRET, ttl=30)
    server = await start_server(process_request=require_token(s))
    await expect_open(ws_url(server, f"/?token={s.issue('alice')}"))
    expired = s.issue("alice", now=time.time() - 60)
    exc = await expect_status(ws_url(server, f"/?token={expired}"), 403)
    assert b"expired" in exc.body
    token = s.issue("alice")
    tampered = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    exc = await expect_status(ws_url(server, f"/?token={tampered}"), 403)
    assert b"invalid token" in exc.body
    exc = await expect_status(ws_url(server, "/"), 403)
    assert b"missing token" in exc.body
    other = TokenSigner(b"a-different-secret-here", ttl=30)
    await expect_status(ws_url(server, f"/?token={other.issue('alice')}"), 403)
    # The server stays healthy after refusals.
    await expect_open(ws_url(server, f"/?token={s.issue('bob')}"))
    assert server.errors.get_nowait() is None


@pytest.mark.asyncio
async def test_handler_can_read_the_subject(start_server: StartServer) -> None:
    s = TokenSigner(SECRET, ttl=30)

    async def whoami(ws: wsline.WebSocket) -> None:
        await ws.send(s.verify(ws.request.query["token"]))

    server = await start_server(whoami, process_request=require_token(s))
    async with client(ws_url(server, f"/?token={s.issue('carol')}")) as ws:
        assert await asyncio.wait_for(ws.recv(), 2) == "carol"


@pytest.mark.asyncio
async def test_allow_origins_over_sockets(start_server: StartServer) -> None:
    server = await start_server(process_request=allow_origins(["http://good.example"]))
    url = ws_url(server)
    exc = await expect_status(url, 403, origin="http://evil.example")
    assert b"origin not allowed" in exc.body
    await expect_open(url, origin="http://good.example")
    await expect_open(url, origin="HTTP://Good.Example:80")
    await expect_status(url, 403)  # no Origin
    lenient = await start_server(process_request=allow_origins(["http://good.example"], allow_missing=True))
    await expect_open(ws_url(lenient))
    await expect_status(ws_url(lenient), 403, origin="http://evil.example")


@pytest.mark.asyncio
async def test_same_origin_over_sockets(start_server: StartServer) -> None:
    server = await start_server(process_request=same_origin())
    url = ws_url(server)
    port = server.port
    exc = await expect_status(url, 403, origin="http://evil.example")
    assert b"cross-origin" in exc.body
    await expect_status(url, 403, origin=f"http://evil.example:{port}")
    await expect_status(url, 403, origin=f"http://{HOST}:{port + 1 if port < 65535 else port - 1}")
    await expect_status(url, 403, origin=f"http://{HOST}")
    await expect_status(url, 403)  # no Origin
    await expect_open(url, origin=f"http://{HOST}:{port}")
    await expect_open(url, origin=f"https://{HOST}:{port}")


@pytest.mark.asyncio
async def test_same_origin_lets_the_page_load(start_server: StartServer, raw_client: OpenRaw) -> None:
    """The chat example's setup: the page and the WebSocket on one port, same_origin() in front."""

    def page(request: Request) -> Response:
        return Response(200, headers=Headers([("Content-Type", "text/html")]), body=b"<h1>chat</h1>")

    server = await start_server(process_request=same_origin(), http_handler=page)
    peer = await raw_client(server.port)
    await peer.send(f"GET / HTTP/1.1\r\nHost: {HOST}:{server.port}\r\n\r\n".encode())
    response = await peer.read_response()
    assert response.status == 200 and response.body == b"<h1>chat</h1>"
    await expect_open(ws_url(server), origin=f"http://{HOST}:{server.port}")
    await expect_status(ws_url(server), 403, origin="http://evil.example")


@pytest.mark.asyncio
async def test_chain_over_sockets(start_server: StartServer) -> None:
    s = TokenSigner(SECRET, ttl=30)
    seen: list[str] = []

    async def record(request: Request) -> None:
        seen.append(request.path)

    server = await start_server(process_request=chain(record, same_origin(), require_token(s)))
    good_origin = f"http://{HOST}:{server.port}"
    token = s.issue()
    exc = await expect_status(ws_url(server, f"/a?token={token}"), 403, origin="http://evil.example")
    assert b"cross-origin" in exc.body  # the origin check runs first
    exc = await expect_status(ws_url(server, "/b?token=bad"), 403, origin=good_origin)
    assert b"invalid token" in exc.body
    await expect_open(ws_url(server, f"/c?token={token}"), origin=good_origin)
    assert seen == ["/a", "/b", "/c"]


@pytest.mark.asyncio
async def test_failing_hook_does_not_kill_the_server(start_server: StartServer) -> None:
    def broken(request: Request) -> Response | None:
        if request.path == "/boom":
            raise RuntimeError("hook bug")
        return None

    server = await start_server(process_request=chain(broken))
    with pytest.raises((wsline.InvalidHandshake, OSError)):
        async with client(ws_url(server, "/boom"), open_timeout=1):
            pass
    await expect_open(ws_url(server, "/fine"))
    item = server.errors.get_nowait()
    assert item is not None and isinstance(item.error, RuntimeError)


@pytest.mark.asyncio
async def test_failing_hook_answers_500(start_server: StartServer) -> None:
    def broken(request: Request) -> Response | None:
        raise RuntimeError("hook bug")

    server = await start_server(process_request=broken)
    await expect_status(ws_url(server), 500)


# ------------------------------------------------- the server's own limits


@pytest.mark.asyncio
async def test_max_connections_per_client(start_server: StartServer) -> None:
    server = await start_server(max_connections_per_client=2)
    url = ws_url(server)
    first = await client(url)
    second = await client(url)
    try:
        exc = await expect_status(url, 429)
        assert b"too many connections" in exc.body
        await first.close()
        # The slot frees once the server sees the TCP connection end.
        deadline = time.monotonic() + 2
        while True:
            try:
                third = await client(url)
                break
            except wsline.InvalidStatus as exc:
                assert exc.status == 429
                assert time.monotonic() < deadline, "the closed connection's slot was never freed"
                await asyncio.sleep(0.02)
        assert third.open
        await third.send("still echoing")
        assert await asyncio.wait_for(third.recv(), 2) == "still echoing"
        # A refused connection did not take a slot, and the limit still holds.
        await expect_status(url, 429)
        await third.close()
    finally:
        await first.close()
        await second.close()


@pytest.mark.asyncio
async def test_max_connections_counts_handshakes_in_progress(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    server = await start_server(max_connections_per_client=2)
    idle = [await raw_client(server.port), await raw_client(server.port)]  # connected, nothing sent
    await eventually(lambda: len(server._protocols) == 2, what="the server accepted both connections")
    await expect_status(ws_url(server), 429)
    for peer in idle:
        peer.abort()
    deadline = time.monotonic() + 2
    while True:
        try:
            await expect_open(ws_url(server))
            break
        except wsline.InvalidStatus as exc:
            assert exc.status == 429
            assert time.monotonic() < deadline, "the aborted connections' slots were never freed"
            await asyncio.sleep(0.02)


async def read_until_closed(peer: RawPeer, timeout: float) -> bytes:
    try:
        return await peer.read_eof(timeout)
    except (ConnectionResetError, BrokenPipeError):
        return b""


@pytest.mark.asyncio
async def test_open_timeout_stops_a_partial_request(start_server: StartServer, raw_client: OpenRaw) -> None:
    server = await start_server(open_timeout=0.3)
    peer = await raw_client(server.port)
    started = time.monotonic()
    await peer.send(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\n".encode())
    data = await read_until_closed(peer, 2.0)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, elapsed
    assert elapsed >= 0.25, elapsed
    assert data == b"" or data.startswith(b"HTTP/1.1 408 "), data


@pytest.mark.asyncio
async def test_open_timeout_stops_a_slowloris(start_server: StartServer, raw_client: OpenRaw) -> None:
    """Dribbling a byte at a time does not extend the deadline."""
    server = await start_server(open_timeout=0.3)
    peer = await raw_client(server.port)
    started = time.monotonic()
    request = f"GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: {'a' * 100}".encode()

    async def dribble() -> None:
        for i in range(len(request)):
            await peer.send(request[i : i + 1])
            await asyncio.sleep(0.05)

    task = asyncio.create_task(dribble())
    try:
        data = await read_until_closed(peer, 2.0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, elapsed
    assert data == b"" or data.startswith(b"HTTP/1.1 408 "), data


@pytest.mark.asyncio
async def test_open_timeout_idle_connection(start_server: StartServer, raw_client: OpenRaw) -> None:
    server = await start_server(open_timeout=0.3)
    peer = await raw_client(server.port)
    started = time.monotonic()
    data = await read_until_closed(peer, 2.0)
    assert time.monotonic() - started < 1.0
    assert data == b"" or data.startswith(b"HTTP/1.1 408 "), data


@pytest.mark.asyncio
async def test_max_header_size(start_server: StartServer) -> None:
    server = await start_server(max_header_size=1024)
    url = ws_url(server)
    exc = await expect_status(url, 431, headers={"X-Big": "a" * 4096})
    assert b"larger than 1024" in exc.body
    await expect_status(url, 431, headers=[(f"X-H{i}", "b" * 60) for i in range(64)])
    await expect_open(url, headers={"X-Small": "a" * 200})


@pytest.mark.asyncio
async def test_max_header_size_raw(start_server: StartServer, raw_client: OpenRaw) -> None:
    server = await start_server(max_header_size=1024)
    peer = await raw_client(server.port)
    head = (
        f"GET / HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"X-Big: {'a' * 4096}\r\n\r\n"
    )
    await peer.send(head.encode())
    response = await peer.read_response()
    assert response.status == 431
    assert response.get("Connection") == "close"
    assert await read_until_closed(peer, 2.0) == b""
