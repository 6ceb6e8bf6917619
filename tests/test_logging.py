"""The daemon's log lines (voicegw/logging.py): one JSON object per line with the
event, its fields, the bound context, the level and a UTC ISO timestamp, exceptions
formatted, values JSON does not know written as their repr(); levels below the
configured one are not written."""

from __future__ import annotations

import io
import json
from datetime import datetime

import structlog
from structlog.contextvars import bound_contextvars

from voicegw import logging as vlogging


class Odd:
    def __repr__(self) -> str:
        return "<odd>"


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_carries_event_fields_context_level_and_utc_time() -> None:
    stream = io.StringIO()
    before = structlog.get_config()
    vlogging.configure("info", stream=stream, fields={"worker": 1})
    try:
        log = structlog.get_logger("test")
        with bound_contextvars(call_id="c1"):
            log.info("sip.request", method="INVITE", odd=Odd(), text="é")
        log.debug("sip.response", status=200)  # below info: not written
        log.warning("store.backlog", queued=3)
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("engine.failed")
    finally:
        structlog.configure(**before)
    first, warned, failed = lines(stream)
    assert list(first) == ["method", "odd", "text", "event", "worker", "call_id", "level", "timestamp"]
    assert (first["event"], first["odd"], first["text"], first["level"]) == ("sip.request", "<odd>", "é", "info")
    assert first["timestamp"].endswith("Z")
    assert datetime.fromisoformat(first["timestamp"].replace("Z", "+00:00")).utcoffset().total_seconds() == 0
    assert (warned["event"], warned["level"], warned["queued"]) == ("store.backlog", "warning", 3)
    assert failed["level"] == "error" and "ValueError: boom" in failed["exception"]
    assert "\\u00e9" in stream.getvalue().splitlines()[0]  # ASCII lines, as before


def test_the_timestamp_is_the_time_of_the_line_in_utc_with_microseconds() -> None:
    """The date and time of day are formatted once a second (logging._timestamp): each
    line still carries its own time, across a second's boundary too."""
    import re
    import time

    stamps = []
    for _ in range(3):
        before = time.time()
        stamp = vlogging._timestamp()
        after = time.time()
        stamps.append(stamp)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp)
        when = datetime.fromisoformat(stamp).timestamp()
        assert before - 1e-6 <= when <= after
        vlogging._second[0] = None  # the next one formats its second again
    assert stamps == sorted(stamps)
