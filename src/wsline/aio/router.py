"""HTTP and WebSockets on one port: a small router, response helpers and static files.

::

    router = Router()

    @router.get("/")
    async def index(request: Request) -> Response:
        return html_response("<h1>hi</h1>")

    @router.get("/users/{name}")            # path parameters come as keyword arguments
    def user(request: Request, name: str) -> Response:
        return json_response({"name": name})

    @router.websocket("/ws")
    async def chat(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    router.static("/static", "/some/dir")
    router.mount("/api", fastapi_app)        # an ASGI 3 application under /api

    async with wsline.serve(router, "127.0.0.1", 8000) as server:
        ...

:func:`wsline.serve` picks up the router's :meth:`Router.handle_http` (plain
HTTP requests) and :meth:`Router.check_upgrade` (refuses upgrades to paths with
no WebSocket route); calling the router with a connection runs the WebSocket
route for ``ws.request.path``.
"""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import json
import mimetypes
import os
import re
import stat
from datetime import timezone
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Mapping, TypeVar, Union
from urllib.parse import quote

from ..protocol.handshake import REASON_PHRASES, Headers, Request, Response, reject_response
from .connection import WebSocket

if TYPE_CHECKING:  # pragma: no cover - the ASGI layer is imported by mount() only
    from ..asgi.http import ASGIApp
    from ..asgi.server import Runner

__all__ = [
    "Router",
    "text_response",
    "html_response",
    "json_response",
    "redirect",
    "file_response",
    "guess_content_type",
]

#: Extra headers for the response helpers: a :class:`Headers`, a mapping or (name, value) pairs.
HeadersLike = Union[Headers, Mapping[str, str], Iterable[tuple[str, str]], None]
#: An HTTP route: ``handler(request, **path_params)`` returning a Response (sync or async).
HttpRoute = Callable[..., Union[Response, Awaitable[Response]]]
#: A WebSocket route: ``async handler(ws, **path_params)``.
WebSocketRoute = Callable[..., Awaitable[Any]]

_F = TypeVar("_F", bound=Callable[..., Any])

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ETAG = re.compile(r'(?:W/)?("[^"]*")')

#: Content types for common web files, used before :mod:`mimetypes` (whose
#: answers depend on the system's mime.types files).
_WEB_TYPES: dict[str, str] = {
    ".html": "text/html",
    ".htm": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".json": "application/json",
    ".map": "application/json",
    ".txt": "text/plain",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".ico": "image/vnd.microsoft.icon",
    ".wasm": "application/wasm",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".xml": "application/xml",
    ".pdf": "application/pdf",
}
_ENCODED_TYPES: dict[str, str] = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
}
_UTF8_TYPES = ("application/javascript", "application/json", "application/xml")


# ------------------------------------------------------------------ responses


def _reason(status: int) -> str:
    phrase = REASON_PHRASES.get(status)
    if phrase is not None:
        return phrase
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _extra_headers(headers: HeadersLike) -> list[tuple[str, str]]:
    """Validate extra headers (no header injection) and drop any Content-Length."""
    if headers is None:
        return []
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    out: list[tuple[str, str]] = []
    for name, value in items:
        if not _TOKEN.fullmatch(name) or _VALUE_BAD.search(value):
            raise ValueError(f"invalid header {name!r}: {value!r}")
        if name.lower() != "content-length":
            out.append((name, value))
    return out


def _response(status: int, body: bytes, content_type: str, headers: HeadersLike) -> Response:
    hdrs = Headers(_extra_headers(headers))
    if "Content-Type" not in hdrs:
        hdrs.add("Content-Type", content_type)
    hdrs.add("Content-Length", str(len(body)))
    return Response(status, _reason(status), hdrs, body)


def _encode(text: str | bytes) -> bytes:
    return text.encode("utf-8") if isinstance(text, str) else bytes(text)


def text_response(text: str | bytes, status: int = 200, headers: HeadersLike = None) -> Response:
    """A ``text/plain; charset=utf-8`` response (``str`` is encoded as UTF-8).

    ``status`` is the status code; ``headers`` adds header fields (a
    :class:`Headers`, a mapping or ``(name, value)`` pairs: a ``Content-Type``
    among them replaces the default one, a ``Content-Length`` is dropped, and a
    name or value that could inject headers raises :class:`ValueError`).
    """
    return _response(status, _encode(text), "text/plain; charset=utf-8", headers)


