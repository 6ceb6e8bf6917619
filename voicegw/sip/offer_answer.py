"""RFC 3264 offer/answer: the answer to a remote offer, and one session's negotiation state.

Two pieces:

``make_answer(offer, supported, ...)`` is a pure function from a remote offer to our
answer. voicegw has one RTP endpoint per leg, so it accepts the first audio stream it
can use and rejects every other stream with port 0, keeping the offer's m= lines in
count and order (RFC 3264 6: "The answer MUST contain exactly the same number of "m="
lines as the offer"). Codecs are taken in the offerer's order (RFC 3264 6.1 lets the
answerer choose; honouring the offerer avoids each side sending a different codec), and
by default only the first common one is kept, with telephone-event (RFC 4733) when
offered at the same clock rate: a single codec means the media relay and the prompt
players never see the peer switch codec mid-call.

``OfferAnswer`` tracks one session's offer/answer exchanges as an Enum plus one
transition table::

                     local_offer                       remote_answer
      NO_OFFER  ------------------> LOCAL_OFFER_SENT -----------------> NEGOTIATED
      NEGOTIATED                         | rollback -> last stable state
                     remote_offer                      local_answer
      NO_OFFER  ------------------> REMOTE_OFFER_RECEIVED --------------> NEGOTIATED
      NEGOTIATED                         | rollback -> last stable state

The "last stable state" is NEGOTIATED when an exchange has completed before, else
NO_OFFER: a re-INVITE that fails leaves the session as it was (RFC 3261 14.1: "If a
UA receives a non-2xx final response to a re-INVITE, the session parameters MUST
remain unchanged"). Anything not in the table raises ``ProtocolViolation``: 491 for
an offer from the peer while ours is outstanding (glare, RFC 3261 14.2 / RFC 3311
5.2), 500 for everything else (RFC 3261 14.2: a second offer while one is being
answered gets "500 (Server Internal Error)" with Retry-After; an answer without an
offer, or a local misuse, is treated as an internal error too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from voicegw.sip.errors import ParseError, ProtocolViolation
from voicegw.sip.sdes import CryptoAttribute, check_key, pick
from voicegw.sip.sdp import MediaDescription, SessionDescription, audio_media
from voicegw.sip.sdp_fields import (
    NOT_ACCEPTABLE_HERE,
    PCMA,
    PCMU,
    TELEPHONE_EVENT,
    Codec,
    Connection,
    Direction,
    Origin,
    Timing,
)

DEFAULT_SUPPORTED: tuple[Codec, ...] = (PCMU, PCMA, TELEPHONE_EVENT)
DEFAULT_PROTOS: tuple[str, ...] = ("RTP/AVP",)


@dataclass(frozen=True)
class SrtpKeys:
    """What an RTP/SAVP exchange settled (RFC 4568): one suite, a key per direction."""

    suite: str
    remote_key: bytes = field(repr=False)
    """The peer's master key || salt: unprotects what it sends us."""
    local_key: bytes = field(repr=False)
    """Ours: protects what we send it."""
    tag: int = 1


@dataclass(frozen=True)
class NegotiatedMedia:
    """What one completed offer/answer exchange settled for the audio stream."""

    #: Index of the m= line both sides use (the others are rejected).
    index: int
    #: The payload type and codec to send and expect.
    payload_type: int
    codec: Codec
    #: Payload type of telephone-event (RFC 4733), if both sides have it.
    telephone_event: int | None
    #: Where to send RTP: the peer's connection address and port.
    remote_address: str
    remote_port: int
    #: What we do on this stream: sends means we may send RTP, receives that we expect it.
    direction: Direction
    #: The peer's SDP asks for hold (sendonly, inactive or c=0.0.0.0, RFC 3264 8.4).
    remote_hold: bool
    #: The packet time the peer wants to receive, if it said (a=ptime).
    ptime: int | None
    #: SRTP keys when the stream is RTP/SAVP (``MediaEndpoint.set_srtp``), else None.
    srtp: SrtpKeys | None = None


@dataclass(frozen=True)
class Answer:
    """The answer to send and what it settles."""

    sdp: SessionDescription
    negotiated: NegotiatedMedia


def _fail(reason: str) -> ParseError:
    return ParseError(reason, status=NOT_ACCEPTABLE_HERE)


def _offered_direction(media: MediaDescription) -> Direction:
    """The offerer's direction, with c=0.0.0.0 read as "do not send to me" (RFC 3264
    8.4 keeps that RFC 2543 form working for old peers)."""
    direction = media.direction
    conn = media.connection
    if conn is not None and conn.is_null:
        direction = Direction.from_flags(send=direction.sends, recv=False)
    return direction


