"""Whether a carrier's gateway answers: the OPTIONS ping verdicts (RFC 3261 11), sans-I/O.

One :class:`GatewayHealth` per gateway (one resolved address of a trunk). Each ping's
outcome is an input: ``ANSWERED`` (any final response: the gateway's SIP stack is
alive, even a 404 or 405 proves it, as Kamailio's dispatcher and OpenSIPS count it) or
``MISSED`` (no answer within the timeout, a transport error, or a 503: the gateway
says it cannot take traffic). A gateway goes UP after ``up_after`` answers in a row and
DOWN after ``down_after`` misses in a row; it starts UNKNOWN (no verdict yet, the dial
path treats it as usable). The machine is ``TABLE``: ``(state, input) -> (counter,
state reached when the counter hits its threshold)``; a row with no threshold resets
the opposite run only::

    UNKNOWN --up_after answers--> UP --down_after misses--> DOWN --up_after answers--> UP
       +------down_after misses-------------------------->  DOWN

Pure: the adapter (voicegw/gateways.py) sends the pings on the loop's clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .digest_client import Account
from .gateway_list import GatewaySpec


class Health(enum.Enum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


class Ping(enum.Enum):
    ANSWERED = "answered"
    MISSED = "missed"


H, P = Health, Ping

#: (state, ping) -> the state the run of such pings leads to once its threshold is hit
#: (None: this ping only keeps the state, and breaks the opposite run)
TABLE: dict[tuple[Health, Ping], Health | None] = {
    (H.UNKNOWN, P.ANSWERED): H.UP,
    (H.UNKNOWN, P.MISSED): H.DOWN,
    (H.UP, P.ANSWERED): None,
    (H.UP, P.MISSED): H.DOWN,
    (H.DOWN, P.ANSWERED): H.UP,
    (H.DOWN, P.MISSED): None,
}


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """A carrier profile's ``health:`` (config/models.py ``HealthCheck``), plain."""

    interval: float = 30.0
    timeout: float = 5.0
    down_after: int = 3
    up_after: int = 2


@dataclass(frozen=True, slots=True)
class Changed:
    """A gateway's verdict changed (for the log)."""

    before: Health
    after: Health


class GatewayHealth:
    """See the module docstring."""

    def __init__(self, settings: HealthSettings) -> None:
        self.settings = settings
        self.state = Health.UNKNOWN
        self.answers = 0  # in a row
        self.misses = 0  # in a row
        self.last_status: int | str | None = None
        """The last ping's outcome: a status code, ``timeout`` or ``transport``."""
        self.last_rtt_ms: float | None = None
        self.pings = 0

    def answered(self, status: int, rtt_ms: float) -> Changed | None:
        self.last_status, self.last_rtt_ms = status, rtt_ms
        if status == 503:  # alive, but says it cannot take calls (21.5.4)
            return self._feed(Ping.MISSED)
        return self._feed(Ping.ANSWERED)

    def missed(self, why: str) -> Changed | None:
        self.last_status = why
        return self._feed(Ping.MISSED)

    def _feed(self, ping: Ping) -> Changed | None:
        self.pings += 1
        target = TABLE[(self.state, ping)]
        if ping is Ping.ANSWERED:
            self.answers, self.misses = self.answers + 1, 0
            run, threshold = self.answers, self.settings.up_after
        else:
            self.answers, self.misses = 0, self.misses + 1
            run, threshold = self.misses, self.settings.down_after
        if target is None or run < threshold:
            return None
        before, self.state = self.state, target
        return Changed(before, target)

    @property
    def usable(self) -> bool:
        """What the dial path may ask: not known to be down."""
        return self.state is not Health.DOWN


@dataclass(frozen=True, slots=True)
class TrunkHealthConfig:
    """Which trunk to ping where: a carrier profile's ``health:`` with its target."""

    trunk: str
    target: str
    """The OPTIONS Request-URI, ``sip:host[:port]``: every address RFC 3263 gives for it
    is a gateway of its own."""
    transport: str = "udp"
    settings: HealthSettings = HealthSettings()
    gateways: tuple[GatewaySpec, ...] = ()
    """The carrier's ``gateways:`` list: each entry is pinged (its addresses, located
    on their own) instead of ``target``'s."""
    account: Account | None = field(default=None, repr=False)
    """The carrier's ``auth``: a challenged ping is sent again with credentials."""


__all__ = ["TABLE", "Changed", "GatewayHealth", "Health", "HealthSettings", "Ping", "TrunkHealthConfig"]
