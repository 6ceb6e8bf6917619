"""SDP model, parser and serializer (voicegw.sip.sdp)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicegw.sip.errors import ParseError
from voicegw.sip.sdp import (
    MAX_MEDIA,
    MAX_SDP_SIZE,
    MediaDescription,
    SdpBuilder,
    SessionDescription,
    audio_media,
)
from voicegw.sip.sdp_fields import (
    PCMA,
    PCMU,
    Attribute,
    Codec,
    Connection,
    Direction,
    Field,
    Origin,
    Timing,
)


def crlf(text: str) -> bytes:
    return "".join(line + "\r\n" for line in text.strip().splitlines()).encode()


# RFC 5118 4.6 (ipv6-in-sdp): an INVITE whose SDP carries bare IPv6 addresses.
RFC5118_IPV6_IN_SDP = crlf(
    """
v=0
o=assistant 971731711378798081 0 IN IP6 2001:db8::20
s=Live video feed
e=+1-630-555-0100
c=IN IP6 2001:db8::20
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
"""
)

# RFC 5118 4.8 (mult-ip-in-sdp): one media section on IPv4, another on IPv6.
RFC5118_MULT_IP_IN_SDP = crlf(
    """
v=0
o=bob 280744730 28977631 IN IP4 host.example.com
s=
t=0 0
m=audio 22334 RTP/AVP 0
c=IN IP4 192.0.2.1
m=video 6024 RTP/AVP 107
c=IN IP6 2001:db8::1
a=rtpmap:107 H263-1998/90000
"""
)

OFFER = crlf(
    """
v=0
o=- 3344 1 IN IP4 198.51.100.7
s=-
c=IN IP4 198.51.100.7
b=AS:64
t=0 0
a=tool:softphone 1.0
m=audio 49170 RTP/AVP 8 0 18 101
a=rtpmap:8 PCMA/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=x-unknown
a=sendonly
a=x-empty:
m=video 0 RTP/AVP 31
"""
)


def test_rfc5118_ipv6_in_sdp() -> None:
    sd = SessionDescription.parse(RFC5118_IPV6_IN_SDP)
    assert bytes(sd) == RFC5118_IPV6_IN_SDP
    assert sd.origin.addrtype == "IP6" and sd.origin.address == "2001:db8::20"
    assert sd.origin.session_id == 971731711378798081
    assert sd.connection == Connection("IP6", "2001:db8::20")
    audio = sd.media[0]
    assert audio.connection_address == "2001:db8::20"  # from the session level
    assert audio.rtpmap() == {0: PCMU}
    assert sd.lines[0] == Field("e", "+1-630-555-0100")


def test_rfc5118_mult_ip_in_sdp() -> None:
    sd = SessionDescription.parse(RFC5118_MULT_IP_IN_SDP)
    assert bytes(sd) == RFC5118_MULT_IP_IN_SDP
    assert sd.session_name == "" and sd.connection is None
    audio, video = sd.media
    assert (audio.connection_address, audio.port) == ("192.0.2.1", 22334)
    assert (video.connection_address, video.port) == ("2001:db8::1", 6024)
    assert video.connection == Connection("IP6", "2001:db8::1")
    assert video.rtpmap() == {107: Codec("H263-1998", 90000)}


def test_offer_fields_and_exact_round_trip() -> None:
    sd = SessionDescription.parse(OFFER)
    assert bytes(sd) == OFFER
    assert sd.timing == Timing(0, 0)
    assert sd.attribute("tool") == "softphone 1.0"
    audio, video = sd.media
    assert (audio.media, audio.port, audio.proto, audio.fmts) == (
        "audio",
        49170,
        "RTP/AVP",
        ("8", "0", "18", "101"),
    )
    assert audio.rtpmap() == {
        8: PCMA,
        0: PCMU,  # static: no rtpmap needed (RFC 3551)
        18: Codec("G729", 8000, fmtp="annexb=no"),
        101: Codec("telephone-event", 8000, fmtp="0-15"),
    }
    assert list(audio.rtpmap()) == [8, 0, 18, 101]  # offerer's order
    assert audio.rtpmap(static=False).keys() == {8, 18, 101}
    assert audio.fmtp() == {"18": "annexb=no", "101": "0-15"}
    assert audio.ptime == 20
    assert audio.direction is Direction.SENDONLY and audio.is_hold
    assert audio.attribute("x-empty") == "" and audio.has_attribute("x-unknown")
    assert [a.name for a in audio.attributes][-2:] == ["sendonly", "x-empty"]
    assert video.is_rejected and video.direction is Direction.SENDRECV
    assert video.connection_address == "198.51.100.7"


def test_lf_only_and_trailing_blank_lines_are_normalised() -> None:
    lf = OFFER.replace(b"\r\n", b"\n") + b"\n\n"
    sd = SessionDescription.parse(lf)
    assert bytes(sd) == OFFER
    assert SessionDescription.parse(OFFER.decode()) == sd  # str input too


def test_non_utf8_text_survives() -> None:
    body = OFFER.replace(b"s=-", b"s=caf\xe9 \xff")
    sd = SessionDescription.parse(body)
    assert bytes(sd) == body


def test_session_level_direction_and_port_count() -> None:
    body = crlf(
        """
