"""PJSIP (pjsua2, peers.pjsua) as the caller and as the bot, through ``voicegw run``.

A PJSIP caller calls voicegw, which dials a bot: a sipp UAS echoing RTP or a PJSIP
bot. Each PJSIP agent feeds its own sine into the call and records what it hears, so
the tests check the audio that crossed voicegw in both directions (Goertzel at each
side's frequency), and they check PJSIP's own message log (what it sent and got).
DTMF (RFC 4733) sent by PJSIP must reach voicegw's flow (the demo flow's menu) and,
with a bot, be relayed to the bot as telephone-events. Hold by re-INVITE from PJSIP
is answered with the mirrored direction. One call goes over TCP.
"""

from __future__ import annotations

import re

import pytest
from peers.lab import NO_SHEDDING, peer, start_voicegw, wait_event
from peers.pjsua import AVAILABLE, hears, rms

pytestmark = [pytest.mark.wire, pytest.mark.timeout(60)]

CALLER_HZ, BOT_HZ = 600.0, 1400.0


def test_pjsip_caller_through_voicegw_to_a_pjsip_bot_both_hear_each_other(lab, pjsua):
    assert AVAILABLE, "pjsua2-python is missing: pip install -e '.[test]'"
    start_voicegw(lab, sections=NO_SHEDDING)
    bot = pjsua.ua("bot", port=lab.bot_port, tone_hz=BOT_HZ)
    caller = pjsua.ua("caller", tone_hz=CALLER_HZ)
    call = caller.call(f"sip:bot@{lab.daemon.host}:{lab.daemon.port}")
    call.wait_confirmed()
    leg_b = bot.incoming()
    leg_b.wait_confirmed()
    assert call.listen(lambda s: hears(s, BOT_HZ) and not hears(s, CALLER_HZ)), \
        "the caller hears the bot, not itself"
    assert leg_b.listen(lambda s: hears(s, CALLER_HZ) and not hears(s, BOT_HZ)), \
        "the bot hears the caller, not itself"
    call.hangup()
    leg_b.wait_disconnected()
    # on the wire: voicegw's INVITE to the bot carried its own SDP (the relay), not PJSIP's
    invite = bot.requests("INVITE")[0]
    caller_offer = caller.requests("INVITE", "out")[0]
    assert _audio_port(invite.body) != _audio_port(caller_offer.body)
    caller.wait_sip("BYE", status=200)  # pjsua logs the 200 a moment after the bot sees the BYE
    assert caller.flow()[-2:] == ["out BYE", "in 200 BYE"]
    assert bot.flow()[-2:] == ["in BYE", "out 200 BYE"]
    wait_event(lab, "call.ended")


def test_pjsip_caller_to_a_sipp_echo_bot_hears_its_own_tone_back(lab, pjsua):
    start_voicegw(lab, sections=NO_SHEDDING)
    bot = peer(lab, "bot", "b2bua_bot_answer.xml", port=lab.bot_port, rtp_echo=True)
    caller = pjsua.ua("caller", tone_hz=CALLER_HZ)
    call = caller.call(f"sip:bot@{lab.daemon.host}:{lab.daemon.port}")
    call.wait_confirmed()
    assert call.listen(lambda s: hears(s, CALLER_HZ)), "the echo comes back through voicegw"
    call.hangup()
    call.wait_disconnected()
    assert bot.wait(10) == 0, lab.report()


def test_pjsip_dtmf_reaches_the_demo_flow(lab, pjsua):
    """RFC 4733 from PJSIP: voicegw's flow gets the digit (the menu's 0 asks for an
    agent; with none configured, the demo says so and hangs up)."""
    start_voicegw(lab, sections=NO_SHEDDING, bot=False)
    caller = pjsua.ua("caller")
    call = caller.call(f"sip:demo@{lab.daemon.host}:{lab.daemon.port}")
    call.wait_confirmed()
    assert call.listen(lambda s: rms(s) > 200), "the greeting prompt is audible"
    call.dtmf("0")
    wait_event(lab, "flow.dtmf", digit="0")
    # the demo without an agent apologises and ends the call: voicegw's BYE reaches PJSIP
    call.wait_disconnected(timeout=20)
    assert "in BYE" in caller.flow()
    offer = caller.requests("INVITE", "out")[0].body.decode()
    assert "telephone-event/8000" in offer


