"""HTTP on the WebSocket port: :class:`Router`, the response helpers and static files.

The public face of :mod:`wsline.aio.router` (where they are implemented)::

    from wsline.http import Router, html_response, json_response
"""

from .aio.router import (
    HeadersLike,
    HttpRoute,
    Router,
    WebSocketRoute,
    file_response,
    guess_content_type,
    html_response,
    json_response,
    redirect,
    text_response,
)

__all__ = [
    "HeadersLike",
    "HttpRoute",
    "Router",
    "WebSocketRoute",
    "file_response",
    "guess_content_type",
    "html_response",
    "json_response",
    "redirect",
    "text_response",
]
