"""RTP inactivity: a call whose peer stopped sending media ends (``media_timeout``).

A caller whose phone crashed, whose NAT binding moved, or a load generator that gave
up sends no BYE; without this the call, its ports and its legs stay for ever. Like
Asterisk's ``rtptimeout`` and rtpengine's ``timeout``: a leg that should be sending
and has received no RTP for ``media.inactivity_timeout`` seconds ends the call, or for
``media.hold_timeout`` while a leg is on hold (a held peer may send nothing at all,
RFC 3264 8.4; the far side then answers recvonly and sends nothing either).

Which legs should be sending: the caller's, and the legs voicegw relays media between
(the sides of the call's open bridge), once their INVITE session is up. A bot that
only listens to a transferred call (a tap), or a leg still ringing, is not watched;
nor is a leg on rtpengine (``media.backend: rtpengine``): voicegw sees none of its
packets, rtpengine's own ``timeout`` is the one that applies there.

Pure: no packet is timed. The counters the receive paths keep anyway (the endpoint's
own, a bridge's per direction) are compared between two checks, which the engine runs
from a call timer with ``now``; the expiry is late by at most one check interval.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..sip.invite_session_table import State as SessionState
from .call import Call, Leg

#: Session states of a leg whose peer sends RTP (2xx sent or received, not hung up).
_SENDING = frozenset({SessionState.CONNECTING, SessionState.CONFIRMED, SessionState.REINVITING,
                      SessionState.GLARE, SessionState.REINVITED})
#: Bounds of the check interval (a quarter of the shortest timeout): often enough to be
#: late by little, rarely enough to cost nothing with thousands of calls up.
_MIN_INTERVAL, _MAX_INTERVAL = 0.2, 10.0


@dataclass(slots=True)
class _Seen:
    endpoint: Any
    count: int
    since: float
    """When ``count`` last moved (or the leg, or its endpoint, was first seen)."""


@dataclass(slots=True)
class Silence:
    """The leg that sent nothing, and for how long."""

    role: str
    seconds: float
    held: bool


@dataclass(slots=True)
class MediaWatch:
    """One call's inactivity check (``Call.media_watch``)."""

    timeout: float
    """Seconds without RTP that end the call; 0: not while no leg is held."""
    hold_timeout: float
    """The same while a leg is on hold; 0: never while one is."""
    held: bool = False
    seen: dict[str, _Seen] = field(default_factory=dict)

    @classmethod
    def of(cls, timeout: float, hold_timeout: float) -> MediaWatch | None:
        """None when both are 0 (disabled)."""
        return cls(timeout, hold_timeout) if timeout > 0 or hold_timeout > 0 else None

    @property
    def interval(self) -> float:
        shortest = min(t for t in (self.timeout, self.hold_timeout) if t > 0)
        return min(_MAX_INTERVAL, max(_MIN_INTERVAL, shortest / 4))

    def check(self, call: Call, bridges: Iterable[Any], now: float) -> Silence | None:
        """The first watched leg silent for longer than the timeout that applies, or
        None. ``bridges``: the call's bridges (closed ones too: their counts stay)."""
        bridges = list(bridges)
        legs = watched_legs(call, bridges)
        held = any(leg.held for leg in legs)
        if held != self.held:  # hold or unhold: every leg's silence counts from now
            self.held = held
            self.seen.clear()
        limit = self.hold_timeout if held else self.timeout
        silent: Silence | None = None
        for leg in legs:
            count = received(leg.endpoint, bridges)
            seen = self.seen.get(leg.role)
            if seen is None or seen.endpoint is not leg.endpoint or seen.count != count:
                self.seen[leg.role] = _Seen(leg.endpoint, count, now)
                continue
            if limit > 0 and now - seen.since >= limit and silent is None:
                silent = Silence(leg.role, now - seen.since, held)
        return silent


def watched_legs(call: Call, bridges: list[Any]) -> list[Leg]:
    """The legs whose peer should be sending RTP now (see the module's docstring)."""
    bridged = {id(side) for b in bridges if not b.closed for side in (b.a, b.b)}
    return [leg for leg in call.legs()
            if not leg.ended and leg.endpoint is not None and not leg.endpoint.closed
            and leg.session is not None and leg.session.state in _SENDING
            and hasattr(leg.endpoint, "packets_in")  # relayed here, not by rtpengine
            and (leg is call.caller or id(leg.endpoint) in bridged)]


def received(endpoint: Any, bridges: list[Any]) -> int:
    """RTP packets that reached ``endpoint`` so far: while unbridged the endpoint
    counts them, while bridged the bridge does."""
    return endpoint.packets_in + sum(b.packets_from(endpoint) for b in bridges if hasattr(b, "packets_from"))


__all__ = ["MediaWatch", "Silence", "watched_legs"]
