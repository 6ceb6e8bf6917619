"""Delayed offer from the caller over the wire (issue 12 item 7, RFC 3261 13.2.1): an
INVITE without SDP is no longer refused 488; voicegw's 200 carries its offer, the
caller's ACK the answer, and the media is set from that answer: the caller's RTP goes
through voicegw to the sipp bot (-rtp_echo) and every packet comes back, in order; and
a caller that sends nothing still hears a PJSIP bot's tone at the answered address."""

from __future__ import annotations

import numpy as np
import pytest
from peers.lab import caller, echo_check, peer, start_voicegw
from peers.pjsua import hears
from peers.sipp import SIPP

from voicegw.media.g711 import ulaw_decode

BOT_HZ = 1000.0

pytestmark = [pytest.mark.wire, pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap")]


def test_invite_without_sdp_gets_our_offer_and_the_ack_answer_sets_the_media(lab):
    start_voicegw(lab)
    peer(lab, "bot", "b2bua_bot_answer.xml", port=lab.bot_port, rtp_echo=True)
    c = caller(lab)
    ok = c.invite(offer=False)
    assert ok.status == 200, lab.report()
    offer = ok.body.decode()
    assert ok.headers.get("content-type") == "application/sdp", ok.headers
    assert "m=audio " in offer and " RTP/AVP 0" in offer and "a=sendrecv" in offer, offer
    echo_check(c)
    assert c.bye().status == 200


def test_the_ack_answer_is_where_voicegw_sends_before_the_caller_says_anything(lab, pjsua):
    """The caller sends no RTP at all (nothing to latch on): the PJSIP bot's 1000 Hz
    tone reaches it only because voicegw took the address in the ACK's answer."""
    start_voicegw(lab)
    pjsua.ua("bot", port=lab.bot_port, tone_hz=BOT_HZ)
    c = caller(lab)
    assert c.invite(offer=False).status == 200, lab.report()
    packets = c.receive_rtp(3.0)
    audio = [p[12:] for p in packets if len(p) > 12 and p[1] & 0x7F == 0]
    assert audio, f"no RTP reached the caller's answered address\n{lab.report()}"
    samples = ulaw_decode(b"".join(audio)).astype(np.int16)
    assert hears(samples, BOT_HZ), "the caller hears the bot's tone"
    assert c.bye().status == 200
