"""FreeSWITCH upstream of voicegw (issue 11): a phone calls FreeSWITCH, which bridges it
to voicegw (the test dialplan's ``bridge-<port>``); voicegw bridges it to a sipp bot.

phone (the scripted caller of peers.caller, RTP and all) -> FreeSWITCH -> ``voicegw run``
-> bot (sipp). With ``transfer_method: refer`` the bot's REFER makes voicegw REFER its leg
A, which is FreeSWITCH's bridged leg: FreeSWITCH transfers the phone's channel to the
Refer-To number in its own dialplan and NOTIFYs 200 as soon as the channel is there, so
what the phone hears and what the agent gets afterwards is what tells success from
failure. Asserted on the wire at every hop: the phone's SIP and RTP (tones detected by
frequency), the bot's and agent's sipp message logs, FreeSWITCH's own SIP trace, and
voicegw's JSON log.
"""

from __future__ import annotations

import pytest
from peers.caller import Caller
from peers.calls import HOST, SIPP
from peers.freeswitch import INSTALL, SKIP_REASON, talk, tone, wait_request
from peers.lab import bot, finish, peer, requests, responses, sipfrags, start_voicegw, wait_event
from peers.pbx import tone_packets

pytestmark = [
    pytest.mark.wire,
    pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap"),
    pytest.mark.skipif(INSTALL is None, reason=SKIP_REASON),
]


def phone_via(lab, freeswitch) -> Caller:
    """The phone, calling FreeSWITCH's ``bridge-<voicegw port>``."""
    phone = Caller(freeswitch.address, user="phone", request_user=f"bridge-{lab.daemon.port}")
    lab.callers.append(phone)
    return phone


def fs_side(freeswitch, since: int, method: str, direction: str) -> list:
    """FreeSWITCH's requests of ``method`` received ("in") or sent ("out") since the mark."""
    return [m for m in freeswitch.sip_messages(since) if m.direction == direction
            and m.status is None and m.method == method]


def test_phone_through_freeswitch_talks_to_the_bot_and_hangs_up(lab, freeswitch):
    """Plain B2BUA hop: the phone's tone crosses FreeSWITCH and voicegw to the echoing bot
    and back; the phone's BYE reaches the bot through both."""
    start_voicegw(lab)
    b = peer(lab, "bot", "b2bua_bot_answer.xml", port=lab.bot_port, rtp_echo=True)
    phone = phone_via(lab, freeswitch)
    assert phone.invite().status == 200
    heard = talk(phone, tone(700, 100))
    assert tone_packets(heard, 700) >= 40, "the bot's echo of the phone's 700 Hz tone"
    assert phone.bye().status == 200
    finish(lab, b)
    sent = fs_side(freeswitch, freeswitch.since, "INVITE", "out")
    assert sent and sent[0].first_line.startswith(f"INVITE sip:bridge@{HOST}:{lab.daemon.port} ")
    assert "in BYE" in b.flow()


def test_voicegw_refers_freeswitchs_leg_and_the_phone_hears_the_target_extension(lab, freeswitch):
    """The bot asks for ``tone-440``; voicegw REFERs FreeSWITCH's leg; FreeSWITCH answers
    202, NOTIFYs 200 and moves the phone's channel to that extension: the phone hears 440 Hz
    from FreeSWITCH with voicegw out of the call, and is never hung up."""
    start_voicegw(lab, transfer_allow=[f"sip:*@{HOST}:{freeswitch.sip_port}"], transfer_method="refer")
    target = freeswitch.uri("tone-440")
    b = bot(lab, "bot_refer.xml", target)
    phone = phone_via(lab, freeswitch)
    assert phone.invite().status == 200
    done = wait_event(lab, "transfer.succeeded", status=200)
    finish(lab, b)  # NOTIFY 100..200 relayed to the bot, then its BYE
    assert sipfrags(b.messages())[-1] == (200, True)
    heard = phone.receive_rtp(1.5)
    assert tone_packets(heard, 440) >= 40, "the phone hears FreeSWITCH's tone-440 extension"
    assert not phone.got_request("BYE"), "the phone's call goes on, now inside FreeSWITCH"
    wait_event(lab, "call.ended", call_id=done["call_id"])
    # FreeSWITCH's side of the wire: the REFER it got, its 202 and NOTIFY 200
    refers = fs_side(freeswitch, freeswitch.since, "REFER", "in")
    assert len(refers) == 1 and refers[0].header("refer-to") == f"<{target}>", refers
    accepted = [m for m in freeswitch.sip_messages(freeswitch.since)
                if m.direction == "out" and m.status == 202 and m.method == "REFER"]
    assert accepted, "FreeSWITCH accepted the REFER"
    notifies = fs_side(freeswitch, freeswitch.since, "NOTIFY", "out")
    assert notifies and notifies[-1].body.startswith(b"SIP/2.0 200"), [n.body for n in notifies]
    assert phone.bye().status == 200


def test_refer_to_a_freeswitch_bridge_the_phone_ends_up_talking_to_the_agent(lab, freeswitch):
    """Refer-To ``bridge-<agent port>``: FreeSWITCH dials the sipp agent itself (voicegw
    already gone after the NOTIFY 200); the phone's tone comes back from the echoing
    agent through FreeSWITCH alone."""
    agent = peer(lab, "agent", "phone_answer.xml", rtp_echo=True)
    start_voicegw(lab, transfer_allow=[f"sip:*@{HOST}:{freeswitch.sip_port}"], transfer_method="refer")
    b = bot(lab, "bot_refer.xml", freeswitch.uri(f"bridge-{agent.port}"))
    phone = phone_via(lab, freeswitch)
    assert phone.invite().status == 200
    wait_event(lab, "transfer.succeeded", status=200)
    finish(lab, b)
    heard = talk(phone, tone(900, 100))
    assert tone_packets(heard, 900) >= 40, "the agent's echo of the phone's tone"
    assert phone.bye().status == 200
    finish(lab, agent)
    invite = requests(agent.messages(), "INVITE")[0]
    assert invite.first_line.startswith(f"INVITE sip:bridge@{HOST}:{agent.port} ")
    assert "in BYE" in agent.flow()
    # voicegw did not dial the agent: its INVITE came from FreeSWITCH
    assert f":{freeswitch.sip_port}" in (invite.header("contact") or ""), invite.header("contact")


def test_refer_to_a_busy_number_is_notified_200_and_the_phone_is_hung_up(lab, freeswitch):
    """FreeSWITCH NOTIFYs 200 once the channel is in its dialplan, before it knows the
    outcome: a target that then fails (``busy``) is a success for voicegw, and only the
    phone sees the failure (FreeSWITCH hangs it up)."""
    start_voicegw(lab, transfer_allow=[f"sip:*@{HOST}:{freeswitch.sip_port}"], transfer_method="refer")
    b = bot(lab, "bot_refer.xml", freeswitch.uri("busy"))
    phone = phone_via(lab, freeswitch)
    assert phone.invite().status == 200
    wait_event(lab, "transfer.succeeded", status=200)
    finish(lab, b)
    assert sipfrags(b.messages())[-1] == (200, True)
    assert wait_request(phone, "BYE"), "FreeSWITCH ends the phone's call: its new extension was busy"
    assert [m.status for m in responses(b.messages(), "REFER")] == [202]
