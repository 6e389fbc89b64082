"""Run a program on uvloop when it is installed (``pip install wsline[uvloop]``), stop it on a signal."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from typing import Any, Coroutine, Sequence, TypeVar

__all__ = ["run", "loop_name", "STOP_SIGNALS", "catch_signals", "wait_for_signal"]

#: The signals that stop a server: Ctrl-C and what systemd, Docker and kill send.
STOP_SIGNALS: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)

T = TypeVar("T")

_CHOICES = ("auto", "uvloop", "asyncio")


def _want(loop: str | None) -> str:
    choice = loop or os.environ.get("WSLINE_LOOP", "") or "auto"
    if choice not in _CHOICES:
        raise ValueError(f"unknown event loop {choice!r}; use one of {', '.join(_CHOICES)}")
    return choice


def loop_name(loop: str | None = None) -> str:
    """``"uvloop"`` or ``"asyncio"``: what :func:`run` would use with ``loop`` (see there)."""
    choice = _want(loop)
    if choice == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if choice == "uvloop":
            raise
        return "asyncio"
    return "uvloop"


def run(main: Coroutine[Any, Any, T], *, loop: str | None = None) -> T:
    """Like :func:`asyncio.run`: run the coroutine ``main`` to its end, on uvloop when it is installed.

    ``loop`` (or the ``WSLINE_LOOP`` environment variable): ``"auto"`` (the
    default: uvloop if importable), ``"uvloop"`` (required) or ``"asyncio"``.
    The ``python -m wsline`` servers run this way.
    """
    if loop_name(loop) == "uvloop":
        import uvloop

        result: T = uvloop.run(main)
        return result
    return asyncio.run(main)


def _stop(fut: asyncio.Future[int], signum: int) -> None:
    if not fut.done():
        fut.set_result(signum)


def catch_signals(signals: Sequence[int] = STOP_SIGNALS) -> asyncio.Future[int]:
    """Handle ``signals`` from now on; the future is done (with the signal) once one came.

    While it waits, those signals are handled by the event loop, so Ctrl-C does
    not raise :class:`KeyboardInterrupt` into the program; when it is done (or
    cancelled) the previous handlers come back. A server calls this before it
    listens and awaits the future after saying where it listens, so that a
    signal sent as soon as it has said so stops it cleanly. Outside the main
    thread (where signals cannot be handled) the future only ends when cancelled.
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()
    installed: list[int] = []
    if threading.current_thread() is threading.main_thread():
        for signum in signals:
            try:
                loop.add_signal_handler(signum, _stop, fut, signum)
            except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover - Windows
                continue
            installed.append(signum)

    def restore(_: object) -> None:
        for signum in installed:
            loop.remove_signal_handler(signum)

    fut.add_done_callback(restore)
    return fut


async def wait_for_signal(signals: Sequence[int] = STOP_SIGNALS) -> int:
    """Wait until one of ``signals`` arrives; return it (see :func:`catch_signals`)."""
    fut = catch_signals(signals)
    try:
        return await fut
    finally:
        fut.cancel()
