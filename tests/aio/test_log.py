"""wsline.log: the JSON formatter, configure(), and what wsline logs over real connections."""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import logging
import math
from collections.abc import Iterator
from typing import Any

import pytest

import wsline
from conftest import StartServer, client, ws_url
from wsline import log as wslog
from wsline.log import JSONFormatter, configure


@pytest.fixture(autouse=True)
def clean_wsline_logger() -> Iterator[None]:
    """Restore the ``wsline`` logger (level, handlers, propagation) after each test."""
    logger = logging.getLogger("wsline")
    saved = (logger.level, list(logger.handlers), logger.propagate)
    yield
    for handler in list(logger.handlers):
        if handler not in saved[1]:
            logger.removeHandler(handler)
    logger.setLevel(saved[0])
    logger.propagate = saved[2]


def lines_of(stream: io.StringIO) -> list[dict[str, Any]]:
    text = stream.getvalue()
    assert text.endswith("\n") or text == ""
    return [json.loads(line) for line in text.splitlines()]


def format_record(record: logging.LogRecord, **kwargs: Any) -> dict[str, Any]:
    line = JSONFormatter(**kwargs).format(record)
    assert "\n" not in line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def make_record(msg: Any = "hello %s", args: Any = ("world",), **attrs: Any) -> logging.LogRecord:
    record = logging.LogRecord("wsline.test", logging.INFO, __file__, 1, msg, args, None)
    record.__dict__.update(attrs)
    return record


# ------------------------------------------------------------- JSONFormatter


def test_json_fields() -> None:
    fields = format_record(make_record())
    assert fields["message"] == "hello world"
    assert fields["level"] == "INFO"
    assert fields["logger"] == "wsline.test"
    assert fields["time"].endswith("Z")
    when = datetime.datetime.fromisoformat(fields["time"].replace("Z", "+00:00"))
    assert when.utcoffset() == datetime.timedelta(0)
    assert abs(when.timestamp() - make_record().created) < 5
    assert "conn_id" not in fields and "remote" not in fields and "exc_info" not in fields


def test_json_time_is_utc_iso8601() -> None:
    record = make_record()
    record.created = 0.5
    assert format_record(record)["time"] == "1970-01-01T00:00:00.500000Z"


def test_json_connection_fields_and_prefix() -> None:
    record = make_record(
        "[123-4 127.0.0.1:5000] closing: %s", ("bye",), conn_id="123-4", remote="127.0.0.1:5000"
    )
    fields = format_record(record)
    assert fields["conn_id"] == "123-4"
    assert fields["remote"] == "127.0.0.1:5000"
    assert fields["message"] == "closing: bye"  # the prefix is redundant with the fields


def test_json_extra_fields() -> None:
    fields = format_record(make_record(user="alice", n=3, ratio=0.5, tags=["a"], blob=b"\x00", obj=object()))
    assert fields["user"] == "alice" and fields["n"] == 3 and fields["ratio"] == 0.5
    assert fields["tags"] == ["a"]
    assert fields["blob"] == "b'\\x00'"
    assert fields["obj"].startswith("<object object")
    assert "user" not in format_record(make_record(user="alice"), extra=False)


def test_json_exc_info_and_stack_info() -> None:
    logger = logging.getLogger("wsline.test.exc")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("it failed")
        logger.warning("where am I", stack_info=True)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    first, second = lines_of(stream)
    assert first["level"] == "ERROR" and first["message"] == "it failed"
    assert first["exc_info"].startswith("Traceback (most recent call last)")
    assert "ValueError: boom" in first["exc_info"]
    assert "Stack (most recent call last)" in second["stack_info"]
    assert "exc_info" not in second


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    def __repr__(self) -> str:
        raise RuntimeError("no repr either")


class Circular(dict):  # type: ignore[type-arg]
    pass


