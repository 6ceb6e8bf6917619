"""voicegw REFERs a PJSIP caller (leg A) away: transfer_method refer, where PJSIP's own
REFER handling (RFC 3515 as the transferee) makes the new call to the agent.

PJSIP answers voicegw's REFER 202, INVITEs the Refer-To target from a new call of its
own, and NOTIFYs voicegw of that call's progress (message/sipfrag); on the final 2xx
voicegw leaves with BYE on both legs. The audio is checked at both ends of the new
call (caller and a PJSIP agent each hear the other's tone), and the failures too: the
agent busy (PJSIP's NOTIFY reports 486, the caller is kept and hears the apology), or
PJSIP refusing the REFER itself.
"""

from __future__ import annotations

import pytest
from peers.lab import NO_SHEDDING, bot, sipfrags, start_voicegw, wait_event
from peers.pjsua import hears, rms

pytestmark = [pytest.mark.wire, pytest.mark.timeout(90)]

CALLER_HZ, AGENT_HZ = 600.0, 1000.0


def demo_refer(lab, pjsua, agent_options: dict, caller_options: dict | None = None):
    """The demo flow with transfer_method refer; the PJSIP caller pressed 0."""
    agent = pjsua.ua("agent", tone_hz=AGENT_HZ, **agent_options)
    start_voicegw(lab, sections=NO_SHEDDING, bot=False, agent_uri=agent.contact(), transfer_method="refer")
    caller = pjsua.ua("caller", tone_hz=CALLER_HZ, **(caller_options or {}))
    call = caller.call(f"sip:demo@{lab.daemon.host}:{lab.daemon.port}")
    call.wait_confirmed()
    call.dtmf("0")
    return caller, call, agent


def test_sipp_bot_refer_makes_voicegw_refer_the_pjsip_caller_to_the_pjsip_agent(lab, pjsua):
    agent = pjsua.ua("agent", tone_hz=AGENT_HZ, answer_delay=0.3)
    start_voicegw(lab, sections=NO_SHEDDING, transfer_allow=[f"sip:*@127.0.0.1:{agent.port}"],
                  transfer_method="refer")
    b = bot(lab, "bot_refer.xml", agent.contact())
    caller = pjsua.ua("caller", tone_hz=CALLER_HZ)
    call = caller.call(f"sip:bot@{lab.daemon.host}:{lab.daemon.port}")
    call.wait_confirmed()
    new = call.transferred_to()  # PJSIP accepted voicegw's REFER and dials the agent
    new.wait_confirmed()
    leg = agent.incoming()
    leg.wait_confirmed()
    wait_event(lab, "transfer.succeeded", status=200)
    call.wait_disconnected()  # voicegw's BYE on leg A after PJSIP's final NOTIFY
    assert b.wait(15) == 0, lab.report()
    # the new call is direct: voicegw is out of the media path
    assert new.listen(lambda s: hears(s, AGENT_HZ))
    assert leg.listen(lambda s: hears(s, CALLER_HZ))
    refer = caller.requests("REFER")[0]
    assert str(agent.port) in (refer.header("refer-to") or "")
    assert refer.header("referred-by")
    assert [m.status for m in caller.responses("REFER", "out")] == [202]
    frags = sipfrags(caller.messages(), "out")
    assert frags[-1] == (200, True), frags
    flow = caller.flow()
    assert flow.index("in BYE") > max(i for i, d in enumerate(flow) if d == "out NOTIFY"), flow
    # the agent's INVITE came from PJSIP itself, not from voicegw
    invite = agent.requests("INVITE")[0]
    assert invite.header("x-vg-call-id") is None
    assert (invite.header("call-id") or "") != call.call_id
    new.hangup()
    leg.wait_disconnected()


def test_demo_flow_refer_pjsip_caller_reaches_the_agent(lab, pjsua):
    _, call, agent = demo_refer(lab, pjsua, {})
    new = call.transferred_to(timeout=20)
    leg = agent.incoming()
    leg.wait_confirmed()
    new.wait_confirmed()
    wait_event(lab, "transfer.succeeded", status=200)
    call.wait_disconnected()
    assert new.listen(lambda s: hears(s, AGENT_HZ))
    assert leg.listen(lambda s: hears(s, CALLER_HZ))
    new.hangup()
    leg.wait_disconnected()


def test_demo_flow_refer_agent_busy_pjsip_notifies_486_caller_stays(lab, pjsua):
    caller, call, _ = demo_refer(lab, pjsua, {"incoming": "busy"})
    new = call.transferred_to(timeout=20)
    new.wait_disconnected()
    assert new.status == 486
    wait_event(lab, "transfer.failed", status=486)
    assert sipfrags(caller.messages(), "out")[-1] == (486, True)
    assert call.listen(lambda s: rms(s) > 200), "the caller hears the flow's apology on its first call"
    assert call.state == "CONFIRMED" and "in BYE" not in caller.flow()
    call.hangup()
    call.wait_disconnected()


def test_pjsip_caller_refuses_the_refer_and_stays_in_the_flow(lab, pjsua):
    caller, call, agent = demo_refer(lab, pjsua, {}, {"accept_transfer": 603})
    wait_event(lab, "transfer.failed", status=603)
    assert [m.status for m in caller.responses("REFER", "out")] == [603]
    assert not agent.all("incoming"), "nobody called the agent"
    assert call.listen(lambda s: rms(s) > 200), "the caller hears the flow again"
    assert call.state == "CONFIRMED"
    call.hangup()
