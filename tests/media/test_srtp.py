"""SRTP (RFC 3711) through libsrtp, SDES keys (RFC 4568), RTP/SAVP offer/answer, and
the relay between an SRTP leg and a plain RTP leg over loopback UDP sockets."""

from __future__ import annotations

import asyncio
import base64

import pytest
from peers.udp import UdpPeer

from voicegw.media.endpoint import open_endpoint
from voicegw.media.ports import PortPool
from voicegw.media.relay import Bridge
from voicegw.media.rtp import RtpPacket, build_rtp
from voicegw.media.srtp import SrtpContext, new_crypto, new_key
from voicegw.sip.errors import ParseError
from voicegw.sip.offer_answer import OfferAnswer, make_answer
from voicegw.sip.sdes import CryptoAttribute, SdesError, crypto_lines, pick
from voicegw.sip.sdp import SdpBuilder, SessionDescription
from voicegw.sip.sdp_fields import Origin

HOST = "127.0.0.1"

# --- RFC 3711 / libsrtp known answers -----------------------------------------------------
# libsrtp's srtp_validate() vectors (default policy AES_CM_128_HMAC_SHA1_80, SSRC
# 0xcafebabe, SEQ 0x1234, ROC 0): the key stream is RFC 3711 B.2's AES-CM.
KEY = bytes.fromhex("e1f97a0d3e018be0d64fa32c06de4139" "0ec675ad498afeebb6960b3aabe6")
RTP_PLAIN = bytes.fromhex("800f1234decafbadcafebabe") + b"\xab" * 16
SRTP = bytes.fromhex("800f1234decafbadcafebabe" "4e55dc4ce79978d88ca4d215949d2402"
                     "b78d6acc99ea179b8dbb")
RTCP_PLAIN = bytes.fromhex("81c8000bcafebabe") + b"\xab" * 16
SRTCP = bytes.fromhex("81c8000bcafebabe" "7128035be487b9bdbef89041f977a5a8"
                      "80000001" "993e08cd54d6c1230798")


def test_protect_matches_libsrtp_known_answer() -> None:
    sender = SrtpContext(inbound_key=new_key(), outbound_key=KEY)
    assert sender.protect_rtp(RTP_PLAIN) == SRTP
    assert sender.protect_rtcp(RTCP_PLAIN) == SRTCP


def test_unprotect_matches_libsrtp_known_answer() -> None:
    receiver = SrtpContext(inbound_key=KEY, outbound_key=new_key())
    assert receiver.unprotect_rtp(SRTP) == RTP_PLAIN
    assert receiver.unprotect_rtcp(SRTCP) == RTCP_PLAIN
    assert receiver.statistics().unprotected == 2


def _pair() -> tuple[SrtpContext, SrtpContext]:
    """Two ends of one SRTP stream: each unprotects with the other's key."""
    ours, theirs = new_key(), new_key()
    return SrtpContext(theirs, ours), SrtpContext(ours, theirs)


def test_round_trip_many_packets_both_ways() -> None:
    a, b = _pair()
    for seq in range(200):
        packet = build_rtp(0, seq, seq * 160, 0x1234, bytes([seq % 256]) * 160)
        protected = a.protect_rtp(packet)
        assert protected is not None and protected != packet and len(protected) == len(packet) + 10
        assert b.unprotect_rtp(protected) == packet
        back = b.protect_rtp(packet)
        assert a.unprotect_rtp(back) == packet


@pytest.mark.parametrize("where", [0, 12, 30, -1], ids=["header", "payload-start", "payload", "tag"])
def test_tampered_packet_rejected_and_counted(where: int) -> None:
    a, b = _pair()
    protected = bytearray(a.protect_rtp(build_rtp(0, 1, 160, 0x99, b"\x55" * 160)))
    protected[where] ^= 0x01
    assert b.unprotect_rtp(bytes(protected)) is None
    assert b.statistics().auth_failures == 1


def test_replayed_packet_rejected() -> None:
    a, b = _pair()
    protected = a.protect_rtp(build_rtp(0, 7, 160, 0x99, b"\x55" * 160))
    assert b.unprotect_rtp(protected) is not None
    assert b.unprotect_rtp(protected) is None  # RFC 3711 3.3.2
    assert b.statistics().auth_failures == 1


