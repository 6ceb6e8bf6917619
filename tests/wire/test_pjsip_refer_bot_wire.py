"""PJSIP (peers.pjsua) as the bot that asks to be replaced by REFER (RFC 3515).

PJSIP's own REFER client (``Call.xfer``) sends the REFER on leg B; voicegw carries it
out by INVITE to a PJSIP agent and reports the agent leg's progress back in NOTIFYs
with message/sipfrag bodies (RFC 3420), which PJSIP's subscription hands to its
``onCallTransferStatus``. Checked at the bot: the 202, the sipfrags 100, 180 and a
final 200 (or the agent's failure), PJSIP's BYE after the final NOTIFY (or no BYE at
all when the transfer failed); at the caller and the agent: who hears whom.
"""

from __future__ import annotations

import pytest
from peers.lab import NO_SHEDDING, event, sipfrags, start_voicegw, wait_event
from peers.pjsua import hears

pytestmark = [pytest.mark.wire, pytest.mark.timeout(90)]

CALLER_HZ, AGENT_HZ, BOT_HZ = 600.0, 1000.0, 1400.0


def bot_call(lab, pjsua, agent_options: dict, bye_after_transfer: bool = True, **calls: object):
    """Caller -> voicegw -> PJSIP bot, a PJSIP agent ready: (caller call, bot, leg B, agent)."""
    agent = pjsua.ua("agent", tone_hz=AGENT_HZ, **agent_options)
    start_voicegw(lab, sections=NO_SHEDDING, transfer_allow=[f"sip:*@127.0.0.1:{agent.port}"],
                  transfer_method="invite", **calls)
    bot = pjsua.ua("bot", port=lab.bot_port, tone_hz=BOT_HZ, bye_after_transfer=bye_after_transfer)
    caller = pjsua.ua("caller", tone_hz=CALLER_HZ)
    call = caller.call(f"sip:bot@{lab.daemon.host}:{lab.daemon.port}")
    call.wait_confirmed()
    leg_b = bot.incoming()
    leg_b.wait_confirmed()
    return call, bot, leg_b, agent


def test_pjsip_bot_refer_gets_notify_100_180_200_then_sends_its_bye(lab, pjsua):
    call, bot, leg_b, agent = bot_call(lab, pjsua, {"answer_delay": 0.5})
    leg_b.refer(agent.contact(), headers={"X-Bot-Summary": "billing"})
    assert leg_b.wait_transfer_final() == 200
    leg_b.wait_disconnected()
    bot.wait_sip("BYE", "out")  # the state event can overtake the message log
    # PJSIP's view of the NOTIFYs, and the same on the wire
    statuses = [s for s, _ in leg_b.transfer_statuses()]
    assert 180 in statuses and statuses[-1] == 200, statuses
    frags = sipfrags(bot.messages())
    assert frags[0] == (100, False) and frags[-1] == (200, True), frags
    assert 180 in [s for s, _ in frags], frags
    assert [m.status for m in bot.responses("REFER")] == [202]
    flow = bot.flow()
    final_notify = max(i for i, d in enumerate(flow) if d == "in NOTIFY")
    assert "out 200 NOTIFY" in flow[final_notify:], flow
    assert "out BYE" in flow[final_notify:], f"PJSIP's BYE comes after the final NOTIFY: {flow}"
    assert "out BYE" not in flow[:final_notify], flow
    # voicegw also ends leg B after the final NOTIFY's 200, so the two BYEs may cross:
    # PJSIP's is then answered 481 (voicegw's dialog is gone) rather than 200
    assert bot.wait_final("BYE").status in (200, 481), bot.flow()
    refer = bot.requests("REFER", "out")[0]
    assert refer.header("refer-to") and str(agent.port) in refer.header("refer-to")
    # the caller now talks to the agent
    leg_c = agent.incoming()
    leg_c.wait_confirmed()
    assert call.listen(lambda s: hears(s, AGENT_HZ))
    assert leg_c.listen(lambda s: hears(s, CALLER_HZ))
    wait_event(lab, "transfer.succeeded", status=200)
    call.hangup()
    leg_c.wait_disconnected()


def test_pjsip_bot_that_waits_gets_voicegws_bye_after_the_final_notify(lab, pjsua):
    call, bot, leg_b, agent = bot_call(lab, pjsua, {}, bye_after_transfer=False)
    leg_b.refer(agent.contact())
    assert leg_b.wait_transfer_final() == 200
    leg_b.wait_disconnected()
    bot.wait_sip("BYE", "out", status=200)
    flow = bot.flow()
    final_notify = max(i for i, d in enumerate(flow) if d == "in NOTIFY")
    assert flow.index("in BYE") > final_notify and "out BYE" not in flow, flow
    agent.incoming().wait_confirmed()
    call.hangup()


def test_pjsip_bot_refer_to_a_busy_agent_gets_486_and_keeps_the_caller(lab, pjsua):
    call, bot, leg_b, agent = bot_call(lab, pjsua, {"incoming": "busy"})
    leg_b.refer(agent.contact())
    assert leg_b.wait_transfer_final() == 486
    wait_event(lab, "transfer.failed", status=486)
    assert sipfrags(bot.messages())[-1] == (486, True)
    # nobody hangs up: the bot still hears the caller and the caller the bot
    assert call.listen(lambda s: hears(s, BOT_HZ))
    assert leg_b.listen(lambda s: hears(s, CALLER_HZ))
    assert leg_b.state == "CONFIRMED" and "out BYE" not in bot.flow() and "in BYE" not in bot.flow()
    assert event(lab, "transfer.succeeded") is None
    call.hangup()
    leg_b.wait_disconnected()


def test_pjsip_bot_refer_off_the_allow_list_is_refused(lab, pjsua):
    call, bot, leg_b, agent = bot_call(lab, pjsua, {})
    leg_b.refer("sip:premium@127.0.0.1:9")  # not on the allow-list
    assert leg_b.wait_transfer_final() == 403
    assert [m.status for m in bot.responses("REFER")] == [403]
    wait_event(lab, "transfer.refused")
    assert not agent.all("incoming")
    assert call.listen(lambda s: hears(s, BOT_HZ)), "the call goes on with the bot"
    call.hangup()
