"""The daemon's garbage collection (voicegw/memory.py): the periodic full collection
finds reference cycles that young collections never reach, and counts them."""

from __future__ import annotations

import asyncio
import gc

from voicegw.memory import PeriodicCollector


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def make_cycles(n: int) -> None:
    for _ in range(n):
        a, b = Node(), Node()
        a.other, b.other = b, a


def test_collect_finds_cycles_and_counts_them():
    async def main() -> PeriodicCollector:
        collector = PeriodicCollector(asyncio.get_running_loop(), interval=0)
        collector.collect()  # whatever the test session left
        make_cycles(100)
        assert collector.collect() >= 200
        return collector

    gc.disable()  # only the collector's own runs may free the cycles
    try:
        collector = asyncio.run(main())
    finally:
        gc.enable()
    stats = collector.statistics()
    assert stats.runs == 2 and stats.last_found >= 200 and stats.found >= 200
    assert stats.max_pause_ms >= stats.last_pause_ms >= 0


def test_the_collector_runs_on_its_clock_and_stops():
    async def main() -> None:
        collector = PeriodicCollector(asyncio.get_running_loop(), interval=0.01)
        collector.start()
        for _ in range(500):  # bounded: at most 5 s
            if collector.statistics().runs >= 2:
                break
            await asyncio.sleep(0.01)
        collector.stop()
        runs = collector.statistics().runs
        assert runs >= 2
        await asyncio.sleep(0.05)
        assert collector.statistics().runs == runs  # stopped: no timer left

    asyncio.run(main())
