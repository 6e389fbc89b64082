"""The chat page in a real headless Chromium, against ``python -m wsline chat``.

Needs Debian's ``chromium`` package (``/usr/bin/chromium``) and the Python
``playwright`` package; Playwright's own browser downloads are never used.
Without either, these tests fail (they are never skipped). The two-process
tests (``--workers 2 --redis URL``) also need ``redis-server``.
Set ``WSLINE_CHAT_SCREENSHOT=/some/file.png`` to save a screenshot of a chat.
"""

from __future__ import annotations

import http.server
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from test_examples import REPO, Chat, free_port, start_chat

from wsline.apps import chat as wsline_chat

# The redis-server fixture lives with the RedisHub tests (tests/aio).
sys.path.insert(0, str(REPO / "tests" / "aio"))
from test_redis_hub import RedisServer, redis_server  # noqa: F401 - a fixture

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - reported by the fixture
    sync_playwright = None

#: Debian's Chromium (``apt-get install -y chromium``); WSLINE_CHROMIUM overrides the path.
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
#: Milliseconds Playwright waits for what a test expects to appear.
TIMEOUT_MS = 5000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if sync_playwright is None:
        pytest.fail("the browser tests need the playwright package: pip install playwright", pytrace=False)
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"the browser tests need Chromium at {CHROMIUM}: apt-get install -y chromium "
            "(Playwright's bundled browsers are not used)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        expect.set_options(timeout=TIMEOUT_MS)
        yield browser
        browser.close()


@pytest.fixture
def chat() -> Iterator[Chat]:
    server = start_chat()
    yield server
    assert server.proc.stop() == 0, server.proc.describe()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Any]:
    """Pages in separate browser contexts (separate profiles, like two people)."""
    contexts = []

    def open_page(url: str) -> Page:
        context = browser.new_context(viewport={"width": 900, "height": 620})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        return page

    yield open_page
    for context in contexts:
        context.close()


def join(page: Page, name: str) -> None:
    expect(page.locator("#status")).to_have_text("connected")
    page.fill("#name", name)
    page.click("#join-button")


def joined(page: Page, name: str) -> None:
    """Join as ``name`` and wait until the chat shows."""
    join(page, name)
    expect(page.locator("#room")).to_be_visible()
    expect(page.locator("#join")).to_be_hidden()
    expect(page.locator("#log")).to_contain_text(f"You joined as {name}.")


def say(page: Page, text: str) -> None:
    page.fill("#message", text)
    page.press("#message", "Enter")


def members(page: Page) -> list[str]:
    return page.locator("#members li").all_text_contents()


# ------------------------------------------------------------------ tests


def test_two_users_chat(chat: Chat, new_page: Any) -> None:
    alice = new_page(chat.url)
    bob = new_page(chat.url)
    joined(alice, "alice")
    joined(bob, "bob")
    expect(alice.locator("#log")).to_contain_text("bob joined.")
    expect(alice.locator("#members li")).to_have_text(["alice", "bob"])
    expect(bob.locator("#members li")).to_have_text(["alice", "bob"])
    expect(bob.locator("#member-count")).to_have_text("2")

    markup = "<img src=x onerror=alert(1)> <b>bold?</b> &amp;"
    say(alice, "hi bob!")
    say(alice, markup)
    expect(bob.locator("#log li.message").last).to_have_text("alice" + markup)
    say(bob, "hello alice")
    for page in (alice, bob):
        lines = page.locator("#log li.message")
        expect(lines).to_have_text(["alicehi bob!", "alice" + markup, "bobhello alice"])
        expect(lines.locator(".who")).to_have_text(["alice", "alice", "bob"])
        # The markup stayed text: no element was made from it.
        assert page.locator("#log img, #log b").count() == 0
    expect(alice.locator("#log li.mine")).to_have_count(2)
    expect(bob.locator("#log li.mine")).to_have_count(1)
    expect(alice.locator("#message")).to_have_value("")

    screenshot = os.environ.get("WSLINE_CHAT_SCREENSHOT")
    if screenshot:
        say(bob, "the page and its WebSocket share one port")
        expect(alice.locator("#log li.message")).to_have_count(4)
        alice.screenshot(path=screenshot, full_page=True)


