"""voicegw's INVITE transfers with PJSIP (peers.pjsua) on both ends: the PJSIP caller
is the transferee, a PJSIP agent the target, which answers, is busy, never answers,
answers 183 with early media first (relayed to the caller), or hangs up.

The caller presses 0 (RFC 4733) in the demo flow, or a bot asks by REFER; voicegw
dials the agent by INVITE (leg C) and bridges the caller to it. Each PJSIP agent feeds
its own sine and records what it hears: after a good transfer the caller hears the
agent's tone and the agent the caller's; after a failed one the caller hears the
flow's apology and is never hung up. PJSIP's message logs show what crossed the wire
(voicegw's context headers at the agent, the CANCEL of an unanswered INVITE).
"""

from __future__ import annotations

import pytest
from peers.lab import NO_SHEDDING, bot, event, start_voicegw, wait_event
from peers.pjsua import hears, rms

pytestmark = [pytest.mark.wire, pytest.mark.timeout(90)]

CALLER_HZ, AGENT_HZ, BOT_HZ = 600.0, 1000.0, 1400.0


def demo_call(lab, pjsua, agent_options: dict, **calls: object):
    """A PJSIP agent, voicegw's demo flow pointing at it, a PJSIP caller in the menu
    that pressed 0: (caller, its call, agent)."""
    agent = pjsua.ua("agent", tone_hz=AGENT_HZ, **agent_options)
    start_voicegw(lab, sections=NO_SHEDDING, bot=False, agent_uri=agent.contact(), **calls)
    caller = pjsua.ua("caller", tone_hz=CALLER_HZ)
    call = caller.call(f"sip:demo@{lab.daemon.host}:{lab.daemon.port}")
    call.wait_confirmed()
    call.dtmf("0")  # queued during the greeting, taken by the menu
    wait_event(lab, "flow.dtmf", digit="0")
    return caller, call, agent


def test_transferee_pjsip_reaches_the_pjsip_agent_both_hear_each_other(lab, pjsua):
    caller, call, agent = demo_call(lab, pjsua, {"answer_delay": 0.5})
    leg_c = agent.incoming()
    leg_c.wait_confirmed()
    wait_event(lab, "transfer.succeeded")
    assert call.listen(lambda s: hears(s, AGENT_HZ)), "the caller hears the agent"
    assert leg_c.listen(lambda s: hears(s, CALLER_HZ)), "the agent hears the caller"
    invite = agent.requests("INVITE")[0]
    assert invite.header("x-vg-caller") == "caller"
    assert invite.header("x-vg-call-id") == call.call_id
    assert agent.flow()[:4] == ["in INVITE", "out 100 INVITE", "out 180 INVITE", "out 200 INVITE"]
    # the transferee's own dialog never changed: one INVITE, no re-INVITE, no BYE yet
    assert caller.flow().count("out INVITE") == 1 and "in BYE" not in caller.flow()
    call.hangup()
    leg_c.wait_disconnected()
    assert agent.flow()[-2:] == ["in BYE", "out 200 BYE"]


def test_transferee_pjsip_agent_busy_caller_hears_the_apology_and_stays(lab, pjsua):
    caller, call, agent = demo_call(lab, pjsua, {"incoming": "busy"})
    wait_event(lab, "transfer.failed", status=486)
    assert call.listen(lambda s: rms(s) > 200 and not hears(s, AGENT_HZ)), \
        "the caller hears the flow's apology (and nothing from the agent)"
    assert call.state == "CONFIRMED" and "in BYE" not in caller.flow(), "a failed transfer never drops the caller"
    assert agent.flow()[:3] == ["in INVITE", "out 100 INVITE", "out 486 INVITE"], agent.flow()
    assert "in ACK" in agent.flow()
    call.hangup()
    call.wait_disconnected()


