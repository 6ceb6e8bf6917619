"""Structured logs: one JSON object per line on stderr, via structlog.

Event names are stable and dotted (``sip.request``, ``daemon.started``); context is
fields, never formatted into the message. Tests read them with
``structlog.testing.capture_logs()`` or by parsing the daemon's stderr.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import TextIO

import structlog

LEVELS = ("debug", "info", "warning", "error")


def configure(level: str = "info", stream: TextIO | None = None,
              fields: Mapping[str, object] | None = None) -> None:
    """Send structlog events at ``level`` and above to ``stream`` as JSON lines, each
    with ``fields`` (a worker's ``{"worker": I}``: the workers share one stderr)."""
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    fixed = dict(fields or {})

    def add_fields(_: object, __: str, event: dict[str, object]) -> dict[str, object]:
        event.update(fixed)
        return event

    structlog.configure(
        processors=[
            *((add_fields,) if fixed else ()),
            structlog.contextvars.merge_contextvars,
            render_line,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        # one write() per line (PrintLogger's print() writes the newline apart): the
        # workers of ``voicegw run --workers N`` share one stderr, and two writes per
        # line let their lines interleave
        logger_factory=structlog.WriteLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=True,
    )


_MAP_LEVEL = {"warn": "warning", "exception": "error"}
_encode = json.JSONEncoder(default=lambda value: _plain(value)).encode
"""One encoder for every line: ``json.dumps`` with any keyword builds a new one per call."""


def _plain(value: object) -> object:
    structlog_form = getattr(value, "__structlog__", None)  # as structlog's JSONRenderer
    return structlog_form() if structlog_form is not None else repr(value)


_second: list[object] = [None, ""]  # (the last whole second formatted, its text)


def _timestamp() -> str:
    """Now as ISO 8601 in UTC with microseconds and "Z" (what TimeStamper(fmt="iso",
    utc=True) wrote), the date and time of day formatted once a second: a third of
    the cost of ``datetime.now(timezone.utc).isoformat()``."""
    now = time.time()
    second = int(now)
    if second != _second[0]:
        _second[0], _second[1] = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_second[1]}.{int((now - second) * 1_000_000):06d}Z"


def render_line(_: object, method: str, event: dict[str, object]) -> str:
    """The line: what structlog's add_log_level, TimeStamper(fmt="iso", utc=True),
    format_exc_info and JSONRenderer made of ``event``, in one processor (one log line
    per SIP request is on the signalling path: four processor calls and a JSON encoder
    built per line were a third of its cost)."""
    event["level"] = _MAP_LEVEL.get(method, method)
    event["timestamp"] = _timestamp()
    if "exc_info" in event:
        event = structlog.processors.format_exc_info(None, method, event)
    return _encode(event)


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)
