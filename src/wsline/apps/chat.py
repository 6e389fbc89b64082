"""The chat demo: ``python -m wsline chat [--host H] [--port P] [--redis URL] [--workers N]``.

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
``already_joined``, ``bad_message``, ``text_invalid``, ``unavailable`` (the
rooms' backend, Redis, cannot be reached: try again).

Protocol 2 (the page speaks it) adds positions, so that a client that
reconnects gets what it missed, exactly once:

- the client says ``{"type": "hello", "protocol": 2}`` before joining, and
  the server answers ``{"type": "hello", "protocol": 2, "node": "<hub id>"}``
  (``node`` names the process; ``/ws?v=2`` does the same as the hello);
- ``welcome``, ``joined``, ``message`` and ``left`` carry ``"pos":
  "<epoch>:<offset>"``, the event's position in the room's stream (the
  welcome's is the joiner's own join; its member list is as of that position);
- ``{"type": "join", "name": ..., "since": "<epoch>:<offset>"}`` -- the
  position of the last event the client showed -- delivers every event after
  it (its own old connection's ``left`` included) before the live ones;
- or, when they cannot all be had (the history is shorter, or was lost),
  ``{"type": "reset", "pos": ..., "reason": ..., "members": [...]}`` first:
  some events are missing, the list is as of ``pos``, the events that follow
  come after it.

Who is in the chat and how events reach them is the hub's business.
:class:`RoomHub` puts the chat in a room of a :class:`wsline.hub.Hub` (the
command line without ``--redis``), or of a :class:`wsline.hub_redis.RedisHub`
shared by every process using the same Redis (``--redis URL``,
``--workers N``): names are unique across all of them (compared
case-insensitively, kept by each member's presence, so the names of a process
that dies are free again within the hub's leave bound), and every process
lists the same members in the same order. :class:`LocalHub` is the minimal
in-process one (no positions), the default of :class:`ChatApp`.

By default upgrade requests must come from the page's own origin (a foreign
``Origin`` gets 403 at the handshake); requests without ``Origin`` (command
line clients) are let through.

The page (``static/chat.html``) reconnects by itself when its connection
drops (waiting 1, 2, 3, 5 ... 30 s, and saying so), joins again under the
same name with the position of the last event it showed (retrying while the
server still holds the name for the lost connection), shows what it missed
once, and stops its fields at :data:`MAX_NAME_LENGTH` and
:data:`MAX_TEXT_LENGTH`, with a counter near the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import unicodedata
import weakref
from importlib import resources
from typing import Any, Callable, Protocol

from ..aio.connection import WebSocket
from ..aio.router import Router, html_response
from ..aio.server import Server, _Serve, serve
from ..gate import same_origin
from ..hub import (
    ClientInfo,
    Envelope,
    HubUnavailable,
    Joined,
    PresenceEvent,
    Publication,
    Reset,
    RoomView,
    StreamPosition,
    UserTaken,
)
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
    "ChatEnvelope",
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
    """One joined connection: a name and a way to deliver events to it.

    ``version`` is the protocol the client speaks (2: with positions);
    ``since`` the position it asks to recover from.
    """

    def __init__(
        self, ws: WebSocket, name: str, *, version: int = 1, since: StreamPosition | None = None
    ) -> None:
        self.ws = ws
        self.name = name
        #: The key names are compared by ("Alice" and "alice" are the same name).
        self.key = name_key(name)
        self.version = version
        self.since = since

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

    :meth:`join` sends the member its welcome and tells everyone (``joined``);
    :meth:`leave` tells everyone (``left``). Implementations must make
    :meth:`join` atomic: of two members joining with the same name at once,
    one gets ``None``.
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
    guarded (:meth:`Member.deliver`) and they all run at once. It keeps no
    positions: protocol-2 clients get protocol-1 events from it.
    """

    node: str | None = None

    def __init__(self) -> None:
        self._members: dict[str, Member] = {}

    def names(self) -> list[str]:
        """The member names, in the order they joined."""
        return [member.name for member in self._members.values()]

    async def join(self, member: Member) -> list[str] | None:
        if member.key in self._members:
            return None
        self._members[member.key] = member
        names = self.names()
        await member.deliver(encode({"type": "welcome", "name": member.name, "members": names}))
        await self.publish({"type": "joined", "name": member.name, "members": names})
        return names

    async def leave(self, member: Member) -> list[str]:
        if self._members.get(member.key) is member:
            del self._members[member.key]
            await self.publish({"type": "left", "name": member.name, "members": self.names()})
        return self.names()

    async def publish(self, event: Event) -> None:
        text = encode(event)
        members = list(self._members.values())
        if members:
            await asyncio.gather(*(member.deliver(text) for member in members))


def _name(client: ClientInfo) -> str:
    data = client.data
    if isinstance(data, dict) and isinstance(data.get("name"), str):
        return str(data["name"])
    return client.user or "?"


