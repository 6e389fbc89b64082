"""Run a program on uvloop when it is installed (``pip install wsline[uvloop]``)."""

from __future__ import annotations

import asyncio
import os
from typing import Any, Coroutine, TypeVar

__all__ = ["run", "loop_name"]

T = TypeVar("T")

_CHOICES = ("auto", "uvloop", "asyncio")


def _want(loop: str | None) -> str:
    choice = loop or os.environ.get("WSLINE_LOOP", "") or "auto"
    if choice not in _CHOICES:
        raise ValueError(f"unknown event loop {choice!r}; use one of {', '.join(_CHOICES)}")
    return choice


def loop_name(loop: str | None = None) -> str:
    """``"uvloop"`` or ``"asyncio"``: what :func:`run` would use."""
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
    """Like :func:`asyncio.run`, on uvloop when it is installed.

    ``loop`` (or the ``WSLINE_LOOP`` environment variable): ``"auto"`` (the
    default: uvloop if importable), ``"uvloop"`` (required) or ``"asyncio"``.
    The ``python -m wsline`` servers run this way.
    """
    if loop_name(loop) == "uvloop":
        import uvloop

        result: T = uvloop.run(main)
        return result
    return asyncio.run(main)
