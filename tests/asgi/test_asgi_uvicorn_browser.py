"""A FastAPI page with a WebSocket, in a real headless Chromium, under uvicorn on wsline.

Needs Debian's ``chromium`` (``/usr/bin/chromium``; ``WSLINE_CHROMIUM`` overrides)
and the ``playwright`` package, like ``tests/apps/test_browser.py``: they fail
rather than skip without them. uvicorn runs in this test's event loop with
``ws=wsline.asgi.uvicorn:WebSocketProtocol``; Playwright's async API drives the
browser from the same loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse
from test_asgi_uvicorn import HTTP, serving

from conftest import HOST, eventually

try:
    from playwright.async_api import Browser, async_playwright, expect
except ImportError:  # pragma: no cover - reported by the fixture
    async_playwright = None

CHROMIUM = os.environ.get("WSLINE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 5000

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>wsline under uvicorn</title></head>
<body>
<input id="text" value="héllo wörld"><button id="send">send</button><button id="bye">close</button>
<p>state: <span id="state">connecting</span>, subprotocol: <span id="proto"></span></p>
<ul id="log"></ul>
<script>
const log = (text) => { const li = document.createElement("li"); li.textContent = text;
                        document.getElementById("log").appendChild(li); };
const ws = new WebSocket(`ws://${location.host}/ws/room1?user=ada`, ["chat.v2", "chat.v1"]);
ws.binaryType = "arraybuffer";
ws.onopen = () => { document.getElementById("state").textContent = "open";
                    document.getElementById("proto").textContent = ws.protocol; };
ws.onmessage = (event) => log(typeof event.data === "string" ? "text: " + event.data
                                                             : "bytes: " + event.data.byteLength);
ws.onclose = (event) => { document.getElementById("state").textContent =
                              `closed ${event.code} ${event.reason} ${event.wasClean}`; };
document.getElementById("send").onclick = () => {
    ws.send(document.getElementById("text").value); ws.send(new Uint8Array([1, 2, 3]).buffer); };
document.getElementById("bye").onclick = () => ws.close(4000, "bye from the page");
</script>
</body></html>
"""


def make_app(events: list[Any]) -> FastAPI:
    app = FastAPI()

    @app.get("/")
    async def index() -> HTMLResponse:
        return HTMLResponse(PAGE)

    @app.websocket("/ws/{room}")
    async def chat(websocket: WebSocket, room: str, user: str) -> None:
        offered = websocket.scope["subprotocols"]
        await websocket.accept(subprotocol="chat.v1" if "chat.v1" in offered else None)
        ext = websocket.scope["extensions"]["wsline"]
        events.append(("open", room, user, websocket.headers.get("origin"), websocket.scope["subprotocols"]))
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    events.append(("disconnect", message["code"], message.get("reason")))
                    return
                if message.get("text") is not None:
                    await websocket.send_text(f"{user}@{room}: {message['text']}")
                else:
                    await websocket.send_bytes(message["bytes"] * 2)
                    await websocket.send_text(f"rtt {ext['latency']() is None or ext['latency']() >= 0}")
        except WebSocketDisconnect:  # pragma: no cover - receive() reports the disconnect itself
            events.append(("disconnect", None, None))

    return app


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    if async_playwright is None:
        pytest.fail("the browser tests need the playwright package: pip install playwright", pytrace=False)
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"the browser tests need Chromium at {CHROMIUM}: apt-get install -y chromium "
            "(Playwright's bundled browsers are not used)",
            pytrace=False,
        )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000
        )
        expect.set_options(timeout=TIMEOUT_MS)
        yield browser
        await browser.close()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("http", HTTP)
async def test_fastapi_page_in_chromium(browser: Browser, http: str) -> None:
    events: list[Any] = []
    async with serving(make_app(events), http) as served:
        context = await browser.new_context()
        page = await context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        base = f"http://{HOST}:{served.port}"
        await page.goto(base + "/")
        await expect(page.locator("#state")).to_have_text("open")
        await expect(page.locator("#proto")).to_have_text("chat.v1")
        await page.click("#send")
        log = page.locator("#log li")
        await expect(log.nth(0)).to_have_text("text: ada@room1: héllo wörld")
        await expect(log.nth(1)).to_have_text("bytes: 6")
        await expect(log.nth(2)).to_have_text("text: rtt True")
        await page.click("#bye")
        await expect(page.locator("#state")).to_have_text("closed 4000 bye from the page true")
        await eventually(lambda: len(events) == 2)
        await context.close()
    assert events[0] == ("open", "room1", "ada", base, ["chat.v2", "chat.v1"])
    assert events[1] == ("disconnect", 4000, "bye from the page")


@pytest.mark.timeout(90)
async def test_server_restart_seen_by_the_page(browser: Browser) -> None:
    events: list[Any] = []
    async with serving(make_app(events)) as served:
        page = await (await browser.new_context()).new_page()
        await page.goto(f"http://{HOST}:{served.port}/")
        await expect(page.locator("#state")).to_have_text("open")
        served.server.should_exit = True  # uvicorn shuts down: 1012 to the page
        await expect(page.locator("#state")).to_have_text("closed 1012 service restart true")
        await asyncio.sleep(0)
