"""``GET /debug/objects``: what the daemon holds right now, for leak hunting.

Built from the components' ``statistics()`` snapshots (trio style): the engine (calls,
legs, dialogs, handlers, media endpoints, bridges, players, timers, tasks), the UA core
(transactions, dialogs, ACK matching, timer heap), the guard (calls counted per
source), the port pool, what the API itself keeps (ended calls, transfers, the SIP
trace), the prompt cache, the records writer, asyncio (tasks) and the garbage
collector. Every number here should come back to its value before a load once the
calls of that load are over and forgotten; scripts/bench/soak.py samples it and
tests/wire/test_leak_wire.py asserts it.

Two options cost more and are off by default:

- ``instances``: walk every object the garbage collector tracks and count the live
  instances of the engine's classes, the loop's pending timer handles included (tens
  of milliseconds on a busy daemon): a leak that no index shows (an object kept
  by a forgotten reference, or by a reference cycle) shows here;
- ``collect``: run a full collection first and report how many unreachable objects
  it found (reference cycles since the previous one).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import sys
import tracemalloc
from typing import TYPE_CHECKING, Any

from ..engine.call import Call, Leg
from ..engine.outbound import Dialing
from ..engine.transfer_state import Transfer
from ..media.endpoint import MediaEndpoint, RtpSocket
from ..media.player import Player
from ..media.prompts import PROMPTS
from ..media.relay import Bridge
from ..sip.dialog import Dialog
from ..sip.message import Request, Response
from ..sip.transaction import ClientTransaction, ServerTransaction

if TYPE_CHECKING:
    from .control import Control

#: Classes whose live instances ``instances`` counts, by the name reported.
_COUNTED: dict[str, type] = {
    "Call": Call, "Leg": Leg, "Dialing": Dialing, "Transfer": Transfer, "Dialog": Dialog,
    "ServerTransaction": ServerTransaction, "ClientTransaction": ClientTransaction,
    "Request": Request, "Response": Response, "MediaEndpoint": MediaEndpoint,
    "RtpSocket": RtpSocket, "Bridge": Bridge, "Player": Player,
}


def objects_snapshot(control: Control, *, instances: bool = False, collect: bool = False) -> dict[str, Any]:
    """The snapshot ``GET /debug/objects`` serves (plain JSON-able dicts)."""
    daemon = control.daemon
    collector = getattr(daemon, "collector", None)
    found = None
    if collect:
        found = collector.collect() if collector is not None else gc.collect()
    engine = control.engine
    endpoint = getattr(daemon, "endpoint", None)
    core = endpoint.core if endpoint is not None else None
    guard = getattr(daemon, "guard", None)
    store = control.store
    trace_ids, trace_bytes = control.trace.size
    out: dict[str, Any] = {
        "engine": _plain(engine.statistics()),
        "core": _plain(core.statistics()) if core is not None else {},
        "guard": _guard(guard),
        "media": {**_plain(engine.pool.statistics()), "prompt_cache": PROMPTS.statistics()},
        "api": {
            "calls_kept": len(control.recent), "ended_kept": len(control._ended),
            "transfers_kept": len(control.transfers), "transfer_context": len(control.transfer_context),
            "leg_call_ids": len(control.leg_call_ids), "trace_call_ids": trace_ids,
            "trace_bytes": trace_bytes,
        },
        "store": _plain(store.writer.statistics()) if store is not None else {},
        "asyncio": {"tasks": len(asyncio.all_tasks())},
        "python": _python_heap(),
        "gc": {
            "counts": list(gc.get_count()), "frozen": gc.get_freeze_count(),
            "collections": [s["collections"] for s in gc.get_stats()],
            "collected": sum(s["collected"] for s in gc.get_stats()),
            "uncollectable": sum(s["uncollectable"] for s in gc.get_stats()),
            "periodic": _plain(collector.statistics()) if collector is not None else None,
            "found_now": found,
        },
    }
    if instances:
        out["instances"] = _instances()
    return out


def _python_heap() -> dict[str, int | None]:
    """pymalloc's allocated blocks (cheap, always), and with ``PYTHONTRACEMALLOC`` set
    the bytes Python allocated now and at peak: what the calls held cost, apart from
    what the allocator keeps (RSS)."""
    traced = tracemalloc.get_traced_memory() if tracemalloc.is_tracing() else (None, None)
    return {"allocated_blocks": sys.getallocatedblocks(), "traced_kib": traced[0] and traced[0] // 1024,
            "traced_peak_kib": traced[1] and traced[1] // 1024}


def _guard(guard: Any) -> dict[str, int]:
    """What the guard tracks: calls up (per caller source) and source addresses."""
    if guard is None:
        return {}
    stats = guard.statistics()
    return {"calls": stats.calls, "sources": stats.sources}


def _instances() -> dict[str, int]:
    """Live instances of the counted classes, players still sending, unfinished tasks,
    and the loop's timers pending more than a second ahead (the calls' timers: answer,
    refer and session timeouts, the 32 s forget; the loop's own short ticks, the API
    server's and the lag monitors', are left out, they come and go), by walking the
    collector's objects."""
    loop = asyncio.get_running_loop()
    probe = loop.call_later(3600, lambda: None)
    timer_type = type(probe)
    probe.cancel()
    horizon = loop.time() + 1.0
    wanted = {cls: name for name, cls in _COUNTED.items()}
    counts = dict.fromkeys(_COUNTED, 0)
    timers = tasks = players = 0
    for obj in gc.get_objects():
        kind = type(obj)
        name = wanted.get(kind)
        if name is not None:
            counts[name] += 1
            if kind is Player and obj.running:
                players += 1
        elif kind is timer_type:
            if not obj.cancelled() and obj.when() > horizon:
                timers += 1
        elif isinstance(obj, asyncio.Task) and not obj.done():
            tasks += 1
    return {**counts, "players_running": players, "pending_timers": timers, "tasks": tasks}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)
