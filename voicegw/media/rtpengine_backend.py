"""The rtpengine media backend: rtpengine carries every RTP packet, voicegw drives it.

Layout ("one rtpengine call per leg, bridged by a hop"): each voicegw leg is its own
rtpengine call (call-id ``<call>~<leg>``) with two monologues, ``peer`` (the SIP peer:
caller, bot or agent) and ``vg`` (voicegw's side). rtpengine gives the leg two ports:

- ``P``: where the peer sends (the port voicegw writes into its SDP to the peer);
- ``Q``: rtpengine's port on the vg side.

Bridging legs A and B points A's vg side at B's Q and B's vg side at A's Q, so a packet
goes peer A -> P_A -> (out of Q_A) -> Q_B -> (out of P_B) -> peer B: two hops inside
rtpengine over loopback, no packet in voicegw. Swapping B for C on a transfer is a
re-offer of A's vg side (now at Q_C) and C's: A's port P_A never changes, so the caller
needs no re-INVITE. Why not one rtpengine call per voicegw call: rtpengine 10.5 (Debian
12) has no ``connect`` to re-pair monologues, and a leg must have its port before its
partner exists (the caller is answered, and hears prompts, before any bot is dialled);
the hop gives every leg a port of its own at once, and a swap is plain offer/answer.

- ``offer`` from vg (the vg side's SDP) -> reply: SDP for the peer, port P;
- ``answer`` from peer (the peer's SDP) -> reply: SDP for vg, port Q;
- re-``offer``/``answer`` with a new vg-side address to bridge or swap;
- ``play media`` / ``stop media`` (from-tag ``peer``) for prompts, ringback, hold;
- DTMF: rtpengine reports each RFC 4733 event it relays as JSON over UDP to
  ``--dtmf-log-dest``; voicegw listens there (``media.rtpengine.dtmf_listen``) and routes
  by call-id to the leg.

Until a leg is bridged its vg side points at the discard port (RFC 863) on loopback, so
rtpengine still has a destination and the peer's audio goes nowhere.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..sip.sdes import CryptoAttribute, SdesError
from .backend import DigitHandler, RemoteMedia, SdesKeys
from .rtpengine_ng import AsyncNgClient, NgError

__all__ = ["RtpengineBackend", "RtpengineLeg", "sdp_for"]

DISCARD = ("127.0.0.1", 9)
PEER, VG = "peer", "vg"
#: "port latching": a re-offer whose remote port changed (a bridge swap) keeps the leg's
#: local ports, so the peer's SDP stays true without a re-INVITE.
FLAGS = ["port-latching"]
_DIGITS = "0123456789*#ABCD"  # RFC 4733 section 3.2, events 0-15
_CODECS = {0: "PCMU/8000", 8: "PCMA/8000"}
_PORT = re.compile(r"^m=audio (\d+) ", re.MULTILINE)
_ADDR = re.compile(r"^c=IN IP[46] (\S+)", re.MULTILINE)
_CRYPTO = re.compile(r"^a=crypto:(.*?)\r?$", re.MULTILINE)
VG_CODEC = 0
"""Every leg's vg side speaks PCMU (a bridge joins two vg sides)."""


def sdp_for(address: str, port: int, payload_type: int, dtmf: int | None, version: int,
            crypto: CryptoAttribute | None = None, offer_crypto: CryptoAttribute | None = None) -> str:
    """A one-stream audio SDP as rtpengine needs it for one side of a leg: RTP/SAVP with
    ``crypto`` (RFC 4568), else RTP/AVP (carrying ``offer_crypto``: the key rtpengine is
    to offer the other side)."""
    family = "IP6" if ":" in address else "IP4"
    pts = f"{payload_type}" + (f" {dtmf}" if dtmf is not None else "")
    proto = "RTP/SAVP" if crypto is not None else "RTP/AVP"
    lines = ["v=0", f"o=voicegw 1 {version} IN {family} {address}", "s=voicegw",
             f"c=IN {family} {address}", "t=0 0", f"m=audio {port} {proto} {pts}",
             f"a=rtpmap:{payload_type} {_CODECS.get(payload_type, 'PCMU/8000')}"]
    if dtmf is not None:
        lines += [f"a=rtpmap:{dtmf} telephone-event/8000", f"a=fmtp:{dtmf} 0-16"]
    if crypto is not None or offer_crypto is not None:
        lines.append(f"a=crypto:{crypto or offer_crypto}")
    lines.append("a=sendrecv")
    return "\r\n".join(lines) + "\r\n"


def _tag_of(sdp: str, keys: SdesKeys) -> int | None:
    """The tag of the ``a=crypto`` line in rtpengine's SDP for the peer that carries our key."""
    for match in _CRYPTO.finditer(sdp):
        try:
            line = CryptoAttribute.parse(match.group(1))
        except SdesError:
            continue
        if line.suite == keys.suite and line.key_salt == keys.ours:
            return line.tag
    return None


def _media_address(sdp: str) -> tuple[str, int]:
    port, addr = _PORT.search(sdp), _ADDR.search(sdp)
    if port is None or addr is None:
        raise NgError(f"rtpengine's SDP has no audio address: {sdp!r}")
    return addr.group(1), int(port.group(1))


@dataclass(slots=True, eq=False)
class RtpengineLeg:
    name: str
    ng_call: str
    peer_port: tuple[str, int] = ("", 0)
    """P: where the peer sends."""
    vg_port: tuple[str, int] = ("", 0)
    """Q: rtpengine's own address on the vg side (where a bridged partner sends)."""
    remote: RemoteMedia | None = None
    partner: RtpengineLeg | None = None
    version: int = 1
    playing: bool = False
    srtp: bool = False
    """The peer's side was last negotiated RTP/SAVP."""
    sdes_key: bytes | None = None
    """voicegw's SDES key as rtpengine holds it for the peer's side (offered once)."""
    on_digit: DigitHandler | None = None
    closed: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def local(self) -> tuple[str, int]:
        return self.peer_port


class _DtmfEvents(asyncio.DatagramProtocol):
    """rtpengine's DTMF log (``--dtmf-log-dest``): one JSON object per event."""

    def __init__(self, backend: RtpengineBackend) -> None:
        self.backend = backend

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            event = json.loads(data)
        except ValueError:
            return
        if isinstance(event, dict):
            self.backend.dtmf_event(event)


class RtpengineBackend:
    """``await RtpengineBackend.connect((host, ng_port), dtmf_listen=(host, port))``."""

    def __init__(self, client: AsyncNgClient) -> None:
        self.client = client
        self.legs: dict[str, RtpengineLeg] = {}
        self.dtmf_transport: asyncio.DatagramTransport | None = None
        self.dtmf_events = 0

    @classmethod
    async def connect(cls, ng: tuple[str, int], dtmf_listen: tuple[str, int] | None = None,
                      timeout: float = 2.0) -> RtpengineBackend:
        backend = cls(await AsyncNgClient.connect(ng, timeout=timeout, retransmit=0.25))
        if dtmf_listen is not None:
            loop = asyncio.get_running_loop()
            backend.dtmf_transport, _ = await loop.create_datagram_endpoint(
                lambda: _DtmfEvents(backend), local_addr=dtmf_listen)
        return backend

    async def _request(self, command: str, leg: RtpengineLeg, **fields: Any) -> dict[str, Any]:
        message = {"command": command, "call-id": leg.ng_call,
                   **{k.replace("_", "-"): v for k, v in fields.items() if v is not None}}
        return await self.client.request(message)

    async def _negotiate(self, leg: RtpengineLeg) -> None:
        """(Re-)offer the vg side, answer with the peer's side: sets P and Q.

        The vg side is always PCMU, so any two legs' vg sides can be bridged; a peer that
        speaks PCMA gets it through rtpengine's transcoding (``codec: transcode``), as the
        relay does for it in process (relay.py).

        SDES-SRTP (RFC 4568) is on the peer's side only, asked for with
        ``transport-protocol: RTP/SAVP``. rtpengine offers the peer the keys it is
        offered and keeps them on re-offers; so voicegw's key goes in once, in an offer
        whose RTP/AVP stream carries it (rtpengine then protects what it sends the peer
        with the key voicegw's SDP gave the peer: checked on every offer), and the next
        offer, without it, turns the vg side back to plain RTP (an a=crypto there makes
        rtpengine take the vg side for opportunistic SRTP, RFC 8643). The peer's answer
        carries the peer's key, with which rtpengine unprotects what the peer sends."""
        target = leg.partner.vg_port if leg.partner is not None else DISCARD
        media = leg.remote or RemoteMedia(*DISCARD)
        keys = media.srtp
        extra: dict[str, Any] = {}
        if media.payload_type != VG_CODEC:
            extra["codec"] = {"transcode": [_CODECS.get(media.payload_type, "PCMU/8000").split("/")[0]]}
        if keys is not None or leg.srtp:
            extra["transport_protocol"] = "RTP/SAVP" if keys is not None else "RTP/AVP"
            extra["DTLS"] = "off"  # SDES only: rtpengine would offer DTLS-SRTP besides

        async def offer(crypto: CryptoAttribute | None = None) -> dict[str, Any]:
            leg.version += 1
            return await self._request(
                "offer", leg, from_tag=VG, to_tag=PEER,
                sdp=sdp_for(target[0], target[1], VG_CODEC, media.dtmf_payload_type, leg.version,
                            offer_crypto=crypto),
                replace=["origin", "session-connection"], flags=FLAGS, **extra)

        if keys is not None and leg.sdes_key != keys.ours:
            await offer(CryptoAttribute(1, keys.suite, keys.ours))
            leg.sdes_key = keys.ours
        offered = await offer()
        leg.peer_port = _media_address(offered["sdp"])
        leg.srtp = keys is not None
        if keys is None:
            leg.sdes_key = None
        theirs = None
        if keys is not None:
            tag = _tag_of(offered["sdp"], keys)
            if tag is None:  # rtpengine would protect with a key the peer does not know
                leg.sdes_key = None  # offered again next time
                raise NgError(f"rtpengine did not offer voicegw's SDES key ({keys.suite}) to the peer")
            theirs = CryptoAttribute(tag, keys.suite, keys.theirs)
        if leg.remote is None:
            return
        answered = await self._request(
            "answer", leg, from_tag=VG, to_tag=PEER,
            sdp=sdp_for(media.address, media.port, media.payload_type,
                        media.dtmf_payload_type, leg.version, crypto=theirs),
            replace=["origin", "session-connection"], flags=FLAGS)
        leg.vg_port = _media_address(answered["sdp"])

    # -- the MediaBackend interface ----------------------------------------------
    async def open_leg(self, call_id: str, name: str) -> RtpengineLeg:
        leg = RtpengineLeg(name, f"{call_id}~{name}")
        self.legs[leg.ng_call] = leg
        await self._negotiate(leg)
        return leg

    async def set_remote(self, leg: RtpengineLeg, remote: RemoteMedia) -> None:  # type: ignore[override]
        async with leg.lock:
            leg.remote = remote
            await self._negotiate(leg)
        partner = leg.partner
        if partner is not None and partner.remote is not None:
            async with partner.lock:  # the partner now sends to this leg's Q
                await self._negotiate(partner)

    async def bridge(self, a: RtpengineLeg, b: RtpengineLeg) -> None:  # type: ignore[override]
        for leg, other in ((a, b), (b, a)):
            old = leg.partner
            if old is not None and old is not other:
                old.partner = None
                if not old.closed:
                    async with old.lock:
                        await self._negotiate(old)
            leg.partner = other
        for leg in (a, b):
            async with leg.lock:
                await self._negotiate(leg)

    async def unbridge(self, leg: RtpengineLeg) -> None:  # type: ignore[override]
        other, leg.partner = leg.partner, None
        if other is None:
            return
        other.partner = None
        for side in (leg, other):
            if not side.closed:
                async with side.lock:
                    await self._negotiate(side)

    async def play(self, leg: RtpengineLeg, path: Path, loop: bool = False) -> None:  # type: ignore[override]
        await self.stop_play(leg)
        extra = {"repeat-times": 1000} if loop else {}
        await self._request("play media", leg, from_tag=PEER, file=str(Path(path).resolve()),
                            **extra)
        leg.playing = True

    async def stop_play(self, leg: RtpengineLeg) -> None:  # type: ignore[override]
        if leg.playing and not leg.closed:
            leg.playing = False
            try:
                await self._request("stop media", leg, from_tag=PEER)
            except NgError:
                pass  # it had ended on its own

    def on_dtmf(self, leg: RtpengineLeg, handler: DigitHandler | None) -> None:  # type: ignore[override]
        leg.on_digit = handler

    def dtmf_event(self, event: dict[str, Any]) -> None:
        """One event from rtpengine's DTMF log, for the leg whose peer sent it."""
        self.dtmf_events += 1
        leg = self.legs.get(str(event.get("callid", "")))
        number = event.get("event")
        if (leg is None or leg.on_digit is None or event.get("source_tag") != PEER
                or not isinstance(number, int) or not 0 <= number < len(_DIGITS)):
            return
        leg.on_digit(_DIGITS[number])

    async def close_leg(self, leg: RtpengineLeg) -> None:  # type: ignore[override]
        if leg.closed:
            return
        await self.unbridge(leg)
        leg.closed = True
        self.legs.pop(leg.ng_call, None)
        leg.on_digit = None
        try:
            await self._request("delete", leg, delete_delay=0)
        except NgError:
            pass  # already gone (rtpengine's own timeout)

    async def close(self) -> None:
        for leg in list(self.legs.values()):
            await self.close_leg(leg)
        if self.dtmf_transport is not None:
            self.dtmf_transport.close()
        self.client.close()
