"""The ASGI lifespan protocol: an application's startup and shutdown, around a server's life.

::

    lifespan = Lifespan(app, "auto")
    await lifespan.startup()          # raises LifespanFailed if the application says so
    ...                               # serve; each request scope gets a copy of lifespan.state
    await lifespan.shutdown()

The application runs once, in a task of its own, with a ``{"type": "lifespan"}``
scope whose ``state`` dict it may fill during startup (a shallow copy of it goes
into every request's scope). ``mode`` is uvicorn's:

* ``"auto"``: run the protocol; an application that raises before it answers
  ``lifespan.startup`` (most often because it does not know the scope type)
  is taken not to support it, and the server goes on without (logged at
  INFO); an application that returns at once, too;
* ``"on"``: the same, but such an application is an error (startup fails);
* ``"off"``: no lifespan scope at all.

``lifespan.startup.failed`` and ``lifespan.shutdown.failed`` (with their
``message``), and an exception after the startup began, are failures:
:meth:`Lifespan.startup` raises :class:`LifespanFailed`; a failed shutdown is
logged and :meth:`Lifespan.shutdown` returns (the server is stopping anyway).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

from .http import ASGIApp, Message

__all__ = ["Lifespan", "LifespanFailed", "LifespanMode"]

logger = logging.getLogger("wsline.asgi")

LifespanMode = Literal["auto", "on", "off"]

_SPEC = {"version": "3.0", "spec_version": "2.0"}


class LifespanFailed(RuntimeError):
    """The application's startup failed (``lifespan.startup.failed``, or an exception)."""


class Lifespan:
    """One application's lifespan scope (see the module's documentation)."""

    def __init__(self, app: ASGIApp, mode: LifespanMode = "auto", timeout: float | None = None) -> None:
        if mode not in ("auto", "on", "off"):
            raise ValueError(f"lifespan must be 'auto', 'on' or 'off', not {mode!r}")
        self.app = app
        self.mode = mode
        self.timeout = timeout
        #: What the application stored during startup; each request scope gets a copy.
        self.state: dict[str, Any] = {}
        #: Whether the application takes part (known after :meth:`startup`).
        self.supported = mode != "off"
        self._task: asyncio.Task[None] | None = None
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._answers: asyncio.Queue[Message | None] = asyncio.Queue()
        self._phase = ""  # "startup" or "shutdown": what the application is asked
        self._error: BaseException | None = None
        self._answered = False  # the application answered the current phase

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": dict(_SPEC), "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:
            self._error = exc
            if self._phase == "startup" and not self._answered and self.mode == "auto":
                logger.info("ASGI 'lifespan' protocol appears unsupported (%r)", exc)
            elif not isinstance(exc, asyncio.CancelledError):
                logger.error("exception in the ASGI application's lifespan %s", self._phase, exc_info=exc)
            if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
                raise
        finally:
            self._answers.put_nowait(None)  # the application returned

    async def _receive(self) -> Message:
        return await self._inbox.get()

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        expected = (f"lifespan.{self._phase}.complete", f"lifespan.{self._phase}.failed")
        if kind not in expected:
            raise RuntimeError(f"unexpected ASGI lifespan message {kind!r} (expected one of {expected})")
        self._answered = True
        await self._answers.put(message)

    async def _ask(self, phase: str) -> Message | None:
        """Send ``lifespan.<phase>``; the application's answer, or ``None`` if it returned."""
        self._phase = phase
        self._answered = False
        await self._inbox.put({"type": f"lifespan.{phase}"})
        if self.timeout is None:
            return await self._answers.get()
        return await asyncio.wait_for(self._answers.get(), self.timeout)

    async def startup(self) -> None:
        """Run the application's startup; raises :class:`LifespanFailed` when it fails."""
        if self.mode == "off":
            return
        self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            answer = await self._ask("startup")
        except asyncio.TimeoutError:
            raise LifespanFailed(f"the application's startup took more than {self.timeout} s") from None
        if answer is None:  # the application returned or raised before answering
            self.supported = False
            if self.mode == "on":
                if self._error is not None:
                    raise LifespanFailed(f"the application's startup raised {self._error!r}")
                raise LifespanFailed("the application returned from its lifespan scope without starting up")
            if self._error is None:
                logger.info("the ASGI application returned from its lifespan scope at once")
            return
        if answer["type"] == "lifespan.startup.failed":
            message = str(answer.get("message", "") or "")
            raise LifespanFailed(f"the application's startup failed{': ' + message if message else ''}")

    async def shutdown(self) -> None:
        """Run the application's shutdown (logged when it fails), and wait for its lifespan task."""
        task = self._task
        if task is None or not self.supported:
            return
        if not task.done():
            try:
                answer = await self._ask("shutdown")
            except asyncio.TimeoutError:
                logger.error("the application's shutdown took more than %s s", self.timeout)
                answer = None
            if answer is not None and answer["type"] == "lifespan.shutdown.failed":
                message = str(answer.get("message", "") or "")
                logger.error("the application's shutdown failed%s", ": " + message if message else "")
        if not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), 1.0)
            except asyncio.TimeoutError:
                task.cancel()
        if task.done() and not task.cancelled():
            task.exception()  # logged in _run
        self._task = None
