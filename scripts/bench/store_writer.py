#!/usr/bin/env python3
"""Records store benchmark: how many entries (and calls) per second the batching
writer commits, on SQLite and on PostgreSQL (issue 14 item 4).

Each call is the entries a transferred call records (voicegw/store/records.py): the
call's start, the bot leg dialled, ringing and answered, the call connected, two ACKs,
a transfer started, ringing and succeeded, the agent leg answered, the call ended, and
its SIP ladder (12 messages) - 14 entries. All calls are queued at once (the queue is
made big enough: nothing dropped) and the clock runs until the writer has committed the
last one (``flush``): the writer's throughput with batches as large as it makes them
(``batch_max`` 500), which is its ceiling under any load. A short trickle phase then
queues one call at a time and waits for it to be durable: the commit latency a
transfer waits for (b2bua.recorded).

SQLite: a file in a temp dir (WAL, ``--synchronous normal``, the default: no fsync in
a commit; ``full``: one per batch; checkpoints on their own thread). ``--busy``
runs a thread of pure Python beside the writer for the whole run, as the daemon's
event loop is at 100 calls/s: the writer then gets the GIL only when that thread
lets it go (sys.getswitchinterval()), which is what the daemon's writer sees. PostgreSQL:
``--dsn`` (an existing server: it writes into that database, use an empty one), else a
throwaway cluster on loopback (tests/peers/postgres.py: fsync=off, so the figure is the
writer's and the server's CPU, not a disk's; say which when quoting it).

    .venv/bin/python scripts/bench/store_writer.py                      # both, 2,000 calls
    .venv/bin/python scripts/bench/store_writer.py --backend sqlite --synchronous full --busy
    .venv/bin/python scripts/bench/store_writer.py --backend postgres --calls 10000
    .venv/bin/python scripts/bench/store_writer.py --dsn 'host=db1 dbname=bench user=vg'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from voicegw.engine.events import (  # noqa: E402
    CallConnected,
    CallEnded,
    CallStarted,
    LegAcked,
    LegAnswered,
    LegDialing,
    LegProgress,
    TransferProgress,
    TransferStarted,
    TransferSucceeded,
)
from voicegw.store import PgStore, RecordStore, Store  # noqa: E402

LADDER = tuple({"at": 1000.0 + i, "direction": "in" if i % 2 else "out", "peer": "udp:127.0.0.1:5062",
                "sip_call_id": "c", "first_line": "INVITE sip:x@h SIP/2.0",
                "message": "INVITE sip:x@h SIP/2.0\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n"} for i in range(12))
EVENTS = (
    CallStarted("udp:127.0.0.1:5062", "sip:demo@127.0.0.1", "alice", "main"),
    LegDialing("bot", "sip:bot@127.0.0.1:5070"), LegProgress("bot", 180), LegAnswered("bot"),
    CallConnected("answered", ""), LegAcked("caller"), LegAcked("bot"),
    TransferStarted("t1", "invite", "sip:agent@pbx", "flow"), TransferProgress("t1", 180),
    TransferSucceeded("t1", 200, "connected"), LegAnswered("agent"), CallEnded("hung up", "caller hung up"),
)
PER_CALL = len(EVENTS) + 1  # and the ladder


def queue_call(store: RecordStore, n: int, prefix: str) -> None:
    key, call_id = f"{prefix}{n};t", f"{prefix}{n}"
    for event in EVENTS:
        store.record(key, call_id, event)
    store.save_ladder(key, call_id, list(LADDER))


def run(store: RecordStore, calls: int, trickle: int) -> dict:
    started = time.perf_counter()
    for n in range(calls):
        queue_call(store, n, "b")
    queued = time.perf_counter() - started
    assert store.flush(600), "the writer did not finish"
    elapsed = time.perf_counter() - started
    stats = store.writer.statistics()
    assert (stats.dropped, stats.failed) == (0, 0), stats

    async def durable_latency() -> list[float]:
        waits = []
        for n in range(trickle):
            queue_call(store, n, "d")
            t0 = time.perf_counter()
            await store.durable()
            waits.append((time.perf_counter() - t0) * 1000)
        return waits

    waits = asyncio.run(durable_latency())
    return {"backend": store.backend, "calls": calls, "entries": calls * PER_CALL,
            "seconds": round(elapsed, 3), "entries_per_s": round(calls * PER_CALL / elapsed),
            "calls_per_s": round(calls / elapsed), "enqueue_us_per_entry": round(queued / (calls * PER_CALL) * 1e6, 2),
            "batches": stats.batches, "largest_batch": stats.largest_batch,
            "apply_s": stats.apply_s, "commit_s": stats.commit_s, "max_commit_ms": stats.max_commit_ms,
            "durable_ms_median": round(statistics.median(waits), 2) if waits else None,
            "durable_ms_max": round(max(waits), 2) if waits else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--trickle", type=int, default=50, help="calls of the durable-latency phase")
    parser.add_argument("--dsn", help="an existing PostgreSQL server (default: a throwaway cluster)")
    parser.add_argument("--synchronous", choices=("normal", "full"), default="normal", help="SQLite's")
    parser.add_argument("--busy", action="store_true", help="a thread of pure Python beside the writer (the loop)")
    args = parser.parse_args()
    halt = threading.Event()
    if args.busy:
        def spin() -> None:
            while not halt.is_set():
                sum(range(1000))

        threading.Thread(target=spin, name="busy-loop", daemon=True).start()
    size = args.calls * PER_CALL + args.trickle * PER_CALL + 1
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="vg-bench-") as tmp:
            store = Store.open(Path(tmp) / "voicegw.db", max_queue=size, synchronous=args.synchronous)
            try:
                print(json.dumps({**run(store, args.calls, args.trickle), "synchronous": args.synchronous,
                                  "busy": args.busy}), flush=True)
            finally:
                store.close()
    if args.backend in ("postgres", "both"):
        cluster = None
        if args.dsn:
            dsn = args.dsn
        else:
            from peers.postgres import PgCluster

            cluster = PgCluster().init()
            dsn = cluster.database()
        try:
            store = PgStore.open(dsn, max_queue=size)
            try:
                print(json.dumps({**run(store, args.calls, args.trickle),
                                  "server": "throwaway cluster (fsync=off)" if cluster else "--dsn"}), flush=True)
            finally:
                store.close()
        finally:
            if cluster is not None:
                cluster.close()
    halt.set()


if __name__ == "__main__":
    main()