v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
c=IN IP4 224.2.36.42/127/2
t=0 0
a=recvonly
m=audio 5004/2 RTP/AVP 0
m=audio 5008 RTP/AVP 0
a=inactive
"""
    )
    sd = SessionDescription.parse(body)
    assert bytes(sd) == body
    first, second = sd.media
    assert first.port_count == 2 and first.direction is Direction.RECVONLY
    assert second.direction is Direction.INACTIVE
    assert first.connection_address == "224.2.36.42"
    assert sd.direction is Direction.RECVONLY


def test_null_connection_is_hold() -> None:
    body = OFFER.replace(b"c=IN IP4 198.51.100.7", b"c=IN IP4 0.0.0.0").replace(
        b"a=sendonly\r\n", b""
    )
    audio = SessionDescription.parse(body).media[0]
    assert audio.direction is Direction.SENDRECV and audio.is_hold


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"v=1\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n",
        b"o=- 1 1 IN IP4 192.0.2.1\r\nv=0\r\ns=-\r\n",
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n",
        b"v=0\r\no=- x 1 IN IP4 192.0.2.1\r\ns=-\r\n",
        b"v=0\r\no=-  1 1 IN IP4 192.0.2.1\r\ns=-\r\n",
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nx=unknown\r\n",
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nA=upper\r\n",
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc = IN IP4 192.0.2.1\r\n",
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.300\r\n",
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP6 [2001:db8::1]\r\n",
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP6 2001:db8:::1\r\n",
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nm=audio 70000 RTP/AVP 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nm=audio 5004/0 RTP/AVP 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nm=audio RTP/AVP 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nm=audio 5004 RTP/AVP 0\r\nt=0 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nm=audio 5004 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n",
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nm=audio 5004 RTP/AVP 0\r\na=fmtp:101\r\n",
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nm=audio 5004 RTP/AVP 0\r\na=ptime:x\r\n",
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nm=audio 5004 RTP/AVP 0\r\na=sendonly:1\r\n",
        (b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nm=audio 5004 RTP/AVP 0\r\n"
        b"a=sendonly\r\na=recvonly\r\n"),
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\na=\r\n",
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\ni=a\rb\r\n",
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\ni=a\x00b\r\n",
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n\r\nt=0 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\ns=again\r\n",
    ],
)
def test_bad_sdp_is_488(bad: bytes) -> None:
    with pytest.raises(ParseError) as info:
        SessionDescription.parse(bad)
    assert info.value.status == 488


def test_limits() -> None:
    head = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n"
    with pytest.raises(ParseError, match="too large"):
        SessionDescription.parse(head + b"i=" + b"x" * MAX_SDP_SIZE + b"\r\n")
    with pytest.raises(ParseError, match="too many SDP lines"):
        SessionDescription.parse(head + b"a=x\r\n" * 2000)
    with pytest.raises(ParseError, match="media sections"):
        SessionDescription.parse(head + b"m=audio 0 RTP/AVP 0\r\n" * (MAX_MEDIA + 1))
    with pytest.raises(ParseError):
        SessionDescription.parse("v=0\r\no=- 1 1 IN IP4 a\ud800\r\ns=-\r\n")


def test_builder_offer_and_version_bump() -> None:
    builder = SdpBuilder(session_id=42, session_version=7, address="192.0.2.10")
    offer = builder.offer(port=4000)
    assert bytes(offer) == crlf(
        """
