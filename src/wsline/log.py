"""Logging helpers: a JSON formatter and a one-call setup for the ``wsline`` loggers.

wsline logs through the standard :mod:`logging` module, under the ``wsline``
logger (``wsline.server``, ...). Records about a connection carry ``conn_id``
and ``remote`` attributes (see ``WebSocket.logger``). Nothing is printed unless
the application configures logging, e.g.::

    wsline.log.configure("DEBUG", json=True)
"""

from __future__ import annotations

import datetime
import json as _json
import logging
import sys
from typing import IO, Any

__all__ = ["JSONFormatter", "configure", "LOGGER_NAME"]

#: The parent of every wsline logger.
LOGGER_NAME = "wsline"

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_FIXED_KEYS = ("time", "level", "logger", "message", "conn_id", "remote", "exc_info", "stack_info")


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - a log record must never make logging fail
        return object.__repr__(value)


def _json_default(value: object) -> str:
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 - a log record must never make logging fail
        return object.__repr__(value)


class JSONFormatter(logging.Formatter):
    """Formats each record as one JSON object on one line.

    Keys: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``; then
    ``conn_id`` and ``remote`` when the record has them (the connection's
    ``[id address]`` prefix is then removed from ``message``), ``exc_info``
    and ``stack_info`` (formatted tracebacks) when present, and any other
    attributes given through ``extra`` (values JSON cannot encode become their
    ``repr``). Formatting never raises: a record whose message cannot be built
    is still logged, with what could be recovered.
    """

    def __init__(self, *, extra: bool = True) -> None:
        super().__init__()
        self.include_extra = extra

    def format(self, record: logging.LogRecord) -> str:
        try:
            return self._dumps(self._fields(record))
        except Exception as exc:  # noqa: BLE001 - the last resort
            return _json.dumps(
                {
                    "time": self._time(record),
                    "level": "ERROR",
                    "logger": LOGGER_NAME,
                    "message": f"wsline.log: cannot format a log record: {exc!r}",
                }
            )

    def _time(self, record: logging.LogRecord) -> str:
        try:
            when = datetime.datetime.fromtimestamp(float(record.created), datetime.timezone.utc)
        except Exception:  # noqa: BLE001 - an odd record: a bad ``created``
            when = datetime.datetime.now(datetime.timezone.utc)
        return when.isoformat(timespec="microseconds").replace("+00:00", "Z")

    def _message(self, record: logging.LogRecord) -> str:
        try:
            return record.getMessage()
        except Exception as exc:  # noqa: BLE001 - msg % args failed, or a __str__ raised
            args = getattr(record, "args", None)
            return (
                f"{_safe_str(getattr(record, 'msg', ''))} % {_safe_str(args)} "
                f"(log message formatting failed: {_safe_str(exc)})"
            )

    def _fields(self, record: logging.LogRecord) -> dict[str, Any]:
        message = self._message(record)
        record.message = message
        fields: dict[str, Any] = {
            "time": self._time(record),
            "level": _safe_str(getattr(record, "levelname", "")),
            "logger": _safe_str(getattr(record, "name", "")),
            "message": message,
        }
        conn_id = getattr(record, "conn_id", None)
        if conn_id is not None:
            fields["conn_id"] = _safe_str(conn_id)
            remote = getattr(record, "remote", None)
            prefix = f"[{fields['conn_id']}" + ("]" if remote is None else f" {_safe_str(remote)}]")
            if message.startswith(prefix):
                fields["message"] = message[len(prefix) :].lstrip(" ")
        remote = getattr(record, "remote", None)
        if remote is not None:
            fields["remote"] = _safe_str(remote)
        if getattr(record, "exc_info", None):
            try:
                if not record.exc_text:
                    record.exc_text = self.formatException(record.exc_info)  # type: ignore[arg-type]
                fields["exc_info"] = record.exc_text
            except Exception as exc:  # noqa: BLE001 - a broken exc_info tuple
                fields["exc_info"] = f"<cannot format the exception: {_safe_str(exc)}>"
        elif getattr(record, "exc_text", None):
            fields["exc_info"] = _safe_str(record.exc_text)
        if getattr(record, "stack_info", None):
            fields["stack_info"] = _safe_str(record.stack_info)
        if self.include_extra:
            for key, value in record.__dict__.items():
                if key not in _RECORD_ATTRS and key not in _FIXED_KEYS and not key.startswith("_"):
                    fields[key] = value
        return fields

    @staticmethod
    def _dumps(fields: dict[str, Any]) -> str:
        try:
            return _json.dumps(fields, default=_json_default, allow_nan=False)
        except (TypeError, ValueError):
            # e.g. a dict with tuple keys, or a circular structure, given in ``extra``.
            safe = {k: (v if isinstance(v, str) else _json_default(v)) for k, v in fields.items()}
            return _json.dumps(safe, allow_nan=False)


def configure(
    level: int | str = "INFO",
    *,
    json: bool = False,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send the ``wsline`` loggers' records at ``level`` and above to ``stream`` (default: stderr).

    Attaches one :class:`logging.StreamHandler` to the ``wsline`` logger,
    formatting as JSON lines with ``json=True`` or as text otherwise, and sets
    the logger's level. Calling it again replaces the handler it attached
    before (never duplicates it). Returns the handler. Records still propagate
    to the root logger as usual.
    """
    if isinstance(level, str):
        name = level.upper()
        numeric = logging.getLevelName(name)
        if not isinstance(numeric, int):
            raise ValueError(f"unknown logging level {level!r}")
        level = numeric
    logger = logging.getLogger(LOGGER_NAME)
    for old in list(logger.handlers):
        if getattr(old, "_wsline_configured", False):
            logger.removeHandler(old)
            old.close()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if json:
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler._wsline_configured = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler
