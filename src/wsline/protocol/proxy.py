"""Proxies for the clients, without I/O: which proxy, and the tunnel handshake.

:func:`select_proxy` turns the clients' ``proxy=`` argument into a
:class:`Proxy` (or ``None``): a URL string is that proxy, ``True`` looks at the
environment (``https_proxy`` for ``wss://``, ``http_proxy`` for ``ws://``, then
``all_proxy``; lowercase first; ``no_proxy`` lists hosts to reach directly),
``None`` or ``False`` means no proxy.

:class:`TunnelHandshake` is the exchange that opens a tunnel through the
proxy: an HTTP ``CONNECT`` (``http://`` and ``https://`` proxies) or a SOCKS5
``CONNECT`` (``socks5://``, ``socks5h://``; RFC 1928, with the username and
password of RFC 1929). The client writes :meth:`~TunnelHandshake.data_to_send`,
feeds what it reads to :meth:`~TunnelHandshake.receive_data` until that
returns ``True``, and then runs TLS (for ``wss://``) and the WebSocket
handshake through the tunnel. Failures raise :class:`~wsline.errors.ProxyError`.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import ssl
import struct
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import unquote, urlsplit

from ..errors import InvalidHandshake, ProxyError
from .http11 import Headers, Limits, Response, ResponseParser

__all__ = [
    "Proxy",
    "TunnelHandshake",
    "parse_proxy",
    "proxy_from_environment",
    "bypass_proxy",
    "select_proxy",
    "MAX_RESPONSE_HEAD",
]

#: The largest CONNECT response head accepted from a proxy.
MAX_RESPONSE_HEAD = 16 * 1024

_DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}

# SOCKS5 reply codes (RFC 1928 6) and whether trying again may help.
_SOCKS_REPLIES: dict[int, tuple[str, bool]] = {
    0x01: ("general SOCKS server failure", True),
    0x02: ("connection not allowed by ruleset", False),
    0x03: ("network unreachable", True),
    0x04: ("host unreachable", True),
    0x05: ("connection refused", True),
    0x06: ("TTL expired", True),
    0x07: ("command not supported", False),
    0x08: ("address type not supported", False),
}


@dataclass(frozen=True)
class Proxy:
    """A parsed proxy URL. ``str()`` shows it without the password."""

    #: ``"http"``, ``"https"`` (TLS to the proxy), ``"socks5"`` or ``"socks5h"``.
    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """``host:port`` (IPv6 in brackets), for messages."""
        return f"{_bracket(self.host)}:{self.port}"

    @property
    def tls(self) -> bool:
        """Whether the connection to the proxy itself uses TLS."""
        return self.scheme == "https"

    @property
    def socks(self) -> bool:
        return self.scheme in ("socks5", "socks5h")

    @property
    def remote_dns(self) -> bool:
        """Whether the proxy resolves the target's name (HTTP CONNECT and ``socks5h``)."""
        return self.scheme != "socks5"

    def __str__(self) -> str:
        user = f"{self.username}:***@" if self.username is not None else ""
        return f"{self.scheme}://{user}{self.address}"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def parse_proxy(url: str) -> Proxy:
    """Parse ``scheme://[user:password@]host[:port]``; raises :class:`ValueError`.

    A URL without a scheme (``host:port``) is an ``http://`` proxy. The user
    name and password are percent-decoded. Default ports: 80 (``http``), 443
    (``https``), 1080 (SOCKS).
    """
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid proxy URL {_redact(url)!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(
            f"unsupported proxy scheme {scheme!r} in {_redact(url)!r}; "
            "use http://, https://, socks5:// or socks5h://"
        )
    if not parts.hostname:
        raise ValueError(f"invalid proxy URL {_redact(url)!r}: no host")
    if parts.path not in ("", "/"):
        raise ValueError(f"invalid proxy URL {_redact(url)!r}: a proxy URL has no path")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if username is not None and password is None:
        password = ""
    return Proxy(scheme, parts.hostname, port or _DEFAULT_PORTS[scheme], username, password)


def _redact(url: str) -> str:
    """``url`` with the password (if any) replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        return url
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}{sep}{user}{':***' if colon else ''}@{hostpart}"


# ------------------------------------------------------------------ environment


def proxy_from_environment(secure: bool, environ: Mapping[str, str] | None = None) -> str | None:
    """The proxy URL the environment sets for ``wss://`` (``secure``) or ``ws://``, or ``None``.

    ``https_proxy`` / ``HTTPS_PROXY`` for ``wss://``, ``http_proxy`` /
    ``HTTP_PROXY`` for ``ws://``, then ``all_proxy`` / ``ALL_PROXY``; the
    lowercase name wins and an empty value counts as unset. As in
    :mod:`urllib`, ``HTTP_PROXY`` is ignored in a CGI script (where
    ``REQUEST_METHOD`` is set: a request's ``Proxy:`` header could set it).
    """
    env = os.environ if environ is None else environ
    names = ["https_proxy", "HTTPS_PROXY"] if secure else ["http_proxy", "HTTP_PROXY"]
    names += ["all_proxy", "ALL_PROXY"]
    for name in names:
        if name == "HTTP_PROXY" and "REQUEST_METHOD" in env:
            continue
        value = env.get(name, "").strip()
        if value:
            return value
    return None


def bypass_proxy(host: str, port: int, no_proxy: str | None = None) -> bool:
    """Whether ``host:port`` is to be reached directly according to ``no_proxy``.

    ``no_proxy`` (default: the ``no_proxy`` or ``NO_PROXY`` environment
    variable) is a comma-separated list of: ``*`` (everything); host names,
    which match the name and its subdomains (``example.com`` and
    ``.example.com`` both match ``example.com`` and ``api.example.com``);
    IP addresses and CIDR ranges (``10.0.0.0/8``, ``::1``); any of these
    with ``:port`` (IPv6 in brackets) to match that port only.
    """
    if no_proxy is None:
        no_proxy = os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or ""
    host = host.strip("[]").rstrip(".").lower()
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.replace(" ", ",").split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        entry_host, entry_port = _split_entry(entry)
        if entry_port is not None and entry_port != port:
            continue
        if "/" in entry_host:
            try:
                network = ipaddress.ip_network(entry_host, strict=False)
            except ValueError:
                continue
            if address is not None and address in network:
                return True
            continue
        try:
            entry_address = ipaddress.ip_address(entry_host)
        except ValueError:
            pass  # a name
        else:
            if address == entry_address:
                return True
            continue
        name = entry_host.lstrip("*").lstrip(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _split_entry(entry: str) -> tuple[str, int | None]:
    """Split a ``no_proxy`` entry into host (or network) and port."""
    if entry.startswith("["):
        end = entry.find("]")
        if end > 0:
            rest = entry[end + 1 :]
            port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
            return entry[1:end], port
    if entry.count(":") == 1:  # not a bare IPv6 address
        name, _, port_text = entry.partition(":")
        if port_text.isdigit():
            return name, int(port_text)
    return entry, None


def select_proxy(
    proxy: str | bool | None,
    host: str,
    port: int,
    secure: bool,
    environ: Mapping[str, str] | None = None,
) -> Proxy | None:
    """The proxy to reach ``host:port`` through, for a client's ``proxy=`` argument.

    ``None`` or ``False``: none. A URL string: that proxy (always, whatever
    ``no_proxy`` says). ``True``: the environment's (see
    :func:`proxy_from_environment`), unless :func:`bypass_proxy` says
    ``host:port`` is reached directly. Raises :class:`ValueError` for a bad
    proxy URL.
    """
    if proxy is None or proxy is False:
        return None
    if isinstance(proxy, str):
        return parse_proxy(proxy)
    if proxy is not True:
        raise TypeError(f"proxy must be a URL string, True, False or None, not {type(proxy).__name__}")
    env = os.environ if environ is None else environ
    url = proxy_from_environment(secure, env)
    if url is None:
        return None
    no_proxy = env.get("no_proxy") or env.get("NO_PROXY") or ""
    if bypass_proxy(host, port, no_proxy):
        return None
    return parse_proxy(url)


# ------------------------------------------------------------------- handshake


def build_connect_request(proxy: Proxy, host: str, port: int, user_agent: str | None = None) -> bytes:
    """The HTTP ``CONNECT host:port`` request, with ``Proxy-Authorization`` from the URL's credentials."""
    authority = f"{_bracket(host)}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy.username is not None:
        credentials = f"{proxy.username}:{proxy.password or ''}".encode()
        lines.append(f"Proxy-Authorization: Basic {base64.b64encode(credentials).decode('ascii')}")
    if user_agent:
        lines.append(f"User-Agent: {user_agent}")
    for line in lines:
        if "\r" in line or "\n" in line:
            raise ValueError("CR or LF in the CONNECT request")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def proxy_tls_error(proxy: Proxy, exc: ssl.SSLError) -> ProxyError:
    """The error for a failed TLS handshake with an https:// proxy (never retried)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        text = f"TLS certificate verification failed for proxy {proxy.address}: {exc.verify_message}"
    else:
        text = f"TLS handshake with proxy {proxy.address} failed: {exc}"
    return ProxyError(text, proxy=proxy.address)


class TunnelHandshake:
    """The exchange that opens a tunnel to ``host:port`` through ``proxy`` (sans-I/O).

    Write :meth:`data_to_send` (again after each :meth:`receive_data`: SOCKS5
    takes several round trips); feed what is read to :meth:`receive_data`,
    which returns ``True`` once the tunnel is open; call :meth:`receive_eof`
    when the proxy closes. Every failure raises :class:`ProxyError`.
    :attr:`extra` holds bytes that came after the proxy's answer (a proxy
    should send none: the server speaks only after the client).

    For a ``socks5://`` proxy (the client resolves names), ``host`` must be an
    IP address: resolve it first (see :attr:`Proxy.remote_dns`).
    """

    def __init__(self, proxy: Proxy, host: str, port: int, user_agent: str | None = None) -> None:
        #: The proxy the tunnel goes through.
        self.proxy = proxy
        #: The server's host (a name, or an IP address for ``socks5://``) and port.
        self.host = host
        self.port = port
        #: ``host:port`` as the ``CONNECT`` request names it.
        self.target = f"{_bracket(host)}:{port}"
        #: True once the tunnel is open.
        self.done = False
        #: Bytes that came after the proxy's answer (a proxy should send none).
        self.extra = b""
        #: The proxy's response to CONNECT (HTTP proxies), once it came.
        self.status: int | None = None
        self.headers = Headers()
        self._buffer = bytearray()
        self._received = 0
        # The answer to CONNECT (HTTP proxies); SOCKS5 replies are parsed below.
        self._parser = ResponseParser(
            Limits(max_head=MAX_RESPONSE_HEAD, max_body=0), request_method="CONNECT"
        )
        self._outgoing = bytearray()
        self._step = "http"
        if proxy.socks:
            if len(host.encode("idna")) > 255:
                raise ValueError(f"host name too long for SOCKS5: {host!r}")
            if not proxy.remote_dns:
                try:
                    ipaddress.ip_address(host)
                except ValueError:
                    raise ValueError(f"a socks5:// proxy needs an IP address, not {host!r}") from None
            self._step = "method"
            methods = b"\x00\x02" if proxy.username is not None else b"\x00"
            self._outgoing += bytes([5, len(methods)]) + methods
        else:
            self._outgoing += build_connect_request(proxy, host, port, user_agent)

    def data_to_send(self) -> bytes:
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def receive_data(self, data: bytes) -> bool:
        """Take bytes from the proxy; ``True`` once the tunnel is open."""
        if self.done:
            self.extra += data
            return True
        self._received += len(data)
        if self._step == "http":
            if len(self._buffer) < 80:  # kept only to quote a malformed answer
                self._buffer += data[: 80 - len(self._buffer)]
            self._parser.feed(data)
            self._http_response()
        else:
            self._buffer += data
            while not self.done and self._socks_step():
                pass
        return self.done

    def receive_eof(self, error: BaseException | None = None) -> None:
        """The proxy closed (or reset: ``error``) the connection: an error before the tunnel is open."""
        if self.done:
            return
        got = f" after {self._received} bytes" if self._received else ""
        detail = f": {error}" if error is not None else ""
        raise self._error(
            f"closed the connection{got} before answering CONNECT to {self.target}{detail}", True
        )

    def _error(self, text: str, retriable: bool, status: int | None = None, reason: str = "") -> ProxyError:
        return ProxyError(
            f"proxy {self.proxy.address} {text}",
            proxy=self.proxy.address,
            status=status,
            reason=reason,
            headers=self.headers.items(),
            retriable=retriable,
        )

    # -- HTTP CONNECT

    def _http_response(self) -> None:
        parser = self._parser
        try:
            event = parser.next_event()
        except InvalidHandshake as exc:
            head = bytes(self._buffer)
            if "larger than" in str(exc):
                raise self._error(
                    f"sent a response head larger than {MAX_RESPONSE_HEAD // 1024} KiB", False
                ) from None
            raise self._malformed(head) from None
        if not isinstance(event, Response):
            return  # NEED_DATA: the head is not all here
        if event.status < 200:  # an interim answer (100 Continue...): the real one follows
            self._http_response()
            return
        response = event
        self.status = response.status
        self.headers = response.headers
        status, reason = response.status, response.reason
        if 200 <= status < 300:
            parser.next_event()  # the EndOfMessage of a tunnel's answer: its head is all of it
            self.done = True
            self.extra = parser.trailing_data()
            self._buffer.clear()
            return
        phrase = f"{status} {reason}".rstrip()
        if status == 407:
            challenge = response.headers.get("Proxy-Authenticate")
            asks = f" (it asks for {challenge})" if challenge else ""
            if self.proxy.username is None:
                text = (
                    f"requires authentication: 407 proxy authentication required{asks}; "
                    "put the credentials in the proxy URL: http://user:password@host:port"
                )
            else:
                text = (
                    f"refused the credentials of {self.proxy.username!r}: "
                    f"407 proxy authentication required{asks}"
                )
            raise self._error(text, False, status, reason)
        if status == 403:
            text = f"refused to open a tunnel to {self.target}: {phrase}"
        elif status in (502, 504):
            text = f"could not reach {self.target}: {phrase}"
        else:
            text = f"answered CONNECT {self.target} with {phrase}"
        retriable = status >= 500 or status in (408, 429)
        raise self._error(text, retriable, status, reason)

    def _malformed(self, head: bytes) -> ProxyError:
        line = head.split(b"\r\n", 1)[0][:80]
        return self._error(f"sent a malformed response to CONNECT (is it an HTTP proxy?): {line!r}", False)

    # -- SOCKS5

    def _socks_step(self) -> bool:
        """Handle one complete SOCKS5 message if it came; ``True`` if one was handled."""
        buf = self._buffer
        if self._step == "method":
            if len(buf) < 2:
                return False
            version, method = buf[0], buf[1]
            del buf[:2]
            if version != 5:
                raise self._error(f"is not a SOCKS5 proxy (it answered version {version})", False)
            if method == 0x00:
                self._send_socks_connect()
            elif method == 0x02 and self.proxy.username is not None:
                user = self.proxy.username.encode()
                password = (self.proxy.password or "").encode()
                if len(user) > 255 or len(password) > 255:
                    raise ValueError("SOCKS5 user names and passwords are at most 255 bytes")
                self._outgoing += bytes([1, len(user)]) + user + bytes([len(password)]) + password
                self._step = "auth"
            elif method == 0xFF and self.proxy.username is None:
                raise self._error(
                    "requires authentication: put the credentials in the proxy URL: "
                    "socks5://user:password@host:port",
                    False,
                )
            else:
                raise self._error(f"offered no acceptable authentication method (it chose {method})", False)
            return True
        if self._step == "auth":
            if len(buf) < 2:
                return False
            status = buf[1]
            del buf[:2]
            if status != 0:
                raise self._error(f"refused the credentials of {self.proxy.username!r}", False)
            self._send_socks_connect()
            return True
        # "reply": VER REP RSV ATYP BND.ADDR BND.PORT
        if len(buf) < 5:
            return False
        if buf[0] != 5:
            raise self._error(f"sent a malformed SOCKS5 reply (version {buf[0]})", False)
        rep, atyp = buf[1], buf[3]
        if rep != 0:
            text, retriable = _SOCKS_REPLIES.get(rep, (f"unknown error {rep}", False))
            raise self._error(f"could not connect to {self.target}: {text} (SOCKS5 reply {rep})", retriable)
        sizes = {1: 4, 4: 16}
        if atyp in sizes:
            length = 4 + sizes[atyp] + 2
        elif atyp == 3:
            length = 5 + buf[4] + 2
        else:
            raise self._error(f"sent a malformed SOCKS5 reply (address type {atyp})", False)
        if len(buf) < length:
            return False
        self.done = True
        self.extra = bytes(buf[length:])
        buf.clear()
        return True

    def _send_socks_connect(self) -> None:
        try:
            address = ipaddress.ip_address(self.host)
        except ValueError:
            name = self.host.encode("idna")
            dest = bytes([3, len(name)]) + name
        else:
            dest = (b"\x01" if address.version == 4 else b"\x04") + address.packed
        self._outgoing += b"\x05\x01\x00" + dest + struct.pack("!H", self.port)
        self._step = "reply"
