"""Delayed offer from the caller over the wire (issue 12 item 7, RFC 3261 13.2.1): an
INVITE without SDP is no longer refused 488; voicegw's 200 carries its offer, the
caller's ACK the answer, and the media is set from that answer: the caller's RTP goes
through voicegw to the sipp bot (-rtp_echo) and every packet comes back, in order."""

from __future__ import annotations

import pytest
from peers.lab import caller, echo_check, peer, start_voicegw
from peers.sipp import SIPP

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