def test_taken_name_refused(chat: Chat, new_page: Any) -> None:
    first = new_page(chat.url)
    second = new_page(chat.url)
    joined(first, "alice")

    join(second, "ALICE")  # names compare case-insensitively
    expect(second.locator("#name-error")).to_have_text(re.compile(r"The name .ALICE. is taken"))
    expect(second.locator("#join")).to_be_visible()
    expect(second.locator("#room")).to_be_hidden()

    join(second, "x" * 30)  # the input stops at 24 characters; that name is fine
    expect(second.locator("#room")).to_be_visible()
    expect(first.locator("#members li")).to_have_text(["alice", "x" * 24])
    expect(first.locator("#log")).not_to_contain_text("ALICE")


class _ForeignSite(http.server.BaseHTTPRequestHandler):
    """A page on another origin that tries to join the chat from the visitor's browser."""

    chat_ws = ""

    def do_GET(self) -> None:
        page = f"""<!doctype html><title>elsewhere</title><p id="result"></p><script>
const events = [];
const show = (e) => {{ events.push(e); document.getElementById("result").textContent = events.join(" "); }};
const ws = new WebSocket("{self.chat_ws}");
ws.onopen = () => {{ show("open"); ws.send(JSON.stringify({{type: "join", name: "mallory"}})); }};
ws.onmessage = (e) => show("message");
ws.onerror = () => show("error");
ws.onclose = (e) => show("close " + e.code);
</script>""".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_foreign_origin_refused(chat: Chat, browser: Browser, new_page: Any) -> None:
    handler = type("Handler", (_ForeignSite,), {"chat_ws": chat.ws_url})
    site = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    try:
        member = new_page(chat.url)
        joined(member, "alice")

        foreign_url = f"http://127.0.0.1:{site.server_address[1]}/"
        console: list[str] = []
        context = browser.new_context()
        try:
            foreign = context.new_page()
            foreign.on("console", lambda message: console.append(message.text))
            foreign.goto(foreign_url)
            # The handshake fails: error then close (1006), never open.
            expect(foreign.locator("#result")).to_have_text("error close 1006")
        finally:
            context.close()

        # The server answered 403 and says why.
        origin = foreign_url.rstrip("/")
        log = _wait_for(lambda: "".join(chat.proc.stderr), origin)
        assert "refused WebSocket upgrade from ('127.0.0.1', " in log
        assert f"403, Origin '{origin}' does not match Host '127.0.0.1:{chat.port}'" in log
        assert any("403" in text for text in console), console
        # Nobody joined.
        expect(member.locator("#members li")).to_have_text(["alice"])
        expect(member.locator("#log")).not_to_contain_text("mallory")
    finally:
        site.shutdown()
        site.server_close()


def test_closing_a_tab_announces_leaving(chat: Chat, new_page: Any) -> None:
    alice = new_page(chat.url)
    bob = new_page(chat.url)
    joined(alice, "alice")
    joined(bob, "bob")
    expect(alice.locator("#members li")).to_have_text(["alice", "bob"])

    bob.close()  # the tab goes away
    expect(alice.locator("#log li.notice").last).to_have_text("bob left.")
    expect(alice.locator("#members li")).to_have_text(["alice"])
    expect(alice.locator("#member-count")).to_have_text("1")

    # The name is free again.
    bob_again = new_page(chat.url)
    joined(bob_again, "bob")
    expect(alice.locator("#log li.notice").last).to_have_text("bob joined.")


