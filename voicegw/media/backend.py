"""The media plane behind one interface: what the engine asks of a call's media.

A call's media is a set of *legs* (one per SIP dialog: caller, bot, agent), each with a
local RTP address that goes into voicegw's SDP towards that leg's peer, and *bridges*
joining two legs. The engine opens a leg, tells it the peer's negotiated media (from
the peer's SDP), bridges it to another leg, swaps the far side on a transfer, plays
audio files to it (prompts, ringback, hold music) and hears its DTMF digits.

Two implementations:

- ``RelayBackend`` (the default): voicegw's own RTP endpoints, relay and players
  (``endpoint.py``, ``relay.py``, ``player.py``) in this process.
- ``RtpengineBackend`` (``rtpengine_backend.py``): rtpengine carries every packet,
  driven over its ng protocol; voicegw's process sees no RTP at all.

Everything here is async because the rtpengine backend waits for ng replies; the relay
backend answers at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .endpoint import MediaEndpoint, open_endpoint
from .player import Player, play_samples
from .ports import PortPool
from .prompts import load_prompt
from .relay import Bridge

DigitHandler = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class SdesKeys:
    """A leg's SDES-SRTP keys (RFC 4568 6.1): each side encrypts with the key in its own SDP."""

    suite: str
    """The crypto-suite both SDPs name (``AES_CM_128_HMAC_SHA1_80`` or ``_32``)."""
    theirs: bytes
    """The peer's master key || salt (its ``a=crypto``): what the peer sends is protected with it."""
    ours: bytes
    """voicegw's (the ``a=crypto`` in our SDP to the peer): what the peer receives is protected with it."""


@dataclass(frozen=True, slots=True)
class RemoteMedia:
    """A leg's peer as its SDP negotiated it (RFC 3264 section 5/6)."""

    address: str
    port: int
    payload_type: int = 0
    """0 (PCMU) or 8 (PCMA)."""
    dtmf_payload_type: int | None = 101
    """The telephone-event payload type (RFC 4733), None when the peer has none."""
    srtp: SdesKeys | None = None
    """RTP/SAVP with these keys towards the peer; None: plain RTP/AVP."""


class MediaLeg(Protocol):
    """One leg's media: ``local`` is what voicegw puts in its c=/m= lines for the peer."""

    name: str

    @property
    def local(self) -> tuple[str, int]: ...


class MediaBackend(Protocol):
    """What the engine asks of the media plane (one instance per daemon)."""

    async def open_leg(self, call_id: str, name: str) -> MediaLeg:
        """A new leg with its local RTP port (the peer's media is not known yet)."""

    async def set_remote(self, leg: MediaLeg, remote: RemoteMedia) -> None:
        """The peer's media from its SDP (offer or answer; again on a re-INVITE)."""

    async def bridge(self, a: MediaLeg, b: MediaLeg) -> None:
        """Relay between ``a`` and ``b``; a leg already bridged leaves its old bridge
        (a transfer: ``bridge(caller, agent)`` swaps the bot out)."""

    async def unbridge(self, leg: MediaLeg) -> None:
        """End the leg's bridge, if any (both legs stay open)."""

    async def play(self, leg: MediaLeg, path: Path, loop: bool = False) -> None:
        """Play a WAV file to the leg's peer (pausing what the bridge sends it)."""

    async def stop_play(self, leg: MediaLeg) -> None:
        """Stop what ``play`` started (the bridge, if any, resumes)."""

    def on_dtmf(self, leg: MediaLeg, handler: DigitHandler | None) -> None:
        """Call ``handler`` with each digit the leg's peer sends (RFC 4733)."""

    async def close_leg(self, leg: MediaLeg) -> None:
        """Free the leg's ports (its bridge ends too)."""

    async def close(self) -> None:
        """At shutdown."""


# ---------------------------------------------------------------------------- relay
@dataclass(slots=True, eq=False)
class RelayLeg:
    name: str
    endpoint: MediaEndpoint
    bridge: Bridge | None = None
    player: Player | None = None

    @property
    def local(self) -> tuple[str, int]:
        return self.endpoint.host, self.endpoint.port


class RelayBackend:
    """The in-process relay: one ``MediaEndpoint`` per leg, a ``Bridge`` per pair."""

    def __init__(self, host: str, pool: PortPool) -> None:
        self.host = host
        self.pool = pool
        # endpoint -> its leg, so a swap can tell the leg it took out that it is unbridged
        self._legs: dict[MediaEndpoint, RelayLeg] = {}

    async def open_leg(self, call_id: str, name: str) -> RelayLeg:
        leg = RelayLeg(name, await open_endpoint(self.host, self.pool))
        self._legs[leg.endpoint] = leg
        return leg

    async def set_remote(self, leg: RelayLeg, remote: RemoteMedia) -> None:  # type: ignore[override]
        ep = leg.endpoint
        ep.payload_type = remote.payload_type
        ep.dtmf_payload_type = remote.dtmf_payload_type
        ep.set_remote(remote.address, remote.port)
        if leg.bridge is not None:
            leg.bridge.refresh()

    async def bridge(self, a: RelayLeg, b: RelayLeg) -> None:  # type: ignore[override]
        if (a.bridge is not None and not a.bridge.closed and b.bridge is None
                and a.bridge.a is a.endpoint):
            # a transfer: a keeps one continuous stream (relay.Bridge.replace_b)
            old = a.bridge.replace_b(b.endpoint)
            b.bridge = a.bridge
            if (out := self._legs.get(old)) is not None:
                out.bridge = None
            return
        await self.unbridge(a)
        await self.unbridge(b)
        a.bridge = b.bridge = Bridge(a.endpoint, b.endpoint)

    async def unbridge(self, leg: RelayLeg) -> None:  # type: ignore[override]
        bridge, leg.bridge = leg.bridge, None
        if bridge is None:
            return
        for ep in (bridge.a, bridge.b):
            if (other := self._legs.get(ep)) is not None:
                other.bridge = None
        bridge.close()

    async def play(self, leg: RelayLeg, path: Path, loop: bool = False) -> None:  # type: ignore[override]
        await self.stop_play(leg)
        leg.player = play_samples(leg.endpoint, load_prompt(path), loop=loop)

    async def stop_play(self, leg: RelayLeg) -> None:  # type: ignore[override]
        player, leg.player = leg.player, None
        if player is not None:
            player.stop()

    def on_dtmf(self, leg: RelayLeg, handler: DigitHandler | None) -> None:  # type: ignore[override]
        leg.endpoint.on_dtmf = handler
        if leg.bridge is not None:
            leg.bridge.refresh()  # a DTMF subscription takes the direction off the fast path

    async def close_leg(self, leg: RelayLeg) -> None:  # type: ignore[override]
        await self.stop_play(leg)
        await self.unbridge(leg)
        self._legs.pop(leg.endpoint, None)
        leg.endpoint.close()

    async def close(self) -> None:
        pass

