"""Ladders packed off the writer thread.

An ended call's SIP ladder is stored compressed (records.pack_ladder: JSON, then
zlib). ``zlib.compress`` releases the GIL while it deflates, and on the writer thread
that cost far more than the work: at 100 calls/s the event loop holds the GIL most of
the time, so the writer got it back only at the loop's next switch (up to
``sys.getswitchinterval()``, 5 ms) after every ladder, and a batch with ladders took
that much longer to commit, with every transfer waiting on it (b2bua.recorded). So
:meth:`RecordStore.save_ladder` hands the ladder to this thread, which packs it and
queues the packed entry for the writer; the deflate itself runs beside the loop, on
the other core.

A ladder is saved seconds after its call ended and nothing waits for it:
:meth:`RecordStore.durable` does not wait for ladders still being packed;
:meth:`RecordStore.flush` and ``close`` do (``drain``). A ladder that cannot be
packed is queued as it is: the writer's failed-entry path counts and logs it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import structlog

from .records import Entry, Ladder, pack_ladder

log = structlog.get_logger("voicegw.store")

_STOP = object()


class LadderPacker:
    def __init__(self, put: Callable[[Entry], bool]) -> None:
        """``put``: the writer's put (what a packed ladder is handed to)."""
        self._put = put
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="voicegw-store-packer", daemon=True)
        self._closing = False
        self.queued = 0  # written by the loop's thread only
        self.packed = 0  # written by the packer's thread only (under _cond)

    def start(self) -> None:
        self._thread.start()

    def put(self, entry: Entry) -> bool:
        """Queue a ladder's entry (the loop's thread: no I/O, never blocks). After
        :meth:`close`, straight to the writer (which refuses it once closed)."""
        if self._closing or not self._thread.is_alive():
            return self._put(entry)
        self.queued += 1
        self._queue.put(entry)
        return True

    def drain(self, timeout: float | None = None) -> bool:
        """Block until every ladder queued so far is in the writer's queue."""
        target = self.queued
        with self._cond:
            return self._cond.wait_for(lambda: self.packed >= target or not self._thread.is_alive(), timeout)

    def close(self, timeout: float = 10.0) -> bool:
        """Pack what is queued, then stop; False when it did not finish in time."""
        if not self._closing:
            self._closing = True
            self._queue.put(_STOP)
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            entry = self._queue.get()
            if entry is _STOP:
                return
            self._put(self._pack(entry))
            with self._cond:
                self.packed += 1
                self._cond.notify_all()

    @staticmethod
    def _pack(entry: Entry) -> Entry:
        event = entry.event
        if not isinstance(event, Ladder) or event.packed is not None:
            return entry
        try:
            packed = pack_ladder(event.messages)
        except Exception as error:  # noqa: BLE001 - a message that is not JSON: the writer logs it
            log.error("store.ladder_unpacked", error=repr(error), call_key=entry.call_key)
            return entry
        return entry._replace(event=Ladder((), packed))
