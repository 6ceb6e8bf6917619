"""FreeSWITCH's ``deflect`` towards voicegw (issue 11): FreeSWITCH is the bot voicegw
dials (its test dialplan's ``refer-<port>``: answer, then REFER with ``Refer-To:
sip:refer@127.0.0.1:<port>``), so voicegw is the one asked to transfer.

caller (peers.caller) -> ``voicegw run`` (transfer_method invite) -> FreeSWITCH (bot leg),
whose REFER makes voicegw dial the agent (a sipp UAS). Asserted on the wire: FreeSWITCH's
SIP trace (its REFER, voicegw's 202 and NOTIFY sipfrags, its BYE only after the final
NOTIFY, with Reason cause 800 BLIND_TRANSFER), the agent's sipp message log, the caller's
RTP (its tone echoed by the agent) and voicegw's JSON log.
"""

from __future__ import annotations

import pytest
from peers.calls import HOST, SIPP
from peers.freeswitch import INSTALL, SKIP_REASON, talk, tone, wait_request
from peers.lab import caller, event, finish, log_time, peer, requests, start_voicegw, wait_event
from peers.pbx import tone_packets

pytestmark = [
    pytest.mark.wire,
    pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap"),
    pytest.mark.skipif(INSTALL is None, reason=SKIP_REASON),
]


def deflecting_bot(lab, freeswitch, agent) -> object:
    """voicegw whose bot is FreeSWITCH's ``refer-<agent port>``, and a connected caller."""
    start_voicegw(lab, bot=False, bot_uri=freeswitch.uri(f"refer-{agent.port}"),
                  transfer_allow=[f"sip:*@{HOST}:{agent.port}"], transfer_method="invite")
    c = caller(lab)
    assert c.invite().status == 200
    return c


def sipfrag_status(message) -> int:
    line = message.body.decode("utf-8", "replace").strip().splitlines()[0]
    return int(line.split()[1])


def test_freeswitch_deflects_voicegw_dials_the_agent_and_notifies_the_outcome(lab, freeswitch):
    agent = peer(lab, "agent", "agent_answer.xml", rtp_echo=True)
    c = deflecting_bot(lab, freeswitch, agent)
    done = wait_event(lab, "transfer.succeeded", status=200)
    started = event(lab, "transfer.started")
    assert started is not None and started["target"] == f"sip:refer@{HOST}:{agent.port}"
    heard = talk(c, tone(750, 100))
    assert tone_packets(heard, 750) >= 40, "the agent's echo: the caller is bridged to the agent"
    assert not c.got_request("BYE")
    fs = freeswitch.sip_messages(freeswitch.since)
    refers = [m for m in fs if m.direction == "out" and m.status is None and m.method == "REFER"]
    assert len(refers) == 1 and f"sip:refer@{HOST}:{agent.port}" in (refers[0].header("refer-to") or "")
    assert [m.status for m in fs if m.direction == "in" and m.method == "REFER" and m.status] == [202]
    notifies = [m for m in fs if m.direction == "in" and m.status is None and m.method == "NOTIFY"]
    assert notifies and sipfrag_status(notifies[-1]) == 200, [m.body for m in notifies]
    assert "terminated" in (notifies[-1].header("subscription-state") or "")
    # the bot leg ends (voicegw's BYE after our 200 to the final NOTIFY, while FreeSWITCH's
    # deflect ends the channel as a BLIND_TRANSFER) only after the final NOTIFY
    order = [(m.direction, m.method, m.status) for m in fs]
    final = max(i for i, o in enumerate(order) if o == ("in", "NOTIFY", None))
    byes = [i for i, o in enumerate(order) if o[1:] == ("BYE", None)]
    assert byes and min(byes) > final, order
    assert "BLIND_TRANSFER" in freeswitch.log(freeswitch.since)
    assert c.bye().status == 200
    finish(lab, agent)
    invite = requests(agent.messages(), "INVITE")[0]
    assert invite.header("x-vg-caller") == "alice" and invite.header("x-vg-call-id") == c.call_id
    wait_event(lab, "call.ended", call_id=done["call_id"])


def test_freeswitch_deflects_to_a_busy_agent_hears_486_then_hangs_up_its_leg(lab, freeswitch):
    """The agent is busy: voicegw's final NOTIFY to FreeSWITCH carries 486. FreeSWITCH's
    deflect ends its channel after any final NOTIFY, so its BYE follows; voicegw then
    treats it as the bot hanging up: the call ends and the caller gets a BYE."""
    agent = peer(lab, "agent", "agent_busy.xml")
    c = deflecting_bot(lab, freeswitch, agent)
    failed = wait_event(lab, "transfer.failed", status=486)
    finish(lab, agent)
    ended = wait_event(lab, "call.ended", call_id=failed["call_id"])
    assert log_time(ended) >= log_time(failed)
    assert wait_request(c, "BYE"), "the bot (FreeSWITCH) left, so voicegw ends the call"
    fs = freeswitch.wait_sip("in 200 BYE", freeswitch.since)
    notifies = [m for m in fs if m.direction == "in" and m.status is None and m.method == "NOTIFY"]
    assert [sipfrag_status(m) for m in notifies][-1] == 486, [m.body for m in notifies]
    assert "terminated" in (notifies[-1].header("subscription-state") or "")
    order = [m.describe() for m in fs]
    assert order[-2:] == ["out BYE", "in 200 BYE"], order
    assert order.index("out BYE") > max(i for i, d in enumerate(order) if d == "in NOTIFY"), order
