"""wsline as uvicorn's WebSocket implementation: :class:`WebSocketProtocol`.

Every WebSocket of an ASGI application (FastAPI, Starlette, Django Channels...)
served by uvicorn (0.50 or later) runs on wsline with::

    uvicorn app:app --ws wsline.asgi.uvicorn:WebSocketProtocol
    uvicorn.run(app, ws="wsline.asgi.uvicorn:WebSocketProtocol")
    uvicorn.Config(app, ws=WebSocketProtocol)          # the class itself works too

uvicorn's HTTP protocol (``--http h11`` or ``--http httptools``) reads the
upgrade request, then hands the connection over: it builds this protocol with
``config``, ``server_state`` and ``app_state``, calls ``connection_made`` with
its transport, switches the transport to it and gives it the request's bytes
with ``data_received``. wsline reads them again with its own strict parser
(:mod:`wsline.protocol.http11`), checks the handshake
(:class:`~wsline.protocol.server.ServerHandshake`), builds the scope
(:mod:`wsline.asgi.scope`) and runs the application in an
:class:`~wsline.asgi.websocket.ASGIWebSocket` session.

uvicorn's settings, as wsline applies them:

=============================  ===============================================
``--ws-max-size`` (16 MiB)     ``max_size``: a bigger message closes with 1009
``--ws-max-queue`` (32)        ``max_queue``: reading pauses while that many
                               received messages wait for ``receive()``
``--ws-ping-interval`` (20 s)  keepalive pings (``0`` or ``None``: none); their
                               round trip is the ``wsline`` extension's
                               ``latency()``
``--ws-ping-timeout`` (20 s)   no pong within it: closed with 1011
``--ws-per-message-deflate``   permessage-deflate offered back (window 2^12,
                               as uvicorn's own implementations)
``--root-path``                ``root_path``, and in front of ``path`` and
                               ``raw_path`` (as uvicorn builds them)
``--proxy-headers``            the application runs wrapped as uvicorn wraps it
                               (``config.loaded_app``): ``client`` and
                               ``scheme`` come from trusted X-Forwarded-* headers
``--header``, server header,   the 101 and the refusals carry uvicorn's default
date header                    headers (``server: uvicorn``, ``date``...)
graceful shutdown              ``shutdown()``: open connections get a close
                               with 1012 "service restart" (the closing
                               handshake takes ``close_timeout``, 10 s, at
                               most); uvicorn waits for them and for the
                               application tasks (``--timeout-graceful-shutdown``
                               cancels those still running)
=============================  ===============================================

Log lines are uvicorn's: ``127.0.0.1:50000 - "WebSocket /ws" [accepted]``,
``... 403`` (and the status of a denial response or a refused handshake) at
INFO on the ``uvicorn.error`` logger, like uvicorn's own WebSocket
implementations; an application's exception as ``Exception in ASGI
application`` with its traceback; ``WebSocket connection made/lost`` at TRACE.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import weakref
from typing import TYPE_CHECKING, Any, cast

from ..aio.connection import ProtocolBase
from ..errors import HandshakeRejected
from ..protocol import deflate as pmd
from ..protocol.handshake import reject_response
from ..protocol.http11 import NEED_DATA, EndOfMessage, Limits, Request, RequestParser
from ..protocol.server import ServerHandshake, ServerOptions
from .scope import client_address, server_address, websocket_scope
from .websocket import ASGIApp, ASGIWebSocket

if TYPE_CHECKING:  # pragma: no cover
    from uvicorn.config import Config
    from uvicorn.server import ServerState

__all__ = ["WebSocketProtocol", "server_options"]

#: uvicorn's TRACE log level (``--log-level trace``).
TRACE_LOG_LEVEL = 5

#: uvicorn's logger of its WebSocket implementations (looked up once: getLogger takes a lock).
_logger = logging.getLogger("uvicorn.error")

# uvicorn read the head already (within its own limits); wsline's parser reads
# it again and must not refuse what uvicorn let through on size alone.
_LIMITS = Limits(max_head=2**20, max_headers=4096, max_body=0)

_settings: weakref.WeakKeyDictionary[Any, tuple[ServerOptions, ServerHandshake]] = weakref.WeakKeyDictionary()


def _seconds(value: float | None) -> float | None:
    return float(value) if value is not None and value > 0 else None


def server_options(config: Config) -> ServerOptions:
    """The :class:`~wsline.protocol.server.ServerOptions` for a uvicorn ``Config`` (its ``ws_*`` settings)."""
    return ServerOptions(
        deflate=pmd.DEFAULT_SERVER_CONFIG if config.ws_per_message_deflate else None,
        max_size=config.ws_max_size,
        max_queue=config.ws_max_queue,
        ping_interval=_seconds(config.ws_ping_interval),
        ping_timeout=_seconds(config.ws_ping_timeout),
        open_timeout=None,  # uvicorn's HTTP protocol timed the request; the app may take its time
        server_header=None,  # uvicorn's default headers carry its Server header
    )


def _server_settings(config: Config) -> tuple[ServerOptions, ServerHandshake]:
    """One :class:`ServerOptions` and :class:`ServerHandshake` per uvicorn ``Config``."""
    settings = _settings.get(config)
    if settings is None:
        options = server_options(config)
        settings = _settings[config] = (options, ServerHandshake(options))
    return settings


class WebSocketProtocol(ProtocolBase):
    """uvicorn's ``--ws`` protocol class, on wsline (see the module)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()  # pragma: no cover - uvicorn loads it before serving
        self.config = config
        self.app = cast(ASGIApp, config.loaded_app)
        self.loop = _loop or asyncio.get_event_loop()
        self.logger = _logger
        self.root_path: str = config.root_path
        self.app_state = app_state
        self.server_state = server_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.options, self.handshake = _server_settings(config)
        self.parser: RequestParser | None = RequestParser(_LIMITS)
        self.request: Request | None = None
        self.session: ASGIWebSocket | None = None
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int | None] | None = None
        self.scheme = "ws"

    def __repr__(self) -> str:
        return f"<wsline WebSocketProtocol {self.client} {self.session!r}>"

    # ------------------------------------------------------------ transport side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.connections.add(self)  # type: ignore[arg-type]
        self.transport = transport
        transport.set_write_buffer_limits(high=self.options.write_limit)
        self.client = client_address(transport.get_extra_info("peername"))
        self.server = server_address(transport.get_extra_info("sockname"))
        self.scheme = "wss" if transport.get_extra_info("sslcontext") else "ws"
        self._trace("WebSocket connection made")

    def _trace(self, text: str) -> None:
        if self.logger.level <= TRACE_LOG_LEVEL:
            prefix = f"{self._client_text()} - " if self.client else ""
            self.logger.log(TRACE_LOG_LEVEL, "%s%s", prefix, text)

    def data_received(self, data: bytes) -> None:
        """The upgrade request, as uvicorn's HTTP protocol hands it over."""
        self.handshake_data(memoryview(data))

    def handshake_data(self, data: memoryview) -> None:
        session = self.session
        if session is not None:
            session.data_received(data)
            return
        parser = self.parser
        if parser is None:  # answered already
            return
        parser.feed(data)
        try:
            if self.request is None:
                event = parser.next_event()
                if event is NEED_DATA:
                    return
                if not isinstance(event, Request):  # CLOSED: nothing came
                    raise HandshakeRejected(400, "no request")
                self.request = event
            event = parser.next_event()
            if not isinstance(event, EndOfMessage):
                # uvicorn's HTTP parser has taken the body of this request, if
                # there was one: the stream cannot be trusted past the head.
                raise HandshakeRejected(400, "a WebSocket upgrade request has no body")
        except HandshakeRejected as exc:
            self.parser = None
            self.logger.info('%s - "WebSocket %s" %d', self._client_text(), self._target_text(), exc.status)
            self._answer(exc)
            return
        self._start(self.request, parser.trailing_data())
        self.parser = None

    def _client_text(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else ""

    def _target_text(self) -> str:
        return (self.request.target if self.request is not None else "").replace('"', "%22")

    def _answer(self, exc: HandshakeRejected) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        response = reject_response(exc.status, exc.reason + "\n", exc.headers)
        transport.write(self.handshake.serialize(response, self.request, False))
        transport.close()

    def _start(self, request: Request, trailing: bytes) -> None:
        scope = websocket_scope(
            request,
            scheme=self.scheme,
            client=self.client,
            server=self.server,
            root_path=self.root_path,
            state=self.app_state,
            extensions={"websocket.http.response": {}},
        )
        scope["asgi"]["version"] = self.config.asgi_version
        request.remote_address = self.client
        session = self.session = ASGIWebSocket(
            self.app,
            scope,
            request,
            self,
            self.handshake,
            self.options,
            trailing_data=trailing,
            default_headers=self.server_state.default_headers,
            log=self.logger,
        )
        if getattr(self.config, "reset_contextvars", False):
            # uvicorn's opt-in workaround for context variables leaking between
            # tasks: the task starts from an empty context.
            task = contextvars.Context().run(self.loop.create_task, session.run())
        else:
            task = self.loop.create_task(session.run())
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        transport = self.transport
        if self.ws is None and transport is not None and not transport.is_closing():
            transport.close()  # pragma: no cover - the session closes whatever it answered

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self._trace("WebSocket connection lost")
        self.parser = None
        session = self.session
        if session is not None:
            session.connection_lost(exc)
        super().connection_lost(exc)

    # ------------------------------------------------------------ uvicorn's calls

    def shutdown(self) -> None:
        """uvicorn stops: close with 1012 "service restart" (503 before the accept)."""
        session = self.session
        if session is not None:
            session.shutdown(1012, "service restart")
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.close()
