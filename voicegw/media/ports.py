"""The RTP port pool: even ports of a configured range, RTCP on the next odd port.

RFC 3550 section 11: "For UDP and similar protocols, RTP SHOULD use an even
destination port number and the corresponding RTCP stream SHOULD use the next higher
(odd) destination port number". Pure bookkeeping: binding happens in the relay, which
hands a port back (and tries the next) when the OS says it is taken.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


class PortPoolExhausted(Exception):
    """Every RTP port of the pool is in use: the call cannot get media (answer 503)."""

    status = 503


@dataclass(frozen=True, slots=True)
class PortPoolStatistics:
    size: int
    in_use: int
    allocations: int
    exhaustions: int


class PortPool:
    """Even RTP ports in [low, high]; ``allocate()`` gives one, ``release()`` takes it
    back.

    Free ports are handed out least-recently-released first, so a port just freed is
    not reused while stray packets of the old call may still arrive on it.
    """

    def __init__(self, low: int, high: int) -> None:
        if low % 2:
            low += 1
        if not 1024 <= low < high <= 65535:
            raise ValueError(f"bad RTP port range {low}-{high}")
        self.low, self.high = low, high
        # An RTP port p is usable only if p + 1 (RTCP) is in the range too: p < high.
        self._free: deque[int] = deque(range(low, high, 2))
        if not self._free:
            raise ValueError(f"RTP port range {low}-{high} holds no RTP/RTCP pair")
        self._used: set[int] = set()
        self._size = len(self._free)
        self._allocations = 0
        self._exhaustions = 0

    def allocate(self) -> int:
        """An even RTP port; its RTCP port is the result + 1."""
        if not self._free:
            self._exhaustions += 1
            raise PortPoolExhausted(f"no free RTP port in {self.low}-{self.high}")
        port = self._free.popleft()
        self._used.add(port)
        self._allocations += 1
        return port

    def release(self, port: int) -> None:
        if port not in self._used:
            raise ValueError(f"RTP port {port} is not allocated")
        self._used.remove(port)
        self._free.append(port)

    def __len__(self) -> int:
        """Free ports left."""
        return len(self._free)

    def statistics(self) -> PortPoolStatistics:
        return PortPoolStatistics(self._size, len(self._used), self._allocations,
                                  self._exhaustions)
