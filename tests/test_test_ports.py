"""The test peers' ports (tests/peers/ports.py): outside the kernel's ephemeral range
(above it first, then below it), so no client socket lands on one
between picking and binding; a port leased here is not
handed out by another test process while the lease holds; leases of a test end with it.
Checked with a second Python process that leases from the same pool."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from peers import ports

TESTS = Path(__file__).resolve().parent

_OTHER = """
import sys
sys.path.insert(0, {tests!r})
from peers import ports
wanted = {wanted!r}
# the other process asks for exactly the leased ports: refused, each one
print(all(not ports._take(p, 1, ports.HOST, True, False) for p in wanted))
print(ports.free_port() not in wanted)
"""


def _other_process(wanted: list[int]) -> list[str]:
    code = _OTHER.format(tests=str(TESTS), wanted=wanted)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_ports_lie_outside_the_ephemeral_range() -> None:
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[:2])
    assert low >= 16384, "this box's ephemeral range leaves no room below it"
    single = ports.free_port()
    block = ports.free_block(8)
    assert 1024 < single < low or high < single <= 65535
    assert block % 2 == 0 and 1024 < block and (block + 8 <= low or high < block <= 65535 - 8)
    if high <= 64535:  # above it first: no benchmark's RTP range lies there
        assert single > high and block > high


def test_a_leased_port_is_refused_to_another_process_until_the_lease_ends() -> None:
    with ports.leases_of_test():
        leased = [ports.free_port()]
        block = ports.free_block(4)
        leased += list(range(block, block + 4))
        assert _other_process(leased) == ["True", "True"]
    # the lease ended with the (inner) test: the other process may take them now
    assert _other_process(leased)[0] == "False"


def test_a_kept_lease_outlives_the_test() -> None:
    with ports.leases_of_test():
        kept = ports.free_port(keep=True)
    try:
        assert _other_process([kept]) == ["True", "True"]
    finally:
        ports._release(kept)
