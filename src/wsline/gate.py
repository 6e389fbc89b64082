"""Gatekeeping hooks for ``serve(process_request=...)``: tokens and origin checks.

Each hook takes the :class:`~wsline.protocol.handshake.Request` and returns a
:class:`~wsline.protocol.handshake.Response` to refuse it (403) or ``None`` to
let it through. They act on WebSocket upgrade requests only: plain HTTP
requests (a page served by ``http_handler`` on the same port, which browsers
load without an ``Origin`` header) always pass. Combine hooks with
:func:`chain`::

    signer = TokenSigner(secret, ttl=30)
    serve(handler, host, port, process_request=chain(same_origin(), require_token(signer)))

Tokens come from :meth:`TokenSigner.issue` (e.g. in the page that opens the
WebSocket) and travel in the query string: ``ws://host/chat?token=...``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import inspect
import math
import re
import secrets
import struct
import time
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from .errors import WebSocketError
from .protocol.handshake import Request, Response, reject_response

__all__ = [
    "Hook",
    "InvalidToken",
    "TokenSigner",
    "require_token",
    "allow_origins",
    "same_origin",
    "chain",
]

#: A ``process_request`` hook: returns a Response to answer with, or None to go on.
Hook = Callable[[Request], "Response | Awaitable[Response | None] | None"]

_VERSION = 1
_HEADER = struct.Struct(">BQ")  # format version, expiry (whole seconds since the epoch)
_DOMAIN = b"wsline-token-v1."  # domain separation: these MACs sign nothing else
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_MAX_TOKEN_LENGTH = 4096
_MIN_SECRET_BYTES = 16


class InvalidToken(WebSocketError):
    """A token failed :meth:`TokenSigner.verify`.

    ``reason`` is one of ``"malformed"``, ``"bad signature"``, ``"expired"``
    and ``"wrong subject"``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid token: {reason}")
        self.reason = reason


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    """Strict base64url without padding: only the canonical encoding is accepted."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise InvalidToken("malformed")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed") from None
    if _b64encode(data) != text:  # non-zero padding bits: another spelling of the same bytes
        raise InvalidToken("malformed")
    return data


class TokenSigner:
    """Issues and verifies short-lived, HMAC-SHA256 signed tokens.

    A token is ``<payload>.<signature>`` in base64url without padding; the
    payload holds a version byte, the expiry time (whole seconds) and the
    subject (UTF-8). Tokens are signed, not encrypted: the subject is readable
    by whoever holds the token. ``secret`` must be at least 16 bytes (a ``str``
    is UTF-8 encoded; :meth:`generate_secret` makes one), and every process
    that verifies the tokens needs the same one. ``ttl`` is how long a token is
    valid, in seconds (a positive number). ``clock`` returns the current time
    in seconds (:func:`time.time`; a test can pass its own). A bad ``secret``
    or ``ttl`` raises :class:`ValueError`.
    """

    def __init__(
        self, secret: bytes | str, ttl: float = 60.0, *, clock: Callable[[], float] = time.time
    ) -> None:
        key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(key) < _MIN_SECRET_BYTES:
            raise ValueError(
                f"the secret must be at least {_MIN_SECRET_BYTES} bytes; use TokenSigner.generate_secret()"
            )
        if not (isinstance(ttl, (int, float)) and math.isfinite(ttl) and ttl > 0):
            raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
        self._key = key
        self.ttl = float(ttl)
        self.clock = clock

    def __repr__(self) -> str:
        return f"TokenSigner(ttl={self.ttl:g})"  # never show the secret

    @staticmethod
    def generate_secret(nbytes: int = 32) -> str:
        """A random secret (URL-safe text, ``nbytes`` of randomness) for the constructor."""
        if nbytes < _MIN_SECRET_BYTES:
            raise ValueError(f"a secret needs at least {_MIN_SECRET_BYTES} bytes")
        return secrets.token_urlsafe(nbytes)

    def _sign(self, payload: str) -> bytes:
        return hmac.new(self._key, _DOMAIN + payload.encode("ascii"), "sha256").digest()

    def issue(self, subject: str = "", now: float | None = None) -> str:
        """A token for ``subject``, valid for ``ttl`` seconds from ``now`` (default: the clock).

        The expiry is rounded up to a whole second, so a token is valid for at
        least ``ttl`` seconds and less than ``ttl + 1``.
        """
        if not isinstance(subject, str):
            raise TypeError(f"the subject must be a str, not {type(subject).__name__}")
        issued = self.clock() if now is None else now
        expires = math.ceil(issued + self.ttl)
        if not 0 <= expires < 2**64:
            raise ValueError(f"cannot issue a token expiring at {expires}")
        payload = _b64encode(_HEADER.pack(_VERSION, expires) + subject.encode("utf-8"))
        return f"{payload}.{_b64encode(self._sign(payload))}"

    def verify(self, token: str, subject: str | None = None, now: float | None = None) -> str:
        """Check ``token``; return its subject, or raise :class:`InvalidToken`.

        The signature is checked first (in constant time), then the expiry
        (a token is expired from its expiry second on), then ``subject`` if given.
        """
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_LENGTH:
            raise InvalidToken("malformed")
        payload, sep, signature = token.partition(".")
        if not sep or not payload or not signature:
            raise InvalidToken("malformed")
        mac = _b64decode(signature)
        data = _b64decode(payload)
        if not hmac.compare_digest(mac, self._sign(payload)):
            raise InvalidToken("bad signature")
        if len(data) < _HEADER.size:
            raise InvalidToken("malformed")
        version, expires = _HEADER.unpack_from(data)
        if version != _VERSION:
            raise InvalidToken("malformed")
        try:
            token_subject = data[_HEADER.size :].decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidToken("malformed") from None
        current = self.clock() if now is None else now
        if current >= expires:
            raise InvalidToken("expired")
        if subject is not None and not hmac.compare_digest(
            subject.encode("utf-8", "surrogatepass"), token_subject.encode("utf-8")
        ):
            raise InvalidToken("wrong subject")
        return token_subject


def _forbidden(reason: str) -> Response:
    return reject_response(403, reason + "\n")


def require_token(signer: TokenSigner, param: str = "token") -> Callable[[Request], Response | None]:
    """A hook that admits upgrade requests carrying a valid token in query parameter ``param``.

    The token is checked with ``signer`` (:meth:`TokenSigner.verify`). A
    missing, invalid or expired token gets 403 with a short reason. Handlers
    that need the subject can verify ``ws.request.query[param]`` again.
    """

    def check_token(request: Request) -> Response | None:
        if not request.is_upgrade:
            return None
        token = request.query.get(param)
        if not token:
            return _forbidden("missing token")
        try:
            signer.verify(token)
        except InvalidToken as exc:
            return _forbidden(str(exc))
        return None

    return check_token


_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")


def _normalize_host(host: str) -> str | None:
    host = host.lower()
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    return host


def _parse_origin(value: str) -> tuple[str, str, int | None] | None:
    """``(scheme, host, port)`` of a serialized origin (port None if absent), or None if invalid."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if (
        not _SCHEME.fullmatch(scheme)
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "?" in value
        or "#" in value
    ):
        return None
    host = _normalize_host(parts.hostname)
    if host is None:
        return None
    return scheme, host, port


