"""Asterisk 22 as the bot that asks voicegw for a transfer, over the wire (issue 11).

A caller (peers.pbx.Phone) calls voicegw, whose ``--bot-uri`` is an extension of a real
Asterisk (peers.asterisk, one instance for the module): ``bot`` answers, plays 900 Hz,
then runs ``Transfer(PJSIP/agent)``: chan_pjsip sends REFER on its leg to voicegw with
the registered agent's contact as Refer-To (peers.pbx.RegisteredAgent, digest auth).
voicegw carries the transfer out by INVITE and reports it to Asterisk with NOTIFY
sipfrags; Asterisk's Transfer() sets TRANSFERSTATUS/TRANSFERSTATUSPROTOCOL from them,
which the dialplan logs (``vgtest:`` lines). ``botdeny`` asks for a target off
voicegw's allow-list. After a failed transfer the bot plays 600 Hz: the caller is
still with it. Checked: Asterisk's SIP trace with voicegw, its dialplan's view of the
outcome, the tones the caller and the agent hear, voicegw's log.
"""

from __future__ import annotations

import time

import pytest
from peers.asterisk import Asterisk, ladder, requests, sipfrags
from peers.pbx import logged, wait_logged

pytestmark = [pytest.mark.wire, pytest.mark.timeout(240)]

BOT_TONE, BOT_AFTER_TONE = 900, 600
"""What the ``bot`` extension plays before its Transfer(), and after a failed one."""
CALLER_TONE, AGENT_TONE = 700, 1100


def bot_call(pbx_lab, exten: str, agent=None):
    """voicegw bridging a caller to the Asterisk bot at ``exten``; the caller talks."""
    allow = [f"sip:*@127.0.0.1:{agent.port}"] if agent is not None else []
    daemon = pbx_lab.voicegw(args=("--bot-uri", pbx_lab.pbx.uri(exten)), transfer_allow=allow,
                             transfer_method="invite", ring_timeout=20)
    caller = pbx_lab.phone("demo", to=daemon.address)
    assert caller.invite().status == 200
    pbx_lab.talk(caller, CALLER_TONE)
    assert caller.wait_heard(BOT_TONE, packets=10), "the caller hears the Asterisk bot"
    return daemon, caller


def refer_from_asterisk(pbx: Asterisk, since: int):
    refers = requests(pbx.with_voicegw(since), "REFER", "out")
    assert len(refers) == 1, ladder(pbx.with_voicegw(since))
    return refers[0]


# ------------------------------------------------------------------------------ tests
def test_transfer_app_refers_voicegw_to_the_agent_and_gets_success(pbx, pbx_lab):
    agent = pbx_lab.agent(answer_delay=0.3)
    since = pbx.mark()
    daemon, caller = bot_call(pbx_lab, "bot", agent)
    assert agent.wait_answered(30), pbx.report(since)
    assert agent.call is not None and agent.call.source[1] == pbx.voicegw_port, "voicegw dials the agent"
    pbx_lab.talk(agent, AGENT_TONE)
    answered = time.monotonic()
    assert caller.wait_heard(AGENT_TONE, since=answered), "the caller now talks with the agent"
    assert agent.wait_heard(CALLER_TONE, since=answered)

    done = wait_logged(daemon, "transfer.succeeded")
    assert done["call_id"] == caller.call_id
    mark = pbx.wait_mark("TRANSFERSTATUS=SUCCESS", since)
    assert mark is not None, pbx.marks(since)

    pbx.wait_sip(lambda tr: "in BYE" in ladder(tr, pbx.voicegw_port), since)
    trace = pbx.with_voicegw(since)
    refer = refer_from_asterisk(pbx, since)
    assert refer.header("refer-to").strip("<>") == agent.uri, "Refer-To: the agent's registered contact"
    assert refer.header("referred-by"), "chan_pjsip names the referrer (RFC 3892)"
    flow = ladder(trace)
    assert "in 202 REFER" in flow, flow
    frags = sipfrags(trace, "in")
    assert frags[0] == 100 and frags[-1] == 200, frags
    assert flow.count("out 200 NOTIFY") == len(frags), "Asterisk accepts each NOTIFY"
    # voicegw hangs the bot up once the final NOTIFY is answered
    assert flow.index("in BYE") > max(i for i, d in enumerate(flow) if d == "out 200 NOTIFY")
    assert not caller.got_request("BYE"), "the caller stays, with the agent"
    assert caller.bye().status == 200
    assert agent.wait_for("BYE", 15)


def test_transfer_to_a_target_off_the_allow_list_is_refused_and_the_bot_carries_on(pbx, pbx_lab):
    since = pbx.mark()
    daemon, caller = bot_call(pbx_lab, "botdeny")
    mark = pbx.wait_mark("bot TRANSFERSTATUS=", since)
    assert mark == "bot TRANSFERSTATUS=FAILURE protocol=403", pbx.marks(since)
    refer = refer_from_asterisk(pbx, since)
    assert refer.header("refer-to").strip("<>") == "sip:nobody@192.0.2.1:5060"
    assert "in 403 REFER" in ladder(pbx.with_voicegw(since))
    assert logged(daemon, "transfer.refused"), "voicegw logs the refusal (toll-fraud guard)"
    later = time.monotonic()
    assert caller.wait_heard(BOT_AFTER_TONE, since=later), "the caller is still with the bot"
    assert not logged(daemon, "transfer.started"), "nothing was dialled"
    assert caller.bye().status == 200


def test_transfer_to_a_busy_agent_reports_486_to_asterisk_and_the_bot_carries_on(pbx, pbx_lab):
    agent = pbx_lab.agent(mode="busy")
    since = pbx.mark()
    daemon, caller = bot_call(pbx_lab, "bot", agent)
    mark = pbx.wait_mark("bot TRANSFERSTATUS=", since, timeout=30)
    assert mark == "bot TRANSFERSTATUS=FAILURE protocol=486", pbx.marks(since)
    assert agent.got("INVITE"), "voicegw dialled the agent"
    frags = sipfrags(pbx.with_voicegw(since), "in")
    assert frags[-1] == 486, frags
    wait_logged(daemon, "transfer.failed", status=486)
    later = time.monotonic()
    assert caller.wait_heard(BOT_AFTER_TONE, since=later), "the caller is still with the bot"
    assert not caller.got_request("BYE")
    assert caller.bye().status == 200