def test_wrong_key_and_garbage_rejected() -> None:
    a, _ = _pair()
    stranger = SrtpContext(new_key(), new_key())
    assert stranger.unprotect_rtp(a.protect_rtp(build_rtp(0, 1, 0, 1, b"x" * 20))) is None
    assert stranger.unprotect_rtp(b"\x80") is None
    assert stranger.unprotect_rtcp(b"garbage") is None
    assert stranger.statistics().auth_failures == 3


def test_sha1_32_suite() -> None:
    ours, theirs = new_key("AES_CM_128_HMAC_SHA1_32"), new_key("AES_CM_128_HMAC_SHA1_32")
    a = SrtpContext(theirs, ours, "AES_CM_128_HMAC_SHA1_32")
    b = SrtpContext(ours, theirs, "AES_CM_128_HMAC_SHA1_32")
    packet = build_rtp(8, 1, 160, 5, b"\xd5" * 160)
    protected = a.protect_rtp(packet)
    assert len(protected) == len(packet) + 4 and b.unprotect_rtp(protected) == packet


def test_bad_keys_refused() -> None:
    with pytest.raises(SdesError):
        SrtpContext(b"short", new_key())
    with pytest.raises(SdesError):
        SrtpContext(new_key(), new_key(), "AES_256_CM_HMAC_SHA1_80")


# --- SDES (RFC 4568) ----------------------------------------------------------------------
RFC4568_EXAMPLE = "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4"


def test_sdes_parse_rfc_example() -> None:
    attr = CryptoAttribute.parse(RFC4568_EXAMPLE)
    assert attr.tag == 1 and attr.suite == "AES_CM_128_HMAC_SHA1_80"
    assert attr.key_salt == base64.b64decode("PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR")
    assert attr.lifetime == "2^20" and attr.mki == (1, 4)
    assert str(attr) == RFC4568_EXAMPLE
    assert not attr.usable  # an MKI: pylibsrtp cannot key by MKI


def test_sdes_build_and_round_trip() -> None:
    ours = new_crypto(tag=3)
    text = str(ours)
    assert text.startswith("3 AES_CM_128_HMAC_SHA1_80 inline:") and len(ours.key_salt) == 30
    assert CryptoAttribute.parse(text) == ours and ours.usable
    assert new_key() != new_key()


@pytest.mark.parametrize("value", [
    "", "x AES_CM_128_HMAC_SHA1_80 inline:AAAA", "1 AES_CM_128_HMAC_SHA1_80",
    "1 AES_CM_128_HMAC_SHA1_80 uri:http://example.com/key", "1 AES_CM_128_HMAC_SHA1_80 inline:@@@",
    "1234567890 AES_CM_128_HMAC_SHA1_80 inline:AAAA",
])
def test_sdes_malformed(value: str) -> None:
    with pytest.raises(SdesError):
        CryptoAttribute.parse(value)


def _line(tag: int, suite: str = "AES_CM_128_HMAC_SHA1_80", key: bytes | None = None,
          params: str = "") -> str:
    return f"{tag} {suite} inline:{base64.b64encode(key or new_key()).decode()}{params}"


def test_sdes_pick_skips_what_we_cannot_use() -> None:
    lines = crypto_lines([
        "garbage",
        _line(1, "AES_256_CM_HMAC_SHA1_80", b"k" * 46),  # suite we do not run
        _line(2, params=" UNENCRYPTED_SRTP"),              # changes the transform
        _line(3, key=b"short"),                            # wrong key length
        _line(4, params=" KDR=0 WSH=128"),                 # harmless parameters
        _line(5),
    ])
    assert [c.tag for c in lines] == [1, 2, 3, 4, 5]
    assert pick(lines).tag == 4


# --- RTP/SAVP offer/answer ----------------------------------------------------------------
def _savp_offer(*cryptos: str, proto: str = "RTP/SAVP") -> SessionDescription:
    lines = "".join(f"a=crypto:{c}\r\n" for c in cryptos)
    return SessionDescription.parse(
        "v=0\r\no=carrier 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
        f"m=audio 30000 {proto} 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        f"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n{lines}a=sendrecv\r\n"
    )


ORIGIN = Origin("voicegw", 7, 0, "IN", "IP4", "192.0.2.1")
SAVP = ("RTP/AVP", "RTP/SAVP")


