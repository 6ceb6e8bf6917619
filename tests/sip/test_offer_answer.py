"""RFC 3264 offer/answer (voicegw.sip.offer_answer)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicegw.sip.errors import ParseError, ProtocolViolation
from voicegw.sip.offer_answer import (
    REJECTIONS,
    TRANSITIONS,
    NegotiatedMedia,
    OAInput,
    OAState,
    OfferAnswer,
    make_answer,
    negotiate,
)
from voicegw.sip.sdp import SdpBuilder, SessionDescription
from voicegw.sip.sdp_fields import PCMA, PCMU, Direction, Origin

ORIGIN = Origin("voicegw", 77, 1, "IN", "IP4", "192.0.2.10")


def crlf(text: str) -> bytes:
    return "".join(line + "\r\n" for line in text.strip().splitlines() if line).encode()


def offer(media: str, session: str = "c=IN IP4 198.51.100.7") -> SessionDescription:
    head = f"v=0\no=- 5 1 IN IP4 198.51.100.7\ns=-\n{session}\nt=0 0\n"
    return SessionDescription.parse(crlf(head + media.strip()))


def answer_for(sd: SessionDescription, **kwargs: object) -> SessionDescription:
    return make_answer(sd, origin=ORIGIN, address="192.0.2.10", port=4000, **kwargs).sdp  # type: ignore[arg-type]


def test_basic_answer() -> None:
    remote = offer(
        """
m=audio 49170 RTP/AVP 18 8 0 101
a=rtpmap:18 G729/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
"""
    )
    result = make_answer(remote, origin=ORIGIN, address="192.0.2.10", port=4000)
    assert bytes(result.sdp) == crlf(
        """
v=0
o=voicegw 77 1 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 4000 RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
"""
    )
    assert result.negotiated == NegotiatedMedia(
        index=0,
        payload_type=8,  # offerer's order: PCMA before PCMU, G729 unsupported
        codec=PCMA,
        telephone_event=101,
        remote_address="198.51.100.7",
        remote_port=49170,
        direction=Direction.SENDRECV,
        remote_hold=False,
        ptime=None,
    )


def test_all_common_codecs_when_asked() -> None:
    remote = offer("m=audio 49170 RTP/AVP 0 8")
    sd = answer_for(remote, single_codec=False)
    assert sd.media[0].fmts == ("0", "8")


def test_telephone_event_kept_only_when_offered_at_the_codec_clock() -> None:
    assert answer_for(offer("m=audio 1 RTP/AVP 0")).media[0].fmts == ("0",)
    wideband_events = offer(
        """
m=audio 1 RTP/AVP 0 100
a=rtpmap:100 telephone-event/16000
"""
    )
    assert answer_for(wideband_events).media[0].fmts == ("0",)
    # Payload type numbers follow the offer (RFC 3264 6.1).
    dyn = offer(
        """
m=audio 1 RTP/AVP 0 96
a=rtpmap:96 TELEPHONE-EVENT/8000
"""
    )
    assert answer_for(dyn).media[0].fmts == ("0", "96")
    no_events_supported = answer_for(dyn, supported=(PCMU,))
    assert no_events_supported.media[0].fmts == ("0",)


def test_keeps_m_line_count_and_rejects_the_rest() -> None:
    remote = offer(
        """
