"""Asterisk 22 upstream of voicegw, over the wire (issue 11).

A phone (peers.pbx.Phone: raw SIP and RTP) calls extension ``vg`` of a real Asterisk
(peers.asterisk, one instance for the module), which Dials voicegw (its ``voicegw``
endpoint); voicegw answers with a flow whose prompts are tones. The flow's
agent_transfer node REFERs Asterisk's leg (method refer): res_pjsip_refer runs a blind
transfer in the endpoint's context, where ``2001`` Dials the agent, which registered
with digest auth (peers.pbx.RegisteredAgent). Checked on the wire: Asterisk's own SIP
trace (the REFER it got, its 202 and NOTIFY sipfrags, the BYE from voicegw), the
channels left in Asterisk, the tones each party hears (Goertzel on the PCMU the phone
and the agent receive), and voicegw's log. Also: a REFER to an extension missing from
Asterisk's dialplan fails (NOTIFY 404) and voicegw's fallback keeps the caller, and
DTMF (RFC 4733) that Asterisk's SendDTMF sends to voicegw reaches the flow.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from peers.asterisk import ladder, requests, sipfrags
from peers.daemon import wait_until
from peers.pbx import logged, tone_wav, wait_logged

pytestmark = [pytest.mark.wire, pytest.mark.timeout(240)]

GREETING, SORRY = 500, 1700
"""Prompt tones (Hz): what the phone hears tells which prompt voicegw played."""
PHONE_TONE, AGENT_TONE = 700, 1100


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("prompts")
    return {name: tone_wav(folder / f"{name}.wav", freq)
            for name, freq in (("greeting", GREETING), ("sorry", SORRY))}


def refer_flow(prompts: dict[str, Path], target: str) -> dict:
    """Greeting, then REFER the caller's leg to ``target``; on failure the sorry prompt
    and a menu that waits (the caller stays)."""
    return {
        "name": "test", "start": "greet",
        "nodes": {
            "greet": {"type": "message", "file": str(prompts["greeting"]), "next": "agent"},
            "agent": {"type": "agent_transfer", "target": target, "method": "refer",
                      "fallback": {"default": {"action": "goto", "node": "sorry"}}},
            "sorry": {"type": "message", "file": str(prompts["sorry"]), "next": "wait"},
            "wait": {"type": "collect", "routes": {"9": "bye"}, "timeout": 60, "on_timeout": "bye"},
            "bye": {"type": "hangup"},
        },
    }


# ------------------------------------------------------------------------------ tests
def test_flow_refers_asterisk_which_transfers_the_phone_to_the_registered_agent(pbx, pbx_lab, prompts):
    agent = pbx_lab.agent(answer_delay=0.3)
    daemon = pbx_lab.voicegw(refer_flow(prompts, pbx.uri("2001")))
    since = pbx.mark()
    caller = pbx_lab.phone("vg")
    assert caller.invite().status == 200
    pbx_lab.talk(caller, PHONE_TONE)
    # voicegw's greeting reaches the phone through Asterisk
    assert caller.wait_heard(GREETING, packets=10), "the phone hears voicegw's greeting"

    # the blind transfer: Asterisk dials the agent's registered contact, the agent answers
    assert agent.wait_answered(30), pbx.report(since)
    assert agent.call is not None and agent.call.source == pbx.address, "Asterisk dials the agent"
    pbx_lab.talk(agent, AGENT_TONE)
    answered = time.monotonic()
    assert caller.wait_heard(AGENT_TONE, since=answered), "the phone hears the agent"
    assert agent.wait_heard(PHONE_TONE, since=answered), "the agent hears the phone"

    # voicegw is out of the call: its transfer succeeded, it hung up, Asterisk bridges the two
    done = wait_logged(daemon, "transfer.succeeded", timeout=20)
    assert done["status"] == 200
    wait_logged(daemon, "call.ended", call_id=done["call_id"])
    channels = pbx.wait_channels(lambda names: len(names) == 2 and not any("voicegw" in n for n in names))
    assert sorted(name.rsplit("-", 1)[0] for name in channels) == ["PJSIP/agent", "PJSIP/phone"], channels
    later = time.monotonic()
    assert caller.wait_heard(AGENT_TONE, since=later), "still talking with voicegw gone"

    # the wire between Asterisk and voicegw, as Asterisk logged it
    trace = pbx.with_voicegw(since)
    refers = requests(trace, "REFER", "in")
    assert len(refers) == 1, ladder(trace)
    assert refers[0].header("refer-to").strip("<>") == pbx.uri("2001")
    assert refers[0].header("referred-by"), "voicegw says who referred (RFC 3892)"
    flow = ladder(trace)
    assert "out 202 REFER" in flow, flow
    notifies = requests(trace, "NOTIFY", "out")
    frags = sipfrags(trace, "out")
    assert frags[0] == 100 and frags[-1] == 200, frags
    assert "terminated" in (notifies[-1].header("subscription-state") or "")
    assert flow.index("in BYE") > flow.index("out NOTIFY"), "voicegw leaves after the final NOTIFY"
    assert pbx.wait_mark("transfer to agent referred-by=", since), "the dialplan saw Referred-By"

    assert caller.bye().status == 200


def test_refer_sub_false_asterisk_sends_no_notify_and_the_transfer_goes_on(pbx, pbx_lab, prompts):
    """RFC 4488: voicegw's REFER says Refer-Sub: false; res_pjsip_refer sets up the blind
    transfer first and then answers with its outcome, 200 OK (not the 202 RFC 4488 shows)
    with Refer-Sub: false, and sends no NOTIFY; voicegw takes the 2xx as the outcome and
    leaves, and the phone is put through to the agent."""
    agent = pbx_lab.agent(answer_delay=0.3)
    daemon = pbx_lab.voicegw(refer_flow(prompts, pbx.uri("2001")), refer_sub=False)
    since = pbx.mark()
    caller = pbx_lab.phone("vg")
    assert caller.invite().status == 200
    pbx_lab.talk(caller, PHONE_TONE)
    done = wait_logged(daemon, "transfer.succeeded", timeout=30)
    assert agent.wait_answered(30), pbx.report(since)
    pbx_lab.talk(agent, AGENT_TONE)
    answered = time.monotonic()
    assert caller.wait_heard(AGENT_TONE, since=answered) and agent.wait_heard(PHONE_TONE, since=answered)
    trace = pbx.with_voicegw(since)
    refer = requests(trace, "REFER", "in")[0]
    assert refer.header("refer-sub") == "false"
    answer = next(t.message for t in trace if t.direction == "out" and t.message.status is not None
                  and t.message.method == "REFER")
    assert answer.status == 200 and done["status"] == 200, "the REFER's 2xx is the outcome"
    assert (answer.header("refer-sub") or "").lower() == "false", "Asterisk agrees to send no NOTIFY"
    assert not requests(trace, "NOTIFY", "out")
    assert "in BYE" in ladder(trace)
    assert caller.bye().status == 200


def test_refer_to_an_extension_missing_from_the_dialplan_fails_and_the_caller_stays(pbx, pbx_lab, prompts):
    daemon = pbx_lab.voicegw(refer_flow(prompts, pbx.uri("7777")))
    since = pbx.mark()
    caller = pbx_lab.phone("vg")
    assert caller.invite().status == 200
    failed = wait_logged(daemon, "transfer.failed", timeout=30)
    # res_pjsip_refer accepts the REFER, then finds no such extension in the endpoint's
    # context and reports it in the final NOTIFY (the phone never left voicegw)
    trace = pbx.with_voicegw(since)
    assert "out 202 REFER" in ladder(trace), ladder(trace)
    frags = sipfrags(trace, "out")
    assert frags[-1] == 404, frags
    assert failed["status"] == 404, "voicegw fails the transfer with the sipfrag's status"
    assert "attempted blind transfer to '7777@from-voicegw' but target does not exist" in pbx.text(since)
    # the fallback: the sorry prompt through Asterisk, the call still up on both sides
    assert caller.wait_heard(SORRY, packets=10, since=0), "the phone hears the fallback prompt"
    assert not caller.got_request("BYE")
    assert len(pbx.channels()) == 2, pbx.channels()
    assert not logged(daemon, "call.ended")
    assert caller.bye().status == 200
    wait_logged(daemon, "call.ended", call_id=failed["call_id"])


def test_refer_accepted_then_the_agent_is_busy_asterisk_notifies_503_and_has_the_phone(pbx, pbx_lab, prompts):
    """A blind transfer that fails after the 202: Asterisk took the phone into its
    dialplan when it accepted the REFER, so the failure (Dial BUSY, then the dialplan's
    Hangup) drops the phone there; voicegw learns it from the final NOTIFY (503) and
    fails the transfer with it. (Asterisk ends voicegw's leg itself only when its
    deferred-termination timer fires, 60 s later.)"""
    agent = pbx_lab.agent(mode="busy")
    daemon = pbx_lab.voicegw(refer_flow(prompts, pbx.uri("2001")))
    since = pbx.mark()
    caller = pbx_lab.phone("vg")
    assert caller.invite().status == 200
    failed = wait_logged(daemon, "transfer.failed", timeout=30)
    assert agent.got("INVITE"), "Asterisk dialled the agent for the phone"
    trace = pbx.with_voicegw(since)
    frags = sipfrags(trace, "out")
    assert "out 202 REFER" in ladder(trace) and frags == [100, 503], (ladder(trace), frags)
    assert failed["status"] == 503
    assert caller.listen(15, lambda: caller.got_request("BYE")), "Asterisk hung the phone up"
    assert "in 486 INVITE" in ladder(pbx.sip(since), agent.port)
    assert not [t for t in trace if t.direction == "out" and t.message.method == "BYE"], \
        "no BYE from Asterisk to voicegw yet (deferred termination)"


def test_send_dtmf_from_asterisk_reaches_the_flow(pbx, pbx_lab, prompts):
    """Asterisk calls voicegw (AMI Originate) and sends it "2" with SendDTMF; the
    flow's route for 2 transfers the call to an agent, whose tone comes back to it
    through voicegw and Asterisk's Echo()."""
    agent = pbx_lab.agent(register=False, answer_delay=0.2)
    flow = {
        "name": "test", "start": "menu",
        "nodes": {
            "menu": {"type": "collect", "routes": {"2": "agent"}, "timeout": 30, "on_timeout": "bye"},
            "agent": {"type": "agent_transfer", "target": agent.uri, "method": "invite",
                      "fallback": {"default": {"action": "goto", "node": "menu"}}},
            "bye": {"type": "hangup"},
        },
    }
    daemon = pbx_lab.voicegw(flow, transfer_allow=[agent.uri])
    since = pbx.mark()
    pbx.originate("voicegw", "2", "dtmf-to-voicegw")
    assert pbx.wait_mark("sent DTMF 2", since), pbx.report(since)
    wait_logged(daemon, "flow.dtmf", digit="2")
    assert agent.wait_answered(20), "the flow's route for 2 ran: the transfer to the agent"
    pbx_lab.talk(agent, AGENT_TONE)
    assert agent.wait_heard(AGENT_TONE), "the agent hears itself: voicegw -> Asterisk Echo() -> voicegw"
    # RFC 4733 was negotiated on Asterisk's call to voicegw: both SDPs carry telephone-event
    trace = pbx.with_voicegw(since)
    invite = next(t.message for t in trace if t.direction == "out" and t.message.method == "INVITE"
                  and t.message.status is None)
    ok = next(t.message for t in trace if t.direction == "in" and t.message.status == 200
              and t.message.method == "INVITE")
    assert b"telephone-event/8000" in invite.body and b"telephone-event/8000" in ok.body
    pbx.hangup_all()
    wait_logged(daemon, "call.ended")
    assert agent.wait_for("BYE", 15)