v=0
o=voicegw 42 7 IN IP4 192.0.2.10
s=voicegw
c=IN IP4 192.0.2.10
t=0 0
m=audio 4000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
"""
    )
    assert builder.offer(port=4000) is offer  # unchanged: same version (RFC 6337 5.3)
    held = builder.offer(port=4000, direction=Direction.SENDONLY)
    assert held.origin == replace(offer.origin, session_version=8)
    assert held.media[0].direction is Direction.SENDONLY
    resumed = builder.offer(port=4000)
    assert resumed.origin.session_version == 9
    assert SessionDescription.parse(bytes(resumed)) == resumed


def test_builder_ipv6() -> None:
    offer = SdpBuilder(session_id=1, address="2001:db8::5").offer(port=5000, payloads=[(8, PCMA)])
    assert offer.origin.addrtype == "IP6"
    assert offer.media[0].connection == Connection("IP6", "2001:db8::5")
    assert offer.media[0].rtpmap() == {8: PCMA}


def test_with_direction_replaces_in_place() -> None:
    media = audio_media(4000, direction=Direction.SENDRECV)
    held = media.with_direction(Direction.INACTIVE)
    assert held.lines[-1] == Attribute("inactive") and len(held.lines) == len(media.lines)
    bare = MediaDescription("audio", 4000, "RTP/AVP", ("0",))
    assert bare.with_direction(Direction.RECVONLY).lines == (Attribute("recvonly"),)


def test_direction_algebra() -> None:
    assert Direction.SENDONLY.reversed() is Direction.RECVONLY
    assert Direction.RECVONLY.reversed() is Direction.SENDONLY
    assert Direction.INACTIVE.reversed() is Direction.INACTIVE
    assert Direction.SENDRECV.reversed() is Direction.SENDRECV
    assert Direction.SENDRECV.intersect(Direction.SENDONLY) is Direction.SENDONLY
    assert Direction.RECVONLY.intersect(Direction.SENDONLY) is Direction.INACTIVE


# -- property tests ------------------------------------------------------------------

_TOKEN_CHARS = "".join(
    chr(c)
    for c in range(0x21, 0x7F)
    if chr(c) not in "\"(),/:;<=>?@[\\]{}"
)
tokens = st.text(alphabet=_TOKEN_CHARS, min_size=1, max_size=12)
non_ws = st.text(
    alphabet=st.characters(min_codepoint=0x21, blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")),
    min_size=1,
    max_size=12,
).filter(lambda s: all(ord(c) > 0x7F or 0x21 <= ord(c) <= 0x7E for c in s))
byte_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r\n"),
    max_size=20,
)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
connections = st.one_of(
    ipv4.map(lambda a: Connection("IP4", a)),
    ipv6.map(lambda a: Connection("IP6", a)),
    st.tuples(tokens, non_ws).map(lambda t: Connection("X" + t[0], t[1], "ATM")),
)
_RESERVED = {"rtpmap", "fmtp", "ptime", *(d.value for d in Direction)}
plain_attributes = st.builds(
    Attribute, tokens.filter(lambda n: n not in _RESERVED), st.none() | byte_text
)
known_attributes = st.one_of(
    st.builds(
        lambda pt, name, rate: Attribute("rtpmap", f"{pt} {name}/{rate}"),
        st.integers(0, 127),
        tokens,
        st.integers(1, 96000),
    ),
    st.builds(lambda fmt, p: Attribute("fmtp", f"{fmt} {p}"), tokens, byte_text),
    st.integers(1, 200).map(lambda p: Attribute("ptime", str(p))),
)
attributes = st.one_of(plain_attributes, known_attributes)
direction_attr = st.sampled_from(Direction).map(lambda d: Attribute(d.value))


def _with_direction(lines: list, direction: Attribute | None) -> tuple:
    return tuple(lines + ([direction] if direction is not None else []))


session_lines = st.builds(
    _with_direction,
    st.lists(
        st.one_of(
            connections,
            st.builds(Timing, st.integers(0, 2**40), st.integers(0, 2**40)),
            attributes,
            st.builds(Field, st.sampled_from("iuepbrzk"), byte_text),
        ),
        max_size=6,
    ),
    st.none() | direction_attr,
)
media_lines = st.builds(
    _with_direction,
    st.lists(
        st.one_of(connections, attributes, st.builds(Field, st.sampled_from("ibk"), byte_text)),
        max_size=6,
    ),
    st.none() | direction_attr,
)
medias = st.builds(
    MediaDescription,
    media=tokens,
    port=st.integers(0, 65535),
    proto=st.lists(tokens, min_size=1, max_size=3).map("/".join),
    fmts=st.lists(tokens, max_size=5).map(tuple),
    lines=media_lines,
    port_count=st.none() | st.integers(1, 65535),
)
origins = st.builds(
    Origin,
    username=non_ws,
    session_id=st.integers(0, 2**64),
    session_version=st.integers(0, 2**64),
    nettype=st.just("IN"),
    addrtype=st.sampled_from(["IP4", "IP6"]),
    address=non_ws,
)
descriptions = st.builds(
    SessionDescription,
    origin=origins,
    session_name=byte_text,
    lines=session_lines,
    media=st.lists(medias, max_size=4).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(descriptions)
def test_round_trip_property(sd: SessionDescription) -> None:
    data = bytes(sd)
    parsed = SessionDescription.parse(data)
    assert parsed == sd
    assert bytes(parsed) == data
    for mine, theirs in zip(parsed.media, sd.media):
        assert mine.connection_address == theirs.connection_address
        assert mine.direction is theirs.direction


def _parse_or_parse_error(data: bytes) -> None:
    try:
        sd = SessionDescription.parse(data)
    except ParseError as exc:
        assert exc.status == 488
        return
    # Whatever parses serialises, and its serialisation parses to the same model.
    assert SessionDescription.parse(bytes(sd)) == sd
    for media in sd.media:
        media.rtpmap(), media.direction, media.ptime, media.connection_address, media.is_hold


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_parse_error(data: bytes) -> None:
    _parse_or_parse_error(data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_sdp_raises_only_parse_error(data: st.DataObject) -> None:
    body = bytearray(data.draw(st.sampled_from([OFFER, RFC5118_IPV6_IN_SDP, RFC5118_MULT_IP_IN_SDP])))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(body) - 1))
        body[pos : pos + 1] = data.draw(st.binary(min_size=0, max_size=3))
    _parse_or_parse_error(bytes(body))