class ChatEnvelope(Envelope):
    """The chat's events from a :mod:`wsline.hub` room: protocol 1, or 2 (``positions=True``).

    Joins and leaves of the room's presence become ``joined`` and ``left``
    with the member list as this process has it at that position; the
    chat's publications (JSON events) go as they are, with ``"pos"`` added
    in protocol 2. Lossless: a member that does not keep up is closed (1008)
    rather than left with a hole; the page comes back and recovers.
    """

    lossless = True

    def __init__(self, positions: bool) -> None:
        self.positions = positions

    def publication(self, pub: Publication, room: RoomView) -> str | None:
        data = pub.data
        if not isinstance(data, str):
            return None
        if not self.positions:
            return data
        head = f'{{"pos":"{pub.position}"'
        return head + "}" if data == "{}" else head + "," + data[1:]

    def presence(self, event: PresenceEvent, room: RoomView) -> str | None:
        body: Event = {
            "type": "joined" if event.kind == "join" else "left",
            "name": _name(event.client),
            "members": [_name(client) for client in room.clients()],
        }
        if self.positions:
            body["pos"] = str(event.position)
        return encode(body)

    def reset(self, reset: Reset, room: RoomView) -> str | None:
        if not self.positions:
            return None
        members = [_name(client) for client in room.clients()]
        return encode(
            {"type": "reset", "pos": str(reset.position), "reason": reset.reason, "members": members}
        )

    def joined(self, joined: Joined, room: RoomView) -> str | None:
        clients = joined.members or []
        name = next((_name(c) for c in clients if c.address == joined.address), "?")
        body: Event = {"type": "welcome", "name": name, "members": [_name(c) for c in clients]}
        if self.positions:
            body["pos"] = str(joined.position)
            body["node"] = joined.address.partition("/")[0]
        return encode(body)


#: The envelopes of protocol-1 and protocol-2 clients (one object each: one framing per event).
PROTOCOL_1 = ChatEnvelope(positions=False)
PROTOCOL_2 = ChatEnvelope(positions=True)


class RoomHub:
    """The chat in room ``room`` of a :mod:`wsline.hub` hub (in process, or over Redis).

    Members are the room's presence: ``user`` is the name's key (so a name is
    taken case-insensitively, in every process sharing the hub), ``data`` the
    name as written. Joins and leaves are the room's presence events; events
    reach the members of every process in one order, framed once per
    process, with positions for protocol-2 clients, who recover what they
    missed when they join again with ``since``.
    """

    def __init__(self, hub: RoomsHub, room: str = "chat") -> None:
        self.hub = hub
        self.room = room

    @property
    def node(self) -> str:
        """The hub's id: which process a client talks to."""
        return self.hub.id

    async def join(self, member: Member) -> list[str] | None:
        try:
            joined = await self.hub.join(
                self.room,
                member.ws,
                user=member.key,
                data={"name": member.name},
                unique=True,
                since=member.since,
                envelope=PROTOCOL_2 if member.version >= 2 else PROTOCOL_1,
                snapshot=True,
            )
        except UserTaken:
            return None
        if joined is None:  # the connection closed meanwhile
            return []
        return [_name(client) for client in joined.members or []]

    async def leave(self, member: Member) -> list[str]:
        await self.hub.leave(self.room, member.ws)
        try:
            return [_name(client) for client in await self.hub.presence(self.room)]
        except HubUnavailable:
            return []

    async def publish(self, event: Event) -> None:
        await self.hub.publish(self.room, encode(event), wait=False)


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


def _since(value: object) -> StreamPosition | None:
    """A join's ``since``, or None (absent, or not a position: then the client starts afresh)."""
    if not isinstance(value, str):
        return None
    try:
        return StreamPosition.parse(value)
    except ValueError:
        return None


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
        #: The protocol each connection speaks (1 until it says hello with protocol 2).
        self._versions: weakref.WeakKeyDictionary[WebSocket, int] = weakref.WeakKeyDictionary()

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
        self._versions[ws] = 1
        if ws.request.query.get("v") == "2":
            if not await self._hello(ws):
                return
        while True:
            asked = await self._ask_name(ws)
            if asked is None:
                return
            name, since = asked
            version = self._versions.get(ws, 1)
            member = Member(ws, name, version=version, since=since if version >= 2 else None)
            try:
                members = await self.hub.join(member)  # the welcome and "joined" go out
            except HubUnavailable as exc:
                logger.warning("%s cannot join: %s", name, exc)
                reply = error_event(
                    "unavailable", "The chat is unavailable right now; try again in a moment."
                )
                await ws.send_guarded(encode(reply))
                continue
            if members is not None:
                break
            await ws.send_guarded(
                encode(error_event("name_taken", f"The name “{name}” is taken; choose another."))
            )
        # From here on the member is in the hub: whatever happens, it leaves.
        try:
            logger.info("%s joined from %s (%d members)", name, ws.remote_address, len(members))
            await self._chat(ws, member)
        finally:
            members = await self.hub.leave(member)
            logger.info("%s left (%d members)", name, len(members))

    async def _hello(self, ws: WebSocket) -> bool:
        """Speak protocol 2 on ``ws`` from now on, and say so."""
        self._versions[ws] = 2
        hello = {"type": "hello", "protocol": 2, "node": getattr(self.hub, "node", None)}
        return await ws.send_guarded(encode(hello))

    async def _ask_name(self, ws: WebSocket) -> tuple[str, StreamPosition | None] | None:
        """Read messages until a valid join request (its name, and ``since``) or the end (None)."""
        while True:
            message, ok = await ws.recv_guarded()
            if not ok:
                return None
            assert message is not None
            event = decode(message)
            if event is None:
                reply = error_event("bad_message", "Expected a JSON object with a type.")
            elif event["type"] == "hello" and event.get("protocol") == 2:
                if not await self._hello(ws):
                    return None
                continue
            elif event["type"] != "join":
                reply = error_event("not_joined", "Choose a name first.")
            else:
                name = check_name(event.get("name"))
                if isinstance(name, str):
                    return name, _since(event.get("since"))
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

    Without ``hub`` the chat is a room of an in-process :class:`wsline.hub.Hub`
    (protocol-2 clients recover what they missed across reconnections).
    ``via`` is added to the banner (e.g. ``" sharing rooms over redis://..."``).
    """
    status = status if status is not None else Status()
    hub = hub if hub is not None else RoomHub(RoomsHub())
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
    """Serve the chat until stopped: in a room of a :class:`wsline.hub.Hub`, or of a RedisHub."""
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