def _usable(media: MediaDescription, protos: Sequence[str], srtp_key: bytes | None) -> bool:
    return (
        media.media == "audio"
        and not media.is_rejected
        and media.proto in protos
        and media.connection is not None
        # RTP/SAVP only with our key and an offered a=crypto we can use (RFC 4568 7.1.1)
        and (not media.is_srtp or (srtp_key is not None and pick(media.crypto()) is not None))
    )


def _pick_codecs(
    offered: dict[int, Codec], supported: Sequence[Codec], single_codec: bool
) -> list[tuple[int, Codec]]:
    """Common codecs in the offerer's order, then telephone-event at the first codec's
    clock rate (RFC 4733: events use the clock rate of the audio they go with)."""
    chosen: list[tuple[int, Codec]] = []
    for pt, codec in offered.items():
        if codec.is_telephone_event:
            continue
        ours = next((s for s in supported if s.matches(codec)), None)
        if ours is not None and (not single_codec or not chosen):
            chosen.append((pt, replace(codec, fmtp=ours.fmtp or codec.fmtp)))
    if not chosen:
        return chosen
    clock = chosen[0][1].clock_rate
    for pt, codec in offered.items():
        ours = next((s for s in supported if s.matches(codec)), None)
        if codec.is_telephone_event and codec.clock_rate == clock and ours is not None:
            chosen.append((pt, replace(codec, fmtp=ours.fmtp or codec.fmtp)))
            break
    return chosen


def make_answer(
    offer: SessionDescription,
    supported: Sequence[Codec] = DEFAULT_SUPPORTED,
    *,
    origin: Origin,
    address: str,
    port: int,
    ptime: int | None = 20,
    direction: Direction = Direction.SENDRECV,
    protos: Sequence[str] = DEFAULT_PROTOS,
    single_codec: bool = True,
    srtp_key: bytes | None = None,
) -> Answer:
    """Answer ``offer`` from ``address``:``port`` with the codecs in ``supported``.

    ``direction`` is what we want (SENDONLY to put the peer on hold); the answer's
    direction is that intersected with the mirror of the offer's (RFC 3264 6.1:
    sendonly is answered recvonly or inactive, recvonly sendonly or inactive,
    inactive inactive). Raises ``ParseError`` (488) when no audio stream has a codec
    in common. Pass the result through ``SdpBuilder.stamp`` to get our o= line right.

    SRTP: with ``"RTP/SAVP"`` in ``protos`` and our ``srtp_key`` (master key || salt,
    ``media.srtp.new_key()``), an RTP/SAVP stream is usable when it offers an
    ``a=crypto`` we support; the answer carries that line's tag and suite with our key,
    and ``negotiated.srtp`` has both keys for ``MediaEndpoint.set_srtp``.
    """
    if srtp_key is not None:
        check_key("AES_CM_128_HMAC_SHA1_80", srtp_key)  # every suite we offer: 30 bytes
    answered: list[MediaDescription] = []
    accepted = False
    for media in offer.media:
        usable = _usable(media, protos, srtp_key)
        codecs = _pick_codecs(media.rtpmap(), supported, single_codec) if usable else []
        if codecs and not accepted:
            accepted = True
            mine = _offered_direction(media).reversed().intersect(direction)
            crypto: tuple[CryptoAttribute, ...] = ()
            if media.is_srtp:
                chosen = pick(media.crypto())
                assert chosen is not None and srtp_key is not None  # _usable checked
                crypto = (chosen.answer(srtp_key),)
            answered.append(audio_media(port, codecs, direction=mine, ptime=ptime,
                                        proto=media.proto, crypto=crypto))
        else:
            # RFC 3264 6: "To reject an offered stream, the port number in the
            # corresponding stream in the answer MUST be set to zero. Any media
            # formats listed are ignored. At least one MUST be present".
            answered.append(MediaDescription(media.media, 0, media.proto, media.fmts or ("0",)))
    if not accepted:
        raise _fail("no common codec")
    sdp = SessionDescription(
        origin, "-", (Connection.for_host(address), Timing()), tuple(answered)
    )
    return Answer(sdp, negotiate(offer, sdp, local_is_offerer=False))