def html_response(html: str | bytes, status: int = 200, headers: HeadersLike = None) -> Response:
    """A ``text/html; charset=utf-8`` response (``str`` is encoded as UTF-8).

    ``status`` is the status code; ``headers`` adds header fields (a
    :class:`Headers`, a mapping or ``(name, value)`` pairs: a ``Content-Type``
    among them replaces the default one, a ``Content-Length`` is dropped, and a
    name or value that could inject headers raises :class:`ValueError`).
    """
    return _response(status, _encode(html), "text/html; charset=utf-8", headers)


def json_response(obj: Any, status: int = 200, headers: HeadersLike = None) -> Response:
    """An ``application/json`` response with ``obj`` as compact UTF-8 JSON.

    NaN and infinities raise :class:`ValueError` (they are not JSON).

    ``status`` is the status code; ``headers`` adds header fields (a
    :class:`Headers`, a mapping or ``(name, value)`` pairs: a ``Content-Type``
    among them replaces the default one, a ``Content-Length`` is dropped, and a
    name or value that could inject headers raises :class:`ValueError`).
    """
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    return _response(status, body, "application/json", headers)


def redirect(location: str, status: int = 302, headers: HeadersLike = None) -> Response:
    """A redirect to ``location`` (301, 302, 303, 307 or 308).

    Characters not allowed in a URI (spaces, non-ASCII, controls) are
    percent-encoded; existing ``%XX`` escapes are kept. Another ``status``
    raises :class:`ValueError`; ``headers`` adds header fields, as for
    :func:`text_response`.
    """
    if status not in (301, 302, 303, 307, 308):
        raise ValueError(f"{status} is not a redirect status")
    target = quote(location, safe=":/?#[]@!$&'()*+,;=%~")
    hdrs = [("Location", target), *_extra_headers(headers)]
    return _response(status, f"redirecting to {target}\n".encode(), "text/plain; charset=utf-8", hdrs)


def _not_found() -> Response:
    return text_response("404 Not Found\n", 404)


def _method_not_allowed(allowed: Iterable[str]) -> Response:
    allow = ", ".join(sorted(set(allowed)))
    return text_response(f"405 Method Not Allowed (allowed: {allow})\n", 405, [("Allow", allow)])


# ---------------------------------------------------------------- files


def guess_content_type(name: str) -> str:
    """The Content-Type for a file name (``charset=utf-8`` added for text types)."""
    ext = os.path.splitext(name)[1].lower()
    ctype: str | None = _WEB_TYPES.get(ext)
    if ctype is None:
        guessed, encoding = mimetypes.guess_type(name, strict=False)
        if encoding is not None:
            ctype = _ENCODED_TYPES.get(encoding, "application/octet-stream")
        else:
            ctype = guessed or "application/octet-stream"
    if ctype.startswith("text/") or ctype in _UTF8_TYPES:
        ctype += "; charset=utf-8"
    return ctype


def _etag_matches(header: str, etag: str) -> bool:
    """Weak comparison of ``If-None-Match`` with our entity tag (RFC 9110 13.1.2)."""
    if header.strip() == "*":
        return True
    return etag in _ETAG.findall(header)


def _not_modified_since(header: str, mtime: float) -> bool:
    try:
        since = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError, OverflowError):
        return False
    if since.tzinfo is None:  # "-0000": UTC
        since = since.replace(tzinfo=timezone.utc)
    return int(mtime) <= since.timestamp()


