"""DTMF (RFC 4733 telephone-events) from FreeSWITCH reaching voicegw (issue 11).

Three sources: FreeSWITCH's own ``uuid_send_dtmf`` on a call it placed to voicegw (an
event-socket command), a phone's key press that FreeSWITCH relays across its bridge, and
a FreeSWITCH agent (``dtmf-1``: answer, then send 1) accepting a warm transfer. voicegw
runs its demo flow (DTMF 0 asks for the agent, a sipp UAS that echoes). Asserted: the
``flow.dtmf`` / warm decision in voicegw's JSON log, the agent's INVITE (sipp message
log), the caller's RTP after the transfer (its tone echoed back), FreeSWITCH's SIP trace.
"""

from __future__ import annotations

import uuid

import pytest
from peers.caller import Caller
from peers.calls import HOST, SIPP
from peers.freeswitch import INSTALL, SKIP_REASON, talk, tone
from peers.lab import caller, finish, peer, requests, start_voicegw, wait_event
from peers.pbx import tone_packets

pytestmark = [
    pytest.mark.wire,
    pytest.mark.skipif(SIPP is None, reason="sipp not installed: run scripts/bootstrap"),
    pytest.mark.skipif(INSTALL is None, reason=SKIP_REASON),
]


def demo_with_agent(lab, agent_uri: str, **calls) -> None:
    """voicegw's demo flow (greeting, DTMF 0 -> agent) with ``agent_uri`` as the agent."""
    start_voicegw(lab, bot=False, agent_uri=agent_uri, **calls)


def test_freeswitch_uuid_send_dtmf_reaches_the_flow_and_transfers(lab, freeswitch):
    """FreeSWITCH calls voicegw itself (``originate``, echo app on its side), then sends 0
    with ``uuid_send_dtmf``: the demo flow hears it and transfers the call to the agent."""
    agent = peer(lab, "agent", "agent_answer.xml", rtp_echo=True)
    demo_with_agent(lab, f"sip:agent@{HOST}:{agent.port}")
    leg = str(uuid.uuid4())
    answer = freeswitch.api(
        f"originate {{origination_uuid={leg},origination_caller_id_number=fsuser}}"
        f"sofia/test/sip:demo@{HOST}:{lab.daemon.port} &echo()")
    assert answer.startswith("+OK"), answer
    assert freeswitch.api(f"uuid_send_dtmf {leg} 0").startswith("+OK")
    wait_event(lab, "flow.dtmf", digit="0")
    wait_event(lab, "transfer.succeeded", status=200)
    assert freeswitch.api(f"uuid_kill {leg}").startswith("+OK")
    finish(lab, agent)
    invite = requests(agent.messages(), "INVITE")[0]
    assert invite.header("x-vg-caller") == "fsuser"


def test_a_phone_key_press_relayed_by_freeswitch_reaches_the_flow(lab, freeswitch):
    """The phone presses 0 (RFC 4733 on its leg to FreeSWITCH); FreeSWITCH relays it on
    its leg to voicegw; the flow transfers; the phone then talks to the echoing agent
    through FreeSWITCH and voicegw."""
    agent = peer(lab, "agent", "agent_answer.xml", rtp_echo=True)
    demo_with_agent(lab, f"sip:agent@{HOST}:{agent.port}")
    phone = Caller(freeswitch.address, user="phone", request_user=f"bridge-{lab.daemon.port}")
    lab.callers.append(phone)
    assert phone.invite().status == 200
    phone.receive_rtp(0.5)
    phone.send_dtmf("0")
    wait_event(lab, "flow.dtmf", digit="0")
    wait_event(lab, "transfer.succeeded", status=200)
    heard = talk(phone, tone(650, 100))
    assert tone_packets(heard, 650) >= 40, "the agent's echo of the phone's tone"
    assert phone.bye().status == 200
    finish(lab, agent)


def test_freeswitch_agent_accepts_a_warm_transfer_by_dtmf(lab, freeswitch):
    """Warm transfer with confirmation: the agent is FreeSWITCH's ``dtmf-1``, which
    answers and sends 1 after a second; voicegw takes it as the accept digit and connects
    the caller to FreeSWITCH (echo), whose echo of the caller's tone comes back."""
    demo_with_agent(lab, freeswitch.uri("dtmf-1"), transfer_method="warm", ring_timeout=5,
                    warm={"hold": "silence", "briefing_text": "Incoming transfer.", "confirm": True,
                          "accept_digit": "1", "decline_digit": "2", "confirm_timeout": 10})
    c = caller(lab)
    assert c.invite().status == 200
    c.send_dtmf("0")
    wait_event(lab, "transfer.succeeded", timeout=20)
    heard = talk(c, tone(550, 100))
    assert tone_packets(heard, 550) >= 40, "FreeSWITCH's echo after the warm transfer"
    assert c.bye().status == 200