m=video 5000 RTP/AVP 31
m=audio 5002 RTP/SAVP 0
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz
m=audio 5004 RTP/AVP 0
a=sendonly
m=audio 5006 RTP/AVP 8
m=audio 0 RTP/AVP 0
"""
    )
    result = make_answer(remote, origin=ORIGIN, address="192.0.2.10", port=4000)
    ports = [(m.media, m.port, m.proto) for m in result.sdp.media]
    assert ports == [
        ("video", 0, "RTP/AVP"),
        ("audio", 0, "RTP/SAVP"),
        ("audio", 4000, "RTP/AVP"),
        ("audio", 0, "RTP/AVP"),  # one RTP endpoint per leg: first usable stream only
        ("audio", 0, "RTP/AVP"),
    ]
    assert result.sdp.media[0].fmts == ("31",) and result.sdp.media[0].lines == ()
    assert result.negotiated.index == 2
    assert result.negotiated.direction is Direction.RECVONLY
    assert result.negotiated.remote_hold
    assert SessionDescription.parse(bytes(result.sdp)) == result.sdp


@pytest.mark.parametrize(
    ("offered", "ours", "expected"),
    [
        ("a=sendrecv", Direction.SENDRECV, Direction.SENDRECV),
        ("a=sendonly", Direction.SENDRECV, Direction.RECVONLY),
        ("a=recvonly", Direction.SENDRECV, Direction.SENDONLY),
        ("a=inactive", Direction.SENDRECV, Direction.INACTIVE),
        ("a=sendrecv", Direction.SENDONLY, Direction.SENDONLY),
        ("a=sendonly", Direction.SENDONLY, Direction.INACTIVE),
        ("a=x-none", Direction.SENDRECV, Direction.SENDRECV),
    ],
)
def test_direction_mirrored(offered: str, ours: Direction, expected: Direction) -> None:
    remote = offer(f"m=audio 5000 RTP/AVP 0\n{offered}")
    result = make_answer(remote, origin=ORIGIN, address="192.0.2.10", port=4000, direction=ours)
    assert result.sdp.media[0].direction is expected
    assert result.negotiated.direction is expected
    assert result.negotiated.remote_hold is (offered in ("a=sendonly", "a=inactive"))


def test_session_level_direction_is_mirrored() -> None:
    remote = offer("m=audio 5000 RTP/AVP 0", session="c=IN IP4 198.51.100.7\na=sendonly")
    assert answer_for(remote).media[0].direction is Direction.RECVONLY


def test_rfc2543_hold_with_null_connection() -> None:
    remote = offer("m=audio 5000 RTP/AVP 0", session="c=IN IP4 0.0.0.0")
    result = make_answer(remote, origin=ORIGIN, address="192.0.2.10", port=4000)
    assert result.negotiated.remote_hold
    assert result.sdp.media[0].direction is Direction.RECVONLY  # never send to 0.0.0.0
    assert result.negotiated.remote_address == "0.0.0.0"


def test_ipv6_offer_and_media_level_connection() -> None:
    remote = offer(
        """
m=audio 5000 RTP/AVP 0
c=IN IP6 2001:db8::1
a=ptime:30
""",
        session="",
    )
    n = make_answer(remote, origin=ORIGIN, address="192.0.2.10", port=4000).negotiated
    assert (n.remote_address, n.remote_port, n.ptime) == ("2001:db8::1", 5000, 30)


@pytest.mark.parametrize(
    "media",
    [
        "m=audio 5000 RTP/AVP 18\na=rtpmap:18 G729/8000",
        "m=audio 5000 RTP/AVP 101\na=rtpmap:101 telephone-event/8000",
        "m=audio 5000 RTP/SAVP 0",
        "m=audio 0 RTP/AVP 0",
        "m=video 5000 RTP/AVP 0",
        "m=audio 5000 RTP/AVP 96\na=rtpmap:96 PCMU/16000",
    ],
)
def test_no_common_codec_is_488(media: str) -> None:
    with pytest.raises(ParseError) as info:
        answer_for(offer(media))
    assert info.value.status == 488


def test_stream_without_connection_is_not_usable() -> None:
    with pytest.raises(ParseError):
        answer_for(offer("m=audio 5000 RTP/AVP 0", session=""))


def test_builder_stamps_answers() -> None:
    builder = SdpBuilder(session_id=9, session_version=3, address="192.0.2.10")
    remote = offer("m=audio 5000 RTP/AVP 0")
    first = builder.stamp(answer_for(remote))
    again = builder.stamp(answer_for(remote))
    held = builder.stamp(answer_for(remote, direction=Direction.SENDONLY))
    assert (first.origin.session_version, again.origin.session_version) == (3, 3)
    assert held.origin.session_version == 4 and held.origin.session_id == 9


# -- negotiate(): the offerer's view ---------------------------------------------------


def test_negotiate_as_offerer() -> None:
    builder = SdpBuilder(session_id=1, address="192.0.2.10")
    ours = builder.offer(port=4000)
    theirs = offer(
        """
