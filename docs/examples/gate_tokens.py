"""Where a token can travel, checked before the handshake is answered.

Starts a server for each of the three places (the query string, the
Sec-WebSocket-Protocol header, a cookie), tries a client with and without a
token, prints what happened, and exits.

    python gate_tokens.py
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any

import wsline
from wsline.gate import InvalidToken, TokenSigner, chain, require_token, same_origin
from wsline.http import text_response

Hook = Callable[[wsline.Request], "wsline.Response | None"]

# Every process that verifies tokens needs the same secret: in a real
# deployment it comes from the environment or a secrets store.
signer = TokenSigner(TokenSigner.generate_secret(), ttl=60)


# -- 1. the query string: ws://host/chat?token=... (wsline.gate.require_token)


# -- 2. the Sec-WebSocket-Protocol header, next to the real subprotocol
#       (browsers: new WebSocket(url, ["chat.v1", "token." + token]))

TOKEN_PREFIX = "token."


def token_in_subprotocol(signer: TokenSigner) -> Hook:
    def check(request: wsline.Request) -> wsline.Response | None:
        if not request.is_upgrade:
            return None
        tokens = [p[len(TOKEN_PREFIX) :] for p in request.subprotocols if p.startswith(TOKEN_PREFIX)]
        if len(tokens) != 1:
            return text_response("missing token\n", 403)
        try:
            signer.verify(tokens[0])
        except InvalidToken as exc:
            return text_response(f"{exc}\n", 403)
        return None

    return check


# -- 3. a cookie (set by the page's HTTP response); browsers send cookies with
#       cross-site requests too, so the origin must be checked as well


def token_in_cookie(signer: TokenSigner, name: str = "session") -> Hook:
    def check(request: wsline.Request) -> wsline.Response | None:
        if not request.is_upgrade:
            return None
        morsel = SimpleCookie(request.headers.get("Cookie") or "").get(name)
        if morsel is None:
            return text_response("missing token\n", 403)
        try:
            signer.verify(morsel.value)
        except InvalidToken as exc:
            return text_response(f"{exc}\n", 403)
        return None

    return check


async def greet(ws: wsline.WebSocket) -> None:
    await ws.send(f"welcome (subprotocol: {ws.subprotocol})")


async def attempt(label: str, uri: str, **options: Any) -> None:
    try:
        async with wsline.connect(uri, **options) as ws:
            print(f"  {label}: accepted, {await ws.recv(timeout=5)}")
    except wsline.InvalidStatus as exc:
        print(f"  {label}: refused, {exc.status} {exc.body.decode().strip()}")


async def main() -> None:
    token = signer.issue("alice")

    print("query string")
    async with wsline.serve(greet, "127.0.0.1", 0, process_request=require_token(signer)) as server:
        uri = f"ws://127.0.0.1:{server.port}/chat"
        await attempt("with a token", f"{uri}?token={token}")
        await attempt("without", uri)

    print("Sec-WebSocket-Protocol")
    hook = token_in_subprotocol(signer)
    async with wsline.serve(greet, "127.0.0.1", 0, subprotocols=["chat.v1"], process_request=hook) as server:
        uri = f"ws://127.0.0.1:{server.port}/chat"
        await attempt("with a token", uri, subprotocols=["chat.v1", TOKEN_PREFIX + token])
        await attempt("without", uri, subprotocols=["chat.v1"])

    print("cookie")
    hook = chain(same_origin(), token_in_cookie(signer))  # both, in this order
    async with wsline.serve(greet, "127.0.0.1", 0, process_request=hook) as server:
        uri = f"ws://127.0.0.1:{server.port}/chat"
        page = f"http://127.0.0.1:{server.port}"
        cookie = {"Cookie": f"session={token}"}
        await attempt("with a token, from the page", uri, headers=cookie, origin=page)
        await attempt("with a token, from another site", uri, headers=cookie, origin="https://elsewhere.example")
        await attempt("without", uri, origin=page)


if __name__ == "__main__":
    asyncio.run(main())
