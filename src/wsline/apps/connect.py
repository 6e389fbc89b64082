"""``python -m wsline connect URL``: an interactive WebSocket client.

Each line read from stdin goes out as a text message; what arrives is printed
as ``< text`` or ``< [binary N bytes] <hex preview>``. Built on the blocking
client (:mod:`wsline.sync`): the main thread prints incoming messages while a
daemon thread reads stdin (with :func:`os.read`, so that no lock of
``sys.stdin`` is held when the process exits while it waits for input).
"""

from __future__ import annotations

import argparse
import codecs
import os
import socket
import ssl
import sys
import threading
import time

from ..errors import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from ..protocol.handshake import WSURI, parse_uri
from ..sync import ClientConnection, connect
from .runner import SubParsers

__all__ = ["add_parser", "run", "format_message"]

#: Exit statuses (also listed in ``--help``).
EXIT_OK = 0
EXIT_CLOSED_ABNORMALLY = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_REJECTED = 4
EXIT_TLS = 5
EXIT_INTERRUPTED = 130

EPILOG = """\
Each line typed (or piped) is sent as a text message. Incoming messages are
printed as "< text" or "< [binary N bytes] <hex>". At the end of input
(Ctrl-D), messages are still shown until none has come for --wait seconds,
then the connection is closed with 1000.

exit status:
  0    closed normally (1000 or 1001, by either side)
  1    the connection closed abnormally (another code, or lost)
  2    usage error or invalid URI
  3    cannot connect: refused, unreachable, unknown host, or timed out
  4    the server rejected the handshake (non-101 status) or answered wrongly
  5    TLS error (e.g. certificate verification failed; see --insecure)
  130  interrupted (Ctrl-C)
"""

#: How many bytes of a binary message are shown in hex.
PREVIEW_BYTES = 32


def _header(value: str) -> tuple[str, str]:
    name, sep, rest = value.partition(":")
    if not sep or not name.strip() or name != name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {value!r}")
    return name, rest.strip()


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return seconds


def add_parser(sub: SubParsers) -> argparse.ArgumentParser:
    """Add the ``connect`` subcommand to the ``python -m wsline`` parser."""
    parser = sub.add_parser(
        "connect",
        help="interactive client: send stdin lines, print what arrives",
        description="Connect to a WebSocket server; send each line of stdin as a text message.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", metavar="URL", help="ws:// or wss:// URL")
    parser.add_argument(
        "--subprotocol", action="append", metavar="NAME", help="offer subprotocol NAME (repeatable)"
    )
    parser.add_argument(
        "--header",
        action="append",
        type=_header,
        metavar="'NAME: VALUE'",
        help="add a request header (repeatable)",
    )
    parser.add_argument("--origin", metavar="ORIGIN", help="send an Origin header")
    parser.add_argument("--no-compression", action="store_true", help="do not offer permessage-deflate")
    parser.add_argument(
        "--insecure", action="store_true", help="wss://: do not verify the server's certificate"
    )
    parser.add_argument(
        "--open-timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="limit for connecting and the opening handshake (default 10)",
    )
    parser.add_argument(
        "--wait",
        type=_seconds,
        default=0.5,
        metavar="SECONDS",
        help="at the end of input, close once no message came for SECONDS (default 0.5; at most 10 s)",
    )
    return parser


def format_message(message: str | bytes) -> str:
    """``< text`` or ``< [binary N bytes] 01 02 ...`` (the first bytes in hex)."""
    if isinstance(message, str):
        return f"< {message}"
    preview = message[:PREVIEW_BYTES].hex(" ")
    more = " ..." if len(message) > PREVIEW_BYTES else ""
    return f"< [binary {len(message)} bytes] {preview}{more}".rstrip()


def _emit(line: str) -> None:
    try:
        print(line, flush=True)
    except UnicodeEncodeError:
        print(line.encode("ascii", "backslashreplace").decode("ascii"), flush=True)


def _fail(message: str, status: int) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return status