def test_pjsip_dtmf_is_relayed_to_a_pjsip_bot(lab, pjsua):
    start_voicegw(lab, sections=NO_SHEDDING)
    bot = pjsua.ua("bot", port=lab.bot_port)
    caller = pjsua.ua("caller")
    call = caller.call(f"sip:bot@{lab.daemon.host}:{lab.daemon.port}")
    call.wait_confirmed()
    leg_b = bot.incoming()
    leg_b.wait_confirmed()
    call.dtmf("1984#")
    bot.wait_event("dtmf", call=leg_b.key, digit="#")
    assert leg_b.dtmf_received() == "1984#"


def test_pjsip_caller_holds_and_resumes(lab, pjsua):
    """Hold (re-INVITE a=sendonly) is answered recvonly; resuming brings audio back."""
    start_voicegw(lab, sections=NO_SHEDDING)
    bot = pjsua.ua("bot", port=lab.bot_port, tone_hz=BOT_HZ)
    caller = pjsua.ua("caller", tone_hz=CALLER_HZ)
    call = caller.call(f"sip:bot@{lab.daemon.host}:{lab.daemon.port}")
    call.wait_confirmed()
    bot.incoming().wait_confirmed()
    call.hold()
    oks = caller.wait_sip("INVITE", "in", status=200, count=2)
    assert re.search(r"a=(recvonly|inactive)", oks[1].body.decode()), oks[1].body
    assert "a=sendonly" in caller.requests("INVITE", "out")[1].body.decode()
    call.unhold()
    oks = caller.wait_sip("INVITE", "in", status=200, count=3)
    assert "a=sendrecv" in oks[2].body.decode() or not re.search(
        r"a=(recvonly|inactive|sendonly)", oks[2].body.decode())
    assert call.listen(lambda s: hears(s, BOT_HZ)), "audio flows again after the resume"


def test_the_bot_hangs_up_and_voicegw_byes_the_pjsip_caller(lab, pjsua):
    start_voicegw(lab, sections=NO_SHEDDING)
    bot = pjsua.ua("bot", port=lab.bot_port)
    caller = pjsua.ua("caller")
    call = caller.call(f"sip:bot@{lab.daemon.host}:{lab.daemon.port}")
    call.wait_confirmed()
    leg_b = bot.incoming()
    leg_b.wait_confirmed()
    leg_b.hangup()
    call.wait_disconnected()
    assert caller.flow()[-2:] == ["in BYE", "out 200 BYE"]


def _audio_port(sdp: bytes) -> int:
    found = re.search(rb"m=audio (\d+)", sdp)
    assert found, sdp
    return int(found.group(1))


def test_pjsip_caller_over_tcp_whole_call(lab, pjsua):
    """SIP over TCP (RFC 3261 18.3 framing): PJSIP's INVITE, ACK and BYE reach voicegw on
    one connection and every answer comes back on it."""
    start_voicegw(lab, sections=NO_SHEDDING)
    bot = pjsua.ua("bot", port=lab.bot_port, tone_hz=BOT_HZ)
    caller = pjsua.ua("caller", transport="tcp", tone_hz=CALLER_HZ)
    call = caller.call(f"sip:bot@{lab.daemon.host}:{lab.daemon.port};transport=tcp")
    call.wait_confirmed()
    leg_b = bot.incoming()
    leg_b.wait_confirmed()
    assert call.listen(lambda s: hears(s, BOT_HZ)), "the TCP caller hears the bot"
    call.hangup()
    leg_b.wait_disconnected()
    caller.wait_final("BYE")
    assert caller.flow()[-2:] == ["out BYE", "in 200 BYE"]
    assert set(caller.sip_transports) == {"TCP"}, "everything went over TCP"