m=audio 6000 RTP/AVP 8 101
a=rtpmap:101 telephone-event/8000
a=recvonly
"""
    )
    n = negotiate(ours, theirs, local_is_offerer=True)
    assert (n.payload_type, n.codec, n.telephone_event) == (8, PCMA, 101)
    assert (n.remote_address, n.remote_port) == ("198.51.100.7", 6000)
    assert n.direction is Direction.SENDONLY and not n.remote_hold


@pytest.mark.parametrize(
    "media",
    [
        "m=audio 6000 RTP/AVP 0\nm=video 0 RTP/AVP 31",  # extra m= line
        "m=video 6000 RTP/AVP 0",  # media type changed
        "m=audio 0 RTP/AVP 0",  # rejected
        "m=audio 6000 RTP/AVP 18",  # payload type we did not offer
    ],
)
def test_bad_answers(media: str) -> None:
    ours = SdpBuilder(session_id=1, address="192.0.2.10").offer(port=4000)
    with pytest.raises(ParseError) as info:
        negotiate(ours, offer(media), local_is_offerer=True)
    assert info.value.status == 488


# -- the state machine -----------------------------------------------------------------

REMOTE = offer("m=audio 5000 RTP/AVP 0 8")


def local_offer_sdp(direction: Direction = Direction.SENDRECV) -> SessionDescription:
    return SdpBuilder(session_id=1, address="192.0.2.10").offer(port=4000, direction=direction)


def test_uas_flow_then_reinvite_from_us_and_rollback() -> None:
    oa = OfferAnswer()
    oa.remote_offer(REMOTE)
    assert oa.state is OAState.REMOTE_OFFER_RECEIVED and oa.pending_offer is REMOTE
    ans = answer_for(REMOTE)
    n = oa.local_answer(ans)
    assert oa.state is OAState.NEGOTIATED and oa.negotiated == n
    assert (oa.codec, oa.remote_rtp_address, oa.direction) == (
        PCMU,
        ("198.51.100.7", 5000),
        Direction.SENDRECV,
    )
    assert (oa.local_sdp, oa.remote_sdp) == (ans, REMOTE)

    oa.local_offer(local_offer_sdp(Direction.SENDONLY))  # hold re-INVITE
    assert oa.state is OAState.LOCAL_OFFER_SENT
    oa.rollback()  # 488 to the re-INVITE: the session stays as it was
    assert oa.state is OAState.NEGOTIATED and oa.negotiated == n and oa.pending_offer is None


def test_uac_flow_and_remote_hold() -> None:
    oa = OfferAnswer()
    assert (oa.codec, oa.remote_rtp_address, oa.direction) == (None, None, None)
    oa.local_offer(local_offer_sdp())
    n = oa.remote_answer(offer("m=audio 6000 RTP/AVP 8"))
    assert oa.state is OAState.NEGOTIATED and n.codec == PCMA

    held = offer("m=audio 6000 RTP/AVP 8\na=sendonly")
    oa.remote_offer(held)
    n2 = oa.local_answer(answer_for(held))
    assert n2.remote_hold and oa.direction is Direction.RECVONLY


def test_rollback_before_first_exchange_goes_back_to_no_offer() -> None:
    oa = OfferAnswer()
    oa.remote_offer(REMOTE)
    oa.rollback()
    assert oa.state is OAState.NO_OFFER and oa.negotiated is None


def test_bad_remote_answer_leaves_offer_outstanding() -> None:
    oa = OfferAnswer()
    oa.local_offer(local_offer_sdp())
    with pytest.raises(ParseError):
        oa.remote_answer(offer("m=audio 6000 RTP/AVP 18"))
    assert oa.state is OAState.LOCAL_OFFER_SENT
    oa.rollback()
    assert oa.state is OAState.NO_OFFER


def test_glare_is_491() -> None:
    oa = OfferAnswer()
    oa.local_offer(local_offer_sdp())
    with pytest.raises(ProtocolViolation) as info:
        oa.remote_offer(REMOTE)
    assert info.value.status == 491
    assert oa.state is OAState.LOCAL_OFFER_SENT


def test_second_remote_offer_is_500() -> None:
    oa = OfferAnswer()
    oa.remote_offer(REMOTE)
    with pytest.raises(ProtocolViolation) as info:
        oa.remote_offer(REMOTE)
    assert info.value.status == 500


def _apply(oa: OfferAnswer, event: OAInput) -> None:
    if event is OAInput.LOCAL_OFFER:
        oa.local_offer(local_offer_sdp())
    elif event is OAInput.REMOTE_OFFER:
        oa.remote_offer(REMOTE)
    elif event is OAInput.LOCAL_ANSWER:
        oa.local_answer(answer_for(REMOTE))
    elif event is OAInput.REMOTE_ANSWER:
        oa.remote_answer(offer("m=audio 6000 RTP/AVP 0"))
    else:
        oa.rollback()


# Inputs that drive a fresh machine into each state.
PATHS: dict[OAState, list[OAInput]] = {
    OAState.NO_OFFER: [],
    OAState.LOCAL_OFFER_SENT: [OAInput.LOCAL_OFFER],
    OAState.REMOTE_OFFER_RECEIVED: [OAInput.REMOTE_OFFER],
    OAState.NEGOTIATED: [OAInput.REMOTE_OFFER, OAInput.LOCAL_ANSWER],
}


@pytest.mark.parametrize(("state", "event"), list(itertools.product(OAState, OAInput)))
def test_every_state_input_pair(state: OAState, event: OAInput) -> None:
    """h2's habit: every (state, input) pair either follows the table or raises."""
    oa = OfferAnswer()
    for step in PATHS[state]:
        _apply(oa, step)
    assert oa.state is state
    if (state, event) in TRANSITIONS:
        _apply(oa, event)
        assert oa.state is not state or event is OAInput.ROLLBACK
    else:
        with pytest.raises(ProtocolViolation) as info:
            _apply(oa, event)
        assert info.value.status == REJECTIONS.get((state, event), 500)
        assert oa.state is state


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(OAInput), max_size=12))
def test_random_input_sequences_keep_invariants(events: list[OAInput]) -> None:
    oa = OfferAnswer()
    for event in events:
        try:
            _apply(oa, event)
        except ProtocolViolation as exc:
            assert exc.status in (491, 500)
        pending = oa.state in (OAState.LOCAL_OFFER_SENT, OAState.REMOTE_OFFER_RECEIVED)
        assert (oa.pending_offer is not None) is pending
        if oa.state is OAState.NEGOTIATED:
            assert oa.negotiated is not None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from([(0, "PCMU/8000"), (8, "PCMA/8000"), (18, "G729/8000"), (9, "G722/8000"),
                         (96, "opus/48000/2"), (101, "telephone-event/8000")]),
        min_size=1,
        max_size=6,
        unique=True,
    ),
    st.sampled_from(Direction),
)
def test_answer_properties(payloads: list[tuple[int, str]], direction: Direction) -> None:
    fmts = " ".join(str(pt) for pt, _ in payloads)
    maps = "\n".join(f"a=rtpmap:{pt} {enc}" for pt, enc in payloads)
    remote = offer(f"m=audio 5000 RTP/AVP {fmts}\n{maps}\na={direction.value}")
    common = [pt for pt, enc in payloads if enc in ("PCMU/8000", "PCMA/8000")]
    if not common:
        with pytest.raises(ParseError):
            answer_for(remote)
        return
    result = make_answer(remote, origin=ORIGIN, address="192.0.2.10", port=4000)
    media = result.sdp.media[0]
    assert int(media.fmts[0]) == common[0] == result.negotiated.payload_type
    assert set(media.rtpmap()) <= {pt for pt, _ in payloads}
    assert media.direction is direction.reversed()
    assert SessionDescription.parse(bytes(result.sdp)) == result.sdp
    assert result.negotiated.codec in (PCMU, PCMA)