def negotiate(
    offer: SessionDescription, answer: SessionDescription, *, local_is_offerer: bool
) -> NegotiatedMedia:
    """What an offer and its answer settle for the first audio stream both accept.

    Raises ``ParseError`` (488) when the answer does not fit the offer: another m=
    line count or media type (RFC 3264 6), or no accepted audio stream with a payload
    type from the offer.
    """
    if len(answer.media) != len(offer.media):
        raise _fail("answer m= lines do not match the offer")
    for index, (off, ans) in enumerate(zip(offer.media, answer.media)):
        if off.media != ans.media:
            raise _fail("answer m= lines do not match the offer")
        if off.media != "audio" or off.is_rejected or ans.is_rejected or not off.is_rtp:
            continue
        offered = off.rtpmap()
        answered = {pt: c for pt, c in ans.rtpmap().items() if pt in offered}
        audio = [(pt, c) for pt, c in answered.items() if not c.is_telephone_event]
        if not audio:
            continue
        local, remote = (off, ans) if local_is_offerer else (ans, off)
        address = remote.connection_address
        if address is None:
            raise _fail("no connection address for the stream")
        pt, codec = audio[0]
        events = [p for p, c in answered.items() if c.is_telephone_event]
        mine = local.direction.intersect(_offered_direction(remote).reversed())
        srtp = (_srtp_keys(off, ans, local_is_offerer) if off.is_srtp or ans.is_srtp
                else _best_effort_keys(off, ans, local_is_offerer))
        return NegotiatedMedia(
            index=index,
            payload_type=pt,
            codec=codec,
            telephone_event=events[0] if events else None,
            remote_address=address,
            remote_port=remote.port,
            direction=mine,
            remote_hold=remote.is_hold,
            ptime=remote.ptime,
            srtp=srtp,
        )
    raise _fail("no audio stream accepted")


def _srtp_keys(off: MediaDescription, ans: MediaDescription, local_is_offerer: bool, *,
               best_effort: bool = False) -> SrtpKeys:
    """RFC 4568 7.1.2/7.1.3: the answer has one a=crypto, with the tag and suite of an
    offered one; each side's line carries the key it sends with."""
    if not best_effort and not (off.is_srtp and ans.is_srtp):
        raise _fail("RTP/SAVP answered with another transport")
    answered = [c for c in ans.crypto() if c.usable]
    if len(answered) != 1:
        raise _fail("an RTP/SAVP answer needs exactly one usable a=crypto")
    chosen = answered[0]
    offered = next((c for c in off.crypto() if c.tag == chosen.tag), None)
    if offered is None or offered.suite != chosen.suite or not offered.usable:
        raise _fail("the answer's a=crypto does not match an offered one")
    local, remote = (offered, chosen) if local_is_offerer else (chosen, offered)
    return SrtpKeys(offered.suite, remote.key_salt, local.key_salt, offered.tag)


def _best_effort_keys(off: MediaDescription, ans: MediaDescription, local_is_offerer: bool) -> SrtpKeys | None:
    """Best-effort SRTP: RTP/AVP with a=crypto in the offer (engine/outbound.py
    offer_on, Asterisk's media_encryption_optimistic). An answer that keys it as
    RFC 4568 says runs SRTP; one without a=crypto, or with one that does not fit,
    stays plain RTP: the offer promised nothing more."""
    if not off.crypto() or not ans.crypto():
        return None
    try:
        return _srtp_keys(off, ans, local_is_offerer, best_effort=True)
    except ParseError:
        return None


# -- negotiation state ------------------------------------------------------------------


class OAState(Enum):
    NO_OFFER = "no-offer"
    LOCAL_OFFER_SENT = "local-offer-sent"
    REMOTE_OFFER_RECEIVED = "remote-offer-received"
    NEGOTIATED = "negotiated"


class OAInput(Enum):
    LOCAL_OFFER = "local_offer"
    REMOTE_OFFER = "remote_offer"
    LOCAL_ANSWER = "local_answer"
    REMOTE_ANSWER = "remote_answer"
    ROLLBACK = "rollback"


#: Target meaning "back to NEGOTIATED if an exchange completed before, else NO_OFFER".
LAST_STABLE = "last-stable"