def _wait_for(get: Any, needle: str, timeout: float = 5.0) -> str:
    end = time.monotonic() + timeout
    while True:
        text: str = get()
        if needle in text or time.monotonic() > end:
            return text
        time.sleep(0.05)


# ------------------------------------------------------------------ reconnecting, limits

#: Milliseconds to wait for a reconnection: the page's first waits are 1, 2, 3 s (+-25 %).
RECONNECT_MS = 20_000
RECONNECTING = re.compile(r"^connection lost, reconnecting in \d+ s…$")


def test_page_reconnects_when_the_server_restarts(new_page: Any) -> None:
    port = free_port()
    command = ("-m", "wsline", "chat", "--port", str(port))
    server = start_chat(*command)
    try:
        alice = new_page(server.url)
        bob = new_page(server.url)
        joined(alice, "alice")
        joined(bob, "bob")
        expect(alice.locator("#members li")).to_have_text(["alice", "bob"])
    finally:
        assert server.proc.stop() == 0, server.proc.describe()

    # The server closed the connections with 1001 (going away): the pages say so and wait.
    for page in (alice, bob):
        expect(page.locator("#status")).to_have_text(RECONNECTING)
        expect(page.locator("#log li.notice").last).to_have_text("Connection lost (1001).")
        expect(page.locator("#retry")).to_be_visible()
        expect(page.locator("#send-button")).to_be_disabled()

    server = start_chat(*command)  # the same port
    try:
        for page, name in ((alice, "alice"), (bob, "bob")):
            expect(page.locator("#status")).to_have_text("reconnected", timeout=RECONNECT_MS)
            again = f"Reconnected: you are in the chat again as {name}."
            back = page.locator("#log li.notice", has_text=again)
            expect(back).to_have_count(1)
            expect(page.locator("#room")).to_be_visible()
            expect(page.locator("#retry")).to_be_hidden()
        for page in (alice, bob):  # in the order they came back
            expect(page.locator("#members li")).to_have_count(2)
            assert sorted(members(page)) == ["alice", "bob"]
        # Rejoining under the same name is not announced to oneself as a new join.
        expect(alice.locator("#log li.notice", has_text="You joined as alice.")).to_have_count(1)

        say(alice, "still here?")
        expect(bob.locator("#log li.message").last).to_have_text("alicestill here?")
        say(bob, "yes")
        expect(alice.locator("#log li.message").last).to_have_text("bobyes")
    finally:
        assert server.proc.stop() == 0, server.proc.describe()


class CuttableProxy:
    """A TCP proxy in front of the chat; :meth:`cut` closes the browsers' side only.

    The chat server then still holds the connection (and the name) while the
    page has lost it, as after a network failure; :meth:`release` closes the
    server's side too.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.pairs.append((downstream, upstream))
            for a, b in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass

    def cut(self) -> list[socket.socket]:
        """Reset every browser-side connection; returns the server-side sockets, still open."""
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for downstream, _ in pairs:
            _hang_up(downstream)
        return [upstream for _, upstream in pairs]

    def close(self) -> None:
        self.listener.close()
        for upstream in self.cut():
            _hang_up(upstream)


def _hang_up(sock: socket.socket) -> None:
    """Close ``sock`` now (shutdown first: a thread blocked in recv() would keep it open)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def test_page_rejoins_once_the_lost_connection_lets_go_of_the_name(chat: Chat, new_page: Any) -> None:
    proxy = CuttableProxy(chat.port)
    try:
        alice = new_page(f"http://127.0.0.1:{proxy.port}/")
        bob = new_page(chat.url)
        joined(alice, "alice")
        joined(bob, "bob")

        held = proxy.cut()  # the page's connection is gone; the server does not know yet
        expect(alice.locator("#status")).to_have_text(RECONNECTING)
        expect(alice.locator("#log li.notice").last).to_have_text("Connection lost.")
        expect(alice.locator("#status")).to_have_text("reconnected", timeout=RECONNECT_MS)
        expect(alice.locator("#log li.notice").last).to_have_text(
            "Your name is still held by the lost connection; trying again in 3 s…"
        )
        expect(alice.locator("#send-button")).to_be_disabled()

        for sock in held:  # the server notices the old connection is gone: alice leaves
            _hang_up(sock)
        expect(bob.locator("#log li.notice").last).to_have_text("alice left.")
        expect(alice.locator("#log li.notice").last).to_have_text(
            "Reconnected: you are in the chat again as alice.", timeout=RECONNECT_MS
        )
        expect(bob.locator("#log li.notice").last).to_have_text("alice joined.")
        say(alice, "back")
        expect(bob.locator("#log li.message").last).to_have_text("aliceback")
    finally:
        proxy.close()


