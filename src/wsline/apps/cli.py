"""The command line: ``python -m wsline {echo,connect,chat,relay,asgi} ...``."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from .._version import __version__
from . import asgi, chat, connect, echo, relay

__all__ = ["build_parser", "main"]

_COMMANDS = {"echo": echo.run, "connect": connect.run, "chat": chat.run, "relay": relay.run, "asgi": asgi.run}


_VERBOSE_HELP = "log more: -v for connections (INFO), -vv for frame traces (DEBUG)"


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m wsline`` parser (``-v`` goes before or after the subcommand)."""
    parser = argparse.ArgumentParser(prog="python -m wsline", description="wsline WebSocket tools")
    parser.add_argument("--version", action="version", version=f"wsline {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help=_VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{echo,connect,chat,relay,asgi}")
    for module in (echo, connect, chat, relay, asgi):
        command = module.add_parser(sub)
        command.add_argument(
            "-v", "--verbose", action="count", default=0, dest="verbose_after", help=_VERBOSE_HELP
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m wsline``."""
    args = build_parser().parse_args(argv)
    verbose = args.verbose + args.verbose_after
    logging.basicConfig(
        level=max(logging.WARNING - 10 * verbose, logging.DEBUG),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return _COMMANDS[args.command](args)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