@pytest.mark.parametrize(
    "record",
    [
        make_record("%d items", ("many",)),  # wrong type for %d
        make_record("%s and %s", ("one",)),  # too few arguments
        make_record("no placeholders", ("extra",)),
        make_record(Unprintable(), ()),
        make_record("%s", (Unprintable(),)),
        make_record({"a": 1}, None),
        make_record(None, None),
        make_record("x", None, created=None),
        make_record("x", None, created="yesterday"),
        make_record("x", None, levelname=None, name=None),
        make_record("x", None, conn_id=Unprintable(), remote=Unprintable()),
        make_record("x", None, weird=Unprintable()),
        make_record("x", None, tuple_keys={(1, 2): "v"}),
        make_record("x", None, nan=math.nan, inf=math.inf),
        make_record("x", None, exc_info=(None, None, None)),
        make_record("x", None, exc_info=("not", "an", "exc_info")),
        make_record("x", None, exc_text="precomputed traceback"),
        make_record('line one\nline two\r\n"quoted" \x00 \udcff é ✓', None),
    ],
)
def test_json_never_raises_on_odd_records(record: logging.LogRecord) -> None:
    fields = format_record(record)
    assert isinstance(fields["message"], str)
    assert "time" in fields and "level" in fields


def test_json_circular_extra() -> None:
    loop: Circular = Circular()
    loop["self"] = loop
    fields = format_record(make_record("x", None, loop=loop))
    assert fields["message"] == "x" and isinstance(fields["loop"], str)


def test_json_message_round_trips_unicode_and_newlines() -> None:
    text = 'multi\nline "quoted" é ✓'
    assert format_record(make_record(text, None))["message"] == text


def test_json_fixed_keys_win_over_extra() -> None:
    fields = format_record(make_record(time="spoofed", level="spoofed", logger="spoofed"))
    assert fields["level"] == "INFO" and fields["logger"] == "wsline.test" and fields["time"] != "spoofed"


# ---------------------------------------------------------------- configure()


def our_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger("wsline").handlers if getattr(h, "_wsline_configured", False)]


def test_configure_is_idempotent() -> None:
    stream = io.StringIO()
    first = configure("DEBUG", stream=stream)
    second = configure("DEBUG", stream=stream)
    assert our_handlers() == [second] and first is not second
    logging.getLogger("wsline.server").info("once")
    assert stream.getvalue().count("once") == 1


def test_configure_json_and_levels() -> None:
    stream = io.StringIO()
    handler = configure("warning", json=True, stream=stream)
    assert isinstance(handler.formatter, JSONFormatter)
    logger = logging.getLogger("wsline")
    assert logger.level == logging.WARNING
    logging.getLogger("wsline.server").info("hidden")
    logging.getLogger("wsline.server").warning("shown %d", 1)
    assert [line["message"] for line in lines_of(stream)] == ["shown 1"]
    configure(logging.DEBUG, stream=stream)
    assert logger.level == logging.DEBUG
    assert our_handlers()[0].formatter is not None
    assert not isinstance(our_handlers()[0].formatter, JSONFormatter)
    with pytest.raises(ValueError):
        configure("LOUD")


def test_configure_keeps_other_handlers() -> None:
    logger = logging.getLogger("wsline")
    mine = logging.NullHandler()
    logger.addHandler(mine)
    configure(stream=io.StringIO())
    configure(stream=io.StringIO())
    assert mine in logger.handlers and len(our_handlers()) == 1


def test_configure_text_format() -> None:
    stream = io.StringIO()
    configure("INFO", stream=stream)
    logging.getLogger("wsline.server").info("listening on %s", "x")
    assert "INFO wsline.server: listening on x" in stream.getvalue()


# ------------------------------------------------- records from real connections


@pytest.mark.asyncio
async def test_handler_failure_record(start_server: StartServer) -> None:
    stream = io.StringIO()
    configure("DEBUG", json=True, stream=stream)
    ids: list[str] = []

    async def failing(ws: wsline.WebSocket) -> None:
        ids.append(ws.id)
        ws.logger.info("about to fail for %s", "science")
        raise RuntimeError("deliberate")

    server = await start_server(failing)
    async with client(ws_url(server)) as ws:
        with pytest.raises(wsline.ConnectionClosedError):
            await asyncio.wait_for(ws.recv(), 2)
        local = ws.local_address
    assert ws.close_code == 1011
    records = lines_of(stream)
    (info,) = [r for r in records if r["message"] == "about to fail for science"]
    (error,) = [r for r in records if r["level"] == "ERROR"]
    assert info["conn_id"] == ids[0] and error["conn_id"] == ids[0]
    assert info["remote"] == error["remote"] == f"{local[0]}:{local[1]}"
    assert info["logger"] == error["logger"] == "wsline"
    assert error["message"].startswith("handler failed: RuntimeError('deliberate')")
    assert "Traceback" in error["exc_info"] and "RuntimeError: deliberate" in error["exc_info"]
    # the server's connection log lines carry the same id
    assert any(r.get("conn_id") == ids[0] and r["level"] == "DEBUG" for r in records)


