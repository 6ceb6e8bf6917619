"""PJSIP phones and agents around Asterisk 22 and voicegw, over the wire (issue 11).

Three independent SIP stacks: the phone and the agent are PJSIP user agents
(peers.pjsua: pjsua2, each in its own process, feeding a tone into its calls and
recording what it receives), the PBX is a real Asterisk (peers.asterisk, one instance
for the module), and voicegw runs a flow whose prompts are tones.

- Asterisk upstream: the PJSIP phone calls extension ``vg``, which Dials voicegw; the
  flow REFERs Asterisk's leg; res_pjsip_refer's blind transfer runs ``2001``, which
  Dials the PJSIP agent registered to Asterisk with digest auth (PJSIP's own
  REGISTER). The phone ends up talking to the agent, voicegw out of the call.
- voicegw as the transfer target: the PJSIP phone calls extension ``tovg``; Asterisk
  answers and its Transfer() REFERs the phone to voicegw; PJSIP's REFER handling makes
  the new call to voicegw, whose flow answers it; Asterisk's dialplan sees the NOTIFY
  outcome (TRANSFERSTATUS).
- A warm transfer completed by REFER with Replaces on Asterisk's leg: Asterisk's
  ``external_replaces`` extension dials the PJSIP agent with the Replaces header and
  PJSIP joins the calls.
Checked: what each PJSIP agent recorded (Goertzel), the SIP each of them and Asterisk
sent and received, and voicegw's log.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from peers.asterisk import ladder, requests, sipfrags
from peers.pbx import logged, tone_wav, wait_logged
from peers.pjsua import AVAILABLE, PjsuaLab, Registration, hears

pytestmark = [
    pytest.mark.wire,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not AVAILABLE, reason="pjsua2 is not installed: pip install -e '.[test]'"),
]

GREETING = 500
PHONE_TONE, AGENT_TONE = 700, 1100


@pytest.fixture
def pj(tmp_path: Path):
    with PjsuaLab(tmp_path / "pjsua") as lab:
        yield lab


def greeting_flow(folder: Path, then: dict) -> dict:
    """A 3 s greeting tone, then the node ``then``."""
    greeting = tone_wav(folder / "greeting.wav", GREETING, seconds=3.0)
    return {
        "name": "test", "start": "greet",
        "nodes": {
            "greet": {"type": "message", "file": str(greeting), "next": "next"},
            "next": then,
            "sorry": {"type": "collect", "routes": {"9": "bye"}, "timeout": 60, "on_timeout": "bye"},
            "bye": {"type": "hangup"},
        },
    }


def test_pjsip_phone_via_asterisk_is_referred_to_the_pjsip_agent_registered_with_digest(pbx, pbx_lab, pj,
                                                                                       tmp_path):
    agent = pj.ua("agent", user="agent", tone_hz=AGENT_TONE, answer_delay=0.3,
                  register=Registration(registrar=f"sip:127.0.0.1:{pbx.sip_port}", user="agent",
                                        password=pbx.agent_password, domain="127.0.0.1"))
    assert agent.wait_event("reg", code=200)["expiration"] > 0, agent.report()
    assert any(f":{agent.port}" in c for c in pbx.contacts("agent")), pbx.rx("pjsip show contacts")
    register = agent.requests("REGISTER", "out")
    assert len(register) >= 2 and register[-1].header("authorization"), "PJSIP answered the digest challenge"

    refer = {"type": "agent_transfer", "target": pbx.uri("2001"), "method": "refer",
             "fallback": {"default": {"action": "goto", "node": "sorry"}}}
    daemon = pbx_lab.voicegw(greeting_flow(tmp_path, refer))
    since = pbx.mark()
    phone = pj.ua("phone", user="phone", tone_hz=PHONE_TONE)
    call = phone.call(pbx.uri("vg"))
    call.wait_confirmed()
    assert hears(call.record(1.0), GREETING), "the phone hears voicegw's greeting through Asterisk"

    incoming = agent.incoming(timeout=30)
    incoming.wait_confirmed(20)
    done = wait_logged(daemon, "transfer.succeeded", timeout=20)
    wait_logged(daemon, "call.ended", call_id=done["call_id"])
    channels = pbx.wait_channels(lambda names: len(names) == 2 and not any("voicegw" in n for n in names))
    assert sorted(name.rsplit("-", 1)[0] for name in channels) == ["PJSIP/agent", "PJSIP/phone"], channels
    assert hears(call.record(1.0), AGENT_TONE), "the phone talks with the agent"
    assert hears(incoming.record(1.0), PHONE_TONE), "the agent hears the phone"
    assert call.state == "CONFIRMED", "the phone's one call to Asterisk never changed"

    trace = pbx.with_voicegw(since)
    frags = sipfrags(trace, "out")
    assert frags[0] == 100 and frags[-1] == 200, frags
    assert "in BYE" in ladder(trace), ladder(trace)
    invite = agent.requests("INVITE")[-1]
    assert invite.header("from") and "phone" in invite.header("from"), "Asterisk dials the agent for the phone"
    call.hangup()
    incoming.wait_disconnected(20)


def test_asterisk_transfer_refers_the_pjsip_phone_to_voicegw_the_transfer_target(pbx, pbx_lab, pj, tmp_path):
    wait = {"type": "collect", "routes": {"9": "bye"}, "timeout": 60, "on_timeout": "bye"}
    daemon = pbx_lab.voicegw(greeting_flow(tmp_path, wait))
    since = pbx.mark()
    phone = pj.ua("phone", user="phone", tone_hz=PHONE_TONE)
    first = phone.call(pbx.uri("tovg"))
    first.wait_confirmed()
    new = first.transferred_to(timeout=20)  # Asterisk's REFER, accepted by PJSIP
    new.wait_confirmed(20)
    assert hears(new.record(1.0), GREETING), "the new call is answered by voicegw's flow"
    mark = pbx.wait_mark("tovg TRANSFERSTATUS=", since)
    # app_transfer sets the SIP code only for failures (TRANSFERSTATUSPROTOCOL 0 on success)
    assert mark == "tovg TRANSFERSTATUS=SUCCESS protocol=0", pbx.marks(since)
    first.wait_disconnected(20)  # Asterisk hangs up once its Transfer() succeeded

    refers = phone.requests("REFER")
    assert len(refers) == 1, phone.flow()
    assert refers[0].header("refer-to").strip("<>") == f"sip:voicegw@127.0.0.1:{pbx.voicegw_port}"
    # the new call reached voicegw with the REFER's Referred-By (RFC 3892)
    invite = [m for m in phone.requests("INVITE", "out") if f":{pbx.voicegw_port}" in m.first_line]
    assert invite and invite[-1].header("referred-by"), phone.flow()
    notifies = phone.requests("NOTIFY", "out")
    assert notifies and b"200" in notifies[-1].body.split(b"\r\n", 1)[0], "the phone NOTIFYs Asterisk the 200"
    assert not logged(daemon, "call.ended")
    time.sleep(0.3)
    new.hangup()
    wait_logged(daemon, "call.ended")


def test_warm_transfer_completed_by_refer_with_replaces_through_asterisk_upstream(pbx, pbx_lab, pj):
    """The PJSIP phone calls voicegw through Asterisk and presses 0: voicegw consults
    the PJSIP agent directly, then completes by REFER with Replaces on Asterisk's leg.
    The Replaces names a dialog Asterisk does not hold, so res_pjsip_refer runs its
    ``external_replaces`` extension, which Dials the Refer-To with the Replaces header;
    PJSIP's agent takes that INVITE into the consult call's place (RFC 3891) and ends
    the consult dialog. The phone ends up talking to the agent through Asterisk."""
    agent = pj.ua("agent", user="agent", tone_hz=AGENT_TONE)
    warm = {"hold": "silence", "briefing_text": "Transfer of a caller.", "confirm": False,
            "auto_complete": True, "complete_by": "refer"}
    daemon = pbx_lab.voicegw(args=("--agent-uri", agent.contact()), transfer_method="warm", warm=warm,
                             ring_timeout=10, transfer_allow=[f"sip:*@127.0.0.1:{agent.port}"])
    since = pbx.mark()
    phone = pj.ua("phone", user="phone", tone_hz=PHONE_TONE)
    call = phone.call(pbx.uri("vg"))
    call.wait_confirmed()
    time.sleep(1.0)  # the demo flow's greeting starts; its menu takes the key
    call.dtmf("0")
    consult = agent.incoming(timeout=30)
    consult.wait_confirmed(20)
    joined = consult.replaced_by(timeout=30)  # Asterisk's INVITE with Replaces
    joined.wait_confirmed(20)
    consult.wait_disconnected(20)
    done = wait_logged(daemon, "transfer.succeeded", timeout=30)
    wait_logged(daemon, "call.ended", call_id=done["call_id"])

    mark = pbx.wait_mark("external replaces to ", since)
    assert mark is not None and f"127.0.0.1:{agent.port}" in mark, pbx.marks(since)
    replaced = agent.requests("INVITE")[-1]
    assert replaced.header("replaces"), "Asterisk's INVITE carries the Replaces header"
    assert replaced.header("replaces").split(";")[0] == consult.call_id, "naming the consult dialog"
    trace = pbx.with_voicegw(since)
    refer = requests(trace, "REFER", "in")[0]
    assert "Replaces=" in refer.header("refer-to"), refer.header("refer-to")
    frags = sipfrags(trace, "out")
    assert frags[-1] == 200, frags
    channels = pbx.wait_channels(lambda names: len(names) == 2 and not any("voicegw" in n for n in names))
    assert sorted(name.rsplit("-", 1)[0] for name in channels) == ["PJSIP/agent", "PJSIP/phone"], channels
    assert hears(call.record(1.0), AGENT_TONE), "the phone talks with the agent"
    assert hears(joined.record(1.0), PHONE_TONE), "the agent hears the phone"
    call.hangup()
    joined.wait_disconnected(20)