def test_a_key_the_phone_presses_is_relayed_by_asterisk_to_the_flow(pbx, pbx_lab, prompts):
    """The phone's RFC 4733 key press goes to Asterisk, which relays it on its own leg
    to voicegw (a new event stream, its own timestamps); the flow's menu takes it."""
    flow = {
        "name": "test", "start": "menu",
        "nodes": {
            "menu": {"type": "collect", "routes": {"1": "one"}, "timeout": 30, "on_timeout": "bye"},
            "one": {"type": "message", "file": str(prompts["greeting"]), "next": "menu"},
            "bye": {"type": "hangup"},
        },
    }
    daemon = pbx_lab.voicegw(flow)
    caller = pbx_lab.phone("vg")
    assert caller.invite().status == 200
    caller.listen(1.0)
    assert caller.heard(GREETING) == 0, "nothing plays before the key"
    caller.send_dtmf("1")
    wait_logged(daemon, "flow.dtmf", digit="1")
    assert caller.wait_heard(GREETING, packets=10), "the flow went on to the node for 1"
    assert caller.bye().status == 200


def test_phone_hangs_up_and_the_bye_reaches_voicegw_through_asterisk(pbx, pbx_lab, prompts):
    flow = {"name": "test", "nodes": {"wait": {"type": "collect", "routes": {"9": "bye"},
                                               "timeout": 60, "on_timeout": "bye"},
                                      "bye": {"type": "hangup"}}}
    daemon = pbx_lab.voicegw(flow)
    since = pbx.mark()
    caller = pbx_lab.phone("vg")
    assert caller.invite().status == 200
    assert wait_until(lambda: len(pbx.channels()) == 2, 5), pbx.channels()
    assert not logged(daemon, "call.ended")
    assert caller.bye().status == 200
    wait_logged(daemon, "call.ended")
    pbx.wait_sip(lambda tr: "in 200 BYE" in ladder(tr, pbx.voicegw_port), since)
    trace = pbx.with_voicegw(since)
    assert ladder(trace)[-2:] == ["out BYE", "in 200 BYE"], ladder(trace)
