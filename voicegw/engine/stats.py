"""What the engine holds right now, as a trio-style snapshot (``Engine.statistics()``).

Counted from the engine's own indexes and the calls it still keeps (in progress, or
ended and kept ``Engine.FORGET_AFTER`` seconds for late retransmissions), so that a
leak shows as a number that does not come back down once the calls are over: the
control API serves it at ``GET /debug/objects``, scripts/bench/soak.py samples it,
tests/wire/test_leak_wire.py asserts it returns to its baseline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass

from ..media.plane import BRIDGES, PLAYERS
from ..media.ports import PortPool
from .call import Call, CallState


@dataclass(frozen=True, slots=True)
class EngineStatistics:
    calls: int
    """Calls indexed: in progress, or ended and kept for late retransmissions."""
    active_calls: int
    ended_kept: int
    legs: int
    """Legs of the indexed calls."""
    dialogs: int
    """Dialogs the engine routes in-dialog requests by."""
    transaction_handlers: int
    """Client transactions whose responses the engine waits for (or keeps to ACK a
    retransmitted 2xx)."""
    media_endpoints: int
    """RTP/RTCP socket pairs open (taken from the port pool)."""
    bridges: int
    """Open bridges of the indexed calls."""
    players: int
    """Players still sending on the indexed calls (prompts, ringback, hold)."""
    timers: int
    """Loop timers the calls hold: named call timers and outgoing legs' no-answer timers."""
    tasks: int
    """asyncio tasks the engine spawned and that have not finished."""
    transfers_in_flight: int
    total_calls: int
    answered: int
    failed: int


def engine_statistics(calls: Collection[Call], *, tasks: Collection[asyncio.Task[object]],
                      dialogs: int, handlers: int, pool: PortPool,
                      totals: dict[str, int]) -> EngineStatistics:
    """The snapshot from the engine's indexes (it passes them: this module does not
    import the engine, tests/test_layers.py)."""
    calls = list(calls)
    active = sum(1 for c in calls if c.state is not CallState.ENDED)
    legs = bridges = players = timers = running = transfers = 0
    for call in calls:
        call_legs = call.legs()
        legs += len(call_legs)
        timers += len(call.timers)  # ring timers included (engine/executor.py)
        running += sum(1 for task in call.tasks if not task.done())
        for resource in call.resources:
            if isinstance(resource, BRIDGES) and not resource.closed:
                bridges += 1
            elif isinstance(resource, PLAYERS) and resource.running:
                players += 1
        transfer = call.transfer
        if transfer is not None and not transfer.done:
            transfers += 1
            if transfer.player is not None and transfer.player.running and transfer.player not in call.resources:
                players += 1
    running += sum(1 for task in tasks if not task.done())
    return EngineStatistics(
        calls=len(calls), active_calls=active, ended_kept=len(calls) - active, legs=legs,
        dialogs=dialogs, transaction_handlers=handlers,
        media_endpoints=pool.statistics().in_use, bridges=bridges, players=players,
        timers=timers, tasks=running, transfers_in_flight=transfers,
        total_calls=totals.get("calls", 0), answered=totals.get("answered", 0),
        failed=totals.get("failed", 0),
    )
