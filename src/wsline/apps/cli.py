"""The command line: ``python -m wsline {echo,connect,chat,relay} ...``."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from .._version import __version__
from . import chat, connect, echo, relay

__all__ = ["main"]

_COMMANDS = {"echo": echo.run, "connect": connect.run, "chat": chat.run, "relay": relay.run}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m wsline``."""
    parser = argparse.ArgumentParser(prog="python -m wsline", description="wsline WebSocket tools")
    parser.add_argument("--version", action="version", version=f"wsline {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: frame traces)")
    sub = parser.add_subparsers(dest="command", required=True)
    echo.add_parser(sub)
    connect.add_parser(sub)
    chat.add_parser(sub)
    relay.add_parser(sub)
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * args.verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return _COMMANDS[args.command](args)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
