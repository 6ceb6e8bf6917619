"""FreeSWITCH as the agents' PBX (issue 11): voicegw's INVITE transfer goes to a number of
FreeSWITCH's test dialplan, which bridges it to an agent, refuses it, lets it ring, or
answers with early media first.

caller (peers.caller) -> ``voicegw run`` (transfer_method invite) -> bot (sipp, REFERs)
and the agent leg -> FreeSWITCH -> agent (a sipp UAS). Asserted on the wire: the agent's
sipp message log (what FreeSWITCH sent it: the bridged INVITE with voicegw's context
headers, the CANCEL), the caller's RTP (its tone echoed back by the agent across both
B2BUAs), the bot's NOTIFY sipfrags (FreeSWITCH's real progress), FreeSWITCH's SIP trace
and voicegw's JSON log.
"""

from __future__ import annotations

import pytest
from peers.calls import HOST, SIPP
from peers.freeswitch import INSTALL, SKIP_REASON, talk, tone
from peers.lab import (
    bot,
    caller,
    event,
    finish,
    log_time,
    peer,
    requests,
    sipfrags,
    start_voicegw,
    wait_event,
)
from peers.pbx import tone_packets

pytestmark = [
    pytest.mark.wire,
    pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap"),
    pytest.mark.skipif(INSTALL is None, reason=SKIP_REASON),
]


def via_freeswitch(lab, freeswitch, number: str, bot_scenario: str = "bot_refer.xml", **calls):
    """voicegw (INVITE transfers, FreeSWITCH allowed), the bot asking for ``number`` on
    FreeSWITCH, and a connected caller."""
    start_voicegw(lab, transfer_allow=[f"sip:*@{HOST}:{freeswitch.sip_port}"], transfer_method="invite",
                  **calls)
    b = bot(lab, bot_scenario, freeswitch.uri(number))
    c = caller(lab)
    assert c.invite().status == 200
    return b, c


def sent_by_freeswitch(freeswitch, status: int) -> list:
    return [m for m in freeswitch.wait_sip(f"out {status} INVITE", freeswitch.since)
            if m.direction == "out" and m.status == status and m.method == "INVITE"]


def test_bridge_to_an_agent_context_headers_cross_freeswitch_and_media_flows(lab, freeswitch):
    agent = peer(lab, "agent", "agent_answer.xml", rtp_echo=True)
    b, c = via_freeswitch(lab, freeswitch, f"bridge-{agent.port}")
    done = wait_event(lab, "transfer.succeeded", status=200)
    finish(lab, b)
    assert sipfrags(b.messages())[-1] == (200, True)
    heard = talk(c, tone(800, 100))
    assert tone_packets(heard, 800) >= 40, "the agent's echo, through voicegw and FreeSWITCH"
    assert not c.got_request("BYE")
    assert c.bye().status == 200
    finish(lab, agent)
    invite = requests(agent.messages(), "INVITE")[0]
    assert invite.first_line.startswith(f"INVITE sip:bridge@{HOST}:{agent.port} ")
    # voicegw's context headers reach the agent: FreeSWITCH copies X- headers when it bridges
    assert invite.header("x-vg-caller") == "alice"
    assert invite.header("x-vg-call-id") == c.call_id
    assert "in BYE" in agent.flow()
    assert done["call_id"] == c.call_id


def test_busy_number_486_fails_the_transfer_and_the_caller_stays(lab, freeswitch):
    b, c = via_freeswitch(lab, freeswitch, "busy", "bot_refer_stay.xml")
    wait_event(lab, "transfer.failed", status=486)
    assert sent_by_freeswitch(freeswitch, 486), "FreeSWITCH answered voicegw's INVITE 486"
    c.receive_rtp(2.0)  # the bot's INFO probe after the failure is answered meanwhile
    assert not c.got_request("BYE"), "a failed transfer never drops the caller"
    assert c.bye().status == 200
    finish(lab, b)
    assert sipfrags(b.messages())[-1] == (486, True)
    assert event(lab, "transfer.succeeded") is None


def test_agent_never_answers_ring_timeout_cancel_crosses_freeswitch(lab, freeswitch):
    """ring_timeout 2 s: voicegw CANCELs its INVITE to FreeSWITCH, which CANCELs the
    ringing agent (the agent's scenario requires the CANCEL); the caller stays."""
    agent = peer(lab, "agent", "agent_noanswer.xml")
    b, c = via_freeswitch(lab, freeswitch, f"bridge-{agent.port}", "bot_refer_stay.xml", ring_timeout=2)
    started = wait_event(lab, "transfer.started")
    failed = wait_event(lab, "transfer.failed", status="no_answer")
    assert 1.8 <= log_time(failed) - log_time(started) <= 5.0
    finish(lab, agent)
    assert "in CANCEL" in agent.flow()
    cancels = [m for m in freeswitch.wait_sip("in CANCEL", freeswitch.since)
               if m.direction == "in" and m.status is None and m.method == "CANCEL"]
    assert cancels, "voicegw's CANCEL reached FreeSWITCH"
    assert 180 in [s for s, _ in sipfrags(b.messages())], "the agent's ringing, relayed by FreeSWITCH"
    c.receive_rtp(2.0)
    assert not c.got_request("BYE")
    assert c.bye().status == 200
    finish(lab, b)


def test_early_media_183_from_freeswitch_then_answer(lab, freeswitch):
    """``early-600``: FreeSWITCH answers 183 with SDP and plays 600 Hz as early media for
    2 s, then 200 and echo. voicegw reports the 183 as progress (to its log and to the
    bot), completes on the 200, and the caller's media reaches FreeSWITCH's echo."""
    b, c = via_freeswitch(lab, freeswitch, "early-600")
    wait_event(lab, "transfer.progress", status=183)
    wait_event(lab, "transfer.succeeded", status=200)
    finish(lab, b)
    frags = [s for s, _ in sipfrags(b.messages())]
    assert 183 in frags and frags[-1] == 200, frags
    early = sent_by_freeswitch(freeswitch, 183)
    assert early and b"m=audio" in early[0].body, "FreeSWITCH's 183 carries SDP"
    heard = talk(c, tone(1200, 100))
    assert tone_packets(heard, 1200) >= 40, "FreeSWITCH's echo of the caller's tone"
    assert c.bye().status == 200