@pytest.mark.asyncio
async def test_client_side_records(start_server: StartServer) -> None:
    stream = io.StringIO()
    configure("DEBUG", json=True, stream=stream)
    server = await start_server()
    async with client(ws_url(server)) as ws:
        ws.logger.warning("client says %s", "hi")
    (record,) = [r for r in lines_of(stream) if r["message"] == "client says hi"]
    assert record["conn_id"] == ws.id
    assert record["remote"] == f"127.0.0.1:{server.port}"


class CountingStr:
    def __init__(self) -> None:
        self.calls = 0

    def __str__(self) -> str:
        self.calls += 1
        return "counted"

    __repr__ = __str__


@pytest.mark.asyncio
async def test_disabled_debug_does_no_formatting_work(start_server: StartServer) -> None:
    stream = io.StringIO()
    configure("WARNING", json=True, stream=stream)
    hidden = CountingStr()

    async def chatty(ws: wsline.WebSocket) -> None:
        async for message in ws:
            ws.logger.debug("got %s from %s", message, hidden)
            ws.logger.info("info is hidden too: %r", hidden)
            await ws.send(message)

    server = await start_server(chatty)
    async with client(ws_url(server)) as ws:
        for i in range(20):
            await ws.send(f"m{i}")
            assert await asyncio.wait_for(ws.recv(), 2) == f"m{i}"
        ws.logger.debug("client side %s", hidden)
    assert hidden.calls == 0
    assert stream.getvalue() == ""

    # The control: the same code at DEBUG does format the argument.
    configure("DEBUG", json=True, stream=stream)
    async with client(ws_url(server)) as ws:
        await ws.send("x")
        assert await asyncio.wait_for(ws.recv(), 2) == "x"
    assert hidden.calls >= 2
    assert any(line["message"] == "got x from counted" for line in lines_of(stream))


@pytest.mark.asyncio
async def test_no_records_created_when_disabled(start_server: StartServer) -> None:
    """wsline's own logging calls build no LogRecord for levels that are off."""
    configure("WARNING", stream=io.StringIO())
    made: list[logging.LogRecord] = []
    factory = logging.getLogRecordFactory()

    def counting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        if record.name.startswith("wsline"):
            made.append(record)
        return record

    logging.setLogRecordFactory(counting_factory)
    try:
        server = await start_server()
        for _ in range(3):
            async with client(ws_url(server)) as ws:
                for i in range(10):
                    await ws.send(f"m{i}")
                    await asyncio.wait_for(ws.recv(), 2)
        await server.close()
    finally:
        logging.setLogRecordFactory(factory)
    assert [r.getMessage() for r in made] == []

    # The control: at DEBUG, the same traffic makes records.
    configure("DEBUG", stream=io.StringIO())
    logging.setLogRecordFactory(counting_factory)
    try:
        async with client(ws_url(await start_server())) as ws:
            await ws.send("x")
            await asyncio.wait_for(ws.recv(), 2)
        await asyncio.sleep(0.05)
    finally:
        logging.setLogRecordFactory(factory)
    assert made


def test_module_exports() -> None:
    assert wslog.LOGGER_NAME == "wsline"
    assert set(wslog.__all__) >= {"JSONFormatter", "configure"}


@pytest.mark.asyncio
async def test_frame_level_trace_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """At DEBUG, each message, ping and close in both directions is traced with the connection id."""

    async def handler(ws: wsline.WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    caplog.set_level(logging.DEBUG, logger="wsline")
    async with wsline.serve(handler, "127.0.0.1", 0, compression=None) as server:
        async with wsline.connect(f"ws://127.0.0.1:{server.port}/", compression=None) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01")
            assert await ws.recv() == b"\x00\x01"
            await ws.ping()
    messages = [r.getMessage() for r in caplog.records if r.name == "wsline"]
    text = "\n".join(messages)
    assert "> text message, 5 bytes" in text
    assert "< text message, 5 characters" in text
    assert "> binary message, 2 bytes" in text
    assert "< binary message, 2 bytes" in text
    assert "> ping" in text and "< pong" in text and "< ping" in text
    assert "> close 1000" in text and "< close 1000" in text
    traced = [r for r in caplog.records if r.name == "wsline" and "message," in r.getMessage()]
    assert all(getattr(r, "conn_id", None) for r in traced)
