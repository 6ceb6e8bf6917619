"""Which ports each worker gets: pure arithmetic on the daemon's config.

Worker ``i`` of ``N`` listens for SIP on ``base + i`` (UDP and TCP; Kamailio's
dispatcher list names these ports) and relays RTP in the ``i``-th of ``N`` equal
slices of ``calls.rtp_port_min``-``rtp_port_max``, each starting on an even port
(RTP on even, RTCP on the odd one above: RFC 3550 section 11). Two workers never
share a port, so no worker refuses a call for a port another one holds.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_RTP_PORTS = 4
"""A worker needs ports for at least one call (two legs, RTP and RTCP each)."""


class PlanError(ValueError):
    """The ports cannot be split this way; the message says why (a usage error)."""


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    index: int
    sip_port: int
    rtp_min: int
    rtp_max: int

    @property
    def rtp_ports(self) -> str:
        return f"{self.rtp_min}-{self.rtp_max}"


def plan(count: int, sip_base: int, rtp_min: int, rtp_max: int) -> list[WorkerPlan]:
    """The ports of ``count`` workers."""
    if count < 1:
        raise PlanError("--workers: at least 1")
    if sip_base <= 0 or sip_base + count - 1 > 65535:
        raise PlanError(f"--workers {count}: SIP ports {sip_base}-{sip_base + count - 1} are not all valid "
                        "(a fixed --sip-port is the first worker's; the others follow it)")
    first = rtp_min + (rtp_min & 1)
    width = (rtp_max + 1 - first) // count & ~1
    if width < MIN_RTP_PORTS:
        raise PlanError(f"--workers {count}: RTP range {rtp_min}-{rtp_max} is too small to split "
                        f"({width} ports each, at least {MIN_RTP_PORTS})")
    return [WorkerPlan(i, sip_base + i, first + i * width, first + (i + 1) * width - 1) for i in range(count)]