def _normalize_origin(value: str) -> str | None:
    """The canonical form of a serialized origin, or None if it is not one."""
    parsed = _parse_origin(value)
    if parsed is None:
        return None
    scheme, host, port = parsed
    if port == _DEFAULT_PORTS.get(scheme):
        port = None
    netloc = f"[{host}]" if ":" in host else host
    return f"{scheme}://{netloc}" if port is None else f"{scheme}://{netloc}:{port}"


def _request_origin(request: Request) -> tuple[str | None, Response | None]:
    """The request's single Origin value, or the refusal to answer with."""
    values = request.headers.get_all("Origin")
    if len(values) > 1:
        return None, _forbidden("more than one Origin header")
    return (values[0] if values else None), None


def allow_origins(
    origins: Iterable[str], *, allow_missing: bool = False
) -> Callable[[Request], Response | None]:
    """A hook that admits upgrade requests whose ``Origin`` is one of ``origins``.

    Origins compare after normalization (lowercase scheme and host, default
    ports dropped): ``https://Example.com:443`` matches ``https://example.com``.
    Requests without ``Origin`` (non-browser clients) pass only with
    ``allow_missing``. Raises ValueError if an entry of ``origins`` is not an
    origin (``scheme://host[:port]``; ``"null"`` is refused: any sandboxed page
    can send it).
    """
    allowed: set[str] = set()
    for origin in [origins] if isinstance(origins, str) else origins:
        normalized = _normalize_origin(origin) if isinstance(origin, str) else None
        if normalized is None:
            raise ValueError(f"{origin!r} is not an origin like 'https://example.com[:port]'")
        allowed.add(normalized)

    def check_origin(request: Request) -> Response | None:
        if not request.is_upgrade:
            return None
        origin, refusal = _request_origin(request)
        if refusal is not None:
            return refusal
        if origin is None:
            return None if allow_missing else _forbidden("missing Origin header")
        if _normalize_origin(origin) in allowed:
            return None
        return _forbidden("origin not allowed")

    return check_origin