S, I = OAState, OAInput
#: (state, input) -> next state. Anything not in this map is invalid.
TRANSITIONS: dict[tuple[OAState, OAInput], OAState | str] = {
    (S.NO_OFFER, I.LOCAL_OFFER): S.LOCAL_OFFER_SENT,
    (S.NO_OFFER, I.REMOTE_OFFER): S.REMOTE_OFFER_RECEIVED,
    (S.LOCAL_OFFER_SENT, I.REMOTE_ANSWER): S.NEGOTIATED,
    (S.LOCAL_OFFER_SENT, I.ROLLBACK): LAST_STABLE,
    (S.REMOTE_OFFER_RECEIVED, I.LOCAL_ANSWER): S.NEGOTIATED,
    (S.REMOTE_OFFER_RECEIVED, I.ROLLBACK): LAST_STABLE,
    (S.NEGOTIATED, I.LOCAL_OFFER): S.LOCAL_OFFER_SENT,
    (S.NEGOTIATED, I.REMOTE_OFFER): S.REMOTE_OFFER_RECEIVED,
}
#: The status for an invalid (state, input) pair when it is not 500.
REJECTIONS: dict[tuple[OAState, OAInput], int] = {
    # Glare: "491 (Request Pending)" to an offer that crosses ours (RFC 3261 14.2).
    (S.LOCAL_OFFER_SENT, I.REMOTE_OFFER): 491,
}
del S, I


class OfferAnswer:
    """One session's offer/answer state (RFC 3264, RFC 6337): which side owes what,
    the SDP each side last settled on, and what that settled."""

    def __init__(self) -> None:
        self.state = OAState.NO_OFFER
        #: The offer outstanding in LOCAL_OFFER_SENT or REMOTE_OFFER_RECEIVED.
        self.pending_offer: SessionDescription | None = None
        #: The SDP of each side from the last completed exchange.
        self.local_sdp: SessionDescription | None = None
        self.remote_sdp: SessionDescription | None = None
        self.negotiated: NegotiatedMedia | None = None

    def _next(self, event: OAInput) -> OAState:
        target = TRANSITIONS.get((self.state, event))
        if target is None:
            status = REJECTIONS.get((self.state, event), 500)
            raise ProtocolViolation(f"{event.value} in state {self.state.value}", status=status)
        if target == LAST_STABLE:
            return OAState.NEGOTIATED if self.negotiated is not None else OAState.NO_OFFER
        assert isinstance(target, OAState)
        return target

    def local_offer(self, sdp: SessionDescription) -> None:
        self.state = self._next(OAInput.LOCAL_OFFER)
        self.pending_offer = sdp

    def remote_offer(self, sdp: SessionDescription) -> None:
        self.state = self._next(OAInput.REMOTE_OFFER)
        self.pending_offer = sdp

    def local_answer(self, sdp: SessionDescription,
                     negotiated: NegotiatedMedia | None = None) -> NegotiatedMedia:
        """``negotiated``: what :func:`negotiate` already gave for this offer and
        ``sdp`` (the INVITE session checks an answer before it acts), so it is not
        worked out twice."""
        state = self._next(OAInput.LOCAL_ANSWER)
        assert self.pending_offer is not None
        if negotiated is None:
            negotiated = negotiate(self.pending_offer, sdp, local_is_offerer=False)
        self._settle(state, local=sdp, remote=self.pending_offer, negotiated=negotiated)
        return negotiated

    def remote_answer(self, sdp: SessionDescription,
                      negotiated: NegotiatedMedia | None = None) -> NegotiatedMedia:
        """Raises ``ParseError`` (488) if the answer does not fit our offer; the state
        stays LOCAL_OFFER_SENT so the caller can ``rollback``. ``negotiated`` as for
        :meth:`local_answer`."""
        state = self._next(OAInput.REMOTE_ANSWER)
        assert self.pending_offer is not None
        if negotiated is None:
            negotiated = negotiate(self.pending_offer, sdp, local_is_offerer=True)
        self._settle(state, local=self.pending_offer, remote=sdp, negotiated=negotiated)
        return negotiated

    def rollback(self) -> None:
        """Drop the outstanding offer (a re-INVITE or UPDATE that failed)."""
        self.state = self._next(OAInput.ROLLBACK)
        self.pending_offer = None

    def _settle(
        self,
        state: OAState,
        *,
        local: SessionDescription,
        remote: SessionDescription,
        negotiated: NegotiatedMedia,
    ) -> None:
        self.state = state
        self.pending_offer = None
        self.local_sdp, self.remote_sdp, self.negotiated = local, remote, negotiated

    # Convenience views of the negotiated stream.

    @property
    def codec(self) -> Codec | None:
        return None if self.negotiated is None else self.negotiated.codec

    @property
    def remote_rtp_address(self) -> tuple[str, int] | None:
        n = self.negotiated
        return None if n is None else (n.remote_address, n.remote_port)

    @property
    def direction(self) -> Direction | None:
        return None if self.negotiated is None else self.negotiated.direction
