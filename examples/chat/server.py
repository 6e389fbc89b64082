"""The chat demo: one server, one port, the page at / and its WebSocket at /ws.

    python examples/chat/server.py --port 8000     # then open http://127.0.0.1:8000/

The same as ``python -m wsline chat``: the application lives in
``src/wsline/apps/chat.py`` (protocol, members, relaying; the page is
``src/wsline/apps/static/chat.html``). Put together by hand it reads::

    app = wsline.apps.chat.ChatApp()                  # members in a LocalHub
    async with wsline.serve(
        app.router(),                            # GET / -> the page, WebSocket /ws -> app.handle
        host, port,
        process_request=same_origin(allow_missing=True),   # foreign pages get 403
    ) as server:
        ...
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from wsline.apps import chat

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    chat.add_arguments(parser)  # --host, --port
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(chat.run_until_stopped(args.host, args.port))