def test_answer_savp_offer_with_our_crypto() -> None:
    theirs = new_key()
    offer = _savp_offer(_line(1, "AES_256_CM_HMAC_SHA1_80", b"k" * 46), _line(2, key=theirs))
    ours = new_key()
    answer = make_answer(offer, origin=ORIGIN, address="192.0.2.1", port=40000,
                         protos=SAVP, srtp_key=ours)
    media = answer.sdp.media[0]
    assert media.proto == "RTP/SAVP" and media.port == 40000
    assert [str(c) for c in media.crypto()] == [str(CryptoAttribute(2, "AES_CM_128_HMAC_SHA1_80", ours))]
    srtp = answer.negotiated.srtp
    assert srtp is not None and srtp.suite == "AES_CM_128_HMAC_SHA1_80" and srtp.tag == 2
    assert srtp.remote_key == theirs and srtp.local_key == ours
    assert "key" not in repr(srtp).replace("SrtpKeys", "")  # keys stay out of logs
    # the answer survives the wire
    again = SessionDescription.parse(bytes(answer.sdp))
    assert again == answer.sdp and again.media[0].crypto()[0].key_salt == ours


def test_savp_refused_unless_asked_or_keyed() -> None:
    offer = _savp_offer(_line(1))
    with pytest.raises(ParseError) as err:  # today's default: RTP/AVP only
        make_answer(offer, origin=ORIGIN, address="192.0.2.1", port=40000)
    assert err.value.status == 488
    with pytest.raises(ParseError):  # asked, but no key of ours
        make_answer(offer, origin=ORIGIN, address="192.0.2.1", port=40000, protos=SAVP)
    with pytest.raises(ParseError):  # no crypto line we can use
        make_answer(_savp_offer(_line(1, params=" UNAUTHENTICATED_SRTP")), origin=ORIGIN,
                    address="192.0.2.1", port=40000, protos=SAVP, srtp_key=new_key())


def test_plain_offer_unchanged_when_savp_allowed() -> None:
    answer = make_answer(_savp_offer(proto="RTP/AVP"), origin=ORIGIN, address="192.0.2.1",
                         port=40000, protos=SAVP, srtp_key=new_key())
    assert answer.sdp.media[0].proto == "RTP/AVP" and not answer.sdp.media[0].crypto()
    assert answer.negotiated.srtp is None


def test_our_savp_offer_and_their_answer() -> None:
    builder = SdpBuilder(session_id=1, address="192.0.2.1")
    ours = new_crypto(tag=1)
    offer = builder.offer(port=40000, proto="RTP/SAVP", crypto=[ours])
    assert offer.media[0].proto == "RTP/SAVP" and offer.media[0].crypto() == [ours]
    session = OfferAnswer()
    session.local_offer(offer)
    theirs = new_key()
    answer = make_answer(SessionDescription.parse(bytes(offer)), origin=ORIGIN,
                         address="192.0.2.10", port=30000, protos=SAVP, srtp_key=theirs)
    negotiated = session.remote_answer(answer.sdp)
    assert negotiated.srtp.local_key == ours.key_salt and negotiated.srtp.remote_key == theirs


def test_answer_with_a_crypto_tag_never_offered_is_488() -> None:
    builder = SdpBuilder(session_id=1, address="192.0.2.1")
    offer = builder.offer(port=40000, proto="RTP/SAVP", crypto=[new_crypto(tag=1)])
    bad = SessionDescription.parse(bytes(offer).replace(b"a=crypto:1 ", b"a=crypto:9 "))
    session = OfferAnswer()
    session.local_offer(offer)
    with pytest.raises(ParseError) as err:
        session.remote_answer(bad)
    assert err.value.status == 488


def test_our_required_savp_offer_answered_plain_is_488() -> None:
    """srtp: required - a peer that answers our RTP/SAVP offer with RTP/AVP fails the
    exchange (the INVITE session ACKs and BYEs such a 2xx; the transfer fails 488)."""
    offer = SdpBuilder(session_id=1, address="192.0.2.1").offer(port=40000, proto="RTP/SAVP", crypto=[new_crypto()])
    plain = SessionDescription.parse(bytes(offer).replace(b"RTP/SAVP", b"RTP/AVP").replace(b"a=crypto", b"a=x-c"))
    session = OfferAnswer()
    session.local_offer(offer)
    with pytest.raises(ParseError) as err:
        session.remote_answer(plain)
    assert err.value.status == 488 and "another transport" in err.value.reason


