"""A line-by-line client: each line you type is sent, and whatever arrives is printed.

    python examples/repl_client.py ws://127.0.0.1:8000/

Like WebSockets.jl's ``client_repl_input``. The end of input (Ctrl-D, or the
end of a piped file) closes the connection once no message came for
``--wait`` seconds, so ``printf 'a\\nb\\n' | python examples/repl_client.py URL``
prints both replies and exits 0. (``python -m wsline connect URL`` is the
full-featured version of this.)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading

import wsline


def read_lines(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]) -> None:
    """In a thread: put each stdin line on ``lines``, then ``None`` at the end of input.

    A daemon thread, because a blocking ``readline`` cannot be cancelled: when
    the server closes first, the program must be able to exit anyway.
    """
    try:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line.rstrip("\r\n"))
        loop.call_soon_threadsafe(lines.put_nowait, None)
    except RuntimeError:  # the event loop is closed: the program is exiting
        pass


async def print_messages(ws: wsline.WebSocket, arrived: asyncio.Event) -> None:
    """The receiving side: print every message until the connection closes."""
    async for message in ws:
        print(f"< {message}" if isinstance(message, str) else f"< [{len(message)} bytes]", flush=True)
        arrived.set()


async def until_quiet(arrived: asyncio.Event, seconds: float) -> None:
    """Return once no message arrived for ``seconds``."""
    while True:
        arrived.clear()
        try:
            await asyncio.wait_for(arrived.wait(), seconds)
        except asyncio.TimeoutError:
            return


async def repl(uri: str, wait: float) -> int:
    try:
        ws = await wsline.connect(uri)
    except (OSError, wsline.WebSocketError) as exc:
        print(f"cannot connect to {uri}: {exc}", file=sys.stderr)
        return 1
    print(f"connected to {uri}; type lines to send, Ctrl-D to quit", file=sys.stderr)

    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    threading.Thread(target=read_lines, args=(loop, lines), daemon=True).start()
    arrived = asyncio.Event()
    printer = asyncio.create_task(print_messages(ws, arrived))
    next_line = asyncio.create_task(lines.get())

    while True:
        # Wait for a line to send, or for the server to close the connection.
        await asyncio.wait({next_line, printer}, return_when=asyncio.FIRST_COMPLETED)
        if printer.done():  # the server closed first
            next_line.cancel()
            break
        line = next_line.result()
        if line is None:  # end of input: let the last replies arrive, then close
            await until_quiet(arrived, wait)
            break
        if not await ws.send_guarded(line):
            break
        next_line = asyncio.create_task(lines.get())

    await ws.close()
    try:
        await printer
    except wsline.ConnectionClosedError:
        pass
    print(f"closed: {ws.close_code} {ws.close_reason}".rstrip(), file=sys.stderr)
    return 0 if ws.close_code in (1000, 1001) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("uri", help="ws:// or wss:// URL, e.g. ws://127.0.0.1:8000/")
    parser.add_argument(
        "--wait", type=float, default=0.5, help="seconds of quiet before closing at the end of input"
    )
    args = parser.parse_args()
    sys.exit(asyncio.run(repl(args.uri, args.wait)))
