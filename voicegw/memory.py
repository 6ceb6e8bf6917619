"""The daemon's garbage collection: tuned for latency, with a full collection on a clock.

Signalling allocates many short-lived objects, and full collections over everything
loaded at start-up showed as 40-50 ms latency spikes at 3,000 requests/s. So
start-up objects move out of the collector's sight (``gc.freeze``) and the young
generation is collected less often (``tune_gc``).

Those settings alone left the oldest generation to CPython's own rule, which collects
it only when the objects promoted since the last full collection exceed a quarter of
the ones that survived it, a count taken before the freeze (the whole start-up heap).
In practice it almost never ran (issue 16): every object of a call caught in a
reference cycle stayed, and the daemon grew by 25-85 KB per call. The engine no
longer builds such cycles (see the commits that name them); :class:`PeriodicCollector`
is the backstop for whatever still does: a full collection every
``lifecycle.gc_interval`` seconds (60 by default), on the loop, with what it found and how long it took counted for
``GET /debug/objects``.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger("voicegw.memory")

GC_INTERVAL = 60.0
"""Seconds between full collections by default (``lifecycle.gc_interval``). A full collection walks every object that is
not frozen (calls in progress and the last ones the API keeps): tens of ms at the
rates of scripts/bench/soak.py, once a minute."""


def _malloc_trim() -> Callable[[], int] | None:
    """glibc's ``malloc_trim(0)``, or None on another C library. Objects over 512
    bytes (SIP messages as bytes, the trace's copies) come from malloc, whose heap
    keeps the pages freed in its middle until trimmed."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


MALLOC_TRIM = _malloc_trim()


def tune_gc() -> None:
    """Fewer, cheaper young collections; start-up objects out of the collector's
    sight. The full collections are :class:`PeriodicCollector`'s."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


@dataclass(slots=True)
class CollectorStatistics:
    runs: int = 0
    found: int = 0
    """Unreachable objects the full collections found (reference cycles): 0 while no
    code path leaves cycles behind."""
    last_found: int = 0
    trimmed: int = 0
    """Collections after which malloc_trim gave memory back to the system."""
    last_pause_ms: float = 0.0
    max_pause_ms: float = 0.0


class PeriodicCollector:
    """A full collection every ``interval`` seconds (0: never), as one loop timer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float = GC_INTERVAL) -> None:
        self._loop = loop
        self.interval = interval
        self._handle: asyncio.TimerHandle | None = None
        self.stats = CollectorStatistics()

    def start(self) -> None:
        if self.interval > 0 and self._handle is None:
            self._handle = self._loop.call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def collect(self) -> int:
        """One full collection now, then the C heap trimmed (what the collection freed
        goes back to the system instead of staying as RSS); the number of unreachable
        objects it found."""
        started = time.perf_counter()
        found = gc.collect()
        if MALLOC_TRIM is not None and MALLOC_TRIM():
            self.stats.trimmed += 1
        pause = (time.perf_counter() - started) * 1000
        stats = self.stats
        stats.runs += 1
        stats.found += found
        stats.last_found = found
        stats.last_pause_ms = round(pause, 2)
        stats.max_pause_ms = max(stats.max_pause_ms, stats.last_pause_ms)
        if found:
            log.info("gc.cycles", found=found, pause_ms=stats.last_pause_ms)
        return found

    def _tick(self) -> None:
        self._handle = None
        self.collect()
        self.start()

    def statistics(self) -> CollectorStatistics:
        return CollectorStatistics(**{name: getattr(self.stats, name) for name in CollectorStatistics.__slots__})