def test_best_effort_offer_keyed_or_plain() -> None:
    """srtp: optional - RTP/AVP with a=crypto: an answer with a matching a=crypto runs
    SRTP, one without stays plain RTP, one with a crypto line that does not fit too."""
    ours = new_crypto(tag=1)
    offer = SdpBuilder(session_id=1, address="192.0.2.1").offer(port=40000, proto="RTP/AVP", crypto=[ours])
    assert offer.media[0].proto == "RTP/AVP" and offer.media[0].crypto() == [ours]
    theirs = new_key()
    keyed = SessionDescription.parse(
        bytes(make_answer(offer, origin=ORIGIN, address="192.0.2.10", port=30000).sdp).replace(
            b"a=sendrecv", f"a=crypto:{CryptoAttribute(1, 'AES_CM_128_HMAC_SHA1_80', theirs)}\r\na=sendrecv".encode()))
    session = OfferAnswer()
    session.local_offer(offer)
    srtp = session.remote_answer(keyed).srtp
    assert srtp is not None and srtp.local_key == ours.key_salt and srtp.remote_key == theirs
    plain = make_answer(offer, origin=ORIGIN, address="192.0.2.10", port=30000).sdp
    assert not plain.media[0].crypto()  # voicegw's own answerer ignores best-effort keys
    session = OfferAnswer()
    session.local_offer(offer)
    assert session.remote_answer(plain).srtp is None
    wrong_tag = SessionDescription.parse(bytes(keyed).replace(b"a=crypto:1 ", b"a=crypto:7 "))
    session = OfferAnswer()
    session.local_offer(offer)
    assert session.remote_answer(wrong_tag).srtp is None


# --- the relay: SRTP leg <-> RTP leg over loopback ---------------------------------------
@pytest.fixture
def pool() -> PortPool:
    return PortPool(43000, 43999)


async def _srtp_bridge(pool: PortPool):
    """Caller leg ``a`` speaks SRTP (keys as SDES settles them), bot leg ``b`` RTP."""
    a, b = await open_endpoint(HOST, pool), await open_endpoint(HOST, pool)
    caller, bot = await UdpPeer.open(), await UdpPeer.open()
    a.set_remote(*caller.addr)
    b.set_remote(*bot.addr)
    carrier_key, our_key = new_key(), new_key()
    a.set_srtp(carrier_key, our_key)  # what the engine calls after make_answer
    phone = SrtpContext(inbound_key=our_key, outbound_key=carrier_key)  # the carrier's side
    bridge = Bridge(a, b)
    return a, b, caller, bot, phone, bridge


async def test_relay_srtp_caller_to_rtp_bot_and_back(pool: PortPool) -> None:
    a, b, caller, bot, phone, bridge = await _srtp_bridge(pool)
    try:
        sent = [build_rtp(0, 100 + i, 160 * i, 0xC0FFEE, bytes([i]) * 160) for i in range(20)]
        for packet in sent:
            caller.transport.sendto(phone.protect_rtp(packet), (HOST, a.port))
        got = [await bot.recv() for _ in sent]
        assert got == sent  # the bot hears clear RTP, byte for byte
        # ... and the bot's answer reaches the caller protected
        back = [build_rtp(0, 500 + i, 160 * i, 0xB07, bytes([99 - i]) * 160)
                for i in range(20)]
        for packet in back:
            bot.transport.sendto(packet, (HOST, b.port))
        for packet in back:
            wire = await caller.recv()
            assert wire != packet and len(wire) == len(packet) + 10
            assert phone.unprotect_rtp(wire) == packet
        stats = bridge.statistics()
        assert stats.a_to_b.packets_out == 20 and stats.b_to_a.packets_out == 20
        assert stats.a_to_b.srtp_failures == 0
        assert bridge._ab.expect is None and bridge._ba.expect is None  # slow path both ways
    finally:
        bridge.close()
        a.close(), b.close(), caller.transport.close(), bot.transport.close()


