"""Asterisk 22 as the agents' PBX, over the wire (issue 11).

A caller (peers.pbx.Phone, raw SIP and RTP) calls voicegw directly; the flow's
agent_transfer node transfers by INVITE to an extension of a real Asterisk
(peers.asterisk, one instance for the module), which Dials the agent registered to it
with digest auth (peers.pbx.RegisteredAgent). The extensions (templates/asterisk/
extensions.conf, context ``from-voicegw``): ``queue`` reads voicegw's context header
X-VG-Caller with PJSIP_HEADER and hands it to the agent in the caller's name; ``queue2s``
gives up after 2 s of ringing; ``early`` answers 183 with a tone before dialling (relayed to the caller).
Failures come back as Asterisk maps its DIALSTATUS (busy 486, no answer 480). Checked:
Asterisk's SIP trace (towards voicegw and towards the agent), the INVITE the agent
got, the tones each side hears, the fallback prompt the caller hears, voicegw's log.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from peers.asterisk import ladder, requests
from peers.pbx import logged, tone_wav, wait_logged

pytestmark = [pytest.mark.wire, pytest.mark.timeout(240)]

GREETING, BUSY, NO_ANSWER, SORRY = 500, 1700, 1900, 2300
"""Prompt tones (Hz): which fallback prompt the caller hears names the rule that ran."""
CALLER_TONE, AGENT_TONE, EARLY_TONE = 700, 1100, 1300
"""EARLY_TONE: what extension ``early`` plays in its 183 early media."""


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("prompts")
    return {name: tone_wav(folder / f"{name}.wav", freq)
            for name, freq in (("greeting", GREETING), ("busy", BUSY), ("noanswer", NO_ANSWER),
                               ("sorry", SORRY))}


def agent_flow(prompts: dict[str, Path], target: str) -> dict:
    """A short greeting, then an INVITE transfer to ``target``; each failure plays its
    prompt and the caller waits in a menu (a failed transfer never drops the caller)."""
    def prompt(name: str) -> dict[str, str]:
        return {"file": str(prompts[name])}

    return {
        "name": "test", "start": "greet",
        "nodes": {
            "greet": {"type": "message", "file": str(prompts["greeting"]), "next": "agent"},
            "agent": {
                "type": "agent_transfer", "target": target, "method": "invite",
                "fallback": {
                    "rules": [
                        {"match": 486, "action": "goto", "node": "wait", "prompt": prompt("busy")},
                        {"match": ["timeout", "no_answer", 480], "action": "goto", "node": "wait",
                         "prompt": prompt("noanswer")},
                    ],
                    "default": {"action": "goto", "node": "wait", "prompt": prompt("sorry")},
                },
            },
            "wait": {"type": "collect", "routes": {"9": "bye"}, "timeout": 60, "on_timeout": "bye"},
            "bye": {"type": "hangup"},
        },
    }


def call(pbx_lab, prompts, exten: str, **calls: object):
    """voicegw with the flow towards ``exten``; a caller connected to it, talking."""
    daemon = pbx_lab.voicegw(agent_flow(prompts, pbx_lab.pbx.uri(exten)), **calls)
    caller = pbx_lab.phone("demo", to=daemon.address)
    assert caller.invite().status == 200
    pbx_lab.talk(caller, CALLER_TONE)
    return daemon, caller


def failed_and_kept(daemon, caller, status, prompt_tone: int) -> dict:
    """The transfer failed with ``status``, the caller hears ``prompt_tone`` and is not
    hung up; the transfer.failed line."""
    failed = wait_logged(daemon, "transfer.failed", timeout=30, status=status)
    assert caller.wait_heard(prompt_tone, packets=10), f"the caller hears the {prompt_tone} Hz fallback prompt"
    assert not caller.got_request("BYE"), "a failed transfer never drops the caller"
    assert not logged(daemon, "transfer.succeeded")
    return failed


# ------------------------------------------------------------------------------ tests
def test_invite_to_a_queue_extension_reaches_the_registered_agent_with_context_and_audio(pbx, pbx_lab, prompts):
    agent = pbx_lab.agent(answer_delay=0.3)
    since = pbx.mark()
    daemon, caller = call(pbx_lab, prompts, "queue")
    assert agent.wait_answered(30), pbx.report(since)
    pbx_lab.talk(agent, AGENT_TONE)
    answered = time.monotonic()
    assert agent.wait_heard(CALLER_TONE, since=answered), "the agent hears the caller's tone"
    assert caller.wait_heard(AGENT_TONE, since=answered), "the caller hears the agent's tone"
    done = wait_logged(daemon, "transfer.succeeded")
    assert done["call_id"] == caller.call_id

    # the context header went voicegw -> Asterisk (PJSIP_HEADER read) -> the agent
    mark = pbx.wait_mark("queue X-VG-Caller=", since)
    assert mark == f"queue X-VG-Caller=phone X-VG-Call-ID={caller.call_id}", mark
    assert agent.call is not None
    assert agent.call.invite.headers.get("from", "").startswith('"vg-caller phone"'), "handed on by the dialplan"
    assert agent.call.source == pbx.address, "the agent is dialled by Asterisk"

    trace = pbx.with_voicegw(since)
    invite = requests(trace, "INVITE", "in")[0]
    assert invite.header("x-vg-caller") == "phone"
    assert ["in INVITE", "out 100 INVITE"] == ladder(trace)[:2], ladder(trace)
    assert "out 200 INVITE" in ladder(trace) and "in ACK" in ladder(trace)

    # voicegw stays in the call (INVITE transfer): the caller's BYE goes through it
    assert caller.bye().status == 200
    assert agent.wait_for("BYE", 15), "the caller's BYE reaches the agent through voicegw and Asterisk"


def test_agent_busy_asterisk_answers_486_and_the_busy_rule_keeps_the_caller(pbx, pbx_lab, prompts):
    agent = pbx_lab.agent(mode="busy")
    since = pbx.mark()
    daemon, caller = call(pbx_lab, prompts, "queue")
    failed_and_kept(daemon, caller, 486, BUSY)
    assert agent.got("INVITE")
    trace = pbx.sip(since)
    assert "in 486 INVITE" in ladder(trace, agent.port), ladder(trace, agent.port)
    assert "out 486 INVITE" in ladder(trace, pbx.voicegw_port), ladder(trace, pbx.voicegw_port)
    assert caller.bye().status == 200


def test_agent_never_answers_voicegw_ring_timeout_cancels_through_asterisk(pbx, pbx_lab, prompts):
    agent = pbx_lab.agent(mode="never")
    since = pbx.mark()
    daemon, caller = call(pbx_lab, prompts, "queue", ring_timeout=3)
    failed_and_kept(daemon, caller, "no_answer", NO_ANSWER)
    assert agent.wait_for("CANCEL", 15), "Asterisk CANCELs the agent when voicegw CANCELs it"
    trace = pbx.sip(since)
    towards_voicegw = ladder(trace, pbx.voicegw_port)
    assert "in CANCEL" in towards_voicegw and "out 487 INVITE" in towards_voicegw, towards_voicegw
    assert "out CANCEL" in ladder(trace, agent.port), ladder(trace, agent.port)
    assert caller.bye().status == 200


def test_asterisk_gives_up_ringing_after_2s_480_and_the_no_answer_rule_runs(pbx, pbx_lab, prompts):
    agent = pbx_lab.agent(mode="never")
    since = pbx.mark()
    daemon, caller = call(pbx_lab, prompts, "queue2s", ring_timeout=20)
    failed_and_kept(daemon, caller, 480, NO_ANSWER)
    assert pbx.wait_mark("queue2s DIALSTATUS=NOANSWER", since)
    assert agent.wait_for("CANCEL", 15)
    assert "out 480 INVITE" in ladder(pbx.sip(since), pbx.voicegw_port)
    assert not requests(pbx.with_voicegw(since), "CANCEL", "in"), "voicegw did not CANCEL: Asterisk gave up first"
    assert caller.bye().status == 200


def test_no_agent_registered_the_queue_is_unavailable_and_the_caller_stays(pbx, pbx_lab, prompts):
    assert pbx.contacts("agent") == [], "the agents of earlier tests unregistered"
    since = pbx.mark()
    daemon, caller = call(pbx_lab, prompts, "queue")
    failed = wait_logged(daemon, "transfer.failed", timeout=30)
    answer = [t.message.status for t in pbx.with_voicegw(since)
              if t.direction == "out" and t.message.method == "INVITE" and (t.message.status or 0) >= 300]
    assert answer and failed["status"] == answer[0], (answer, failed)
    tone = NO_ANSWER if answer[0] == 480 else SORRY
    assert caller.wait_heard(tone, packets=10)
    assert not caller.got_request("BYE")
    assert caller.bye().status == 200


def test_early_media_183_from_asterisk_then_the_agent_answers(pbx, pbx_lab, prompts):
    agent = pbx_lab.agent(answer_delay=0.5)
    since = pbx.mark()
    daemon, caller = call(pbx_lab, prompts, "early")
    progress = wait_logged(daemon, "transfer.progress", status=183)
    assert progress
    trace = pbx.with_voicegw(since)
    early = next(t.message for t in trace if t.direction == "out" and t.message.status == 183)
    assert b"m=audio" in early.body, "Asterisk's 183 carries SDP (early media)"
    # the PBX's early tone reaches the caller before anyone answers (early_media: relay,
    # the default), in place of voicegw's own waiting audio
    assert caller.wait_heard(EARLY_TONE, packets=15), "Asterisk's early tone, relayed to the caller"
    assert agent.wait_answered(30)
    pbx_lab.talk(agent, AGENT_TONE)
    answered = time.monotonic()
    assert caller.wait_heard(AGENT_TONE, since=answered)
    assert agent.wait_heard(CALLER_TONE, since=answered)
    assert caller.bye().status == 200


def test_agent_hangs_up_first_asterisk_byes_voicegw_and_the_call_ends(pbx, pbx_lab, prompts):
    agent = pbx_lab.agent(answer_delay=0.2)
    since = pbx.mark()
    daemon, caller = call(pbx_lab, prompts, "queue")
    assert agent.wait_answered(30)
    wait_logged(daemon, "transfer.succeeded")
    agent.bye()
    trace = pbx.wait_sip(lambda tr: "out BYE" in ladder(tr, pbx.voicegw_port), since)
    assert "in BYE" in ladder(trace, agent.port) and "out BYE" in ladder(trace, pbx.voicegw_port)
    # the flow has no post_agent node: voicegw ends the call and hangs up the caller
    assert caller.listen(20, lambda: caller.got_request("BYE")), "the caller is hung up"
    wait_logged(daemon, "call.ended")


def test_voicegw_digest_client_registers_the_agent_and_a_wrong_password_is_refused(pbx, pbx_lab):
    """The agent's REGISTER is answered by voicegw's digest client (sip/digest_client):
    Asterisk accepts its answer with the right password; with a wrong one Asterisk
    challenges the answer again and the client refuses to loop."""
    wrong = pbx_lab.agent(register=False)
    since = pbx.mark()
    final = wrong.register(pbx.address, "agent", "not-the-password")
    assert final.status == 401 and wrong.refused == "credentials refused by realm 'asterisk'", wrong.refused
    assert pbx.contacts("agent") == []
    tried = requests(pbx.sip(since), "REGISTER", "in")
    assert len(tried) == 2 and tried[1].header("authorization"), "one answer, then no more"

    since = pbx.mark()
    right = pbx_lab.agent()
    assert right.refused is None
    sent = requests(pbx.sip(since), "REGISTER", "in")
    assert len(sent) == 2, ladder(pbx.sip(since))
    credentials = sent[1].header("authorization") or ""
    for part in ('username="agent"', 'realm="asterisk"', f'uri="sip:127.0.0.1:{pbx.sip_port}"',
                 "qop=auth", "nc=00000001"):
        assert part in credentials, credentials
    assert "out 200 REGISTER" in ladder(pbx.sip(since))
