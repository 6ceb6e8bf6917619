"""The off-loop writer: the event loop enqueues, one thread writes.

The engine's listeners run on the signalling path, so :meth:`Writer.put` does no I/O
and never blocks: it appends to a ``queue.SimpleQueue`` (a C deque under the GIL).
The thread takes what is queued, up to ``batch_max`` entries, applies them in one
transaction and commits; while it commits, new entries pile up and form the next
batch, so the number of commits (fsyncs) falls as the load rises.

Backlog. Nothing is dropped while the store is open: a burst, a slow disk or a
PostgreSQL outage make the queue longer, never a record shorter ("never a lost call or
record"). ``max_queue`` is a high-water mark instead of a bound: past it the writer is
*backlogged* (:meth:`backlogged`, asked by the daemon's admission of new INVITEs), new
calls are refused with 503 ``store_backlog`` (sip/refusal.py) until the queue is back
under half of it, while the calls already up keep recording (their entries are what is
left to come, so memory stays bounded by the calls up). Each episode logs
``store.backlog`` on entry and ``store.backlog_cleared`` on exit and is counted
(``statistics()``: ``backlogs``, ``peak_queued``). Only a put() after :meth:`close`
is refused (counted in ``dropped``, logged): the daemon stops recording last.

Linger (group commit). A commit costs about the same for one entry as for fifty (the
transaction, the WAL write and its fsync), and at a modest call rate the entries come
one by one: so once the thread has taken what is queued, it waits ``linger`` (20 ms)
for more before it commits, unless someone waits for a commit (:meth:`durable`,
:meth:`flush`, :meth:`close` cut the wait short). A crash may thus lose up to 20 ms
more of what was queued, never anything a caller awaited (the barrier below).

Failed batch. The batch is rolled back and replayed one entry per transaction, so
one bad entry costs only itself (counted in ``failed``).

Outage (PostgreSQL). When the batch failed because the server is gone (the connection
is lost: ``conn.lost()``), nothing is replayed or counted as failed: the batch is kept,
and the thread waits (0.2 s doubling to 5 s), reconnects (``reconnect``, which also
takes the run's lock again) and retries the same batch until it commits. Meanwhile
``put`` goes on queueing, so calls never wait: past ``max_queue`` new calls are refused
(Backlog, above), and everything queued is written when the server is back.
:meth:`durable` waiters wait for the retry (the engine bounds its wait: b2bua.recorded);
:meth:`close` gives up after its timeout.

A COMMIT cut mid-way. The connection can drop after the server committed but before
its answer arrived: the writer cannot tell from here whether the batch is in. Each of
its transactions is numbered and sets ``runs.committed`` to its number inside the
transaction, so after reconnecting the writer reads ``committed`` back: at the batch's
number or past it, the batch is in and is not applied again (the timeline gets no
duplicate event, no counter or list is bumped twice); below it, it is retried.

Durability barrier. Entries are numbered as they are enqueued; :meth:`flush` (blocking)
and :meth:`durable` (awaitable) return once everything enqueued before the call has
been committed (or given up on), which lets a caller write before it acts.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import structlog

from .dialect import dialect_of
from .records import Entry, apply_batch

log = structlog.get_logger("voicegw.store")

_STOP = object()


@dataclass
class WriterStatistics:
    queued: int
    enqueued: int
    written: int
    dropped: int
    failed: int
    batches: int
    largest_batch: int
    last_commit_ms: float
    outages: int = 0
    """Times the database went away under the writer (each retried until it came back)."""
    backlogs: int = 0
    """Times the queue passed ``max_queue`` (new calls refused until it was under half)."""
    peak_queued: int = 0
    """The longest the queue has been (as seen by put())."""
    backlogged: bool = False
    max_commit_ms: float = 0.0
    """The longest batch (BEGIN to COMMIT) so far."""
    apply_s: float = 0.0
    """Seconds spent applying batches (the statements, on the writer thread)."""
    commit_s: float = 0.0
    """Seconds spent in COMMIT (SQLite: the WAL write, and its fsync with synchronous=full)."""
    durable_waits: int = 0
    """Awaits of :meth:`Writer.durable` that had to wait (a transfer's, b2bua.recorded)."""
    durable_ms_mean: float = 0.0
    durable_ms_max: float = 0.0


class Writer:
    def __init__(self, conn: Any, run_id: int, *, max_queue: int = 10_000, batch_max: int = 500,
                 log_every: int = 1000, linger: float = 0.02,
                 apply: Callable[[Any, int, Entry], None] | None = None,
                 apply_many: Callable[[Any, int, list[Entry]], None] = apply_batch,
                 reconnect: Callable[[], Any] | None = None,
                 on_commit: Callable[[], None] | None = None) -> None:
        """``apply_many`` applies a batch's entries (records.apply_batch); ``apply``, when
        given, one entry at a time instead (tests); ``on_commit`` is called on the
        writer thread after each committed batch (SQLite: checkpoint.Checkpointer)."""
        self.conn = conn
        self._reconnect = reconnect
        self._on_commit = on_commit
        self._begin = dialect_of(conn).begin
        self._abandon = threading.Event()
        self.run_id = run_id
        self.max_queue = max_queue
        self.batch_max = batch_max
        self.log_every = log_every
        self.linger = linger
        self._hurry = threading.Event()
        """Set by whoever waits for a commit (durable, flush, close): no lingering then."""
        if apply is not None:
            def each(c: Any, run: int, entries: list[Entry], one: Callable[[Any, int, Entry], None] = apply) -> None:
                for entry in entries:
                    one(c, run, entry)
            apply_many = each
        self._apply = apply_many
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="voicegw-store-writer", daemon=True)
        self._cond = threading.Condition()
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._closing = False
        # counters written by the loop thread (enqueued, dropped) or the writer (the rest)
        self.enqueued = 0
        self.dropped = 0
        self.done = 0
        self.written = 0
        self.failed = 0
        self.batches = 0
        self.largest_batch = 0
        self.last_commit_ms = 0.0
        self.max_commit_ms = 0.0
        self.apply_s = 0.0
        self.commit_s = 0.0
        self.durable_waits = 0
        self.durable_s = 0.0
        self.durable_ms_max = 0.0
        self.outages = 0
        self.backlogs = 0
        self.peak_queued = 0
        self._backlogged = False
        self._number = 0  # the last transaction's number (runs.committed), with a reconnect

    def start(self) -> None:
        self._thread.start()

    # ------------------------------------------------------------------ loop side
    def put(self, entry: Entry) -> bool:
        """Queue ``entry``; False only after :meth:`close`. Never blocks, never touches disk."""
        if self._closing:
            return self._drop(entry, "closed")
        self._queue.put(entry)
        self.enqueued += 1
        depth = self._queue.qsize()
        if depth > self.peak_queued:  # noqa: PLR1730 (a compare is cheaper than max() here)
            self.peak_queued = depth
        if depth >= self.max_queue and not self._backlogged:
            self.backlogged()  # logs the episode now, not at the next INVITE
        return True

    def backlogged(self) -> bool:
        """True from when the queue reaches ``max_queue`` until it is under half of it:
        new calls wait (the daemon refuses them, module docstring: Backlog)."""
        depth = self._queue.qsize()
        if self._backlogged:
            if depth < self.max_queue // 2:
                self._backlogged = False
                log.warning("store.backlog_cleared", queued=depth, peak_queued=self.peak_queued)
        elif depth >= self.max_queue:
            self._backlogged = True
            self.backlogs += 1
            log.warning("store.backlog", queued=depth, max_queue=self.max_queue, backlogs=self.backlogs,
                        last_commit_ms=round(self.last_commit_ms, 3))
        return self._backlogged

    def _drop(self, entry: Entry, why: str) -> bool:
        self.dropped += 1
        if self.dropped == 1 or self.dropped % self.log_every == 0:
            log.warning("store.dropped", why=why, dropped=self.dropped, event_name=entry.event.name,
                        call_key=entry.call_key, queued=self._queue.qsize())
        return False

    async def durable(self) -> None:
        """Return once every entry enqueued so far is committed (or given up on)."""
        target = self.enqueued
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if self.done >= target or not self._thread.is_alive():
                return
            self._waiters.append((target, loop, future))
        self._hurry.set()
        started = loop.time()
        try:
            await future
        finally:  # (a caller's timeout cancels the await: counted too, as long as it lasted)
            waited = loop.time() - started
            self.durable_waits += 1
            self.durable_s += waited
            if waited * 1000 > self.durable_ms_max:
                self.durable_ms_max = waited * 1000

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every entry enqueued so far is committed; False on timeout."""
        target = self.enqueued
        self._hurry.set()
        with self._cond:
            return self._cond.wait_for(lambda: self.done >= target or not self._thread.is_alive(), timeout)

    def close(self, timeout: float = 10.0) -> bool:
        """Write what is queued, stop the thread; False when it did not finish in time."""
        if not self._closing:
            self._closing = True
            self._queue.put(_STOP)
            self._hurry.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            self._abandon.set()  # an outage retry loop stops (its batch is lost: logged)
        return not self._thread.is_alive()

    def statistics(self) -> WriterStatistics:
        return WriterStatistics(self._queue.qsize(), self.enqueued, self.written, self.dropped,
                                self.failed, self.batches, self.largest_batch, round(self.last_commit_ms, 3),
                                self.outages, self.backlogs, self.peak_queued, self._backlogged,
                                round(self.max_commit_ms, 3), round(self.apply_s, 3), round(self.commit_s, 3),
                                self.durable_waits,
                                round(self.durable_s * 1000 / self.durable_waits, 3) if self.durable_waits else 0.0,
                                round(self.durable_ms_max, 3))

    # ------------------------------------------------------------------ writer thread
    def _run(self) -> None:
        stop = False
        while not stop:
            batch: list[Entry] = []
            stop = self._take(batch, self._queue.get())
            if not stop and len(batch) < self.batch_max and self.linger:
                # group commit (module docstring: Linger): a commit costs the same for one
                # entry as for fifty, so let the next few arrive unless someone waits
                self._hurry.wait(self.linger)
                self._hurry.clear()
                try:
                    stop = self._take(batch, self._queue.get_nowait())
                except queue.Empty:
                    pass
            if batch:
                self._write(batch)
            self._advance(len(batch))
        late = []  # put() raced close(): entries queued behind the stop mark
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                late.append(item)
        if late:
            self._write(late)
            self._advance(len(late))
        self._release_waiters()

    def _take(self, batch: list[Entry], item: Any) -> bool:
        """``item`` and what else is queued into ``batch`` (up to ``batch_max``); True at
        the stop mark."""
        while True:
            if item is _STOP:
                return True
            batch.append(item)
            if len(batch) >= self.batch_max:
                return False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False

    def _write(self, batch: list[Entry]) -> None:
        started = time.perf_counter()
        try:
            self._transaction(batch, self._next())
            self.written += len(batch)
            if self._on_commit is not None:
                self._on_commit()
        except Exception as error:
            if self._lost():
                self._outage(batch, error)
            else:
                self._replay(batch, error)
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        self.last_commit_ms = (time.perf_counter() - started) * 1000
        if self.last_commit_ms > self.max_commit_ms:  # noqa: PLR1730
            self.max_commit_ms = self.last_commit_ms

    def _replay(self, batch: list[Entry], error: Exception) -> None:
        log.error("store.batch_failed", error=repr(error), entries=len(batch))
        for entry in batch:  # one transaction per entry: a bad one costs only itself
            try:
                self._transaction([entry], self._next())
                self.written += 1
            except Exception as entry_error:
                self.failed += 1
                if self.failed == 1 or self.failed % self.log_every == 0:
                    log.error("store.entry_failed", error=repr(entry_error), event_name=entry.event.name,
                              call_key=entry.call_key, failed=self.failed)

    def _lost(self) -> bool:
        lost = getattr(self.conn, "lost", None)
        return self._reconnect is not None and lost is not None and bool(lost())

    def _outage(self, batch: list[Entry], error: Exception) -> None:
        """Reconnect and retry ``batch`` until it commits (module docstring: Outage)."""
        self.outages += 1
        number = self._number  # the cut transaction's: the retry keeps it
        down = time.monotonic()
        log.error("store.outage", error=repr(error), entries=len(batch), queued=self._queue.qsize())
        delay = 0.2
        while not self._abandon.wait(delay):
            delay = min(delay * 2, 5.0)
            try:
                if self._lost():
                    self.conn.close()
                    assert self._reconnect is not None
                    self.conn = self._reconnect()
                if self._committed() >= number:
                    log.warning("store.commit_was_in", entries=len(batch), transaction=number)
                else:
                    self._transaction(batch, number)
            except Exception as retry_error:
                if self._lost():
                    continue
                log.error("store.batch_failed", error=repr(retry_error), entries=len(batch))
                self.failed += len(batch)
                return
            self.written += len(batch)
            log.warning("store.reconnected", down_s=round(time.monotonic() - down, 1),
                        queued=self._queue.qsize())
            return
        self.failed += len(batch)
        log.error("store.outage_abandoned", entries=len(batch), queued=self._queue.qsize())

    def _next(self) -> int | None:
        """The next transaction's number; None where no COMMIT can be cut (SQLite: no
        reconnect, a COMMIT either returns or the process is gone)."""
        if self._reconnect is None:
            return None
        self._number += 1
        return self._number

    def _committed(self) -> int:
        row = self.conn.execute("SELECT committed FROM runs WHERE id = ?", (self.run_id,)).fetchone()
        return int(row[0]) if row is not None else 0

    def _transaction(self, entries: list[Entry], number: int | None = None) -> None:
        conn = self.conn
        batch = getattr(conn, "batch", None)  # PostgreSQL: pipeline mode (dialect.PgConnection)
        try:
            with batch() if batch is not None else nullcontext():
                started = time.perf_counter()
                conn.execute(self._begin)
                self._apply(conn, self.run_id, entries)
                if number is not None:  # in the same transaction: in if and only if the batch is
                    conn.execute("UPDATE runs SET committed = ? WHERE id = ?", (number, self.run_id))
                applied = time.perf_counter()
                conn.execute("COMMIT")
                self.commit_s += time.perf_counter() - applied
                self.apply_s += applied - started
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _advance(self, count: int) -> None:
        with self._cond:
            self.done += count
            self._cond.notify_all()
            ready = [w for w in self._waiters if w[0] <= self.done]
            self._waiters = [w for w in self._waiters if w[0] > self.done]
        for _, loop, future in ready:
            _resolve(loop, future)

    def _release_waiters(self) -> None:
        with self._cond:
            waiters, self._waiters = self._waiters, []
            self._cond.notify_all()
        for _, loop, future in waiters:
            _resolve(loop, future)


def _resolve(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    def set_result() -> None:
        if not future.done():
            future.set_result(None)
    try:
        loop.call_soon_threadsafe(set_result)
    except RuntimeError:  # the loop is closed: nobody waits any more
        pass