def _open(args: argparse.Namespace, wsuri: WSURI) -> ClientConnection | int:
    """Connect; on failure print why and return the exit status."""
    where = f"{wsuri.host}:{wsuri.port}"
    context: ssl.SSLContext | None = None
    if args.insecure and wsuri.secure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        return connect(
            args.url,
            subprotocols=args.subprotocol,
            headers=args.header,
            origin=args.origin,
            compression=None if args.no_compression else "deflate",
            open_timeout=args.open_timeout or None,
            ssl=context,
        )
    except InvalidStatus as exc:
        return _fail(str(exc), EXIT_REJECTED)
    except InvalidHandshake as exc:
        if isinstance(exc.__cause__, ssl.SSLError):
            return _fail(f"{exc} (--insecure skips the check)", EXIT_TLS)
        return _fail(f"handshake with {where} failed: {exc}", EXIT_REJECTED)
    except ValueError as exc:  # a header or subprotocol that cannot be sent
        return _fail(str(exc), EXIT_USAGE)
    except ssl.SSLError as exc:
        why = exc.reason.lower().replace("_", " ") if exc.reason else str(exc)
        if exc.reason == "WRONG_VERSION_NUMBER":
            why += " (the server does not speak TLS: try ws://)"
        return _fail(f"TLS handshake with {where} failed: {why}", EXIT_TLS)
    except ConnectionRefusedError:
        return _fail(f"connection refused by {where}", EXIT_UNREACHABLE)
    except socket.gaierror as exc:
        return _fail(f"cannot resolve host {wsuri.host!r}: {exc.strerror or exc}", EXIT_UNREACHABLE)
    except TimeoutError as exc:
        return _fail(str(exc), EXIT_UNREACHABLE)
    except OSError as exc:
        return _fail(f"cannot connect to {where}: {exc.strerror or exc}", EXIT_UNREACHABLE)


def _pump_stdin(ws: ClientConnection, done: threading.Event) -> None:
    """Send each line of stdin as a text message; set ``done`` at the end of input."""
    try:
        stdin = sys.stdin
        if stdin is None:
            return
        fd = stdin.fileno()
        decoder = codecs.getincrementaldecoder(getattr(stdin, "encoding", None) or "utf-8")("replace")
        partial = ""
        while True:
            chunk = os.read(fd, 65536)
            lines = (partial + decoder.decode(chunk, final=not chunk)).split("\n")
            partial = lines.pop()
            for line in lines:
                ws.send(line[:-1] if line.endswith("\r") else line)
            if not chunk:
                if partial:
                    ws.send(partial)
                return
    except ConnectionClosed:
        pass  # the main thread reports how the connection ended
    except (OSError, ValueError) as exc:
        print(f"error: cannot read stdin: {exc}", file=sys.stderr, flush=True)
    finally:
        done.set()


def run(args: argparse.Namespace) -> int:
    """Run the ``connect`` command; returns the exit status."""
    try:
        try:
            wsuri = parse_uri(args.url)
        except InvalidURI as exc:
            return _fail(str(exc), EXIT_USAGE)
        opened = _open(args, wsuri)
        if isinstance(opened, int):
            return opened
        return _session(opened, args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED


def _session(ws: ClientConnection, args: argparse.Namespace) -> int:
    _emit(f"connected to {args.url} (subprotocol: {ws.subprotocol or 'none'})")
    if sys.stdin is not None and sys.stdin.isatty():
        print("type a message and press Enter to send it; Ctrl-D closes", file=sys.stderr, flush=True)
    input_done = threading.Event()
    threading.Thread(target=_pump_stdin, args=(ws, input_done), name="wsline-stdin", daemon=True).start()
    end_of_input: float | None = None
    last_message = 0.0
    try:
        while True:
            if input_done.is_set():
                now = time.monotonic()
                if end_of_input is None:
                    end_of_input = now
                quiet_since = max(end_of_input, last_message)
                if now - quiet_since >= args.wait or now - end_of_input >= max(10.0, args.wait):
                    break
            try:
                message = ws.recv(timeout=0.05)
            except TimeoutError:
                continue
            _emit(format_message(message))
            last_message = time.monotonic()
    except ConnectionClosed:
        pass
    except KeyboardInterrupt:
        ws.close()
        print("interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    ws.close()
    code, reason = ws.close_code, ws.close_reason
    _emit(f"connection closed: {code} {reason}".rstrip())
    return EXIT_OK if code in (1000, 1001) else EXIT_CLOSED_ABNORMALLY