def _serve_file(
    path: str,
    request: Request,
    *,
    name: str,
    follow_symlinks: bool,
    content_type: str | None = None,
    headers: HeadersLike = None,
) -> Response | None:
    """Open, check and read ``path``; ``None`` if it is not a readable regular file."""
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except (OSError, ValueError):
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
        hdrs = Headers(
            [
                ("ETag", etag),
                ("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True)),
                *_extra_headers(headers),
            ]
        )
        if request.method in ("GET", "HEAD"):
            inm = request.headers.get_all("If-None-Match")
            ims = request.headers.get("If-Modified-Since")
            if inm:  # takes precedence over If-Modified-Since (RFC 9110 13.2.2)
                not_modified = _etag_matches(", ".join(inm), etag)
            else:
                not_modified = ims is not None and _not_modified_since(ims, st.st_mtime)
            if not_modified:
                return Response(304, _reason(304), hdrs)
        if request.method == "HEAD":
            body, length = b"", st.st_size
        else:
            with os.fdopen(os.dup(fd), "rb") as f:
                body = f.read()
            length = len(body)
        hdrs.add("Content-Type", content_type or guess_content_type(name))
        hdrs.add("Content-Length", str(length))
        hdrs.add("X-Content-Type-Options", "nosniff")
        return Response(200, _reason(200), hdrs, body)
    except OSError:
        return None
    finally:
        os.close(fd)


def file_response(
    path: str | os.PathLike[str],
    request: Request,
    *,
    content_type: str | None = None,
    headers: HeadersLike = None,
) -> Response:
    """The file at ``path`` as a response to ``request`` (404 if it is not a readable regular file).

    The Content-Type comes from the file name (``charset=utf-8`` for text
    types) unless ``content_type`` is given. ``ETag`` (modification time and
    size) and ``Last-Modified`` let clients revalidate: a matching
    ``If-None-Match`` (or, without it, ``If-Modified-Since``) gets ``304 Not
    Modified`` with no body. A HEAD request gets the headers with
    ``Content-Length`` but the file is not read. The file is read into memory
    in the calling thread.
    """
    fspath = os.fspath(path)
    response = _serve_file(
        fspath,
        request,
        name=os.path.basename(fspath),
        follow_symlinks=True,
        content_type=content_type,
        headers=headers,
    )
    return response if response is not None else _not_found()


# ---------------------------------------------------------------- routing


class _Pattern:
    """A route path: literal text and ``{name}`` parameters, each matching one path segment."""

    def __init__(self, path: str) -> None:
        if not path.startswith("/"):
            raise ValueError(f"a route path must start with '/': {path!r}")
        parts: list[str] = []
        names: list[str] = []
        pos = 0
        for match in _PARAM.finditer(path):
            parts.append(self._literal(path, path[pos : match.start()]))
            name = match.group(1)
            if name in names:
                raise ValueError(f"parameter {{{name}}} appears twice in {path!r}")
            names.append(name)
            parts.append(f"(?P<{name}>[^/]+)")
            pos = match.end()
        parts.append(self._literal(path, path[pos:]))
        self.path = path
        self.regex = re.compile("".join(parts)) if names else None

    @staticmethod
    def _literal(path: str, text: str) -> str:
        if "{" in text or "}" in text:
            raise ValueError(f"invalid parameter syntax in route path {path!r}")
        return re.escape(text)

    def match(self, path: str) -> dict[str, str] | None:
        if self.regex is None:
            return {} if path == self.path else None
        found = self.regex.fullmatch(path)
        return found.groupdict() if found is not None else None


class _StaticMount:
    def __init__(self, prefix: str, directory: str | os.PathLike[str], index: str) -> None:
        if not prefix.startswith("/") or "{" in prefix or "}" in prefix:
            raise ValueError(f"a static prefix must be a literal path starting with '/': {prefix!r}")
        root = os.path.realpath(os.fspath(directory))
        if not os.path.isdir(root):
            raise NotADirectoryError(f"static directory {os.fspath(directory)!r} is not a directory")
        self.prefix = prefix.rstrip("/")  # "" for the site root
        self.root = root
        self.index = index

    def rest(self, path: str) -> str | None:
        """The part of ``path`` under this mount ("" or starting with "/"), or ``None``."""
        if path == self.prefix or path.startswith(self.prefix + "/"):
            return path[len(self.prefix) :]
        return None

    def _inside(self, real: str) -> bool:
        try:
            return os.path.commonpath([self.root, real]) == self.root
        except ValueError:  # different drives on Windows
            return False

    def serve(self, rest: str, request: Request) -> Response:
        """Answer a GET or HEAD for ``rest`` (runs in a worker thread)."""
        segments = [s for s in rest.split("/") if s]
        for seg in segments:
            # "." and ".." and hidden files, Windows separators and drives, NUL.
            if (
                seg.startswith(".")
                or "\\" in seg
                or "\x00" in seg
                or os.path.isabs(seg)
                or os.path.splitdrive(seg)[0]
            ):
                return _not_found()
        try:
            real = os.path.realpath(os.path.join(self.root, *segments))
            if not self._inside(real):
                return _not_found()
            if os.path.isdir(real):
                if not rest.endswith("/"):
                    # Redirect so that relative links in the index page resolve.
                    quoted = "".join("/" + quote(seg) for seg in segments)
                    query = f"?{request.query_string}" if request.query_string else ""
                    return redirect(f"{quote(self.prefix)}{quoted}/{query}", 301)
                name = self.index
                real = os.path.realpath(os.path.join(real, self.index))
                if not self._inside(real):
                    return _not_found()
            elif rest.endswith("/") or not segments:
                return _not_found()
            else:
                name = segments[-1]
        except (OSError, ValueError):
            return _not_found()
        response = _serve_file(real, request, name=name, follow_symlinks=False)
        return response if response is not None else _not_found()


class _AsgiMount:
    """An ASGI application under a path prefix (:meth:`Router.mount`)."""

    def __init__(self, prefix: str, app: ASGIApp) -> None:
        if not prefix.startswith("/") or "{" in prefix or "}" in prefix or prefix.rstrip("/") == "":
            raise ValueError(f"a mount prefix must be a literal path below '/': {prefix!r}")
        self.prefix = prefix.rstrip("/")
        self.app = app

    def matches(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")

    async def respond(self, request: Request) -> Response:
        """A whole request (body read) through the application; its whole response."""
        from ..asgi.http import respond_whole
        from ..asgi.scope import client_address, http_scope
        from ..asgi.server import strip_prefix

        scope = http_scope(
            strip_prefix(request, self.prefix),
            scheme="http",  # the server does not say (the take_request hook will)
            client=client_address(request.remote_address),
            server=None,
            root_path=self.prefix,
        )
        return await respond_whole(self.app, scope, request)


class _HttpRoute:
    def __init__(self, pattern: _Pattern, methods: frozenset[str], handler: HttpRoute) -> None:
        self.pattern = pattern
        self.methods = methods
        self.handler = handler


class _WsRoute:
    def __init__(self, pattern: _Pattern, handler: WebSocketRoute) -> None:
        self.pattern = pattern
        self.handler = handler


class Router:
    """HTTP routes, WebSocket routes and static files for :func:`wsline.serve`.

    Pass the router as the handler: ``wsline.serve(router, host, port)``.

    Route paths match the percent-decoded request path exactly (no trailing
    slash folding); ``{name}`` matches one non-empty path segment and is passed
    to the handler as the keyword argument ``name`` (a ``str``). Routes are
    tried in the order they were added; static mounts are tried (longest
    prefix first) only when no route matches the path.

    HTTP handlers are called as ``handler(request, **params)`` and return a
    :class:`~wsline.protocol.handshake.Response`; they may be ``async def`` or
    plain functions (which run on the event loop, so they must not block). A
    GET route also answers HEAD (the server sends no body). An exception from
    a handler becomes a 500 and goes to ``server.errors``;
    :class:`~wsline.errors.HandshakeRejected` becomes a response with its status.

    Unknown paths get 404, known paths with another method 405 with an
    ``Allow`` header, and plain HTTP requests to a WebSocket-only path 426.
    """

    def __init__(self) -> None:
        self._http: list[_HttpRoute] = []
        self._ws: list[_WsRoute] = []
        self._static: list[_StaticMount] = []
        self._mounts: list[_AsgiMount] = []

    # ------------------------------------------------------------ registration

    def route(self, path: str, methods: Iterable[str] = ("GET",)) -> Callable[[_F], _F]:
        """Decorator: ``handler(request, **params)`` answers ``methods`` on ``path``."""
        if isinstance(methods, str):
            methods = (methods,)
        names = frozenset(m.upper() for m in methods)
        if not names or not all(_TOKEN.fullmatch(m) for m in names):
            raise ValueError(f"invalid methods {tuple(methods)!r}")
        pattern = _Pattern(path)

        def register(handler: _F) -> _F:
            self._http.append(_HttpRoute(pattern, names, handler))
            return handler

        return register

    def get(self, path: str) -> Callable[[_F], _F]:
        """Decorator: a GET (and HEAD) route."""
        return self.route(path, ("GET",))

    def post(self, path: str) -> Callable[[_F], _F]:
        """Decorator: a POST route."""
        return self.route(path, ("POST",))

    def websocket(self, path: str) -> Callable[[_F], _F]:
        """Decorator: ``async handler(ws, **params)`` runs for WebSocket connections to ``path``."""
        pattern = _Pattern(path)

        def register(handler: _F) -> _F:
            self._ws.append(_WsRoute(pattern, handler))
            return handler

        return register

    def static(self, prefix: str, directory: str | os.PathLike[str], *, index: str = "index.html") -> None:
        """Serve the files under ``directory`` at URL ``prefix`` (GET and HEAD only).

        ``router.static("/", directory)`` serves a whole site. A directory
        answers with its ``index`` file if there is one (after a redirect that
        adds a trailing slash), else 404: there are no listings. Paths that
        could leave the directory (``..``, backslashes, NUL, symlinks pointing
        outside) and names starting with ``.`` get 404. Files go through
        :func:`file_response` (ETag, Last-Modified, 304s) in a worker thread.
        """
        mount = _StaticMount(prefix, directory, index)
        self._static.append(mount)
        self._static.sort(key=lambda m: len(m.prefix), reverse=True)

    def mount(self, prefix: str, app: ASGIApp) -> None:
        """Serve the ASGI 3 application ``app`` (FastAPI, Starlette...) under ``prefix``.

        Requests whose path is ``prefix`` or below it go to ``app``, before
        this router's own routes, with ``scope["root_path"]`` set to ``prefix``
        (``scope["path"]`` is the whole path, as the ASGI specification says;
        Starlette and FastAPI route on what follows ``root_path``). The
        application's lifespan is not run: its startup belongs to the program.

        On :func:`wsline.serve` today, plain HTTP requests are served whole:
        the body is read first (up to ``max_body_size``) and the response is
        collected to its end before it is written. Streamed bodies, streamed
        responses and WebSocket routes need the server to hand the connection
        over (:meth:`take_request`, the server's ``take_request`` hook; see
        the TODO there); until then an upgrade to a mounted path gets 501.
        """
        mount = _AsgiMount(prefix, app)
        self._mounts.append(mount)
        self._mounts.sort(key=lambda m: len(m.prefix), reverse=True)

    def _find_mount(self, path: str) -> _AsgiMount | None:
        for mount in self._mounts:
            if mount.matches(path):
                return mount
        return None

    # ------------------------------------------------------------ server hooks

    def take_request(self, request: Request) -> Runner | None:
        """The ``take_request`` hook: a runner for requests under a :meth:`mount` prefix, else ``None``.

        A server with the hook calls it with each request head, before the
        body is read, and hands the connection to the runner (streamed bodies
        and responses, WebSockets through the ASGI WebSocket session).
        TODO(take_request hook): aio/server.py does not call it yet (only
        wsline.asgi.server's request loop does); until it does, mounted
        requests go through :meth:`handle_http` whole, and upgrades get 501.
        """
        mount = self._find_mount(request.path)
        if mount is None:
            return None
        import functools

        from ..asgi.server import run_request

        return functools.partial(run_request, mount.app, request, prefix=mount.prefix)

    async def handle_http(self, request: Request) -> Response:
        """Answer a plain HTTP request (the server's ``http_handler``)."""
        path = request.path
        method = request.method
        if self._mounts:
            asgi_mount = self._find_mount(path)
            if asgi_mount is not None:
                return await asgi_mount.respond(request)
        allowed: set[str] = set()
        for route in self._http:
            params = route.pattern.match(path)
            if params is None:
                continue
            if method in route.methods or (method == "HEAD" and "GET" in route.methods):
                result = route.handler(request, **params)
                if inspect.isawaitable(result):
                    result = await result
                if not isinstance(result, Response):
                    raise TypeError(
                        f"HTTP route {route.pattern.path!r} returned {type(result).__name__}, not a Response"
                    )
                return result
            allowed |= route.methods
            if "GET" in route.methods:
                allowed.add("HEAD")
        if allowed:
            return _method_not_allowed(allowed)
        for mount in self._static:
            rest = mount.rest(path)
            if rest is None:
                continue
            if method not in ("GET", "HEAD"):
                return _method_not_allowed(("GET", "HEAD"))
            return await asyncio.to_thread(mount.serve, rest, request)
        if self._find_ws(path) is not None:
            return text_response(
                "426 Upgrade Required: this is a WebSocket endpoint\n",
                426,
                [("Upgrade", "websocket")],
            )
        return _not_found()

    def check_upgrade(self, request: Request) -> Response | None:
        """Refuse (404) an upgrade request to a path with no WebSocket route."""
        if self._mounts and self._find_mount(request.path) is not None:
            # TODO(take_request hook): served by the mounted application once the
            # server hands the connection over (take_request); refused until then.
            return reject_response(
                501, "501 Not Implemented: a mounted ASGI application's WebSockets need the server hook\n"
            )
        if self._find_ws(request.path) is None:
            return reject_response(404, "404 Not Found: no WebSocket route for this path\n")
        return None

    async def __call__(self, ws: WebSocket) -> None:
        """Run the WebSocket route for ``ws.request.path`` (the server's connection handler)."""
        found = self._find_ws(ws.request.path)
        if found is None:  # only without check_upgrade, e.g. wrapped in another handler
            await ws.close(1008, "no WebSocket route for this path")
            return
        route, params = found
        result = route.handler(ws, **params)
        if inspect.isawaitable(result):
            await result

    def _find_ws(self, path: str) -> tuple[_WsRoute, dict[str, str]] | None:
        for route in self._ws:
            params = route.pattern.match(path)
            if params is not None:
                return route, params
        return None
