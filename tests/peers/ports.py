"""Ports for the peers of a test that nothing else takes between picking and binding.

A port is picked in the test process and bound later by another one (sipp, the daemon,
a PBX), after it was written into a command line or a config. A port picked by binding
port 0 lies in the kernel's ephemeral range (``ip_local_port_range``), where every
client socket of every process on the machine lands too: in CI a sipp bot lost its port
that way (errno 98, EADDRINUSE). So every port handed out here is

- outside the ephemeral range, where the kernel gives out no port by itself: first
  above it, where no benchmark's or soak's daemon has its RTP range either
  (scripts/bench: 10000-32000; such a daemon binds the ports of its range as calls
  come, with no lease: a test daemon whose RTP block lay inside that range found every
  pair taken while one ran, 503 "no free RTP port", and another's SIP port was taken
  before it bound it), then below it;
- leased: an ``flock`` on ``<tmp>/voicegw-test-ports/<port>``, so that no other test
  process (pytest-xdist workers, other checkouts' runs) hands it out meanwhile. The
  lock's file descriptor is not inherited by subprocesses and dies with this process;
- free to bind right now (UDP, and TCP where SIP listens on both).

A lease lasts until the end of the test that took it (``leases_of_test``, an autouse
fixture in conftest.py; by then its peer has bound it or is gone) or, when taken outside
a test (a module's PBX) or with ``keep``, for the test process's life.
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HOST = "127.0.0.1"
LOCK_DIR = Path(tempfile.gettempdir()) / "voicegw-test-ports"


def _ephemeral() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[:2]
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


EPHEMERAL_LOW, EPHEMERAL_HIGH = _ephemeral()
_TOP = EPHEMERAL_LOW if EPHEMERAL_LOW >= 16384 else 32768
"""Where the pool ends: the ephemeral range's start (on a box whose range starts too
low to leave room below it, the leases alone keep the test processes apart)."""
_SPLIT = 10000 + (_TOP - 10000) * 3 // 5
SINGLE = (10000, _SPLIT)
"""Where single ports (SIP, control API, ng) come from when ``HIGH_SINGLE`` is full."""
BLOCKS = (_SPLIT, _TOP)
"""Where blocks (RTP ranges) come from when ``HIGH_BLOCKS`` is full; each kind takes the
other's when full."""
_ABOVE = EPHEMERAL_HIGH + 1 if EPHEMERAL_HIGH <= 64535 else None
_HIGH_SPLIT = _ABOVE + (65536 - _ABOVE) * 2 // 3 if _ABOVE is not None else 0
HIGH_BLOCKS = (_ABOVE, _HIGH_SPLIT) if _ABOVE is not None else BLOCKS
HIGH_SINGLE = (_HIGH_SPLIT, 65536) if _ABOVE is not None else SINGLE
"""Above the ephemeral range (61000-65535 with Linux's default, two thirds for blocks):
where every lease comes from first (a box whose range leaves less than 1000 ports
above it: ``BLOCKS`` and ``SINGLE``)."""

_held: dict[int, int] = {}
"""Leased port -> the file descriptor holding its lock."""
_kept: set[int] = set()
"""Leases kept for the process's life."""


def udp_free(port: int, host: str = HOST) -> bool:
    return _bindable(socket.SOCK_DGRAM, port, host)


def tcp_free(port: int, host: str = HOST) -> bool:
    return _bindable(socket.SOCK_STREAM, port, host)


def _bindable(kind: int, port: int, host: str) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _lease(port: int) -> bool:
    if port in _held:
        return False
    LOCK_DIR.mkdir(exist_ok=True)
    fd = os.open(LOCK_DIR / str(port), os.O_CREAT | os.O_RDWR, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # another process holds it
        os.close(fd)
        return False
    _held[port] = fd
    return True


def _release(port: int) -> None:
    fd = _held.pop(port, None)
    _kept.discard(port)
    if fd is not None:
        os.close(fd)  # drops the flock


def _take(start: int, count: int, host: str, tcp: bool, keep: bool) -> bool:
    """Lease ``start``..``start+count-1`` if every one is unleased and bindable."""
    block = range(start, start + count)
    taken: list[int] = []
    for port in block:
        if not _lease(port):
            break
        taken.append(port)
        if not udp_free(port, host) or (tcp and not tcp_free(port, host)):
            break
    else:
        if keep:
            _kept.update(block)
        return True
    for port in taken:
        _release(port)
    return False


def lease_block(count: int, ranges: tuple[tuple[int, int], ...], *, host: str = HOST,
                tcp: bool = False, even: bool = False, keep: bool = False) -> int:
    """The first of ``count`` consecutive leased ports in one of ``ranges``: random
    tries first (parallel tests rarely meet), then every start in turn (when something
    holds ports all over a range: a PBX benchmark on the same box took ~1900)."""
    step = 2 if even else 1
    for low, high in ranges:
        for _ in range(100):
            start = random.randrange(low, high - count) // step * step
            if _take(start, count, host, tcp, keep):
                return start
    for low, high in ranges:
        for start in range(low + low % step, high - count, step):
            if _take(start, count, host, tcp, keep):
                return start
    raise RuntimeError(f"no {count} consecutive free ports in {ranges}")


def free_port(host: str = HOST, *, keep: bool = False) -> int:
    """A leased port free for both UDP and TCP on ``host`` (SIP listens on both)."""
    return lease_block(1, (HIGH_SINGLE, SINGLE, HIGH_BLOCKS, BLOCKS), host=host, tcp=True, keep=keep)


def free_ports(count: int, host: str = HOST) -> int:
    """The first of ``count`` consecutive leased ports, each free for UDP and TCP."""
    return lease_block(count, (HIGH_SINGLE, SINGLE, HIGH_BLOCKS, BLOCKS), host=host, tcp=True)


def free_block(count: int, *, reserve: bool = False) -> int:
    """The first (even, as RTP wants) of ``count`` consecutive leased UDP ports;
    ``reserve``: kept for the process's life (a PBX's RTP range, bound only when a call
    needs it)."""
    return lease_block(count, (HIGH_BLOCKS, BLOCKS, HIGH_SINGLE, SINGLE), even=True, keep=reserve)


@contextmanager
def leases_of_test() -> Iterator[None]:
    """Release, at the end, the leases taken inside (and not kept)."""
    before = set(_held)
    try:
        yield
    finally:
        for port in set(_held) - before - _kept:
            _release(port)
