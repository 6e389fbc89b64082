"""One connection, two tasks: an *inbox* that receives and an *outbox* that sends.

    python examples/inbox_outbox.py

The rest of the program never touches the socket: it puts messages on the
outbox queue and reads what arrived from the inbox queue, so sending never
waits for receiving and the other way round. The demo starts its own server
(which answers every message and also pushes notices of its own, unasked),
talks to it and exits.
"""

from __future__ import annotations

import asyncio

import wsline

QUESTIONS = ["hello", "how are you?", "bye"]


# ------------------------------------------------------------------ the server


async def server_handler(ws: wsline.WebSocket) -> None:
    """Answer each message; meanwhile push a notice every 50 ms, unasked."""

    async def notices() -> None:
        for n in range(1, 4):
            await asyncio.sleep(0.05)
            await ws.send_guarded(f"notice {n}")

    pusher = asyncio.create_task(notices())
    try:
        async for message in ws:
            await ws.send(f"reply to {message!r}")
    finally:
        pusher.cancel()


# ------------------------------------------------------------------ the client


async def inbox(ws: wsline.WebSocket, received: asyncio.Queue[wsline.Data | None]) -> None:
    """Receive every message into ``received``; ``None`` marks the end of the connection."""
    try:
        async for message in ws:
            await received.put(message)
    finally:
        await received.put(None)


async def outbox(ws: wsline.WebSocket, to_send: asyncio.Queue[str | None]) -> None:
    """Send what is put on ``to_send``; ``None`` closes the connection."""
    while (message := await to_send.get()) is not None:
        await ws.send(message)
        print(f"outbox: sent {message!r}", flush=True)
    await ws.close()


async def main() -> None:
    async with wsline.serve(server_handler, "127.0.0.1", 0) as server:
        uri = f"ws://127.0.0.1:{server.port}/"
        print(f"server on {uri}", flush=True)

        async with wsline.connect(uri) as ws:
            to_send: asyncio.Queue[str | None] = asyncio.Queue()
            received: asyncio.Queue[wsline.Data | None] = asyncio.Queue()
            tasks = [
                asyncio.create_task(inbox(ws, received)),
                asyncio.create_task(outbox(ws, to_send)),
            ]

            # The application: ask the questions, read until every reply came.
            for question in QUESTIONS:
                await to_send.put(question)
            replies = notices = 0
            while replies < len(QUESTIONS) or notices < 3:
                message = await received.get()
                if message is None:
                    break
                print(f"inbox: got {message!r}", flush=True)
                if isinstance(message, str) and message.startswith("reply to"):
                    replies += 1
                else:
                    notices += 1
            await to_send.put(None)  # the outbox closes the connection
            await asyncio.gather(*tasks)

        print(f"done: {len(QUESTIONS)} sent, {replies} replies, {notices} notices", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