def test_page_shows_the_message_length_limit(chat: Chat, new_page: Any) -> None:
    limit = wsline_chat.MAX_TEXT_LENGTH
    alice = new_page(chat.url)
    bob = new_page(chat.url)
    joined(alice, "alice")
    joined(bob, "bob")
    counter = alice.locator("#counter")

    assert alice.get_attribute("#message", "maxlength") == str(limit)
    alice.fill("#message", "x" * (limit // 2))
    expect(counter).to_be_hidden()  # nothing to say far from the limit
    alice.fill("#message", "x" * (limit - 100))
    expect(counter).to_have_text(f"{limit - 100} / {limit} characters")

    # Longer text stops at the limit, and the page says so rather than cutting it silently.
    alice.fill("#message", "y" * (limit + 500))
    expect(alice.locator("#message")).to_have_value("y" * limit)
    expect(counter).to_have_text(f"{limit} / {limit} characters: the limit; the text was cut to fit")
    alice.press("#message", "Enter")
    expect(bob.locator("#log li.message").last).to_have_text("alice" + "y" * limit)
    expect(counter).to_be_hidden()

    # Text that is too long anyway (put there by a script): the server refuses it, the page
    # shows why and gives the text back.
    alice.eval_on_selector("#message", f"(input) => {{ input.value = 'z'.repeat({limit + 1}); }}")
    alice.press("#message", "Enter")
    expect(alice.locator("#message-error")).to_have_text(
        f"That message is too long (at most {limit} characters)."
    )
    expect(alice.locator("#message")).to_have_value("z" * (limit + 1))
    expect(counter).to_have_text(f"{limit + 1} / {limit} characters: 1 too many")
    expect(bob.locator("#log li.message")).to_have_count(1)


# ------------------------------------------------------------------ two processes sharing Redis


def node_of(page: Page) -> str:
    """The process a page's WebSocket talks to (the chat's protocol-2 hello names it)."""
    expect(page.locator("body")).to_have_attribute("data-node", re.compile(r"^[0-9a-f]{12}$"))
    return str(page.evaluate("document.body.dataset.node"))


def page_on(new_page: Any, url: str, want: Any) -> Page:
    """A new page whose WebSocket landed on a process for which ``want(node)`` is true.

    The kernel spreads connections over the workers (SO_REUSEPORT): pages that
    land elsewhere are closed before they join, so nobody sees them.
    """
    for _ in range(30):
        page: Page = new_page(url)
        if want(node_of(page)):
            return page
        page.context.close()
    raise AssertionError("no connection reached the wanted worker in 30 tries")


@pytest.fixture
def two_workers(redis_server: RedisServer) -> Iterator[Chat]:  # noqa: F811 - the fixture
    port = free_port()
    server = start_chat(
        "-m", "wsline", "chat", "--port", str(port), "--redis", redis_server.url, "--workers", "2"
    )
    yield server
    assert server.proc.stop() == 0, server.proc.describe()


def test_two_workers_one_chat(two_workers: Chat, new_page: Any) -> None:
    alice = new_page(two_workers.url)
    node_a = node_of(alice)
    bob = page_on(new_page, two_workers.url, lambda node: node != node_a)
    node_b = node_of(bob)
    joined(alice, "alice")
    joined(bob, "bob")
    for page in (alice, bob):  # the same members, in the same order, in both processes
        expect(page.locator("#members li")).to_have_text(["alice", "bob"])
        expect(page.locator("#member-count")).to_have_text("2")
    # Each join is shown once, wherever it happened.
    expect(alice.locator("#log li.notice", has_text="bob joined.")).to_have_count(1)
    expect(alice.locator("#log li.notice", has_text="You joined as alice.")).to_have_count(1)
    expect(bob.locator("#log li.notice", has_text="You joined as bob.")).to_have_count(1)
    expect(bob.locator("#log li.notice", has_text="joined")).to_have_count(1)  # its own

    # A name taken on one worker is refused on the other, in any letter case.
    carol = page_on(new_page, two_workers.url, lambda node: node == node_b)
    join(carol, "ALICE")
    expect(carol.locator("#name-error")).to_have_text(re.compile(r"The name .ALICE. is taken"))
    dave = page_on(new_page, two_workers.url, lambda node: node == node_a)
    join(dave, "Bob")
    expect(dave.locator("#name-error")).to_have_text(re.compile(r"The name .Bob. is taken"))
    join(carol, "carol")
    expect(carol.locator("#room")).to_be_visible()
    for page in (alice, bob, carol):
        expect(page.locator("#members li")).to_have_text(["alice", "bob", "carol"])
        expect(page.locator("#member-count")).to_have_text("3")
    expect(alice.locator("#log li.notice", has_text="carol joined.")).to_have_count(1)

    say(alice, "hello from worker A")
    say(bob, "hello from worker B")
    for page in (alice, bob, carol):
        expect(page.locator("#log li.message")).to_have_text(
            ["alicehello from worker A", "bobhello from worker B"]
        )
    carol.close()
    for page in (alice, bob):
        expect(page.locator("#log li.notice", has_text="carol left.")).to_have_count(1)
        expect(page.locator("#members li")).to_have_text(["alice", "bob"])


def test_page_shows_what_it_missed_once_across_workers(two_workers: Chat, new_page: Any) -> None:
    proxy = CuttableProxy(two_workers.port)
    try:
        alice = new_page(f"http://127.0.0.1:{proxy.port}/")
        node_a = node_of(alice)
        bob = page_on(new_page, two_workers.url, lambda node: node != node_a)
        joined(alice, "alice")
        joined(bob, "bob")
        say(bob, "one")
        expect(alice.locator("#log li.message")).to_have_text(["bobone"])

        held = proxy.cut()  # alice's page lost its connection; her worker does not know yet
        expect(alice.locator("#status")).to_have_text(RECONNECTING)
        say(bob, "two")
        say(bob, "three")
        expect(alice.locator("#status")).to_have_text("reconnected", timeout=RECONNECT_MS)
        for sock in held:  # the old connection goes: alice leaves, her name is free
            _hang_up(sock)
        expect(bob.locator("#log li.notice").last).to_have_text("alice left.")
        expect(
            alice.locator("#log li.notice", has_text="Reconnected: you are in the chat again as alice.")
        ).to_have_count(1, timeout=RECONNECT_MS)
        # What was said meanwhile, once each, in order; then the chat goes on.
        expect(alice.locator("#log li.message")).to_have_text(["bobone", "bobtwo", "bobthree"])
        say(bob, "four")
        expect(alice.locator("#log li.message")).to_have_text(["bobone", "bobtwo", "bobthree", "bobfour"])
        expect(alice.locator("#log li.notice", has_text="alice left.")).to_have_count(0)
        expect(alice.locator("#log li.notice", has_text="could not be recovered")).to_have_count(0)
        expect(alice.locator("#members li")).to_have_text(["bob", "alice"])
        expect(bob.locator("#members li")).to_have_text(["bob", "alice"])
    finally:
        proxy.close()