def test_transferee_pjsip_agent_never_answers_voicegw_cancels(lab, pjsua):
    caller, call, agent = demo_call(lab, pjsua, {"incoming": "ignore"}, ring_timeout=2)
    leg_c = agent.incoming()
    wait_event(lab, "transfer.failed", status="no_answer")
    leg_c.wait_disconnected()
    assert agent.wait_sip("CANCEL")
    flow = agent.flow()
    assert flow[:3] == ["in INVITE", "out 100 INVITE", "out 180 INVITE"], flow
    assert "out 487 INVITE" in flow and "out 200 CANCEL" in flow, flow
    assert call.listen(lambda s: rms(s) > 200), "the caller hears the flow again"
    assert call.state == "CONFIRMED" and "in BYE" not in caller.flow()
    call.hangup()
    call.wait_disconnected()


def test_sipp_bot_refers_the_pjsip_caller_to_a_pjsip_agent_by_invite(lab, pjsua):
    """The bot's REFER carried out by INVITE: voicegw bridges the PJSIP caller to the
    PJSIP agent, the bot gets NOTIFY 200 and BYE."""
    agent = pjsua.ua("agent", tone_hz=AGENT_HZ)
    start_voicegw(lab, sections=NO_SHEDDING, transfer_allow=[f"sip:*@127.0.0.1:{agent.port}"],
                  transfer_method="invite")
    b = bot(lab, "bot_refer.xml", agent.contact())
    caller = pjsua.ua("caller", tone_hz=CALLER_HZ)
    call = caller.call(f"sip:bot@{lab.daemon.host}:{lab.daemon.port}")
    call.wait_confirmed()
    leg_c = agent.incoming()
    leg_c.wait_confirmed()
    wait_event(lab, "transfer.succeeded", status=200)
    assert b.wait(15) == 0, lab.report()
    assert call.listen(lambda s: hears(s, AGENT_HZ))
    assert leg_c.listen(lambda s: hears(s, CALLER_HZ))
    assert event(lab, "transfer.progress", status=180)
    call.hangup()
    leg_c.wait_disconnected()


def test_pjsip_agent_early_media_reaches_the_caller_in_place_of_voicegws_ringback(lab, pjsua):
    """The agent answers 183 with SDP and sends its tone: voicegw relays it to the caller
    in place of its own ringback (``early_media: relay``, the default for a target without
    a profile) until the agent answers; then the caller hears the agent."""
    _, call, agent = demo_call(lab, pjsua, {"incoming": "manual"})
    leg_c = agent.incoming(timeout=20)
    leg_c.answer(183)
    wait_event(lab, "transfer.progress", status=183)
    assert call.listen(lambda s: hears(s, AGENT_HZ), timeout=8), "the agent's early media, before its 200"
    early = call.record(2.0)
    assert hears(early, AGENT_HZ) and not hears(early, 440.0), "the agent's tone, not voicegw's ringback"
    assert b"m=audio" in agent.responses("INVITE", "out")[-1].body
    leg_c.answer(200)
    leg_c.wait_confirmed()
    wait_event(lab, "transfer.succeeded", status=200)
    assert call.listen(lambda s: hears(s, AGENT_HZ)), "after the 200 the caller hears the agent"
    call.hangup()
    leg_c.wait_disconnected()


def test_the_pjsip_agent_hangs_up_and_voicegw_ends_the_call(lab, pjsua):
    caller, call, agent = demo_call(lab, pjsua, {})
    leg_c = agent.incoming()
    leg_c.wait_confirmed()
    wait_event(lab, "transfer.succeeded")
    leg_c.hangup()
    call.wait_disconnected(timeout=15)  # the demo flow has no post-agent node
    caller.wait_sip("BYE")
    agent.wait_sip("BYE", status=200)  # pjsua logs what it read a moment later than the caller sees its BYE
    assert caller.flow()[-2:] == ["in BYE", "out 200 BYE"]
    assert agent.flow()[-2:] == ["out BYE", "in 200 BYE"]
    wait_event(lab, "call.ended")