async def test_relay_drops_and_counts_tampered_srtp(pool: PortPool) -> None:
    a, b, caller, bot, phone, bridge = await _srtp_bridge(pool)
    try:
        good = phone.protect_rtp(build_rtp(0, 1, 160, 0x1, b"\x01" * 160))
        bad = bytearray(phone.protect_rtp(build_rtp(0, 2, 320, 0x1, b"\x02" * 160)))
        bad[20] ^= 0xFF
        caller.transport.sendto(bytes(bad), (HOST, a.port))  # tampered: never relayed
        caller.transport.sendto(good, (HOST, a.port))
        caller.transport.sendto(good, (HOST, a.port))  # replayed: dropped too
        assert RtpPacket.parse(await bot.recv()).sequence == 1
        assert await bot.nothing()
        flow = bridge.statistics().a_to_b
        assert flow.srtp_failures == 2 and flow.dropped == 2 and flow.packets_out == 1
        assert a.statistics().srtp.auth_failures == 2
    finally:
        bridge.close()
        a.close(), b.close(), caller.transport.close(), bot.transport.close()


async def test_forged_packet_does_not_latch(pool: PortPool) -> None:
    a, b, caller, bot, phone, bridge = await _srtp_bridge(pool)
    a.relatch()
    attacker = await UdpPeer.open()
    try:
        attacker.transport.sendto(build_rtp(0, 1, 0, 0x666, b"x" * 160), (HOST, a.port))
        await asyncio.sleep(0.05)
        assert not a.latched  # an unauthenticated packet learned no address
        caller.transport.sendto(phone.protect_rtp(build_rtp(0, 1, 0, 2, b"y" * 160)), (HOST, a.port))
        await bot.recv()
        assert a.latched and a.remote_rtp == caller.addr
    finally:
        bridge.close()
        a.close(), b.close(), caller.transport.close(), bot.transport.close()
        attacker.transport.close()


async def test_srtcp_relayed_both_ways(pool: PortPool) -> None:
    a, b, caller, bot, phone, bridge = await _srtp_bridge(pool)
    callerc, botc = await UdpPeer.open(), await UdpPeer.open()
    a.set_remote(caller.addr[0], caller.addr[1], rtcp_port=callerc.addr[1])
    b.set_remote(bot.addr[0], bot.addr[1], rtcp_port=botc.addr[1])
    try:
        rr = bytes.fromhex("81c90007") + (0x1).to_bytes(4, "big") + bytes(24)
        callerc.transport.sendto(phone.protect_rtcp(rr), (HOST, a.port + 1))
        assert await botc.recv() == rr
        botc.transport.sendto(rr, (HOST, b.port + 1))
        assert phone.unprotect_rtcp(await callerc.recv()) == rr
    finally:
        bridge.close()
        for t in (caller, bot, callerc, botc):
            t.transport.close()
        a.close(), b.close()


async def test_plain_bridge_keeps_its_fast_path(pool: PortPool) -> None:
    a, b = await open_endpoint(HOST, pool), await open_endpoint(HOST, pool)
    caller, bot = await UdpPeer.open(), await UdpPeer.open()
    a.set_remote(*caller.addr)
    b.set_remote(*bot.addr)
    bridge = Bridge(a, b)
    try:
        caller.transport.sendto(build_rtp(0, 1, 0, 1, b"z" * 160), (HOST, a.port))
        await bot.recv()
        assert bridge._ab.expect == caller.addr  # fast path
        a.set_srtp(new_key(), new_key())
        assert bridge._ab.expect is None  # SRTP: the slow path at once
        a.set_srtp(None)
        assert bridge._ab.expect == caller.addr  # and back
    finally:
        bridge.close()
        a.close(), b.close(), caller.transport.close(), bot.transport.close()


async def test_player_output_protected(pool: PortPool) -> None:
    a = await open_endpoint(HOST, pool)
    caller = await UdpPeer.open()
    a.set_remote(*caller.addr)
    carrier_key, our_key = new_key(), new_key()
    a.set_srtp(carrier_key, our_key)
    phone = SrtpContext(our_key, carrier_key)
    try:
        packet = build_rtp(0, 9, 0, 3, b"p" * 160)
        a.send_rtp(packet)
        assert phone.unprotect_rtp(await caller.recv()) == packet
    finally:
        a.close(), caller.transport.close()


async def test_set_srtp_again_with_the_same_keys_keeps_the_context(pool: PortPool) -> None:
    a = await open_endpoint(HOST, pool)
    try:
        theirs, ours = new_key(), new_key()
        a.set_srtp(theirs, ours)
        context = a.srtp
        a.set_srtp(theirs, ours)  # a re-INVITE that kept the keys: ROC and replay state stay
        assert a.srtp is context
        a.set_srtp(new_key(), ours)  # new keys: a new context
        assert a.srtp is not context
    finally:
        a.close()
