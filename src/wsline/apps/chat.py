"""The chat demo: ``python -m wsline chat [--host H] [--port P]``.

One server on one port: the page at ``/`` and its WebSocket at ``/ws``.

The protocol is JSON text messages. The client sends::

    {"type": "join", "name": "alice"}        # once, first; refused names may be retried
    {"type": "message", "text": "hello"}     # after joining

and the server sends::

    {"type": "welcome", "name": "alice", "members": ["bob", "alice"]}   # to the joiner
    {"type": "joined", "name": "alice", "members": [...]}                # to everyone
    {"type": "message", "name": "alice", "text": "hello"}                # to everyone
    {"type": "left", "name": "alice", "members": [...]}                  # to everyone
    {"type": "error", "code": "name_taken", "message": "..."}            # to one client

Error codes: ``name_taken``, ``name_invalid``, ``not_joined``,
``already_joined``, ``bad_message``, ``text_invalid``.

Who is in the chat and how events reach them is the :class:`Hub`'s business;
:class:`LocalHub` keeps the members of this process in a dict. :class:`RoomHub`
puts the chat in a room of a :class:`wsline.hub.Hub`, or of a
:class:`wsline.hub.RedisHub` shared between processes (``--redis URL``,
``--workers N``).

By default upgrade requests must come from the page's own origin (a foreign
``Origin`` gets 403 at the handshake); requests without ``Origin`` (command
line clients) are let through.

The page (``static/chat.html``) reconnects by itself when its connection
drops (waiting 1, 2, 3, 5 ... 30 s, and saying so), joins again under the
same name (retrying while the server still holds the name for the lost
connection), and stops its fields at :data:`MAX_NAME_LENGTH` and
:data:`MAX_TEXT_LENGTH`, with a counter near the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import unicodedata
from importlib import resources
from typing import Any, Callable, Protocol

from ..aio.connection import WebSocket
from ..aio.router import Router, html_response
from ..aio.server import Server, _Serve, serve
from ..gate import same_origin
from ..hub import Hub as RoomsHub
from ..protocol.handshake import Request, Response
from .runner import (
    Status,
    SubParsers,
    add_worker_arguments,
    catch_signals,
    port_number,
    redacted_url,
    run_command,
    url_host,
)

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_TEXT_LENGTH",
    "ChatApp",
    "Hub",
    "LocalHub",
    "RoomHub",
    "Member",
    "add_arguments",
    "add_parser",
    "chat_page",
    "check_origin",
    "run",
    "serve_chat",
]

logger = logging.getLogger("wsline.chat")

#: Longest name, in characters.
MAX_NAME_LENGTH = 24
#: Longest chat message, in characters.
MAX_TEXT_LENGTH = 2000
#: A member whose socket does not take a message within this many seconds is dropped.
SEND_TIMEOUT = 5.0
#: Largest incoming WebSocket message the chat server accepts (bytes).
MAX_MESSAGE_SIZE = 64 * 1024

Event = dict[str, Any]


# ------------------------------------------------------------------ members and hubs


class Member:
    """One joined connection: a name and a way to deliver events to it."""

    def __init__(self, ws: WebSocket, name: str) -> None:
        self.ws = ws
        self.name = name
        #: The key names are compared by ("Alice" and "alice" are the same name).
        self.key = name_key(name)

    async def deliver(self, text: str) -> bool:
        """Send ``text``; ``False`` if the connection is gone or too slow (then it is dropped)."""
        try:
            return await asyncio.wait_for(self.ws.send_guarded(text), SEND_TIMEOUT)
        except asyncio.TimeoutError:
            self.ws.logger.info("chat: %r is not reading; dropping the connection", self.name)
            self.ws.abort()
            return False

    def __repr__(self) -> str:
        return f"Member({self.name!r}, {self.ws.id})"


class Hub(Protocol):
    """Who is in the chat, and delivery of events to all of them.

    Implementations must make :meth:`join` atomic: of two members joining with
    the same name at once, one gets ``None``.
    """

    async def join(self, member: Member) -> list[str] | None:
        """Add ``member``: the member names afterwards, or ``None`` if the name is taken."""
        ...

    async def leave(self, member: Member) -> list[str]:
        """Remove ``member`` (if it is still in): the member names afterwards."""
        ...

    async def publish(self, event: Event) -> None:
        """Deliver ``event`` to every member. Must not raise because a member is gone."""
        ...


class LocalHub:
    """The members of this process, by name; events go to them concurrently.

    One dead or slow connection never holds up the others: every delivery is
    guarded (:meth:`Member.deliver`) and they all run at once.
    """

    def __init__(self) -> None:
        self._members: dict[str, Member] = {}

    def names(self) -> list[str]:
        """The member names, in the order they joined."""
        return [member.name for member in self._members.values()]

    async def join(self, member: Member) -> list[str] | None:
        if member.key in self._members:
            return None
        self._members[member.key] = member
        return self.names()

    async def leave(self, member: Member) -> list[str]:
        if self._members.get(member.key) is member:
            del self._members[member.key]
        return self.names()

    async def publish(self, event: Event) -> None:
        text = encode(event)
        members = list(self._members.values())
        if members:
            await asyncio.gather(*(member.deliver(text) for member in members))


class RoomHub:
    """The chat in room ``room`` of a :mod:`wsline.hub` hub (in process, or over Redis).

    Events reach the members of every process sharing the hub, framed once
    (:func:`wsline.broadcast.broadcast`). Names are unique, and the member
    lists in events are kept, per process: two processes may each have an
    "alice", and each lists its own members.
    """

    def __init__(self, hub: RoomsHub, room: str = "chat") -> None:
        self.hub = hub
        self.room = room
        self._local = LocalHub()

    async def join(self, member: Member) -> list[str] | None:
        names = await self._local.join(member)
        if names is not None:
            await self.hub.join(self.room, member.ws)
        return names

    async def leave(self, member: Member) -> list[str]:
        await self.hub.leave(self.room, member.ws)
        return await self._local.leave(member)

    async def publish(self, event: Event) -> None:
        await self.hub.publish(self.room, encode(event))


# ------------------------------------------------------------------ validation


def name_key(name: str) -> str:
    """The form names are compared in: NFKC, case-folded."""
    return unicodedata.normalize("NFKC", name).casefold()


#: Not allowed in names: controls, and invisible format characters (zero-width
#: spaces, bidi overrides) that would let two names look alike.
_NAME_BANNED = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
#: Not allowed in messages: controls other than newline and tab. (Format
#: characters stay: emoji sequences need the zero-width joiner.)
_TEXT_BANNED = frozenset({"Cc", "Cs"})


def _has_banned(text: str, banned: frozenset[str], allowed: str = "") -> bool:
    return any(ch not in allowed and unicodedata.category(ch) in banned for ch in text)


def check_name(value: object) -> str | Event:
    """The cleaned-up name, or the error event to answer with."""
    if not isinstance(value, str):
        return error_event("name_invalid", "Choose a name.")
    name = " ".join(value.split())  # trim, and no runs of spaces
    if not name:
        return error_event("name_invalid", "Choose a name.")
    if len(name) > MAX_NAME_LENGTH:
        return error_event("name_invalid", f"That name is too long (at most {MAX_NAME_LENGTH} characters).")
    if _has_banned(name, _NAME_BANNED):
        return error_event("name_invalid", "That name contains characters that are not allowed.")
    return name


def check_text(value: object) -> str | Event:
    """The message text, or the error event to answer with."""
    if not isinstance(value, str) or not value.strip():
        return error_event("text_invalid", "Empty messages are not sent.")
    if len(value) > MAX_TEXT_LENGTH:
        return error_event(
            "text_invalid", f"That message is too long (at most {MAX_TEXT_LENGTH} characters)."
        )
    if _has_banned(value, _TEXT_BANNED, allowed="\n\t"):
        return error_event("text_invalid", "That message contains characters that are not allowed.")
    return value


def error_event(code: str, message: str) -> Event:
    return {"type": "error", "code": code, "message": message}


def encode(event: Event) -> str:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def decode(message: str | bytes) -> Event | None:
    """A client message as a dict with a string ``type``, or ``None`` if it is not one."""
    if not isinstance(message, str):
        return None
    try:
        event = json.loads(message)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        return None
    return event


# ------------------------------------------------------------------ the app


def chat_page() -> bytes:
    """The chat page (``wsline/apps/static/chat.html``), with the server's limits filled in.

    The page's fields stop at :data:`MAX_NAME_LENGTH` and :data:`MAX_TEXT_LENGTH`
    (``maxlength="%MAX_TEXT_LENGTH%"`` in the file) and it says so when one is reached.
    """
    page = resources.files("wsline.apps").joinpath("static").joinpath("chat.html").read_text("utf-8")
    for name, value in (("MAX_NAME_LENGTH", MAX_NAME_LENGTH), ("MAX_TEXT_LENGTH", MAX_TEXT_LENGTH)):
        page = page.replace(f"%{name}%", str(value))
    return page.encode("utf-8")


#: Headers of the page: no resources from anywhere else, no framing by other sites.
PAGE_HEADERS = [
    ("Cache-Control", "no-cache"),
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
]


class ChatApp:
    """The chat: a page at ``/`` and the WebSocket endpoint at ``/ws``.

    ``hub`` holds the members (a new :class:`LocalHub` by default).
    """

    def __init__(self, hub: Hub | None = None) -> None:
        self.hub: Hub = hub if hub is not None else LocalHub()
        self._page = chat_page()

    def router(self) -> Router:
        """A :class:`~wsline.http.Router` with the page and the WebSocket route."""
        router = Router()
        router.get("/")(self.page)
        router.get("/index.html")(self.page)
        router.websocket("/ws")(self.handle)
        return router

    def page(self, request: Request) -> Response:
        return html_response(self._page, headers=PAGE_HEADERS)

    async def handle(self, ws: WebSocket) -> None:
        """One connection: choose a name, then chat until the connection closes."""
        while True:
            name = await self._ask_name(ws)
            if name is None:
                return
            member = Member(ws, name)
            members = await self.hub.join(member)
            if members is not None:
                break
            await ws.send_guarded(
                encode(error_event("name_taken", f"The name “{name}” is taken; choose another."))
            )
        # From here on the member is in the hub: whatever happens, it leaves.
        try:
            logger.info("%s joined from %s (%d members)", name, ws.remote_address, len(members))
            await member.deliver(encode({"type": "welcome", "name": name, "members": members}))
            await self.hub.publish({"type": "joined", "name": name, "members": members})
            await self._chat(ws, member)
        finally:
            members = await self.hub.leave(member)
            logger.info("%s left (%d members)", name, len(members))
            await self.hub.publish({"type": "left", "name": name, "members": members})

    async def _ask_name(self, ws: WebSocket) -> str | None:
        """Read messages until a valid join request (its name) or the end of the connection (None)."""
        while True:
            message, ok = await ws.recv_guarded()
            if not ok:
                return None
            assert message is not None
            event = decode(message)
            if event is None:
                reply = error_event("bad_message", "Expected a JSON object with a type.")
            elif event["type"] != "join":
                reply = error_event("not_joined", "Choose a name first.")
            else:
                name = check_name(event.get("name"))
                if isinstance(name, str):
                    return name
                reply = name
            await ws.send_guarded(encode(reply))

    async def _chat(self, ws: WebSocket, member: Member) -> None:
        while True:
            message, ok = await ws.recv_guarded()
            if not ok:
                return
            assert message is not None
            event = decode(message)
            if event is None:
                reply: Event = error_event("bad_message", "Expected a JSON object with a type.")
            elif event["type"] == "message":
                text = check_text(event.get("text"))
                if isinstance(text, str):
                    await self.hub.publish({"type": "message", "name": member.name, "text": text})
                    continue
                reply = text
            elif event["type"] == "join":
                reply = error_event("already_joined", f"You are already in the chat as “{member.name}”.")
            else:
                reply = error_event("bad_message", f"Unknown message type {event['type']!r}.")
            await ws.send_guarded(encode(reply))


def check_origin(*, allow_missing: bool = True) -> Callable[[Request], Response | None]:
    """:func:`wsline.gate.same_origin`, logging each refusal on ``wsline.chat``."""
    check = same_origin(allow_missing=allow_missing)

    def check_and_log(request: Request) -> Response | None:
        refusal = check(request)
        if refusal is not None:
            logger.warning(
                "refused WebSocket upgrade from %s: %d, Origin %r does not match Host %r",
                request.remote_address,
                refusal.status,
                request.origin,
                request.host,
            )
        return refusal

    return check_and_log


def serve_chat(
    host: str | None = "127.0.0.1",
    port: int | None = 8000,
    *,
    hub: Hub | None = None,
    same_origin_only: bool = True,
    **kwargs: Any,
) -> _Serve:
    """:func:`wsline.serve` for a :class:`ChatApp` (other keyword arguments go to ``serve``).

    ``async with serve_chat("127.0.0.1", 8000) as server: ...``
    """
    kwargs.setdefault("max_size", MAX_MESSAGE_SIZE)
    if same_origin_only:
        kwargs.setdefault("process_request", check_origin())
    return serve(ChatApp(hub).router(), host, port, **kwargs)


# ------------------------------------------------------------------ command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The chat server's options: ``--host``, ``--port``, ``--redis`` and ``--workers``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=port_number, default=8000, help="port to listen on (default 8000; 0 picks a free one)"
    )
    add_worker_arguments(parser)


def add_parser(sub: SubParsers) -> argparse.ArgumentParser:
    """Add the ``chat`` subcommand to the ``python -m wsline`` parser."""
    parser = sub.add_parser(
        "chat",
        help="run the chat demo (page at /, WebSocket at /ws)",
        description="Run the chat demo: the page at http://HOST:PORT/ and its WebSocket at /ws.",
    )
    add_arguments(parser)
    return parser


async def run_until_stopped(
    host: str,
    port: int,
    *,
    hub: Hub | None = None,
    reuse_port: bool = False,
    status: Status | None = None,
    via: str = "",
) -> None:
    """Serve the chat until SIGINT or SIGTERM, saying where it is (``status``: printed by default).

    ``via`` is added to the banner (e.g. ``" sharing rooms over redis://..."``).
    """
    status = status if status is not None else Status()
    stop = catch_signals()
    server: Server
    async with serve_chat(host, port, hub=hub, reuse_port=reuse_port) as server:
        where = f"{url_host(host)}:{server.port}"
        status.ready(f"chat on http://{where}/ (WebSocket at ws://{where}/ws){via}")
        await stop
        status.stopping()


def run(args: argparse.Namespace) -> int:
    """Run the chat server for parsed :func:`add_arguments` options."""
    return run_command(args, run_with_hub)


async def run_with_hub(
    host: str,
    port: int,
    redis_url: str | None = None,
    reuse_port: bool = False,
    status: Status | None = None,
) -> None:
    """Serve the chat until stopped: with a :class:`LocalHub`, or a :class:`RoomHub` over Redis."""
    if not redis_url:
        await run_until_stopped(host, port, reuse_port=reuse_port, status=status)
        return
    from ..hub_redis import RedisHub

    async with RedisHub(redis_url) as rooms:
        await run_until_stopped(
            host,
            port,
            hub=RoomHub(rooms),
            reuse_port=reuse_port,
            status=status,
            via=f" sharing rooms over {redacted_url(redis_url)}",
        )