def _parse_host(value: str) -> tuple[str, int | None] | None:
    """``(host, port)`` of a Host header value (port None if absent), or None if invalid."""
    parsed = _parse_origin("http://" + value.strip())
    return None if parsed is None else (parsed[1], parsed[2])


def same_origin(*, allow_missing: bool = False) -> Callable[[Request], Response | None]:
    """A hook that admits upgrade requests whose ``Origin`` names the host they were sent to.

    The origin's host and port must match the ``Host`` header; the scheme may
    be http or https (a proxy may terminate TLS), and an origin without a port
    stands for its scheme's default one (80 or 443), which matches a ``Host``
    without a port. This stops other sites' pages from opening connections in
    a visitor's browser (cross-site WebSocket hijacking); it does not stop
    non-browser clients, which may send any headers. Behind a proxy that
    rewrites ``Host``, use :func:`allow_origins`. Requests without ``Origin``
    pass only with ``allow_missing``.
    """

    def check_same_origin(request: Request) -> Response | None:
        if not request.is_upgrade:
            return None
        origin, refusal = _request_origin(request)
        if refusal is not None:
            return refusal
        if origin is None:
            return None if allow_missing else _forbidden("missing Origin header")
        parsed = _parse_origin(origin)
        hosts = request.headers.get_all("Host")
        target = _parse_host(hosts[0]) if len(hosts) == 1 else None
        if parsed is None or target is None or parsed[0] not in ("http", "https"):
            return _forbidden("cross-origin request")
        scheme, host, port = parsed
        default = _DEFAULT_PORTS[scheme]
        origin_port = default if port is None else port
        host_name, host_port = target
        if host != host_name:
            return _forbidden("cross-origin request")
        if host_port is None:
            matches = origin_port == default
        else:
            matches = origin_port == host_port
        return None if matches else _forbidden("cross-origin request")

    return check_same_origin


def chain(*hooks: Hook) -> Callable[[Request], Awaitable[Response | None]]:
    """A hook that runs ``hooks`` in order (sync or async); the first Response wins.

    The combined hook is a coroutine function (``serve`` awaits it).
    """
    for hook in hooks:
        if not callable(hook):
            raise TypeError(f"{hook!r} is not callable")

    async def run_chain(request: Request) -> Response | None:
        for hook in hooks:
            result = hook(request)
            if inspect.isawaitable(result):
                result = await result
            if result is None:
                continue
            if not isinstance(result, Response):
                raise TypeError(f"hook {hook!r} returned {type(result).__name__}, not a Response or None")
            return result
        return None

    return run_chain
